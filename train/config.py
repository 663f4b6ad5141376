"""The trainer's options: one typed, validated object, saved next to what it produced.

Defaults < ``--config train.yaml`` < command-line flags. Every field below is also a flag
(``max_seq_len`` -> ``--max-seq-len``, ``lora.r`` -> ``--lora-r``), generated from this model, so
the help text, the YAML keys and docs/train-and-eval.md cannot drift apart.

This module imports no torch: ``corpusmill`` builds its parser from it for every command.
"""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from corpusmill.datasets import DEFAULT_PROMPT_TEMPLATE, parse_prompt_template, template_from_flag
from corpusmill.errors import ConfigError, CorpusmillError

TASKS = ("classification", "causal-lm")

#: what the options left null (lr, head_lr, warmup_ratio, batch_size) become, per task. Classification's
#: were chosen by measurement (bench/bench_train_defaults.py, docs/train-and-eval.md "Defaults"): with
#: the earlier 2e-4 for adapters and head alike, a 60-step run predicted one class; lr applies to
#: method lora only (full and head keep 2e-4); the head's rate is HEAD_LR_FACTOR x lr
TASK_DEFAULTS: dict[str, dict[str, Any]] = {
    "classification": {"lr": 1e-3, "warmup_ratio": 0.1, "batch_size": 16},
    "causal-lm": {"lr": 2e-4, "head_lr": 0.0, "warmup_ratio": 0.05, "batch_size": 8},
}
#: classification's head_lr left null is this many times lr (3e-2 at the LoRA default 1e-3), so a sweep
#: or a hand-set lr moves the head's rate with it
HEAD_LR_FACTOR = 30


