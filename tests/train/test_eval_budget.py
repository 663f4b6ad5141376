"""Evaluation that does not dominate: during training a bounded, stable sample of the validation
split, scored in large inference-mode batches, at an interval that grows with the run; in
``corpusmill eval`` a base head trained once and reused from the cache, and the time split reported."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from corpusmill.cli import main
from corpusmill.train.config import TrainConfig
from corpusmill.train.loop import eval_batch_size, eval_due, eval_interval
from corpusmill.train.run import train


def _cfg(**kw) -> TrainConfig:
    return TrainConfig(**{"dataset": "d", "model": "m", "task": "classification", **kw})


def test_auto_interval_grows_with_the_run_and_the_evaluated_rows():
    # the case: 20 steps, ~300 validation rows, batch 8 -> one evaluation, after the last step
    assert eval_interval(_cfg(batch_size=8), 20, eval_rows=300) == 38 > 20
    # a long run: about 10 evaluations
    assert eval_interval(_cfg(batch_size=8), 5000, eval_rows=512) == 500
    # in between, evaluations are as far apart as it takes to train on as many rows as one scores
    assert eval_interval(_cfg(batch_size=8), 200, eval_rows=512) == 64
    assert eval_interval(_cfg(batch_size=8, grad_accum=2), 200, eval_rows=512) == 32
    assert eval_interval(_cfg(batch_size=8), 200, eval_rows=512, world=4) == 20
    # auto: no evaluation less than half an interval before the last step (which is always evaluated)
    assert not eval_due(_cfg(), 19, 20)(19) and eval_due(_cfg(), 19, 40)(19) and not eval_due(_cfg(), 19, 40)(38)
    assert eval_due(_cfg(eval_every=19), 19, 20)(19) and not eval_due(_cfg(eval_every=0), 0, 20)(5)
    # set by hand: as given
    assert eval_interval(_cfg(eval_every=3), 5000, eval_rows=512) == 3
    assert eval_interval(_cfg(eval_every=0), 5000, eval_rows=512) == 0
    # defaults: a bounded sample, batches 4x the training batch
    assert _cfg().max_eval_rows == 512
    assert eval_batch_size(_cfg(batch_size=8)) == 32 and eval_batch_size(_cfg(batch_size=8, eval_batch_size=5)) == 5


def test_eval_sample_is_bounded_stable_and_independent_of_the_batch_size(tiny, train_config, tmp_path, capsys):
    runs = {}
    for name, kw in {"a": {"eval_batch_size": 1}, "b": {"eval_batch_size": 16}, "c": {"eval_batch_size": 3}}.items():
        train(train_config(dataset="tickets", model=str(tiny["bert"]), task="classification", output=str(tmp_path / name),
                           max_eval_rows=7, eval_every=2, **kw))
        runs[name] = json.loads((tmp_path / name / "run.json").read_text())
    ev = {k: r["evaluation"] for k, r in runs.items()}
    assert ev["a"]["rows"] == 7 and ev["a"]["sampled"] and ev["a"]["rows_in_split"] > 7
    assert ev["a"]["ids_sha256"] == ev["b"]["ids_sha256"] == ev["c"]["ids_sha256"]
    assert [e["eval_rows"] for e in runs["a"]["evals"]] == [7, 7]
    assert ev["a"]["evaluations"] == 2 and ev["a"]["every"] == 2 and ev["b"]["batch_size"] == 16
    # same rows, same model: the same validation loss whatever the batch (padding is masked)
    for x, y in zip(runs["a"]["evals"], runs["b"]["evals"]):
        assert x["val_loss"] == pytest.approx(y["val_loss"], abs=1e-5)
        assert x["val_accuracy"] == y["val_accuracy"]
    assert runs["a"]["summary"]["eval_seconds"] == pytest.approx(sum(e["eval_seconds"] for e in runs["a"]["evals"]), abs=0.01)
    assert "evaluation: 7 rows of 'validation', every 2 steps and after the last, 1 rows per batch" in capsys.readouterr().err

    # 0 = the whole split
    train(train_config(dataset="tickets", model=str(tiny["bert"]), task="classification", output=str(tmp_path / "full"),
                       max_eval_rows=0))
    full = json.loads((tmp_path / "full" / "run.json").read_text())["evaluation"]
    assert full["rows"] == full["rows_in_split"] == ev["a"]["rows_in_split"] and not full["sampled"]
    # the default run: auto interval past the end of a 4-step run, so one evaluation after the last step
    assert full["every"] is None and full["evaluations"] == 1


@pytest.fixture(scope="module")
def cls_run(tiny, store, tmp_path_factory):
    root = tmp_path_factory.mktemp("budget-runs")
    common = {"store": str(store), "batch_size": 8, "max_seq_len": 64, "log_every": 100, "warmup_ratio": 0.0,
              "dataset": "tickets", "model": str(tiny["bert"]), "task": "classification", "max_steps": 8, "lr": 2e-2}
    train(TrainConfig(output=str(root / "cls"), **common))
    return root / "cls"


def _eval(run_dir: Path, report: Path, capsys) -> tuple[dict, str]:
    assert main(["eval", str(run_dir), "--report", str(report), "--bootstrap", "200"]) == 0
    captured = capsys.readouterr()
    return json.loads(report.read_text()), captured.out + captured.err


def _counting_train(monkeypatch) -> list:
    import corpusmill.train.run as run_module

    calls, real = [], run_module.train
    monkeypatch.setattr(run_module, "train", lambda cfg, *a, **k: calls.append(cfg) or real(cfg, *a, **k))
    return calls


def test_base_head_is_cached_reused_and_recomputed_when_corrupt(cls_run, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CORPUSMILL_CACHE", str(tmp_path / "cache"))
    calls = _counting_train(monkeypatch)

    first, _ = _eval(cls_run, tmp_path / "r1.json", capsys)
    assert len(calls) == 1 and calls[0].method == "head"
    note = first["base_head"]
    entry = Path(note["path"])
    assert note["status"] == "trained" and entry.parent == tmp_path / "cache" / "base-heads"
    assert (entry / "run.json").is_file() and not (entry / "checkpoints").exists()
    assert not list(entry.parent.glob("*.tmp-*"))

    second, printed = _eval(cls_run, tmp_path / "r2.json", capsys)
    assert len(calls) == 1  # nothing retrained
    assert second["base_head"] == {**note, "status": "reused"}
    assert second["models"]["base"]["accuracy"] == first["models"]["base"]["accuracy"]
    assert second["models"]["base"]["confusion_matrix"] == first["models"]["base"]["confusion_matrix"]
    assert "base head reused" in printed

    # a damaged weight file: detected by its digest, trained again, same metrics as before
    weights = next((entry / "model").glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:-16] + b"\0" * 16)
    third, printed = _eval(cls_run, tmp_path / "r3.json", capsys)
    assert len(calls) == 2
    assert third["base_head"]["status"] == "retrained" and "corrupt" in third["base_head"]["reason"]
    assert "training it again" in printed
    assert third["models"]["base"]["confusion_matrix"] == first["models"]["base"]["confusion_matrix"]

    # an unreadable entry record: also trained again
    (entry / "cache-entry.json").write_text("{not json")
    fourth, _ = _eval(cls_run, tmp_path / "r4.json", capsys)
    assert len(calls) == 3 and fourth["base_head"]["reason"].startswith("unreadable")
    assert _eval(cls_run, tmp_path / "r5.json", capsys)[0]["base_head"]["status"] == "reused"


def test_another_run_with_the_same_settings_reuses_the_base_head(cls_run, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CORPUSMILL_CACHE", str(tmp_path / "cache"))
    first, _ = _eval(cls_run, tmp_path / "r1.json", capsys)
    twin = tmp_path / "twin"
    cfg = json.loads((cls_run / "run.json").read_text())["config"]
    train(TrainConfig(**{**cfg, "output": str(twin), "lora": {**cfg["lora"], "r": 4}}))  # another adapter, same head
    calls = _counting_train(monkeypatch)
    second, _ = _eval(twin, tmp_path / "r2.json", capsys)
    assert not calls and second["base_head"]["path"] == first["base_head"]["path"]
    # a different seed is a different head
    other = tmp_path / "seed1"
    train(TrainConfig(**{**cfg, "output": str(other), "seed": 1}))
    third, _ = _eval(other, tmp_path / "r3.json", capsys)
    assert len(calls) == 1 and third["base_head"]["status"] == "trained" and third["base_head"]["key"] != first["base_head"]["key"]


def test_time_split_is_reported_and_printed(cls_run, tmp_path, capsys):
    r, printed = _eval(cls_run, tmp_path / "r.json", capsys)
    t = r["timings"]
    parts = ("load", "base", "fine_tuned", "bootstrap")
    assert all(t[p] >= 0 for p in parts) and t["unit"] == "seconds"
    assert sum(t[p] for p in parts) <= t["total"] + 0.01
    assert "time: load " in printed and " | base " in printed and " | fine-tuned " in printed and " | bootstrap " in printed
