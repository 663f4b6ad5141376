"""The ``augment`` stage: new training rows from existing ones, never from held-out rows, and never
a new row that leaks into validation/test or repeats another row.

Map (per shard, in the workers): each row of the training split is turned into variants by every
configured augmenter (seeded per row, see :mod:`corpusmill.augment.augmenters`); the facts of a
shard are its rows' exact-text hashes, the MinHash signatures of its held-out rows, and the
candidate new rows with their hashes and signatures.

Reduce (once): a candidate is rejected, in this order, as

* ``augment_unchanged``: its text equals its source's (same normal form as ``dedup``: case and
  white space ignored), or the augmenter returned nothing;
* ``exact_duplicate_of_heldout`` / ``near_duplicate_of_heldout``: it equals, or has a word
  3-gram Jaccard of at least ``near`` with, a row of a held-out split (``duplicate_of`` names it);
* ``exact_duplicate``: it equals another training row, or a new row earlier in stable order;
* ``near_duplicate``: (``distinct_near``) it is that near to a new row kept earlier;
* ``over_row_cap`` / ``over_dataset_cap``: beyond ``max_per_row`` new rows of its source (kept
  round-robin over the augmenters: the first variant of each, then the second, ...), or beyond the dataset cap (the rows with the smallest stable
  hash of seed and id stay, a uniform sample).

Apply: the shard's rows go through unchanged (with empty provenance columns), followed by its
accepted new rows: a copy of the source row (label, split, source, meta, ...) with a new ``id``
(``<source id>~<augmenter>-<k>``), the variant ``text``, ``augmented_from``, ``augmenter`` and
``augment_params``. Rejected candidates are stored with their reason like any other reject. The
executor counts them as rows this stage added: rows in + added = kept + rejected.

Instruction and chat rows (:mod:`corpusmill.sft`): the augmenters vary the prompt side only, by
default (the ``prompt``, a conversation's user turns, and the text of plain rows in the same
data): an answer is what the model learns to write, and a word-swapped or re-spelled answer
teaches it to write badly. ``fields`` changes that; an answer is rewritten only when the list
names it (``response``, ``messages.assistant``, ``messages``, ``trained``). Variant ``k`` of a
row replaces each of its selected strings by that string's variant ``k`` (a string with fewer
variants stays as it was), and the new row's ``text`` is derived from its fields, so the
checks against held-out rows and other rows read what the trainer will read.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import xxhash
from pydantic import Field, field_validator, model_validator

from corpusmill import schema as S
from corpusmill import sft
from corpusmill.augment.augmenters import AugmenterSpec, build, row_seed
from corpusmill.errors import CorpusmillError
from corpusmill.stage import BatchInfo, ReduceStage, StageConfig, StageOutput, batch_decision, read_facts, write_decisions

AUGMENTED_FROM = "augmented_from"
AUGMENTER = "augmenter"
AUGMENT_PARAMS = "augment_params"
PROVENANCE = (AUGMENTED_FROM, AUGMENTER, AUGMENT_PARAMS)

#: the columns an instruction or chat row's variant may change (its text is derived from them)
TRAINED_COLUMNS = (S.SYSTEM, S.PROMPT, S.RESPONSE, S.MESSAGES)
#: prefix of a varied column in the facts and decisions
NEW = "new."

NUM_PERM = 128
#: decision codes, in the order the checks run
REASONS = ("", "augment_unchanged", "exact_duplicate_of_heldout", "near_duplicate_of_heldout",
           "exact_duplicate", "near_duplicate", "over_row_cap", "over_dataset_cap")
_CODE = {r: i for i, r in enumerate(REASONS)}


class AugmentConfig(StageConfig):
    augmenters: list[AugmenterSpec] = Field(
        min_length=1,
        description="the augmenters, each a mapping with `kind` (eda, synonym, sentence_shuffle, char_keyboard, "
                    "char_ocr, char_random, word_random, word_split, word_spelling, contextual, back_translation) "
                    "and its options; every training row gets `n` variants from each")
    train_split: str = Field(
        "train", description="the split whose rows are augmented (the `split` column, set by the split stage); "
                             "rows of every other split are held out: never augmented, and new rows may not "
                             "duplicate them")
    max_per_row: int = Field(
        4, ge=0, description="new rows kept per source row at most (round-robin over the augmenters: the first "
                             "variant of each, then the second, ...); "
                             "0 = no limit. Four keeps one short text from dominating the training set")
    max_new_rows: int = Field(0, ge=0, description="new rows kept in the dataset at most; 0 = no limit")
    max_ratio: float = Field(
        0.0, ge=0, description="new rows kept at most this many times the training rows (1.0 doubles the "
                               "training split); 0 = no limit")
    near: float | bool = Field(
        0.8, description="word 3-gram Jaccard (MinHash estimate, 128 slots) at or above which a new row counts "
                         "as a near duplicate of a held-out row; the split stage's default, so augmentation "
                         "cannot bring back a near twin the split kept apart; false = exact checks only")
    seed: int = Field(
        0, description="mixed with the pipeline seed into every row's augmentation seed: another value draws other "
                       "variants while the splits (seeded by the pipeline seed) stay where they are")
    fields: list[str] | None = Field(
        None,
        description="instruction and chat rows: the fields varied, as field references (prompt, response, "
                    "system, messages, messages.<role>, trained, text). Default: the prompt side (prompt and "
                    "messages.user, and the text of plain rows). Naming response, messages.assistant, messages "
                    "or trained rewrites answers: the model then learns from augmented answers. Text corpora: "
                    "the text, as ever")
    distinct_near: bool = Field(
        True, description="also reject a new row that near-duplicates (>= near) a new row kept earlier, so "
                          "variants add diversity rather than copies; false = only exact copies among new rows")

    @field_validator("augmenters")
    @classmethod
    def _distinct_names(cls, v):
        names = [a.label for a in v]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"augmenters named {dup} more than once: give each a distinct `name`")
        return v

    @field_validator("fields")
    @classmethod
    def _fields(cls, v):
        if v is not None and not v:
            raise ValueError("an empty list varies nothing; leave fields out for the prompt side")
        return v

    @model_validator(mode="after")
    def _near(self):
        if self.near is True:
            object.__setattr__(self, "near", 0.8)
        if self.near is not False and not 0 < float(self.near) <= 1:
            raise ValueError(f"near must be in (0, 1] or false, got {self.near!r}")
        return self


def _u64(values: list[str], seed: int) -> np.ndarray:
    return np.fromiter((xxhash.xxh3_64_intdigest(v.encode("utf-8", "surrogatepass"), seed=seed) for v in values),
                       dtype=np.uint64, count=len(values))


class Augment(ReduceStage):
    kind = "augment"
    Config = AugmentConfig

    @property
    def near_threshold(self) -> float | None:
        return None if self.config.near is False else float(self.config.near)

    def identity(self) -> dict | None:
        """What the augmenters read besides the rows, so a change gives a new version: the WordNet
        files (names and sizes), a spelling dictionary's hash, a model folder's file sizes. Also
        where a missing WordNet or file is reported, before any row is read."""
        from corpusmill.augment.augmenters import Augmenter
        from corpusmill.augment.wordnet import check_wordnet
        from corpusmill.hashing import file_sha256

        out = {}
        for spec in self.config.augmenters:
            where = Augmenter(spec, self.run.base_dir)
            if spec.kind in ("eda", "synonym"):
                folder = check_wordnet(spec.wordnet_dir and where.path(spec.wordnet_dir))
                out[spec.label] = {"wordnet": {f.name: f.stat().st_size for f in sorted(folder.iterdir()) if f.is_file()}}
            elif spec.kind == "word_spelling" and spec.dict_path and Path(where.path(spec.dict_path)).is_file():
                out[spec.label] = {"dict_sha256": file_sha256(Path(where.path(spec.dict_path)))}
            elif spec.kind in ("contextual", "back_translation"):
                paths = [spec.model_path] if spec.kind == "contextual" else [spec.from_model_path, spec.to_model_path]
                out[spec.label] = [{f.name: f.stat().st_size for f in sorted(Path(where.path(p)).glob("*")) if f.is_file()}
                                   for p in paths]  # by content, never by path
        return out or None

    def check(self, schema: pa.Schema) -> list[str]:
        if self.config.fields:
            try:
                sft.check_fields(self.config.fields, schema, self.name)
            except CorpusmillError as e:
                return [str(e)]
        return []

    def fields_for(self, schema: pa.Schema) -> list[str]:
        """The field references varied on rows of ``schema`` (see ``AugmentConfig.fields``)."""
        if self.config.fields:
            return list(self.config.fields)
        if not sft.is_sft(schema):
            return [S.TEXT]
        prompt_side = [f for f, col in ((S.PROMPT, S.PROMPT), (f"{S.MESSAGES}.user", S.MESSAGES)) if col in schema.names]
        return prompt_side + ["text:plain"]  # plain rows among instruction rows: their text, as on a text corpus

    def output_fields(self, schema: pa.Schema) -> pa.Schema:
        for name in PROVENANCE:
            if name not in schema.names:
                schema = schema.append(pa.field(name, pa.string()))
        return schema

    # ------------------------------------------------------------------ map

    @property
    def augmenters(self):
        if not hasattr(self, "_augmenters"):
            self._augmenters = [build(spec, self.run.base_dir) for spec in self.config.augmenters]
        return self._augmenters

    def _signatures(self, texts: pa.Array):
        from corpusmill.dataprep import lsh
        from corpusmill.dataprep.dedup import to_fixed_binary
        from corpusmill.dataprep.minhash import MinHasher, Shingling

        if not hasattr(self, "_hasher"):
            self._hasher = MinHasher(NUM_PERM, 0)
            self._plan = lsh.BandPlan.choose(self.near_threshold, NUM_PERM, 0.05, 0.95)
        sig = self._hasher.signatures(Shingling("word", 3).shingles(texts))
        return to_fixed_binary(sig), to_fixed_binary(lsh.band_keys(sig, self._plan, 0))

    def candidates(self, ids: list[str], texts: list[str], owner: np.ndarray | None = None) -> dict[str, list]:
        """Every augmenter's variants of the given training rows, in row order, and within a row
        round-robin over the augmenters (first variant of each, then second, ...): the order in
        which ``max_per_row`` keeps them, so a cap still mixes augmenters.

        ``texts`` are the strings varied; ``owner`` (sorted) gives the index in ``ids`` of each
        one's row, None = one string per row. A row's variant ``k`` holds variant ``k`` of each of
        its strings (``strings``; ``text`` when rows have one string)."""
        out: dict[str, list] = {"i": [], "k": [], "id": [], "text": [], "strings": [], AUGMENTER: [], AUGMENT_PARAMS: []}
        n_aug = len(self.augmenters)
        seed = (self.run.seed ^ (self.config.seed * 0x9E3779B97F4A7C15)) & (2**64 - 1)
        single = owner is None
        owner = np.arange(len(texts)) if single else np.asarray(owner, dtype=np.int64)
        starts = np.searchsorted(owner, np.arange(len(ids) + 1))
        # the first string of a row is seeded by its id alone (as a text row is), the others by id#position
        keys = [ids[r] if p == starts[r] else f"{ids[r]}#{p - starts[r]}" for p, r in enumerate(owner.tolist())]
        per_aug = [aug.variants_batch(texts, [row_seed(seed, key, aug.name) for key in keys]) for aug in self.augmenters]
        for i, rid in enumerate(ids):
            a0, a1 = int(starts[i]), int(starts[i + 1])
            if a0 == a1:
                continue
            made = []
            for a, aug in enumerate(self.augmenters):
                count = max(len(per_aug[a][p]) for p in range(a0, a1))
                for j in range(count):
                    strings, extra = [], None
                    for p in range(a0, a1):
                        variant, more = per_aug[a][p][j] if j < len(per_aug[a][p]) else (texts[p], None)
                        if single:
                            variant = variant if isinstance(variant, str) else ""
                        elif not isinstance(variant, str) or not variant:
                            variant = texts[p]  # a string the augmenter gave nothing for stays as it was
                        strings.append(variant)
                        extra = extra or more
                    params = aug.params if not extra else json.dumps(
                        {**json.loads(aug.params), **extra}, sort_keys=True, separators=(",", ":"))
                    made.append((j * n_aug + a, f"{rid}~{aug.name}-{j}", strings, aug.name, params))
            for k, new_id, strings, name, params in sorted(made, key=lambda m: m[0]):
                out["i"].append(i)
                out["k"].append(k)
                out["id"].append(new_id)
                out["strings"].append(strings)
                out["text"].append(strings[0] if single else None)
                out[AUGMENTER].append(name)
                out[AUGMENT_PARAMS].append(params)
        return out

    def _sft_candidates(self, train: pa.Table) -> tuple[dict[str, list], dict[str, pa.Array]]:
        """Candidates of instruction and chat rows: each a copy of its row with the selected fields
        varied, ``text`` re-derived. Also the new rows' trained columns, by name."""
        sel = sft.FieldSelection(train, self.fields_for(train.schema))
        order = np.argsort(sel.rows, kind="stable")  # row by row, fields in the order named
        cand = self.candidates(train.column(S.ID).to_pylist(), sel.strings.take(pa.array(order)).to_pylist(),
                               sel.rows[order])
        made = train.take(pa.array(np.asarray(cand["i"], dtype=np.int64)))
        new_sel = sft.FieldSelection(made, self.fields_for(train.schema))
        flat = np.empty(len(new_sel), dtype=object)
        flat[np.argsort(new_sel.rows, kind="stable")] = [t for strings in cand["strings"] for t in strings]
        made = new_sel.write(pa.array(flat.tolist(), pa.string()))
        cand["text"] = made.column(S.TEXT).to_pylist()
        columns = {c: made.column(c).combine_chunks() for c in TRAINED_COLUMNS if c in made.column_names}
        return cand, columns

    def map_facts(self, batch: pa.Table, info: BatchInfo) -> pa.Table:
        from corpusmill.dataprep.dedup import exact_hashes

        if S.SPLIT not in batch.column_names:
            raise CorpusmillError(f"stage {self.name!r}: rows have no `split` column; augmentation needs splits "
                                  f"so that only training rows are augmented: put a `split` step before `augment`")
        n = batch.num_rows
        rows = np.arange(info.row_offset, info.row_offset + n, dtype=np.int64)
        is_train = pc.fill_null(pc.equal(batch.column(S.SPLIT), self.config.train_split), False).to_numpy(zero_copy_only=False)
        hi, lo = exact_hashes(batch.column(S.TEXT))
        train_idx = np.flatnonzero(is_train)
        new_fields: dict[str, pa.Array] = {}
        if sft.is_sft(batch.schema) or self.config.fields:
            cand, new_fields = self._sft_candidates(batch.take(pa.array(train_idx)))
        else:
            cand = self.candidates(pc.take(batch.column(S.ID), train_idx).to_pylist(),
                                   pc.take(batch.column(S.TEXT), train_idx).to_pylist())
        src = train_idx[np.asarray(cand["i"], dtype=np.int64)]
        m = len(src)
        new_text = pa.array(cand["text"], pa.string())
        chi, clo = exact_hashes(new_text) if m else (np.zeros(0, np.uint64), np.zeros(0, np.uint64))
        # one table: the shard's rows (kind 0), then its candidates (kind 1)
        kind = np.r_[np.zeros(n, np.int8), np.ones(m, np.int8)]
        facts = {
            "kind": pa.array(kind),
            "row": pa.array(np.r_[rows, rows[src]]),
            "k": pa.array(np.r_[np.full(n, -1, np.int32), np.asarray(cand["k"], np.int32)]),
            "heldout": pa.array(np.r_[~is_train, np.zeros(m, bool)]),
            "hi": pa.array(np.r_[hi, chi]), "lo": pa.array(np.r_[lo, clo]),
            "src_hi": pa.array(np.r_[np.zeros(n, np.uint64), hi[src]]),
            "src_lo": pa.array(np.r_[np.zeros(n, np.uint64), lo[src]]),
            "id": pa.concat_arrays([batch.column(S.ID).combine_chunks().cast(pa.string()), pa.array(cand["id"], pa.string())]),
            "text": pa.concat_arrays([pa.nulls(n, pa.string()), new_text]),
            AUGMENTER: pa.array([None] * n + cand[AUGMENTER], pa.string()),
            AUGMENT_PARAMS: pa.array([None] * n + cand[AUGMENT_PARAMS], pa.string()),
        }
        for name, col in new_fields.items():  # the new rows' varied fields, carried to apply
            facts[NEW + name] = pa.concat_arrays([pa.nulls(n, col.type), col])
        if self.near_threshold:
            # signatures of held-out rows and candidates only: training rows are never compared by near
            need = np.r_[~is_train, np.ones(m, bool)]
            texts = pa.concat_arrays([batch.column(S.TEXT).combine_chunks().cast(pa.string()), new_text])
            sig, bands = self._signatures(pc.filter(texts, pa.array(need)))
            pos = np.cumsum(need) - 1
            take = pa.array(np.where(need, pos, -1), mask=~need)
            facts["sig"] = pc.take(sig, take)
            facts["bands"] = pc.take(bands, take)
        return pa.table(facts)

    # ------------------------------------------------------------------ reduce

    def reduce(self, facts: list[Path | None], decisions: Path, index: Path) -> dict[str, int]:
        t = read_facts(facts)
        if t is None:
            write_decisions(decisions, {})
            return {}
        kind = t.column("kind").to_numpy()
        rows_mask, cand_mask = kind == 0, kind == 1
        existing, cand = t.filter(pa.array(rows_mask)), t.filter(pa.array(cand_mask))
        m = cand.num_rows
        code = np.zeros(m, dtype=np.int8)
        dup_of: list[str | None] = [None] * m
        sim = np.full(m, np.nan)
        ex_ids = existing.column("id").to_pylist()
        ids = cand.column("id").to_pylist()
        hi, lo = cand.column("hi").to_numpy(), cand.column("lo").to_numpy()

        # 1. unchanged (or empty)
        empty = pc.equal(pc.utf8_length(cand.column("text")), 0).to_numpy(zero_copy_only=False)
        code[(hi == cand.column("src_hi").to_numpy()) & (lo == cand.column("src_lo").to_numpy()) | empty] = _CODE["augment_unchanged"]

        # 2. exact copies of held-out rows, 4a. of training rows: 128-bit keys as group numbers
        heldout = existing.column("heldout").to_numpy(zero_copy_only=False)
        n_ex = existing.num_rows
        keys = np.empty(n_ex + m, dtype=[("hi", "<u8"), ("lo", "<u8")])
        keys["hi"] = np.r_[existing.column("hi").to_numpy(), hi]
        keys["lo"] = np.r_[existing.column("lo").to_numpy(), lo]
        _, group = np.unique(keys, return_inverse=True)
        group = group.ravel()
        ex_group, cand_group = group[:n_ex], group[n_ex:]
        # per group, the existing row a copy is reported against: a held-out one if any, else the first
        order = np.lexsort((np.arange(n_ex), ~heldout, ex_group))
        witness = np.full(group.max() + 1 if len(group) else 0, -1, dtype=np.int64)
        firsts, at = np.unique(ex_group[order], return_index=True)
        witness[firsts] = order[at]
        hit = np.flatnonzero((code == 0) & (witness[cand_group] >= 0))
        who = witness[cand_group[hit]]
        code[hit] = np.where(heldout[who], _CODE["exact_duplicate_of_heldout"], _CODE["exact_duplicate"])
        for i, w in zip(hit.tolist(), who.tolist()):
            dup_of[i] = ex_ids[w]

        # 3. near copies of held-out rows
        near = self.near_threshold
        if near and m:
            self._near_heldout(existing.filter(pa.array(heldout)), cand, code, dup_of, sim, near)

        # 4b. exact copies among new rows: the first in stable order (shard, row, k) stays
        alive = np.flatnonzero(code == 0)
        _, first, inverse = np.unique(cand_group[alive], return_index=True, return_inverse=True)
        copies = np.flatnonzero(first[inverse.ravel()] != np.arange(len(alive)))
        code[alive[copies]] = _CODE["exact_duplicate"]
        for i, f in zip(alive[copies].tolist(), alive[first[inverse.ravel()[copies]]].tolist()):
            dup_of[i] = ids[f]

        # 5. near copies among new rows kept so far
        if near and self.config.distinct_near and m:
            self._near_among_new(cand, code, dup_of, sim, near, ids)

        # 6. per-row cap, in (shard, row, k) order
        if self.config.max_per_row:
            alive = np.flatnonzero(code == 0)
            src = cand.column("shard").to_numpy().astype(np.int64)[alive] << 40 | cand.column("row").to_numpy()[alive]
            starts = np.r_[0, np.flatnonzero(src[1:] != src[:-1]) + 1]
            rank = np.arange(len(alive)) - np.repeat(starts, np.diff(np.r_[starts, len(alive)]))
            code[alive[rank >= self.config.max_per_row]] = _CODE["over_row_cap"]

        # 7. dataset cap: a uniform sample by a stable hash of seed and id
        train_rows = int((~heldout).sum())
        caps = [c for c in (self.config.max_new_rows,
                            int(self.config.max_ratio * train_rows) if self.config.max_ratio else 0) if c]
        alive = np.flatnonzero(code == 0)
        if caps and len(alive) > min(caps):
            order = alive[np.argsort(_u64([ids[i] for i in alive], self.run.seed), kind="stable")]
            code[order[min(caps):]] = _CODE["over_dataset_cap"]

        detail = [_detail(REASONS[c], dup_of[i], sim[i], self.config) for i, c in enumerate(code.tolist())]
        out = pa.table({
            "row": cand.column("row"), "k": cand.column("k"), "id": cand.column("id"), "text": cand.column("text"),
            AUGMENTER: cand.column(AUGMENTER), AUGMENT_PARAMS: cand.column(AUGMENT_PARAMS),
            "code": pa.array(code), "detail": pa.array(detail, pa.string()),
            "duplicate_of": pa.array(dup_of, pa.string()),
            "similarity": pa.array(np.where(np.isnan(sim), None, sim), pa.float32()),
            **{name: cand.column(name) for name in cand.column_names if name.startswith(NEW)},
        })
        shards = cand.column("shard").to_numpy()
        tables = {}
        for s in sorted(set(t.column("shard").to_numpy().tolist())):
            tables[int(s)] = out.filter(pa.array(shards == s))  # every shard gets a file, even without candidates
        write_decisions(decisions, tables)
        counters = {"candidates": m, "new_rows": int((code == 0).sum()), "training_rows": train_rows}
        for c, name in enumerate(REASONS):
            if c and (code == c).any():
                counters[f"rejected_{name}"] = int((code == c).sum())
        return counters

    def _near_heldout(self, held: pa.Table, cand: pa.Table, code, dup_of, sim, near: float) -> None:
        from corpusmill.dataprep.dedup import from_fixed_binary
        from corpusmill.dataprep.minhash import estimate_jaccard

        nh = held.num_rows
        if not nh:
            return
        alive = np.flatnonzero(code == 0)
        bands = np.concatenate([from_fixed_binary(held.column("bands"), np.uint64),
                                from_fixed_binary(cand.column("bands").take(pa.array(alive)), np.uint64)])
        sig = np.concatenate([from_fixed_binary(held.column("sig"), np.uint32),
                              from_fixed_binary(cand.column("sig").take(pa.array(alive)), np.uint32)])
        pairs = _pairs(bands)
        pairs = pairs[(pairs[:, 0] < nh) & (pairs[:, 1] >= nh)]  # held-out x candidate only
        if not len(pairs):
            return
        est = estimate_jaccard(sig[pairs[:, 0]], sig[pairs[:, 1]])
        keep = est >= near
        pairs, est = pairs[keep], est[keep]
        held_ids = held.column("id").to_pylist()
        # the most similar held-out row per candidate (ties: the first)
        order = np.lexsort((pairs[:, 0], -est, pairs[:, 1]))
        seen = set()
        for p in order:
            c = int(alive[pairs[p, 1] - nh])
            if c in seen:
                continue
            seen.add(c)
            code[c] = _CODE["near_duplicate_of_heldout"]
            dup_of[c] = held_ids[pairs[p, 0]]
            sim[c] = est[p]

    def _near_among_new(self, cand: pa.Table, code, dup_of, sim, near: float, ids: list[str]) -> None:
        from corpusmill.dataprep.dedup import from_fixed_binary
        from corpusmill.dataprep.minhash import estimate_jaccard

        alive = np.flatnonzero(code == 0)
        if len(alive) < 2:
            return
        bands = from_fixed_binary(cand.column("bands").take(pa.array(alive)), np.uint64)
        sig = from_fixed_binary(cand.column("sig").take(pa.array(alive)), np.uint32)
        pairs = _pairs(bands)
        if not len(pairs):
            return
        est = estimate_jaccard(sig[pairs[:, 0]], sig[pairs[:, 1]])
        pairs, est = pairs[est >= near], est[est >= near]
        # in stable order, a candidate goes when it is near one kept before it
        kept = np.ones(len(alive), dtype=bool)
        order = np.lexsort((pairs[:, 0], pairs[:, 1]))
        for p in order:
            a, b = int(pairs[p, 0]), int(pairs[p, 1])
            if kept[a] and kept[b]:
                kept[b] = False
                c = int(alive[b])
                code[c] = _CODE["near_duplicate"]
                dup_of[c] = ids[alive[a]]
                sim[c] = est[p]

    # ------------------------------------------------------------------ apply

    def apply(self, batch: pa.Table, info: BatchInfo, decision: pa.Table | None) -> StageOutput:
        n = batch.num_rows
        original = batch
        for name in PROVENANCE:
            if name not in original.column_names:
                original = original.append_column(name, pa.nulls(n, pa.string()))
        d = batch_decision(decision, info, n)
        if d is None:
            return StageOutput(original)
        src = d.column("row").to_numpy() - info.row_offset
        new = original.take(pa.array(src))
        columns = {S.ID: d.column("id"), S.TEXT: d.column("text"), AUGMENTED_FROM: pc.take(batch.column(S.ID), pa.array(src)),
                   AUGMENTER: d.column(AUGMENTER), AUGMENT_PARAMS: d.column(AUGMENT_PARAMS),
                   **{name[len(NEW):]: d.column(name) for name in d.column_names if name.startswith(NEW)}}
        for name, col in columns.items():
            i = new.schema.get_field_index(name)
            new = new.set_column(i, new.schema.field(name), col.cast(new.schema.field(name).type))
        code = d.column("code").to_numpy()
        accepted = pa.array(code == 0)
        kept = pa.concat_tables([original, new.filter(accepted)])
        rejected = None
        if (code != 0).any():
            gone = pa.array(code != 0)
            rejected = self.reject(new.filter(gone), [REASONS[c] for c in code[code != 0]],
                                   detail=d.column("detail").filter(gone).to_pylist(),
                                   duplicate_of=d.column("duplicate_of").filter(gone).to_pylist(),
                                   similarity=d.column("similarity").filter(gone).to_pylist())
        return StageOutput(kept, rejected, {"new_rows": int((code == 0).sum())}, added=len(code))


def _pairs(bands: np.ndarray) -> np.ndarray:
    from corpusmill.dataprep import lsh

    n = len(bands)
    members = np.arange(n, dtype=np.int64)
    found = [lsh.bucket_pairs(bands[:, b][bands[:, b] != 0], members[bands[:, b] != 0]) for b in range(bands.shape[1])]
    return lsh.unique_pairs(np.concatenate(found)) if found else np.zeros((0, 2), np.int64)


def _detail(reason: str, dup: str | None, sim: float, config: AugmentConfig) -> str | None:
    if reason == "":
        return None
    if reason == "augment_unchanged":
        return "the augmenter returned the source text (or nothing)"
    if reason in ("exact_duplicate_of_heldout", "exact_duplicate"):
        return f"same text as {dup}"
    if reason in ("near_duplicate_of_heldout", "near_duplicate"):
        return f"word 3-gram Jaccard ~{sim:.2f} >= {float(config.near):g} with {dup}"
    if reason == "over_row_cap":
        return f"more than max_per_row={config.max_per_row} new rows from one source row"
    return f"over the dataset cap (max_new_rows={config.max_new_rows}, max_ratio={config.max_ratio:g})"
