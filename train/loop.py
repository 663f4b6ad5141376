"""The training loop, in one place (nanoGPT / litgpt style).

One optimizer step:

1. set the learning rate from the schedule (linear warm-up, then cosine down to lr * min_lr_ratio);
2. take ``grad_accum`` micro-batches at the current data position;
3. count the target tokens of all of them (on all ranks): the step's loss is the mean over those
   tokens, so each micro-batch's summed loss is divided by that total before ``backward`` — a
   micro-batch with many targets weighs more than one with few, exactly as one big batch would;
4. clip the global gradient norm, step AdamW, zero the gradients;
5. every ``eval_every`` steps: score the validation split, keep the best weights, stop early
   after ``early_stopping_patience`` evaluations without improvement, warn when validation loss
   keeps rising while training loss falls (overfitting), and tell ``on_eval`` (a sweep's pruner);
6. every ``save_every`` steps: write a resumable checkpoint.

Everything the next step depends on (step, data position, optimizer moments, RNG states) is in a
checkpoint, and the schedule and data order are pure functions of the step and the seed, so a
resumed run repeats the uninterrupted run's losses.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from corpusmill.errors import CorpusmillError
from corpusmill.train import checkpoint
from corpusmill.train.config import TrainConfig
from corpusmill.train.data import IGNORE, Batch, BatchOrder, Examples, collate
from corpusmill.train.distributed import Dist, sync_gradients
from corpusmill.train.modeling import load_trainable_state, save_model, trainable_state
from corpusmill.train.progress import TrainLog
from corpusmill.train.system import PeakMemory


class TrainError(CorpusmillError):
    pass


@dataclass
class Setup:
    """What the loop works on, built by :func:`corpusmill.train.run.train`."""

    cfg: TrainConfig
    model: torch.nn.Module       # what forward/backward run on (DDP-wrapped under torchrun)
    raw_model: torch.nn.Module   # the model itself: saved, evaluated, checkpointed
    tokenizer: object
    train: Examples
    val: Examples | None
    device: torch.device
    causal: bool
    pad_id: int
    out: Path
    dist: Dist = field(default_factory=Dist)
    resume_from: Path | None = None
    #: called after each evaluation with (step, evaluation record); returning True stops the run
    #: there (a sweep prunes a hopeless trial this way). Single process only.
    on_eval: Callable[[int, dict], bool] | None = None


@dataclass
class LoopState:
    """Progress that a checkpoint carries (all JSON)."""

    step: int = 0
    micro_batches: int = 0          # the data position
    tokens: int = 0                 # non-padding input tokens seen (all ranks)
    target_tokens: int = 0
    train_seconds: float = 0.0      # time in training steps, evaluation excluded
    eval_seconds: float = 0.0       # time in evaluations (all of them)
    train_loss: list = field(default_factory=list)  # one value per optimizer step
    step_seconds: list = field(default_factory=list)  # wall time of each step (data, forward, backward, update)
    step_tokens: list = field(default_factory=list)   # non-padding input tokens of each step (all ranks)
    step_cpu_seconds: list = field(default_factory=list)  # process CPU time of each step (this rank)
    evals: list = field(default_factory=list)       # one record per evaluation
    best: dict | None = None        # {"step", "metric", "value"}
    evals_without_improvement: int = 0
    stopped_early: bool = False
    pruned: bool = False            # stopped by on_eval (a sweep's pruner)
    overfitting: dict | None = None  # the first evaluation at which the overfitting warning fired
    model_step: int | None = None   # the step whose weights are in <output>/model
    peak_memory_mb: float | None = None


def total_steps(cfg: TrainConfig, batches_per_epoch: int) -> int:
    if cfg.max_steps:
        return cfg.max_steps
    return max(1, math.ceil(batches_per_epoch * cfg.epochs / cfg.grad_accum))


def eval_interval(cfg: TrainConfig, total: int, eval_rows: int = 0, world: int = 1) -> int:
    """Steps between evaluations: ``eval_every``; 0 = only after the last step.

    For -1 (auto): every ``max(total // 10, ceil(eval_rows / rows per optimizer step))`` steps. The
    first term caps a long run at about 10 evaluations; the second makes the model train on at least
    as many rows between two evaluations as one evaluation scores, and a forward pass without
    gradients costs about a third of a training step's forward + backward, so evaluation stays under
    about a third of the training time. An interval past the last step means one evaluation, after it.
    """
    if cfg.eval_every >= 0:
        return cfg.eval_every
    rows_per_step = cfg.batch_size * cfg.grad_accum * max(world, 1)
    return max(1, total // 10, math.ceil(eval_rows / rows_per_step))


def eval_due(cfg: TrainConfig, every: int, total: int) -> Callable[[int], bool]:
    """Whether a step (before the last, which is always evaluated) is evaluated: every ``every``
    steps; with the auto interval not when the last step is less than half an interval away (an
    evaluation at step 19 of 20 would cost a second pass for one step of training)."""
    auto = cfg.eval_every < 0

    def due(step: int) -> bool:
        return bool(every) and step % every == 0 and not (auto and total - step < every / 2)
    return due


def eval_batch_size(cfg: TrainConfig) -> int:
    """Rows per evaluation batch: ``eval_batch_size``, or 4 x batch_size (no activations are kept)."""
    return cfg.eval_batch_size or 4 * cfg.batch_size


def lr_at(step: int, total: int, cfg: TrainConfig) -> float:
    """Linear warm-up over warmup_ratio of the steps, then cosine decay to lr * min_lr_ratio."""
    warm = int(cfg.warmup_ratio * total)
    if step < warm:
        return cfg.lr * (step + 1) / warm
    progress = (step - warm) / max(1, total - warm)
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig, device: torch.device) -> torch.optim.Optimizer:
    """AdamW; biases and norm weights (1-D tensors) get no weight decay; a new classification head
    may get its own peak learning rate (``head_lr``), kept as a scale of the schedule's lr."""
    groups: dict[tuple[bool, bool], list] = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            head = bool(cfg.head_lr) and bool({"classifier", "score"} & set(name.split(".")))
            groups.setdefault((p.ndim >= 2, head), []).append(p)
    return torch.optim.AdamW(
        [{"params": ps, "weight_decay": cfg.weight_decay if decay else 0.0,
          "lr_scale": cfg.head_lr / cfg.lr if head else 1.0} for (decay, head), ps in groups.items()],
        lr=cfg.lr, betas=tuple(cfg.betas), fused=_fused_adamw(device))


def _fused_adamw(device: torch.device) -> bool:
    """One kernel per step instead of a loop over tensors: CUDA always, CPU from torch 2.4."""
    if device.type == "cuda":
        return True
    major, minor = (int(x) for x in torch.__version__.split(".")[:2])
    return device.type == "cpu" and (major, minor) >= (2, 4)


def autocast_dtype(cfg: TrainConfig, device: torch.device) -> torch.dtype | None:
    if cfg.precision == "fp32" or (cfg.precision == "auto" and device.type != "cuda"):
        return None
    if cfg.precision == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if cfg.precision == "bf16" else torch.float16


def autocast(device: torch.device, dtype: torch.dtype | None):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def forward_logits(model, inputs: dict) -> torch.Tensor:
    kw = {k: v for k, v in inputs.items() if k != "labels"}
    if "position_ids" in kw:
        kw["use_cache"] = False  # with a KV cache, transformers does not derive packed-sequence masks
    return model(**kw).logits


def summed_loss(logits: torch.Tensor, labels: torch.Tensor, causal: bool) -> torch.Tensor:
    """Cross-entropy summed over targets (next tokens, or rows); the caller divides by their count."""
    if causal:
        # shift the labels, not the logits: slicing (B, T, vocab) logits would copy the largest tensor
        labels = F.pad(labels[:, 1:], (0, 1), value=IGNORE)
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), labels.reshape(-1),
                           ignore_index=IGNORE, reduction="sum")


