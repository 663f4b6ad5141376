"""Train/test leakage: which evaluation rows also sit in the training data, and why.

A :class:`LeakIndex` is built over the (small) evaluation side: test rows, a validation split or
public benchmark files. Training rows are then streamed through :meth:`LeakIndex.match` in
batches, so the training side can be far larger than memory. Checks, each with evidence:

* ``exact``: the same normalised text (dedup's default normal form: case and whitespace ignored);
* ``near``: MinHash candidates verified by true Jaccard >= threshold on word shingles;
* ``ngram``: a shared word n-gram (default 13: the GPT-3 / lm-evaluation-harness definition),
  with the longest shared token span as evidence.

Instruction and chat rows are matched field by field (:func:`field_strings`): each selected string
(a prompt, a response, one message's content) is one entry, carrying its row's id, so an exact
check can find a benchmark question repeated as a prompt, and evidence says in which field. An
index built from entries (a ``row`` column: several strings per row, such as a benchmark's
question and answer) counts leaking *rows*, not strings.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from corpusmill import schema as S
from corpusmill.dataprep.dedup import exact_hashes
from corpusmill.dataprep.minhash import Shingles
from corpusmill.dataprep.ngrams import HashSet, ngram_hashes, shared_span

EVIDENCE_CHARS = 300
#: schema metadata key of a :func:`field_strings` table: how many rows its strings came from
ROWS_META = b"corpusmill.rows"


def truncate(text: str | None, n: int = EVIDENCE_CHARS) -> str | None:
    if text is None:
        return None
    return text if len(text) <= n else text[: n - 1] + "…"


@dataclass
class Hit:
    check: str  # exact | near | ngram
    eval_row: int
    train_id: str
    train_text: str
    train_label: str | None
    similarity: float | None = None
    ngram: str | None = None
    shared_ngrams: int | None = None
    train_pos: int = -1  # the matched string's position in the batch given to match()
    train_field: str | None = None  # where in the training row, for batches from field_strings()


@dataclass
class LeakIndex:
    """The evaluation side, indexed for the checks asked for."""

    ids: list[str]
    texts: list[str]
    labels: list[str | None]
    ngram: int = 13
    checks: tuple[str, ...] = ("exact", "ngram")
    threshold: float = 0.8
    max_hits_per_row: int = 5  # evidence kept per evaluation row and check; counts are exact
    #: field of each entry (``prompt``, ``canonical_solution``...), for an index built from entries
    fields: list[str | None] | None = None
    #: row of each entry when a row gave several entries (a benchmark's question and answer); None: one each
    rows: np.ndarray | None = None
    _exact: dict = field(default_factory=dict, repr=False)
    _ngrams: HashSet | None = field(default=None, repr=False)

    _near: "NearIndex | None" = field(default=None, repr=False)

    @staticmethod
    def available_checks() -> tuple[str, ...]:
        return ("exact", "near", "ngram")

    @classmethod
    def build(cls, table: pa.Table, **kw) -> "LeakIndex":
        """Index ``table`` (id, text, optional label; optional ``field`` and ``row`` as
        :func:`field_strings` writes them)."""
        labels = table.column(S.LABEL).to_pylist() if S.LABEL in table.column_names else [None] * table.num_rows
        idx = cls(table.column(S.ID).to_pylist(), table.column(S.TEXT).to_pylist(), labels, **kw)
        if "field" in table.column_names:
            idx.fields = field_labels(table)
        if "row" in table.column_names:
            idx.rows = table.column("row").to_numpy().astype(np.int64)
            idx.n_rows = table_rows(table)
        texts = table.column(S.TEXT)
        if "exact" in idx.checks and table.num_rows:
            hi, lo = exact_hashes(texts)
            for row, key in enumerate(zip(hi.tolist(), lo.tolist())):
                idx._exact.setdefault(key, []).append(row)
        if "ngram" in idx.checks:
            ng = ngram_hashes(texts, idx.ngram)
            idx._ngrams = HashSet(ng.hashes, ng.doc)
        if "near" in idx.checks and table.num_rows:
            idx._near = NearIndex(texts, idx.threshold)
        return idx

    n_rows: int = -1  # rows the entries came from; -1: one entry per row

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def row_count(self) -> int:
        """How many evaluation rows the index holds (entries of one row count once)."""
        return self.n_rows if self.n_rows >= 0 else len(self.ids)

    def row_of(self, entry: int) -> int:
        return int(self.rows[entry]) if self.rows is not None else entry

    def match(self, batch: pa.Table) -> list[Hit]:
        """Every (evaluation entry, training string) pair of ``batch`` that leaks, one Hit per check.
        ``batch``: rows (id, text, optional label) or the strings of :func:`field_strings`."""
        hits = self._match(batch)
        if hits and "field" in batch.column_names:
            labels = field_labels(batch.take(pa.array(sorted({h.train_pos for h in hits}), pa.int64())))
            where = dict(zip(sorted({h.train_pos for h in hits}), labels))
            for h in hits:
                h.train_field = where[h.train_pos]
        return hits

    def _match(self, batch: pa.Table) -> list[Hit]:
        hits: list[Hit] = []
        if batch.num_rows == 0 or not len(self):
            return hits
        texts = batch.column(S.TEXT)
        ids = batch.column(S.ID).to_pylist()
        labels = batch.column(S.LABEL).to_pylist() if S.LABEL in batch.column_names else [None] * batch.num_rows
        text_list = None
        if "exact" in self.checks and self._exact:
            hi, lo = exact_hashes(texts)
            text_list = texts.to_pylist()
            for r, key in enumerate(zip(hi.tolist(), lo.tolist())):
                for e in self._exact.get(key, ()):
                    hits.append(Hit("exact", e, ids[r], text_list[r], labels[r], similarity=1.0, train_pos=r))
        if self._near is not None:
            text_list = text_list or texts.to_pylist()
            for e, r, j in self._near.match(texts):
                hits.append(Hit("near", e, ids[r], text_list[r], labels[r], similarity=j, train_pos=r))
        if "ngram" in self.checks and self._ngrams is not None and len(self._ngrams):
            ng = ngram_hashes(texts, self.ngram)
            found, lo = self._ngrams.find(ng.hashes)
            if found.size:
                text_list = text_list or texts.to_pylist()
                # every (evaluation row, training row) pair sharing an n-gram, with its count
                hi = np.searchsorted(self._ngrams.hashes, ng.hashes[found], side="right")
                counts = hi - lo
                within = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
                eval_rows = self._ngrams.values[np.repeat(lo, counts) + within]
                train_rows = np.repeat(ng.doc[found], counts)
                key = eval_rows.astype(np.int64) * (batch.num_rows + 1) + train_rows
                uniq, shared = np.unique(key, return_counts=True)
                for k, count in zip(uniq.tolist(), shared.tolist()):
                    e, r = divmod(k, batch.num_rows + 1)
                    hits.append(Hit("ngram", e, ids[r], text_list[r], labels[r], shared_ngrams=count,
                                    ngram=shared_span(self.texts[e], text_list[r], self.ngram), train_pos=r))
        return hits


class NearIndex:
    """Near duplicates of the evaluation rows: MinHash LSH candidates (dedup's word 3-gram
    shingles, 128 slots, bands and rows chosen for the threshold as dedup does), each verified by
    the true Jaccard similarity of the two shingle sets."""

    def __init__(self, texts, threshold: float, num_perm: int = 128, seed: int = 0) -> None:
        from corpusmill.dataprep import lsh
        from corpusmill.dataprep.minhash import MinHasher, Shingling

        self.lsh = lsh
        self.threshold = threshold
        self.shingling = Shingling("word", 3)
        self.hasher = MinHasher(num_perm, seed)
        self.plan = lsh.BandPlan.choose(threshold, num_perm, 0.05, 0.95)
        self.seed = seed
        sh = self.shingling.shingles(texts)
        self.sets = lsh.unique_sets(sh)
        keys, rows = self._keys(sh)
        self.buckets = HashSet(keys, rows)

    def _keys(self, sh) -> tuple[np.ndarray, np.ndarray]:
        keys = self.lsh.band_keys(self.hasher.signatures(sh), self.plan, self.seed)
        rows = np.repeat(np.arange(len(keys), dtype=np.int64), keys.shape[1])
        flat = keys.reshape(-1)
        keep = flat != 0
        return flat[keep], rows[keep]

    def match(self, texts) -> list[tuple[int, int, float]]:
        """[(evaluation row, batch row, Jaccard)] for pairs at or above the threshold."""
        if not len(self.buckets):
            return []
        sh = self.shingling.shingles(texts)
        keys, rows = self._keys(sh)
        found, lo = self.buckets.find(keys)
        if not found.size:
            return []
        hi = np.searchsorted(self.buckets.hashes, keys[found], side="right")
        counts = hi - lo
        within = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
        pairs = np.unique(np.stack([self.buckets.values[np.repeat(lo, counts) + within],
                                    np.repeat(rows[found], counts)], axis=1), axis=0)
        # verify on exact shingle sets: evaluation sets first, then the batch's candidate rows
        batch_rows, local = np.unique(pairs[:, 1], return_inverse=True)
        batch_sets = self.lsh.unique_sets(sh.take(batch_rows))
        n_eval = len(self.sets)
        both = Shingles(np.concatenate([self.sets.hashes, batch_sets.hashes]),
                                 np.concatenate([self.sets.offsets, self.sets.offsets[-1] + batch_sets.offsets[1:]]))
        jac = self.lsh.set_jaccard(both, np.stack([pairs[:, 0], n_eval + local.reshape(-1)], axis=1))
        ok = jac >= self.threshold
        return [(int(e), int(r), float(j)) for (e, r), j in zip(pairs[ok], jac[ok])]


@dataclass
class PairReport:
    """Leaks of one evaluation side into one training side."""

    eval_name: str
    train_name: str
    eval_rows: int
    train_rows: int = 0
    hits: dict[str, list[dict]] = field(default_factory=lambda: {"exact": [], "near": [], "ngram": []})
    leaking_rows: dict[str, set[int]] = field(default_factory=lambda: {"exact": set(), "near": set(), "ngram": set()})
    leaking_train_ids: dict[str, set[str]] = field(default_factory=lambda: {"exact": set(), "near": set(), "ngram": set()})
    label_conflicts: list[dict] = field(default_factory=list)
    _conflict_pairs: set = field(default_factory=set, repr=False)

    def add(self, index: LeakIndex, hit: Hit) -> None:
        self.leaking_train_ids[hit.check].add(hit.train_id)
        rows = self.leaking_rows[hit.check]
        row = index.row_of(hit.eval_row)
        already = sum(1 for h in self.hits[hit.check] if h["_row"] == row)
        rows.add(row)
        evidence = {
            "_row": row, "test_split": self.eval_name, "train_split": self.train_name,
            "test_id": index.ids[hit.eval_row], "train_id": hit.train_id,
            "test_text": truncate(index.texts[hit.eval_row]), "train_text": truncate(hit.train_text),
        }
        if index.fields is not None:
            evidence["test_field"] = index.fields[hit.eval_row]
        if hit.train_field is not None:
            evidence["train_field"] = hit.train_field
        if hit.check == "ngram":
            evidence.update(ngram=hit.ngram, shared_ngrams=hit.shared_ngrams,
                            why=f"shares the {index.ngram}-gram span '{truncate(hit.ngram, 120)}' "
                                f"({hit.shared_ngrams} shared {index.ngram}-grams)")
        elif hit.check == "near":
            evidence.update(similarity=round(hit.similarity, 4),
                            why=f"Jaccard {hit.similarity:.2f} >= {index.threshold} on word shingles")
        else:
            evidence.update(similarity=1.0, why="same text after normalisation (case and whitespace ignored)")
        if already < index.max_hits_per_row:
            self.hits[hit.check].append(evidence)
        a, b = index.labels[hit.eval_row], hit.train_label
        pair = (hit.eval_row, hit.train_id)
        if (hit.check in ("exact", "near") and a is not None and b is not None and a != b
                and pair not in self._conflict_pairs):
            self._conflict_pairs.add(pair)
            self.label_conflicts.append({
                "scope": "across", "split_a": self.eval_name, "split_b": self.train_name,
                "id_a": index.ids[hit.eval_row], "id_b": hit.train_id, "label_a": a, "label_b": b,
                "match": hit.check, "similarity": evidence["similarity"],
                "text_a": truncate(index.texts[hit.eval_row]), "text_b": truncate(hit.train_text),
            })

    def summary(self) -> dict:
        any_rows = set().union(*self.leaking_rows.values())
        return {
            "test_split": self.eval_name, "train_split": self.train_name,
            "test_rows": self.eval_rows, "train_rows": self.train_rows,
            **{check: len(rows) for check, rows in self.leaking_rows.items()},
            "any": len(any_rows),
            "contamination_rate": round(len(any_rows) / self.eval_rows, 6) if self.eval_rows else 0.0,
            "label_conflicts": len(self.label_conflicts),
        }


def audit_pair(index: LeakIndex, eval_name: str, train_name: str, train_batches: Iterator[pa.Table]) -> PairReport:
    report = PairReport(eval_name, train_name, index.row_count)
    for batch in train_batches:
        report.train_rows += table_rows(batch)
        for hit in index.match(batch):
            report.add(index, hit)
    return report


def label_conflicts_within(name: str, table: pa.Table) -> list[dict]:
    """Rows of one split whose normalised texts are equal but whose labels differ."""
    if S.LABEL not in table.column_names or table.num_rows == 0:
        return []
    hi, lo = exact_hashes(table.column(S.TEXT))
    groups: dict = {}
    for row, key in enumerate(zip(hi.tolist(), lo.tolist())):
        groups.setdefault(key, []).append(row)
    ids, texts, labels = (table.column(c).to_pylist() for c in (S.ID, S.TEXT, S.LABEL))
    out = []
    seen = set()  # a pair of rows once, though several of their fields may be equal
    for rows in groups.values():
        labelled = [r for r in rows if labels[r] is not None]
        if len({labels[r] for r in labelled}) > 1:
            first = labelled[0]
            for r in labelled[1:]:
                if labels[r] != labels[first] and (ids[first], ids[r]) not in seen:
                    seen.add((ids[first], ids[r]))
                    out.append({"scope": "within", "split_a": name, "split_b": name, "id_a": ids[first], "id_b": ids[r],
                                "label_a": labels[first], "label_b": labels[r], "match": "exact", "similarity": 1.0,
                                "text_a": truncate(texts[first]), "text_b": truncate(texts[r])})
    return out


def table_rows(table: pa.Table) -> int:
    """Rows ``table`` stands for: its row count, or for the strings of :func:`field_strings` the
    number of rows they came from."""
    meta = table.schema.metadata or {}
    return int(meta[ROWS_META]) if ROWS_META in meta else table.num_rows


def field_strings(batch: pa.Table, fields, selection=None) -> pa.Table:
    """The strings of ``fields`` (:mod:`corpusmill.sft` references) of every row of ``batch``, one
    per row of the result: ``id`` and ``label`` (the row's), ``text`` (the string), ``field``
    (``text``, ``prompt``, ``response``, ``system`` or ``messages``), ``turn`` and ``role`` (the
    message's position in its conversation and its role; null outside messages) and ``row`` (the
    row's position in ``batch``). The row count rides in the schema metadata (:func:`table_rows`).
    ``selection``: the :class:`corpusmill.sft.FieldSelection` of ``fields`` over ``batch``, when the
    caller holds one already (to write rewritten strings back through it)."""
    from corpusmill.sft import FieldSelection

    sel = selection if selection is not None else FieldSelection(batch, fields)
    n = len(sel.strings)
    turn = np.full(n, -1, dtype=np.int32)
    role = pa.nulls(n, pa.string())
    at = 0
    for seg in sel.segments:
        k = len(seg.rows)
        if seg.ref == S.MESSAGES and k:
            messages = batch.column(S.MESSAGES)
            messages = messages.combine_chunks() if isinstance(messages, pa.ChunkedArray) else messages
            lengths = pc.fill_null(pc.list_value_length(messages), 0).to_numpy(zero_copy_only=False).astype(np.int64)
            starts = np.concatenate([[0], np.cumsum(lengths)])[:-1]
            pos = np.flatnonzero(seg.mask)
            turn[at:at + k] = pos - starts[seg.rows]
            seg_role = messages.flatten().field("role").take(pa.array(pos, pa.int64()))
            role = pa.concat_arrays([role.slice(0, at), seg_role.cast(pa.string()), role.slice(at + k)])
        at += k
    rows = pa.array(sel.rows.astype(np.int64), pa.int64())
    columns = {S.ID: batch.column(S.ID).take(rows), S.TEXT: sel.strings}
    if S.LABEL in batch.column_names:
        columns[S.LABEL] = batch.column(S.LABEL).take(rows)
    columns.update(field=pa.array(sel.ref_of().astype(str) if n else [], pa.string()), turn=pa.array(turn),
                   role=role, row=rows)
    return pa.table(columns).replace_schema_metadata({ROWS_META: str(batch.num_rows).encode()})


def field_labels(table: pa.Table) -> list[str]:
    """Readable names of where each string of a :func:`field_strings` table sits: ``prompt``,
    ``response``, ``messages[2] (assistant)``."""
    fields = table.column("field").to_pylist()
    if "turn" not in table.column_names:
        return fields
    turns, roles = table.column("turn").to_pylist(), table.column("role").to_pylist()
    return [f if t is None or t < 0 else f"{f}[{t}] ({r})" for f, t, r in zip(fields, turns, roles)]


def response_strings(table: pa.Table) -> np.ndarray:
    """Per string of a :func:`field_strings` table: True inside a response or an assistant turn."""
    is_response = pc.equal(table.column("field"), S.RESPONSE)
    is_assistant = pc.fill_null(pc.equal(table.column("role"), "assistant"), False)
    return pc.or_(is_response, is_assistant).to_numpy(zero_copy_only=False)
