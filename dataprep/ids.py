"""The ``unique_ids`` stage the runner always runs after reading: ids must be unique.

A repeated id given by the user (``id_field``) is rejected as ``duplicate_id``, the first row in
stable order (input order, then line order) is kept. A repeated generated id (same source name
and same text) is not a user mistake: later copies get ``-2``, ``-3``... so every row stays
addressable; whether such copies are duplicates is for the dedup stage to decide.
"""

from __future__ import annotations

from functools import cached_property, partial
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import xxhash

from corpusmill import schema as S
from corpusmill.grouping import partition_bits, partition_of
from pydantic import Field

from corpusmill.stage import BatchInfo, Filter, ReduceStage, StageConfig, StageOutput, read_facts, write_decisions



class UniqueIds(ReduceStage):
    kind = "unique_ids"

    def __init__(self, config, *, name, run, generated_id_shards: frozenset[int]) -> None:
        super().__init__(config, name=name, run=run)
        self.generated = generated_id_shards

    def map_facts(self, batch: pa.Table, info: BatchInfo) -> pa.Table:
        # 128-bit xxh3 of each id's UTF-8 bytes, big-endian halves (= the digest as an integer)
        digest = xxhash.xxh3_128_digest
        ids = batch.column(S.ID).cast(pa.binary()).to_pylist()
        d = np.frombuffer(b"".join([digest(rid) for rid in ids]), dtype=">u8").reshape(-1, 2).astype(np.uint64)
        n = batch.num_rows
        return pa.table({
            "hi": pa.array(d[:, 0]),
            "lo": pa.array(d[:, 1]),
            "row": pa.array(np.arange(info.row_offset, info.row_offset + n, dtype=np.int64)),
            "generated": pa.array(np.full(n, info.shard in self.generated)),
        })

    def reduce(self, facts: list[Path | None], decisions: Path, index: Path) -> dict[str, int]:
        if self.groupby is not None:  # by a partition of the id hash, on the executor's engine
            rows = sum(pq.read_metadata(f).num_rows for f in facts if f is not None)
            repeated = self.groupby(facts, ["hi", "lo", "row", "generated"],
                                    partial(id_records, bits=partition_bits(rows)), ["part"], repeated_ids)
        else:
            t = read_facts(facts)
            repeated = repeated_ids(t) if t is not None else None
        tables = {}
        if repeated is not None and repeated.num_rows:
            repeated = repeated.sort_by([("shard", "ascending"), ("row", "ascending")])
            shard = repeated.column("shard").to_numpy()
            bounds = np.r_[0, np.flatnonzero(np.diff(shard)) + 1, len(shard)]
            for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist()):
                tables[int(shard[a])] = repeated.slice(a, b - a).select(["row", "occurrence", "reject"])
        write_decisions(decisions, tables)
        return {"repeated_ids": repeated.num_rows if repeated is not None else 0}

    def undecided(self, batch: pa.Table) -> pa.Table:
        return batch

    def apply(self, batch: pa.Table, info: BatchInfo, decision: pa.Table | None) -> StageOutput:
        n = batch.num_rows
        if decision is None or n == 0:
            return StageOutput(batch)
        rows = decision.column("row").to_numpy()
        lo, hi = np.searchsorted(rows, [info.row_offset, info.row_offset + n])
        if lo == hi:
            return StageOutput(batch)
        local = rows[lo:hi] - info.row_offset
        occurrence = decision.column("occurrence").to_numpy()[lo:hi]
        reject = decision.column("reject").to_numpy(zero_copy_only=False)[lo:hi]
        ids = batch.column(S.ID).to_pylist()
        keep = np.ones(n, dtype=bool)
        keep[local[reject]] = False
        renamed = 0
        for r, occ, rej in zip(local, occurrence, reject):
            if not rej:
                ids[r] = f"{ids[r]}-{occ + 1}"
                renamed += 1
        if renamed:
            idx = batch.schema.get_field_index(S.ID)
            batch = batch.set_column(idx, batch.schema.field(idx), pa.array(ids, pa.string()))
        dropped = batch.filter(pa.array(~keep))
        dup = dropped.column(S.ID).to_pylist()
        out = StageOutput(
            batch.filter(pa.array(keep)),
            self.reject(
                dropped, "duplicate_id",
                detail=[f"id '{d}' is already used by an earlier row, which was kept; ids must be unique" for d in dup],
                duplicate_of=dup,
            ) if dropped.num_rows else None,
            {"generated_ids_suffixed": renamed} if renamed else {},
        )
        return out


