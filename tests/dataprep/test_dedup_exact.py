"""Exact dedup: normalisation options, the representative policy, duplicate_of."""

from __future__ import annotations

import pyarrow as pa

from corpusmill.dataprep.dedup import ExactConfig, normalise
from tests.conftest import write_jsonl


def test_normalisation_options():
    texts = pa.array(["  Hello,   World! 2024 ", "hello world 1999"])
    assert normalise(texts, ExactConfig()).to_pylist() == ["hello, world! 2024", "hello world 1999"]
    both = normalise(texts, ExactConfig(punctuation=True, digits=True)).to_pylist()
    assert both[0] == both[1] == "hello world 0000"
    strict = normalise(texts, ExactConfig(lowercase=False, whitespace=False)).to_pylist()
    assert strict[0] == "  Hello,   World! 2024 "


def test_exact_duplicates_keep_first_or_longest(tmp_path, run):
    write_jsonl(tmp_path / "d.jsonl", [
        {"id": "a", "text": "Reset my password please"},
        {"id": "b", "text": "Something unrelated entirely"},
        {"id": "c", "text": "reset my   PASSWORD please"},
        {"id": "d", "text": "Reset my password please."},
    ])
    r = run({"dataset": "d", "inputs": [{"path": "d.jsonl", "id_field": "id"}], "steps": [{"dedup": {"exact": True}}]})
    assert r.version.read_split("all").column("id").to_pylist() == ["a", "b", "d"]
    rej = r.version.read_rejects().to_pylist()
    assert [(x["id"], x["reason"], x["duplicate_of"], x["similarity"]) for x in rej] == [("c", "exact_duplicate", "a", 1.0)]

    r = run({"dataset": "d", "inputs": [{"path": "d.jsonl", "id_field": "id"}],
             "steps": [{"dedup": {"exact": {"punctuation": True}, "keep": "longest"}}]})
    assert r.version.read_split("all").column("id").to_pylist() == ["b", "c"]  # c is the longest of a/c/d
    assert {x["id"]: x["duplicate_of"] for x in r.version.read_rejects().to_pylist()} == {"a": "c", "d": "c"}
    assert r.manifest["stages"][2]["counters"] == {"exact_groups": 2, "exact_duplicates": 2}
