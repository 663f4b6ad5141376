"""``corpusmill datasets stats REF --tokenizer PATH``: how a dataset version fits a tokenizer.

Per split: the token-length distribution of the rows as the trainer would tokenize them, the
share of rows longer than ``max_length`` (cut on the right in training), the unknown-token rate
(words the vocabulary cannot spell: high for a tokenizer of another language or domain), and the
share of padding that batches of random rows would carry. From these, a recommended
``max_seq_len`` and whether ``packing`` pays.

What is counted per row (special tokens included, as ``tokenizer(text)`` adds them):

* text: the ``text`` column; the causal-lm trainer appends one EOS token to it;
* prompt/response: the prompt written as the trainer writes it (``prompt_template``, and a system
  prompt when the row has one), then the response (no special tokens), plus the EOS it appends;
* messages: the chat template's rendering (or the contents joined by newlines without one).
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import orjson

from corpusmill import schema as S
from corpusmill.datasets import DEFAULT_PROMPT_TEMPLATE
from corpusmill.store import Version

PERCENTILES = (50, 90, 95, 99)
#: padding share above which packing (causal-lm) is recommended
PACKING_PAYS_ABOVE = 0.25


def row_texts(version: Version, split: str, fmt: str, template: str, max_rows: int, seed: int):
    """(format in effect, the strings of one split as the trainer joins them) -> list of (first, second)."""
    from corpusmill.train.data import read_rows

    names = set(version.schema().names)
    if fmt == "auto":
        fmt = "messages" if S.MESSAGES in names else "prompt_response" if {S.PROMPT, S.RESPONSE} <= names else "text"
    cols = {"text": [S.TEXT], "prompt_response": [S.PROMPT, S.RESPONSE], "messages": [S.MESSAGES]}[fmt]
    missing = [c for c in cols if c not in names]
    if missing:
        from corpusmill.errors import CorpusmillError

        raise CorpusmillError(f"{version.ref} has no column {', '.join(missing)} for format '{fmt}'")
    if fmt == "prompt_response" and S.SYSTEM in names:
        cols = [S.SYSTEM, *cols]
    table = read_rows(version, split, cols, max_rows, seed)
    if fmt == "text":
        return fmt, [(t or "", None) for t in table.column(S.TEXT).to_pylist()]
    if fmt == "prompt_response":
        from corpusmill.datasets import written_prompts  # the trainer's own prompt text

        return fmt, [(w, r or "") for w, r in
                     zip(written_prompts(table, template).to_pylist(), table.column(S.RESPONSE).to_pylist())]
    from corpusmill.sft import plain_messages

    out = []
    for m in table.column(S.MESSAGES).to_pylist():
        msgs = orjson.loads(m) if isinstance(m, (str, bytes)) else (m or [])
        out.append((plain_messages(msgs), None))  # extra keys (tool_calls...) rendered as the trainer renders them
    return fmt, out


def token_ids(tokenizer, fmt: str, rows: list) -> list[list[int]]:
    """Token ids per row, as the trainer builds them (EOS not included)."""
    if not rows:
        return []
    if fmt == "messages":
        if getattr(tokenizer, "chat_template", None):
            return [list(tokenizer.apply_chat_template(m, tokenize=True)) for m, _ in rows]
        texts = ["\n".join(str(t.get("content", "")) for t in m) for m, _ in rows]
        return tokenizer(texts, add_special_tokens=True)["input_ids"]
    first = tokenizer([a for a, _ in rows], add_special_tokens=True)["input_ids"]
    if fmt == "text":
        return first
    second = tokenizer([b for _, b in rows], add_special_tokens=False)["input_ids"]
    return [a + b for a, b in zip(first, second)]


def padding_share(lengths: np.ndarray, max_length: int, batch_size: int, seed: int) -> float:
    """Share of the tokens in padded batches that are padding, for batches of ``batch_size`` random
    rows each padded to its longest row (cut at ``max_length``), as the trainer's collator pads."""
    if len(lengths) == 0:
        return 0.0
    cut = np.minimum(lengths, max_length)
    order = np.random.default_rng(seed).permutation(len(cut))
    padded = real = 0
    for start in range(0, len(cut), batch_size):
        b = cut[order[start : start + batch_size]]
        padded += int(b.max()) * len(b)
        real += int(b.sum())
    return 1 - real / padded if padded else 0.0


def split_stats(ids: list[list[int]], unk_id: int | None, max_length: int, causal_eos: int, batch_size: int,
                seed: int) -> dict:
    lengths = np.fromiter((len(x) + causal_eos for x in ids), dtype=np.int64, count=len(ids))
    if len(lengths) == 0:
        return {"rows": 0}
    tokens = int(lengths.sum())
    unk = None
    rows_with_unk = None
    if unk_id is not None:
        sizes = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
        flat = np.fromiter(itertools.chain.from_iterable(ids), dtype=np.int64, count=int(sizes.sum()))
        per_row = np.bincount(np.repeat(np.arange(len(ids)), sizes)[flat == unk_id], minlength=len(ids))
        unk = float(per_row.sum() / tokens) if tokens else 0.0
        rows_with_unk = float((per_row > 0).mean())
    return {
        "rows": int(len(lengths)),
        "tokens": tokens,
        "mean": float(lengths.mean()),
        "min": int(lengths.min()),
        **{f"p{p}": float(np.percentile(lengths, p)) for p in PERCENTILES},
        "max": int(lengths.max()),
        "truncated_rows": int((lengths > max_length).sum()),
        "truncated_share": float((lengths > max_length).mean()),
        "truncated_tokens_share": float(np.maximum(lengths - max_length, 0).sum() / tokens) if tokens else 0.0,
        "unknown_token_rate": unk,
        "rows_with_unknown_tokens": rows_with_unk,
        "padding_share": padding_share(lengths, max_length, batch_size, seed),
    }


