"""Quick retrain after a refresh: train --from-run continues the previous adapter (optionally on the
new rows only), and eval --baseline compares it with the previous run on the new test split."""

from __future__ import annotations

import json

import pytest
from safetensors.torch import load_file

from corpusmill.cli import main
from corpusmill.pipelines import run_pipeline
from corpusmill.pipelines.refresh import refresh
from corpusmill.store import Store
from corpusmill.train.config import TrainConfig
from corpusmill.train.run import train
from tests.conftest import write_jsonl, write_pipeline
from tests.train.conftest import ticket_rows


@pytest.fixture(scope="module")
def lineage(tmp_path_factory):
    """tickets@parent (numbers 1-20 of each label) and its refresh with numbers 21-30."""
    root = tmp_path_factory.mktemp("refresh-train")
    rows = ticket_rows()
    old = [r for r in rows if int(r["id"].rsplit("-", 1)[1]) <= 20]
    new = [r for r in rows if int(r["id"].rsplit("-", 1)[1]) > 20]
    write_jsonl(root / "raw" / "old.jsonl", old)
    write_jsonl(root / "raw" / "new.jsonl", new)
    p = write_pipeline(root / "p.yaml", {"dataset": "tickets", "inputs": [{"path": "raw/old.jsonl", "id_field": "id",
                                                                           "label_field": "label"}],
                                         "steps": [{"split": {"near": False, "ratios": {"train": 0.6, "validation": 0.2, "test": 0.2}}}]})
    parent = run_pipeline(p, store=root / "store", workers=1, quiet=True).version
    child = refresh(Store(root / "store"), parent.ref, [root / "raw" / "new.jsonl"]).version
    return root, parent, child


def _cfg(root, tiny, dataset, out, **kw):
    base = {"dataset": dataset, "model": str(tiny["bert"]), "task": "classification", "store": str(root / "store"),
            "output": str(root / out), "max_steps": 6, "batch_size": 8, "lr": 2e-2, "max_seq_len": 64,
            "log_every": 100, "warmup_ratio": 0.0}
    return TrainConfig(**{**base, **kw})


def test_from_run_continues_the_adapter_on_new_rows_and_eval_compares(lineage, tiny, tmp_path):
    root, parent, child = lineage
    first = train(_cfg(root, tiny, parent.ref, "run1"))
    # a step with a vanishing learning rate leaves the weights where they started: the previous adapter
    cont = train(_cfg(root, tiny, child.ref, "run2", from_run=str(root / "run1"), new_rows_only=True,
                      max_steps=1, lr=1e-12, head_lr=1e-12))
    w1 = load_file(str(root / "run1" / "model" / "adapter_model.safetensors"))
    w2 = load_file(str(root / "run2" / "model" / "adapter_model.safetensors"))
    assert w1.keys() == w2.keys()
    assert all((w1[k] - w2[k]).abs().max() < 1e-6 for k in w1)
    scratch = train(_cfg(root, tiny, child.ref, "run3", max_steps=1, lr=1e-12, head_lr=1e-12))
    w3 = load_file(str(root / "run3" / "model" / "adapter_model.safetensors"))
    assert any((w1[k] - w3[k]).abs().max() > 1e-3 for k in w1)
    # only the rows the refresh added were trained on
    new_train = child.manifest["refresh"]["added"]["splits"]["train"]
    assert cont["data_accounting"]["train"]["rows_read"] == new_train < child.manifest["splits"]["train"]
    assert cont["from_run"]["dataset"] == parent.ref and cont["labels"] == first["labels"]
    # eval on the new version's test split: base, the continued run and the previous run
    report = tmp_path / "eval.json"
    assert main(["eval", str(root / "run2"), "--baseline", str(root / "run1"), "--report", str(report),
                 "--bootstrap", "100"]) == 0
    r = json.loads(report.read_text())
    assert r["dataset"] == child.ref and r["rows"] == child.manifest["splits"]["test"]
    assert set(r["models"]) == {"base", "fine_tuned", "previous"}
    # the continued run starts from the previous adapter and barely moved: same predictions
    assert r["models"]["fine_tuned"]["accuracy"] == pytest.approx(r["models"]["previous"]["accuracy"])


def test_from_run_must_match_model_task_and_method(lineage, tiny, store, capsys):
    root, parent, child = lineage
    if not (root / "run1" / "run.json").is_file():
        train(_cfg(root, tiny, parent.ref, "run1", max_steps=1))
    code = main(["train", "--dataset", child.ref, "--model", str(tiny["bert"]), "--task", "classification",
                 "--store", str(root / "store"), "--output", str(root / "bad"), "--from-run", str(root / "run1"),
                 "--method", "full", "--max-steps", "1"])
    assert code == 2 and "method: this run has 'full'" in capsys.readouterr().err
    code = main(["train", "--dataset", child.ref, "--model", str(tiny["bert"]), "--task", "classification",
                 "--store", str(root / "store"), "--output", str(root / "bad2"), "--new-rows-only"])
    assert code == 2 and "new_rows_only: needs from_run" in capsys.readouterr().err
