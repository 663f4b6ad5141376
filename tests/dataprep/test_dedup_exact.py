"""Exact dedup: normalisation options, the representative policy, duplicate_of."""

from __future__ import annotations

import pyarrow as pa

from corpusmill.dataprep.dedup import ExactConfig, exact_hashes
from tests.conftest import write_jsonl


def _same(a: str, b: str, cfg: ExactConfig) -> bool:
    hi, lo = exact_hashes(pa.array([a, b]), cfg)
    return hi[0] == hi[1] and lo[0] == lo[1]


def test_normalisation_options():
    a, b = "  Hello,   World! 2024 ", "hello, world! 2024"
    assert _same(a, b, ExactConfig())
    assert not _same(a, b, ExactConfig(lowercase=False))
    assert not _same(a, b, ExactConfig(whitespace=False))
    assert not _same("hello world 2024", "hello world 1999", ExactConfig())
    assert _same("Hello, world! 2024", "hello world 1999", ExactConfig(punctuation=True, digits=True))
    assert not _same("Hello, world!", "hello world", ExactConfig())


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
    # one group with copies (a, c, d), two copies removed, two rows indexed for later versions
    assert r.manifest["stages"][2]["counters"] == {"exact_groups": 1, "exact_duplicates": 2, "index_rows": 2}
