"""corpusmill sweep on a tiny BERT: a grid sweep completes and prunes a hopeless trial, a killed
sweep resumes from its SQLite study, and the space YAML is checked before anything trains."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET

import pytest
import yaml

from corpusmill.cli import main
from corpusmill.errors import ConfigError
from corpusmill.train.sweep import Sweep, load_space

optuna = pytest.importorskip("optuna", reason="the sweep extra (make test installs it)")

QUICK = {"method": "full", "batch_size": 4, "max_seq_len": 64, "log_every": 1000, "warmup_ratio": 0.0,
         "early_stopping_patience": 0}


def _space(tmp_path, **space):
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(space, sort_keys=False))
    return path


def _args(tiny, store, space, out, trials):
    return ["sweep", "--dataset", "tickets", "--model", str(tiny["bert"]), "--task", "classification",
            "--store", str(store), "--space", str(space), "--trials", str(trials), "--output", str(out)]


def _study(out):
    return optuna.load_study(study_name="sweep", storage=f"sqlite:///{out / 'study.db'}")


def test_grid_sweep_completes_prunes_and_writes_table_config_and_plot(tiny, store, tmp_path, capsys):
    # lr 3.0 makes full fine-tuning diverge: its validation loss at step 1 is far above the good
    # trials'. Sampler seed 4 orders this grid good, good, bad, bad, so the median pruner (active
    # after 2 finished trials) meets the bad trials with the good ones to compare against.
    space = _space(tmp_path, sampler="grid", seed=4, prune_startup_trials=2,
                   fixed={**QUICK, "max_steps": 4, "eval_every": 1},
                   params={"lr": {"values": [0.003, 3.0]}, "weight_decay": {"values": [0.0, 0.1]}})
    out = tmp_path / "sweep"
    assert main(_args(tiny, store, space, out, 3)) == 0
    summary = json.loads((out / "sweep.json").read_text())
    trials = {r["trial"]: r for r in summary["trials"]}
    assert len(trials) == 3 and summary["counts"]["fail"] == 0
    points = {(r["params"]["lr"], r["params"]["weight_decay"]) for r in trials.values()}
    assert len(points) == 3 and points < {(a, b) for a in (0.003, 3.0) for b in (0.0, 0.1)}  # grid points, once each
    pruned = [r for r in trials.values() if r["state"] == "pruned"]
    assert pruned and all(r["params"]["lr"] == 3.0 for r in pruned)
    for r in trials.values():  # every trial is an ordinary run with its run.json
        run = json.loads((out / r["run"] / "run.json").read_text())
        assert run["status"] == "completed" and run["config"]["lr"] == r["params"]["lr"]
        assert run["pruned"] == (r["state"] == "pruned")
        assert run["steps"] == r["steps"] and (run["steps"] < 4 if run["pruned"] else run["steps"] == 4)
        if r["state"] == "complete":
            assert r["value"] == pytest.approx(min(e["val_loss"] for e in run["evals"]))
    # ranked: complete trials by val_loss ascending, then the pruned ones
    complete = [r for r in summary["trials"] if r["state"] == "complete"]
    assert [r["value"] for r in complete] == sorted(r["value"] for r in complete)
    assert summary["trials"][: len(complete)] == complete
    best = summary["best"]
    assert best["trial"] == complete[0]["trial"] and best["params"]["lr"] == 0.003
    best_cfg = yaml.safe_load((out / "best.yaml").read_text())
    assert best_cfg["lr"] == 0.003 and best_cfg["weight_decay"] == best["params"]["weight_decay"]
    assert best_cfg["output"] is None and best_cfg["dataset"] == "tickets"
    svg = ET.parse(out / "sweep.svg").getroot()
    labels = [t.text for t in svg.iter("{http://www.w3.org/2000/svg}text")]
    assert "lr" in labels and "weight_decay" in labels
    assert len(list(svg.iter("{http://www.w3.org/2000/svg}circle"))) >= 4
    err = capsys.readouterr().err
    assert "pruned" in err and "best: trial" in err
    # a rerun of the finished sweep trains nothing more and reports the same best
    assert main(_args(tiny, store, space, out, 3)) == 0
    assert len(_study(out).trials) == 3
    assert json.loads((out / "sweep.json").read_text())["best"] == best


def test_killed_sweep_resumes_where_it_stopped(tiny, store, tmp_path):
    space = _space(tmp_path, sampler="random", seed=3, pruner="none",
                   fixed={**{k: v for k, v in QUICK.items() if k != "batch_size"}, "max_steps": 10, "eval_every": 5},
                   params={"lr": {"low": 1e-3, "high": 1e-2, "log": True}, "batch_size": {"values": [4, 8]}})
    out = tmp_path / "sweep"
    args = _args(tiny, store, space, out, 2)
    # one thread: torch's default threads crawl when the test machine's cores are oversubscribed
    proc = subprocess.Popen([sys.executable, "-m", "corpusmill", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, start_new_session=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        deadline = time.time() + 120
        while not (out / "trials" / "trial-0001" / "run.json").exists():  # trial 0 done, trial 1 training
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.time() < deadline, "the sweep did not reach its second trial"
            time.sleep(0.05)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    states = [t.state.name for t in _study(out).trials]
    assert states == ["COMPLETE", "RUNNING"]
    killed_params = _study(out).trials[1].params

    assert main(args) == 0
    trials = _study(out).trials
    finished = [t for t in trials if t.state.name == "COMPLETE"]
    interrupted = [t for t in trials if t.user_attrs.get("interrupted")]
    assert len(finished) == 2 and [t.number for t in interrupted] == [1]
    assert interrupted[0].state.name == "FAIL"
    retry = [t for t in finished if t.user_attrs.get("retry_of") == 1]
    assert len(retry) == 1 and retry[0].params == killed_params  # the killed point is trained again
    assert not (out / "trials" / "trial-0001").exists()
    for t in finished:
        run = json.loads((out / "trials" / f"trial-{t.number:04d}" / "run.json").read_text())
        assert run["status"] == "completed" and run["steps"] == 10
    summary = json.loads((out / "sweep.json").read_text())
    assert summary["counts"] == {"complete": 2, "pruned": 0, "fail": 0} and summary["interrupted"] == 1
    assert not (out / "sweep.lock").exists()


def test_space_problems_are_reported_at_once_before_training(tiny, store, tmp_path):
    space = _space(tmp_path, sampler="grid", fixed={"lr": 1e-3},
                   params={"lr": {"values": [1e-3]}, "lora.rank": {"values": [4]},
                           "warmup_ratio": {"low": 0.0, "high": 0.2}, "weight_decay": {"low": 0.1, "high": 0.0}})
    with pytest.raises(ConfigError) as err:
        load_space(space)
    msg = str(err.value)
    assert "params.lr: also set in fixed:" in msg
    assert "params.lora.rank: not a train option that can be searched (did you mean 'lora.r'?)" in msg
    assert "params.warmup_ratio: a range in a grid search needs step:" in msg
    assert "low (0.1) is above high (0.0)" in msg
    ok = _space(tmp_path, sampler="tpe", metric="val_perplexity", params={"lr": {"low": 1e-4, "high": 1e-2, "log": True}})
    with pytest.raises(ConfigError, match="val_perplexity' is not computed for classification"):
        Sweep(tmp_path / "s", load_space(ok), None, {"dataset": "tickets", "model": "m", "task": "classification"})
    assert not (tmp_path / "s").exists()


def test_grid_expands_ranges_with_step_and_the_direction_follows_the_metric(tmp_path):
    space = load_space(_space(tmp_path, sampler="grid", metric="val_accuracy",
                              params={"lora.r": {"values": [4, 8]}, "lora.dropout": {"low": 0.0, "high": 0.2, "step": 0.1}}))
    assert space.grid() == {"lora.r": [4, 8], "lora.dropout": [0.0, 0.1, 0.2]} and space.grid_size() == 6
    assert space.direction_for("val_accuracy") == "maximize" and space.direction_for("val_loss") == "minimize"


def test_the_documented_demo_space_loads():
    from pathlib import Path

    space = load_space(Path(__file__).resolve().parents[2] / "docs" / "sweep-space.yaml")
    assert space.sampler == "tpe" and space.metric == "val_accuracy" and set(space.params) >= {"lr", "lora.r"}


def test_parser_and_space_checks_import_neither_optuna_nor_torch(tmp_path):
    space = _space(tmp_path, sampler="random", params={"lr": {"low": 1e-4, "high": 1e-2, "log": True}})
    code = ("import sys; from corpusmill.cli import build_parser; build_parser(); "
            f"from corpusmill.train.sweep import load_space; load_space({str(space)!r}); "
            "bad = [m for m in ('optuna', 'torch', 'transformers') if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
