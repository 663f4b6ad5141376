"""The ``dedup`` stage: exact duplicates by a hash of the normalised text, near duplicates by
MinHash LSH, one representative kept per cluster.

What is compared is the row's ``key`` (:func:`key_text`): its ``text`` by default (on instruction
and chat rows the text derived from every trained field), or one side of an instruction or chat
row: the prompt (a conversation's first user turn), the response (the assistant turns), prompt
and response without the system prompt, the whole conversation role by role, or every user turn.
With ``duplicates: group`` nothing is rejected: the rows of a cluster (say, several answers to one
prompt) all stay and share ``cluster_id``, which ``split`` keeps together.

Map (per shard, in the workers): the 128-bit hash of each row's exact normal form, its
MinHash signature and LSH band keys (:mod:`corpusmill.dataprep.minhash`, :mod:`~.lsh`).

Reduce (once, in the main process):

1. exact groups: rows with equal hashes; one representative per group by ``keep``;
2. near clusters among the exact representatives: candidate pairs from equal band keys,
   each verified by the true Jaccard similarity of the two shingle sets (re-computed from the
   text of candidate rows only) or, with ``verify: false``, by the signature estimate;
   clusters are the connected components of the accepted pairs; one representative each;
3. with ``against: NAME@REF``, the rows of that version's index take part too (their stored
   signatures, never recomputed) and always win: a new row like an old one is removed.

A row is rejected once: ``exact_duplicate`` if its key's normal form equals that of a row that
stays, ``near_duplicate`` otherwise, with ``duplicate_of`` = the id of the kept row of its
cluster and ``similarity`` = its Jaccard similarity to that row. Every row carries ``cluster_id``
(the id of its cluster's kept row), rejected ones too, so grouping rows and rejects by it gives
the clusters; the split stage keeps a cluster together by it. Decisions depend on
the rows and their stable order only, never on worker count or batch size.

The version's ``index/<stage>/`` holds, for every kept row (with ``duplicates: group``, every
cluster's representative), its id, exact hash and signature (plus the parts inherited from
``against``), and ``meta.json`` with everything needed to compare later signatures with them,
the key included: an index answers only for the key it was built on.
"""

from __future__ import annotations

import json
import shutil
import sys
from dataclasses import dataclass
from functools import cached_property, lru_cache, partial
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pydantic import Field, field_validator, model_validator

from corpusmill import schema as S
from corpusmill import sft
from corpusmill.dataprep import lsh
from corpusmill.dataprep.minhash import (MinHasher, Shingles, Shingling, estimate_jaccard, sequence_hash,
                                         word_shingles)
from corpusmill.dataprep.textnorm import NormalForm, tokenize_forms, warm_up
from corpusmill.errors import ConfigError, CorpusmillError
from corpusmill.grouping import partition_bits, partition_of
from corpusmill.stage import (BatchInfo, ReduceStage, StageConfig, StageOutput, batch_decision, per_shard,
                              read_parquet, write_decisions)

CLUSTER_ID = "cluster_id"
INDEX_FORMAT = 1
#: names of the hashing schemes; a stored index is reusable only under the same names
TOKENIZER = "words-ucd3.2-v1"
EXACT_HASH = "token-sequence-poly128-v1"
SKETCH = "bucketed-minhash-u32-v1"


class ExactConfig(StageConfig):
    """What counts as the same text. Normalisation applies to the comparison only; the kept text
    is never changed. Invisible format characters (soft hyphen, zero-width joiner) are ignored."""

    lowercase: bool = Field(True, description="ignore case")
    punctuation: bool = Field(False, description="ignore punctuation and symbols (they separate words like spaces)")
    whitespace: bool = Field(True, description="ignore differences in whitespace (runs, leading/trailing)")
    digits: bool = Field(False, description="ignore digits (treat every digit as 0)")

    @property
    def form(self) -> NormalForm:
        return NormalForm.exact(lowercase=self.lowercase, punctuation=self.punctuation,
                                whitespace=self.whitespace, digits=self.digits)


class NearConfig(StageConfig):
    """Near duplicates by MinHash LSH over word or character n-gram shingles."""

    threshold: float = Field(0.8, gt=0.0, le=1.0, description=(
        "Jaccard similarity of the shingle sets at or above which two rows are near duplicates"))
    num_perm: int = Field(128, ge=8, le=1024, description=(
        "MinHash slots per row (4 bytes each in the index); an estimate's standard error is "
        "sqrt(J(1-J)/num_perm), 0.035 at J=0.8 with 128"))
    shingle: Literal["word", "char"] = Field("word", description=(
        "word: n consecutive words; char: n consecutive characters of the words joined by single spaces. "
        "Either way after lower-casing, with punctuation and symbols as separators"))
    ngram: int | None = Field(None, ge=1, le=64, description=(
        "words or characters per shingle; null = 3 for word, 5 for char, chosen for documents of a few "
        "hundred bytes (see docs/dedup.md: 5-word shingles miss lightly edited short documents)"))
    bands: int | None = Field(None, ge=1, description="LSH bands; null = chosen from threshold and the weights")
    rows: int | None = Field(None, ge=1, description="slots per band; null = chosen from threshold and the weights")
    fp_weight: float = Field(0.05, ge=0.0, description=(
        "weight of false candidates when choosing bands x rows; low by default because verification "
        "(or the signature estimate) throws them out, at the cost of a little time"))
    fn_weight: float = Field(0.95, ge=0.0, description=(
        "weight of missed pairs when choosing bands x rows; high by default because a missed pair "
        "stays in the data"))
    verify: bool = Field(True, description=(
        "check each candidate pair by the true Jaccard similarity of its shingle sets (re-computed "
        "from the text of candidate rows); false: trust the signature estimate"))
    seed: int = Field(0, description=(
        "seed of the MinHash hash functions (not the pipeline seed): signatures compare only under "
        "the same seed, so it is stored with the index"))
    memory_mb: float = Field(1024, gt=0, description=(
        "budget for band keys in the global step; a corpus needing more is partitioned by key to disk"))

    @property
    def n(self) -> int:
        return self.ngram or (3 if self.shingle == "word" else 5)

    @model_validator(mode="after")
    def _check(self) -> "NearConfig":
        if self.bands and self.rows and self.bands * self.rows > self.num_perm:
            raise ValueError(f"bands x rows = {self.bands} x {self.rows} = {self.bands * self.rows} "
                             f"exceeds num_perm={self.num_perm}")
        if self.fp_weight + self.fn_weight <= 0:
            raise ValueError("fp_weight + fn_weight must be > 0")
        return self


#: what ``key`` may name, and how a message calls it
KEYS = {
    "text": "text",
    "prompt": "prompt",
    "response": "response",
    "prompt+response": "prompt and response",
    "messages": "conversation",
    "user_turns": "user turns",
}
Key = Literal["text", "prompt", "response", "prompt+response", "messages", "user_turns"]


