"""The ``dedup`` stage: exact duplicates by a hash of the normalised text.

Map: hash each row's normalised text (xxh3-128, stable across platforms and versions).
Reduce: group equal hashes, keep one representative per group by the ``keep`` policy, reject the
others as ``exact_duplicate`` with ``duplicate_of`` = the representative's id.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import xxhash
from pydantic import Field

from corpusmill import schema as S
from corpusmill.stage import BatchInfo, ReduceStage, StageConfig, StageOutput, write_decisions


class ExactConfig(StageConfig):
    """What counts as the same text. Normalisation applies to the comparison only; the kept text
    is never changed."""

    lowercase: bool = Field(True, description="ignore case")
    punctuation: bool = Field(False, description="ignore punctuation and symbols")
    whitespace: bool = Field(True, description="ignore differences in whitespace (runs, leading/trailing)")
    digits: bool = Field(False, description="ignore digits (treat every digit as 0)")


class DedupConfig(StageConfig):
    exact: bool | ExactConfig = Field(True, description="true: default normalisation; false: off")
    keep: Literal["first", "longest"] = Field(
        "first", description="representative of a group: first in input order, or the longest text (ties: first)"
    )


def normalise(texts: pa.Array | pa.ChunkedArray, cfg: ExactConfig) -> pa.Array:
    """The comparison form of each text, computed vectorised with Arrow kernels."""
    out = texts
    if cfg.lowercase:
        out = pc.utf8_lower(out)
    if cfg.digits:
        out = pc.replace_substring_regex(out, r"\d", "0")
    if cfg.punctuation:
        out = pc.replace_substring_regex(out, r"[\p{P}\p{S}]+", " ")
    if cfg.whitespace:
        out = pc.utf8_trim_whitespace(pc.replace_substring_regex(out, r"\s+", " "))
    return out


def hash128(values: list[str]) -> tuple[np.ndarray, np.ndarray]:
    hi = np.empty(len(values), dtype=np.uint64)
    lo = np.empty(len(values), dtype=np.uint64)
    for i, v in enumerate(values):
        d = xxhash.xxh3_128_intdigest(v.encode("utf-8"))
        hi[i] = d >> 64
        lo[i] = d & 0xFFFFFFFFFFFFFFFF
    return hi, lo


_DECISION = pa.schema([("row", pa.int64()), ("duplicate_of", pa.string())])


class Dedup(ReduceStage):
    kind = "dedup"
    Config = DedupConfig

    @property
    def exact(self) -> ExactConfig | None:
        e = self.config.exact
        if e is True:
            return ExactConfig()
        return e or None

    def map_facts(self, batch: pa.Table, info: BatchInfo) -> pa.Table | None:
        n = batch.num_rows
        facts = {
            "row": pa.array(np.arange(info.row_offset, info.row_offset + n, dtype=np.int64)),
            "id": batch.column(S.ID),
            "length": pc.utf8_length(batch.column(S.TEXT)).cast(pa.int64()),
        }
        if self.exact is not None:
            hi, lo = hash128(normalise(batch.column(S.TEXT), self.exact).to_pylist())
            facts["hi"], facts["lo"] = pa.array(hi), pa.array(lo)
        return pa.table(facts)

    def reduce(self, facts: list[Path | None], decisions: Path, index: Path) -> dict[str, int]:
        if self.exact is None:
            write_decisions(decisions, {})
            return {}
        parts = []
        for shard, path in enumerate(facts):
            if path is not None:
                t = pq.read_table(path, columns=["row", "id", "length", "hi", "lo"])
                parts.append(t.append_column("shard", pa.array(np.full(t.num_rows, shard, dtype=np.int32))))
        if not parts:
            write_decisions(decisions, {})
            return {"exact_groups": 0}
        t = pa.concat_tables(parts)
        hi, lo = t.column("hi").to_numpy(), t.column("lo").to_numpy()
        shard, row = t.column("shard").to_numpy(), t.column("row").to_numpy()
        length = t.column("length").to_numpy()
        # order inside a group: the representative first
        primary = -length if self.config.keep == "longest" else np.zeros(len(row), dtype=np.int64)
        order = np.lexsort((row, shard, primary, lo, hi))
        same = np.zeros(len(order), dtype=bool)
        same[1:] = (hi[order][1:] == hi[order][:-1]) & (lo[order][1:] == lo[order][:-1])
        rep_pos = np.maximum.accumulate(np.where(~same, np.arange(len(order)), 0))
        dup = order[same]
        rep = order[rep_pos[same]]
        ids = t.column("id")
        rep_ids = ids.take(pa.array(rep)).to_pylist() if len(rep) else []
        per_shard: dict[int, tuple[list, list]] = {}
        for i, rid in zip(dup.tolist(), rep_ids):
            rows, reps = per_shard.setdefault(int(shard[i]), ([], []))
            rows.append(int(row[i]))
            reps.append(rid)
        tables = {}
        for s, (rows, reps) in per_shard.items():
            o = np.argsort(rows)
            tables[s] = pa.table({"row": pa.array(np.asarray(rows)[o]), "duplicate_of": pa.array([reps[j] for j in o], pa.string())})
        write_decisions(decisions, tables)
        return {"exact_groups": int((~same).sum()), "exact_duplicates": int(same.sum())}

    def apply(self, batch: pa.Table, info: BatchInfo, decision: pa.Table | None) -> StageOutput:
        n = batch.num_rows
        if decision is None:
            return StageOutput(batch)
        rows = decision.column("row").to_numpy()
        a, b = np.searchsorted(rows, [info.row_offset, info.row_offset + n])
        if a == b:
            return StageOutput(batch)
        local = rows[a:b] - info.row_offset
        keep = np.ones(n, dtype=bool)
        keep[local] = False
        dropped = batch.take(pa.array(local))
        rejected = self.reject(
            dropped, "exact_duplicate",
            detail="same text as duplicate_of after normalisation",
            duplicate_of=decision.column("duplicate_of").slice(a, b - a).to_pylist(),
            similarity=[1.0] * len(local),
        )
        return StageOutput(batch.filter(pa.array(keep)), rejected)