class LoraSettings(BaseModel):
    """Low-rank adapters (peft). Used when ``method: lora``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    r: int = Field(8, ge=1, description="adapter rank; 8 is enough for most single-task fine-tunes, raise it for many tasks or large shifts")
    alpha: float = Field(16.0, gt=0, description="scale of the adapter update is alpha/r; 2*r is the common choice")
    dropout: float = Field(0.05, ge=0, lt=1, description="dropout on the adapter input during training")
    target_modules: list[str] | None = Field(
        None, description="module names that get adapters; null = per architecture: attention query/key/value "
                          "(and output) projections, e.g. q_proj,k_proj,v_proj,o_proj for Llama, c_attn,c_proj for "
                          "GPT-2, query,key,value for BERT")


class TrainConfig(BaseModel):
    """Everything a training run depends on. Unknown keys are errors; values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # -- what
    dataset: str = Field(description="dataset version to train on: NAME, NAME@VERSION or NAME@TAG (resolved to a version id, recorded in run.json)")
    model: str = Field(description="base model: a local folder or a Hugging Face hub id, loaded with from_pretrained")
    task: Literal[TASKS] = Field(description="classification: text -> label; causal-lm: text, prompt/response or chat messages")  # type: ignore[valid-type]
    store: str | None = Field(None, description="dataset store, a folder or a URL (s3://bucket/corpora); null = $CORPUSMILL_STORE, then ./corpusmill-store")
    output: str | None = Field(None, description="run folder (run.json, model/, checkpoints/); null = runs/<dataset>-<task>")
    seed: int = Field(0, description="seeds the head initialisation, dropout, subsampling and the data order of every epoch")

    # -- data
    train_split: str = Field("train", description="split the model is fitted on")
    eval_split: str = Field("validation", description="split evaluated every eval_every steps (early stopping, best model); '' = none")
    label_field: str = Field("label", description="classification: the label column, or meta.KEY for a field kept in the meta JSON column (e.g. meta.lang)")
    format: Literal["auto", "text", "prompt_response", "messages"] = Field(
        "auto", description="causal-lm input: auto = messages if the version has that column, else prompt/response, else text")
    prompt_template: str = Field(
        DEFAULT_PROMPT_TEMPLATE, description="prompt/response: how the prompt is written before the response; the loss covers only the "
                                             "response and EOS. Fields {prompt} and {system}; a row's system prompt goes where {system} "
                                             "is, or before the prompt with a blank line when the template has no {system}. "
                                             "'datasets export --format trl --prompt-template' writes the same text")
    assistant_turns: Literal["all", "last"] = Field(
        "all", description="messages: which assistant turns the loss covers; all = every assistant turn, last = only the "
                           "conversation's last one (earlier turns are context, as at inference)")
    max_seq_len: int = Field(512, ge=8, description="tokens per example (per packed row when packing); longer rows are cut on the right and counted in run.json")
    packing: bool = Field(False, description="causal-lm: concatenate examples into rows of max_seq_len; attention never crosses an example boundary (position ids restart per example)")
    max_train_rows: int = Field(0, ge=0, description="use at most this many training rows, a stable sample by row id and seed; 0 = all")
    max_eval_rows: int = Field(512, ge=0, description="evaluate during training on at most this many rows of eval_split, a stable "
                                                      "sample by a hash of (seed, row id): the same rows at every evaluation and "
                                                      "whatever the batch size; 0 = the whole split")

    # -- method
    method: Literal["lora", "full", "head"] = Field(
        "lora", description="lora: adapters + (classification) the head; full: every weight; head: classification head only, encoder frozen (the evaluator's fair baseline)")
    lora: LoraSettings = Field(LoraSettings(), description="adapter settings (method: lora)")
    merge: bool = Field(False, description="lora: also write the adapter merged into the base weights to <output>/merged")
    trust_remote_code: bool = Field(False, description="allow a model folder's own Python code to run; off unless you trust the source")

    # -- optimisation
    epochs: float = Field(1.0, gt=0, description="passes over the training rows; ignored when max_steps > 0")
    max_steps: int = Field(0, ge=0, description="optimizer steps; 0 = as many as epochs take")
    batch_size: int | None = Field(None, ge=1, description="rows per micro-batch per device; null = per task: 16 for classification, 8 for causal-lm")
    grad_accum: int = Field(1, ge=1, description="micro-batches per optimizer step; the loss is weighted by target tokens across them")
    lr: float | None = Field(None, gt=0, description="peak learning rate; null = per task: 1e-3 for classification with LoRA (a 60-step run "
                                                     "learns; see docs/train-and-eval.md, Defaults), else 2e-4. 1e-4..5e-4 suits LoRA "
                                                     "on a causal LM, 1e-5..5e-5 full fine-tuning")
    head_lr: float | None = Field(None, ge=0, description="classification: learning rate of the newly initialised head (peak, same "
                                                          "schedule); null = 30 x lr for classification (3e-2 with the LoRA "
                                                          "default lr: a fresh head learns faster than adapters may "
                                                          "move), unused for causal-lm; 0 = lr")
    min_lr_ratio: float = Field(0.1, ge=0, le=1, description="the cosine schedule ends at lr * min_lr_ratio")
    warmup_ratio: float | None = Field(None, ge=0, lt=1, description="fraction of the steps with linear warm-up from 0 to lr; null = per "
                                                                    "task: 0.1 for classification, 0.05 for causal-lm")
    weight_decay: float = Field(0.0, ge=0, description="AdamW decoupled weight decay (not applied to biases and norms)")
    betas: tuple[float, float] = Field((0.9, 0.999), description="AdamW betas")
    max_grad_norm: float = Field(1.0, ge=0, description="clip the global gradient norm to this; 0 = no clipping")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto", description="autocast dtype; auto = bf16 on a GPU that supports it, else fp16 on GPU, fp32 on CPU")
    gradient_checkpointing: bool = Field(False, description="recompute activations in the backward pass: less memory, about 30% slower")
    device: Literal["auto", "cpu", "cuda", "mps"] = Field("auto", description="auto = cuda if available, else cpu; under torchrun each rank uses cuda:LOCAL_RANK")

    # -- evaluation, stopping, checkpoints
    eval_every: int = Field(-1, ge=-1, description="evaluate on eval_split every N optimizer steps; 0 = only after the last step; "
                                                   "-1 = auto: every max(steps // 10, ceil(evaluated rows / rows per step)) steps, "
                                                   "so at most about 10 evaluations, and between two of them the model trains on at "
                                                   "least as many rows as one scores (evaluation stays under about a third of the "
                                                   "training time); a short run is evaluated only after its last step")
    eval_batch_size: int = Field(0, ge=0, description="rows per evaluation batch (inference mode: no activations kept); 0 = 4 x batch_size")
    early_stopping_metric: str = Field("val_loss", description="metric that picks the best model and stops early: val_loss, val_perplexity, val_accuracy or val_macro_f1")
    early_stopping_patience: int = Field(3, ge=0, description="stop after this many evaluations without improvement; 0 = never stop early. "
                                                              "On by default (with eval_every's default, auto): more steps past the best "
                                                              "evaluation only cost time, and the exported model is the best one anyway")
    overfit_warning_evals: int = Field(3, ge=0, description="warn (log line, run.json 'overfitting') when validation loss has risen at this many "
                                                            "evaluations in a row while training loss fell over them; 0 = no warning")
    keep_best: bool = Field(True, description="the exported model is the best evaluation's weights rather than the last step's")
    save_every: int = Field(0, ge=0, description="write a resumable checkpoint every N optimizer steps; 0 = only after the last step")
    keep_checkpoints: int = Field(1, ge=0, description="resumable checkpoints kept (oldest deleted first); 0 = keep all")
    resume: str | None = Field(None, description="continue from a checkpoint folder, or 'auto' = the latest one in <output>/checkpoints")
    from_run: str | None = Field(
        None, description="a previous run folder (e.g. on the version a refresh started from) whose trained weights are the "
                          "starting point: the adapter and head for lora, the whole model for full/head; model, task and "
                          "method must match it, and classification keeps its label mapping; null = start from the base model")
    new_rows_only: bool = Field(
        False, description="with from_run: fit only on the train_split rows that the previous run's dataset version did "
                           "not hold (the refresh's new rows); evaluation still uses the whole eval_split")
    log_every: int = Field(10, ge=1, description="steps between log lines (and progress-bar updates of the loss)")

    @model_validator(mode="before")
    @classmethod
    def _task_defaults(cls, data: Any) -> Any:
        """Fill the options left null with their per-task default (:data:`TASK_DEFAULTS`), so run.json
        and hyperparameters.yaml record the values a run used."""
        if not isinstance(data, dict):
            return data
        task = data.get("task")
        defaults = TASK_DEFAULTS.get(task, TASK_DEFAULTS["causal-lm"]) if isinstance(task, str) else TASK_DEFAULTS["causal-lm"]
        filled = {k: v for k, v in defaults.items() if data.get(k) is None}
        if "lr" in filled and task == "classification" and data.get("method", "lora") != "lora":
            filled["lr"] = TASK_DEFAULTS["causal-lm"]["lr"]  # full/head: 1e-3 is an adapter rate, not an encoder's
        if task == "classification" and data.get("head_lr") is None:
            lr = filled.get("lr", data.get("lr"))
            if isinstance(lr, (int, float)) and not isinstance(lr, bool):  # else pydantic reports lr itself
                filled["head_lr"] = HEAD_LR_FACTOR * lr
        return {**data, **filled} if filled else data

    def output_dir(self) -> Path:
        if self.output:
            return Path(self.output)
        name = self.dataset.partition("@")[0]
        return Path("runs") / f"{name}-{self.task}"


