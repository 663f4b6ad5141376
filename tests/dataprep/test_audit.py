"""corpusmill audit: planted leaks are found with evidence, clean data reports none, the gate
exits 1 above its threshold, and --fix publishes a version without the leaking train rows."""

from __future__ import annotations

import json

from corpusmill.cli import main
from corpusmill.store import Store
from tests.conftest import write_jsonl

TRAIN = [
    "The quarterly report shows revenue grew by twelve percent while costs stayed flat across regions.",
    "Our support team answers tickets within four hours on weekdays and within a day on weekends.",
    "To reset the router, hold the small button on the back for ten seconds until the light blinks.",
    "The museum opens at nine in the morning and closes at six, except on public holidays.",
    "Photosynthesis converts light energy into chemical energy stored in glucose molecules inside plants.",
    "Please remember to water the tomato plants every evening during the hot summer months.",
    "The train to the airport leaves every fifteen minutes from platform three of the central station.",
    "Long passage: in the beginning the committee met twice a week to review every proposal submitted by the members of the association before the annual vote.",
]
TEST = [
    "the quarterly report shows revenue grew by twelve percent while costs stayed FLAT across regions.",  # exact
    "A new sentence: the committee met twice a week to review every proposal submitted by the members of the association, they said.",  # 13-gram
    "Volcanoes form where tectonic plates diverge or converge and magma reaches the surface.",  # clean
    "Bees communicate the location of flowers to the hive through a waggle dance.",  # clean
    "Please remember to water the tomato plants each evening during the hot summer months.",  # near (one word changed)
]


def _audit(capsys, *argv):
    code = main(["audit", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_file_sides_find_planted_leaks_with_evidence(tmp_path, capsys):
    write_jsonl(tmp_path / "train.jsonl", [{"text": t, "label": "a"} for t in TRAIN])
    write_jsonl(tmp_path / "test.jsonl", [{"text": t, "label": "b" if i == 0 else "a"} for i, t in enumerate(TEST)])
    report = tmp_path / "r.json"
    code, out, _ = _audit(capsys, "--train", str(tmp_path / "train.jsonl"), "--test", str(tmp_path / "test.jsonl"),
                          "--label-field", "label", "--threshold", "0.5", "--report", str(report))
    assert code == 0
    r = json.loads(report.read_text())
    s = r["summary"]["pairs"]["test vs train"]
    # near: the exact copy, the committee passage (Jaccard ~0.52) and the one-word edit
    assert (s["test_rows"], s["train_rows"], s["exact"], s["near"], s["ngram"], s["any"]) == (5, 8, 1, 3, 2, 3)
    assert s["contamination_rate"] == 0.6
    edited = next(h for h in r["near"] if h["test_text"].startswith("Please remember"))
    assert 0.5 <= edited["similarity"] < 1.0 and "Jaccard" in edited["why"]
    exact = r["exact"][0]
    assert exact["test_text"].startswith("the quarterly") and exact["train_text"].startswith("The quarterly")
    spans = {h["ngram"] for h in r["ngram"]}
    assert "the committee met twice a week to review every proposal submitted by the members of the association" in spans
    assert all(h["why"] for h in r["exact"] + r["ngram"])
    # the exact twin carries another label: a label conflict across splits
    assert [(c["scope"], c["label_a"], c["label_b"]) for c in r["label_conflicts"]] == [("across", "b", "a")]
    assert "| test | train |" in out


def test_clean_split_reports_nothing_and_gate_exit_codes(tmp_path, capsys):
    write_jsonl(tmp_path / "train.jsonl", [{"text": t} for t in TRAIN])
    write_jsonl(tmp_path / "clean.jsonl", [{"text": t} for t in TEST[2:4]])
    report = tmp_path / "r.json"
    code, _, _ = _audit(capsys, "--train", str(tmp_path / "train.jsonl"), "--test", str(tmp_path / "clean.jsonl"),
                        "--report", str(report), "--fail-above", "0")
    r = json.loads(report.read_text())
    assert code == 0
    assert r["exact"] == r["ngram"] == r["near"] == r["label_conflicts"] == []
    assert r["summary"]["max_contamination_rate"] == 0.0
    write_jsonl(tmp_path / "leaky.jsonl", [{"text": t} for t in TEST])
    code, _, err = _audit(capsys, "--train", str(tmp_path / "train.jsonl"), "--test", str(tmp_path / "leaky.jsonl"),
                          "--report", str(report), "--fail-above", "0.2")
    assert code == 1 and "above --fail-above 0.2" in err
    code, _, _ = _audit(capsys, "--train", str(tmp_path / "train.jsonl"), "--test", str(tmp_path / "leaky.jsonl"),
                        "--report", str(report), "--fail-above", "0.5")
    assert code == 0


def test_version_splits_label_conflicts_within_and_fix(tmp_path, run, capsys):
    rows = [{"id": f"tr{i}", "text": t, "label": "x", "part": "train"} for i, t in enumerate(TRAIN)]
    rows += [{"id": f"te{i}", "text": t, "label": "x", "part": "test"} for i, t in enumerate(TEST)]
    rows.append({"id": "tr-conflict", "text": TRAIN[3].upper(), "label": "y", "part": "train"})
    write_jsonl(tmp_path / "d.jsonl", rows)
    from corpusmill.pipelines.registry import STAGES, register_stage

    from tests.dataprep.split_by_field import SplitByField
    STAGES.pop("split_by_field", None)
    register_stage(SplitByField)
    try:
        res = run({"dataset": "ds", "inputs": [{"path": "d.jsonl", "id_field": "id", "label_field": "label"}],
                   "steps": [{"split_by_field": {"field": "part"}}]})
    finally:
        STAGES.pop("split_by_field", None)
    store = str(tmp_path / "store")
    report = tmp_path / "r.json"
    code, out, _ = _audit(capsys, res.version.ref, "--store", store, "--threshold", "0.5", "--report", str(report),
                          "--fix", "ds@clean")
    assert code == 0
    r = json.loads(report.read_text())
    assert r["summary"]["pairs"]["test vs train"]["any"] == 3
    within = [c for c in r["label_conflicts"] if c["scope"] == "within"]
    assert [(c["id_a"], c["id_b"]) for c in within] == [("tr3", "tr-conflict")]
    fixed = Store(store).resolve("ds@clean")
    assert fixed.manifest["parent"] == res.version.ref
    # the strongest evidence names the reason: tr0 exact; tr7 (near and ngram) and tr5 near
    assert fixed.manifest["counts"]["rejected"]["audit_fix"] == {"leaked_exact": 1, "leaked_near": 2}
    assert set(fixed.read_split("test").column("id").to_pylist()) == {f"te{i}" for i in range(5)}
    train_ids = set(fixed.read_split("train").column("id").to_pylist())
    assert not {"tr0", "tr5", "tr7"} & train_ids and len(train_ids) == 6
    rej = {x["id"]: x for x in fixed.read_rejects().to_pylist()}
    assert rej["tr0"]["duplicate_of"] == "te0" and rej["tr0"]["reason"] == "leaked_exact"
    m = fixed.manifest
    assert m["counts"]["input"] == m["counts"]["kept"] + sum(sum(v.values()) for v in m["counts"]["rejected"].values())
    # the fixed version audits clean
    code, _, _ = _audit(capsys, "ds@clean", "--store", store, "--threshold", "0.5", "--report", str(report),
                        "--fail-above", "0")
    assert code == 0
