"""The ``mix`` stage: decide which rows a version keeps, and how often, per group.

A *group* is the rows sharing a value of a column (``label``, ``lang``, ``source``, ``split``...)
or of a meta field (written ``meta.NAME``); rows without a value form the group ``(none)``.
The options, applied in this order to the rows of the mixed splits (``splits``; by default the
training split after a ``split`` step, so held-out splits keep the natural distribution):

1. ``max_per: {FIELD: N}`` caps each group of FIELD at N rows; the rest are ``over_cap``.
2. ``weights: {FIELD: {group: w}}`` or ``alpha: {FIELD: a}`` (temperature sampling, p ~ n^a,
   the mT5/XLM-R recipe) sets each group's target share. Without ``upsample`` the total is the
   largest one every group can fill from its own rows (capped by ``max_rows``), and each group
   is down-sampled to its target; with ``upsample: true`` the total is ``max_rows`` (default:
   the rows left after the caps) and groups short of their target repeat rows. Targets are
   whole rows summing to the total (largest remainder), so every group is within one row of
   total x share. Rows cut are ``downsampled``. A group that cannot reach its target (a
   ``max_per`` cap, ``max_repeats``) stays short; its shortfall goes to no other group.
3. ``max_rows`` without weights or alpha: a total cap over all groups (``downsampled``).
4. ``min_per: {FIELD: N}`` floors: a group left with fewer than N rows gets its ``downsampled``
   rows back (never its ``over_cap`` rows), then, with ``upsample``, repeats.

Which rows of a group stay: the best by ``order_by`` (a score column, higher first; rows
without a score last), else a seeded random order (xxh3 of the seed and the row id), so the
choice depends on the seed and the rows' ids only: the same on every worker count and input
order. A repeat is a copy of its row with id ``<id>~r<k>`` (k = 1, 2, ...) and the original's id
in ``repeat_of``; repeats are counted as rows the stage added (rows in + added = kept +
rejected). Details of rejected rows name the group, its size and its target.

Shape: a reduce stage. map: each row's group values, random key and score; reduce: the plan
above over every shard's facts, one decision (copies, reason, detail) per row; apply: reject,
keep, repeat. ``index/mix.json`` holds the groups' before/after table, which
``corpusmill mix preview`` prints without publishing.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import xxhash
from pydantic import Field, model_validator

from corpusmill import schema as S
from corpusmill.errors import ConfigError
from corpusmill.stage import BatchInfo, ReduceStage, StageConfig, StageOutput, read_facts, write_decisions

REPEAT_OF = "repeat_of"
OVER_CAP = "over_cap"
DOWNSAMPLED = "downsampled"
NONE_GROUP = "(none)"
META_PREFIX = "meta."


class MixConfig(StageConfig):
    max_per: dict[str, int] = Field(
        default_factory=dict,
        description="FIELD -> the most rows any one group of FIELD keeps, e.g. {label: 2000}; the rest are over_cap, "
                    "and upsample's repeats never take a group above it. FIELD is a column or meta.NAME")
    min_per: dict[str, int] = Field(
        default_factory=dict,
        description="FIELD -> the fewest rows a group keeps when it has them: down-sampled rows come back to reach "
                    "it (never over_cap rows); with upsample, repeats make up the rest. Floors win over weights, "
                    "alpha and max_rows")
    max_rows: int | None = Field(
        None, ge=1, description="total rows of the mixed splits after mixing; null = no total cap. With upsample and "
                                "weights/alpha: the total the shares are taken of")
    weights: dict[str, dict[str, float]] = Field(
        default_factory=dict,
        description="one FIELD -> {group: weight}: target shares (normalised to sum to 1); a group not listed has "
                    "weight 0 and is dropped as downsampled")
    alpha: dict[str, float] = Field(
        default_factory=dict,
        description="one FIELD -> exponent a: temperature sampling, group share ~ rows^a (1 = natural, 0 = uniform; "
                    "mT5 used 0.3, XLM-R 0.3-0.7)")
    upsample: bool = Field(
        False, description="reach targets above a group's size by repeating its rows (marked in repeat_of, ids "
                           "<id>~r<k>); false = down-sampling only")
    max_repeats: int | None = Field(
        None, ge=0, description="with upsample: the most repeats of one row (a group stays short of its target "
                                "rather than repeat more); null = no limit")
    order_by: str | None = Field(
        None, description="numeric column (a quality signal, domain_score): each group keeps its highest-scored rows; "
                          "null = a random choice seeded by the seed and row ids")
    splits: list[str] | Literal["all"] | None = Field(
        None, description="splits mixed; the others pass through untouched. null = [train] when a split step ran "
                          "before, all rows otherwise; 'all' = every row")

    @model_validator(mode="after")
    def _consistent(self):
        problems = []
        if not (self.max_per or self.min_per or self.max_rows or self.weights or self.alpha):
            problems.append("nothing to do: set max_per, min_per, max_rows, weights or alpha")
        if self.weights and self.alpha:
            problems.append("set weights or alpha, not both (each sets the groups' target shares)")
        for name, opt in (("weights", self.weights), ("alpha", self.alpha)):
            if len(opt) > 1:
                problems.append(f"{name}: one field only (got {', '.join(opt)}); cap other fields with max_per")
        for f, w in self.weights.items():
            bad = {g: v for g, v in w.items() if not (v >= 0 and math.isfinite(v))}
            if bad:
                problems.append(f"weights.{f}: weights are >= 0 (got {bad})")
            elif not w or sum(w.values()) <= 0:
                problems.append(f"weights.{f}: give at least one group a weight above 0")
        for f, a in self.alpha.items():
            if not (0 <= a <= 1):
                problems.append(f"alpha.{f}: {a} is outside 0..1 (1 = natural shares, 0 = uniform)")
        for name, opt in (("max_per", self.max_per), ("min_per", self.min_per)):
            for f, n in opt.items():
                if n < 0:
                    problems.append(f"{name}.{f}: {n} is negative")
        for f, n in self.min_per.items():
            if f in self.max_per and n > self.max_per[f]:
                problems.append(f"min_per.{f} {n} is above max_per.{f} {self.max_per[f]}")
        if self.upsample and not (self.weights or self.alpha or self.min_per):
            problems.append("upsample: true repeats rows towards weights/alpha targets or min_per floors; set one")
        if self.max_repeats is not None and not self.upsample:
            problems.append("max_repeats limits upsample's repeats; set upsample: true or remove it")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def fields(self) -> list[str]:
        """Every field the options group by, in a stable order (shares first)."""
        out = list(self.weights) + list(self.alpha)
        for f in [*self.max_per, *self.min_per]:
            if f not in out:
                out.append(f)
        return out


def field_column(batch: pa.Table, name: str) -> pa.Array:
    """The group value of every row for FIELD ``name`` (a column, or ``meta.NAME``), as strings,
    ``(none)`` where the row has none."""
    if name.startswith(META_PREFIX):
        key = name[len(META_PREFIX):]
        values = []
        metas = batch.column(S.META).to_pylist() if S.META in batch.column_names else [None] * batch.num_rows
        for meta in metas:
            v = orjson.loads(meta).get(key) if meta else None
            values.append(None if v is None else (v if isinstance(v, str) else orjson.dumps(v).decode()))
        col = pa.array(values, pa.string())
    else:
        col = batch.column(name)
        col = col.cast(pa.string()) if col.type != pa.string() else col
    return pc.fill_null(col, NONE_GROUP)


def random_keys(ids: list[str], seed: int) -> np.ndarray:
    """A seeded 64-bit key per row id: the random order rows are kept in (never Python's hash())."""
    return np.fromiter((xxhash.xxh3_64_intdigest(f"mix\x00{seed}\x00{i}".encode("utf-8", "surrogatepass")) for i in ids),
                       dtype=np.uint64, count=len(ids))


def largest_remainder(total: int, shares: np.ndarray, names: list[str]) -> np.ndarray:
    """Whole numbers summing to ``total`` with each within one of ``total x share``: floors, then
    the leftover rows to the largest fractional parts (ties by group name)."""
    exact = total * shares
    out = np.floor(exact + 1e-9).astype(np.int64)
    left = int(total - out.sum())
    if left > 0:
        order = sorted(range(len(names)), key=lambda g: (-(exact[g] - out[g]), names[g]))
        for g in [g for g in order if shares[g] > 0][:left]:
            out[g] += 1
    return out


@dataclass
class MixPlan:
    """The decision over the rows of a facts table, in its order."""

    copies: np.ndarray  # 0 = rejected, 1 = kept, k > 1 = kept plus k - 1 repeats
    reason: list
    detail: list
    #: FIELD -> rows per group: [{group, before, after, target}] (mixed splits only), biggest first
    groups: dict[str, list[dict]] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)
    total: int | None = None


