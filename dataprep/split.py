"""The ``split`` stage: leakage-safe train/validation/test assignment, per group, never per row.

A *group* is a connected component of rows that share a duplicate cluster (the ``cluster_id``
column written by ``dedup``; without it, rows whose normalised text is identical), that are near
twins (word 3-gram Jaccard >= ``near``, from MinHash LSH candidates checked on the signature
estimate; on by default, so exact-only or no dedup is still leakage-safe), or that share a user
key (``group_by``: a column or a field of ``meta`` such as a document id, an author or a URL).
Near twins and rows of one document therefore always land in the same split.

Each group gets ``u = xxh3_64(seed, group key) / 2**64`` in [0, 1), where the group key is the
smallest member key, so the value depends on the group alone, not on the rest of the corpus:

* without ``stratify``, the split is the ratio interval ``u`` falls in. A group keeps its split in
  every later version of the dataset, whatever rows are added around it.
* with ``stratify: label``, groups of each label (a group's majority label) are ordered by ``u``
  and cut at the cumulative ratios by row count, so each label is split in the given proportions
  up to one group. Adding rows can move only groups that sit at a cut.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import Field, field_validator, model_validator

from corpusmill import schema as S
from corpusmill.stage import BatchInfo, ReduceStage, StageConfig, StageOutput, write_decisions

CLUSTER_ID = "cluster_id"
_NO_KEY = np.uint64(0)


class SplitConfig(StageConfig):
    ratios: dict[str, float] = Field(
        default_factory=lambda: {"train": 0.8, "validation": 0.1, "test": 0.1},
        description="split name -> share of rows; any names; shares are normalised to sum to 1",
    )
    group_by: str | None = Field(
        None, description="column or meta field whose equal values must share a split (document id, author, URL)"
    )
    stratify: str | None = Field(None, description="column or meta field (usually 'label') whose proportions each split keeps")
    near: bool | float = Field(
        0.8,
        description="group near twins too: rows whose word 3-gram Jaccard is at least this (MinHash LSH "
                    "candidates, checked on the signature estimate) share a split; false: only cluster_id/"
                    "exact text and group_by",
    )
    tolerance: float = Field(
        0.02, ge=0, le=1,
        description="stratify: largest allowed gap between a label's share in a split and the split's ratio; "
                    "a gap above it is reported in the stage counters (splits too small for the ratio)",
    )

    @field_validator("ratios")
    @classmethod
    def _ratios(cls, v: dict[str, float]) -> dict[str, float]:
        if not v:
            raise ValueError("at least one split is needed")
        if any(r < 0 for r in v.values()) or sum(v.values()) <= 0:
            raise ValueError("ratios must be >= 0 and sum to more than 0")
        for name in v:
            if not name or "-" in name or "/" in name:
                raise ValueError(f"split name {name!r}: use letters, digits and '_' (it names data files)")
        return v

    @model_validator(mode="after")
    def _different_keys(self):
        if self.group_by and self.group_by == self.stratify:
            raise ValueError("group_by and stratify must name different fields")
        return self


def _h64(values, seed: int = 0) -> np.ndarray:
    import xxhash

    out = np.empty(len(values), dtype=np.uint64)
    for i, v in enumerate(values):
        out[i] = xxhash.xxh3_64_intdigest(v.encode("utf-8", "surrogatepass"), seed=seed) | 1  # 0 means "no key"
    return out


def field_values(batch: pa.Table, name: str) -> list:
    """A column's values, or a meta field's (as strings; None when absent)."""
    if name in batch.column_names:
        return [None if v is None else str(v) for v in batch.column(name).to_pylist()]
    out = []
    for meta in batch.column(S.META).to_pylist() if S.META in batch.column_names else [None] * batch.num_rows:
        v = orjson.loads(meta).get(name) if meta else None
        out.append(None if v is None else (v if isinstance(v, str) else orjson.dumps(v).decode()))
    return out


def connected_groups(*keys: np.ndarray) -> np.ndarray:
    """Component label (the smallest row index in it) of each row, where rows sharing a non-zero
    value in any of ``keys`` are connected. Label propagation with sorted reductions: converges in
    a few rounds on duplicate clusters and document keys."""
    n = len(keys[0])
    comp = np.arange(n, dtype=np.int64)
    orders = []
    for k in keys:
        valid = np.flatnonzero(k != _NO_KEY)
        o = valid[np.argsort(k[valid], kind="stable")]
        starts = np.flatnonzero(np.r_[True, k[o][1:] != k[o][:-1]]) if len(o) else np.array([], dtype=np.int64)
        orders.append((o, starts))
    while True:
        changed = False
        for o, starts in orders:
            if not len(o):
                continue
            mins = np.minimum.reduceat(comp[o], starts)
            lens = np.diff(np.r_[starts, len(o)])
            new = np.repeat(mins, lens)
            if np.any(new < comp[o]):
                comp[o] = np.minimum(comp[o], new)
                changed = True
        # point every row at its component's current label (path compression)
        comp = comp[comp]
        if not changed:
            return comp


class Split(ReduceStage):
    kind = "split"
    Config = SplitConfig

    def output_fields(self, schema: pa.Schema) -> pa.Schema:
        return schema.append(pa.field(S.SPLIT, pa.string()))

    @property
    def near_threshold(self) -> float | None:
        v = self.config.near
        return None if v is False else (0.8 if v is True else float(v))

    @property
    def _near_tools(self):
        from corpusmill.dataprep import lsh
        from corpusmill.dataprep.minhash import MinHasher, Shingling

        self._shingling = Shingling("word", 3)
        return MinHasher(128, 0), lsh.BandPlan.choose(self.near_threshold, 128, 0.05, 0.95)

    def _near_groups(self, t: pa.Table) -> np.ndarray:
        """A key per row (0 = none) joining rows whose signatures estimate Jaccard >= threshold."""
        from corpusmill.dataprep import lsh
        from corpusmill.dataprep.dedup import from_fixed_binary
        from corpusmill.dataprep.minhash import estimate_jaccard

        bands = from_fixed_binary(t.column("bands"), np.uint64)
        n = len(bands)
        members = np.arange(n, dtype=np.int64)
        pairs = [lsh.bucket_pairs(bands[:, b][bands[:, b] != 0], members[bands[:, b] != 0]) for b in range(bands.shape[1])]
        pairs = lsh.unique_pairs(np.concatenate(pairs)) if pairs else np.zeros((0, 2), np.int64)
        key = np.zeros(n, dtype=np.uint64)
        if len(pairs):
            sig = from_fixed_binary(t.column("sig"), np.uint32)
            edges = pairs[estimate_jaccard(sig[pairs[:, 0]], sig[pairs[:, 1]]) >= self.near_threshold]
            comp = lsh.components(n, edges)
            joined = np.bincount(comp, minlength=n) > 1
            key[joined[comp]] = _mix(comp[joined[comp]].astype(np.uint64), 3) | np.uint64(1)
        return key

    def map_facts(self, batch: pa.Table, info: BatchInfo) -> pa.Table:
        n = batch.num_rows
        if CLUSTER_ID in batch.column_names:
            cluster = _h64(batch.column(CLUSTER_ID).cast(pa.string()).to_pylist(), seed=1)
        else:
            from corpusmill.dataprep.dedup import exact_hashes

            hi, lo = exact_hashes(batch.column(S.TEXT))
            cluster = _mix(hi ^ _mix(lo, 1), 2) | np.uint64(1)  # 0 means "no key"
        user = np.zeros(n, dtype=np.uint64)
        if self.config.group_by:
            vals = field_values(batch, self.config.group_by)
            present = [i for i, v in enumerate(vals) if v is not None]
            user[present] = _h64([vals[i] for i in present], seed=2)
        facts = {"row": pa.array(np.arange(info.row_offset, info.row_offset + n, dtype=np.int64)),
                 "cluster": pa.array(cluster), "user": pa.array(user)}
        if self.near_threshold:
            from corpusmill.dataprep import lsh
            from corpusmill.dataprep.dedup import to_fixed_binary

            hasher, plan = self._near_tools
            sig = hasher.signatures(self._shingling.shingles(batch.column(S.TEXT)))
            facts["sig"] = to_fixed_binary(sig)
            facts["bands"] = to_fixed_binary(lsh.band_keys(sig, plan, 0))
        if self.config.stratify:
            facts["stratum"] = pa.array(field_values(batch, self.config.stratify), pa.string())
        return pa.table(facts)

    def reduce(self, facts: list[Path | None], decisions: Path, index: Path) -> dict[str, int]:
        parts = []
        for shard, path in enumerate(facts):
            if path is not None:
                t = pq.read_table(path)
                parts.append(t.append_column("shard", pa.array(np.full(t.num_rows, shard, dtype=np.int32))))
        names = list(self.config.ratios)
        if not parts:
            write_decisions(decisions, {})
            return {}
        t = pa.concat_tables(parts)
        cluster, user = t.column("cluster").to_numpy(), t.column("user").to_numpy()
        near = self._near_groups(t) if self.near_threshold else np.zeros(len(cluster), dtype=np.uint64)
        comp = connected_groups(cluster, user, near)
        # a group's key: its smallest member key, so it does not depend on row positions
        key = np.where(user != _NO_KEY, np.minimum(cluster, user), cluster)
        order = np.lexsort((key, comp))
        starts = np.flatnonzero(np.r_[True, comp[order][1:] != comp[order][:-1]])
        group_key = key[order][starts]
        group_of_row = np.empty(len(comp), dtype=np.int64)
        group_of_row[order] = np.repeat(np.arange(len(starts)), np.diff(np.r_[starts, len(order)]))
        sizes = np.bincount(group_of_row)
        u = (_mix(group_key, self.run.seed) >> np.uint64(11)).astype(np.float64) / float(1 << 53)
        ratios = np.array([self.config.ratios[n] for n in names], dtype=np.float64)
        cum = np.cumsum(ratios / ratios.sum())
        counters: dict[str, int] = {"groups": int(len(starts)), "rows_in_multi_row_groups": int(sizes[sizes > 1].sum()),
                                    "rows_with_near_twins": int((near != 0).sum())}
        if not self.config.stratify:
            group_split = np.minimum(np.searchsorted(cum, u, side="right"), len(names) - 1)
        else:
            strata = t.column("stratum").to_pylist()
            group_stratum = _majority(group_of_row, strata, len(starts))
            group_split = np.zeros(len(starts), dtype=np.int64)
            for s in sorted(set(group_stratum), key=lambda x: (x is None, x)):
                g = np.flatnonzero(np.array([x == s for x in group_stratum]))
                g = g[np.lexsort((group_key[g], u[g]))]
                filled = np.cumsum(sizes[g]) - sizes[g] / 2  # the middle of each group, in rows
                group_split[g] = np.minimum(np.searchsorted(cum * sizes[g].sum(), filled, side="right"), len(names) - 1)
            worst = _worst_gap(group_split, group_stratum, sizes, cum, names)
            counters["max_stratum_gap_permille"] = int(round(worst * 1000))
            counters["strata_over_tolerance"] = int(worst > self.config.tolerance)
        row_split = group_split[group_of_row]
        shard, row = t.column("shard").to_numpy(), t.column("row").to_numpy()
        tables = {}
        for s in np.unique(shard):
            m = shard == s
            o = np.argsort(row[m])
            tables[int(s)] = pa.table({"row": pa.array(row[m][o]), "split": pa.array(row_split[m][o].astype(np.int8))})
        write_decisions(decisions, tables)
        for i, name in enumerate(names):
            counters[f"rows_{name}"] = int((row_split == i).sum())
        return counters

    def apply(self, batch: pa.Table, info: BatchInfo, decision: pa.Table | None) -> StageOutput:
        names = list(self.config.ratios)
        rows = decision.column("row").to_numpy()
        a, b = np.searchsorted(rows, [info.row_offset, info.row_offset + batch.num_rows])
        codes = decision.column("split").to_numpy()[a:b]
        if b - a != batch.num_rows:
            raise RuntimeError(f"split: decision covers {b - a} of {batch.num_rows} rows of shard {info.shard}")
        labels = pa.DictionaryArray.from_arrays(pa.array(codes), pa.array(names)).cast(pa.string())
        if S.SPLIT in batch.column_names:
            batch = batch.drop_columns([S.SPLIT])
        return StageOutput(batch.append_column(S.SPLIT, labels))


def _mix(keys: np.ndarray, seed: int) -> np.ndarray:
    """A stable 64-bit mix of (key, seed): splitmix64 finaliser in wrapping uint64 arithmetic."""
    with np.errstate(over="ignore"):
        z = keys ^ (np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15))
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def _majority(group_of_row: np.ndarray, strata: list, n_groups: int) -> list:
    counts: list[dict] = [dict() for _ in range(n_groups)]
    for g, s in zip(group_of_row.tolist(), strata):
        counts[g][s] = counts[g].get(s, 0) + 1
    # majority, ties to the smallest label so the choice is order-free
    return [min(c.items(), key=lambda kv: (-kv[1], kv[0] is None, kv[0] or ""))[0] for c in counts]


def _worst_gap(group_split, group_stratum, sizes, cum, names) -> float:
    ratios = np.diff(np.r_[0.0, cum])
    worst = 0.0
    for s in set(group_stratum):
        g = np.array([x == s for x in group_stratum])
        total = sizes[g].sum()
        for i in range(len(names)):
            share = sizes[g & (group_split == i)].sum() / total
            worst = max(worst, abs(share - ratios[i]))
    return worst
