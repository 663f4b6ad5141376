"""eval.html from a classification report: predictions of two models on a real test split, scored
by the evaluator's own metrics, with rows where they disagree (no model needed)."""

from __future__ import annotations

import re

import numpy as np

from corpusmill.evaluate import metrics as M
from corpusmill.evaluate.compare import disagreements
from corpusmill.report.evaluation import write_eval_html
from corpusmill.train.data import Examples
from tests.report.chromium import png_facts, render
from tests.report.corpus import every_stage_pipeline, write_corpus


def test_eval_page_shows_intervals_confusion_and_disagreements(tmp_path, run):
    write_corpus(tmp_path)
    cfg = every_stage_pipeline()
    cfg["steps"] = [{"clean": {}}]  # no split stage: the one split 'all' is the test split here
    version = run(cfg).version
    rows = version.read_split("all", columns=["id", "label"]).to_pylist()
    labels = sorted({r["label"] for r in rows})
    y = np.array([labels.index(r["label"]) for r in rows])
    k = len(labels)
    # the base guesses the first label; the fine-tuned model is right except on every fifth row
    base = np.zeros_like(y)
    tuned = np.where(np.arange(len(y)) % 5 == 4, (y + 1) % k, y)
    ex = Examples([r["id"] for r in rows], [np.zeros(3, np.int64)] * len(rows), y, {})
    scored = {"base": {"preds": base}, "fine_tuned": {"preds": tuned}}
    idx = M.resamples(len(y), 200, 0)
    sets = {n: M.classification_set(y, s["preds"], k) for n, s in scored.items()}
    report = {
        "run": str(tmp_path / "run"), "task": "classification", "dataset": version.ref, "split": "all",
        "rows": len(y), "rows_in_split": len(y), "created_at": "2026-01-01T00:00:00+00:00",
        "models": {n: {**sets[n].with_intervals(idx), "confusion_matrix": {
            "labels": labels, "rows_true_columns_predicted": M.confusion(y, s["preds"], k).tolist()}}
            for n, s in scored.items()},
        "comparison": {"fine_tuned_vs_base": {**M.paired_bootstrap(sets["base"], sets["fine_tuned"], idx,
                                                                  {m: True for m in sets["base"].point}),
                                              "mcnemar_accuracy": M.mcnemar(base == y, tuned == y)}},
        "disagreements": disagreements(version, "all", ex, scored, labels, causal=False, limit=6),
        "bootstrap": {"resamples": 200, "seed": 0}, "model_sources": {}, "hardware": {"device": "cpu"},
    }
    differ = np.flatnonzero(base != tuned)
    dis = report["disagreements"]
    assert [d["id"] for d in dis] == [rows[i]["id"] for i in differ[:6]]
    text = dict(zip(*[version.read_split("all").column(c).to_pylist() for c in ("id", "text")]))
    for d, i in zip(dis, differ):
        assert d["text"] == text[d["id"]] and d["label"] == rows[i]["label"]
        assert d["predicted"] == {"base": labels[0], "fine_tuned": labels[tuned[i]]}

    page = write_eval_html(report, tmp_path / "eval.html")
    html = page.read_text(encoding="utf-8")
    assert set(re.findall(r"https?://[^\s\"'<>]+", html)) <= {"http://www.w3.org/2000/svg"}
    acc = report["models"]["fine_tuned"]["accuracy"]
    lo, hi = report["models"]["fine_tuned"]["accuracy_ci"]
    assert f"fine_tuned accuracy: {acc:.4g} [{lo:.4g}, {hi:.4g}]" in html
    for name in ("base", "fine_tuned"):
        assert f'aria-label="confusion matrix {name}"' in html
    section = html.split('id="disagreements"', 1)[1].split('id="run"', 1)[0]
    shown = re.findall(r"<tr><td>([^<]*)</td>", section)
    assert shown == [d["id"] for d in dis]
    assert render(page, tmp_path / "eval.png", tmp_path / "profile") == []
    assert png_facts(tmp_path / "eval.png")[2] > 16