def require_train_extra() -> None:
    """Fail with the install command when the trainer's dependencies are missing."""
    import importlib.util

    missing = [m for m in ("torch", "transformers", "peft", "safetensors", "sacrebleu") if importlib.util.find_spec(m) is None]
    if missing:
        from corpusmill.errors import CorpusmillError

        raise CorpusmillError(f"training and evaluation need {', '.join(missing)}: pip install -e '.[train]' "
                              "(make test / make demo install it, CPU torch first)")


# Settings that may change when a run is resumed: they do not change the trajectory.
RESUMABLE_CHANGES = {"output", "resume", "log_every", "save_every", "keep_checkpoints", "store", "device", "merge"}


#: a Hugging Face hub id: NAME or OWNER/NAME (letters, digits, '.', '_', '-'), never a path's shape
HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$")


def local_model_problem(model: str) -> str | None:
    """'no such folder: PATH' when ``model`` is written as a path (starts with /, . or ~, or has
    path separators a hub id cannot have) and no folder is there; None otherwise. Without this a
    missing local folder reaches from_pretrained, which answers with a message about hub ids."""
    seps = [os.sep] + ([os.altsep] if os.altsep else [])
    path_shaped = model.startswith(("/", ".", "~")) or (any(s in model for s in seps) and not HUB_ID.match(model))
    if not path_shaped:
        return None
    folder = Path(model).expanduser()
    if not folder.exists():
        return f"no such folder: {model}"
    if not folder.is_dir():
        return f"{model} is a file; a model is a folder (config.json and weights), or a Hugging Face hub id"
    return None


def _problems(cfg: TrainConfig) -> list[str]:
    """Cross-field checks pydantic cannot express; every one is reported at once."""
    out = []
    if (problem := local_model_problem(cfg.model)) is not None:
        out.append(f"model: {problem}")
    if cfg.task == "classification" and cfg.packing:
        out.append("packing: only for task causal-lm (classification rows are scored one by one)")
    if cfg.method == "head" and cfg.task != "classification":
        out.append("method: 'head' trains a classification head; use lora or full for causal-lm")
    if cfg.merge and cfg.method != "lora":
        out.append(f"merge: only adapters are merged; method is '{cfg.method}'")
    metrics = {"val_loss", "val_perplexity"} if cfg.task == "causal-lm" else {"val_loss", "val_accuracy", "val_macro_f1"}
    if cfg.early_stopping_metric not in metrics:
        out.append(f"early_stopping_metric: '{cfg.early_stopping_metric}' is not computed for {cfg.task}; "
                   f"choose one of {', '.join(sorted(metrics))}")
    if cfg.head_lr and cfg.task != "classification":
        out.append("head_lr: only for classification (causal-lm has no new head)")
    try:
        parse_prompt_template(cfg.prompt_template)
    except CorpusmillError as err:
        out.append(f"prompt_template: {err}")
    if cfg.task == "classification" and cfg.format != "auto":
        out.append("format: only for causal-lm")
    # the default patience acts only when there are evaluations to count; a patience chosen by hand needs them
    chosen_patience = cfg.early_stopping_patience not in (0, TrainConfig.model_fields["early_stopping_patience"].default)
    if chosen_patience and cfg.eval_every == 0:
        out.append("early_stopping_patience: needs evaluations during training (eval_every > 0, or -1 = auto)")
    if cfg.new_rows_only and not cfg.from_run:
        out.append("new_rows_only: needs from_run (the previous run whose dataset version's rows are left out)")
    if (chosen_patience or cfg.eval_every > 0) and not cfg.eval_split:
        out.append("eval_split: empty, but evaluation during training is asked for")
    return out


