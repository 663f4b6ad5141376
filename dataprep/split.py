"""The ``split`` stage: leakage-safe train/validation/test assignment, per group, never per row.

A *group* is a connected component of rows that share a duplicate cluster (the ``cluster_id``
column written by ``dedup``), whose normalised text is identical (case and whitespace ignored), that are near
twins (word 3-gram Jaccard >= ``near``, from MinHash LSH candidates checked on the signature
estimate; on by default, so exact-only or no dedup is still leakage-safe), that share a user
key (``group_by``: a column or a field of ``meta`` such as a document id, an author or a URL),
or, on instruction and chat rows (``group_by_prompt``), that ask the same thing: the same prompt,
or the same first user turn of a conversation, after normalising case and whitespace. Near
twins, rows of one document and answers to one prompt therefore always land in the same split.

Each group gets ``u = xxh3_64(seed, group key) / 2**64`` in [0, 1), where the group key is
derived from the group's content, never from a row's id or position: the smallest hash of a
normalised prompt among its rows where any has one (a prompt's group is keyed by the question
whichever rows answer it), else the smallest ``group_by`` value hash (a document keeps its key
whatever rows it gains), else the smallest hash of a member's normalised text. ``dedup``'s
``cluster_id`` (the id of the row it kept) only connects rows; it never keys a group, so the
same text lands in the same split whichever copy ``dedup`` keeps, under whichever id, in
whichever input order. The value depends on the group alone, not on the rest of the corpus:

* without ``stratify``, the split is the ratio interval ``u`` falls in. A group keeps its split in
  every later version of the dataset, whatever rows are added around it, as long as its key
  stays: exact copies (under any id) and new rows of a keyed document or prompt never change it;
  a new near twin with a smaller text hash can, which ``inherit`` (``corpusmill refresh``)
  prevents by giving a new row its old twin's split.
* with ``stratify: label``, groups of each label (a group's majority label) are ordered by ``u``
  and cut at the cumulative ratios by row count, so each label is split in the given proportions
  up to one group. Adding rows can move only groups that sit at a cut.
"""

from __future__ import annotations

from functools import cached_property, partial
from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import Field, field_validator, model_validator

