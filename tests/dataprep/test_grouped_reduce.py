"""The reduce groupings stated as records/reduce functions (what the Ray executor shuffles with
Ray Data's groupby) give the same decisions, index and counters as the in-memory reduce.

Runs them on the in-process engine (:func:`corpusmill.grouping.group_in_process`) with the
partitions cut small, so every grouping spans several groups; no Ray needed."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from corpusmill import grouping
from corpusmill.dataprep import lsh
from corpusmill.dataprep.dedup import Dedup, DedupConfig
from corpusmill.dataprep.ids import UniqueIds
from corpusmill.dataprep.split import Split, SplitConfig
from corpusmill.stage import BatchInfo, RunInfo
from tests.conftest import REAL_TEXTS


def corpus(n: int = 900) -> list[dict]:
    """Tickets built from real sentences: distinct rows sharing long passages (LSH candidates
    that fail verification), exact copies, near copies (one word changed) and reused ids."""
    rows = []
    for i in range(n):
        text = f"{REAL_TEXTS[i % 10]} {REAL_TEXTS[(i // 10) % 10]} Ticket {i} was opened by customer {i * 7 % 1000}."
        if i % 9 == 4:
            text = rows[i - 3]["text"].upper()  # an exact copy after normalisation
        elif i % 9 == 7:
            text = rows[i - 5]["text"].replace("was opened", "was filed")  # a near copy
        rows.append({"id": f"t{i}" if i % 50 != 49 else f"t{i - 20}", "text": text, "doc": f"d{i % 37}"})
    return rows


def shards_of(rows: list[dict], k: int = 3) -> list[pa.Table]:
    step = -(-len(rows) // k)
    return [pa.Table.from_pylist(rows[a:a + step]) for a in range(0, len(rows), step)]


def reduce_both_ways(tmp_path, make_stage, shards: list[pa.Table], monkeypatch, batch: int = 128) -> dict:
    """Write the stage's facts (and rows) per shard, then reduce in memory and on the grouping
    engine with tiny partitions; returns both results and how many groups the engine made."""
    facts, texts = [], []
    stage = make_stage()
    for k, table in enumerate(shards):
        parts = [stage.map_facts(table.slice(a, batch), BatchInfo(k, a)) for a in range(0, table.num_rows, batch)]
        facts.append(tmp_path / f"facts-{k}.parquet")
        pq.write_table(pa.concat_tables(parts), facts[-1])
        texts.append(tmp_path / f"rows-{k}.parquet")
        pq.write_table(table, texts[-1])
    groups = []

    def engine(facts, columns, records, keys, reduce):
        def counted(g):
            groups.append(g.num_rows)
            return reduce(g)
        return grouping.group_in_process(facts, columns, records, keys, counted)

    out = {}
    for how, groupby in (("memory", None), ("grouped", engine)):
        if how == "grouped":
            monkeypatch.setattr(grouping, "RECORDS_PER_GROUP", 64)
        st = make_stage()
        st.rows_files, st.groupby = texts, groupby
        counters = st.reduce(facts, tmp_path / how / "decisions", tmp_path / how / "index")
        files = {p.relative_to(tmp_path / how).as_posix(): pq.read_table(p) if p.suffix == ".parquet" else p.read_text()
                 for p in sorted((tmp_path / how).rglob("*")) if p.is_file()}
        out[how] = (counters, files)
    out["groups"] = groups
    return out


def assert_same(result: dict) -> None:
    (c1, f1), (c2, f2) = result["memory"], result["grouped"]
    assert c1 == c2
    assert sorted(f1) == sorted(f2)
    for name in f1:
        assert f1[name] == f2[name] if isinstance(f1[name], str) else f1[name].equals(f2[name]), name


RUN = RunInfo("t", 7)


def test_dedup_exact_and_near_groupings_match_the_in_memory_reduce(tmp_path, monkeypatch):
    config = DedupConfig(exact=True, near={"memory_mb": 1}, keep="longest")
    result = reduce_both_ways(tmp_path, lambda: Dedup(config, name="dedup", run=RUN), shards_of(corpus()), monkeypatch)
    assert_same(result)
    counters = result["memory"][0]
    # 100 planted exact copies; of the 100 planted near copies LSH misses a few (5 % at Jaccard 0.8)
    assert counters["exact_duplicates"] == 100 and counters["near_duplicates"] >= 80
    assert counters["near_candidate_pairs"] > counters["near_accepted_pairs"]  # candidates that failed verification
    assert len(result["groups"]) > 20  # exact partitions plus (band, partition) groups


def test_dedup_grouped_keepers_follow_the_keep_policy(tmp_path, monkeypatch):
    config = DedupConfig(exact=True, near=None, keep="first")
    result = reduce_both_ways(tmp_path, lambda: Dedup(config, name="dedup", run=RUN), shards_of(corpus(), 4), monkeypatch)
    assert_same(result)
    decisions = pa.concat_tables([t for n, t in result["grouped"][1].items() if n.startswith("decisions/")])
    # keep first: every exact copy (row i, i % 9 == 4) points at the earlier row it copies
    assert set(decisions.column("reason").to_pylist()) == {"exact_duplicate"} and decisions.num_rows == 100


def test_repeated_ids_grouped_match_the_in_memory_reduce(tmp_path, monkeypatch):
    shards = shards_of(corpus(), 3)
    make = lambda: UniqueIds(None, name="unique_ids", run=RUN, generated_id_shards=frozenset({1}))  # noqa: E731
    result = reduce_both_ways(tmp_path, make, shards, monkeypatch)
    assert_same(result)
    assert result["memory"][0]["repeated_ids"] == 18
    decisions = result["grouped"][1]
    # shard 1 has generated ids: its repeats are renamed, not rejected
    assert not decisions["decisions/shard-00001.parquet"].column("reject").to_pylist()[0]
    assert all(decisions["decisions/shard-00000.parquet"].column("reject").to_pylist())


def test_split_near_twin_groupings_match_the_in_memory_reduce(tmp_path, monkeypatch):
    make = lambda: Split(SplitConfig(group_by="doc"), name="split", run=RUN)  # noqa: E731
    result = reduce_both_ways(tmp_path, make, shards_of(corpus(), 3), monkeypatch)
    assert_same(result)
    assert result["memory"][0]["rows_with_near_twins"] > 100
    assert len(result["groups"]) > 20


@pytest.mark.parametrize("bits", [0, 2, 5])
def test_band_groups_give_the_pairs_of_the_whole_band(bits):
    rng = np.random.default_rng(3)
    n, bands = 3000, 4
    keys = rng.integers(1, 2**63, size=(n, bands), dtype=np.int64).astype(np.uint64)
    for b in range(bands):  # buckets of 2..40 rows (a big one gets star + chain pairs)
        for size in (2, 3, 17, 40):
            who = rng.choice(n, size, replace=False)
            keys[who, b] = keys[who[0], b]
    who = np.arange(n, dtype=np.int64) * 3 + 1  # global numbers, ascending, not positions
    whole = lsh.unique_pairs(np.concatenate([lsh.bucket_pairs(keys[:, b], who) for b in range(bands)]))
    records = lsh.band_records(keys, who, bits)
    t = records.sort_by([("band", "ascending"), ("part", "ascending")])
    band, part = t.column("band").to_numpy(), t.column("part").to_numpy()
    bounds = np.r_[0, np.flatnonzero((np.diff(band) != 0) | (np.diff(part) != 0)) + 1, t.num_rows]
    assert len(bounds) - 1 == bands * 2**bits
    # groups in shuffled order and rows shuffled inside: the engine promises neither
    pieces = [lsh.band_group_pairs(t.slice(a, b - a).take(rng.permutation(b - a)), (n,) * bands)
              for a, b in zip(bounds[:-1], bounds[1:])]
    got = pa.concat_tables([pieces[i] for i in rng.permutation(len(pieces))])
    pairs = lsh.unique_pairs(np.stack([got.column("a").to_numpy(), got.column("b").to_numpy()], axis=1))
    assert len(whole) >= bands * (1 + 3 + 30 + 76)  # all pairs of 2 and 3; star + chain of 17 and 40
    np.testing.assert_array_equal(pairs, whole)
