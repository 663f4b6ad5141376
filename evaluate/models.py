"""``corpusmill models compare``: which pre-trained model to fine-tune, measured on the version's data.

For every candidate, on one split of one dataset version:

* **shape**: parameters, layers, hidden size, attention heads, context length, architecture, dtype
  (from its config; parameters counted on the loaded weights);
* **tokenizer fit**: tokens per word, unknown-token rate and the share of rows longer than the
  model's context (cut in training), counted as ``datasets stats --tokenizer`` counts them;
* **licence**: the model card's ``license:`` (README.md front matter), else the config's, else a
  LICENSE file; a warning where none is found or the licence restricts use (non-commercial,
  research-only, community terms to accept);
* **quality before fine-tuning**: for causal-lm the zero-shot perplexity of the split; for
  classification a linear probe: the frozen model's mean-pooled last hidden states, a logistic
  regression trained on the train split and scored on the compared split (accuracy and macro-F1
  with 95% bootstrap intervals). A probe says how separable the labels already are in the model's
  representation, which is what a short fine-tune builds on;
* **speed on this machine**: latency (ms per row, batched), throughput (rows/s) and peak memory
  of the scoring pass (CUDA allocator peak, or on CPU the resident-set growth over what the
  process held before loading the model).

Candidates are ranked by probe macro-F1 (higher first) or perplexity (lower first); values equal
to three significant digits count as a tie, broken by throughput. The report is JSON plus an HTML
page beside it, with a recommendation and its reasons.
"""

from __future__ import annotations

import math
import re
import time
from pathlib import Path

import numpy as np

from corpusmill import schema as S
from corpusmill.errors import CorpusmillError
from corpusmill.evaluate import metrics as M

#: licence identifiers (lower case, prefixes) whose terms restrict commercial use or need accepting
RESTRICTED_LICENCES = ("cc-by-nc", "cc-nc", "llama2", "llama3", "llama-2", "llama-3", "llama4", "gemma",
                       "research", "non-commercial", "noncommercial", "academic", "deepseek", "qwen-research",
                       "openrail", "bigscience", "other")
#: first words of common LICENSE files -> SPDX-style identifier
LICENCE_FILE_PATTERNS = (
    (r"apache license\s*,?\s*version 2", "apache-2.0"), (r"\bmit license\b", "mit"),
    (r"permission is hereby granted, free of charge", "mit"), (r"bsd 3-clause", "bsd-3-clause"),
    (r"creative commons attribution-noncommercial", "cc-by-nc-4.0"), (r"attribution-noncommercial", "cc-by-nc-4.0"),
    (r"creative commons attribution 4\.0", "cc-by-4.0"), (r"llama 2 community license", "llama2"),
    (r"llama 3(\.\d)? community license", "llama3"), (r"gemma terms of use", "gemma"),
    (r"gnu general public license", "gpl"), (r"mozilla public license", "mpl-2.0"),
)
#: metrics that rank the candidates, and whether higher is better
RANKED_BY = {"classification": ("macro_f1", True), "causal-lm": ("perplexity", False)}


class ModelCompareError(CorpusmillError):
    """A candidate or a dataset that cannot be compared as asked."""


# ----------------------------------------------------------------------------- licence


def _front_matter(readme: Path) -> dict:
    import yaml

    text = readme.read_text(encoding="utf-8", errors="replace")
    m = re.match(r"^---\s*\n(.*?)\n---\s*(\n|$)", text, re.S)
    if not m:
        return {}
    try:
        meta = yaml.safe_load(m.group(1))
    except yaml.YAMLError:
        return {}
    return meta if isinstance(meta, dict) else {}