def fit(s: Setup) -> LoopState:
    cfg, dist, device = s.cfg, s.dist, s.device
    order = BatchOrder(len(s.train), cfg.batch_size, cfg.seed, dist.rank, dist.world)
    total = total_steps(cfg, order.batches_per_epoch)
    every = eval_interval(cfg, total, len(s.val) if s.val is not None else 0, dist.world)
    due = eval_due(cfg, every, total)
    optimizer = make_optimizer(s.raw_model, cfg, device)
    amp = autocast_dtype(cfg, device)
    scaler = torch.amp.GradScaler(device.type) if amp == torch.float16 else None
    params = [p for p in s.raw_model.parameters() if p.requires_grad]
    state = LoopState()
    if s.resume_from is not None:
        weights, payload, saved = checkpoint.load(s.resume_from, cfg.model_dump(mode="json"))
        load_trainable_state(s.raw_model, weights)
        optimizer.load_state_dict(payload["optimizer"])
        if scaler is not None and payload["scaler"]:
            scaler.load_state_dict(payload["scaler"])
        checkpoint.set_rng_state(payload["rng"])
        state = LoopState(**saved["loop"])

    log = TrainLog(total, state.step, cfg.log_every, enabled=dist.main)
    if state.step:
        log.line(f"resumed from {s.resume_from} at step {state.step}/{total}")
    if s.val is not None:
        when = f"every {every} steps and after the last" if every < total and due(every) else "after the last step"
        log.line(f"evaluation: {len(s.val):,} rows of '{cfg.eval_split}', {when}, {eval_batch_size(cfg)} rows per batch")
    s.model.train()
    peak = PeakMemory(device)
    with peak:
        while state.step < total and not state.stopped_early:
            t0, c0 = time.perf_counter(), time.process_time()
            lr = lr_at(state.step, total, cfg)
            for group in optimizer.param_groups:
                group["lr"] = lr * group["lr_scale"]
            micro = [collate(s.train, order.batch(state.micro_batches + i), s.pad_id, s.causal)
                     for i in range(cfg.grad_accum)]
            _check_targets(micro, state.step)
            n_targets = dist.sum(sum(b.n_targets for b in micro), device)
            loss_sum = accumulate_gradients(s.model, micro, n_targets, s.causal, device, amp, scaler, dist.world)
            if scaler is not None:
                scaler.unscale_(optimizer)
            if cfg.max_grad_norm:
                torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
            if scaler is not None:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            optimizer.zero_grad(set_to_none=True)

            step_loss = dist.sum(loss_sum.item(), device) / n_targets
            tokens = int(dist.sum(sum(b.n_tokens for b in micro), device))
            dt = time.perf_counter() - t0
            state.step_cpu_seconds.append(round(time.process_time() - c0, 6))
            state.step += 1
            state.micro_batches += cfg.grad_accum
            state.tokens += tokens
            state.target_tokens += int(n_targets)
            state.train_seconds += dt
            state.train_loss.append(step_loss)
            state.step_seconds.append(round(dt, 6))
            state.step_tokens.append(tokens)
            log.step(state.step, step_loss, lr, tokens / dt)

            last = state.step == total
            if s.val is not None and (due(state.step) or last):
                _evaluate_and_select(s, state, amp, log, last, every)
            if (cfg.save_every and state.step % cfg.save_every == 0) or last or state.stopped_early:
                if dist.main:
                    checkpoint.save(s.out / "checkpoints" / f"step-{state.step:06d}", weights=trainable_state(s.raw_model),
                                    optimizer=optimizer, scaler=scaler, keep=cfg.keep_checkpoints,
                                    state={"loop": asdict(state), "config": cfg.model_dump(mode="json")})
                dist.barrier()
    log.close()
    if dist.main and (state.model_step is None or not cfg.keep_best):
        save_model(s.raw_model, s.tokenizer, s.out / "model", cfg.method)
        state.model_step = state.step
    state.peak_memory_mb = max(x for x in (state.peak_memory_mb, peak.mb, 0.0) if x is not None)
    return state