def key_text(batch: pa.Table, key: str) -> pa.Array:
    """The string each row is compared by under ``key`` (one per row, never null):

    * ``text``: the text column (on instruction and chat rows, derived from the trained fields);
    * ``prompt``: the prompt, or a conversation's first user turn;
    * ``response``: the response, or a conversation's assistant turns joined by newlines;
    * ``prompt+response``: prompt and response joined by a blank line, the system prompt left
      out; on a conversation its user and assistant turns;
    * ``messages``: a conversation turn by turn, each as ``role: content`` on its own line (the
      same contents under other roles are another conversation);
    * ``user_turns``: the system prompt and the prompt, or a conversation's system and user turns.

    A row without the field (a plain-text row among instruction rows) is compared by its text."""
    text = _column(batch, S.TEXT)
    if key == "text":
        return text
    if key == "prompt":
        out = sft.first_user_turn(batch)
    elif key == "user_turns":
        out = sft.user_turns_text(batch)
    elif key == "response":
        out = sft.assistant_turns_text(batch)
    else:
        names = batch.column_names
        out = None
        if key == "prompt+response" and S.PROMPT in names:
            prompt = _column(batch, S.PROMPT)
            parts = [pc.fill_null(prompt, "")] + ([_column(batch, S.RESPONSE)] if S.RESPONSE in names else [])
            joined = pc.binary_join_element_wise(*parts, sft.PR_SEPARATOR, null_handling="skip")
            out = pc.if_else(pc.is_valid(prompt), joined, pa.nulls(batch.num_rows, pa.string()))
        if S.MESSAGES in names:
            turns = (_conversation(batch, ("user", "assistant"), tagged=False) if key == "prompt+response"
                     else _conversation(batch, None, tagged=True))
            out = turns if out is None else pc.coalesce(out, turns)
    return text if out is None else pc.coalesce(out, text)


def _column(batch: pa.Table, name: str) -> pa.Array:
    col = batch.column(name)
    return col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col


def _conversation(batch: pa.Table, roles: tuple[str, ...] | None, *, tagged: bool) -> pa.Array:
    """Per row, the contents of its messages of ``roles`` (None: every role) joined by newlines,
    each as ``role: content`` when ``tagged``; null where the row has no conversation."""
    messages = _column(batch, S.MESSAGES)
    flat = messages.flatten()
    content, role = pc.fill_null(flat.field("content"), ""), pc.fill_null(flat.field("role"), "")
    if tagged:
        content = pc.binary_join_element_wise(role, content, ": ")
    lengths = pc.fill_null(pc.list_value_length(messages), 0).to_numpy(zero_copy_only=False).astype(np.int64)
    parent = np.repeat(np.arange(batch.num_rows), lengths)
    if roles is not None:
        chosen = pc.is_in(role, pa.array(list(roles), pa.string())).to_numpy(zero_copy_only=False)
        parent, content = parent[chosen], content.filter(pa.array(chosen))
    offsets = np.concatenate([[0], np.cumsum(np.bincount(parent, minlength=batch.num_rows))])
    joined = pc.binary_join(pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), content), "\n")
    return pc.if_else(messages.is_valid(), joined, pa.nulls(batch.num_rows, pa.string()))


def key_columns(names: list[str], key: str) -> list[str]:
    """The columns :func:`key_text` reads under ``key``, of those in ``names``."""
    if key == "text":
        return [S.TEXT]
    return [c for c in (S.TEXT, S.SYSTEM, S.PROMPT, S.RESPONSE, S.MESSAGES) if c in names]


def _key_fits(key: str, schema: pa.Schema) -> bool:
    if key == "text":
        return True
    return any(c in schema.names for c in ((S.MESSAGES,) if key == "messages" else (S.PROMPT, S.MESSAGES)))


def check_key(key: str, schema: pa.Schema) -> list[str]:
    """A problem when ``key`` names a field the rows of ``schema`` cannot have, else none."""
    if _key_fits(key, schema):
        return []
    valid = [k for k in KEYS if _key_fits(k, schema)]
    rows = "instruction rows without a conversation" if S.PROMPT in schema.names else "plain text (no prompt or messages)"
    fix = ("map a conversation in the inputs (messages_field, or format: sharegpt/openai)" if key == "messages"
           else "map them in the inputs (prompt_field/response_field, messages_field, or a format/prompt_template)")
    return [f"key: {key!r} compares the {KEYS[key]} of each row, but these rows are {rows}; "
            f"valid here: {', '.join(valid)}; or {fix}"]


class DedupConfig(StageConfig):
    key: Key = Field("text", description=(
        "what is compared, by exact and near: text (on instruction and chat rows the text derived from every "
        "trained field); prompt (a conversation's first user turn); response (a conversation's assistant turns); "
        "prompt+response (without the system prompt); messages (the conversation, role by role); user_turns "
        "(system prompt and prompt, or every system and user turn)"))
    duplicates: Literal["reject", "group"] = Field("reject", description=(
        "reject: one row of each group stays (chosen by keep), the others are rejected with duplicate_of; "
        "group: every row stays and the rows of a group share cluster_id (the id of the row keep chooses), "
        "so split keeps them in one split, e.g. several answers to one prompt with key: prompt"))
    exact: ExactConfig | None = Field(ExactConfig(), description="true: default normalisation; false (or null): off")
    near: NearConfig | None = Field(None, description="true: default settings; false (or null, the default): off")
    keep: Literal["first", "longest", "quality"] = Field("first", description=(
        "representative of a group: first in stable order (input order, then line), the longest text, "
        "or the highest quality_column value; ties go to the first"))
    quality_column: str | None = Field(None, validate_default=True, description=(
        "numeric column ranking rows for keep: quality (null ranks last)"))
    against: str | None = Field(None, description=(
        "NAME@REF of an earlier version whose dedup index these rows are also compared with; "
        "its rows always win and are never recomputed"))

    @field_validator("exact", "near", mode="before")
    @classmethod
    def _switch(cls, value):
        """``true`` turns a part on with its defaults, ``false`` turns it off."""
        if value is True:
            return {}
        if value is False:
            return None
        return value

    @field_validator("quality_column")
    @classmethod
    def _quality_named(cls, value, info):
        if info.data.get("keep") == "quality" and not value:
            raise ValueError("keep: quality needs quality_column, the numeric column to rank rows by")
        return value

    @model_validator(mode="after")
    def _check(self) -> "DedupConfig":
        if self.against is not None and (not self.against or self.against.startswith("@")):
            raise ValueError(f"against must be NAME@VERSION, NAME@TAG or NAME, got {self.against!r}")
        return self


