"""``corpusmill eval``: the base model, the fine-tuned model (and a previous run) on the same split
of the same dataset version, with 95% bootstrap intervals, paired tests, speed and memory.

Which model is "base":

* causal-lm: the pre-trained model the run started from, as it is.
* classification: a pre-trained encoder has no head for the run's labels, so scoring it "as is"
  would compare against chance. The fair base is the frozen encoder with a linear head trained on
  the same training rows, with the same steps budget, batch size, learning rate and seed (the
  run's config with ``method: head``). It is trained once per dataset version, base model, task,
  settings and seed and kept in the user cache, ``$CORPUSMILL_CACHE/base-heads/<key>/`` (see
  :func:`base_head_run`), so a second evaluation, of this run or of another run with the same
  settings, reuses it. The difference to it is what adapting the encoder bought.

The report's ``timings`` split the wall time: ``load`` (dataset rows, tokenizer), ``base`` (the
base model: the head trained or taken from the cache, then scored), ``fine_tuned`` (loaded,
checked, scored), ``previous`` where asked, and ``bootstrap`` (intervals and paired tests).

Guard: the fine-tuned model must not compute what the untrained model computes. For an adapter,
its outputs are compared with the adapter switched off; for full/head runs, with the base
weights. Identical outputs mean the adapter silently did not load (peft warns and leaves zeros
behind when keys do not match) or training changed nothing: an error, not a report.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from corpusmill.errors import CorpusmillError
from corpusmill.evaluate import metrics as M


class EvalError(CorpusmillError):
    pass


REPORT_FORMAT = 1
LOWER_IS_BETTER = {"perplexity", "loss"}
#: rows shown where the base and the fine-tuned model disagree
DISAGREEMENTS = 20


# ----------------------------------------------------------------------------- models


#: config keys that do not change what the base head learns: left out of its cache key
_NOT_IN_HEAD_KEY = ("output", "store", "dataset", "log_every", "resume", "merge", "save_every", "keep_checkpoints", "lora",
                    "from_run", "new_rows_only", "device")
#: how much of each model file goes into the model's fingerprint (start and end); whole files below twice this
_FINGERPRINT_BYTES = 1 << 20


def model_fingerprint(model: str) -> str:
    """A local model folder's content fingerprint (every file's path, size, and its first and last MiB),
    or a hub id as written. Cheap for multi-GB weights; a re-saved or edited model changes it."""
    folder = Path(model).expanduser()
    if not folder.is_dir():
        return model
    h = hashlib.sha256()
    for f in sorted(q for q in folder.rglob("*") if q.is_file() and not any(x.startswith(".") for x in q.relative_to(folder).parts)):
        size = f.stat().st_size
        h.update(f"{f.relative_to(folder).as_posix()}\0{size}\0".encode())
        with f.open("rb") as fh:
            if size <= 2 * _FINGERPRINT_BYTES:
                h.update(fh.read())
            else:
                h.update(fh.read(_FINGERPRINT_BYTES))
                fh.seek(size - _FINGERPRINT_BYTES)
                h.update(fh.read())
    return "sha256:" + h.hexdigest()


def base_head_key(run: dict, device_type: str) -> dict:
    """What the base head depends on: the dataset version id, the base model's content, the task, the
    head's training settings (the run's config with ``method: head``), the seed, the device kind and
    corpusmill's version. Equal keys give the same head."""
    from corpusmill import __version__

    settings = {k: v for k, v in run["config"].items() if k not in _NOT_IN_HEAD_KEY}
    settings.update(method="head")
    return {"kind": "base-head", "dataset_version": run["dataset"]["version"],
            "model": model_fingerprint(run["model"]["base"]), "task": run["task"], "settings": settings,
            "seed": run["config"]["seed"], "device": device_type, "corpusmill": __version__}


def _file_digests(folder: Path) -> dict[str, str]:
    return {f.relative_to(folder).as_posix(): hashlib.sha256(f.read_bytes()).hexdigest()
            for f in sorted(folder.rglob("*")) if f.is_file() and f.name != CACHE_ENTRY}


CACHE_ENTRY = "cache-entry.json"