from corpusmill import schema as S
from corpusmill import sft
from corpusmill.stage import BatchInfo, ReduceStage, StageConfig, StageOutput, per_shard, read_facts, read_parquet, write_decisions

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
    inherit: str | None = Field(
        None,
        description="NAME@REF of an earlier version built with a split step: its rows keep their splits, and a row "
                    "linked to one of them (same cluster_id or exact text, same group_by value, or a near twin) "
                    "takes that row's split; a row linked to rows of two different splits is rejected as "
                    "split_conflict. `corpusmill refresh` sets it to the parent; null = every group afresh",
    )
    group_by_prompt: bool | None = Field(
        None,
        description="rows sharing a prompt (a conversation's first user turn; case and whitespace ignored) share "
                    "a split, keyed by the prompt's content, so every answer to a question lands where that "
                    "question does in every later version; null = on for instruction and chat rows, off for "
                    "plain text",
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


def text_keys(texts: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Per text, a 64-bit key of its exact normal form (case and whitespace ignored: what
    ``dedup``, ``split`` and the audit call the same text); never 0 (0 means no key)."""
    from corpusmill.dataprep.dedup import exact_hashes

    hi, lo = exact_hashes(texts)
    return _mix(hi ^ _mix(lo, 1), 2) | np.uint64(1)


def prompt_keys(batch: pa.Table) -> np.ndarray:
    """Per row, a 64-bit key of its prompt (or a conversation's first user turn) under the exact
    normal form (case and whitespace ignored); 0 (no key) on plain-text rows and empty prompts."""
    from corpusmill.dataprep.dedup import ExactConfig
    from corpusmill.dataprep.minhash import sequence_hash
    from corpusmill.dataprep.textnorm import tokenize_forms

    tokens = tokenize_forms(sft.first_user_turn(batch), [ExactConfig().form])[0]
    hi, lo = sequence_hash(tokens)
    key = _mix(hi ^ _mix(lo, 4), 5) | np.uint64(1)
    key[sft.plain_rows(batch) | (tokens.counts == 0)] = _NO_KEY
    return key


def group_keys(text: np.ndarray, user: np.ndarray, prompt: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the key it offers its group and that key's tier (0 prompt, 1 group_by value,
    2 normalised text): a group is keyed by its lowest tier's smallest key. All three are hashes
    of content the user sees, so a group's key never depends on which row dedup kept, on ids or
    on row order; a prompt or document keeps its key whatever rows it gains."""
    key, tier = text.copy(), np.full(len(text), 2, dtype=np.int8)
    has = user != _NO_KEY
    key[has], tier[has] = user[has], 1
    if prompt is not None:
        has = prompt != _NO_KEY
        key[has], tier[has] = prompt[has], 0
    return key, tier


class Split(ReduceStage):
    kind = "split"
    Config = SplitConfig

    def output_fields(self, schema: pa.Schema) -> pa.Schema:
        return schema.append(pa.field(S.SPLIT, pa.string()))

    def check(self, schema: pa.Schema) -> list[str]:
        if self.config.group_by_prompt and not sft.is_sft(schema):
            return ["group_by_prompt: true groups rows by their prompt, but these rows are plain text (no prompt "
                    "or messages); remove it (near twins and exact copies share a split anyway), or map prompts "
                    "in the inputs (prompt_field/response_field, messages_field, or a format)"]
        return []

    def groups_prompts(self, schema: pa.Schema) -> bool:
        """Whether rows of ``schema`` are grouped by prompt: ``group_by_prompt``, or where it is
        null, whether they are instruction or chat rows."""
        v = self.config.group_by_prompt
        return sft.is_sft(schema) if v is None else v

    @property
    def near_threshold(self) -> float | None:
        v = self.config.near
        return None if v is False else (0.8 if v is True else float(v))

    @property
    def _near_tools(self):
        from corpusmill.dataprep.dedup import band_plan
        from corpusmill.dataprep.minhash import MinHasher, Shingling

        self._shingling = Shingling("word", 3)
        return MinHasher(128, 0), band_plan(self.near_threshold, 128, 0.05, 0.95, None, None)  # cached per process

    def identity(self) -> dict | None:
        """The ``inherit`` version, resolved: a moved tag gives a new version id."""
        if not self.config.inherit or self.run.store_root is None:
            return None
        from corpusmill.store import Store

        version = Store(self.run.store_root).resolve(self.config.inherit)
        _check_index(version, self)
        return {"inherit": version.ref}

    def index_meta(self, prompts: bool = False) -> dict:
        """What a stored split index must match for its keys to be compared with this step's;
        ``prompts``: whether its rows were grouped by prompt (recorded only then, so indexes of
        plain text read as before)."""
        plan = self._near_tools[1] if self.near_threshold else None
        meta = {"kind": INDEX_KIND, "format": INDEX_FORMAT, "group_by": self.config.group_by,
                "near": self.near_threshold, "sketch": _SKETCH if plan else None,
                "lsh": plan.to_json() if plan else None}
        if prompts:
            meta["group_by_prompt"] = True
        return meta

    def _near_pairs(self, bands: np.ndarray, sig: np.ndarray) -> np.ndarray:
        """Pairs of rows sharing a band key whose signatures estimate Jaccard >= threshold."""
        from corpusmill.dataprep import lsh

        n = len(bands)
        members = np.arange(n, dtype=np.int64)
        pairs = [lsh.bucket_pairs(bands[:, b][bands[:, b] != 0], members[bands[:, b] != 0]) for b in range(bands.shape[1])]
        pairs = lsh.unique_pairs(np.concatenate(pairs)) if pairs else np.zeros((0, 2), np.int64)
        return self._near_twins(pairs, lambda rows: sig[rows])

    def _near_twins(self, pairs: np.ndarray, signatures) -> np.ndarray:
        """The candidate ``pairs`` whose signatures (``signatures(rows)``, rows ascending)
        estimate Jaccard >= threshold."""
        from corpusmill.dataprep.minhash import estimate_jaccard

        if not len(pairs):
            return pairs
        rows = np.unique(pairs)
        sig = signatures(rows)
        a, b = np.searchsorted(rows, pairs[:, 0]), np.searchsorted(rows, pairs[:, 1])
        return pairs[estimate_jaccard(sig[a], sig[b]) >= self.near_threshold]

    def _near_pairs_grouped(self, facts: list[Path | None], bands: np.ndarray) -> np.ndarray:
        """:meth:`_near_pairs` on the executor's grouping engine: the band-key records grouped
        by (band, partition of the key) on the workers, each band bucketed by its own length as
        in memory; then only the candidate rows' signatures are read, shard by shard."""
        from corpusmill.dataprep import lsh
        from corpusmill.grouping import partition_bits

        counts = [pq.read_metadata(f).num_rows if f is not None else 0 for f in facts]
        shard_start = np.r_[0, np.cumsum(counts)].astype(np.int64)
        totals = tuple(int(x) for x in (bands != 0).sum(axis=0))
        got = self.groupby(facts, ["bands"], partial(split_band_records, shard_start=shard_start,
                                                     bits=partition_bits(sum(totals))),
                           ["band", "part"], partial(lsh.band_group_pairs, totals=totals))
        if got is None or not got.num_rows:
            return np.zeros((0, 2), np.int64)
        pairs = lsh.unique_pairs(np.stack([got.column("a").to_numpy(), got.column("b").to_numpy()], axis=1))
        return self._near_twins(pairs, partial(_signatures_of, facts, shard_start))

    def map_facts(self, batch: pa.Table, info: BatchInfo) -> pa.Table:
        n = batch.num_rows
        text = text_keys(batch.column(S.TEXT))
        # dedup's cluster_id connects a cluster's rows; it names a kept row, so it never keys a group
        cluster = text
        if CLUSTER_ID in batch.column_names:
            cluster = _h64(batch.column(CLUSTER_ID).cast(pa.string()).to_pylist(), seed=1)
        user = np.zeros(n, dtype=np.uint64)
        if self.config.group_by:
            vals = field_values(batch, self.config.group_by)
            present = [i for i, v in enumerate(vals) if v is not None]
            user[present] = _h64([vals[i] for i in present], seed=2)
        facts = {"row": pa.array(np.arange(info.row_offset, info.row_offset + n, dtype=np.int64)),
                 "id": batch.column(S.ID), "cluster": pa.array(cluster), "user": pa.array(user),
                 "text": pa.array(text)}
        if self.groups_prompts(batch.schema):
            facts["prompt"] = pa.array(prompt_keys(batch))
        if self.near_threshold:
            facts.update(self._near_facts(batch.column(S.TEXT)))
        if self.config.stratify:
            facts["stratum"] = pa.array(field_values(batch, self.config.stratify), pa.string())
        return pa.table(facts)

    def _near_facts(self, texts) -> dict:
        from corpusmill.dataprep import lsh
        from corpusmill.dataprep.dedup import to_fixed_binary

        hasher, plan = self._near_tools
        sig = hasher.signatures(self._shingling.shingles(texts))
        return {"sig": to_fixed_binary(sig), "bands": to_fixed_binary(lsh.band_keys(sig, plan, 0))}

    @cached_property
    def inherited(self) -> "_Inherited | None":
        """The ``inherit`` version's split index, loaded once (by :meth:`prepare`, during the map phase)."""
        return _Inherited.load(self) if self.config.inherit else None

    def prepare(self) -> None:
        self.inherited

    def reduce(self, facts: list[Path | None], decisions: Path, index: Path) -> dict[str, int]:
        from corpusmill.dataprep.dedup import from_fixed_binary

        names = list(self.config.ratios)
        old = self.inherited
        # on a grouping engine the driver never holds every signature (512 bytes a row), only
        # those of candidate rows; an inherited index needs them all (its links), so not then
        grouped = self.groupby is not None and old is None and bool(self.near_threshold)
        present = [f for f in facts if f is not None]
        columns = [c for c in pq.read_schema(present[0]).names if c != "sig"] if grouped and present else None
        t = read_facts(facts, columns)
        if t is None:
            write_decisions(decisions, {})
            _write_index(self, index, None, None, old)
            return {}
        n = t.num_rows
        cluster, user, text = (t.column(c).to_numpy() for c in ("cluster", "user", "text"))
        prompt = t.column("prompt").to_numpy() if "prompt" in t.column_names else None
        if old is not None:
            _check_prompts(self, old, prompt is not None)
        edges = np.zeros((0, 2), np.int64)
        bands = sig = None
        if grouped:
            bands = from_fixed_binary(t.column("bands"), np.uint64)
            edges = self._near_pairs_grouped(facts, bands)
        elif self.near_threshold:
            bands = from_fixed_binary(t.column("bands"), np.uint64)
            sig = from_fixed_binary(t.column("sig"), np.uint32)
            edges = self._near_pairs(bands, sig)
        counters: dict[str, int] = {}
        # rows of the inherited version linked to a new row join the graph with their split
        old_split = np.zeros(0, dtype=np.int64)
        if old is not None:
            touched, near_links = old.links(self, cluster, user, text, bands, sig, prompt)
            cluster = np.concatenate([cluster, old.cluster[touched]])
            user = np.concatenate([user, old.user[touched]])
            text = np.concatenate([text, old.text_keys[touched]])
            if prompt is not None:
                prompt = np.concatenate([prompt, old.prompt[touched]])
            edges = np.concatenate([edges, near_links]) if len(near_links) else edges
            codes = {name: i for i, name in enumerate(names)}
            old_split = np.array([codes[s] for s in old.split.take(pa.array(touched)).to_pylist()], dtype=np.int64)
            counters["inherited_rows"] = len(old)
            counters["inherited_rows_linked"] = int(len(touched))
        total = len(cluster)
        near = np.zeros(total, dtype=np.uint64)
        if len(edges):
            from corpusmill.dataprep import lsh

            comp = lsh.components(total, edges)
            joined = np.bincount(comp, minlength=total) > 1
            near[joined[comp]] = _mix(comp[joined[comp]].astype(np.uint64), 3) | np.uint64(1)
        # equal texts are linked even where dedup put them in different clusters (another normal
        # form, exact dedup off); without cluster_id the cluster key is the text key already
        same_text = [text] if np.any(text != cluster) else []
        comp = connected_groups(cluster, user, near, *same_text, *([prompt] if prompt is not None else []))
        key, tier = group_keys(text, user, prompt)
        if prompt is not None:
            shared = np.unique(prompt[:n][prompt[:n] != _NO_KEY], return_counts=True)[1]
            counters["rows_sharing_a_prompt"] = int(shared[shared > 1].sum())
        order = np.lexsort((key, tier, comp))
        starts = np.flatnonzero(np.r_[True, comp[order][1:] != comp[order][:-1]])
        group_key = key[order][starts]
        group_of_row = np.empty(total, dtype=np.int64)
        group_of_row[order] = np.repeat(np.arange(len(starts)), np.diff(np.r_[starts, len(order)]))
        n_groups = len(starts)
        # the split an inherited row gives its group: -1 none, -2 rows of two splits (a conflict)
        lowest = np.full(n_groups, np.iinfo(np.int64).max)
        highest = np.full(n_groups, -1)
        np.minimum.at(lowest, group_of_row[n:], old_split)
        np.maximum.at(highest, group_of_row[n:], old_split)
        given = np.where(highest < 0, -1, np.where(lowest == highest, highest, -2))
        sizes = np.bincount(group_of_row[:n], minlength=n_groups)
        fresh = np.flatnonzero((given == -1) & (sizes > 0))
        u = (_mix(group_key, self.run.seed) >> np.uint64(11)).astype(np.float64) / float(1 << 53)
        ratios = np.array([self.config.ratios[n] for n in names], dtype=np.float64)
        cum = np.cumsum(ratios / ratios.sum())
        counters.update({"groups": int((sizes > 0).sum()), "rows_in_multi_row_groups": int(sizes[sizes > 1].sum()),
                         "rows_with_near_twins": int((near[:n] != 0).sum())})
        group_split = given.copy()
        if not self.config.stratify:
            group_split[fresh] = np.minimum(np.searchsorted(cum, u[fresh], side="right"), len(names) - 1)
        else:
            strata = t.column("stratum").to_pylist()
            group_stratum = _majority(group_of_row[:n], strata, n_groups)
            for s in sorted({group_stratum[g] for g in fresh.tolist()}, key=lambda x: (x is None, x)):
                g = fresh[np.array([group_stratum[x] == s for x in fresh.tolist()], dtype=bool)]
                g = g[np.lexsort((group_key[g], u[g]))]
                filled = np.cumsum(sizes[g]) - sizes[g] / 2  # the middle of each group, in rows
                group_split[g] = np.minimum(np.searchsorted(cum * sizes[g].sum(), filled, side="right"), len(names) - 1)
            worst = _worst_gap(group_split[fresh], [group_stratum[g] for g in fresh.tolist()], sizes[fresh], cum, names)
            counters["max_stratum_gap_permille"] = int(round(worst * 1000))
            counters["strata_over_tolerance"] = int(worst > self.config.tolerance)
        row_split = group_split[group_of_row[:n]]
        detail = [None] * n
        if old is not None:
            counters["rows_joining_inherited_groups"] = int((given[group_of_row[:n]] >= 0).sum())
            conflict = np.flatnonzero(row_split == -2)
            counters["split_conflicts"] = int(conflict.size)
            for i in conflict.tolist():
                members = np.flatnonzero(group_of_row[n:] == group_of_row[i])
                found = sorted({(names[old_split[m]], old.ids[int(touched[m])].as_py()) for m in members.tolist()})
                detail[i] = ("linked (same cluster or text, group_by value, prompt or near twin, directly or "
                             "through other new rows) to rows "
                             "of different splits of " + old.ref + ": "
                             + ", ".join(f"{rid} ({split})" for split, rid in found[:6])
                             + "; in any split it would leak into another")
        shard, row = t.column("shard").to_numpy(), t.column("row").to_numpy()
        tables = {}
        for s in np.unique(shard):
            m = np.flatnonzero(shard == s)
            m = m[np.argsort(row[m])]
            tables[int(s)] = pa.table({"row": pa.array(row[m]), "split": pa.array(row_split[m].astype(np.int8)),
                                       "detail": pa.array([detail[i] for i in m.tolist()], pa.string())})
        write_decisions(decisions, tables)
        for i, name in enumerate(names):
            counters[f"rows_{name}"] = int((row_split == i).sum())
        _write_index(self, index, t, row_split, old)
        return counters

    def apply(self, batch: pa.Table, info: BatchInfo, decision: pa.Table | None) -> StageOutput:
        names = list(self.config.ratios)
        rows = decision.column("row").to_numpy()
        a, b = np.searchsorted(rows, [info.row_offset, info.row_offset + batch.num_rows])
        codes = decision.column("split").to_numpy()[a:b]
        if b - a != batch.num_rows:
            raise RuntimeError(f"split: decision covers {b - a} of {batch.num_rows} rows of shard {info.shard}")
        if S.SPLIT in batch.column_names:
            batch = batch.drop_columns([S.SPLIT])
        keep = codes >= 0
        rejected = None
        if not keep.all():
            details = decision.column("detail").slice(a, b - a).filter(pa.array(~keep)).to_pylist()
            rejected = self.reject(batch.filter(pa.array(~keep)), "split_conflict", detail=details)
            batch, codes = batch.filter(pa.array(keep)), codes[keep]
        labels = pa.DictionaryArray.from_arrays(pa.array(codes), pa.array(names)).cast(pa.string())
        return StageOutput(batch.append_column(S.SPLIT, labels), rejected)


# ----------------------------------------------------------------------------- texts across versions

#: how ``moved_texts`` compares texts, as said in its report
MOVED_NORMAL_FORM = "the same text with case and whitespace ignored, as split and dedup compare texts"


def moved_texts(a, b, examples: int = 5) -> dict:
    """The texts of version ``a`` that sit in other splits in version ``b``, by content, not id.

    A text is compared by its exact normal form (:func:`text_keys`), so a copy kept under a new
    id, or with other case or spacing, is the same text. A text in both versions whose set of
    splits differs is *moved*, counted per (from -> to) move, where from and to name the splits
    holding it (``train+test`` for a text in two splits). ``examples`` texts per move come with
    the ids that hold them on each side (up to 5 each). ``held_out_after_train`` counts the
    texts of ``a``'s ``train`` split that ``b`` holds in another split: what a model trained on
    ``a`` would meet again when evaluated on ``b``.
    """
    names = sorted(set(a.splits()) | set(b.splits()))
    if len(names) > 63:
        from corpusmill.errors import CorpusmillError

        raise CorpusmillError(f"moved texts: {len(names)} split names in {a.ref} and {b.ref}; at most 63 are compared")
    ka, ma = _text_splits(a, names)
    kb, mb = _text_splits(b, names)
    common, ia, ib = np.intersect1d(ka, kb, assume_unique=True, return_indices=True)
    moved = ma[ia] != mb[ib]
    keys, fa, fb = common[moved], ma[ia][moved], mb[ib][moved]

    def label(mask: int) -> str:
        return "+".join(n for i, n in enumerate(names) if mask >> i & 1)

    moves: dict[tuple[str, str], list[int]] = {}
    for k, x, y in zip(keys.tolist(), fa.tolist(), fb.tolist()):
        moves.setdefault((label(x), label(y)), []).append(k)
    train = np.uint64(1 << names.index("train") if "train" in names else 0)
    wanted = np.array(sorted(k for ks in moves.values() for k in ks[:examples]), dtype=np.uint64)
    seen_a, seen_b = _holders(a, wanted), _holders(b, wanted)
    out = {"compared": MOVED_NORMAL_FORM, "texts_from": int(len(ka)), "texts_to": int(len(kb)),
           "texts_in_both": int(len(common)), "moved": int(len(keys)),
           "held_out_after_train": int((((fa & train) != 0) & ((fb & ~train) != 0)).sum()),
           "moves": []}
    for (src, dst), ks in sorted(moves.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        out["moves"].append({"from": src, "to": dst, "texts": len(ks), "examples": [
            {"text": seen_a[k][0], "ids_from": seen_a[k][1][:5], "ids_to": seen_b[k][1][:5]} for k in ks[:examples]]})
    return out


def _text_splits(version, names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """The distinct text keys of ``version`` (ascending) and, per key, a bit mask of the splits
    (positions in ``names``) holding it."""
    keys, masks = [], []
    for code, split in enumerate(names):
        if split not in version.splits():
            continue
        for batch in version.iter_batches(split, columns=[S.TEXT]):
            k = text_keys(batch.column(0))
            keys.append(k)
            masks.append(np.full(len(k), 1 << code, dtype=np.uint64))
    if not keys:
        return np.zeros(0, np.uint64), np.zeros(0, np.uint64)
    unique, inverse = np.unique(np.concatenate(keys), return_inverse=True)
    mask = np.zeros(len(unique), dtype=np.uint64)
    np.bitwise_or.at(mask, inverse, np.concatenate(masks))
    return unique, mask


def _holders(version, wanted: np.ndarray) -> dict[int, tuple[str, list[str]]]:
    """For each text key in ``wanted``: its first text in ``version`` and the ids holding it
    (split then file order); a second read of the version, only when some text moved."""
    out: dict[int, tuple[str, list[str]]] = {}
    if not len(wanted):
        return out
    for split in version.splits():
        for batch in version.iter_batches(split, columns=[S.ID, S.TEXT]):
            hit = np.flatnonzero(np.isin(text_keys(batch.column(1)), wanted))
            if not len(hit):
                continue
            keys = text_keys(batch.column(1).take(pa.array(hit))).tolist()
            ids = batch.column(0).take(pa.array(hit)).to_pylist()
            texts = batch.column(1).take(pa.array(hit)).to_pylist()
            for k, rid, text in zip(keys, ids, texts):
                out.setdefault(k, (text, []))[1].append(rid)
    return out


def describe_moved_texts(d: dict, width: int = 100, per_move: int = 2) -> list[str]:
    """The moved-texts report as readable lines (plain text, no markup: texts are printed as they
    are), with ``per_move`` examples of each move cut to ``width`` characters (the JSON has more)."""
    if not d["moved"]:
        return [f"texts that changed split: 0 of the {d['texts_in_both']:,} texts in both versions "
                "(same text: case and whitespace ignored)"]
    moves = ", ".join(f"{m['from']} -> {m['to']} {m['texts']:,}" for m in d["moves"])
    lines = [f"texts that changed split: {d['moved']:,} of the {d['texts_in_both']:,} texts in both versions "
             f"(same text: case and whitespace ignored): {moves}"]
    for m in d["moves"]:
        for e in m["examples"][:per_move]:
            text = " ".join(e["text"].split())
            text = text if len(text) <= width else text[:width - 3] + "..."
            lines.append(f"  {m['from']} -> {m['to']}: {text!r} (ids {', '.join(e['ids_from'])} -> "
                         f"{', '.join(e['ids_to'])})")
    return lines


# ----------------------------------------------------------------------------- the stored index

INDEX_KIND = "split"
INDEX_FORMAT = 1
_SKETCH = "words3-minhash128-seed0-v1"


def find_split_index(version) -> Path | None:
    """The split index folder of a published version (``index/<stage>/meta.json`` of kind split)."""
    return version.index_folder(INDEX_KIND)


def _check_index(version, stage: Split) -> Path:
    from corpusmill.errors import ConfigError

    where = f"steps.{stage.name}.inherit"
    folder = find_split_index(version)
    if folder is None:
        raise ConfigError([f"{where}: {version.ref} has no split index (index/<stage>/meta.json of kind split); "
                           "only versions built with a split step by this corpusmill version have one: rebuild it "
                           "with 'corpusmill run'"])
    meta = orjson.loads((folder / "meta.json").read_bytes())
    want = stage.index_meta()
    problems = [f"{where}: the split index of {version.ref} has {k} {meta.get(k)!r} but this step has {want[k]!r}; "
                "groups keyed another way cannot be joined" for k in want if meta.get(k) != want[k]]
    # group_by_prompt null follows the rows' schema: compared in reduce (_check_prompts), where it is known
    if stage.config.group_by_prompt is not None and bool(meta.get("group_by_prompt")) != stage.config.group_by_prompt:
        problems.append(f"{where}: the split index of {version.ref} was built with group_by_prompt "
                        f"{bool(meta.get('group_by_prompt'))} but this step has {stage.config.group_by_prompt}; "
                        "groups keyed another way cannot be joined")
    missing = set(meta.get("splits", [])) - set(stage.config.ratios)
    if missing:
        problems.append(f"{where}: {version.ref} has splits {sorted(missing)} that ratios does not name")
    if problems:
        raise ConfigError(problems)
    return folder


def _check_prompts(stage: Split, old: "_Inherited", prompts: bool) -> None:
    """ConfigError when the inherited index was grouped by prompt and these rows are not, or the
    other way round: a prompt's new answers could not be matched with its old ones."""
    from corpusmill.errors import ConfigError

    if old.prompt is not None and not prompts:
        raise ConfigError([f"steps.{stage.name}.inherit: the split index of {old.ref} groups rows by prompt but this "
                           "step does not (group_by_prompt is false, or the rows have no prompt); new answers to an "
                           "old prompt could land in another split: set group_by_prompt: true"])
    if old.prompt is None and prompts:
        raise ConfigError([f"steps.{stage.name}.inherit: this step groups rows by prompt but the split index of "
                           f"{old.ref} was built without prompt groups, so a new answer cannot be matched with the "
                           "old rows of its prompt: set group_by_prompt: false, or rebuild that version with "
                           "'corpusmill run'"])


def _write_index(stage: Split, index: Path, t: pa.Table | None, row_split: np.ndarray | None, old) -> None:
    """index/<stage>/: per assigned row its id, group keys (cluster, group_by, normalised text,
    prompt), split and (near) band keys; the
    inherited version's parts are linked in, so the index covers every row that has a split."""
    from corpusmill.store import link_index_parts

    index.mkdir(parents=True, exist_ok=True)
    names = list(stage.config.ratios)
    parts = link_index_parts(old.parts, index) if old is not None else []
    if t is not None:
        ok = row_split >= 0
        keep = pa.array(ok)
        cols = {"id": t.column("id").filter(keep), "cluster": t.column("cluster").filter(keep),
                "user": t.column("user").filter(keep), "text": t.column("text").filter(keep),
                "split": pa.array([names[c] for c in row_split[ok].tolist()], pa.string())}
        if "prompt" in t.column_names:
            cols["prompt"] = t.column("prompt").filter(keep)
        if "bands" in t.column_names:
            cols["bands"] = t.column("bands").filter(keep)
        if int(ok.sum()):
            # band keys are random bits: compressing them costs time and saves nothing; row groups
            # of 64k rows let a later refresh read the part on several threads
            pq.write_table(pa.table(cols), index / "part-00000.parquet", row_group_size=65536,
                           compression={c: "none" if c == "bands" else "zstd" for c in cols})
            parts.append({"file": "part-00000.parquet", "rows": int(ok.sum()), "origin": None})
    if t is not None:
        prompts = "prompt" in t.column_names
    else:  # no rows: as the inherited index was, else as configured
        prompts = old.prompt is not None if old is not None else bool(stage.config.group_by_prompt)
    meta = {**stage.index_meta(prompts), "splits": names, "parts": parts, "rows": int(sum(p["rows"] for p in parts))}
    (index / "meta.json").write_bytes(orjson.dumps(meta, option=orjson.OPT_INDENT_2) + b"\n")


class _Inherited:
    """The rows of the ``inherit`` version's split index: ids, group keys, splits, band keys,
    and where their text lives (to re-compute the signature of a near-twin candidate)."""

    def __init__(self, ref, table: pa.Table, part_of: np.ndarray, parts: list[dict], root: Path) -> None:
        self.ref, self.part_of, self.parts, self.root = ref, part_of, parts, root
        self.ids = table.column("id").combine_chunks()
        self.cluster = table.column("cluster").to_numpy()
        self.user = table.column("user").to_numpy()
        #: normalised-text keys; an index written before they were stored (corpusmill < 0.3.1) has
        #: none, and its cluster keys are text keys wherever no dedup step named clusters
        self.text = table.column("text").to_numpy() if "text" in table.column_names else None
        self.split = table.column("split").combine_chunks()
        #: prompt keys (:func:`prompt_keys`), where the index grouped rows by prompt, else None
        self.prompt = table.column("prompt").to_numpy() if "prompt" in table.column_names else None
        self.bands = None
        if "bands" in table.column_names:
            from corpusmill.dataprep.dedup import column_major

            self.bands = column_major([table.column("bands")], np.uint64)  # scanned band by band

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def text_keys(self) -> np.ndarray:
        """The rows' normalised-text keys, or their cluster keys where the index stores none."""
        return self.cluster if self.text is None else self.text

    @classmethod
    def load(cls, stage: Split) -> "_Inherited":
        from corpusmill.store import Store

        store = Store(stage.run.store_root)
        version = store.resolve(stage.config.inherit)
        folder = _check_index(version, stage)
        meta = orjson.loads((folder / "meta.json").read_bytes())
        # row group by row group on a few threads: an index is often one big part
        pieces = [(k, folder / p["file"], g) for k, p in enumerate(meta["parts"])
                  for g in range(pq.read_metadata(folder / p["file"]).num_row_groups)]
        tables = per_shard(lambda _, item: read_parquet(item[1], row_group=item[2]), pieces)
        schema = pa.schema([("id", pa.string()), ("cluster", pa.uint64()), ("user", pa.uint64()), ("split", pa.string())])
        table = pa.concat_tables(tables) if tables else schema.empty_table()
        part_of = np.repeat([k for k, _, _ in pieces], [t.num_rows for t in tables]).astype(np.int64)
        parts = [{**p, "path": folder / p["file"], "origin": p.get("origin") or version.ref} for p in meta["parts"]]
        return cls(version.ref, table, part_of, parts, store.root)

    def links(self, stage: Split, cluster: np.ndarray, user: np.ndarray, text: np.ndarray, bands, sig,
              prompt: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The inherited rows linked to the new rows (positions, ascending) and the near-twin
        edges between them, numbered as new rows 0..n-1 followed by those positions. Every
        lookup screens the big index by the new rows' keys (:func:`lsh.matching_keys`), so the
        cost grows with the index only by one gather per key."""
        from corpusmill.dataprep import lsh

        n = len(cluster)
        # same cluster, text or group_by key: one old row each is enough (equal keys share a split)
        touched = [lsh.matching_keys(self.cluster, cluster)[0], lsh.matching_keys(self.user, user)[0],
                   lsh.matching_keys(self.text_keys, text)[0]]
        if prompt is not None and self.prompt is not None:  # same prompt: its old answers' split
            touched.append(lsh.matching_keys(self.prompt, prompt)[0])
        pairs = np.zeros((0, 2), np.int64)
        if bands is not None and self.bands is not None and len(self):
            cand = []
            matched = per_shard(lambda b, _: lsh.matching_keys(self.bands[:, b], bands[:, b]), range(bands.shape[1]))
            for old_i, new_j in matched:  # bands matched on a few threads
                # a big bucket is one old group already (one split): a few of its rows suffice
                if len(old_i):
                    o = np.lexsort((old_i, new_j))
                    new_j, old_i = new_j[o], old_i[o]
                    first = np.r_[0, np.flatnonzero(np.diff(new_j)) + 1]
                    rank = np.arange(len(new_j)) - np.repeat(first, np.diff(np.r_[first, len(new_j)]))
                    keep = rank < 32
                    cand.append(np.stack([new_j[keep], old_i[keep]], axis=1))
            if cand:
                cand = np.unique(np.concatenate(cand), axis=0)
                from corpusmill.dataprep.minhash import estimate_jaccard

                old_rows = np.unique(cand[:, 1])
                old_sig = self._signatures(stage, old_rows)
                ok = estimate_jaccard(sig[cand[:, 0]], old_sig[np.searchsorted(old_rows, cand[:, 1])]) >= stage.near_threshold
                pairs = cand[ok]
        touched.append(pairs[:, 1])
        touched = np.unique(np.concatenate(touched))
        edges = np.stack([pairs[:, 0], n + np.searchsorted(touched, pairs[:, 1])], axis=1) if len(pairs) else pairs
        return touched, edges

    def _signatures(self, stage: Split, rows: np.ndarray) -> np.ndarray:
        """MinHash signatures of the inherited rows ``rows``, from their text in the versions
        holding them (only candidates: a few rows, not the whole version)."""
        from corpusmill.store import Store

        hasher, _ = stage._near_tools
        store = Store(self.root)
        ids = self.ids.take(pa.array(rows)).to_pylist()
        text: dict[str, str] = {}
        by_origin: dict[str, list[str]] = {}
        for rid, part in zip(ids, self.part_of[rows].tolist()):
            by_origin.setdefault(self.parts[part]["origin"], []).append(rid)
        for ref, wanted in by_origin.items():
            text.update(store.resolve(ref).texts_by_id(wanted))
        # a row whose text is gone (removed since) still counts by its stored keys, not as a twin
        texts = pa.array([text.get(i, "") for i in ids], pa.string())
        sig = hasher.signatures(stage._shingling.shingles(texts))
        gone = np.array([i not in text for i in ids])
        sig[gone] = np.uint32(0xFFFFFFFF)
        return sig


def split_band_records(facts: pa.Table, shard: int, shard_start: np.ndarray, bits: int) -> pa.Table:
    """The non-zero band keys of shard ``shard``'s rows as records to group (:func:`lsh.band_records`)."""
    from corpusmill.dataprep import lsh
    from corpusmill.dataprep.dedup import from_fixed_binary

    keys = from_fixed_binary(facts.column("bands"), np.uint64)
    return lsh.band_records(keys, shard_start[shard] + np.arange(len(keys), dtype=np.int64), bits, skip_zero=True)


def _signatures_of(facts: list[Path | None], shard_start: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """The signatures of the global ``rows`` (ascending), read one shard's column at a time."""
    from corpusmill.dataprep.dedup import from_fixed_binary

    out = None
    for k, path in enumerate(facts):
        a, b = np.searchsorted(rows, shard_start[k:k + 2])
        if a == b:
            continue
        sig = from_fixed_binary(pq.read_table(path, columns=["sig"]).column("sig"), np.uint32)
        if out is None:
            out = np.empty((len(rows), sig.shape[1]), dtype=np.uint32)
        out[a:b] = sig[rows[a:b] - shard_start[k]]
    return out


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
    return [min(c.items(), key=lambda kv: (-kv[1], kv[0] is None, kv[0] or ""))[0] if c else None for c in counts]


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