def id_records(facts: pa.Table, shard: int, bits: int) -> pa.Table:
    """Shard ``shard``'s id facts as records to group: with their shard and the partition of
    their id hash (equal ids share a partition)."""
    n = facts.num_rows
    return facts.append_column("shard", pa.array(np.full(n, shard, dtype=np.int32))).append_column(
        "part", pa.array(partition_of(facts.column("hi").to_numpy(), bits)))


def repeated_ids(t: pa.Table) -> pa.Table:
    """The rows whose id an earlier row (in stable order: shard, then row) already has, among the
    id facts ``t`` (hi, lo, row, generated, shard): their shard, row, occurrence (1 for the
    second row with the id, 2 for the third...) and whether they are rejected (a user id) or
    renamed (a generated one). All rows of an id must be in ``t``."""
    hi, lo = t.column("hi").to_numpy(), t.column("lo").to_numpy()
    shard, row = t.column("shard").to_numpy(), t.column("row").to_numpy()
    gen = t.column("generated").to_numpy(zero_copy_only=False)
    order = np.lexsort((row, shard, lo, hi))  # stable order inside each id group
    same = np.zeros(len(order), dtype=bool)
    same[1:] = (hi[order][1:] == hi[order][:-1]) & (lo[order][1:] == lo[order][:-1])
    # occurrence number inside each group: 0 for the first row, 1, 2, ... after
    group_start = np.maximum.accumulate(np.where(~same, np.arange(len(order)), 0))
    occurrence = (np.arange(len(order)) - group_start)[same]
    pick = order[same]
    return pa.table({"shard": pa.array(shard[pick].astype(np.int32)), "row": pa.array(row[pick].astype(np.int64)),
                     "occurrence": pa.array(occurrence.astype(np.int64)), "reject": pa.array(~gen[pick])})


class UnseenIdsConfig(StageConfig):
    version: str = Field(description=(
        "NAME@REF of the version whose ids are taken: a row with one of its ids is rejected as duplicate_id "
        "(`corpusmill refresh` puts this step first, with the parent minus --remove, so merged ids stay unique)"))


class UnseenIds(Filter):
    """Keeps rows whose id the ``version`` does not hold. The ids are read once per process."""

    kind = "unseen_ids"
    Config = UnseenIdsConfig

    def identity(self) -> dict | None:
        if self.run.store_root is None:
            return None
        from corpusmill.store import Store

        return {"version": Store(self.run.store_root).resolve(self.config.version).ref}

    @cached_property
    def taken(self) -> pa.Array:
        from corpusmill.store import Store

        return Store(self.run.store_root).resolve(self.config.version).ids()

    def keep(self, batch: pa.Table):
        ids = batch.column(S.ID)
        # probe the version's many ids against the batch's few (a hash table of the batch, not of
        # the version, is built per call), then test the batch against the ids that were found
        found = self.taken.filter(pc.is_in(self.taken, value_set=ids))
        seen = pc.is_in(ids, value_set=found).to_numpy(zero_copy_only=False)
        ids = batch.column(S.ID).filter(pa.array(seen)).to_pylist()
        return ~seen, "duplicate_id", [
            f"id '{i}' is already used by a row of {self.config.version}; give a changed row a new id, "
            "or list the old id in --remove to replace it" for i in ids]

    def process(self, batch: pa.Table, info: BatchInfo) -> StageOutput:
        mask, reason, details = self.keep(batch)
        return self.split(batch, mask, reason, details)