def recommend(all_lengths: np.ndarray, model_max: int | None, causal: bool, batch_size: int, seed: int) -> dict:
    """A max length covering 99% of the rows (rounded up to a multiple of 16, within the model's
    limit), and whether packing would pay at that length."""
    if len(all_lengths) == 0:
        return {}
    p99 = float(np.percentile(all_lengths, 99))
    length = max(16, int(math.ceil(p99 / 16) * 16))
    capped = bool(model_max and length > model_max)
    if capped:
        length = int(model_max)
    pad = padding_share(all_lengths, length, batch_size, seed)
    fill = float(np.minimum(all_lengths, length).mean() / length)
    packing = causal and pad > PACKING_PAYS_ABOVE
    why = (f"{pad:.0%} of the tokens in batches of {batch_size} random rows would be padding; "
           + ("packing rows into max_seq_len removes it" if packing else
              "packing would save little" if causal else "packing applies to causal-lm only"))
    return {"max_seq_len": length, "covers_share": float((all_lengths <= length).mean()), "p99": p99,
            "capped_by_model": capped, "packing": packing, "padding_share": pad, "mean_fill": fill, "why": why}


def dataset_token_stats(version: Version, tokenizer_path: str, max_length: int = 512, *, task: str = "auto",
                        fmt: str = "auto", prompt_template: str = DEFAULT_PROMPT_TEMPLATE, batch_size: int = 8,
                        max_rows: int = 0, seed: int = 0, trust_remote_code: bool = False) -> dict:
    """The report ``corpusmill datasets stats --tokenizer`` prints (also its --json).

    ``task`` auto = classification when the version has a ``label`` column, else causal-lm (whose
    rows get the EOS the trainer appends, and for which packing is an option)."""
    from corpusmill.train.modeling import load_tokenizer

    tokenizer = load_tokenizer(tokenizer_path, trust_remote_code)
    unk_id = tokenizer.unk_token_id
    if task == "auto":
        task = "classification" if S.LABEL in version.schema().names else "causal-lm"
    is_causal = task == "causal-lm"
    splits, lengths = {}, []
    fmt_used = "text"
    for split in version.splits():
        fmt_used, rows = row_texts(version, split, fmt if is_causal else "text", prompt_template, max_rows, seed)
        ids = token_ids(tokenizer, fmt_used, rows)
        eos = 1 if is_causal and fmt_used != "messages" else 0  # a chat template writes its own end markers
        splits[split] = split_stats(ids, unk_id, max_length, eos, batch_size, seed)
        lengths.append(np.fromiter((len(x) + eos for x in ids), dtype=np.int64, count=len(ids)))
    model_max = tokenizer.model_max_length if 0 < (tokenizer.model_max_length or 0) < 1_000_000 else None
    return {
        "dataset": version.ref, "tokenizer": tokenizer_path, "format": fmt_used, "max_length": max_length,
        "task": task, "counted_as": "causal-lm, EOS appended" if is_causal and fmt_used != "messages" else task,
        "unknown_token": tokenizer.unk_token, "model_max_length": model_max, "batch_size": batch_size,
        "splits": splits,
        "recommendation": recommend(np.concatenate(lengths) if lengths else np.zeros(0, np.int64), model_max,
                                    is_causal, batch_size, seed),
    }


def print_token_stats(report: dict, console) -> None:
    from rich.table import Table

    t = Table(title=f"{report['dataset']}: tokens per row with {report['tokenizer']} ({report['format']}, "
                    f"{report['counted_as']})", title_justify="left")
    cols = ["split", "rows", "mean", *[f"p{p}" for p in PERCENTILES], "max", f"> {report['max_length']}",
            "unknown tokens", "rows with unknown", f"padding (batch {report['batch_size']})"]
    for c in cols:
        t.add_column(c, justify="left" if c == "split" else "right")
    for split, s in report["splits"].items():
        if not s["rows"]:
            t.add_row(split, "0", *["-"] * (len(cols) - 2))
            continue
        pct = lambda v: "-" if v is None else f"{v:.2%}"  # noqa: E731
        t.add_row(split, f"{s['rows']:,}", f"{s['mean']:.1f}", *[f"{s[f'p{p}']:.0f}" for p in PERCENTILES],
                  f"{s['max']:,}", f"{s['truncated_share']:.1%} ({s['truncated_rows']:,})",
                  pct(s["unknown_token_rate"]), pct(s["rows_with_unknown_tokens"]), f"{s['padding_share']:.0%}")
    console.print(t)
    if report["unknown_token"] is None:
        console.print("unknown tokens: none possible (the tokenizer has no unknown token: byte-level)")
    r = report["recommendation"]
    if r:
        cap = f", the model's limit" if r["capped_by_model"] else ""
        console.print(f"recommended max_seq_len: {r['max_seq_len']} (covers {r['covers_share']:.1%} of rows; "
                      f"p99 {r['p99']:.0f}{cap})")
        console.print(f"packing: {'yes' if r['packing'] else 'no'} ({r['why']})")