def build_config(file: str | Path | None, overrides: dict[str, Any]) -> TrainConfig:
    """Merge a YAML file and flag overrides into a validated config, or raise ConfigError with every problem."""
    from corpusmill.pipelines.config import format_errors

    raw: dict[str, Any] = {}
    source = "train options"
    if file:
        from corpusmill.safeyaml import load_file

        path = Path(file)
        source = str(path)
        loaded = load_file(path, what="config file") or {}  # within limits: size, nesting, aliases expanded
        if not isinstance(loaded, dict):
            raise ConfigError(["the config must be a YAML mapping of option: value"], source=source)
        raw = loaded
    for key, value in overrides.items():
        if "." in key:
            head, _, tail = key.partition(".")
            sub = raw.get(head)
            raw[head] = {**(sub if isinstance(sub, dict) else {}), tail: value}
        else:
            raw[key] = value
    try:
        cfg = TrainConfig(**raw)
    except ValidationError as err:
        raise ConfigError(format_errors(err, TrainConfig), source=source) from None
    problems = _problems(cfg)
    if problems:
        raise ConfigError(problems, source=source)
    return cfg


# ----------------------------------------------------------------------------- flags from the model


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-").replace(".", "-")


def _flag_fields(model: type[BaseModel] = TrainConfig, prefix: str = ""):
    """(dotted key, field) for every leaf option, nested models flattened."""
    for name, f in model.model_fields.items():
        ann = f.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            yield from _flag_fields(ann, prefix + name + ".")
        else:
            yield prefix + name, f


def _parse_value(text: str):
    """A flag value as YAML, so '1e-4', 'true', 'null' and '[q_proj, v_proj]' mean what they say."""
    from corpusmill.safeyaml import safe_load

    try:
        return safe_load(text)
    except yaml.YAMLError:
        return text


def _parse_list(text: str):
    value = _parse_value(text)
    if isinstance(value, str):
        return [s.strip() for s in value.split(",") if s.strip()]
    return value


def add_config_flags(parser: argparse.ArgumentParser, skip: tuple[str, ...] = ()) -> None:
    """One flag per option of :class:`TrainConfig`; unset flags leave the file's value alone."""
    for key, f in _flag_fields():
        if key in skip:
            continue
        default = "required" if f.is_required() else f"default: {f.default!r}"
        kw: dict[str, Any] = {"dest": "cfg:" + key, "default": argparse.SUPPRESS,
                              "help": f"{f.description} ({default})".replace("%", "%%")}
        ann = f.annotation
        if get_origin(ann) is Literal:
            kw["choices"] = list(get_args(ann))
        if ann is bool:
            kw["action"] = argparse.BooleanOptionalAction
        elif key == "prompt_template":  # text, not YAML ('{prompt}' would be a mapping); \n typed is a newline
            kw["type"] = template_from_flag
            kw["metavar"] = "TEMPLATE"
        elif "list" in str(ann) or "tuple" in str(ann):
            kw["type"] = _parse_list
            kw["metavar"] = "A,B"
        elif "choices" in kw:
            kw["type"] = str
        else:
            kw["type"] = _parse_value
            kw["metavar"] = key.rsplit(".", 1)[-1].upper()
        parser.add_argument(_flag(key), **kw)


def overrides_from_args(args: argparse.Namespace) -> dict[str, Any]:
    return {k[len("cfg:"):]: v for k, v in vars(args).items() if k.startswith("cfg:")}


def options_table() -> list[tuple[str, str, str]]:
    """(YAML key, default, description) for every option: what the docs' table lists."""
    rows = []
    for key, f in _flag_fields():
        default = "required" if f.is_required() else repr(f.default)
        rows.append((key, default, f.description or ""))
    return rows