def detect_licence(folder: Path, config: dict | None = None) -> dict:
    """The licence of a model folder: ``{licence, source, warning}``.

    Looked up in the model card's YAML front matter (``license:``, with ``license_name:`` for
    ``other``), then the config's ``license`` key, then a LICENSE / LICENSE.txt / LICENSE.md file
    recognised by its opening words. ``warning`` says why the licence needs a look (none found,
    or restricted: non-commercial, research-only, community terms), else None."""
    licence, source = None, None
    readme = folder / "README.md"
    if readme.is_file():
        meta = _front_matter(readme)
        value = meta.get("license") or meta.get("licence")
        if isinstance(value, list):
            value = ", ".join(str(v) for v in value)
        if value:
            licence, source = str(value).strip().lower(), "model card (README.md)"
            if licence == "other" and meta.get("license_name"):
                licence = f"other ({meta['license_name']})"
    if licence is None and config and config.get("license"):
        licence, source = str(config["license"]).strip().lower(), "config.json"
    if licence is None:
        for name in ("LICENSE", "LICENSE.txt", "LICENSE.md", "LICENCE"):
            f = folder / name
            if f.is_file():
                head = f.read_text(encoding="utf-8", errors="replace")[:3000].lower()
                licence = next((lic for pat, lic in LICENCE_FILE_PATTERNS if re.search(pat, head)), "unrecognised")
                source = name
                break
    if licence is None:
        warning = ("no licence found (model card license:, config or LICENSE file): check the terms before using "
                   "the model")
    elif licence == "unrecognised":
        warning = f"{source} is not a licence corpusmill recognises: read it before using the model"
    elif any(licence.startswith(p) or f"-{p}" in licence for p in RESTRICTED_LICENCES):
        warning = (f"licence {licence} restricts use (non-commercial, research-only or terms to accept): "
                   "check it allows yours")
    else:
        warning = None
    return {"licence": licence, "source": source, "warning": warning}


# ----------------------------------------------------------------------------- loading


def _local_folder(path: str) -> Path | None:
    """The folder ``path`` names, or None for a hub id (``owner/name`` that is not on disk).

    A path that looks local (absolute, ./, ~, or more than one '/') but is missing is an error."""
    p = Path(path).expanduser()
    if p.exists():
        if not p.is_dir():
            raise ModelCompareError(f"model '{path}' is a file; pass the model's folder (with config.json)")
        return p
    looks_local = path.startswith(("/", ".", "~")) or path.count("/") != 1 or "\\" in path
    if looks_local:
        raise ModelCompareError(f"model folder '{path}' does not exist; pass a folder with config.json and the "
                                "weights, or a Hugging Face hub id (owner/name)")
    return None


def _load(path: str, task: str, device, trust_remote_code: bool):
    """(config, tokenizer, model) of one candidate; hub ids go to transformers as they are."""
    import torch
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

    from corpusmill.train.modeling import ModelError, load_tokenizer

    hub = "" if _local_folder(path) else (" (a hub id: it needs the network, or the model in the Hugging Face "
                                          "cache; offline, download it elsewhere and pass its folder; HF_HUB_OFFLINE=1 skips the "
                                          "network retries)")
    try:
        config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
        tokenizer = load_tokenizer(path, trust_remote_code)
        cls = AutoModelForCausalLM if task == "causal-lm" else AutoModel
        model = cls.from_pretrained(path, trust_remote_code=trust_remote_code)
    except ModelError as err:
        raise ModelCompareError(f"{err}{hub}") from None
    except (OSError, ValueError) as err:
        what = "a causal LM" if task == "causal-lm" else "a model"
        raise ModelCompareError(f"cannot load '{path}' as {what}: {str(err).splitlines()[0]}{hub}") from None
    model.to(device).eval()
    torch.manual_seed(0)
    return config, tokenizer, model


def _cfg(config, *names):
    for n in names:
        v = getattr(config, n, None)
        if v is not None:
            return v
    return None


def model_shape(config, model) -> dict:
    """Parameters and the architecture's sizes, as its config states them."""
    dtype = _cfg(config, "torch_dtype", "dtype")
    return {
        "architecture": (config.architectures or [type(model).__name__])[0] if getattr(config, "architectures", None)
        else type(model).__name__,
        "model_type": config.model_type,
        "parameters": int(sum(p.numel() for p in model.parameters())),
        "layers": _cfg(config, "num_hidden_layers", "n_layer", "num_layers"),
        "hidden_size": _cfg(config, "hidden_size", "n_embd", "d_model"),
        "heads": _cfg(config, "num_attention_heads", "n_head"),
        "kv_heads": _cfg(config, "num_key_value_heads"),
        "context_length": _cfg(config, "max_position_embeddings", "n_positions", "max_seq_len"),
        "dtype": str(dtype).replace("torch.", "") if dtype is not None else "float32",
    }


def context_limit(shape: dict, tokenizer) -> int:
    """Longest input the model takes: its positions, or the tokenizer's limit where smaller."""
    limits = [v for v in (shape["context_length"], getattr(tokenizer, "model_max_length", None))
              if isinstance(v, int) and 0 < v < 1_000_000]
    return min(limits) if limits else 512