def plan_mix(config: MixConfig, facts: pa.Table) -> MixPlan:
    """Decide every row of ``facts`` (columns ``key``, ``in_scope``, ``g:FIELD`` per field,
    ``score`` with order_by), given in the stable (shard, row) order."""
    n = facts.num_rows
    in_scope = facts.column("in_scope").to_numpy(zero_copy_only=False).astype(bool)
    copies = np.ones(n, dtype=np.int64)
    reason: list = [None] * n
    detail: list = [None] * n
    # priority: best score first (no score last), then the seeded key, then position
    key = facts.column("key").to_numpy()
    if "score" in facts.column_names:
        score = pc.fill_null(facts.column("score").cast(pa.float64()), float("nan")).to_numpy(zero_copy_only=False)
        score = np.where(np.isnan(score), -np.inf, score)
        order = np.lexsort((np.arange(n), key, -score))
        how = f"highest {config.order_by} first"
    else:
        order = np.lexsort((np.arange(n), key))
        how = "a random choice (seeded)"
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)
    codes, names = {}, {}
    for f in config.fields():
        enc = pc.dictionary_encode(facts.column(f"g:{f}")).combine_chunks()
        codes[f] = enc.indices.to_numpy().astype(np.int64)
        names[f] = enc.dictionary.to_pylist()

    def members(f: str, g: int, mask: np.ndarray) -> np.ndarray:
        """Rows of group g of f under mask, best first."""
        idx = np.flatnonzero(mask & (codes[f] == g))
        return idx[np.argsort(rank[idx], kind="stable")]

    before = {f: np.bincount(codes[f][in_scope], minlength=len(names[f])) for f in codes}

    def room() -> list[tuple[np.ndarray, np.ndarray]]:
        """Per max_per field: each row's group, and how many more rows each group may take."""
        out = []
        for f, cap in config.max_per.items():
            have = np.bincount(codes[f][in_scope], weights=copies[in_scope], minlength=len(names[f]))
            out.append((codes[f], cap - have.astype(np.int64)))
        return out
    targets: dict[str, dict[int, int]] = {}
    counters = {"rows_mixed": int(in_scope.sum()), "rows_passed_through": int((~in_scope).sum())}

    # 1. caps
    for f, cap in config.max_per.items():
        alive = in_scope & (copies > 0)
        for g in range(len(names[f])):
            idx = members(f, g, alive)
            if len(idx) > cap:
                drop = idx[cap:]
                copies[drop] = 0
                d = f"{f}={names[f][g]}: {len(idx):,} rows, max_per.{f} {cap:,} keeps {cap:,} by {how}"
                for i in drop.tolist():
                    reason[i], detail[i] = OVER_CAP, d
    # 2. shares
    total = None
    share_field = next(iter(config.weights or config.alpha), None)
    if share_field is not None:
        f = share_field
        alive = in_scope & (copies > 0)
        sizes = np.bincount(codes[f][alive], minlength=len(names[f])).astype(np.float64)
        if config.weights:
            w = config.weights[f]
            raw = np.array([w.get(name, 0.0) for name in names[f]], dtype=np.float64)
            raw[sizes == 0] = 0.0  # a weighted group with no rows cannot take a share
            rule = f"weights.{f}"
        else:
            raw = np.where(sizes > 0, sizes ** config.alpha[f], 0.0)
            rule = f"alpha.{f} {config.alpha[f]:g}"
        shares = raw / raw.sum() if raw.sum() > 0 else raw
        if config.upsample:
            total = config.max_rows if config.max_rows is not None else int(sizes.sum())
        else:
            fill = [sizes[g] / shares[g] for g in range(len(shares)) if shares[g] > 0]
            total = int(math.floor(min(fill) + 1e-9)) if fill else 0
            if config.max_rows is not None:
                total = min(total, config.max_rows)
        want = largest_remainder(total, shares, names[f])
        targets[f] = {}
        short = []
        for g in range(len(names[f])):
            idx = members(f, g, alive)
            t = int(want[g])
            targets[f][g] = t
            if t < len(idx):
                drop = idx[t:]
                copies[drop] = 0
                d = (f"{f}={names[f][g]}: target {t:,} of its {len(idx):,} rows (share {shares[g]:.4f} of {total:,} "
                     f"by {rule}), kept by {how}")
                for i in drop.tolist():
                    reason[i], detail[i] = DOWNSAMPLED, d
            elif t > len(idx) and config.upsample and len(idx):
                short.append((idx, t - len(idx)))
        for idx, extra in short:  # after every cut, so caps see the rows that stay
            _repeat(copies, idx, extra, config.max_repeats, room())
    # 3. a total cap
    elif config.max_rows is not None:
        alive = np.flatnonzero(in_scope & (copies > 0))
        if len(alive) > config.max_rows:
            idx = alive[np.argsort(rank[alive], kind="stable")]
            drop = idx[config.max_rows:]
            copies[drop] = 0
            d = f"max_rows {config.max_rows:,}: {len(idx):,} rows, kept by {how}"
            for i in drop.tolist():
                reason[i], detail[i] = DOWNSAMPLED, d
    # 4. floors
    restored = 0
    for f, floor in config.min_per.items():
        for g in range(len(names[f])):
            mask = in_scope & (codes[f] == g)
            have = int(copies[mask].sum())
            if have >= floor:
                continue
            back = [i for i in members(f, g, mask & (copies == 0)).tolist() if reason[i] == DOWNSAMPLED][:floor - have]
            for i in back:
                copies[i], reason[i], detail[i] = 1, None, None
            restored += len(back)
            have += len(back)
            if have < floor and config.upsample:
                idx = members(f, g, mask & (copies > 0))
                if len(idx):
                    _repeat(copies, idx, floor - have, config.max_repeats, room())
            targets.setdefault(f, {})[g] = max(targets.get(f, {}).get(g, 0), floor)
    if restored:
        counters["floor_restored"] = restored
    counters["repeats"] = int(np.maximum(copies - 1, 0).sum())
    counters["rows_out"] = int(copies[in_scope].sum())
    groups = {}
    for f in codes:
        after = np.bincount(codes[f][in_scope], weights=copies[in_scope], minlength=len(names[f])).astype(np.int64)
        rows = [{"group": names[f][g], "before": int(before[f][g]), "after": int(after[g]),
                 "target": targets.get(f, {}).get(g)} for g in range(len(names[f])) if before[f][g]]
        rows.sort(key=lambda r: (-r["before"], r["group"]))
        groups[f] = rows
    return MixPlan(copies, reason, detail, groups, counters, total)


