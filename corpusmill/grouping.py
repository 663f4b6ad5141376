"""Groupings of a reduce stage's facts, run by an engine the executor chooses.

The memory-hungry part of a global step is a grouping: rows with the same id, rows with the
same exact-text hash, rows sharing an LSH band key. A reduce stage states such a grouping as
two pure functions over Arrow tables:

* ``records(facts, k)``: shard ``k``'s facts (the columns asked for) -> the records to group,
  with the group-key columns (a band number, a partition of a hash);
* ``reduce(group)``: all records of one group -> a result table (pairs, keepers, repeats).

A :class:`GroupBy` engine runs them and returns every group's result in one table, in no
particular order (callers sort). :func:`group_in_process` is the reference engine, in this
process; the Ray executor's engine reads the facts and calls ``records`` on the workers,
shuffles the records with Ray Data's ``groupby`` and calls ``reduce`` on the workers, so only
the (small) results reach the driver. Both give the same result table up to row order.

A group key is coarse on purpose: ``partition_of`` cuts a 64-bit hash into ``2**bits``
partitions, and ``reduce`` handles the many hash values of its partition vectorised, so a
corpus of millions of rows makes a few hundred Python calls, not millions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

Records = Callable[[pa.Table, int], pa.Table]
Reduce = Callable[[pa.Table], pa.Table]

#: records per group the partition count aims at (~50 MB of (band, key, row) records)
RECORDS_PER_GROUP = 1 << 21


class GroupBy(Protocol):
    def __call__(self, facts: list[Path | None], columns: list[str], records: Records, keys: list[str],
                 reduce: Reduce) -> pa.Table | None:
        """Group the records of every shard's facts (``facts[k]``, None = no rows) by ``keys``
        and concatenate ``reduce`` of each group; None when there are no records."""
        ...


def group_in_process(facts: list[Path | None], columns: list[str], records: Records, keys: list[str],
                     reduce: Reduce) -> pa.Table | None:
    """The reference :class:`GroupBy`: every record in this process, sorted by ``keys``."""
    parts = [records(pq.read_table(path, columns=columns), k) for k, path in enumerate(facts) if path is not None]
    parts = [p for p in parts if p.num_rows]
    if not parts:
        return None
    t = pa.concat_tables(parts).sort_by([(k, "ascending") for k in keys])
    cols = [t.column(k).to_numpy() for k in keys]
    change = np.zeros(t.num_rows, dtype=bool)
    change[0] = True
    for c in cols:
        change[1:] |= c[1:] != c[:-1]
    bounds = np.r_[np.flatnonzero(change), t.num_rows]
    out = [reduce(t.slice(a, b - a)) for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist())]
    out = [o for o in out if o.num_rows]
    return pa.concat_tables(out) if out else None


def partition_bits(records: int, per_group: int | None = None) -> int:
    """Bits of a hash that cut ``records`` into groups of about ``per_group`` (default
    :data:`RECORDS_PER_GROUP`); 0: one group."""
    per_group = per_group or RECORDS_PER_GROUP
    return max(0, int(np.ceil(np.log2(max(1.0, records / max(1, per_group))))))


def partition_of(hashes: np.ndarray, bits: int) -> np.ndarray:
    """The partition (top ``bits`` bits) of each uniformly distributed uint64 hash, as int32."""
    if bits <= 0:
        return np.zeros(len(hashes), dtype=np.int32)
    return (hashes.astype(np.uint64, copy=False) >> np.uint64(64 - bits)).astype(np.int32)