def exact_hashes(texts: pa.Array | pa.ChunkedArray, config: ExactConfig | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The 128-bit exact-duplicate key (two uint64 arrays) of each text under ``config``'s normal
    form (default: case and whitespace ignored): what ``dedup``, ``split`` and the audit call
    "the same text"."""
    return sequence_hash(tokenize_forms(texts, [(config or ExactConfig()).form])[0])


def index_meta(config: DedupConfig) -> dict:
    """What a stored index must match for its hashes to be compared with this config's."""
    e, c = config.exact, config.near
    return {
        "format": INDEX_FORMAT,
        "key": config.key,
        "exact": {**e.model_dump(), "hash": EXACT_HASH} if e else None,
        "near": {"tokenizer": TOKENIZER, "sketch": SKETCH, "num_perm": c.num_perm, "seed": c.seed,
                 "shingle": c.shingle, "ngram": c.n} if c else None,
    }


def find_index(version, key: str | None = None) -> Path | None:
    """The dedup index folder of a published version: the first dedup stage's, or with ``key`` the
    first one built on that key (else the first, whose key then tells what went wrong); None
    when there is none."""
    first = version.index_folder("dedup", unlabelled="dedup")  # (older dedup indexes name no kind)
    if first is None or key is None or _index_key(first) == key:
        return first
    for folder in sorted(p for p in (version.path / "index").iterdir() if p.is_dir()):
        meta = folder / "meta.json"
        if meta.is_file():
            m = json.loads(meta.read_text(encoding="utf-8"))
            if m.get("kind", "dedup") == "dedup" and m.get("key", "text") == key:
                return folder
    return first


def _index_key(folder: Path) -> str:
    """The key a dedup index was built on (indexes written before keys existed compared text)."""
    return json.loads((folder / "meta.json").read_text(encoding="utf-8")).get("key", "text")


def check_index(version, config: DedupConfig, where: str = "steps.dedup.against") -> Path:
    """The index folder of ``version``; ConfigError when missing or built with other settings."""
    folder = find_index(version, config.key)
    if folder is None:
        raise ConfigError([f"{where}: {version.ref} has no dedup index (index/<stage>/meta.json); "
                           f"compare only with versions built with a dedup step"])
    meta = json.loads((folder / "meta.json").read_text())
    want = index_meta(config)
    have_key = meta.get("key", "text")
    if have_key != config.key:
        raise ConfigError([f"{where}: the dedup index of {version.ref} compares rows by key {have_key!r} "
                           f"({KEYS.get(have_key, have_key)}) but this step compares key {config.key!r} "
                           f"({KEYS[config.key]}); rows compared by different keys cannot be matched: set "
                           f"key: {have_key} here, or compare with a version built with key: {config.key}"])
    problems = [f"{where}: the index of {version.ref} has {key} {meta.get(key)!r} but this step has {want[key]!r}; "
                f"hashes built with other settings cannot be compared"
                for key in ("format", "exact", "near") if meta.get(key) != want[key]]
    if problems:
        raise ConfigError(problems)
    return folder


def to_fixed_binary(matrix: np.ndarray) -> pa.Array:
    """A [rows x k] numeric matrix as one fixed-size binary value per row (little-endian):
    Parquet stores these as plain fixed-length bytes, several times cheaper than lists."""
    m = np.ascontiguousarray(matrix.astype(matrix.dtype.newbyteorder("<"), copy=False))
    return pa.FixedSizeBinaryArray.from_buffers(pa.binary(m.shape[1] * m.itemsize), m.shape[0],
                                                [None, pa.py_buffer(m.tobytes())])


def from_fixed_binary(col: pa.Array | pa.ChunkedArray, dtype) -> np.ndarray:
    """The matrix written by :func:`to_fixed_binary`."""
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
    width = col.type.byte_width
    dt = np.dtype(dtype).newbyteorder("<")
    if len(col) == 0:
        return np.zeros((0, width // dt.itemsize), dtype=dtype)
    raw = np.frombuffer(col.buffers()[1], dtype=np.uint8)[col.offset * width:(col.offset + len(col)) * width]
    return raw.view(dt).reshape(len(col), width // dt.itemsize).astype(dtype, copy=False)


def column_major(columns: list, dtype) -> np.ndarray:
    """The rows of several columns written by :func:`to_fixed_binary`, in order, as one
    [rows x k] matrix stored column by column (Fortran order). A refresh scans a big index one
    band at a time, and a contiguous band scans ~1.5x faster than a strided one; filling it part
    by part also spares the copy that joining the parts first would make."""
    chunks = [c for col in columns for c in (col.chunks if isinstance(col, pa.ChunkedArray) else [col])]
    n = sum(len(c) for c in chunks)
    k = chunks[0].type.byte_width // np.dtype(dtype).itemsize if chunks else 0
    out = np.empty((k, n), dtype=dtype).T
    at = 0
    for c in chunks:
        m = from_fixed_binary(c, dtype)
        for a in range(0, len(m), 4096):  # in blocks that stay in cache: ~3x faster than one transposing copy
            b = min(a + 4096, len(m))
            out[at + a:at + b] = m[a:b]
        at += len(m)
    return out


@lru_cache(maxsize=64)
def band_plan(threshold: float, num_perm: int, fp_weight: float, fn_weight: float,
              bands: int | None, rows: int | None) -> lsh.BandPlan:
    return lsh.BandPlan.choose(threshold, num_perm, fp_weight, fn_weight, bands, rows)


_REASON = {1: "exact_duplicate", 2: "near_duplicate"}


class Dedup(ReduceStage):
    """Exact and near-duplicate removal; see the module docstring and docs/dedup.md."""

    kind = "dedup"
    Config = DedupConfig
    version = 2

    # -- configuration

    @property
    def exact(self) -> ExactConfig | None:
        return self.config.exact

    @property
    def near(self) -> NearConfig | None:
        return self.config.near

    @cached_property
    def plan(self) -> lsh.BandPlan | None:
        c = self.near
        if c is None:
            return None
        return band_plan(c.threshold, c.num_perm, c.fp_weight, c.fn_weight, c.bands, c.rows)

    @cached_property
    def hasher(self) -> MinHasher | None:
        return MinHasher(self.near.num_perm, self.near.seed) if self.near else None

    @cached_property
    def shingling(self) -> Shingling | None:
        return Shingling(self.near.shingle, self.near.n) if self.near else None

    def index_meta(self) -> dict:
        return index_meta(self.config)

    def check(self, schema: pa.Schema) -> list[str]:
        return check_key(self.config.key, schema)

    def identity(self) -> dict | None:
        """The ``against`` version, resolved (a moved tag gives a new version); its index must
        exist and match these settings."""
        if not self.config.against or self.run.store_root is None:
            return None
        from corpusmill.store import Store

        version = Store(self.run.store_root).resolve(self.config.against)
        check_index(version, self.config, f"steps.{self.name}.against")
        return {"against": version.ref}

    def output_fields(self, schema: pa.Schema) -> pa.Schema:
        if CLUSTER_ID in schema.names:
            return schema
        return schema.append(pa.field(CLUSTER_ID, pa.string()))

    # -- map

    def map_facts(self, batch: pa.Table, info: BatchInfo) -> pa.Table | None:
        n = batch.num_rows
        # keep: longest ranks whole rows (the text holds every trained field), whatever the key
        length = pc.utf8_length(batch.column(S.TEXT)).cast(pa.int64())
        text = key_text(batch, self.config.key)
        facts = {
            "row": pa.array(np.arange(info.row_offset, info.row_offset + n, dtype=np.int64)),
            "id": batch.column(S.ID),
            "length": length,
        }
        if self.config.keep == "quality":
            facts["quality"] = self._quality(batch)
        e, c = self.exact, self.near
        # one lower-casing and one pass over the characters serve both the exact and the word form
        forms = ([e.form] if e else []) + ([NormalForm.words()] if c and c.shingle == "word" else [])
        tokens = tokenize_forms(text, forms) if forms else []
        if e:
            hi, lo = sequence_hash(tokens[0])
            facts["hi"], facts["lo"] = pa.array(hi), pa.array(lo)
        if c:
            sh = word_shingles(tokens[-1], c.n) if c.shingle == "word" else self.shingling.shingles(text)
            sig = self.hasher.signatures(sh)
            facts["shingles"] = pa.array(sh.counts.astype(np.int32))
            facts["sig"] = to_fixed_binary(sig)
            keys = lsh.band_keys(sig, self.plan, c.seed)
            facts["bands"] = to_fixed_binary(keys)
        return pa.table(facts)

    def _quality(self, batch: pa.Table) -> pa.Array:
        col = self.config.quality_column
        if col not in batch.column_names:
            raise CorpusmillError(f"steps.{self.name}.quality_column: no column '{col}' in the rows "
                                  f"(columns: {', '.join(batch.column_names)}); a stage before dedup must add it")
        values = batch.column(col)
        if not (pa.types.is_integer(values.type) or pa.types.is_floating(values.type)):
            raise CorpusmillError(f"steps.{self.name}.quality_column: column '{col}' is {values.type}, expected numbers")
        return pc.cast(values, pa.float64())

    # -- reduce

    @cached_property
    def old_index(self) -> "_OldIndex | None":
        """The ``against`` version's index, loaded once (by :meth:`prepare`, during the map phase)."""
        return _OldIndex.load(self) if self.config.against else None

    def prepare(self) -> None:
        self.old_index
        if self.old_index is not None and self.near is not None and self.near.verify:
            warm_up()  # verification shingles the candidates' text in this process

    def reduce(self, facts: list[Path | None], decisions: Path, index: Path) -> dict:
        c = self.near
        if c is not None:
            by = "" if self.config.key == "text" else f" by {KEYS[self.config.key]}"
            print(f"[{self.name}] near duplicates{by}: {c.shingle} {c.n}-gram shingles, {c.num_perm} slots; "
                  + self.plan.describe(), file=sys.stderr, flush=True)
        rows = _Rows.load(facts, self)
        old = self.old_index
        dec = _decide(self, rows, old)
        _write_decisions(self, decisions, rows, dec, old)
        counters = _write_index(self, index, facts, rows, dec, old)
        counters.update(dec.counters)
        if self.config.duplicates == "group":
            joined = dec.reason[dec.n_old:] > 0
            counters["grouped_rows"] = int(joined.sum())  # rows that stay in another row's group
            counters["groups"] = int(len(np.unique(dec.keeper[dec.n_old:][joined])))
        if self.plan is not None:
            counters["lsh"] = self.plan.to_json()
        return counters

    # -- apply

    def undecided(self, batch: pa.Table) -> pa.Table:
        """Every row names its own cluster (a kept row is its cluster's representative)."""
        field = pa.field(CLUSTER_ID, pa.string())
        if CLUSTER_ID in batch.column_names:  # an earlier dedup step named clusters: these are finer
            return batch.set_column(batch.schema.get_field_index(CLUSTER_ID), field, batch.column(S.ID))
        return batch.append_column(field, batch.column(S.ID))

    def apply(self, batch: pa.Table, info: BatchInfo, decision: pa.Table | None) -> StageOutput:
        n = batch.num_rows
        out = self.undecided(batch)
        d = batch_decision(decision, info, n)
        if d is None:
            return StageOutput(out)
        local = d.column("row").to_numpy() - info.row_offset
        order = np.argsort(local, kind="stable")  # replace_with_mask fills the masked rows in row order
        local, d = local[order], d.take(pa.array(order))
        # every row a decision names gets its cluster's id: with ``group`` it stays; otherwise it is
        # rejected as this stage saw it with its columns (cluster_id included), so the rejects of a
        # cluster and its kept row share cluster_id whatever steps follow and in every export
        cluster = pc.replace_with_mask(out.column(CLUSTER_ID).combine_chunks(), pa.array(np.isin(np.arange(n), local)),
                                       d.column("cluster").combine_chunks())
        out = out.set_column(out.schema.get_field_index(CLUSTER_ID), pa.field(CLUSTER_ID, pa.string()), cluster)
        if self.config.duplicates == "group":
            return StageOutput(out)
        keep = np.ones(n, dtype=bool)
        keep[local] = False
        dropped = out.take(pa.array(local))
        rejected = self.reject(
            dropped, d.column("reason").to_pylist(), detail=d.column("detail").to_pylist(),
            duplicate_of=d.column("cluster").to_pylist(), similarity=d.column("similarity").to_pylist(),
        )
        return StageOutput(out.filter(pa.array(keep)), rejected)


# ----------------------------------------------------------------------------- the global step


@dataclass
class _Rows:
    """The facts every decision needs, for all rows in stable order (shard, then row)."""

    shard: np.ndarray
    row: np.ndarray
    ids: pa.Array
    length: np.ndarray
    quality: np.ndarray | None
    hi: np.ndarray | None
    lo: np.ndarray | None
    shingles: np.ndarray | None
    shard_start: np.ndarray  # global number of each shard's first row, len shards + 1
    files: list[Path | None]  # facts per shard
    texts: list[Path | None]  # the rows themselves per shard (for the text of candidates)

    def __len__(self) -> int:
        return len(self.row)

    @classmethod
    def load(cls, facts: list[Path | None], stage: Dedup) -> "_Rows":
        cols = ["row", "id", "length"]
        if stage.config.keep == "quality":
            cols.append("quality")
        if stage.exact:
            cols += ["hi", "lo"]
        if stage.near:
            cols.append("shingles")
        parts, shard, starts = [], [], [0]
        for k, path in enumerate(facts):
            t = pq.read_table(path, columns=cols) if path is not None else None
            count = t.num_rows if t is not None else 0
            if t is not None:
                parts.append(t)
                shard.append(np.full(count, k, dtype=np.int32))
            starts.append(starts[-1] + count)
        schema = {"row": pa.int64(), "id": pa.string(), "length": pa.int64(), "quality": pa.float64(),
                  "hi": pa.uint64(), "lo": pa.uint64(), "shingles": pa.int32()}
        t = pa.concat_tables(parts) if parts else pa.schema([(c, schema[c]) for c in cols]).empty_table()

        def col(name, fill=None):
            if name not in t.column_names:
                return None
            arr = t.column(name)
            if fill is not None:
                arr = pc.fill_null(arr, fill)
            return arr.to_numpy()

        return cls(
            shard=np.concatenate(shard) if shard else np.zeros(0, np.int32),
            row=col("row"), ids=t.column("id").combine_chunks(), length=col("length"),
            quality=col("quality", -np.inf), hi=col("hi"), lo=col("lo"), shingles=col("shingles"),
            shard_start=np.asarray(starts, dtype=np.int64), files=list(facts),
            texts=list(stage.rows_files) if stage.rows_files else [None] * len(facts),
        )


@dataclass
class _OldIndex:
    """The rows of the ``against`` version's index: ids, exact hashes, LSH band keys (stored, or
    computed from the signatures of an index written without them), signatures (read only when
    needed: a refresh against a big index seldom does), and where their text lives."""

    ref: str
    ids: pa.Array
    hi: np.ndarray | None
    lo: np.ndarray | None
    bands: np.ndarray | None  # [rows x bands] uint64, 0 = no shingles
    part_of: np.ndarray  # per row: its part, whose "origin" version holds the row's text
    parts: list[dict]  # meta entries of the parts, with their paths
    root: Path
    _sig: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def sig(self) -> np.ndarray:
        if self._sig is None:
            tables = per_shard(lambda _, p: read_parquet(p["path"], ["sig"]).column("sig"), self.parts)
            self._sig = from_fixed_binary(pa.chunked_array([c for t in tables for c in t.chunks]), np.uint32)
        return self._sig

    @classmethod
    def load(cls, stage: Dedup) -> "_OldIndex":
        from corpusmill.store import Store

        store = Store(stage.run.store_root)
        version = store.resolve(stage.config.against)
        folder = check_index(version, stage.config, f"steps.{stage.name}.against")
        meta = json.loads((folder / "meta.json").read_text())
        paths = [folder / part["file"] for part in meta["parts"]]
        stored_bands = bool(stage.near) and bool(paths) and all(
            "bands" in pq.read_schema(p).names for p in paths) and meta.get("lsh") == stage.plan.to_json()
        cols = ["id"] + (["hi", "lo"] if stage.exact else []) + (["bands"] if stored_bands else [])
        tables = per_shard(lambda _, p: read_parquet(p, cols), paths)
        part_of = np.repeat(np.arange(len(tables)), [t.num_rows for t in tables])
        t = pa.concat_tables(tables) if tables else None
        n = t.num_rows if t is not None else 0
        out = cls(
            ref=version.ref,
            ids=t.column("id").combine_chunks() if n else pa.array([], pa.string()),
            hi=t.column("hi").to_numpy() if n and stage.exact else None,
            lo=t.column("lo").to_numpy() if n and stage.exact else None,
            bands=column_major([tb.column("bands") for tb in tables], np.uint64) if n and stored_bands else None,
            part_of=part_of,
            parts=[{**p, "path": folder / p["file"], "origin": p.get("origin") or version.ref} for p in meta["parts"]],
            root=store.root,
        )
        if stage.near and n and out.bands is None:
            out.bands = lsh.band_keys(out.sig, stage.plan, stage.near.seed)
        return out

    def texts(self, positions: np.ndarray, key: str = "text") -> tuple[np.ndarray, list[str | None]]:
        """The ``key`` text (:func:`key_text`) of the old rows at ``positions``, read from the data
        of the versions holding them; None where the row is no longer there (the caller falls
        back to estimates)."""
        from corpusmill.store import Store

        store = Store(self.root)
        out: list[str | None] = [None] * len(positions)
        ids = self.ids.take(pa.array(positions)).to_pylist()
        by_origin: dict[str, list[int]] = {}
        for k, part in enumerate(self.part_of[positions].tolist()):
            by_origin.setdefault(self.parts[part]["origin"], []).append(k)
        for ref, ks in by_origin.items():
            try:
                version = store.resolve(ref)
            except Exception:
                continue
            wanted = [ids[k] for k in ks]
            found = version.texts_by_id(wanted) if key == "text" else _key_texts_by_id(version, wanted, key)
            for k in ks:
                out[k] = found.get(ids[k])
        return positions, out


def _key_texts_by_id(version, ids: list[str], key: str) -> dict[str, str]:
    """{id: key text} of the rows among ``ids`` that ``version``'s data files hold: the id column
    of every file, the key's columns only of files holding a wanted row."""
    wanted = pa.array(ids, pa.string())

    def read(_, f: Path):
        ids_here = read_parquet(f, [S.ID]).column(S.ID)
        at = np.flatnonzero(pc.is_in(ids_here, value_set=wanted).to_numpy(zero_copy_only=False))
        if not at.size:
            return None
        rows = read_parquet(f, key_columns(pq.read_schema(f).names, key)).take(pa.array(at))
        return ids_here.take(pa.array(at)).to_pylist(), key_text(rows, key).to_pylist()

    found: dict[str, str] = {}
    for got in per_shard(read, [f for split in version.splits() for f in version.data_files(split)]):
        if got is not None:
            found.update(zip(*got))
    return found


@dataclass
class _Decision:
    """Per row of this run: its cluster's kept row (global number; old rows come first), the
    reason it goes (0 stays, 1 exact, 2 near) and its similarity to the kept row."""

    keeper: np.ndarray
    reason: np.ndarray
    similarity: np.ndarray
    estimated: np.ndarray  # bool: similarity from signatures, not shingle sets
    cluster_size: np.ndarray
    n_old: int
    counters: dict


def _keep_primary(keep: str, length: np.ndarray, quality: np.ndarray | None) -> np.ndarray:
    """The keep policy's sort key of new rows (lower wins; ties go to stable order); quality:
    null is -inf in the facts, NaN and null rank last."""
    if keep == "longest":
        return -length.astype(np.float64)
    if keep == "quality":
        q = quality.astype(np.float64)
        return np.where(np.isnan(q), np.inf, -q)
    return np.zeros(len(length), dtype=np.float64)


def _rank_keys(stage: Dedup, rows: _Rows, n_old: int) -> np.ndarray:
    """A sort key per global row: lower wins. Old rows always win, then the keep policy,
    then stable order."""
    n = n_old + len(rows)
    primary = np.zeros(n, dtype=np.float64)
    primary[:n_old] = -np.inf
    primary[n_old:] = _keep_primary(stage.config.keep, rows.length, rows.quality)
    order = np.lexsort((np.arange(n), primary))
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)
    return rank


def _decide(stage: Dedup, rows: _Rows, old: _OldIndex | None) -> _Decision:
    n_old = len(old) if old is not None else 0
    n = n_old + len(rows)
    rank = _rank_keys(stage, rows, n_old)
    counters: dict = {}
    keeper = np.arange(n)
    # 1. exact groups: every row points at the best-ranked row with the same hash
    if stage.exact is not None and n:
        if stage.groupby is not None and not n_old:
            keeper = _exact_keepers_grouped(stage, rows)
        else:
            keeper = _exact_keepers(stage, rows, old, rank)
        moved = keeper != np.arange(n)
        counters["exact_groups"] = int(len(np.unique(keeper[moved])))  # groups of two rows or more
    exact_keeper = keeper.copy()
    reason = np.where(keeper != np.arange(n), 1, 0).astype(np.int8)
    similarity = np.where(reason == 1, 1.0, np.nan)
    estimated = np.zeros(n, dtype=bool)
    cluster_size = np.ones(n, dtype=np.int64)
    # 2. near clusters among the rows that survived the exact step
    if stage.near is not None and n:
        near_keeper, sim, est, size, near_counters = _near_clusters(stage, rows, old, rank, exact_keeper == np.arange(n))
        counters.update(near_counters)
        moved = near_keeper != np.arange(n)
        reason[moved] = 2
        similarity[moved] = sim[moved]
        estimated[moved] = est[moved]
        # an exact duplicate follows its exact representative to that one's near keeper
        keeper = near_keeper[exact_keeper]
        follow = (reason == 1) & (keeper != exact_keeper)
        similarity[follow] = sim[exact_keeper[follow]]
        estimated[follow] = est[exact_keeper[follow]]
        cluster_size = size[keeper]
    counters["exact_duplicates"] = int((reason[n_old:] == 1).sum())
    if stage.near is not None:
        counters["near_duplicates"] = int((reason[n_old:] == 2).sum())
    if n_old:
        counters["against"] = old.ref
        counters["against_rows"] = n_old
        counters["duplicates_of_against"] = int(((reason[n_old:] > 0) & (keeper[n_old:] < n_old)).sum())
    return _Decision(keeper, reason, similarity, estimated, cluster_size, n_old, counters)


def _exact_keepers(stage: Dedup, rows: _Rows, old: _OldIndex | None, rank: np.ndarray) -> np.ndarray:
    """Per global row, the best-ranked row with the same exact hash (itself if none), in memory."""
    n_old = len(old) if old is not None else 0
    n = n_old + len(rows)
    if n_old and (rows.hi != 0).all():
        return _exact_keepers_against(rows, old, rank)
    hi = np.concatenate([old.hi if n_old else np.zeros(0, np.uint64), rows.hi])
    lo = np.concatenate([old.lo if n_old else np.zeros(0, np.uint64), rows.lo])
    order = np.lexsort((rank, lo, hi))
    same = np.zeros(n, dtype=bool)
    same[1:] = (hi[order][1:] == hi[order][:-1]) & (lo[order][1:] == lo[order][:-1])
    head = np.maximum.accumulate(np.where(~same, np.arange(n), 0))
    keeper = np.arange(n)
    keeper[order] = order[head]
    return keeper


def _exact_keepers_against(rows: _Rows, old: _OldIndex, rank: np.ndarray) -> np.ndarray:
    """:func:`_exact_keepers` for a few new rows against a big index, without sorting the index:
    the new rows are grouped among themselves, and a group whose hash an old row has goes to the
    first such old row (old rows rank first, in order). The index's rows are distinct by hash
    (each went through this step once), so they keep themselves."""
    n_old, m = len(old), len(rows)
    order = np.lexsort((rank[n_old:], rows.lo, rows.hi))
    same = np.zeros(m, dtype=bool)
    same[1:] = (rows.hi[order][1:] == rows.hi[order][:-1]) & (rows.lo[order][1:] == rows.lo[order][:-1])
    head = np.maximum.accumulate(np.where(~same, np.arange(m), 0))
    keeper_new = np.empty(m, dtype=np.int64)
    keeper_new[order] = n_old + order[head]
    i_old, j_new = lsh.matching_keys(old.hi, rows.hi)  # screened by the high word, confirmed by the low
    hit = old.lo[i_old] == rows.lo[j_new]
    first_old = np.full(m, n_old, dtype=np.int64)
    np.minimum.at(first_old, j_new[hit], i_old[hit])
    keeper = np.arange(n_old + m)
    keeper[n_old:] = np.where(first_old < n_old, first_old, keeper_new)
    return keeper


def _exact_keepers_grouped(stage: Dedup, rows: _Rows) -> np.ndarray:
    """:func:`_exact_keepers` (no ``against``) on the executor's grouping engine: records keyed
    by a partition of the exact hash, each partition's groups resolved on a worker."""
    cols = ["row", "hi", "lo", "length"] + (["quality"] if stage.config.keep == "quality" else [])
    got = stage.groupby(rows.files, cols, partial(exact_records, shard_start=rows.shard_start, keep=stage.config.keep,
                                                  bits=partition_bits(len(rows))), ["part"], exact_group_keepers)
    keeper = np.arange(len(rows))
    if got is not None:
        keeper[got.column("who").to_numpy()] = got.column("keeper").to_numpy()
    return keeper


def exact_records(facts: pa.Table, shard: int, shard_start: np.ndarray, keep: str, bits: int) -> pa.Table:
    """Shard ``shard``'s dedup facts as (part, hi, lo, primary, who) records: ``who`` the global
    row number, ``primary`` the keep policy's key (:func:`_keep_primary`)."""
    quality = pc.fill_null(facts.column("quality"), -np.inf).to_numpy() if keep == "quality" else None
    hi = facts.column("hi").to_numpy()
    return pa.table({
        "part": partition_of(hi, bits), "hi": hi, "lo": facts.column("lo").to_numpy(),
        "primary": _keep_primary(keep, facts.column("length").to_numpy(), quality),
        "who": shard_start[shard] + facts.column("row").to_numpy(),
    })


def exact_group_keepers(group: pa.Table) -> pa.Table:
    """(who, keeper) of every row of these records whose exact hash a better-ranked row
    (lower primary, then lower global number) has too."""
    hi, lo = group.column("hi").to_numpy(), group.column("lo").to_numpy()
    who = group.column("who").to_numpy()
    order = np.lexsort((who, group.column("primary").to_numpy(), lo, hi))
    same = np.zeros(len(order), dtype=bool)
    same[1:] = (hi[order][1:] == hi[order][:-1]) & (lo[order][1:] == lo[order][:-1])
    head = np.maximum.accumulate(np.where(~same, np.arange(len(order)), 0))
    return pa.table({"who": who[order][same], "keeper": who[order][head][same]})


def _near_clusters(stage: Dedup, rows: _Rows, old: _OldIndex | None, rank: np.ndarray, alive: np.ndarray):
    """Near clusters of the ``alive`` rows. Returns per global row: its cluster's keeper, its
    similarity to the keeper, whether that is an estimate, the cluster size, and counters."""
    c = stage.near
    n_old = len(old) if old is not None else 0
    n = n_old + len(rows)
    has_shingles = np.concatenate([
        old.bands[:, 0] != 0 if n_old else np.zeros(0, bool),
        rows.shingles > 0,
    ])
    pairs = _candidate_pairs(stage, rows, old, alive & has_shingles)
    if n_old and len(pairs):
        pairs = pairs[pairs[:, 1] >= n_old]  # two old rows never need comparing
    counters = {"near_candidate_pairs": int(len(pairs))}
    similarity = _Similarity(stage, rows, old, np.unique(pairs))
    sims, _ = similarity.of(pairs)
    accepted = sims >= c.threshold
    edges = pairs[accepted]
    counters["near_accepted_pairs"] = int(accepted.sum())
    # clusters: connected components; the keeper is the best-ranked member
    label = lsh.components(n, edges)
    roots, inverse = np.unique(label, return_inverse=True)
    best = np.full(len(roots), np.iinfo(np.int64).max)
    np.minimum.at(best, inverse, rank)
    by_rank = np.empty(n, dtype=np.int64)
    by_rank[rank] = np.arange(n)
    keeper = by_rank[best[inverse]]
    sizes = np.bincount(inverse)
    counters["near_clusters"] = int((sizes > 1).sum())
    # similarity of each moved row to its keeper (both are in candidate pairs, so their sets are at hand)
    sim = np.full(n, np.nan)
    estimated = np.zeros(n, dtype=bool)
    moved = np.flatnonzero(keeper != np.arange(n))
    if moved.size:
        need = np.stack([np.minimum(moved, keeper[moved]), np.maximum(moved, keeper[moved])], axis=1)
        sim[moved], estimated[moved] = similarity.of(need)
    counters["near_similarity_estimated"] = int(estimated[n_old:].sum())
    return keeper, sim, estimated, sizes[inverse], counters


def _candidate_pairs(stage: Dedup, rows: _Rows, old: _OldIndex | None, eligible: np.ndarray) -> np.ndarray:
    """Pairs (a < b, global numbers) of ``eligible`` rows sharing a band key, band by band,
    with band keys held in memory or, past ``memory_mb``, partitioned by key to disk and joined
    one part at a time."""
    c, plan = stage.near, stage.plan
    n_old = len(old) if old is not None else 0
    need_bytes = int(eligible.sum()) * plan.bands * 24
    parts = max(1, int(np.ceil(need_bytes / (c.memory_mb * 2**20))))
    if stage.groupby is not None and not n_old:
        return _candidate_pairs_grouped(stage, rows, eligible, parts)
    pairs = []
    def shard_keys(k: int, path: Path | None):
        lo, hi = rows.shard_start[k], rows.shard_start[k + 1]
        ok = eligible[n_old + lo:n_old + hi]
        if path is None or not ok.any():
            return None
        keys = from_fixed_binary(read_parquet(path, ["bands"]).column("bands"), np.uint64)
        return keys[ok], n_old + lo + np.flatnonzero(ok)

    with _BandKeyParts(parts, plan.bands) as store:
        if parts == 1:  # all in memory anyway: read the shards and join the bands on a few threads
            new = [got for got in per_shard(shard_keys, rows.files) if got is not None]
            if n_old:
                store.add(*_old_keys_meeting(stage, old, eligible[:n_old], [keys for keys, _ in new]))
            for got in new:
                store.add(*got)
            pairs = per_shard(lambda b, item: lsh.bucket_pairs(*item, store.count), list(store.bands()))
        else:  # one shard, then one part, at a time
            if n_old:
                who = np.flatnonzero(eligible[:n_old])
                store.add(old.bands[who], who)
            for k, path in enumerate(rows.files):
                got = shard_keys(k, path)
                if got is not None:
                    store.add(*got)
            # buckets by the whole band's prefix length: the same pairs as in memory
            pairs = [lsh.bucket_pairs(keys, who, store.count) for keys, who in store.bands()]
    if not pairs:
        return np.zeros((0, 2), dtype=np.int64)
    return lsh.unique_pairs(np.concatenate(pairs))


def _candidate_pairs_grouped(stage: Dedup, rows: _Rows, eligible: np.ndarray, parts: int) -> np.ndarray:
    """:func:`_candidate_pairs` (no ``against``) on the executor's grouping engine: (band, part,
    key, row) records of the eligible rows grouped by band and a partition of the key (``parts``
    per band, rounded up to a power of two), each group's buckets paired on a worker by the
    same :func:`lsh.bucket_pairs` as in memory, so the candidate set is the same."""
    total = int(eligible.sum())
    if total < 2:
        return np.zeros((0, 2), dtype=np.int64)
    bits = int(np.ceil(np.log2(parts)))
    got = stage.groupby(rows.files, ["bands"], partial(dedup_band_records, shard_start=rows.shard_start,
                                                       eligible=eligible, bits=bits),
                        ["band", "part"], partial(lsh.band_group_pairs, totals=(total,) * stage.plan.bands))
    if got is None or not got.num_rows:
        return np.zeros((0, 2), dtype=np.int64)
    return lsh.unique_pairs(np.stack([got.column("a").to_numpy(), got.column("b").to_numpy()], axis=1))


def dedup_band_records(facts: pa.Table, shard: int, shard_start: np.ndarray, eligible: np.ndarray, bits: int) -> pa.Table:
    """The band-key records (:func:`lsh.band_records`) of shard ``shard``'s ``eligible`` rows."""
    keys = from_fixed_binary(facts.column("bands"), np.uint64)
    who = shard_start[shard] + np.arange(len(keys), dtype=np.int64)
    ok = eligible[who]
    return lsh.band_records(keys[ok], who[ok], bits)


def _old_keys_meeting(stage: Dedup, old: _OldIndex, eligible: np.ndarray, new_keys: list[np.ndarray]):
    """(band keys, row numbers) of the eligible old rows that share a key with a new row in some
    band: pairs of two old rows are never compared, so the others cannot give a pair that counts
    (a refresh adds a few rows to a big index: this keeps the join at the size of the new rows)."""
    if not new_keys or not eligible.any():
        return old.bands[:0], np.zeros(0, dtype=np.int64)
    new = np.concatenate(new_keys)
    meets = np.zeros(len(old), dtype=bool)
    # the whole index, band by band (contiguous columns, no copy), bands on a few threads
    for hit in per_shard(lambda b, _: lsh.matching_keys(old.bands[:, b], new[:, b])[0], range(stage.plan.bands)):
        meets[hit] = True
    who = np.flatnonzero(meets & eligible)
    return old.bands[who], who


class _BandKeyParts:
    """Band keys of many rows, grouped for the join: with ``n == 1`` a [rows x bands] matrix
    in memory; else (band, key, row) records appended to ``n`` files by the top bits of the
    key, so the join holds one part at a time, not the corpus."""

    _REC = np.dtype([("band", "<i4"), ("key", "<u8"), ("who", "<i8")])

    def __init__(self, n: int, bands: int) -> None:
        import tempfile

        self.n = n
        self.nbands = bands
        self.count = 0  # rows added: the length of each whole band
        self.mem: list[tuple[np.ndarray, np.ndarray]] = []
        self.dir = Path(tempfile.mkdtemp(prefix="corpusmill-bands-")) if n > 1 else None
        self.shift = np.uint64(64 - max(1, int(np.ceil(np.log2(n))))) if n > 1 else None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)

    def add(self, keys: np.ndarray, who: np.ndarray) -> None:
        if not len(who):
            return
        self.count += len(who)
        if self.dir is None:
            self.mem.append((keys, who.astype(np.int64)))
            return
        rec = np.empty(keys.size, dtype=self._REC)
        rec["band"] = np.tile(np.arange(self.nbands, dtype=np.int32), len(who))
        rec["key"] = keys.ravel()
        rec["who"] = np.repeat(who.astype(np.int64), self.nbands)
        part = (rec["key"] >> self.shift).astype(np.int64) % self.n
        order = np.argsort(part, kind="stable")
        rec, part = rec[order], part[order]
        bounds = np.flatnonzero(np.diff(part)) + 1
        for lo, hi in zip(np.r_[0, bounds], np.r_[bounds, len(part)]):
            with open(self.dir / f"part-{int(part[lo]):05d}.bin", "ab") as f:
                rec[lo:hi].tofile(f)

    def bands(self):
        """(keys, rows) of one band of one part at a time, rows ascending."""
        if self.dir is None:
            if not self.mem:
                return
            keys = np.concatenate([k for k, _ in self.mem])
            who = np.concatenate([w for _, w in self.mem])
            for b in range(self.nbands):
                yield keys[:, b], who
            return
        for p in range(self.n):
            f = self.dir / f"part-{p:05d}.bin"
            if not f.is_file():
                continue
            rec = np.fromfile(f, dtype=self._REC)
            rec = rec[np.lexsort((rec["who"], rec["band"]))]
            bounds = np.flatnonzero(np.diff(rec["band"])) + 1
            for lo, hi in zip(np.r_[0, bounds], np.r_[bounds, len(rec)]):
                yield rec["key"][lo:hi], rec["who"][lo:hi]


class _Similarity:
    """Jaccard similarity of pairs among a fixed set of global rows ``docs``: exact on the
    shingle sets when ``verify`` (re-computed once from the text of these rows only), else,
    or where an old row's text is gone, estimated from the signatures."""

    def __init__(self, stage: Dedup, rows: _Rows, old: _OldIndex | None, docs: np.ndarray) -> None:
        self.stage, self.rows, self.old, self.docs = stage, rows, old, docs
        self._sets = self._have = self._sig = None

    def of(self, pairs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n = len(pairs)
        if n == 0:
            return np.zeros(0), np.zeros(0, dtype=bool)
        local = np.searchsorted(self.docs, pairs)
        if self.stage.near.verify:
            if self._sets is None:
                self._sets, self._have = _shingle_sets(self.stage, self.rows, self.old, self.docs)
            sims = lsh.set_jaccard(self._sets, local)
            estimated = ~(self._have[local[:, 0]] & self._have[local[:, 1]])
        else:
            sims, estimated = np.zeros(n), np.ones(n, dtype=bool)
        if estimated.any():
            if self._sig is None:
                self._sig = _signatures(self.stage, self.rows, self.old, self.docs)
            e = np.flatnonzero(estimated)
            sims[e] = estimate_jaccard(self._sig[local[e, 0]], self._sig[local[e, 1]])
        return sims, estimated


def _shingle_sets(stage: Dedup, rows: _Rows, old: _OldIndex | None, docs: np.ndarray):
    """Unique shingle sets of the global rows ``docs`` (ascending), re-computed from their text
    one shard at a time (only the sets are kept); and whether the text was found (old rows
    whose version is gone have none)."""
    n_old = len(old) if old is not None else 0
    parts: list[tuple[np.ndarray, Shingles]] = []  # (positions in docs, their sets)
    have = np.ones(len(docs), dtype=bool)
    is_old = docs < n_old
    if is_old.any():
        _, found = old.texts(docs[is_old], stage.config.key)
        have[np.flatnonzero(is_old)] = [t is not None for t in found]
        texts = pa.array([t if t is not None else "" for t in found], pa.string())
        parts.append((np.flatnonzero(is_old), lsh.unique_sets(stage.shingling.shingles(texts))))
    new = docs[~is_old] - n_old
    new_pos = np.flatnonzero(~is_old)

    def sets_of_shard(k: int, path: Path | None):
        lo, hi = rows.shard_start[k], rows.shard_start[k + 1]
        a, b = np.searchsorted(new, [lo, hi])
        if a == b:
            return None
        if path is None:
            raise RuntimeError(f"dedup: the executor gave no rows file for shard {k}; verification needs the text")
        key = stage.config.key
        columns = [S.TEXT] if key == "text" else key_columns(pq.read_schema(path).names, key)
        texts = key_text(read_parquet(path, columns).take(pa.array(new[a:b] - lo)), stage.config.key)
        return new_pos[a:b], lsh.unique_sets(stage.shingling.shingles(texts))

    parts += [p for p in per_shard(sets_of_shard, rows.texts) if p is not None]
    # stitch the parts back into the order of docs
    pos = np.concatenate([p for p, _ in parts])
    counts = np.zeros(len(docs), dtype=np.int64)
    counts[pos] = np.concatenate([sh.counts for _, sh in parts])
    offsets = np.zeros(len(docs) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    values = np.empty(offsets[-1], dtype=np.uint64)
    for p, sh in parts:
        dest = np.repeat(offsets[p] - sh.offsets[:-1], sh.counts) + np.arange(len(sh.hashes))
        values[dest] = sh.hashes
    return Shingles(values, offsets), have


def _signatures(stage: Dedup, rows: _Rows, old: _OldIndex | None, docs: np.ndarray) -> np.ndarray:
    n_old = len(old) if old is not None else 0
    out = np.empty((len(docs), stage.near.num_perm), dtype=np.uint32)
    is_old = docs < n_old
    if is_old.any():
        out[is_old] = old.sig[docs[is_old]]
    new = docs[~is_old] - n_old
    new_pos = np.flatnonzero(~is_old)
    for k, path in enumerate(rows.files):
        lo, hi = rows.shard_start[k], rows.shard_start[k + 1]
        a, b = np.searchsorted(new, [lo, hi])
        if a == b:
            continue
        sig = _read_sig(path, stage.near.num_perm)
        out[new_pos[a:b]] = sig[new[a:b] - lo]
    return out


def _read_sig(path: Path, num_perm: int) -> np.ndarray:
    return from_fixed_binary(pq.read_table(path, columns=["sig"]).column("sig"), np.uint32)


# ----------------------------------------------------------------------------- outputs


def _write_decisions(stage: Dedup, decisions: Path, rows: _Rows, dec: _Decision, old: _OldIndex | None) -> None:
    """One table per shard of the rows that go: row, reason, cluster (kept row's id), similarity, detail."""
    n_old = dec.n_old
    gone = np.flatnonzero(dec.reason[n_old:] > 0)
    if not gone.size:
        write_decisions(decisions, {})
        return
    keeper = dec.keeper[n_old + gone]
    cluster_ids = _ids_of(keeper, rows, old)
    reasons = [_REASON[r] for r in dec.reason[n_old + gone].tolist()]
    sims = dec.similarity[n_old + gone]
    est = dec.estimated[n_old + gone]
    sizes = dec.cluster_size[n_old + gone]
    details = []
    what = KEYS[stage.config.key]
    by = "" if stage.config.key == "text" else f" by {what}"
    for r, s, e, size, k in zip(reasons, sims.tolist(), est.tolist(), sizes.tolist(), keeper.tolist()):
        where = "of the earlier version" if k < n_old else ""
        if r == "exact_duplicate" and s == 1.0:
            details.append(f"same {what} as duplicate_of after normalisation{' (' + where + ')' if where else ''}")
        else:
            how = "MinHash estimate" if e else "shingle sets"
            lead = (f"same {what} as a row that is a near duplicate{by} of duplicate_of" if r == "exact_duplicate"
                    else f"near duplicate{by} of duplicate_of")
            details.append(f"{lead}{' ' + where if where else ''}: Jaccard {s:.3f} ({how}); cluster of {size} rows")
    per_shard = {}
    shard = rows.shard[gone]
    for k in np.unique(shard):
        sel = np.flatnonzero(shard == k)
        per_shard[int(k)] = pa.table({
            "row": pa.array(rows.row[gone[sel]]),
            "reason": pa.array([reasons[i] for i in sel], pa.string()),
            "cluster": pa.array([cluster_ids[i] for i in sel], pa.string()),
            "similarity": pa.array(sims[sel].astype(np.float32)),
            "detail": pa.array([details[i] for i in sel], pa.string()),
        })
    write_decisions(decisions, per_shard)


def _ids_of(global_rows: np.ndarray, rows: _Rows, old: _OldIndex | None) -> list[str]:
    n_old = len(old) if old is not None else 0
    out: list[str] = [""] * len(global_rows)
    new = global_rows >= n_old
    if new.any():
        ids = rows.ids.take(pa.array(global_rows[new] - n_old)).to_pylist()
        for k, v in zip(np.flatnonzero(new), ids):
            out[k] = v
    if (~new).any():
        ids = old.ids.take(pa.array(global_rows[~new])).to_pylist()
        for k, v in zip(np.flatnonzero(~new), ids):
            out[k] = v
    return out


def _write_index(stage: Dedup, index: Path, facts, rows: _Rows, dec: _Decision, old: _OldIndex | None) -> dict:
    """index/<stage>/: meta.json and, per shard, the kept rows' id, exact hash and signature;
    the ``against`` version's parts are linked in, so the index covers both."""
    from corpusmill.store import link_index_parts

    index.mkdir(parents=True, exist_ok=True)
    n_old = dec.n_old
    kept = dec.reason[n_old:] == 0
    parts = link_index_parts(old.parts, index) if old is not None else []
    def write_part(k: int, path: Path | None) -> dict | None:
        if path is None:
            return None
        lo, hi = rows.shard_start[k], rows.shard_start[k + 1]
        sel = np.flatnonzero(kept[lo:hi])
        if not sel.size:
            return None
        cols = {"id": rows.ids.slice(lo, hi - lo).take(pa.array(sel))}
        if stage.exact:
            cols["hi"] = pa.array(rows.hi[lo:hi][sel])
            cols["lo"] = pa.array(rows.lo[lo:hi][sel])
        if stage.near:
            t = read_parquet(path, ["sig", "bands"])
            cols["sig"] = t.column("sig").combine_chunks().take(pa.array(sel))
            # band keys too (8 bytes x bands a row): a later run against this index needs no recomputing
            cols["bands"] = t.column("bands").combine_chunks().take(pa.array(sel))
        name = f"part-{k:05d}.parquet"
        # signatures are random bits: compressing them costs time and saves nothing
        pq.write_table(pa.table(cols), index / name, compression={c: "none" if c in ("sig", "bands") else "zstd" for c in cols})
        return {"file": name, "rows": int(sel.size), "origin": None}

    parts += [p for p in per_shard(write_part, list(facts)) if p is not None]
    meta = {**stage.index_meta(), "lsh": stage.plan.to_json() if stage.plan else None, "parts": parts,
            "rows": int(sum(p["rows"] for p in parts))}
    (index / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    return {"index_rows": meta["rows"]}
