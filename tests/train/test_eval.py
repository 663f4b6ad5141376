"""corpusmill eval on tiny models: the report's contract, the frozen-encoder baseline, a previous
run as baseline, and the guard against an adapter that silently did not load."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from corpusmill.cli import main
from corpusmill.evaluate.compare import EvalError, evaluate_run
from corpusmill.train.run import train


@pytest.fixture(scope="module")
def runs(tiny, store, tmp_path_factory):
    """A LoRA classification run and a LoRA prompt/response run (trained once for this module)."""
    from corpusmill.train.config import TrainConfig

    root = tmp_path_factory.mktemp("eval-runs")
    common = {"store": str(store), "batch_size": 8, "max_seq_len": 64, "log_every": 100, "warmup_ratio": 0.0}
    train(TrainConfig(dataset="tickets", model=str(tiny["bert"]), task="classification", output=str(root / "cls"),
                      max_steps=12, lr=2e-2, **common))
    train(TrainConfig(dataset="qa", model=str(tiny["llama"]), task="causal-lm", output=str(root / "qa"),
                      max_steps=6, lr=1e-2, **common))
    return root


def test_classification_report_contract(runs, capsys):
    report = runs / "cls-report.json"
    code = main(["eval", str(runs / "cls"), "--report", str(report), "--bootstrap", "300"])
    table = capsys.readouterr().out
    assert code == 0
    r = json.loads(report.read_text())
    run = json.loads((runs / "cls" / "run.json").read_text())
    assert r["dataset"] == run["dataset"]["reference"] and r["split"] == "test"
    assert set(r["models"]) == {"base", "fine_tuned"}
    for name, m in r["models"].items():
        for metric in ("accuracy", "macro_precision", "macro_recall", "macro_f1", "micro_precision", "micro_recall", "micro_f1"):
            lo, hi = m[f"{metric}_ci"]
            assert lo <= m[metric] <= hi, (name, metric)
        cm = m["confusion_matrix"]["rows_true_columns_predicted"]
        assert sum(map(sum, cm)) == r["rows"]
        assert sum(cm[i][i] for i in range(len(cm))) / r["rows"] == pytest.approx(m["accuracy"])
        assert m["rows_per_second"] > 0 and m["latency_ms_p50_batch"] > 0 and m["peak_memory_mb"] > 0
    comp = r["comparison"]["fine_tuned_vs_base"]
    assert comp["macro_f1"]["difference"] == pytest.approx(r["models"]["fine_tuned"]["macro_f1"] - r["models"]["base"]["macro_f1"])
    assert 0 <= comp["macro_f1"]["p_value"] <= 1 and {"only_first_correct", "p_value"} <= set(comp["mcnemar_accuracy"])
    # the fair base: frozen encoder + a head trained with the run's budget
    head = json.loads((Path(r["base_head"]["path"]) / "run.json").read_text())
    assert head["config"]["method"] == "head" and head["steps"] == run["steps"]
    assert head["model"]["trainable_parameters"] == 32 * 3 + 3  # the linear head only
    assert "frozen" in r["model_sources"]["base"]
    assert r["adapter_check"]["max_abs_logit_difference"] > 0
    assert "| macro_f1 |" in table and "| accuracy |" in table and "McNemar" in table
    _check_disagreements_and_page(r, runs / "cls-report.html", run, runs)


def _check_disagreements_and_page(r, page, run, tmp):
    """The disagreement rows are real rows of the split where the models differ, and eval.html
    shows them, the intervals and the confusion matrices, rendering in Chromium without a message."""
    from corpusmill.evaluate.compare import DISAGREEMENTS
    from corpusmill.store import Store
    from tests.report.chromium import png_facts, render

    version = Store(run["dataset"]["store"]).resolve(r["dataset"])
    truth = dict(zip(*[version.read_split(r["split"]).column(c).to_pylist() for c in ("id", "label")]))
    mc = r["comparison"]["fine_tuned_vs_base"]["mcnemar_accuracy"]
    dis = r["disagreements"]
    # rows right under exactly one model are rows where they disagree: at least that many are listed
    assert min(DISAGREEMENTS, mc["only_first_correct"] + mc["only_second_correct"]) <= len(dis) <= DISAGREEMENTS
    for d in dis:
        assert d["predicted"]["base"] != d["predicted"]["fine_tuned"]
        assert d["label"] == truth[d["id"]] and d["text"]
    html = page.read_text(encoding="utf-8")
    assert set(re.findall(r"https?://[^\s\"'<>]+", html)) <= {"http://www.w3.org/2000/svg"}
    for name in r["models"]:
        assert f'aria-label="confusion matrix {name}"' in html
    for metric in ("accuracy", "macro_f1"):
        v, (lo, hi) = r["models"]["fine_tuned"][metric], r["models"]["fine_tuned"][f"{metric}_ci"]
        assert f"fine_tuned {metric}: {v:.4g} [{lo:.4g}, {hi:.4g}]" in html
    assert all(d["id"] in html for d in dis)
    assert render(page, tmp / "eval.png", tmp / "chromium-profile") == []
    assert png_facts(tmp / "eval.png")[2] > 16


def test_causal_report_scores_perplexity_and_generations(runs, tmp_path):
    r = evaluate_run(runs / "qa", report=tmp_path / "r.json", bootstrap=200, max_new_tokens=4)
    assert r["format_of_examples"] == "prompt_response"
    for name in ("base", "fine_tuned"):
        m = r["models"][name]
        for metric in ("perplexity", "loss", "exact_match", "bleu", "chrf"):
            lo, hi = m[f"{metric}_ci"]
            assert lo <= m[metric] <= hi
        assert m["generated_tokens_per_second"] > 0 and len(m["examples"]) == min(5, r["rows"])
    assert r["models"]["base"]["perplexity"] != r["models"]["fine_tuned"]["perplexity"]
    assert json.loads((tmp_path / "r.json").read_text())["comparison"]["fine_tuned_vs_base"]["perplexity"]["p_value"] <= 1
    for d in r["disagreements"]:
        assert d["answers"]["base"] != d["answers"]["fine_tuned"] and d["prompt"]
    html = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert 'aria-label="perplexity"' in html and 'id="disagreements"' in html


def test_previous_run_as_baseline(runs, tmp_path):
    r = evaluate_run(runs / "qa", baseline=str(runs / "qa"), report=tmp_path / "r.json", bootstrap=100,
                     max_new_tokens=1, split="validation")
    assert set(r["models"]) == {"base", "fine_tuned", "previous"} and r["split"] == "validation"
    same = r["comparison"]["fine_tuned_vs_previous"]["perplexity"]
    assert same["difference"] == 0 and same["difference_ci"] == [0, 0]


@pytest.mark.parametrize("damage", ["keys_renamed", "adapter_zeroed"])
def test_adapter_that_did_not_load_is_an_error(runs, tmp_path, damage):
    """Renamed keys: peft loads nothing, only warns, and keeps fresh adapters (B = 0). Zeroed B:
    an adapter that changes nothing. Either way the 'fine-tuned' model is the base model."""
    from safetensors.torch import load_file, save_file

    shutil.copytree(runs / "qa", tmp_path / "broken")
    f = tmp_path / "broken" / "model" / "adapter_model.safetensors"
    weights = load_file(f)
    if damage == "keys_renamed":
        weights = {k.replace("lora_", "lora_renamed_"): v for k, v in weights.items()}
    else:
        weights = {k: v * 0 if "lora_B" in k else v for k, v in weights.items()}
    save_file(weights, f)
    with pytest.raises(EvalError, match="same outputs as the untrained model"):
        evaluate_run(tmp_path / "broken", report=tmp_path / "r.json", bootstrap=10, max_new_tokens=2)
    assert not (tmp_path / "r.json").exists()


def test_unknown_split_and_unfinished_run_are_clear_errors(runs, tmp_path, capsys):
    assert main(["eval", str(runs / "qa"), "--split", "nope", "--report", str(tmp_path / "r.json")]) == 2
    assert "has no split 'nope'" in capsys.readouterr().err
    shutil.copytree(runs / "qa", tmp_path / "half")
    run = json.loads((tmp_path / "half" / "run.json").read_text())
    (tmp_path / "half" / "run.json").write_text(json.dumps({**run, "status": "running"}))
    assert main(["eval", str(tmp_path / "half"), "--report", str(tmp_path / "r.json")]) == 2
    assert "did not finish" in capsys.readouterr().err