# ----------------------------------------------------------------------------- tokenizer fit


def tokenizer_fit(tokenizer, texts: list[str], ids: list[list[int]], max_length: int) -> dict:
    """Tokens per whitespace word, unknown-token rate, rows longer than ``max_length``."""
    from corpusmill.train.token_stats import split_stats

    s = split_stats(ids, tokenizer.unk_token_id, max_length, 0, 8, 0)
    words = sum(len(t.split()) for t in texts)
    specials = len(tokenizer(["x"], add_special_tokens=True)["input_ids"][0]) - len(
        tokenizer(["x"], add_special_tokens=False)["input_ids"][0])
    content = s.get("tokens", 0) - specials * len(ids)
    return {"tokens_per_word": content / words if words else None, "mean_tokens": s.get("mean"),
            "p95_tokens": s.get("p95"), "unknown_token_rate": s.get("unknown_token_rate"),
            "truncated_share": s.get("truncated_share", 0.0), "max_length": max_length}


# ----------------------------------------------------------------------------- probe


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def pooled_features(model, ex, pad_id: int, device, batch_size: int) -> tuple[np.ndarray, list[float]]:
    """Mean over real tokens of the last hidden state, per row (float32), and per-batch seconds."""
    import torch

    from corpusmill.train.data import collate

    order = np.argsort(ex.lengths, kind="stable")
    out = np.zeros((len(ex), model.config.hidden_size if hasattr(model.config, "hidden_size") else 0), np.float32)
    seconds = []
    with torch.inference_mode():
        for start in range(0, len(ex), batch_size):
            rows = order[start:start + batch_size]
            b = collate(ex, rows, pad_id, causal=False)
            ids = torch.from_numpy(b.input_ids).to(device)
            mask = torch.from_numpy(b.attention_mask).to(device)
            _sync(device)
            t0 = time.perf_counter()
            h = model(input_ids=ids, attention_mask=mask).last_hidden_state
            _sync(device)
            seconds.append(time.perf_counter() - t0)
            m = mask.unsqueeze(-1).to(h.dtype)
            pooled = (h * m).sum(1) / m.sum(1).clamp(min=1)
            if out.shape[1] != pooled.shape[1]:
                out = np.zeros((len(ex), pooled.shape[1]), np.float32)
            out[rows] = pooled.float().cpu().numpy()
    return out, seconds


