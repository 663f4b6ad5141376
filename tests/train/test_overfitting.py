"""The overfitting monitor: validation loss rising for N evaluations while training loss falls is
flagged in the log and in run.json, and the loss curves are drawn into the run folder."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

from corpusmill.train.loop import overfitting_signal
from corpusmill.train.run import train

SVG = "{http://www.w3.org/2000/svg}"


def _evals(val, fit):
    return [{"step": 10 * (i + 1), "val_loss": v, "train_loss": t} for i, (v, t) in enumerate(zip(val, fit))]


def test_signal_needs_n_rises_in_a_row_while_training_loss_falls():
    rising = _evals([2.0, 1.5, 1.6, 1.7, 1.8], [2.1, 1.4, 1.0, 0.8, 0.5])
    sig = overfitting_signal(rising, 3)
    assert sig["step"] == 50 and sig["since_step"] == 20
    assert sig["val_loss"] == [1.5, 1.8] and sig["train_loss"] == [1.4, 0.5]
    assert overfitting_signal(rising, 4) is None  # only 3 rises so far
    assert overfitting_signal(rising, 0) is None  # 0 = off
    dip = _evals([2.0, 1.5, 1.6, 1.55, 1.8], [2.1, 1.4, 1.0, 0.8, 0.5])
    assert overfitting_signal(dip, 3) is None  # not in a row
    both_up = _evals([1.5, 1.6, 1.7, 1.8], [1.0, 1.1, 1.2, 1.3])
    assert overfitting_signal(both_up, 3) is None  # diverging, not overfitting


def test_warning_fires_on_a_run_made_to_overfit(tiny, train_config, tmp_path, capsys):
    out = tmp_path / "run"
    # 4 training rows, full fine-tuning, many steps: the model memorises them and gets worse elsewhere
    record = train(train_config(dataset="notes", model=str(tiny["gpt2"]), task="causal-lm", output=str(out),
                                method="full", max_train_rows=4, lr=1e-2, max_steps=40, eval_every=5,
                                early_stopping_patience=0, overfit_warning_evals=3))
    run = json.loads((out / "run.json").read_text())
    sig = run["overfitting"]
    assert sig is not None and sig == record["overfitting"]
    evals = {e["step"]: e for e in run["evals"]}
    window = [evals[s] for s in sorted(evals) if sig["since_step"] <= s <= sig["step"]]
    assert len(window) == 4
    assert all(b["val_loss"] > a["val_loss"] for a, b in zip(window, window[1:]))
    assert window[-1]["train_loss"] < window[0]["train_loss"]
    assert "warning: overfitting: validation loss rose at 3 evaluations" in capsys.readouterr().err
    svg = ET.parse(out / run["outputs"]["loss_curves"]).getroot()
    lines = list(svg.iter(f"{SVG}polyline"))
    assert len(lines) == 3  # train per step, train per evaluation, validation
    assert len(lines[0].get("points").split()) == 40 and len(lines[2].get("points").split()) == 8
    assert any("overfitting warning at step" in (t.text or "") for t in svg.iter(f"{SVG}text"))


def test_default_early_stopping_stops_a_diverging_run(tiny, train_config, tmp_path):
    out = tmp_path / "run"
    # neither eval_every nor a patience given: auto evaluations and patience 3; with 8 evaluated rows
    # and 4 rows per step, every max(20 // 10, 8 / 4) = 2 steps
    train(train_config(dataset="tickets", model=str(tiny["bert"]), task="classification", output=str(out),
                       method="full", lr=3.0, max_steps=20, max_eval_rows=8))
    run = json.loads((out / "run.json").read_text())
    assert run["config"]["early_stopping_patience"] == 3 and run["config"]["eval_every"] == -1
    assert run["evaluation"]["every"] == 2 and run["evaluation"]["rows"] == 8
    assert [e["step"] for e in run["evals"]] == list(range(2, run["steps"] + 1, 2))
    assert run["stopped_early"] and run["steps"] < 20 and not run["pruned"]
    after_best = [e for e in run["evals"] if e["step"] > run["best"]["step"]]
    assert len(after_best) == 3
