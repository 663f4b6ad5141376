"""Splits are assigned per group, stably, with label proportions kept when asked."""

from __future__ import annotations

import numpy as np

from corpusmill.dataprep.split import connected_groups
from tests.conftest import REAL_TEXTS, write_jsonl


def _rows(n, offset=0):
    topics = ["billing", "login", "shipping", "crash"]
    return [{"id": f"r{i}", "text": f"{REAL_TEXTS[i % 10]} Case number {i} about {topics[i % 4]}.",
             "label": topics[i % 4], "doc": f"d{i // 3}"} for i in range(offset, offset + n)]


def _splits(result):
    out = {}
    for split in result.version.splits():
        for rid in result.version.read_split(split).column("id").to_pylist():
            out[rid] = split
    return out


def test_connected_groups():
    a = np.array([5, 5, 7, 8, 9], dtype=np.uint64)
    b = np.array([0, 1, 1, 2, 2], dtype=np.uint64)  # 0 = no key
    comp = connected_groups(a, b)
    assert comp.tolist() == [0, 0, 0, 3, 3]


def test_ratios_and_groups_of_near_twins_and_documents(tmp_path, run):
    rows = _rows(3000)
    rows.append({"id": "twin", "text": rows[10]["text"].upper(), "label": "login", "doc": "other"})  # same normalised text
    write_jsonl(tmp_path / "d.jsonl", rows)
    r = run({"dataset": "s", "inputs": [{"path": "d.jsonl", "id_field": "id", "label_field": "label"}],
             "steps": [{"split": {"group_by": "doc"}}]})
    where = _splits(r)
    assert r.manifest["splits"].keys() == {"train", "validation", "test"}
    n = len(where)
    assert abs(r.manifest["splits"]["train"] / n - 0.8) < 0.04
    assert abs(r.manifest["splits"]["test"] / n - 0.1) < 0.03
    # rows of one document share a split; a text's near-twin follows it
    for d in range(0, 1000):
        assert len({where[f"r{i}"] for i in range(3 * d, 3 * d + 3)}) == 1
    assert where["twin"] == where["r10"]
    assert sum(r.manifest["label_counts"]["train"].values()) == r.manifest["splits"]["train"]


def test_split_is_stable_when_rows_are_added(tmp_path, run):
    write_jsonl(tmp_path / "d.jsonl", _rows(1000))
    cfg = {"dataset": "s", "seed": 5, "inputs": [{"path": "d.jsonl", "id_field": "id"}], "steps": [{"split": {}}]}
    before = _splits(run(cfg))
    write_jsonl(tmp_path / "d.jsonl", _rows(1000) + _rows(500, offset=1000))
    after = _splits(run(cfg))
    assert all(after[i] == s for i, s in before.items())
    other_seed = _splits(run({**cfg, "seed": 6}))
    assert sum(other_seed[i] != s for i, s in before.items()) > 100


def test_stratified_proportions_within_tolerance(tmp_path, run):
    rows = _rows(400)
    rows += [{"id": f"rare{i}", "text": f"A rare complaint about the warranty, number {i}.", "label": "warranty"}
             for i in range(40)]
    write_jsonl(tmp_path / "d.jsonl", rows)
    r = run({"dataset": "s", "inputs": [{"path": "d.jsonl", "id_field": "id", "label_field": "label"}],
             "steps": [{"split": {"ratios": {"train": 0.5, "test": 0.5}, "stratify": "label", "tolerance": 0.05}}]})
    counts = r.manifest["label_counts"]
    for label in ("billing", "login", "shipping", "crash", "warranty"):
        total = counts["train"][label] + counts["test"][label]
        assert abs(counts["train"][label] / total - 0.5) <= 0.05, (label, counts)
    split_stage = next(s for s in r.manifest["stages"] if s["name"] == "split")
    assert split_stage["counters"]["strata_over_tolerance"] == 0


def test_split_runs_after_dedup_and_keeps_accounting(tmp_path, run):
    rows = _rows(200) + _rows(50)  # the 50 repeated rows reuse their ids: rejected as duplicate_id
    write_jsonl(tmp_path / "d.jsonl", rows)
    r = run({"dataset": "s", "inputs": [{"path": "d.jsonl", "id_field": "id"}],
             "steps": [{"dedup": {"exact": True}}, {"split": {"ratios": {"a": 1, "b": 1}}}]}, workers=2)
    m = r.manifest
    assert m["counts"]["rejected"] == {"unique_ids": {"duplicate_id": 50}}
    assert sum(m["splits"].values()) == 200
    assert set(m["splits"]) == {"a", "b"}


def test_near_twins_share_a_split_without_dedup(tmp_path, run):
    base = ("The quarterly maintenance window starts on Saturday at noon and lasts until Sunday morning, "
            "during which the billing portal and the customer dashboard will be unavailable for all users; "
            "please plan your exports ahead, download the invoices you need, and contact the support team "
            "by e-mail if an urgent payment has to be made while the systems are offline for the upgrade")
    rows = [{"id": f"t{i}", "text": base.replace("Saturday", day).replace("noon", hour)}
            for i, (day, hour) in enumerate([("Saturday", "noon"), ("Friday", "noon"), ("Saturday", "ten")])]
    rows += [{"id": f"o{i}", "text": f"{REAL_TEXTS[i % 10]} Ticket {i}."} for i in range(300)]
    write_jsonl(tmp_path / "d.jsonl", rows)
    cfg = {"dataset": "s", "inputs": [{"path": "d.jsonl", "id_field": "id"}],
           "steps": [{"split": {"ratios": {"a": 1, "b": 1, "c": 1}}}]}
    r = run(cfg)
    where = _splits(r)
    assert where["t0"] == where["t1"] == where["t2"]
    # the filler repeats each of 10 base texts with another ticket number: 10 near-twin groups
    for k in range(10):
        assert len({where[f"o{i}"] for i in range(k, 300, 10)}) == 1
    assert len({where[f"o{k}"] for k in range(10)}) > 1
    stage = next(s for s in r.manifest["stages"] if s["name"] == "split")
    assert stage["counters"]["rows_with_near_twins"] == 303
    off = run({**cfg, "steps": [{"split": {"ratios": {"a": 1, "b": 1, "c": 1}, "near": False}}]})
    assert next(s for s in off.manifest["stages"] if s["name"] == "split")["counters"]["rows_with_near_twins"] == 0