def _entry_problem(entry: Path, key: dict) -> str | None:
    """Why a cached base head cannot be used (None: it can): missing, another key, unfinished, or files
    that differ from the digests recorded when it was stored."""
    if not entry.is_dir():
        return "not cached"
    try:
        meta = json.loads((entry / CACHE_ENTRY).read_text())
        run = json.loads((entry / "run.json").read_text())
    except (OSError, ValueError) as err:
        return f"unreadable ({type(err).__name__})"
    if meta.get("key") != key:
        return "stored under another key"
    if run.get("status") != "completed":
        return f"unfinished (status: {run.get('status')})"
    files = meta.get("files") or {}
    now = _file_digests(entry)
    if not files or now != files:
        changed = sorted(set(files) ^ set(now) | {f for f in files if now.get(f) != files[f]})
        return f"corrupt: {len(changed)} file(s) differ from when it was stored ({', '.join(changed[:3])})"
    return None


def base_head_run(run_dir: Path, run: dict, store: str | None, device_type: str = "cpu", say=None) -> tuple[Path, dict]:
    """The frozen-encoder + linear-head baseline of a classification run: (its run folder, a cache note).

    Cached in ``$CORPUSMILL_CACHE/base-heads/<24 hex of sha256(key)>/`` (see :func:`base_head_key`),
    with a sha256 of every file; an entry that is unreadable, unfinished or whose files changed is
    trained again and replaced. A new entry is trained in a temporary folder and renamed into place,
    so an interrupted evaluation never leaves half an entry."""
    from corpusmill.remote_store import cache_base
    from corpusmill.train.config import TrainConfig
    from corpusmill.train.run import train

    say = say or (lambda *a, **k: None)
    key = base_head_key(run, device_type)
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]
    entry = cache_base() / "base-heads" / digest
    problem = _entry_problem(entry, key)
    if problem is None:
        return entry, {"path": str(entry), "key": digest, "status": "reused"}
    status = "trained" if problem == "not cached" else "retrained"
    if status == "retrained":
        say(f"cached base head at {entry} is {problem}: training it again")
    tmp = entry.with_name(f"{digest}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    # the base is the pre-trained encoder: a continued run's starting weights are the "previous" baseline
    cfg = TrainConfig(**{**run["config"], "method": "head", "output": str(tmp), "merge": False, "resume": None,
                         "from_run": None, "new_rows_only": False, "store": store,
                         "dataset": run["dataset"]["reference"]})
    try:
        train(cfg)
        shutil.rmtree(tmp / "checkpoints", ignore_errors=True)  # resumable state: not needed to score
        (tmp / CACHE_ENTRY).write_text(json.dumps({"key": key, "files": _file_digests(tmp)}, indent=2) + "\n")
        shutil.rmtree(entry, ignore_errors=True)
        os.replace(tmp, entry)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    note = {"path": str(entry), "key": digest, "status": status}
    if status == "retrained":
        note["reason"] = problem
    return entry, note


def untrained_outputs(run: dict, model, model_dir: Path, inputs: dict):
    """Logits of what the run started from, on ``inputs``: the adapter switched off, or the base weights
    with the head initialised as training initialised it."""
    import torch

    from corpusmill.train import modeling
    from corpusmill.train.loop import forward_logits

    if hasattr(model, "disable_adapter"):
        with torch.no_grad(), model.disable_adapter():
            return forward_logits(model, inputs).float()
    torch.manual_seed(run["config"]["seed"])
    base = modeling.load_base(run["model"]["base"], run["task"], labels=run.get("labels"),
                              trust_remote_code=run["config"]["trust_remote_code"])
    base.to(next(model.parameters()).device).eval()
    with torch.no_grad():
        out = forward_logits(base, inputs).float()
    del base
    return out


def check_loaded(run: dict, model, model_dir: Path, ex, pad_id: int, causal: bool, device) -> dict:
    """Raise when the fine-tuned model's outputs equal the untrained model's on the first rows."""
    import torch

    from corpusmill.train.data import collate
    from corpusmill.train.loop import forward_logits

    batch = collate(ex, range(min(8, len(ex))), pad_id, causal)
    inputs = batch.to_torch(device)
    with torch.no_grad():
        tuned = forward_logits(model, inputs).float()
    before = untrained_outputs(run, model, model_dir, inputs)
    mask = inputs.get("attention_mask")
    diff = (tuned - before).abs()
    if mask is not None and causal:
        diff = diff * mask.unsqueeze(-1)
    worst = float(diff.max())
    if worst <= 1e-6:
        raise EvalError(
            f"the fine-tuned model at {model_dir} gives the same outputs as the untrained model on {batch.input_ids.shape[0]} "
            f"rows (largest logit difference {worst:.2e}): the adapter/weights did not load, or training changed nothing. "
            "Check that the folder holds the adapter written by 'corpusmill train' for this base model")
    return {"rows_checked": int(batch.input_ids.shape[0]), "max_abs_logit_difference": worst}


# ----------------------------------------------------------------------------- scoring


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def score_forward(model, ex, pad_id: int, causal: bool, device, batch_size: int) -> dict:
    """One pass over the rows: per-row predictions (classification) or summed NLL and target counts
    (causal-lm), with per-batch latency, throughput and peak memory."""
    import torch
    import torch.nn.functional as F

    from corpusmill.train.data import IGNORE, collate
    from corpusmill.train.loop import forward_logits
    from corpusmill.train.system import PeakMemory

    model.eval()
    order = np.argsort(ex.lengths, kind="stable")
    preds = np.zeros(len(ex), dtype=np.int64)
    nll = np.zeros(len(ex))
    ntok = np.zeros(len(ex))
    latencies, tokens = [], 0
    with PeakMemory(device) as peak, torch.inference_mode():
        forward_logits(model, collate(ex, order[:batch_size], pad_id, causal).to_torch(device))  # warm-up, untimed
        for start in range(0, len(ex), batch_size):
            rows = order[start : start + batch_size]
            batch = collate(ex, rows, pad_id, causal)
            inputs = batch.to_torch(device)
            _sync(device)
            t0 = time.perf_counter()
            logits = forward_logits(model, inputs)
            _sync(device)
            latencies.append(time.perf_counter() - t0)
            tokens += batch.n_tokens
            if causal:
                lg, y = logits[:, :-1].float(), inputs["labels"][:, 1:]
                tok = F.cross_entropy(lg.reshape(-1, lg.size(-1)), y.reshape(-1), ignore_index=IGNORE,
                                      reduction="none").view(y.shape)
                nll[rows] = tok.sum(1).cpu().numpy()
                ntok[rows] = (y != IGNORE).sum(1).cpu().numpy()
            else:
                preds[rows] = logits.argmax(-1).cpu().numpy()
    seconds = sum(latencies)
    speed = {
        "latency_ms_per_row": 1000 * seconds / max(len(ex), 1),
        "latency_ms_p50_batch": 1000 * float(np.percentile(latencies, 50)),
        "latency_ms_p95_batch": 1000 * float(np.percentile(latencies, 95)),
        "rows_per_second": len(ex) / seconds if seconds else None,
        "tokens_per_second": tokens / seconds if seconds else None,
        "peak_memory_mb": peak.mb,
        "batch_size": batch_size,
    }
    return {"preds": preds, "nll": nll, "ntok": ntok, "speed": speed}


def generate_answers(model, tokenizer, prompts: list[str], device, batch_size: int, max_new_tokens: int) -> tuple[list[str], dict]:
    """Greedy answers to the prompts (left-padded batches), and their speed."""
    import torch

    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    out, seconds, new_tokens = [], 0.0, 0
    try:
        for start in range(0, len(prompts), batch_size):
            enc = tokenizer(prompts[start : start + batch_size], return_tensors="pt", padding=True).to(device)
            _sync(device)
            t0 = time.perf_counter()
            with torch.inference_mode():
                gen = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                                     pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
            _sync(device)
            seconds += time.perf_counter() - t0
            new = gen[:, enc["input_ids"].shape[1]:]
            new_tokens += int((new != tokenizer.pad_token_id).sum())
            out += tokenizer.batch_decode(new, skip_special_tokens=True)
    finally:
        tokenizer.padding_side = side
    return out, {"generation_seconds": seconds, "generated_tokens_per_second": new_tokens / seconds if seconds else None}


# ----------------------------------------------------------------------------- the command


def evaluate_run(run_dir, *, baseline: str = "base", split: str = "test", report: str | Path, store: str | None = None,
                 max_rows: int = 0, batch_size: int = 16, bootstrap: int = 1000, seed: int = 0,
                 max_new_tokens: int = 64, device: str = "auto", general: str | Path | None = None,
                 console=None) -> dict:
    """``general``: a general-domain text file; base and fine-tuned perplexity on it goes into the
    report's ``general`` section (causal-lm runs; see corpusmill.evaluate.forgetting)."""
    import torch

    from corpusmill.store import Store
    from corpusmill.train import modeling
    from corpusmill.train.config import TrainConfig
    from corpusmill.train.run import build_examples, load_run
    from corpusmill.train.system import code_version, hardware, library_versions, resolve_device

    started = time.perf_counter()
    run_dir = Path(run_dir)
    run = load_run(run_dir)
    cfg = TrainConfig(**run["config"])
    causal = cfg.task == "causal-lm"
    dev = resolve_device(device)
    store_root = store or run["dataset"]["store"]
    version = Store(store_root).resolve(run["dataset"]["reference"])  # the exact version the run trained on
    if split not in version.splits():
        raise EvalError(f"{version.ref} has no split '{split}' (splits: {', '.join(version.splits())})")
    previous = None
    if baseline != "base":
        previous = load_run(baseline)
        if previous["task"] != run["task"]:
            raise EvalError(f"--baseline {baseline} is a {previous['task']} run; {run_dir} is {run['task']}")

    if general and not causal:
        raise EvalError(f"--general measures language-model perplexity; {run_dir} is a {cfg.task} run")
    tokenizer = modeling.load_tokenizer(str(run_dir / "model"), cfg.trust_remote_code)
    general_ex = general_texts = None
    if general:
        from corpusmill.evaluate import forgetting

        general_texts = forgetting.read_general_text(general)
        general_ex = forgetting.general_examples(tokenizer, general_texts, cfg.max_seq_len)
    ex, labels, fmt, rows_read = build_examples(cfg, version, tokenizer, split, max_rows or 0, labels=run.get("labels"))
    if len(ex) == 0:
        raise EvalError(f"{version.ref} split '{split}' has no usable rows for {cfg.task}")
    pad_id = int(tokenizer.pad_token_id)
    say = console.print if console else (lambda *a, **k: None)
    say(f"evaluating on {version.ref} split '{split}': {len(ex):,} rows"
        + (f" (a stable sample of {version.manifest['splits'][split]:,})" if max_rows else ""))
    timings = {"load": time.perf_counter() - started}
    head_note = None

    def load(name: str):
        if name == "fine_tuned":
            return modeling.load_trained(run, run_dir / "model")
        if name == "previous":
            return modeling.load_trained(previous, Path(baseline) / "model")
        if causal:
            return modeling.load_base(run["model"]["base"], cfg.task, trust_remote_code=cfg.trust_remote_code)
        nonlocal head_note
        head_dir, head_note = base_head_run(run_dir, run, store_root, dev.type, say)
        say(f"base = frozen encoder + linear head trained on the same rows and steps ({head_note['status']}: {head_dir})")
        return modeling.load_trained(json.loads((head_dir / "run.json").read_text()), head_dir / "model")

    names = ["base", "fine_tuned"] + (["previous"] if previous else [])
    scored: dict[str, dict] = {}
    guard = None
    for name in names:
        t0 = time.perf_counter()
        model = load(name).to(dev).eval()
        if name == "fine_tuned":
            guard = check_loaded(run, model, run_dir / "model", ex, pad_id, causal, dev)
        result = score_forward(model, ex, pad_id, causal, dev, batch_size)
        if causal and fmt == "prompt_response":
            answers, gen_speed = generate_answers(model, tokenizer, ex.prompts, dev, batch_size, max_new_tokens)
            result["answers"] = answers
            result["speed"].update(gen_speed)
        if not causal and name == "previous" and previous.get("labels") != labels:
            result["preds"] = _remap(result["preds"], previous["labels"], labels)
        if general_ex is not None:
            result["general"] = score_forward(model, general_ex, pad_id, True, dev, batch_size)
        scored[name] = result
        del model
        if dev.type == "cuda":
            torch.cuda.empty_cache()
        timings[name] = time.perf_counter() - t0
        say(f"scored {name}")

    t0 = time.perf_counter()
    idx = M.resamples(len(ex), bootstrap, seed)
    sets = {name: _metric_set(r, ex, labels, causal) for name, r in scored.items()}
    models_out = {}
    for name, r in scored.items():
        entry = sets[name].with_intervals(idx)
        if not causal:
            k = len(labels) + (1 if (r["preds"] >= len(labels)).any() else 0)
            cm = M.confusion(np.asarray(ex.labels), r["preds"], k)
            entry["confusion_matrix"] = {"labels": labels + (["(other)"] if k > len(labels) else []), "rows_true_columns_predicted": cm.tolist()}
        entry.update({k: v for k, v in r["speed"].items()})
        if "answers" in r:
            entry["examples"] = [{"prompt": p, "reference": ref, "answer": a}
                                 for p, ref, a in list(zip(ex.prompts, ex.references, r["answers"]))[:5]]
        models_out[name] = entry
    higher = {m: m not in LOWER_IS_BETTER for m in sets["base"].point}
    comparison = {"fine_tuned_vs_base": M.paired_bootstrap(sets["base"], sets["fine_tuned"], idx, higher)}
    if previous:
        comparison["fine_tuned_vs_previous"] = M.paired_bootstrap(sets["previous"], sets["fine_tuned"], idx, higher)
    if not causal:
        y = np.asarray(ex.labels)
        comparison["fine_tuned_vs_base"]["mcnemar_accuracy"] = M.mcnemar(scored["base"]["preds"] == y, scored["fine_tuned"]["preds"] == y)
        if previous:
            comparison["fine_tuned_vs_previous"]["mcnemar_accuracy"] = M.mcnemar(scored["previous"]["preds"] == y,
                                                                                 scored["fine_tuned"]["preds"] == y)
    timings["bootstrap"] = time.perf_counter() - t0
    timings = {k: round(v, 3) for k, v in timings.items()}
    timings["total"] = round(time.perf_counter() - started, 3)
    say("time: " + " | ".join(f"{k.replace('_', '-')} {v:.1f} s" for k, v in timings.items())
        + (f" (base head {head_note['status']})" if head_note else ""))
    out = {
        "format": REPORT_FORMAT,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "run": str(run_dir.resolve()),
        "task": cfg.task,
        "format_of_examples": fmt,
        "dataset": version.ref,
        "split": split,
        "rows": len(ex),
        "rows_in_split": version.manifest["splits"][split],
        "rows_sampled": bool(max_rows) and rows_read < version.manifest["splits"][split],
        "data_accounting": {"rows_read": rows_read, **dict(ex.accounting)},
        "models": models_out,
        "model_sources": {"base": _base_definition(run), "fine_tuned": str((run_dir / "model").resolve()),
                          **({"previous": str((Path(baseline) / "model").resolve())} if previous else {})},
        "comparison": comparison,
        "disagreements": disagreements(version, split, ex, scored, labels, causal),
        "bootstrap": {"resamples": bootstrap, "seed": seed, "confidence": 0.95,
                      "method": "percentile intervals over rows resampled with replacement; paired tests share resamples"},
        "adapter_check": guard,
        "base_head": head_note,
        "timings": {**timings, "unit": "seconds",
                    "parts": "load: dataset rows and tokenizer; base/fine_tuned/previous: model obtained (base head "
                             "trained or reused), loaded, checked and scored; bootstrap: intervals and paired tests"},
        "general": forgetting.forgetting_report(general, {n: r["general"] for n, r in scored.items()}, len(general_texts),
                                                bootstrap, seed) if general_ex is not None else None,
        "hardware": hardware(dev),
        "libraries": library_versions(),
        "code_version": code_version(),
    }
    report = Path(report)
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(json.dumps(out, indent=2) + "\n")
    from corpusmill.report.evaluation import write_eval_html

    write_eval_html(out, report.with_suffix(".html"))
    return out


def disagreements(version, split: str, ex, scored: dict, labels, causal: bool, limit: int = DISAGREEMENTS) -> list[dict]:
    """Rows where base and fine-tuned disagree, in row order: a different predicted class, a
    different generated answer, or (plain text) the largest change in loss per token."""
    base, tuned = scored["base"], scored["fine_tuned"]
    if not causal:
        rows = np.flatnonzero(base["preds"] != tuned["preds"])[:limit]
    elif "answers" in base:
        rows = np.asarray([i for i, (a, b) in enumerate(zip(base["answers"], tuned["answers"])) if a != b][:limit], dtype=np.int64)
    else:
        change = tuned["nll"] / np.maximum(tuned["ntok"], 1) - base["nll"] / np.maximum(base["ntok"], 1)
        rows = np.argsort(-np.abs(change), kind="stable")[:limit]
    if not len(rows):
        return []
    import pyarrow as pa
    import pyarrow.compute as pc

    wanted = [ex.ids[i] for i in rows]
    table = version.read_split(split, columns=["id", "text"])
    table = table.filter(pc.is_in(table.column("id"), value_set=pa.array(wanted, pa.string())))
    text = dict(zip(table.column("id").to_pylist(), table.column("text").to_pylist()))
    name = (lambda k: labels[k] if k < len(labels) else "(other)")
    out = []
    for i in rows.tolist():
        row = {"id": ex.ids[i], "text": text.get(ex.ids[i])}
        if not causal:
            row["label"] = name(int(ex.labels[i]))
            row["predicted"] = {m: name(int(r["preds"][i])) for m, r in scored.items()}
        elif "answers" in base:
            row.update(prompt=ex.prompts[i], reference=ex.references[i], answers={m: r["answers"][i] for m, r in scored.items()})
        else:
            row["loss_per_token"] = {m: float(r["nll"][i] / max(r["ntok"][i], 1)) for m, r in scored.items()}
        out.append(row)
    return out


def _remap(preds: np.ndarray, their: list[str], ours: list[str]) -> np.ndarray:
    """A previous run's class ids in this run's label order; labels it has and we lack go to len(ours)."""
    pos = {name: i for i, name in enumerate(ours)}
    table = np.asarray([pos.get(name, len(ours)) for name in their])
    return table[preds]


def _metric_set(r: dict, ex, labels, causal: bool) -> M.MetricSet:
    if not causal:
        return M.classification_set(np.asarray(ex.labels), r["preds"], len(labels) + 1)
    ppl = M.perplexity_set(r["nll"], r["ntok"])
    if "answers" not in r:
        return ppl
    gen = M.generation_set(r["answers"], ex.references)
    return M.MetricSet({**ppl.point, **gen.point}, lambda idx: {**ppl.resampled(idx), **gen.resampled(idx)})


def _base_definition(run: dict) -> str:
    if run["task"] == "classification":
        return (f"{run['model']['base']} frozen, with a linear head trained on the same training rows and steps "
                "(method: head; cached in $CORPUSMILL_CACHE/base-heads/)")
    return f"{run['model']['base']} as pre-trained"


# ----------------------------------------------------------------------------- the table


TABLE_METRICS = {
    "classification": ["accuracy", "macro_f1", "macro_precision", "macro_recall", "micro_f1"],
    "causal-lm": ["perplexity", "loss", "exact_match", "bleu", "chrf"],
}
SPEED = [("rows_per_second", "rows/s", "{:,.1f}"), ("tokens_per_second", "tokens/s", "{:,.0f}"),
         ("latency_ms_per_row", "latency ms/row", "{:,.2f}"), ("peak_memory_mb", "peak memory MiB", "{:,.0f}")]


def _p(p: float, resamples: int) -> str:
    # a bootstrap p-value cannot resolve below 2/resamples
    return f"p<{2 / resamples:.3g}" if p == 0 else f"p={p:.3f}"


def markdown_table(report: dict) -> str:
    """Metrics with intervals per model, and the fine-tuned model's difference to each baseline."""
    names = list(report["models"])
    resamples = report["bootstrap"]["resamples"]
    comps = list(report["comparison"])
    head = ["metric"] + names + [c.replace("fine_tuned_vs_", "fine-tuned - ") + " (95% CI, p)" for c in comps]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for m in TABLE_METRICS[report["task"]]:
        if m not in report["models"]["base"]:
            continue
        row = [m]
        for n in names:
            v, (lo, hi) = report["models"][n][m], report["models"][n][f"{m}_ci"]
            row.append(f"{v:.4f} [{lo:.4f}, {hi:.4f}]")
        for c in comps:
            d = report["comparison"][c][m]
            lo, hi = d["difference_ci"]
            row.append(f"{d['difference']:+.4f} [{lo:+.4f}, {hi:+.4f}], {_p(d['p_value'], resamples)}")
        lines.append("| " + " | ".join(row) + " |")
    for key, label, fmt in SPEED:
        vals = [report["models"][n].get(key) for n in names]
        lines.append("| " + " | ".join([label] + [fmt.format(v) if v is not None else "-" for v in vals] + [""] * len(comps)) + " |")
    if report.get("general"):
        from corpusmill.evaluate.forgetting import markdown_lines

        lines.append(markdown_lines(report["general"], resamples))
    for c in comps:
        mc = report["comparison"][c].get("mcnemar_accuracy")
        if mc:
            lines.append(f"\nMcNemar ({c.replace('_', ' ')}): {mc['only_second_correct']} rows right only after "
                         f"fine-tuning, {mc['only_first_correct']} only before; p={mc['p_value']:.4f}")
    return "\n".join(lines)
