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


def test_exact_keepers_against_an_index_match_the_full_sort():
    """A refresh groups its few new rows against the big index without sorting it: every new
    row must get the keeper the sort of all rows would give (the first old row with its hash,
    else the best-ranked new row with it)."""
    from pathlib import Path

    import numpy as np

    from corpusmill.dataprep import dedup as D

    rng = np.random.default_rng(7)
    n_old, m = 5000, 800
    old_hash = rng.integers(1, 2**63, size=(n_old, 2), dtype=np.uint64)
    new_hash = rng.integers(1, 2**63, size=(m, 2), dtype=np.uint64)
    new_hash[:150] = old_hash[rng.choice(n_old, 150)]  # copies of old rows
    new_hash[150:300] = new_hash[rng.choice(np.arange(300, m), 150)]  # copies among the new rows
    new_hash[300:320, 1] = old_hash[:20, 1]  # same low word as an old row, other high word
    length = rng.integers(1, 50, size=m)
    old = D._OldIndex(ref="d@x", ids=pa.array([str(i) for i in range(n_old)]), hi=old_hash[:, 0], lo=old_hash[:, 1],
                      bands=None, part_of=np.zeros(n_old, np.int64), parts=[], root=Path("."))
    rows = D._Rows(shard=np.zeros(m, np.int32), row=np.arange(m), ids=pa.array([f"n{i}" for i in range(m)]),
                   length=length, quality=None, hi=new_hash[:, 0], lo=new_hash[:, 1], shingles=None,
                   shard_start=np.array([0, m]), files=[None], texts=[None])
    rank = D._rank_keys(type("S", (), {"config": D.DedupConfig(keep="longest")})(), rows, n_old)
    got = D._exact_keepers_against(rows, old, rank)

    first_old = {}
    for i, h in enumerate(map(tuple, old_hash.tolist())):
        first_old.setdefault(h, i)
    best_new = {}
    for j, h in enumerate(map(tuple, new_hash.tolist())):
        if h not in best_new or rank[n_old + j] < rank[n_old + best_new[h]]:
            best_new[h] = j
    want = [first_old.get(h, n_old + best_new[h]) for h in map(tuple, new_hash.tolist())]
    assert got[n_old:].tolist() == want
    assert got[:n_old].tolist() == list(range(n_old))
    assert (got[n_old:n_old + 150] < n_old).all() and (got[n_old + 300:n_old + 320] >= n_old).all()
