"""``corpusmill train``: a dataset version in, a run folder out.

::

    <output>/
      run.json                dataset reference and version id, resolved config, code version,
                              seed, hardware, library versions, labels, per-step loss,
                              evaluations, tokens/s, peak memory, data accounting
      hyperparameters.yaml    the resolved config, loadable again with --config
      loss_curves.svg         training loss per step, training and validation loss per evaluation
      model/                  PEFT adapter (lora) or model folder (full, head), safetensors, tokenizer
      merged/                 lora with merge: true: the adapter folded into the base weights
      checkpoints/step-N/     resumable state (see corpusmill.train.checkpoint)
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import yaml

from corpusmill.errors import CorpusmillError
from corpusmill.store import Store, Version, store_location
from corpusmill.train.config import TrainConfig

RUN_FORMAT = 1


def open_version(cfg_store: str | None, ref: str) -> Version:
    from corpusmill.pipelines.config import store_root

    return Store(store_root(cfg_store, None, None)).resolve(ref)


def build_examples(cfg: TrainConfig, version: Version, tokenizer, split: str, max_rows: int,
                   labels: list[str] | None = None, exclude_ids=None):
    """(examples, label names, causal-lm format, rows read) for one split of the version;
    rows whose id is in ``exclude_ids`` (a pyarrow array) are left out before sampling."""
    from corpusmill.train import data

    columns, fmt = data.needed_columns(version, cfg.task, cfg.format, cfg.label_field)
    table = data.read_rows(version, split, columns, 0 if exclude_ids is not None else max_rows, cfg.seed)
    if exclude_ids is not None:
        import pyarrow as pa
        import pyarrow.compute as pc

        table = table.filter(pc.invert(pc.is_in(table.column("id"), value_set=exclude_ids)))
        idx = data.stable_sample(table.column("id").to_pylist(), max_rows, cfg.seed)
        table = table.take(pa.array(idx)) if len(idx) != table.num_rows else table
    if cfg.task == "classification":
        if labels is None:
            values = data.label_values(table, cfg.label_field)
            labels = sorted({v for v in values if v is not None})
            if len(labels) < 2:
                raise data.DataError(f"{version.ref} split '{split}' has {len(labels)} distinct value(s) in "
                                     f"'{cfg.label_field}'; classification needs at least 2")
        ex = data.classification_examples(tokenizer, table, cfg.label_field, {y: i for i, y in enumerate(labels)},
                                          cfg.max_seq_len)
    elif fmt == "text":
        ex = data.text_examples(tokenizer, table, cfg.max_seq_len)
    elif fmt == "prompt_response":
        ex = data.prompt_response_examples(tokenizer, table, cfg.prompt_template, cfg.max_seq_len)
    else:
        ex = data.messages_examples(tokenizer, table, cfg.max_seq_len, cfg.assistant_turns)
    return ex, labels, fmt, table.num_rows


def _accounting(rows: int, ex, packed_rows: int | None = None) -> dict:
    acc = dict(sorted(Counter(ex.accounting).items()))
    out = {"rows_read": rows, "examples": rows - sum(v for k, v in acc.items()
                                                       if k in ("no_label", "label_not_in_train", "no_assistant_turn")),
           **acc}
    if packed_rows is not None:
        out["packed_rows"] = packed_rows
    return out


def check_output(cfg: TrainConfig, out: Path) -> None:
    run_json = out / "run.json"
    if cfg.resume is None and run_json.is_file():
        status = json.loads(run_json.read_text()).get("status")
        hint = "pass --resume auto to continue it" if status != "completed" else "choose another --output"
        raise CorpusmillError(f"{out} already holds a run (status: {status}); {hint}")


def train(cfg: TrainConfig, on_eval=None) -> dict:
    """Train as configured; returns the run record (also written to <output>/run.json).

    ``on_eval(step, evaluation) -> bool`` is called after every evaluation; True stops the run
    there, recorded as ``pruned`` (how a sweep drops hopeless trials)."""
    import torch

    from corpusmill.train import checkpoint, distributed, modeling
    from corpusmill.train.data import data_warnings, pack
    from corpusmill.train.loop import Setup, eval_batch_size, eval_due, eval_interval, fit, total_steps
    from corpusmill.train.system import code_version, hardware, library_versions, resolve_device

    dist = distributed.init()
    device = resolve_device(cfg.device)
    out = cfg.output_dir()
    check_output(cfg, out)
    resume_from = checkpoint.find(cfg.resume, out) if cfg.resume else None
    dist.barrier()  # every rank has checked the folder before rank 0 writes into it
    started = time.perf_counter()

    version = open_version(cfg.store, cfg.dataset)
    tokenizer = modeling.load_tokenizer(cfg.model, cfg.trust_remote_code)
    previous, known_ids = previous_run(cfg)
    train_ex, labels, fmt, train_rows = build_examples(cfg, version, tokenizer, cfg.train_split, cfg.max_train_rows,
                                                       labels=previous["labels"] if previous else None,
                                                       exclude_ids=known_ids)
    val_ex = None
    accounting = {cfg.train_split: _accounting(train_rows, train_ex)}
    if cfg.eval_split:
        if cfg.eval_split not in version.splits():
            raise CorpusmillError(f"{version.ref} has no split '{cfg.eval_split}' (splits: {', '.join(version.splits())}); "
                                  "set eval_split: '' to train without evaluation")
        val_ex, _, _, val_rows = build_examples(cfg, version, tokenizer, cfg.eval_split, cfg.max_eval_rows, labels)
        accounting[cfg.eval_split] = _accounting(val_rows, val_ex)
        if len(val_ex) == 0:
            raise CorpusmillError(f"{version.ref} split '{cfg.eval_split}' has no usable rows for {cfg.task}")
    if len(train_ex) == 0:
        raise CorpusmillError(f"{version.ref} split '{cfg.train_split}' has no usable rows for {cfg.task}")
    warnings = data_warnings(accounting, cfg.max_seq_len)
    if dist.main:
        for w in warnings:  # before training starts: run.json alone is read too late
            print(f"warning: {w}", file=sys.stderr, flush=True)
    if cfg.packing:
        n = len(train_ex)
        train_ex = pack(train_ex, cfg.max_seq_len, cfg.seed)
        accounting[cfg.train_split] = _accounting(train_rows, train_ex, packed_rows=len(train_ex))
        accounting[cfg.train_split]["examples"] = n

    torch.manual_seed(cfg.seed)
    start = str(Path(cfg.from_run) / "model") if previous and cfg.method != "lora" else cfg.model
    model = modeling.load_base(start, cfg.task, labels=labels, trust_remote_code=cfg.trust_remote_code)
    model = modeling.prepare(model, cfg)
    if previous and cfg.method == "lora":
        modeling.load_adapter_weights(model, Path(cfg.from_run) / "model")
    model = model.to(device)
    if cfg.packing:
        modeling.check_packing(model, device)
    total_params, trainable_params = modeling.count_parameters(model)

    record = {
        "format": RUN_FORMAT,
        "status": "running",
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "task": cfg.task,
        "format_of_examples": fmt,
        "dataset": {"reference": version.ref, "requested": cfg.dataset, "name": version.dataset, "version": version.id,
                    "store": store_location(version), "splits": version.manifest["splits"]},
        "model": {"base": cfg.model, "method": cfg.method, "architecture": type(model).__name__,
                  "parameters": total_params, "trainable_parameters": trainable_params},
        "labels": labels,
        "config": cfg.model_dump(mode="json"),
        "seed": cfg.seed,
        "code_version": code_version(),
        "hardware": hardware(device, dist.world),
        "libraries": library_versions(),
        "data_accounting": accounting,
        "data_warnings": warnings,
        "from_run": {"run": str(Path(cfg.from_run).resolve()), "dataset": previous["dataset"]["reference"],
                     "new_rows_only": cfg.new_rows_only} if previous else None,
    }
    if dist.main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "hyperparameters.yaml").write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
        _write(out / "run.json", record)

    setup = Setup(cfg=cfg, model=distributed.wrap(model, dist, device), raw_model=model, tokenizer=tokenizer,
                  train=train_ex, val=val_ex, device=device, causal=cfg.task == "causal-lm",
                  pad_id=int(tokenizer.pad_token_id), out=out, dist=dist, resume_from=resume_from, on_eval=on_eval)
    try:
        state = fit(setup)
    finally:
        distributed.shutdown(dist)
    steps_planned = total_steps(cfg, setup_batches_per_epoch(train_ex, cfg, dist))
    evaluation = None
    if val_ex is not None:
        every = eval_interval(cfg, steps_planned, len(val_ex), dist.world)
        every = every if eval_due(cfg, every, steps_planned)(every) else 0  # 0: only after the last step
        in_split = version.manifest["splits"].get(cfg.eval_split, 0)
        evaluation = {"split": cfg.eval_split, "rows": len(val_ex), "rows_in_split": in_split,
                      "sampled": val_rows < in_split, "every": every if every and every < steps_planned else None,
                      "ids_sha256": hashlib.sha256("\n".join(sorted(val_ex.ids)).encode()).hexdigest(),
                      "batch_size": eval_batch_size(cfg), "evaluations": len(state.evals),
                      "seconds": round(state.eval_seconds, 3)}
    record.update({
        "status": "completed",
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "steps": state.step,
        "steps_planned": steps_planned,
        "stopped_early": state.stopped_early,
        "pruned": state.pruned,
        "overfitting": state.overfitting,
        "resumed_from": str(resume_from) if resume_from else None,
        "train_loss": state.train_loss,
        "step_seconds": state.step_seconds,
        "step_tokens": state.step_tokens,
        "step_cpu_seconds": state.step_cpu_seconds,
        "evals": state.evals,
        "evaluation": evaluation,
        "best": state.best,
        "summary": {
            "tokens": state.tokens,
            "target_tokens": state.target_tokens,
            "train_seconds": round(state.train_seconds, 3),
            "eval_seconds": round(state.eval_seconds, 3),
            "tokens_per_second": round(state.tokens / max(state.train_seconds, 1e-9), 1),
            "peak_memory_mb": state.peak_memory_mb,
            "wall_seconds": round(time.perf_counter() - started, 3),
            "final_train_loss": state.train_loss[-1] if state.train_loss else None,
        },
        "outputs": {"model": "model", "model_step": state.model_step, "merged": None,
                    "checkpoints": "checkpoints", "loss_curves": "loss_curves.svg"},
    })
    if dist.main:
        if cfg.merge:
            merged = modeling.load_trained(record, out / "model")
            modeling.save_merged(merged, tokenizer, out / "merged")
            record["outputs"]["merged"] = "merged"
        (out / "loss_curves.svg").write_text(loss_curves_svg(record))
        _write(out / "run.json", record)
    return record


def previous_run(cfg: TrainConfig):
    """(run record, ids of its dataset version or None) for ``from_run``; (None, None) without it."""
    if not cfg.from_run:
        return None, None
    prev = load_run(cfg.from_run)
    pc_ = prev["config"]
    problems = [f"{key}: this run has {getattr(cfg, key)!r}, {cfg.from_run} was trained with {pc_[key]!r}"
                for key in ("model", "task", "method") if pc_[key] != getattr(cfg, key)]
    if cfg.method == "lora" and pc_["lora"] != cfg.lora.model_dump(mode="json"):
        problems.append(f"lora: the adapter of {cfg.from_run} has {pc_['lora']}, this run asks for {cfg.lora.model_dump(mode='json')}")
    if problems:
        raise CorpusmillError("--from-run: continue only the same model, task and method; " + "; ".join(problems))
    if not cfg.new_rows_only:
        return prev, None
    return prev, Store(prev["dataset"]["store"]).resolve(prev["dataset"]["reference"]).ids()


def loss_curves_svg(record: dict) -> str:
    """Training loss per step, and training and validation loss at each evaluation (the overfitting view)."""
    from corpusmill.train.svg import Panel, Series, figure

    steps = list(range(1, len(record["train_loss"]) + 1))
    evals = record["evals"]
    panel = Panel("optimizer step", "loss", [
        Series("train (step)", steps, record["train_loss"], colour="#c6dbef"),
        Series("train (eval)", [e["step"] for e in evals], [e["train_loss"] for e in evals], colour="#1f77b4"),
        Series("validation", [e["step"] for e in evals], [e["val_loss"] for e in evals], colour="#d62728"),
    ])
    title = f"{record['dataset']['reference']} {record['model']['method']}: loss"
    if record.get("overfitting"):
        title += f" (overfitting warning at step {record['overfitting']['step']})"
    return figure([panel], title, panel_width=560, panel_height=300, columns=1)


def setup_batches_per_epoch(ex, cfg: TrainConfig, dist) -> int:
    from corpusmill.train.data import BatchOrder

    return BatchOrder(len(ex), cfg.batch_size, cfg.seed, dist.rank, dist.world).batches_per_epoch


def _write(path: Path, record: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(record, indent=2, default=str) + "\n")
    os.replace(tmp, path)


def load_run(run_dir: str | Path) -> dict:
    path = Path(run_dir) / "run.json"
    if not path.is_file():
        raise CorpusmillError(f"{run_dir} is not a run folder (no run.json); 'corpusmill train --output DIR' writes one")
    run = json.loads(path.read_text())
    if run.get("status") != "completed":
        raise CorpusmillError(f"{run_dir}: the run did not finish (status: {run.get('status')}); resume it with "
                              f"'corpusmill train --config {Path(run_dir) / 'hyperparameters.yaml'} --resume auto'")
    return run
