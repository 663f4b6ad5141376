"""``cluster_id`` names a duplicate cluster on every one of its rows, kept and rejected alike: grouping
a version's rows and rejects by it (in the store and in an export) gives back the planted families,
whatever steps follow ``dedup``, for exact and near dedup and with ``duplicates: group``."""

from __future__ import annotations

import json
from collections import defaultdict

import pyarrow.parquet as pq
import pytest

from corpusmill.cli import main
from tests.conftest import write_jsonl
from tests.dataprep.test_dedup import PARAGRAPHS, substitute


def families(near: bool) -> tuple[list[dict], set[frozenset[str]]]:
    """Every paragraph with a shouted copy and two copies with one word changed; returns the rows
    and the families (sets of ids) dedup must find: each paragraph with its exact copy, plus the
    one-word variants when ``near``. A row in no family is its own singleton."""
    rows, expected = [], set()
    for i, p in enumerate(PARAGRAPHS):
        ids = [f"p{i:02d}", f"p{i:02d}-shout", f"p{i:02d}-edit-a", f"p{i:02d}-edit-b"]
        rows += [{"id": ids[0], "text": p}, {"id": ids[1], "text": p.upper()},
                 {"id": ids[2], "text": substitute(p, 1, seed=10 + i)},
                 {"id": ids[3], "text": substitute(p, 1, seed=50 + i)}]
        if near:
            expected.add(frozenset(ids))
        else:
            expected |= {frozenset(ids[:2]), frozenset(ids[2:3]), frozenset(ids[3:])}
    return rows, expected


def grouped(rows: list[dict]) -> set[frozenset[str]]:
    by_cluster = defaultdict(set)
    for r in rows:
        assert r["cluster_id"] is not None, r
        by_cluster[r["cluster_id"]].add(r["id"])
    return {frozenset(ids) for ids in by_cluster.values()}


def stored_rows(version) -> tuple[list[dict], list[dict]]:
    kept = [r for split in version.splits() for r in version.read_split(split).to_pylist()]
    rejects = version.read_rejects()
    return kept, rejects.to_pylist() if rejects is not None else []


def exported_rows(tmp_path, version, store, fmt: str) -> tuple[list[dict], list[dict]]:
    out = tmp_path / f"export-{fmt}"
    assert main(["datasets", "export", version.ref, "--format", fmt, "--out", str(out), "--store", str(store)]) == 0
    if fmt == "jsonl":
        read = lambda f: [json.loads(line) for line in f.read_text().splitlines()]  # noqa: E731
    else:
        read = lambda f: pq.read_table(f).to_pylist()  # noqa: E731
    kept = [r for f in sorted(out.glob(f"*.{fmt}")) if f.stem != "rejects" for r in read(f)]
    return kept, read(out / f"rejects.{fmt}")


DEDUPS = {
    "exact": ({"exact": True}, False),
    "near": ({"exact": True, "near": {"threshold": 0.8}}, True),
    "near-only": ({"near": {"threshold": 0.8}}, True),
    "group": ({"exact": True, "near": {"threshold": 0.8}, "duplicates": "group"}, True),
}


@pytest.mark.parametrize("then_split", [False, True], ids=["dedup-last", "then-split"])
@pytest.mark.parametrize("how", list(DEDUPS))
def test_grouping_rows_and_rejects_by_cluster_id_finds_the_planted_families(tmp_path, run, capsys, how, then_split):
    dedup, near = DEDUPS[how]
    rows, expected = families(near)
    write_jsonl(tmp_path / "d.jsonl", rows)
    steps = [{"dedup": dedup}] + ([{"split": {}}] if then_split else [])
    store = tmp_path / "store"
    result = run({"dataset": "families", "inputs": [{"path": "d.jsonl", "id_field": "id"}], "steps": steps},
                 store=store)
    kept, rejects = stored_rows(result.version)
    assert len(kept) + len(rejects) == len(rows)
    if how == "group":
        assert not rejects and len(kept) == len(rows)
    else:
        assert len(kept) == len(expected)  # one row per family
        # a reject's cluster is the row it was removed for, which is kept and names itself
        kept_ids = {r["id"] for r in kept}
        assert all(r["cluster_id"] == r["duplicate_of"] in kept_ids for r in rejects)
    named = {r["cluster_id"] for r in kept + rejects}
    assert named <= {r["id"] for r in kept}  # a cluster is named by a row that stays
    assert all(r["cluster_id"] == r["id"] for r in kept if r["id"] in named)  # which names itself
    assert grouped(kept + rejects) == expected
    for fmt in ("jsonl", "parquet"):
        ex_kept, ex_rejects = exported_rows(tmp_path, result.version, store, fmt)
        assert len(ex_kept) == len(kept) and len(ex_rejects) == len(rejects)
        assert grouped(ex_kept + ex_rejects) == expected
    capsys.readouterr()
    if then_split:  # a family's kept rows share a split (with group: all of them)
        split_of = {r["id"]: split for split in result.version.splits()
                    for r in result.version.read_split(split).to_pylist()}
        for family in expected:
            assert len({split_of[i] for i in family if i in split_of}) == 1


def test_rejects_carry_the_columns_the_stage_gave_the_rows(tmp_path, run):
    """The reject file of a dedup step holds cluster_id with the rows' other columns, then the reject columns."""
    rows, _ = families(near=True)
    write_jsonl(tmp_path / "d.jsonl", rows)
    result = run({"dataset": "families", "inputs": [{"path": "d.jsonl", "id_field": "id"}],
                  "steps": [{"dedup": {"exact": True, "near": {"threshold": 0.8}}}, {"split": {}}]})
    files = sorted((result.version.path / "rejects").glob("dedup-*.parquet"))
    assert files
    names = pq.read_schema(files[0]).names
    assert names[:2] == ["id", "text"] and names.index("cluster_id") < names.index("stage")
    assert names[-6:] == ["stage", "reason", "detail", "duplicate_of", "similarity", "raw"]