def accumulate_gradients(model, micro: list[Batch], n_targets: float, causal: bool, device, amp, scaler=None,
                         world: int = 1) -> torch.Tensor:
    """Backward over one step's micro-batches; the gradient is that of the mean loss over all
    ``n_targets`` target tokens of the step (all ranks). Returns the summed loss."""
    loss_sum = torch.zeros((), device=device)
    for i, batch in enumerate(micro):
        with sync_gradients(model, i == len(micro) - 1), autocast(device, amp):
            inputs = batch.to_torch(device)
            loss = summed_loss(forward_logits(model, inputs), inputs["labels"], causal)
        # DDP averages gradients over ranks; scaling by world turns that into the global token mean
        scaled = loss * (world / n_targets)
        (scaler.scale(scaled) if scaler else scaled).backward()
        loss_sum += loss.detach()
    return loss_sum


def _check_targets(micro: list[Batch], step: int) -> None:
    for b in micro:
        if b.n_targets == 0:
            shown = ", ".join(b.row_ids[:5]) + (" ..." if len(b.row_ids) > 5 else "")
            raise TrainError(
                f"step {step + 1}: every label of a batch is masked (rows {shown}), so there is nothing to learn "
                f"from it. Usually the prompts fill max_seq_len and the responses were cut off: raise max_seq_len, "
                "shorten the prompts, or drop such rows in the pipeline")


