"""How well a document matches a target domain: the four scoring methods of the ``select`` stage.

Two kinds of scorer:

* **pool scorers** (``ngram_importance``, ``classifier``) need a statistic of the whole pool
  before any row can be scored: the map phase turns each row into hashed n-gram features
  (:func:`hashed_ngrams`), the reduce phase fits on them (:meth:`PoolScorer.fit`) and scores.
* **row scorers** (``keywords``, ``embedding``) score each row from the target alone, in the map
  phase, in parallel.

Everything is vectorised over a batch (Arrow kernels, numpy); the only Python loops run over
distinct tokens of a batch, never over rows.
"""

from __future__ import annotations

import re
from contextlib import nullcontext
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import xxhash

# ----------------------------------------------------------------------------- hashed n-grams

_NON_WORD = r"[^\p{L}\p{N}]+"
_M1 = np.uint64(0x9E3779B97F4A7C15)
_M2 = np.uint64(0xBF58476D1CE4E5B9)
_M3 = np.uint64(0x94D049BB133111EB)


def _mix(h: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a stable bijective scramble of uint64 values."""
    with np.errstate(over="ignore"):
        h = (h ^ (h >> np.uint64(30))) * _M2
        h = (h ^ (h >> np.uint64(27))) * _M3
        return h ^ (h >> np.uint64(31))


@dataclass
class Features:
    """Hashed n-gram features of a batch in CSR form: row ``i`` holds the bucket ids
    ``buckets[offsets[i]:offsets[i+1]]`` (one entry per occurrence, so repeats are counts)."""

    offsets: np.ndarray  # int64, n_rows + 1
    buckets: np.ndarray  # uint32

    @property
    def n_rows(self) -> int:
        return len(self.offsets) - 1

    @property
    def row_of(self) -> np.ndarray:
        """The row index of every entry of ``buckets``."""
        return np.repeat(np.arange(self.n_rows, dtype=np.int64), np.diff(self.offsets))

    def to_arrow(self) -> pa.Array:
        return pa.ListArray.from_arrays(pa.array(self.offsets.astype(np.int32)), pa.array(self.buckets, pa.uint32()))

    @classmethod
    def from_arrow(cls, col: pa.ChunkedArray | pa.Array) -> "Features":
        arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
        if arr.offset:
            arr = pa.concat_arrays([arr])  # re-base a sliced list array so offsets start at 0
        offsets = arr.offsets.to_numpy().astype(np.int64)
        values = arr.values.to_numpy(zero_copy_only=False).astype(np.uint32)
        return cls(offsets - offsets[0], values[offsets[0]:offsets[-1]])

    @classmethod
    def concat(cls, parts: list["Features"]) -> "Features":
        if not parts:
            return cls(np.zeros(1, np.int64), np.zeros(0, np.uint32))
        offsets = [np.zeros(1, np.int64)]
        base = 0
        for p in parts:
            offsets.append(p.offsets[1:] + base)
            base += int(p.offsets[-1])
        return cls(np.concatenate(offsets), np.concatenate([p.buckets for p in parts]))

    def take(self, rows: np.ndarray) -> "Features":
        lengths = np.diff(self.offsets)[rows]
        starts = self.offsets[:-1][rows]
        offsets = np.zeros(len(rows) + 1, np.int64)
        np.cumsum(lengths, out=offsets[1:])
        idx = np.repeat(starts - offsets[:-1], lengths) + np.arange(offsets[-1])
        return Features(offsets, self.buckets[idx])


def tokens(texts: pa.Array | pa.ChunkedArray) -> tuple[pa.Array, np.ndarray]:
    """Lower-cased words (runs of letters and digits) of a batch: all words in order, and the
    row each word belongs to."""
    words = pc.utf8_split_whitespace(pc.replace_substring_regex(pc.utf8_lower(texts), _NON_WORD, " "))
    if isinstance(words, pa.ChunkedArray):
        words = words.combine_chunks()
    flat = pc.list_flatten(words)
    rows = pc.list_parent_indices(words)
    nonempty = pc.greater(pc.utf8_length(flat), 0)  # the split leaves "" at a text's edges
    return flat.filter(nonempty), rows.filter(nonempty).to_numpy().astype(np.int64)


def hashed_ngrams(texts: pa.Array | pa.ChunkedArray, buckets: int, bigrams: bool = True) -> Features:
    """Each text's unigrams (and bigrams) hashed into ``buckets`` buckets.

    Distinct tokens of the batch are hashed once with xxh3-64 (stable across platforms and
    processes); bigram hashes are mixed from their two token hashes in numpy.
    """
    n = len(texts)
    flat, row = tokens(texts)
    if len(flat) == 0:
        return Features(np.zeros(n + 1, np.int64), np.zeros(0, np.uint32))
    enc = pc.dictionary_encode(flat)
    vocab = enc.dictionary.to_pylist()
    vh = np.fromiter((xxhash.xxh3_64_intdigest(w.encode("utf-8")) for w in vocab), dtype=np.uint64, count=len(vocab))
    h = vh[enc.indices.to_numpy()]
    B = np.uint64(buckets)
    values = (h % B).astype(np.uint32)
    all_rows = row
    if bigrams and len(h) > 1:
        same_row = row[1:] == row[:-1]
        with np.errstate(over="ignore"):
            big = (_mix(h[:-1] * _M1 + h[1:]) % B).astype(np.uint32)[same_row]
        # CSR with each row's unigrams then its bigrams: a stable sort by row
        all_rows = np.concatenate([row, row[:-1][same_row]])
        order = np.argsort(all_rows, kind="stable")
        values = np.concatenate([values, big])[order]
    counts = np.bincount(all_rows, minlength=n)
    offsets = np.zeros(n + 1, np.int64)
    np.cumsum(counts, out=offsets[1:])
    return Features(offsets, values)


def row_sums(feats: Features, weights: np.ndarray) -> np.ndarray:
    """Sum of ``weights[bucket]`` over each row's features (float64, deterministic order)."""
    return np.bincount(feats.row_of, weights=weights[feats.buckets].astype(np.float64), minlength=feats.n_rows)


# ----------------------------------------------------------------------------- pool scorers


class PoolScorer:
    """A scorer fitted on the pool's features. ``fit`` gets a callable that yields the pool's
    features chunk by chunk (with each row's stable sample key), as many times as it needs."""

    def __init__(self, target_texts: list[str], buckets: int) -> None:
        self.buckets = buckets
        self.target = hashed_ngrams(pa.array(target_texts, pa.string()), buckets)

    def features(self, texts) -> Features:
        return hashed_ngrams(texts, self.buckets)

    def fit(self, pool: Callable[[], Iterator[tuple[Features, np.ndarray]]]) -> dict:
        raise NotImplementedError

    def score(self, feats: Features, keys: np.ndarray | None = None) -> np.ndarray:
        """Scores of ``feats``' rows; ``keys`` are their sample keys (rows the fit trained on)."""
        raise NotImplementedError


class NgramImportance(PoolScorer):
    """Importance weights over hashed n-grams, as in DSIR (Xie et al. 2023, "Data Selection for
    Language Models via Importance Resampling").

    Target and pool are each a bag-of-hashed-n-grams model: the pool's with add-one smoothing,
    the target's smoothed towards the pool's (see :meth:`fit`). A document's log importance weight is
    sum over its features f of log p_target(f) - log p_pool(f). With ``per_feature`` the sum is
    divided by the number of features (a mean), so length does not decide the rank by itself.
    """

    def __init__(self, target_texts: list[str], buckets: int, smoothing: float, per_feature: bool) -> None:
        super().__init__(target_texts, buckets)
        self.smoothing = smoothing
        self.per_feature = per_feature
        self.log_ratio: np.ndarray | None = None

    def fit(self, pool) -> dict:
        counts = np.zeros(self.buckets, np.int64)
        rows = 0
        for feats, _ in pool():
            counts += np.bincount(feats.buckets, minlength=self.buckets)
            rows += feats.n_rows
        p_pool = (counts + 1.0) / (counts.sum() + self.buckets)  # add-one: the pool is large
        # the target is small: smooth it towards the pool (a Dirichlet prior of weight
        # smoothing x its own size), so n-grams common everywhere weigh ~0 and unseen ones
        # weigh log(1 / (1 + smoothing)), whatever the pool size
        target_counts = np.bincount(self.target.buckets, minlength=self.buckets).astype(np.float64)
        n_t = max(target_counts.sum(), 1.0)
        p_target = (target_counts + self.smoothing * n_t * p_pool) / (n_t * (1.0 + self.smoothing))
        self.log_ratio = np.log(p_target) - np.log(p_pool)
        return {"pool_rows": rows, "pool_features": int(counts.sum()), "target_features": int(n_t)}

    def score(self, feats: Features, keys: np.ndarray | None = None) -> np.ndarray:
        s = row_sums(feats, self.log_ratio)
        if self.per_feature:
            s = s / np.maximum(np.diff(feats.offsets), 1)
        return s


def _tf_rows(feats: Features, buckets: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sparse log(1 + count) features, L2-normalised per row: (row, bucket, value) triples with
    unique (row, bucket) pairs, sorted."""
    key = feats.row_of * buckets + feats.buckets.astype(np.int64)
    uniq, counts = np.unique(key, return_counts=True)
    rows, cols = uniq // buckets, (uniq % buckets).astype(np.int64)
    vals = np.log1p(counts.astype(np.float64))
    norms = np.sqrt(np.bincount(rows, weights=vals * vals, minlength=feats.n_rows))
    vals = vals / np.maximum(norms[rows], 1e-12)
    return rows, cols, vals


class LinearClassifier(PoolScorer):
    """Logistic regression on hashed n-gram features, target examples (1) against a random
    sample of the pool (0): the quality-classifier recipe of DCLM and fastText filters, trained
    in numpy with full-batch Nesterov gradient descent from zero weights, so it is deterministic.

    The sampled pool rows may be in-domain themselves, and a model scores the rows it was trained
    on as negatives too low. So it is cross-fitted: the sample is cut in two folds by sample key,
    one model is trained per fold (all targets + that fold's negatives), a sampled row is scored
    by the other fold's model, every other row by the mean of the two. Classes are weighted to
    equal total weight; the score is P(in-domain) in [0, 1].
    """

    def __init__(self, target_texts: list[str], buckets: int, negatives: int, l2: float, steps: int) -> None:
        super().__init__(target_texts, buckets)
        self.negatives = negatives
        self.l2 = l2
        self.steps = steps
        self.models: list[tuple[np.ndarray, float]] = []
        self.cut = np.uint64(0)  # sample keys <= cut are the training negatives

    def fit(self, pool) -> dict:
        # the `negatives` rows with the smallest sample keys: a seeded random sample that does
        # not depend on how the pool is cut into shards
        keys = np.concatenate([k for _, k in pool()] or [np.zeros(0, np.uint64)])
        n_neg = min(self.negatives, len(keys))
        if n_neg == 0:
            raise ValueError("the classifier needs at least one pool row as a negative example")
        self.cut = np.partition(keys, n_neg - 1)[n_neg - 1]
        chosen, chosen_keys = [], []
        for feats, k in pool():
            sel = np.flatnonzero(k <= self.cut)
            if len(sel):
                chosen.append(feats.take(sel))
                chosen_keys.append(k[sel])
        neg_keys = np.concatenate(chosen_keys)
        order = np.argsort(neg_keys, kind="stable")  # training order by key: independent of the shard layout
        neg, neg_keys = Features.concat(chosen).take(order), neg_keys[order]
        self.models = []
        for fold in (0, 1):
            mine = np.flatnonzero(_fold(neg_keys) == fold)
            X = Features.concat([self.target, neg.take(mine)])
            y = np.concatenate([np.ones(self.target.n_rows), np.zeros(len(mine))])
            self.models.append(self._train(X, y))
        return {"train_positives": self.target.n_rows, "train_negatives": int(neg.n_rows)}

    def _train(self, X: Features, y: np.ndarray) -> tuple[np.ndarray, float]:
        rows, cols, vals = _tf_rows(X, self.buckets)
        n = len(y)
        pos = max(y.sum(), 1.0)
        neg = max(n - y.sum(), 1.0)
        sw = np.where(y == 1, 0.5 / pos, 0.5 / neg)  # each class carries half the loss
        w = np.zeros(self.buckets)
        b = 0.0
        vw, vb = np.zeros_like(w), 0.0
        lr, mom = 2.0, 0.9
        for _ in range(self.steps):
            lw, lb = w + mom * vw, b + mom * vb  # Nesterov look-ahead
            z = np.bincount(rows, weights=vals * lw[cols], minlength=n) + lb
            p = 1.0 / (1.0 + np.exp(-z))
            g = sw * (p - y)
            gw = np.bincount(cols, weights=vals * g[rows], minlength=self.buckets) + self.l2 * lw
            gb = g.sum()
            vw = mom * vw - lr * gw
            vb = mom * vb - lr * gb
            w, b = w + vw, b + vb
        return w, b

    def score(self, feats: Features, keys: np.ndarray | None = None) -> np.ndarray:
        rows, cols, vals = _tf_rows(feats, self.buckets)
        p = [1.0 / (1.0 + np.exp(-(np.bincount(rows, weights=vals * w[cols], minlength=feats.n_rows) + b)))
             for w, b in self.models]
        out = (p[0] + p[1]) / 2
        if keys is not None:
            sampled = keys <= self.cut
            fold = _fold(keys)
            out = np.where(sampled & (fold == 0), p[1], np.where(sampled & (fold == 1), p[0], out))
        return out


def _fold(keys: np.ndarray) -> np.ndarray:
    return ((keys >> np.uint64(7)) & np.uint64(1)).astype(np.int8)


# ----------------------------------------------------------------------------- row scorers


class KeywordScorer:
    """The baseline: the share of a document's words that are keywords (whole words or phrases,
    case-insensitive), in [0, 1]."""

    def __init__(self, keywords: Iterable[str]) -> None:
        # a phrase's inner punctuation and spaces become the same double space as the text's
        words = {re.sub(r"[\W_]+", "  ", k.lower()).strip() for k in keywords}
        alternatives = sorted((re.escape(w) for w in words if w), key=lambda k: (-len(k), k))
        self.pattern = r"(?:^|[^\p{L}\p{N}])(?:" + "|".join(alternatives) + r")(?:[^\p{L}\p{N}]|$)"

    def score(self, texts) -> np.ndarray:
        lower = pc.utf8_lower(texts)
        # matches consume one delimiter on each side; pad so that adjacent keywords both count
        padded = pc.replace_substring_regex(lower, _NON_WORD, "  ")
        hits = pc.count_substring_regex(pc.binary_join_element_wise(" ", padded, " ", ""), self.pattern)
        words = np.bincount(tokens(texts)[1], minlength=len(texts)).astype(np.float64)
        h = np.asarray(hits.to_numpy(zero_copy_only=False), dtype=np.float64)
        return h / np.maximum(words, 1.0)


class EmbeddingScorer:
    """Mean cosine similarity between a document's sentence embedding and the target examples'
    (= cosine to their mean vector, scaled), with the MiniLM encoder (:mod:`corpusmill.dataprep.minilm`)."""

    def __init__(self, target_texts: list[str], model: str | None, max_tokens: int, batch_rows: int, threads: int,
                 runtime: str = "onnxruntime", precision: str = "fp32") -> None:
        from corpusmill.dataprep.minilm import SentenceEncoder

        self.encoder = SentenceEncoder(model, max_tokens=max_tokens, runtime=runtime, precision=precision, threads=threads)
        self.batch_rows = batch_rows
        self.threads = threads
        self.target_texts = target_texts

    @cached_property
    def centroid(self) -> np.ndarray:
        """The target examples' mean vector (computed when first needed: hybrid's map never needs it)."""
        return self._encode(self.target_texts).mean(axis=0)

    def encode(self, texts) -> np.ndarray:
        """Embeddings of ``texts`` (an Arrow array or a list), float32, one row per text."""
        return self._encode(texts.to_pylist() if hasattr(texts, "to_pylist") else list(texts))

    def _encode(self, texts: list[str]) -> np.ndarray:
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=self.threads) if self.threads else nullcontext():
            return self.encoder.encode(texts, batch_rows=self.batch_rows)

    def score(self, texts) -> np.ndarray:
        values = texts.to_pylist() if hasattr(texts, "to_pylist") else list(texts)
        return (self._encode(values) @ self.centroid).astype(np.float64)


# ----------------------------------------------------------------------------- the hybrid scorer


def logistic_newton(X: np.ndarray, y: np.ndarray, l2: float, iters: int = 50) -> np.ndarray:
    """Class-balanced, L2-penalised logistic regression by Newton's method (float64, from zero
    weights, so deterministic): each class carries half the loss; the bias is not penalised.
    Returns the weights with the bias last."""
    n, d = X.shape
    Xb = np.hstack([X.astype(np.float64), np.ones((n, 1))])
    pos = max(float(y.sum()), 1.0)
    neg = max(n - float(y.sum()), 1.0)
    sw = np.where(y == 1, 0.5 / pos, 0.5 / neg)
    reg = np.full(d + 1, l2)
    reg[-1] = 1e-8  # keeps the Hessian positive definite when a class is empty
    w = np.zeros(d + 1)
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-(Xb @ w)))
        g = Xb.T @ (sw * (p - y)) + reg * w
        H = (Xb * (sw * p * (1.0 - p))[:, None]).T @ Xb
        H[np.diag_indices_from(H)] += reg
        step = np.linalg.solve(H, g)
        w -= step
        if float(np.abs(step).max()) < 1e-9:
            break
    return w


class EmbeddingClassifier:
    """Logistic regression on sentence embeddings, the target examples (1) against a seeded
    sample of the pool (0), cross-fitted exactly as :class:`LinearClassifier` (same sample keys,
    same two folds), fitted by Newton's method: P(in-domain) in [0, 1].

    Where the cosine to the target's mean vector (``embedding``) ranks by everything the examples
    share, their style and length included, the classifier learns which directions separate them
    from the pool: on the benchmark's pools it ranks the domain well above the centroid."""

    def __init__(self, target_vectors: np.ndarray, negatives: int, l2: float) -> None:
        self.target = np.asarray(target_vectors, np.float64)
        self.negatives = negatives
        self.l2 = l2
        self.models: list[np.ndarray] = []
        self.cut = np.uint64(0)

    def fit(self, pool: Callable[[], Iterator[tuple[np.ndarray, np.ndarray]]]) -> dict:
        keys = np.concatenate([k for _, k in pool()] or [np.zeros(0, np.uint64)])
        n_neg = min(self.negatives, len(keys))
        if n_neg == 0:
            raise ValueError("the classifier needs at least one pool row as a negative example")
        self.cut = np.partition(keys, n_neg - 1)[n_neg - 1]
        chosen, chosen_keys = [], []
        for vecs, k in pool():
            sel = np.flatnonzero(k <= self.cut)
            chosen.append(np.asarray(vecs[sel], np.float64))
            chosen_keys.append(k[sel])
        neg_keys = np.concatenate(chosen_keys)
        order = np.argsort(neg_keys, kind="stable")  # by key: independent of the shard layout
        neg, neg_keys = np.concatenate(chosen)[order], neg_keys[order]
        self.models = []
        for fold in (0, 1):
            mine = neg[_fold(neg_keys) == fold]
            X = np.vstack([self.target, mine])
            y = np.concatenate([np.ones(len(self.target)), np.zeros(len(mine))])
            self.models.append(logistic_newton(X, y, self.l2))
        return {"train_positives": len(self.target), "train_negatives": int(len(neg))}

    def score(self, vecs: np.ndarray, keys: np.ndarray | None = None) -> np.ndarray:
        X = np.asarray(vecs, np.float64)
        # a row-wise sum, not X @ w: BLAS may round a row differently with the chunk's size, and a
        # row's score must not depend on which rows share its shard
        p = [1.0 / (1.0 + np.exp(-((X * w[:-1]).sum(axis=1) + w[-1]))) for w in self.models]
        out = (p[0] + p[1]) / 2
        if keys is not None:
            sampled = keys <= self.cut
            fold = _fold(keys)
            out = np.where(sampled & (fold == 0), p[1], np.where(sampled & (fold == 1), p[0], out))
        return out


