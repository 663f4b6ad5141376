"""The forgetting check of ``corpusmill eval RUN --general FILE``: perplexity on general-domain
reference text, base vs fine-tuned (causal-lm), so the cost of specialising is visible.

A fine-tune that lowers perplexity on its own domain can raise it on everything else; a rise of
a few percent is the usual price, a doubling says the model has lost general ability (fewer steps,
a lower learning rate, LoRA instead of full, or general text mixed into the training data help).

The reference text is a plain text file whose paragraphs (blocks separated by blank lines) are
the rows, or a JSONL file with a ``text`` field per line. Every token is a target; a paragraph
longer than the run's ``max_seq_len`` is scored in consecutive windows of that length rather than
cut, so the whole text counts. Intervals and the paired test resample windows, as the main report
resamples rows.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from corpusmill.errors import CorpusmillError
from corpusmill.evaluate import metrics as M


def read_general_text(path: str | Path) -> list[str]:
    """Paragraphs of a text file, or the ``text`` field of a JSONL file's rows."""
    path = Path(path)
    if not path.is_file():
        raise CorpusmillError(f"--general {path}: file not found (a text file with paragraphs, or JSONL with 'text')")
    raw = path.read_text(encoding="utf-8", errors="replace")
    if path.suffix in (".jsonl", ".json"):
        texts = []
        for n, line in enumerate(raw.splitlines(), 1):
            if line.strip():
                try:
                    texts.append(str(json.loads(line)["text"]))
                except (ValueError, KeyError, TypeError):
                    raise CorpusmillError(f"--general {path}:{n}: not a JSON object with a 'text' field") from None
    else:
        texts = [" ".join(block.split()) for block in raw.replace("\r\n", "\n").split("\n\n")]
    texts = [t for t in texts if t.strip()]
    if not texts:
        raise CorpusmillError(f"--general {path}: no text in it")
    return texts


def general_examples(tokenizer, texts: list[str], max_len: int):
    """Causal-lm examples of the reference text: each paragraph in windows of at most ``max_len`` tokens."""
    from corpusmill.train.data import Examples

    ids, inputs = [], []
    for i, row in enumerate(tokenizer(texts, add_special_tokens=True)["input_ids"]):
        for w, start in enumerate(range(0, len(row), max_len)):
            window = np.asarray(row[start : start + max_len], dtype=np.int64)
            if len(window) >= 2:  # a target needs a token before it
                ids.append(f"general-{i}-{w}")
                inputs.append(window)
    return Examples(ids, inputs, [x.copy() for x in inputs])


def forgetting_report(path: str | Path, scored: dict[str, dict], n_paragraphs: int, bootstrap: int, seed: int) -> dict:
    """Perplexity per model with intervals, and fine-tuned vs base (and previous) as a paired test."""
    sets = {name: M.perplexity_set(r["nll"], r["ntok"]) for name, r in scored.items()}
    n = len(next(iter(scored.values()))["nll"])
    idx = M.resamples(n, bootstrap, seed)
    higher = {"perplexity": False, "loss": False}
    comparison = {"fine_tuned_vs_base": M.paired_bootstrap(sets["base"], sets["fine_tuned"], idx, higher)}
    if "previous" in sets:
        comparison["fine_tuned_vs_previous"] = M.paired_bootstrap(sets["previous"], sets["fine_tuned"], idx, higher)
    base, tuned = sets["base"].point["perplexity"], sets["fine_tuned"].point["perplexity"]
    return {
        "file": str(Path(path).resolve()),
        "paragraphs": n_paragraphs,
        "windows": n,
        "tokens_scored": int(next(iter(scored.values()))["ntok"].sum()),
        "models": {name: s.with_intervals(idx) for name, s in sets.items()},
        "comparison": comparison,
        "perplexity_ratio": tuned / base if base else None,
    }


def markdown_lines(general: dict, resamples: int) -> str:
    """The forgetting check under the main table."""
    m, c = general["models"], general["comparison"]["fine_tuned_vs_base"]["perplexity"]
    lo, hi = c["difference_ci"]
    p = f"p<{2 / resamples:.3g}" if c["p_value"] == 0 else f"p={c['p_value']:.3f}"
    change = general["perplexity_ratio"] - 1
    return (f"\nGeneral-domain perplexity ({general['windows']} windows, {general['tokens_scored']:,} tokens of "
            f"{Path(general['file']).name}): base {m['base']['perplexity']:.3f}, fine-tuned "
            f"{m['fine_tuned']['perplexity']:.3f} ({change:+.1%}; difference {c['difference']:+.3f} "
            f"[{lo:+.3f}, {hi:+.3f}], {p})")
