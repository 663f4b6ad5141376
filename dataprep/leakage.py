"""Train/test leakage: which evaluation rows also sit in the training data, and why.

A :class:`LeakIndex` is built over the (small) evaluation side: test rows, a validation split or
public benchmark files. Training rows are then streamed through :meth:`LeakIndex.match` in
batches, so the training side can be far larger than memory. Checks, each with evidence:

* ``exact``: the same normalised text (dedup's default normal form: case and whitespace ignored);
* ``near``: MinHash candidates verified by true Jaccard >= threshold on word shingles;
* ``ngram``: a shared word n-gram (default 13: the GPT-3 / lm-evaluation-harness definition),
  with the longest shared token span as evidence.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from corpusmill import schema as S
from corpusmill.dataprep.dedup import exact_hashes
from corpusmill.dataprep.minhash import Shingles
from corpusmill.dataprep.ngrams import HashSet, ngram_hashes, shared_span

EVIDENCE_CHARS = 300


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
    _exact: dict = field(default_factory=dict, repr=False)
    _ngrams: HashSet | None = field(default=None, repr=False)

    _near: "NearIndex | None" = field(default=None, repr=False)

    @staticmethod
    def available_checks() -> tuple[str, ...]:
        return ("exact", "near", "ngram")

    @classmethod
    def build(cls, table: pa.Table, **kw) -> "LeakIndex":
        labels = table.column(S.LABEL).to_pylist() if S.LABEL in table.column_names else [None] * table.num_rows
        idx = cls(table.column(S.ID).to_pylist(), table.column(S.TEXT).to_pylist(), labels, **kw)
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

    def __len__(self) -> int:
        return len(self.ids)

    def match(self, batch: pa.Table) -> list[Hit]:
        """Every (evaluation row, training row) pair of ``batch`` that leaks, one Hit per check."""
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
                    hits.append(Hit("exact", e, ids[r], text_list[r], labels[r], similarity=1.0))
        if self._near is not None:
            text_list = text_list or texts.to_pylist()
            for e, r, j in self._near.match(texts):
                hits.append(Hit("near", e, ids[r], text_list[r], labels[r], similarity=j))
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
                                    ngram=shared_span(self.texts[e], text_list[r], self.ngram)))
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
        already = sum(1 for h in self.hits[hit.check] if h["_row"] == hit.eval_row)
        rows.add(hit.eval_row)
        evidence = {
            "_row": hit.eval_row, "test_split": self.eval_name, "train_split": self.train_name,
            "test_id": index.ids[hit.eval_row], "train_id": hit.train_id,
            "test_text": truncate(index.texts[hit.eval_row]), "train_text": truncate(hit.train_text),
        }
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
    report = PairReport(eval_name, train_name, len(index))
    for batch in train_batches:
        report.train_rows += batch.num_rows
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
    for rows in groups.values():
        labelled = [r for r in rows if labels[r] is not None]
        if len({labels[r] for r in labelled}) > 1:
            first = labelled[0]
            for r in labelled[1:]:
                if labels[r] != labels[first]:
                    out.append({"scope": "within", "split_a": name, "split_b": name, "id_a": ids[first], "id_b": ids[r],
                                "label_a": labels[first], "label_b": labels[r], "match": "exact", "similarity": 1.0,
                                "text_a": truncate(texts[first]), "text_b": truncate(texts[r])})
    return out
