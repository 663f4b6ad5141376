"""``corpusmill sweep``: a hyper-parameter search in which every trial is an ordinary training run.

::

    <sweep folder>/
      study.db                Optuna's study (SQLite): every trial's parameters, state, value and
                              intermediate values. Rerunning the same command resumes from it.
      space.yaml              the search space the study was started with
      trials/trial-0000/      one run folder per trial (run.json, hyperparameters.yaml, model/ ...)
      sweep.json              the ranked trials and the best one
      best.yaml               the best trial's resolved train config: corpusmill train --config best.yaml
      sweep.svg               the metric against each searched hyper-parameter

A trial's config is: the trainer's defaults < ``--config FILE`` < the space's ``fixed:`` < flags <
the trial's sampled ``params:``. The objective is the best value of ``metric`` over the trial's
evaluations (the value its early stopping and kept model use). After each evaluation the trial
reports that value to Optuna, and the pruner (median by default) stops trials that trail the
median of earlier trials at the same step.

Resuming: the study lives in ``study.db``. Trials found ``RUNNING`` when a sweep starts belong to
a process that was killed (a lock file with the owner's pid keeps two live sweeps out of one
folder): they are marked failed with ``interrupted`` set, their half-written run folder is
removed, and their parameters are queued again, so the search goes on where it stopped.
``--trials N`` is the number of finished trials (complete, pruned or failed by an error; not
interrupted) the study should hold at the end.
"""

from __future__ import annotations

import difflib
import json
import math
import os
import shutil
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from corpusmill.errors import ConfigError, CorpusmillError
from corpusmill.train.config import TrainConfig, _flag_fields, build_config

LOWER_IS_BETTER = {"val_loss", "val_perplexity"}


def require_sweep_extra() -> None:
    import importlib.util

    if importlib.util.find_spec("optuna") is None:
        raise CorpusmillError("corpusmill sweep needs optuna: pip install -e '.[sweep]' (make test installs it)")


class ParamRange(BaseModel):
    """One searched option: a list of ``values``, or a ``low``..``high`` range (optionally ``log``, ``step``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    values: list[float | int | str | bool | None] | None = Field(
        None, description="the choices; grid searches these, random/TPE pick among them")
    low: float | None = Field(None, description="smallest value of a range (inclusive)")
    high: float | None = Field(None, description="largest value of a range (inclusive)")
    log: bool = Field(False, description="sample the range on a log scale (learning rates, weight decay)")
    step: float | None = Field(None, description="range granularity; grid needs it to enumerate a range")

    @model_validator(mode="after")
    def _one_form(self):
        has_range = self.low is not None or self.high is not None
        if (self.values is None) == (not has_range):
            raise ValueError("give either values: [..] or low: and high:")
        if has_range:
            if self.low is None or self.high is None:
                raise ValueError("a range needs both low: and high:")
            if self.low > self.high:
                raise ValueError(f"low ({self.low}) is above high ({self.high})")
            if self.log and self.low <= 0:
                raise ValueError(f"log: true needs low > 0 (got {self.low})")
            if self.step is not None and (self.step <= 0 or self.log):
                raise ValueError("step: must be > 0 and cannot be combined with log: true")
        elif not self.values:
            raise ValueError("values: must list at least one choice")
        return self

    def grid(self) -> list:
        if self.values is not None:
            return list(self.values)
        if self.step is None:
            raise ValueError("a range in a grid search needs step: (or list values:)")
        n = int(math.floor((self.high - self.low) / self.step + 1e-9)) + 1
        return [round(self.low + i * self.step, 12) for i in range(n)]


class SweepSpace(BaseModel):
    """The space YAML: what is searched, how, and for which metric."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sampler: Literal["grid", "random", "tpe"] = Field(
        "tpe", description="grid: every combination of values; random: independent draws; tpe: Optuna's "
                           "Tree-structured Parzen Estimator, which samples near the good trials once it has a few")
    metric: str | None = Field(None, description="what the sweep optimises: val_loss, val_perplexity, val_accuracy or "
                                                 "val_macro_f1; null = the train config's early_stopping_metric")
    direction: Literal["auto", "minimize", "maximize"] = Field(
        "auto", description="auto = minimize losses and perplexity, maximize accuracy and F1")
    seed: int = Field(0, description="seeds the sampler (the trials' own seed is the train option seed)")
    pruner: Literal["median", "none"] = Field(
        "median", description="median: stop a trial whose metric at an evaluation step is worse than the median of "
                              "earlier trials at that step; none: every trial runs to its end")
    prune_startup_trials: int = Field(2, ge=0, description="no pruning until this many trials have finished: the "
                                                           "median needs something to stand on")
    prune_warmup_steps: int = Field(0, ge=0, description="no pruning at evaluations before this optimizer step of a "
                                                         "trial (the first evaluations of a run are noisy)")
    fixed: dict[str, Any] = Field(default_factory=dict, description="train options shared by every trial, as in a "
                                                                    "train config (nested lora: {r: 8} or lora.r: 8)")
    params: dict[str, ParamRange] = Field(description="searched train options by YAML key (lora.r for nested ones)")

    def direction_for(self, metric: str) -> str:
        if self.direction != "auto":
            return self.direction
        return "minimize" if metric in LOWER_IS_BETTER else "maximize"

    def grid(self) -> dict[str, list]:
        return {k: p.grid() for k, p in self.params.items()}

    def grid_size(self) -> int:
        return math.prod(len(v) for v in self.grid().values())


