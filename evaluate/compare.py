"""``corpusmill eval``: the base model, the fine-tuned model (and a previous run) on the same split
of the same dataset version, with 95% bootstrap intervals, paired tests, speed and memory.

Which model is "base":

* causal-lm: the pre-trained model the run started from, as it is.
* classification: a pre-trained encoder has no head for the run's labels, so scoring it "as is"
  would compare against chance. The fair base is the frozen encoder with a linear head trained on
  the same training rows, with the same steps budget, batch size, learning rate and seed (the
  run's config with ``method: head``). It is trained on first use and kept in
  ``RUN_DIR/eval/base-head/`` (reused while the run's config is unchanged). The difference to it
  is what adapting the encoder bought.

Guard: the fine-tuned model must not compute what the untrained model computes. For an adapter,
its outputs are compared with the adapter switched off; for full/head runs, with the base
weights. Identical outputs mean the adapter silently did not load (peft warns and leaves zeros
behind when keys do not match) or training changed nothing: an error, not a report.
"""

from __future__ import annotations

import json
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


def base_head_run(run_dir: Path, run: dict, store: str | None) -> Path:
    """Train (or reuse) the frozen-encoder + linear-head baseline of a classification run."""
    from corpusmill.train.config import TrainConfig
    from corpusmill.train.run import train

    out = run_dir / "eval" / "base-head"
    # the base is the pre-trained encoder: a continued run's starting weights are the "previous" baseline
    cfg = TrainConfig(**{**run["config"], "method": "head", "output": str(out), "merge": False, "resume": None,
                         "from_run": None, "new_rows_only": False,
                         "store": store, "dataset": run["dataset"]["reference"]})
    done = out / "run.json"
    if done.is_file():
        prev = json.loads(done.read_text())
        same = {k: v for k, v in prev.get("config", {}).items() if k not in ("store", "log_every")} == \
               {k: v for k, v in cfg.model_dump(mode="json").items() if k not in ("store", "log_every")}
        if prev.get("status") == "completed" and same:
            return out
    shutil.rmtree(out, ignore_errors=True)
    train(cfg)
    return out


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
    with PeakMemory(device) as peak, torch.no_grad():
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
            with torch.no_grad():
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

    def load(name: str):
        if name == "fine_tuned":
            return modeling.load_trained(run, run_dir / "model")
        if name == "previous":
            return modeling.load_trained(previous, Path(baseline) / "model")
        if causal:
            return modeling.load_base(run["model"]["base"], cfg.task, trust_remote_code=cfg.trust_remote_code)
        say("base = frozen encoder + linear head trained on the same rows and steps (eval/base-head/)")
        head_dir = base_head_run(run_dir, run, store_root)
        return modeling.load_trained(json.loads((head_dir / "run.json").read_text()), head_dir / "model")

    names = ["base", "fine_tuned"] + (["previous"] if previous else [])
    scored: dict[str, dict] = {}
    guard = None
    for name in names:
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
        say(f"scored {name}")

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
                "(method: head; eval/base-head/)")
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