def _evaluate_and_select(s: Setup, state: LoopState, amp, log: TrainLog, last: bool, every: int) -> None:
    cfg = s.cfg
    t0 = time.perf_counter()
    metrics = evaluate(s.raw_model, s.val, s.causal, s.pad_id, s.device, amp,
                       eval_batch_size(cfg), s.raw_model.config.num_labels if not s.causal else 0)
    s.model.train()
    seconds = time.perf_counter() - t0
    state.eval_seconds += seconds
    recent = state.train_loss[-(every or len(state.train_loss)):]
    record = {"step": state.step, "train_loss": float(np.mean(recent)), **metrics,
              "tokens_per_second": round(state.tokens / max(state.train_seconds, 1e-9), 1),
              "eval_rows": len(s.val), "eval_seconds": round(seconds, 3)}
    state.evals.append(record)
    name = cfg.early_stopping_metric
    value = metrics[name]
    lower = name in ("val_loss", "val_perplexity")
    improved = state.best is None or (value < state.best["value"] if lower else value > state.best["value"])
    if improved:
        state.best = {"step": state.step, "metric": name, "value": value}
        state.evals_without_improvement = 0
        if cfg.keep_best and s.dist.main:
            save_model(s.raw_model, s.tokenizer, s.out / "model", cfg.method)
        if cfg.keep_best:
            state.model_step = state.step
    else:
        state.evals_without_improvement += 1
        if cfg.early_stopping_patience and state.evals_without_improvement >= cfg.early_stopping_patience and not last:
            state.stopped_early = True
    shown = " | ".join(f"{k} {v:.4f}" for k, v in metrics.items())
    log.line(f"eval step {state.step} | {shown}" + (" | best" if improved else "")
             + (" | stopping early" if state.stopped_early else ""))
    signal = overfitting_signal(state.evals, cfg.overfit_warning_evals)
    if signal and state.overfitting is None:
        state.overfitting = signal
        log.line(f"warning: {signal['message']}")
    if s.on_eval is not None and s.on_eval(state.step, record) and not last:
        state.stopped_early = state.pruned = True
        log.line(f"eval step {state.step}: stopped by the sweep's pruner")


def overfitting_signal(evals: list[dict], n: int) -> dict | None:
    """The overfitting pattern over the last ``n`` evaluations, or None: validation loss rose at each
    of them while the training loss (mean over each evaluation interval) ended lower than before them."""
    if n <= 0 or len(evals) < n + 1:
        return None
    window = evals[-(n + 1):]
    val = [e["val_loss"] for e in window]
    fit = [e["train_loss"] for e in window]
    if not (all(b > a for a, b in zip(val, val[1:])) and fit[-1] < fit[0]):
        return None
    first, now = window[0], window[-1]
    return {"step": now["step"], "since_step": first["step"], "evaluations": n,
            "val_loss": [first["val_loss"], now["val_loss"]], "train_loss": [first["train_loss"], now["train_loss"]],
            "message": (f"overfitting: validation loss rose at {n} evaluations in a row (step {first['step']} -> "
                        f"{now['step']}: {first['val_loss']:.4f} -> {now['val_loss']:.4f}) while training loss fell "
                        f"({first['train_loss']:.4f} -> {now['train_loss']:.4f}); fewer steps, a lower learning rate, "
                        "more data or more regularisation (weight_decay, lora.dropout) would help")}


@torch.inference_mode()
def evaluate(model, ex: Examples, causal: bool, pad_id: int, device, amp, batch_size: int, num_labels: int) -> dict:
    """Validation loss (token-weighted) and perplexity, or loss, accuracy and macro-F1, in inference
    mode (no autograd bookkeeping). The rows are scored in order of length, so the batch size changes
    only the padding, never which rows are scored."""
    from corpusmill.evaluate.metrics import classification_scores

    model.eval()
    order = np.argsort(ex.lengths, kind="stable")  # similar lengths together: less padding
    loss_sum, n = 0.0, 0
    preds = []
    for start in range(0, len(ex), batch_size):
        batch = collate(ex, order[start : start + batch_size], pad_id, causal)
        inputs = batch.to_torch(device)
        with autocast(device, amp):
            logits = forward_logits(model, inputs)
        loss_sum += summed_loss(logits, inputs["labels"], causal).item()
        n += batch.n_targets
        if not causal:
            preds.append(logits.argmax(-1).cpu().numpy())
    loss = loss_sum / max(n, 1)
    if causal:
        return {"val_loss": loss, "val_perplexity": math.exp(min(loss, 50))}
    y_true = np.asarray(ex.labels)[order]
    scores = classification_scores(y_true, np.concatenate(preds), num_labels)
    return {"val_loss": loss, "val_accuracy": scores["accuracy"], "val_macro_f1": scores["macro_f1"]}