class HybridScorer:
    """The mean of two cross-fitted classifiers' P(in-domain): :class:`LinearClassifier` on hashed
    n-grams (which words and phrases the domain uses) and :class:`EmbeddingClassifier` on
    sentence embeddings (what the text is about, in other words too). Both train on the same
    pool sample and folds. The pool yields ``(features, keys, vectors)`` per chunk; the map phase
    computes the vectors with :meth:`vectors`."""

    def __init__(self, ngrams: LinearClassifier, encoder: "EmbeddingScorer", embedding_l2: float) -> None:
        self.ngrams = ngrams
        self.encoder = encoder
        self.embedding_l2 = embedding_l2
        self.embeddings: EmbeddingClassifier | None = None

    def vectors(self, texts) -> np.ndarray:
        return self.encoder.encode(texts)

    def fit(self, pool: Callable[[], Iterator[tuple[Features, np.ndarray, np.ndarray]]]) -> dict:
        self.embeddings = EmbeddingClassifier(self.encoder.encode(self.encoder.target_texts), self.ngrams.negatives,
                                              self.embedding_l2)
        stats = self.ngrams.fit(lambda: ((f, k) for f, k, _ in pool()))
        stats_e = self.embeddings.fit(lambda: ((v, k) for _, k, v in pool()))
        return {**stats, "embedding_train_negatives": stats_e["train_negatives"]}

    def score(self, feats: Features, keys: np.ndarray, vecs: np.ndarray) -> np.ndarray:
        return (self.ngrams.score(feats, keys) + self.embeddings.score(vecs, keys)) / 2