# every train option with one scalar value, except what names the experiment or where it is written
SEARCHABLE = {key: f for key, f in _flag_fields() if key not in
              ("dataset", "model", "task", "store", "output", "resume", "early_stopping_metric", "betas",
               "lora.target_modules")}


def load_space(path: str | Path) -> SweepSpace:
    """Read and check a space YAML; every problem is reported at once."""
    from corpusmill.pipelines.config import format_errors

    from corpusmill.safeyaml import load_file

    path = Path(path)
    raw = load_file(path, what="space file") or {}  # within limits: size, nesting, aliases expanded
    if not isinstance(raw, dict):
        raise ConfigError(["the space must be a YAML mapping (sampler:, metric:, fixed:, params:)"], source=str(path))
    problems: list[str] = []
    space = None
    try:
        space = SweepSpace(**raw)
    except ValidationError as err:
        problems += format_errors(err, SweepSpace)
    params = raw.get("params") if isinstance(raw.get("params"), dict) else {}
    fixed = _flat(raw.get("fixed")) if isinstance(raw.get("fixed"), dict) else {}
    for key in params:  # checked on the raw mapping too, so they are reported with the errors above
        if key not in SEARCHABLE:
            near = difflib.get_close_matches(key, SEARCHABLE, n=1)
            hint = f" (did you mean '{near[0]}'?)" if near else f"; searchable: {', '.join(sorted(SEARCHABLE))}"
            problems.append(f"params.{key}: not a train option that can be searched{hint}")
        elif key in fixed:
            problems.append(f"params.{key}: also set in fixed:; an option is either fixed or searched")
        if raw.get("sampler") == "grid" and isinstance(params[key], dict):
            try:
                ParamRange(**params[key]).grid()
            except ValidationError:
                pass  # reported above
            except ValueError as err:
                problems.append(f"params.{key}: {err}")
    if space is not None and not space.params:
        problems.append("params: nothing to search; list at least one option")
    if problems:
        raise ConfigError(problems, source=str(path))
    return space


def _flat(options: dict[str, Any]) -> dict[str, Any]:
    """{'lora': {'r': 8}} -> {'lora.r': 8}: one spelling for nested options."""
    out = {}
    for k, v in options.items():
        if isinstance(v, dict) and k == "lora":
            out.update({f"{k}.{kk}": vv for kk, vv in v.items()})
        else:
            out[k] = v
    return out


# ----------------------------------------------------------------------------- the study