def _repeat(copies: np.ndarray, idx: np.ndarray, extra: int, max_repeats: int | None,
            caps: list[tuple[np.ndarray, np.ndarray]]) -> None:
    """Give ``extra`` more copies to the rows ``idx`` (best first), round robin, each row at most
    ``max_repeats`` repeats, and no group of a ``max_per`` field above its cap (``caps``: per
    field, each row's group code and each group's room left, updated here). Short of room, the
    rows get fewer copies: a cap is never exceeded by repeats."""
    if not caps:
        base, rest = divmod(extra, len(idx))
        add = np.full(len(idx), base, dtype=np.int64)
        add[:rest] += 1
        if max_repeats is not None:
            add = np.minimum(add, max_repeats - (copies[idx] - 1))
        copies[idx] += np.maximum(add, 0)
        return
    while extra > 0:
        given = 0
        for i in idx.tolist():
            if extra == 0:
                break
            if max_repeats is not None and copies[i] - 1 >= max_repeats:
                continue
            if any(room[codes[i]] <= 0 for codes, room in caps):
                continue
            copies[i] += 1
            for codes, room in caps:
                room[codes[i]] -= 1
            extra -= 1
            given += 1
        if not given:
            return


class Mix(ReduceStage):
    """Cap, floor, weight and temperature-sample rows per group; repeat rows where asked."""

    kind = "mix"
    Config = MixConfig

    def check(self, schema: pa.Schema) -> list[str]:
        c, problems = self.config, []
        names = schema.names
        for opt in ("max_per", "min_per", "weights", "alpha"):
            for f in getattr(c, opt):
                if f.startswith(META_PREFIX):
                    if S.META not in names:
                        problems.append(f"mix {opt}: {f} is a meta field, but the rows have no meta column (the "
                                        f"inputs keep none)")
                elif f not in names:
                    problems.append(f"mix {opt}: the rows have no column {f!r} at this step (columns: "
                                    f"{', '.join(names)}); {_hint(f)}")
        if c.order_by is not None:
            if c.order_by not in names:
                problems.append(f"mix order_by: the rows have no column {c.order_by!r} at this step (columns: "
                                f"{', '.join(names)}); quality adds its signals, select adds domain_score")
            else:
                t = schema.field(c.order_by).type
                if not (pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t)):
                    problems.append(f"mix order_by: {c.order_by} is {t}, not a number")
        if isinstance(c.splits, list) and S.SPLIT not in names:
            problems.append(f"mix splits: {c.splits} needs a split step before mix (the rows have no split column); "
                            f"move mix after split, or set splits: all")
        if c.upsample and REPEAT_OF in names:
            problems.append(f"mix upsample: the rows already have a {REPEAT_OF} column (two mix steps that upsample); "
                            f"upsample in one of them")
        return problems

    def resolve(self, schema: pa.Schema) -> MixConfig:
        if self.config.splits is None:
            return self.config.model_copy(update={"splits": ["train"] if S.SPLIT in schema.names else "all"})
        return self.config

    def output_fields(self, schema: pa.Schema) -> pa.Schema:
        return schema.append(pa.field(REPEAT_OF, pa.string())) if self.config.upsample else schema

    def _scope(self, batch: pa.Table) -> np.ndarray:
        splits = self.config.splits
        if splits in (None, "all") or S.SPLIT not in batch.column_names:
            return np.ones(batch.num_rows, dtype=bool)
        return pc.is_in(batch.column(S.SPLIT), pa.array(splits, pa.string())).to_numpy(zero_copy_only=False)

    # -- map
    def map_facts(self, batch: pa.Table, info: BatchInfo) -> pa.Table:
        n = batch.num_rows
        facts = {"row": pa.array(np.arange(info.row_offset, info.row_offset + n, dtype=np.int64)),
                 "key": pa.array(random_keys(batch.column(S.ID).to_pylist(), self.run.seed), pa.uint64()),
                 "in_scope": pa.array(self._scope(batch))}
        for f in self.config.fields():
            facts[f"g:{f}"] = field_column(batch, f)
        if self.config.order_by:
            facts["score"] = batch.column(self.config.order_by).cast(pa.float64())
        return pa.table(facts)

    # -- reduce
    def reduce(self, facts: list[Path | None], decisions: Path, index: Path) -> dict[str, int]:
        t = read_facts(facts)
        if t is None:
            return {}
        plan = plan_mix(self.config, t)
        shard, row = t.column("shard").to_numpy(), t.column("row").to_numpy()
        tables = {}
        for s in np.unique(shard):
            m = np.flatnonzero(shard == s)
            m = m[np.argsort(row[m], kind="stable")]
            tables[int(s)] = pa.table({
                "row": pa.array(row[m]), "copies": pa.array(plan.copies[m].astype(np.int32)),
                "reason": pa.array([plan.reason[i] for i in m.tolist()], pa.string()),
                "detail": pa.array([plan.detail[i] for i in m.tolist()], pa.string())})
        write_decisions(decisions, tables)
        Path(index).mkdir(parents=True, exist_ok=True)
        summary = {"config": self.config.model_dump(mode="json"), "total": plan.total, "counters": plan.counters,
                   "groups": plan.groups}
        (Path(index) / "mix.json").write_text(json.dumps(summary, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
        return plan.counters

    # -- apply
    def apply(self, batch: pa.Table, info: BatchInfo, decision: pa.Table | None) -> StageOutput:
        n = batch.num_rows
        if decision is None:
            raise RuntimeError(f"stage {self.name}: no decision for shard {info.shard}")
        rows = decision.column("row").to_numpy()
        a = int(np.searchsorted(rows, info.row_offset))
        if a + n > len(rows) or (n and (rows[a] != info.row_offset or rows[a + n - 1] != info.row_offset + n - 1)):
            raise RuntimeError(f"stage {self.name}: decision rows do not line up with shard {info.shard}")
        copies = decision.column("copies").to_numpy()[a:a + n].astype(np.int64)
        keep = copies > 0
        rejected = None
        if not keep.all():
            drop = pa.array(~keep)
            rejected = self.reject(batch.filter(drop), decision.column("reason").slice(a, n).filter(drop).to_pylist(),
                                   detail=decision.column("detail").slice(a, n).filter(drop).to_pylist())
        kept = batch.filter(pa.array(keep))
        added = 0
        if self.config.upsample:
            kept = kept.append_column(REPEAT_OF, pa.nulls(kept.num_rows, pa.string()))
            extra = np.maximum(copies - 1, 0)
            added = int(extra.sum())
            if added:
                src = np.repeat(np.arange(n), extra)
                k = np.concatenate([np.arange(1, e + 1) for e in extra if e])
                reps = batch.take(pa.array(src))
                ids = reps.column(S.ID)
                new_ids = pc.binary_join_element_wise(ids, pa.array([f"r{x}" for x in k.tolist()]), "~")
                reps = reps.set_column(reps.schema.get_field_index(S.ID), reps.schema.field(S.ID), new_ids)
                reps = reps.append_column(REPEAT_OF, ids.cast(pa.string()))
                kept = pa.concat_tables([kept, reps.cast(kept.schema)])
        return StageOutput(kept, rejected, added=added)


def _hint(f: str) -> str:
    if f == "lang":
        return "a language step before mix adds lang"
    if f == S.LABEL:
        return "map a label in the inputs (label_field)"
    if f == S.SPLIT:
        return "a split step before mix adds split"
    return "a meta field is written meta.NAME"


# ----------------------------------------------------------------------------- preview


def preview_mix(*, pipeline: str | None = None, step: int | None = None, dataset: str | None = None,
                config: dict | None = None, store: str | None = None) -> dict:
    """The groups before and after a mix step, without publishing: the step of a pipeline (run on
    its inputs as read; the steps before it are not applied) or ``config`` on a version's rows
    (``NAME@REF``, all splits). Returns the plan's tables and counters."""
    from pydantic import ValidationError

    from corpusmill.pipelines.config import format_errors, pipeline_step, store_root
    from corpusmill.stage import RunInfo

    if bool(pipeline) == bool(dataset):
        raise ConfigError(["mix preview: give --pipeline P.yaml, or --dataset NAME@REF with --config '{...}'"])
    note = ""
    if pipeline:
        from corpusmill.pipelines.registry import REGISTRY

        pconfig, _, base, position, name, cfg = pipeline_step(pipeline, "mix", step, REGISTRY)
        if position:
            note = (f"note: the {position} step(s) before '{name}' are not applied here; rows are mixed as read, all "
                    f"splits together (a run mixes what those steps keep); for the exact picture preview a published "
                    f"version with --dataset")
        table = _read_all(pconfig, base)
        source = f"{pipeline} inputs"
        run = RunInfo(pconfig.dataset, pconfig.seed, str(store_root(store, pconfig, base)), str(base))
        cfg = cfg.model_copy(update={"splits": "all"}) if S.SPLIT not in table.column_names else cfg
    else:
        from corpusmill.store import Store

        try:
            cfg = MixConfig(**(config or {}))
        except ValidationError as err:
            raise ConfigError(format_errors(err, MixConfig, prefix=("mix",)), source="mix preview") from None
        version = Store(store_root(store, None, None)).resolve(dataset)
        parts = []
        for s in version.splits():
            part = version.read_split(s)
            if S.SPLIT not in part.column_names and s != "all":
                part = part.append_column(S.SPLIT, pa.array([s] * part.num_rows, pa.string()))
            parts.append(part)
        table = pa.concat_tables(parts, promote_options="default")
        source = version.ref
        run = RunInfo(version.dataset, int(version.manifest.get("seed", 0) or 0), None, str(Path.cwd()))
    stage = Mix(cfg, name="mix", run=run)
    problems = stage.check(table.schema)
    if problems:
        raise ConfigError(problems, source="mix preview")
    stage = Mix(stage.resolve(table.schema), name="mix", run=run)
    plan = plan_mix(stage.config, stage.map_facts(table, BatchInfo(0, 0)))
    return {"source": source, "rows": table.num_rows, "note": note, "config": stage.config.model_dump(mode="json"),
            "total": plan.total, "counters": plan.counters, "groups": plan.groups,
            "rejected": {r: int(sum(1 for x in plan.reason if x == r)) for r in (OVER_CAP, DOWNSAMPLED)}}


def _read_all(config, base: Path) -> pa.Table:
    from corpusmill.dataprep import readers

    schema = readers.record_schema_for(config.inputs)
    parts = []
    for k, f in enumerate(readers.resolve_files(config.inputs, base)):
        spec = config.inputs[f.input_index]
        for table, _ in readers.read_shard(readers.Shard(k, f), spec, schema, config.execution.batch_rows):
            if table is not None:
                parts.append(table)
    return pa.concat_tables(parts) if parts else schema.empty_table()