def fit_logistic(x: np.ndarray, y: np.ndarray, k: int, *, l2: float = 1e-3, steps: int = 200):
    """Multinomial logistic regression on standardised features (L-BFGS, full batch, L2 ``l2``).

    Returns a function features -> predicted class. scikit-learn's LogisticRegression is used
    where installed; this torch solver is the fallback, not a second opinion."""
    mean, std = x.mean(0), x.std(0) + 1e-6
    try:
        from sklearn.linear_model import LogisticRegression
    except ImportError:
        LogisticRegression = None
    if LogisticRegression is not None:
        clf = LogisticRegression(C=1.0 / (l2 * len(x)), max_iter=1000).fit((x - mean) / std, y)
        return lambda z: clf.predict((z - mean) / std)
    import torch

    xt = torch.from_numpy((x - mean) / std).double()
    yt = torch.from_numpy(y).long()
    w = torch.zeros(x.shape[1], k, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(k, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1, max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(xt @ w + b, yt) + l2 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    w_, b_ = w.detach().numpy(), b.detach().numpy()
    return lambda z: np.argmax(((z - mean) / std) @ w_ + b_, axis=1)


# ----------------------------------------------------------------------------- one candidate


def _rss_mb() -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def _texts_and_ids(version, split: str, task: str, fmt: str, tokenizer, max_rows: int, seed: int):
    from corpusmill.datasets import DEFAULT_PROMPT_TEMPLATE
    from corpusmill.train.token_stats import row_texts, token_ids

    fmt_used, rows = row_texts(version, split, "text" if task == "classification" else fmt, DEFAULT_PROMPT_TEMPLATE,
                               max_rows, seed)
    texts = [a if isinstance(a, str) else " ".join(str(t.get("content", "")) for t in a) for a, _ in rows]
    texts = [t + (" " + b if b else "") for t, (_, b) in zip(texts, rows)]
    return texts, token_ids(tokenizer, fmt_used, rows)


def measure_candidate(path: str, version, *, task: str, split: str, labels: list[str] | None, label_field: str,
                      fmt: str, max_rows: int, max_train_rows: int, batch_size: int, bootstrap: int, seed: int,
                      device, trust_remote_code: bool = False) -> dict:
    """Everything the comparison reports about one candidate (see the module docstring)."""
    import torch

    from corpusmill.datasets import DEFAULT_PROMPT_TEMPLATE
    from corpusmill.train import data
    from corpusmill.train.system import PeakMemory

    folder = _local_folder(path)
    if device.type == "cuda":
        torch.cuda.empty_cache()
    from corpusmill.train.system import _return_freed_memory

    _return_freed_memory()
    rss_before = _rss_mb()
    with PeakMemory(device) as peak:
        t0 = time.perf_counter()
        config, tokenizer, model = _load(path, task, device, trust_remote_code)
        load_s = time.perf_counter() - t0
        shape = model_shape(config, model)
        limit = context_limit(shape, tokenizer)
        texts, ids = _texts_and_ids(version, split, task, fmt, tokenizer, max_rows, seed)
        fit = tokenizer_fit(tokenizer, texts, ids, limit)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        if task == "classification":
            label_ids = {y: i for i, y in enumerate(labels)}
            cols, _ = data.needed_columns(version, task, fmt, label_field)
            train_ex = data.classification_examples(tokenizer, data.read_rows(version, "train", cols, max_train_rows, seed),
                                                    label_field, label_ids, limit)
            eval_ex = data.classification_examples(tokenizer, data.read_rows(version, split, cols, max_rows, seed),
                                                   label_field, label_ids, limit)
            if len(eval_ex) == 0:
                raise ModelCompareError(f"{version.ref} split '{split}' has no row with a label the train split has")
            x_train, _ = pooled_features(model, train_ex, pad, device, batch_size)  # also the warm-up
            x_eval, seconds = pooled_features(model, eval_ex, pad, device, batch_size)
            predict = fit_logistic(x_train, np.asarray(train_ex.labels), len(labels))
            ms = M.classification_set(np.asarray(eval_ex.labels), predict(x_eval), len(labels))
            quality = {k: v for k, v in ms.with_intervals(M.resamples(len(eval_ex), bootstrap, seed)).items()
                       if k.startswith(("accuracy", "macro_f1"))}
            quality.update({"probe_train_rows": len(train_ex), "rows": len(eval_ex)})
            n_rows = len(eval_ex)
        else:
            from corpusmill.evaluate.compare import score_forward

            cols, fmt_used = data.needed_columns(version, task, fmt, label_field)
            table = data.read_rows(version, split, cols, max_rows, seed)
            if fmt_used == "text":
                ex = data.text_examples(tokenizer, table, limit)
            elif fmt_used == "prompt_response":
                ex = data.prompt_response_examples(tokenizer, table, DEFAULT_PROMPT_TEMPLATE, limit)
            else:
                ex = data.messages_examples(tokenizer, table, limit)
            if len(ex) == 0:
                raise ModelCompareError(f"{version.ref} split '{split}' has no rows to score")
            scored = score_forward(model, ex, pad, True, device, batch_size)
            ms = M.perplexity_set(scored["nll"], scored["ntok"])
            quality = ms.with_intervals(M.resamples(len(ex), bootstrap, seed))
            quality.update({"rows": len(ex), "format": fmt_used, "target_tokens": int(scored["ntok"].sum())})
            seconds = [scored["speed"]["latency_ms_per_row"] * len(ex) / 1000]  # its warm-up is untimed
            n_rows = len(ex)
    total = sum(seconds)
    speed = {"latency_ms_per_row": 1000 * total / n_rows, "rows_per_second": n_rows / total if total else None}
    if device.type == "cuda":
        speed["peak_memory_mb"], speed["memory_measured_as"] = peak.mb, "torch.cuda.max_memory_allocated"
    else:
        grown = None if peak.mb is None or rss_before is None else round(max(peak.mb - rss_before, 0.0), 1)
        speed["peak_memory_mb"], speed["memory_measured_as"] = grown, "peak RSS minus RSS before loading"
    speed.update({"batch_size": batch_size, "load_seconds": round(load_s, 3), "device": str(device)})
    del model
    return {"model": path, "name": _short_name(path), "local": folder is not None, **shape, "tokenizer_fit": fit,
            "licence": detect_licence(folder, config.to_dict()) if folder else
            {"licence": None, "source": None, "warning": "hub id: licence not read (check the model card)"},
            "quality": quality, "speed": speed}


def _short_name(path: str) -> str:
    p = Path(path.rstrip("/"))
    return p.name if p.name != "model" else f"{p.parent.name}/{p.name}"


# ----------------------------------------------------------------------------- ranking


def rank(candidates: list[dict], task: str) -> list[dict]:
    """Sorted best first: the task's metric (3 significant digits), ties by throughput."""
    metric, higher = RANKED_BY[task]

    def key(c):
        v = c["quality"].get(metric)
        v = float(f"{v:.3g}") if v is not None and math.isfinite(v) else (-math.inf if higher else math.inf)
        return (-v if higher else v, -(c["speed"].get("rows_per_second") or 0.0))

    ranked = sorted(candidates, key=key)
    for i, c in enumerate(ranked, 1):
        c["rank"] = i
    return ranked


def _metric_text(c: dict, metric: str) -> str:
    q = c["quality"]
    lo, hi = q[f"{metric}_ci"]
    digits = 2 if metric == "perplexity" else 3
    return f"{q[metric]:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def recommendation(ranked: list[dict], task: str) -> dict:
    """The first-ranked candidate and why, against the runner-up; a faster runner-up inside the
    winner's interval is named as the alternative."""
    metric, higher = RANKED_BY[task]
    label = {"macro_f1": "probe macro-F1", "perplexity": "perplexity"}[metric]
    best = ranked[0]
    reasons = [f"{label} {_metric_text(best, metric)}"]
    alternative = None
    if len(ranked) > 1:
        second = ranked[1]
        reasons[0] += f" vs {second['quality'][metric]:.3f} ({second['name']})" if metric != "perplexity" else \
            f" vs {second['quality'][metric]:.2f} ({second['name']})"
        a, b = best["speed"].get("rows_per_second") or 0, second["speed"].get("rows_per_second") or 0
        if a and b:
            reasons.append(f"{a / b:.1f}x faster than {second['name']}" if a >= b else
                           f"{b / a:.1f}x slower than {second['name']}")
        lo, hi = best["quality"][f"{metric}_ci"]
        if lo <= second["quality"][metric] <= hi and b > a:
            alternative = (f"{second['name']} is inside {best['name']}'s interval ({label} "
                           f"{second['quality'][metric]:.3g}) and {b / a:.1f}x faster: a fair choice where speed counts")
    reasons.append(f"{best['parameters'] / 1e6:.1f}M parameters")
    lic = best["licence"]
    reasons.append(f"licence {lic['licence']}" if lic["licence"] else "licence unknown")
    if lic["warning"]:
        reasons.append(f"warning: {lic['warning']}")
    return {"model": best["model"], "name": best["name"], "reasons": reasons, "alternative": alternative,
            "text": f"{best['name']}: " + "; ".join(reasons)}


# ----------------------------------------------------------------------------- the command


def compare_models(version, models: list[str], *, report: str | Path, task: str = "auto", split: str = "validation",
                   max_rows: int = 0, max_train_rows: int = 2000, label_field: str = S.LABEL, fmt: str = "auto",
                   batch_size: int = 32, bootstrap: int = 1000, seed: int = 0, device: str = "auto",
                   trust_remote_code: bool = False, console=None) -> dict:
    """Measure and rank ``models`` on ``version``; write ``report`` (JSON) and the HTML page beside it.

    ``task`` auto = classification where the version has ``label_field``, else causal-lm.
    ``max_rows`` caps the compared split (0 = all), ``max_train_rows`` the probe's training rows;
    both are stable samples by row id."""
    from corpusmill.train import data
    from corpusmill.train.system import hardware, resolve_device

    if not models:
        raise ModelCompareError("give at least one --model")
    if len(set(models)) != len(models):
        raise ModelCompareError(f"a model is named twice: {', '.join(sorted({m for m in models if models.count(m) > 1}))}")
    for m in models:  # every missing folder is reported before anything loads
        _local_folder(m)
    splits = version.splits()
    if split not in splits:
        raise ModelCompareError(f"{version.ref} has no split '{split}'; it has {', '.join(splits) or 'none'} "
                                "(--split NAME)")
    names = set(version.schema().names)
    label_col = S.META if label_field.startswith("meta.") else label_field
    if task == "auto":
        task = "classification" if label_col in names else "causal-lm"
    labels = None
    if task == "classification":
        if label_col not in names:
            raise ModelCompareError(f"{version.ref} has no column '{label_field}' for classification (columns: "
                                    f"{', '.join(sorted(names))}); pass --label-field, or --task causal-lm for perplexity")
        if "train" not in splits:
            raise ModelCompareError(f"{version.ref} has no train split for the linear probe; it has {', '.join(splits)}")
        values = data.label_values(data.read_rows(version, "train", [label_col], max_train_rows, seed), label_field)
        labels = sorted({v for v in values if v is not None})
        if len(labels) < 2:
            raise ModelCompareError(f"{version.ref} train split has {len(labels)} distinct value(s) in '{label_field}'; "
                                    "the probe needs at least 2")
    dev = resolve_device(device)
    results = []
    for i, path in enumerate(models, 1):
        started = time.perf_counter()
        if console:
            console.print(f"[{i}/{len(models)}] {path}")
        results.append(measure_candidate(path, version, task=task, split=split, labels=labels, label_field=label_field,
                                         fmt=fmt, max_rows=max_rows, max_train_rows=max_train_rows,
                                         batch_size=batch_size, bootstrap=bootstrap, seed=seed, device=dev,
                                         trust_remote_code=trust_remote_code))
        if console:
            c, metric = results[-1], RANKED_BY[task][0]
            console.print(f"      {metric} {_metric_text(c, metric)}, {_fmt(c['speed']['rows_per_second'], ',.0f')} "
                          f"rows/s, {time.perf_counter() - started:.0f}s")
    ranked = rank(results, task)
    out = {"dataset": version.ref, "split": split, "task": task, "labels": labels,
           "ranked_by": {"metric": RANKED_BY[task][0], "higher_is_better": RANKED_BY[task][1],
                         "ties": "equal to 3 significant digits, broken by rows/s"},
           "bootstrap": bootstrap, "seed": seed, "hardware": hardware(dev),
           "candidates": ranked, "recommendation": recommendation(ranked, task),
           "warnings": [f"{c['name']}: {c['licence']['warning']}" for c in ranked if c["licence"]["warning"]]}
    report = Path(report)
    report.parent.mkdir(parents=True, exist_ok=True)
    import json

    report.write_text(json.dumps(out, indent=2, default=str) + "\n")
    report.with_suffix(".html").write_text(html_page(out))
    return out


# ----------------------------------------------------------------------------- output


def _fmt(v, spec: str = ".3f") -> str:
    return "-" if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(v, spec)


def table_rows(report: dict) -> tuple[list[str], list[list[str]]]:
    """The ranked table, as the terminal and the page show it (the ranking metric with its interval)."""
    metric = report["ranked_by"]["metric"]
    head = ["rank", "model", "params", "layers x hidden", "heads", "context", "tok/word", "unk", "truncated",
            *(["probe acc", "probe macro-F1 [95% CI]"] if metric == "macro_f1" else ["perplexity [95% CI]"]),
            "ms/row", "rows/s", "peak MiB", "licence"]
    rows = []
    for c in report["candidates"]:
        q, f, s = c["quality"], c["tokenizer_fit"], c["speed"]
        row = [str(c["rank"]), c["name"], f"{c['parameters'] / 1e6:.1f}M", f"{c['layers']} x {c['hidden_size']}",
               str(c["heads"]), str(c["context_length"]), _fmt(f["tokens_per_word"], ".2f"),
               _fmt(f["unknown_token_rate"], ".2%"), _fmt(f["truncated_share"], ".1%")]
        row += [_fmt(q["accuracy"]), _metric_text(c, "macro_f1")] if metric == "macro_f1" else \
            [_metric_text(c, "perplexity")]
        row += [_fmt(s["latency_ms_per_row"], ".2f"), _fmt(s["rows_per_second"], ",.0f"),
                _fmt(s["peak_memory_mb"], ",.0f"), (c["licence"]["licence"] or "none found")
                + (" (!)" if c["licence"]["warning"] else "")]
        rows.append(row)
    return head, rows


def print_comparison(report: dict, console) -> None:
    """The ranked table (shape columns moved to one line per model, so the table fits 160 columns),
    then licence warnings and the recommendation."""
    from rich.table import Table

    t = Table(title=f"models on {report['dataset']} ({report['split']}, {report['task']})", title_justify="left")
    head, rows = table_rows(report)
    keep = [i for i, h in enumerate(head) if h not in ("layers x hidden", "heads", "context")]
    for i in keep:
        t.add_column(head[i], justify="left" if head[i] in ("model", "licence") else "right",
                     no_wrap=head[i] in ("model", "licence") or "CI" in head[i])
    for r in rows:
        t.add_row(*[r[i] for i in keep])
    console.print(t)
    for c in report["candidates"]:
        kv = f" ({c['kv_heads']} KV)" if c.get("kv_heads") and c["kv_heads"] != c["heads"] else ""
        console.print(f"{c['name']}: {c['architecture']}, {c['parameters']:,} parameters, {c['layers']} layers x "
                      f"{c['hidden_size']}, {c['heads']} heads{kv}, context {c['context_length']}, {c['dtype']}")
    for w in report["warnings"]:
        console.print(f"warning: {w}")
    rec = report["recommendation"]
    console.print(f"recommended: {rec['text']}")
    if rec["alternative"]:
        console.print(f"alternative: {rec['alternative']}")


def html_page(report: dict) -> str:
    from corpusmill.report import svg
    from corpusmill.report.page import Page, esc, table

    metric = report["ranked_by"]["metric"]
    page = Page(f"models compared on {report['dataset']} ({report['split']})",
                f"task {report['task']}; ranked by {metric} ({'higher' if report['ranked_by']['higher_is_better'] else 'lower'}"
                f" is better), ties by rows/s; {report['hardware'].get('device', '')}")
    page.section("recommendation", "Recommendation")
    rec = report["recommendation"]
    page.html(f"<p><b>{esc(rec['name'])}</b>: {esc('; '.join(rec['reasons']))}</p>")
    if rec["alternative"]:
        page.text(f"Alternative: {rec['alternative']}")
    for w in report["warnings"]:
        page.warn(w)
    page.section("candidates", "Candidates")
    head, rows = table_rows(report)
    shape_cols = ("layers x hidden", "heads", "context")
    keep = [i for i, h in enumerate(head) if h not in shape_cols]
    page.html(table([head[i] for i in keep], [[r[i] for i in keep] for r in rows], numeric=list(range(2, len(keep) - 1))))
    page.text("tok/word: tokens per whitespace word (lower: the vocabulary fits the data); unk: share of tokens that "
              "are the unknown token; truncated: rows longer than the model's context. Speed and memory were measured "
              f"on this machine over the compared split, batches of {report['candidates'][0]['speed']['batch_size']}; "
              f"peak memory is the {report['candidates'][0]['speed']['memory_measured_as']}.")
    page.html(table(["model", "architecture", "parameters", "layers", "hidden", "heads", "context", "dtype"],
                    [[c["name"], c["architecture"], c["parameters"], c["layers"], c["hidden_size"],
                      f"{c['heads']}" + (f" ({c['kv_heads']} KV)" if c.get("kv_heads") and c["kv_heads"] != c["heads"]
                                         else ""), c["context_length"], c["dtype"]] for c in report["candidates"]],
                    numeric=[2, 3, 4, 5, 6]))
    page.section("quality", "Quality before fine-tuning")
    metrics = ["accuracy", "macro_f1"] if metric == "macro_f1" else ["perplexity"]
    groups = [(m, [(c["name"], c["quality"][m], *c["quality"][f"{m}_ci"], svg.colour(i))
                   for i, c in enumerate(report["candidates"])]) for m in metrics]
    how = ("Linear probe on frozen mean-pooled features, 95% bootstrap intervals."
           if metric == "macro_f1" else "Zero-shot perplexity (lower is better), 95% bootstrap intervals.")
    page.plot(None, how, svg.interval_bars(groups, title="quality", lo=0.0, hi=1.0 if metric == "macro_f1" else None))
    page.section("speed", "Speed and memory")
    page.plot(None, "Rows per second of the batched scoring pass (higher is faster).",
              svg.hbar_stack([(c["name"], [("rows/s", c["speed"]["rows_per_second"] or 0, svg.colour(i))])
                              for i, c in enumerate(report["candidates"])], title="rows per second",
                             note={c["name"]: f"{_fmt(c['speed']['rows_per_second'], ',.0f')} rows/s"
                                   for c in report["candidates"]}))
    page.section("licences", "Licences")
    page.html(table(["model", "licence", "found in", "note"],
                    [[c["name"], c["licence"]["licence"] or "none found", c["licence"]["source"] or "-",
                      c["licence"]["warning"] or "-"] for c in report["candidates"]], text=[3]))
    return page.render()