class Sweep:
    """One sweep folder: its study, its trials' run folders, its results."""

    def __init__(self, folder: str | Path | None, space: SweepSpace, config_file: str | None, overrides: dict[str, Any]):
        """``folder`` None = runs/sweep-<dataset>-<task>."""
        self.space = space
        self.config_file = config_file
        self.overrides = {k: v for k, v in overrides.items() if k not in ("output", "resume")}
        for key in self.space.params:
            if key in self.overrides:
                raise ConfigError([f"{key}: searched by the space's params: and also given as a flag; drop one"],
                                  source="sweep options")
        base = self.trial_config({}, Path("check"))  # every config problem now, not in trial 1
        self.folder = Path(folder) if folder else Path("runs") / f"sweep-{base.dataset.partition('@')[0]}-{base.task}"
        self.metric = space.metric or base.early_stopping_metric
        self.direction = space.direction_for(self.metric)
        if space.metric:
            self.trial_config({}, Path("check"))  # the metric must suit the task

    def trial_config(self, params: dict[str, Any], out: Path) -> TrainConfig:
        metric = getattr(self, "metric", None)
        options = {**_flat(self.space.fixed), **self.overrides, **params, "output": str(out)}
        if metric:
            options["early_stopping_metric"] = metric
        return build_config(self.config_file, options)

    # -- storage

    @property
    def storage_url(self) -> str:
        return f"sqlite:///{(self.folder / 'study.db').resolve()}"

    def open_study(self):
        import optuna

        self.folder.mkdir(parents=True, exist_ok=True)
        recorded = self.folder / "space.yaml"
        identity = {"space": self.space.model_dump(mode="json"), "metric": self.metric, "direction": self.direction,
                    "base_config": _without_paths(self.trial_config({}, self.folder / "trials" / "check"))}
        if recorded.is_file() and (self.folder / "study.db").is_file():
            before = yaml.safe_load(recorded.read_text())
            if before != identity:
                changed = sorted(k for k in identity if before.get(k) != identity[k])
                raise CorpusmillError(f"{self.folder} holds a sweep with a different {', '.join(changed)}; resume it with "
                                      "the same space and options, or choose another --output")
        else:
            recorded.write_text(yaml.safe_dump(identity, sort_keys=False))
        sampler = {"grid": lambda: optuna.samplers.GridSampler(self.space.grid(), seed=self.space.seed),
                   "random": lambda: optuna.samplers.RandomSampler(seed=self.space.seed),
                   "tpe": lambda: optuna.samplers.TPESampler(seed=self.space.seed)}[self.space.sampler]()
        pruner = (optuna.pruners.MedianPruner(n_startup_trials=self.space.prune_startup_trials,
                                              n_warmup_steps=self.space.prune_warmup_steps)
                  if self.space.pruner == "median" else optuna.pruners.NopPruner())
        return optuna.create_study(study_name="sweep", storage=self.storage_url, sampler=sampler, pruner=pruner,
                                   direction=self.direction, load_if_exists=True)

    def recover_interrupted(self, study) -> list[int]:
        """Trials left RUNNING by a killed sweep: marked failed (interrupted), folder removed, parameters requeued."""
        from optuna.trial import TrialState

        numbers = []
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            study._storage.set_trial_user_attr(t._trial_id, "interrupted", True)
            study._storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
            shutil.rmtree(self.trial_dir(t.number), ignore_errors=True)
            if t.params:  # a grid counts the failed point as visited: the requeued copy covers it
                study.enqueue_trial(t.params, user_attrs={"retry_of": t.number})
            numbers.append(t.number)
        return numbers

    def trial_dir(self, number: int) -> Path:
        return self.folder / "trials" / f"trial-{number:04d}"

    # -- one trial

    def suggest(self, trial) -> dict[str, Any]:
        out = {}
        for key, p in self.space.params.items():
            if self.space.sampler == "grid" or p.values is not None:
                out[key] = trial.suggest_categorical(key, p.grid() if self.space.sampler == "grid" else p.values)
            elif SEARCHABLE[key].annotation is int:
                out[key] = trial.suggest_int(key, int(p.low), int(p.high), log=p.log, step=int(p.step or 1))
            else:
                out[key] = trial.suggest_float(key, p.low, p.high, log=p.log, step=p.step)
        return out

    def objective(self, trial, console=None) -> float:
        import optuna

        from corpusmill.train.run import train

        params = self.suggest(trial)
        out = self.trial_dir(trial.number)
        trial.set_user_attr("run", str(out.relative_to(self.folder)))
        cfg = self.trial_config(params, out)
        if console:
            console.print(f"[bold]trial {trial.number}[/bold]: " + ", ".join(f"{k}={_show(v)}" for k, v in params.items()))

        def on_eval(step: int, evaluation: dict) -> bool:
            trial.report(evaluation[self.metric], step)
            return trial.should_prune()

        record = train(cfg, on_eval=on_eval)
        trial.set_user_attr("steps", record["steps"])
        trial.set_user_attr("overfitting", bool(record.get("overfitting")))
        if record["pruned"]:
            raise optuna.TrialPruned(f"trial {trial.number} pruned at step {record['steps']}")
        return float(record["best"]["value"])

    def run(self, n_trials: int | None, console=None) -> dict:
        import optuna

        from corpusmill.train.system import quiet_libraries

        quiet_libraries()
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        if n_trials is None:
            if self.space.sampler != "grid":
                raise CorpusmillError("--trials N is needed for random and tpe sampling (grid defaults to the grid's size)")
            n_trials = self.space.grid_size()
        with SweepLock(self.folder):
            study = self.open_study()
            interrupted = self.recover_interrupted(study)
            done = len(finished(study))
            say = console.print if console else (lambda *a, **k: None)
            if interrupted:
                say(f"resuming {self.folder}: trial(s) {', '.join(map(str, interrupted))} were interrupted and are run again")
            elif done:
                say(f"resuming {self.folder}: {done} of {n_trials} trials already finished")
            todo = max(0, n_trials - done)
            if self.space.sampler == "grid":
                todo = min(todo, self.space.grid_size() - done)  # each finished trial covered one grid point
            if todo:
                study.optimize(lambda t: self.objective(t, console), n_trials=todo, catch=(CorpusmillError,),
                               callbacks=[lambda s, t: say(_trial_line(t, self.metric))], gc_after_trial=True)
            return self.summarise(study)

    # -- results

    def summarise(self, study) -> dict:
        from optuna.trial import TrialState

        trials = [t for t in study.get_trials(deepcopy=False) if not t.user_attrs.get("interrupted")]
        sign = 1 if self.direction == "minimize" else -1

        def key(t):
            last = _last_value(t)
            order = {TrialState.COMPLETE: 0, TrialState.PRUNED: 1}.get(t.state, 2)
            return (order, sign * last if last is not None else math.inf, t.number)

        ranked = sorted(trials, key=key)
        rows = [{"rank": i + 1, "trial": t.number, "state": t.state.name.lower(), "value": _last_value(t),
                 "steps": t.user_attrs.get("steps"), "params": t.params, "run": t.user_attrs.get("run"),
                 "overfitting": t.user_attrs.get("overfitting")} for i, t in enumerate(ranked)]
        complete = [t for t in ranked if t.state == TrialState.COMPLETE]
        best = None
        if complete:
            b = complete[0]
            best_cfg = yaml.safe_load((self.trial_dir(b.number) / "hyperparameters.yaml").read_text())
            best_cfg.update({"output": None, "resume": None})
            (self.folder / "best.yaml").write_text(
                f"# best trial of {self.folder}: trial {b.number}, {self.metric} {b.value:.6g}\n"
                + yaml.safe_dump(best_cfg, sort_keys=False))
            best = {"trial": b.number, "value": b.value, "params": b.params, "config": "best.yaml",
                    "run": b.user_attrs.get("run")}
        summary = {"metric": self.metric, "direction": self.direction, "sampler": self.space.sampler,
                   "pruner": self.space.pruner, "study": "study.db",
                   "counts": {s: sum(r["state"] == s for r in rows) for s in ("complete", "pruned", "fail")},
                   "interrupted": sum(1 for t in study.get_trials(deepcopy=False) if t.user_attrs.get("interrupted")),
                   "best": best, "trials": rows, "plot": "sweep.svg"}
        (self.folder / "sweep.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
        (self.folder / "sweep.svg").write_text(sweep_svg(summary, self.space))
        return summary


def finished(study) -> list:
    """Trials that count towards --trials: complete, pruned, or failed by an error (not interrupted)."""
    from optuna.trial import TrialState

    return [t for t in study.get_trials(deepcopy=False)
            if t.state in (TrialState.COMPLETE, TrialState.PRUNED)
            or (t.state == TrialState.FAIL and not t.user_attrs.get("interrupted"))]


def _last_value(t) -> float | None:
    """A complete trial's value; a pruned one's last reported value (what it was judged on)."""
    if t.value is not None:
        return float(t.value)
    if t.intermediate_values:
        return float(t.intermediate_values[max(t.intermediate_values)])
    return None


def _show(v) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def _trial_line(t, metric: str) -> str:
    v = _last_value(t)
    shown = f"{metric} {v:.4f}" if v is not None else "no value"
    return f"trial {t.number} {t.state.name.lower()}: {shown}"


def _without_paths(cfg: TrainConfig) -> dict:
    return {k: v for k, v in cfg.model_dump(mode="json").items() if k not in ("output", "store", "log_every")}


class SweepLock:
    """One live sweep per folder: a lock file naming the owner's pid; a dead owner's lock is taken over."""

    def __init__(self, folder: Path):
        self.path = Path(folder) / "sweep.lock"

    def __enter__(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.is_file():
            try:
                pid = int(self.path.read_text().strip())
                os.kill(pid, 0)
            except (ValueError, ProcessLookupError):
                pass  # the owner is gone: its trials are recovered as interrupted
            except PermissionError:
                raise CorpusmillError(f"{self.path}: another user's sweep (pid {pid}) runs in this folder") from None
            else:
                if pid != os.getpid():
                    raise CorpusmillError(f"a sweep (pid {pid}) is already running in {self.path.parent}; "
                                          "wait for it or stop it, then rerun to resume")
        self.path.write_text(str(os.getpid()))
        return self

    def __exit__(self, *exc):
        self.path.unlink(missing_ok=True)


# ----------------------------------------------------------------------------- the table and the plot


def sweep_svg(summary: dict, space: SweepSpace) -> str:
    """One panel per searched option: the metric of every trial against its value (pruned trials as rings)."""
    from corpusmill.train.svg import Panel, Series, figure

    panels = []
    for key, p in space.params.items():
        scale = "category" if p.values is not None else "log" if p.log else "linear"
        series = []
        for state, style, colour in (("complete", "dots", "#1f77b4"), ("pruned", "hollow", "#7f7f7f")):
            rows = [r for r in summary["trials"] if r["state"] == state and key in r["params"] and r["value"] is not None]
            if rows:
                series.append(Series(state, [r["params"][key] for r in rows], [r["value"] for r in rows], style, colour))
        best = summary.get("best")
        if best:
            series.append(Series("best", [best["params"][key]], [best["value"]], "dots", "#d62728"))
        panels.append(Panel(key, summary["metric"], series, scale, categories=p.values))
    c = summary["counts"]
    title = (f"sweep: {summary['metric']} ({summary['direction']}) by option; {c['complete']} complete, "
             f"{c['pruned']} pruned ({summary['sampler']} sampler)")
    return figure(panels, title)


def print_sweep_summary(summary: dict, folder: Path, console) -> None:
    from rich.table import Table

    keys = list(dict.fromkeys(k for r in summary["trials"] for k in r["params"]))
    t = Table(title=f"{folder}: trials ranked by {summary['metric']} ({summary['direction']})", title_justify="left")
    for col in ["rank", "trial", "state", summary["metric"], "steps", *keys]:
        t.add_column(col, justify="left" if col == "state" else "right")
    best = (summary.get("best") or {}).get("trial")
    for r in summary["trials"]:
        value = f"{r['value']:.4f}" if r["value"] is not None else "-"
        t.add_row(str(r["rank"]), str(r["trial"]), r["state"] + (" (overfit)" if r.get("overfitting") else ""), value,
                  str(r["steps"] if r["steps"] is not None else "-"), *[_show(r["params"].get(k, "-")) for k in keys],
                  style="bold" if r["trial"] == best else None)
    console.print(t)
    c = summary["counts"]
    console.print(f"{c['complete']} complete, {c['pruned']} pruned, {c['fail']} failed"
                  + (f", {summary['interrupted']} interrupted and rerun" if summary["interrupted"] else ""))
    if summary.get("best"):
        b = summary["best"]
        console.print(f"best: trial {b['trial']} {summary['metric']} {b['value']:.4f} "
                      f"({', '.join(f'{k}={_show(v)}' for k, v in b['params'].items())}); "
                      f"config: {folder / 'best.yaml'}; plot: {folder / 'sweep.svg'}")
