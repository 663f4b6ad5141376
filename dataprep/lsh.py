"""Locality-sensitive hashing over MinHash signatures: the band plan and its S-curve, band
keys, candidate pairs, and clusters.

Two documents whose signatures agree in all ``rows`` slots of at least one of ``bands`` bands
become a *candidate pair*. With Jaccard similarity ``s`` that happens with probability

    P(s) = 1 - (1 - s**rows)**bands

(the S-curve). The plan chooses ``bands x rows <= num_perm`` to minimise
``fp_weight * (area under P below the threshold) + fn_weight * (area above P over it)``,
as datasketch's ``MinHashLSH`` does, and prints the curve so the user sees what they get.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from corpusmill.dataprep.minhash import EMPTY, U64, Shingles, fmix64, splitmix64

S_CURVE_POINTS = (0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 1.0)


def _integral(f, a: float, b: float, steps: int = 200):
    """Trapezoid integral of ``f`` over [a, b]; ``f`` may give one row of values per curve
    (then one integral per row)."""
    x = np.linspace(a, b, steps + 1)
    y = f(x)
    if b <= a:
        return np.zeros(y.shape[:-1]) if y.ndim > 1 else 0.0
    out = ((y[..., 1:] + y[..., :-1]) * 0.5 * (x[1:] - x[:-1])).sum(axis=-1)
    return out if out.ndim else float(out)


@dataclass(frozen=True)
class BandPlan:
    """``bands`` bands of ``rows`` slots each, for candidates around ``threshold``."""

    threshold: float
    num_perm: int
    bands: int
    rows: int
    chosen: str  # "optimised" or "given"

    @classmethod
    def choose(cls, threshold: float, num_perm: int, fp_weight: float, fn_weight: float,
               bands: int | None = None, rows: int | None = None) -> "BandPlan":
        """The given ``bands``/``rows`` (one given: the other fills ``num_perm``), or the pair
        minimising the weighted false positive and false negative areas (ties: fewer bands)."""
        if bands and rows:
            return cls(threshold, num_perm, bands, rows, "given")
        if bands:
            return cls(threshold, num_perm, bands, max(num_perm // bands, 1), "given")
        if rows:
            return cls(threshold, num_perm, max(num_perm // rows, 1), rows, "given")
        total = fp_weight + fn_weight
        wfp, wfn = fp_weight / total, fn_weight / total
        # every (bands, rows) pair at once, one row of the curve per pair, in the order of the
        # loops it replaces (bands, then rows): ~10 ms instead of ~0.2 s of Python per process
        pairs = np.array([(b, r) for b in range(1, num_perm + 1) for r in range(1, num_perm // b + 1)], dtype=np.float64)
        b, r = pairs[:, :1], pairs[:, 1:]

        def p(s):
            return 1.0 - (1.0 - s ** r) ** b

        fp = _integral(p, 0.0, threshold)
        fn = _integral(lambda s: 1.0 - p(s), threshold, 1.0)
        best = None
        for k, err in enumerate((wfp * fp + wfn * fn).tolist()):
            if best is None or err < best[0] - 1e-12:
                best = (err, k)
        return cls(threshold, num_perm, int(pairs[best[1], 0]), int(pairs[best[1], 1]), "optimised")

    def p_candidate(self, s: float) -> float:
        """Probability that a pair of Jaccard similarity ``s`` becomes a candidate."""
        return 1.0 - (1.0 - s ** self.rows) ** self.bands

    def s_curve(self, points=S_CURVE_POINTS) -> dict[str, float]:
        return {f"{s:.2f}": round(self.p_candidate(s), 4) for s in points}

    @property
    def miss_rate(self) -> float:
        """Expected share of pairs exactly at the threshold that never become candidates."""
        return 1.0 - self.p_candidate(self.threshold)

    def describe(self) -> str:
        curve = "  ".join(f"{s}: {p:.3f}" for s, p in self.s_curve().items())
        return (f"LSH {self.bands} bands x {self.rows} rows ({self.chosen}; {self.bands * self.rows} of "
                f"{self.num_perm} slots) for threshold {self.threshold:g}\n"
                f"  P(candidate | Jaccard) {curve}\n"
                f"  expected miss rate at Jaccard {self.threshold:g}: {self.miss_rate:.1%}")

    def to_json(self) -> dict:
        return {"threshold": self.threshold, "num_perm": self.num_perm, "bands": self.bands, "rows": self.rows,
                "chosen": self.chosen, "s_curve": self.s_curve(), "miss_rate_at_threshold": round(self.miss_rate, 4)}


def band_keys(sig: np.ndarray, plan: BandPlan, seed: int) -> np.ndarray:
    """[documents x bands] uint64 keys: a stable hash of each band's slot values (and its
    number, so equal values in different bands never meet). Documents without shingles get
    key 0 in every band; callers leave them out."""
    n = len(sig)
    keys = np.empty((n, plan.bands), dtype=U64)
    salt = splitmix64(seed, plan.bands, stream=4)
    for b in range(plan.bands):
        acc = np.full(n, salt[b], dtype=U64)
        for v in sig[:, b * plan.rows:(b + 1) * plan.rows].T:
            acc = fmix64((acc ^ v.astype(U64)) * U64(0x9E3779B97F4A7C15))
        keys[:, b] = acc
    keys[sig[:, 0] == EMPTY] = 0
    return keys


#: buckets of at most this many documents give every pair; larger ones a star and a chain
ALL_PAIRS_MAX = 16


def bucket_pairs(keys: np.ndarray, members: np.ndarray, total: int = 0) -> np.ndarray:
    """Candidate pairs [(a, b), a < b] of ``members`` (global document numbers, ascending)
    sharing a key in one band (``keys`` aligned with ``members``).

    A bucket of m <= 16 documents gives all m(m-1)/2 pairs; a larger one (many copies of one
    text) links each member to the first and to the next, which keeps the clusters while
    the pair count stays linear. Keys are compared on their top 64 - log2(len) bits: a
    spurious bucket-mate (~n**2 / 2**(64 - log2 n) per band) only costs a verification.
    Keys are mixed first, so keys that differ only in their low bits stay apart.

    ``total`` > len(keys): the keys are one part of a band of ``total`` keys, cut by the top bits
    of the mixed key (:func:`band_records`); the prefix length is the whole band's, so the parts
    give exactly the pairs of the whole band.
    """
    n = len(keys)
    if n < 2:
        return np.zeros((0, 2), dtype=np.int64)
    bits = int(max(n, total) - 1).bit_length()
    low = np.uint64((1 << bits) - 1)
    # one sort of key prefix | position: groups equal keys, positions ascending inside a group
    packed = np.sort((fmix64(keys.astype(U64, copy=True)) & ~low) | np.arange(n, dtype=np.uint64))
    prefix = packed & ~low
    m = members[(packed & low).astype(np.int64)]
    same = prefix[1:] == prefix[:-1]
    if not same.any():
        return np.zeros((0, 2), dtype=np.int64)
    starts = np.flatnonzero(np.concatenate([[True], ~same]))
    sizes = np.diff(np.append(starts, n))
    multi = sizes > 1
    starts, sizes = starts[multi], sizes[multi]
    out = []
    small = sizes <= ALL_PAIRS_MAX
    for size in np.unique(sizes[small]):
        s = starts[small][sizes[small] == size]
        i, j = np.triu_indices(int(size), k=1)
        out.append(np.stack([m[s[:, None] + i[None, :]].ravel(), m[s[:, None] + j[None, :]].ravel()], axis=1))
    for s, size in zip(starts[~small], sizes[~small]):
        grp = m[s:s + size]
        out.append(np.stack([np.full(size - 1, grp[0]), grp[1:]], axis=1))
        out.append(np.stack([grp[1:-1], grp[2:]], axis=1))
    pairs = np.concatenate(out) if out else np.zeros((0, 2), dtype=np.int64)
    return np.sort(pairs, axis=1)


def band_records(keys: np.ndarray, who: np.ndarray, bits: int, skip_zero: bool = False) -> pa.Table:
    """(band, part, key, who) records of the [rows x bands] ``keys`` of rows ``who``, to group
    by (band, part): ``part`` is the top ``bits`` bits of the mixed key, so every bucket of
    :func:`bucket_pairs` lies in one part. ``skip_zero`` leaves out keys 0 (no shingles)."""
    from corpusmill.grouping import partition_of

    nb = keys.shape[1] if keys.ndim == 2 else 0
    key = np.ascontiguousarray(keys, dtype=U64).ravel()
    band = np.tile(np.arange(nb, dtype=np.int32), len(who))
    member = np.repeat(who.astype(np.int64), nb)
    if skip_zero:
        ok = key != 0
        key, band, member = key[ok], band[ok], member[ok]
    part = partition_of(fmix64(key.copy()), bits)
    return pa.table({"band": band, "part": part, "key": key, "who": member})


def band_group_pairs(group: pa.Table, totals: tuple[int, ...]) -> pa.Table:
    """Candidate pairs (a, b) of one (band, part) group of :func:`band_records`; ``totals[band]``
    is the number of keys in the whole band, so the pairs are those of :func:`bucket_pairs` over
    the band."""
    who = group.column("who").to_numpy()
    order = np.argsort(who, kind="stable")
    band = int(group.column("band")[0].as_py())
    pairs = bucket_pairs(group.column("key").to_numpy()[order], who[order], totals[band])
    return pa.table({"a": pa.array(pairs[:, 0], pa.int64()), "b": pa.array(pairs[:, 1], pa.int64())})


def unique_pairs(pairs: np.ndarray) -> np.ndarray:
    """Distinct (a, b) rows, sorted."""
    if not len(pairs):
        return pairs.reshape(0, 2)
    packed = (pairs[:, 0].astype(np.uint64) << np.uint64(32)) | pairs[:, 1].astype(np.uint64)
    packed = np.unique(packed)
    return np.stack([(packed >> np.uint64(32)).astype(np.int64), (packed & np.uint64(0xFFFFFFFF)).astype(np.int64)], axis=1)


def components(n: int, edges: np.ndarray) -> np.ndarray:
    """Connected components of ``n`` nodes: each node's label is the smallest node number in
    its component (so the first document in stable order names its cluster)."""
    label = np.arange(n, dtype=np.int64)
    if not len(edges):
        return label
    a, b = edges[:, 0], edges[:, 1]
    while True:
        low = np.minimum(label[a], label[b])
        before = label.copy()
        np.minimum.at(label, a, low)
        np.minimum.at(label, b, low)
        # pointer jumping: follow labels to their own labels until they settle
        while True:
            nxt = label[label]
            if np.array_equal(nxt, label):
                break
            label = nxt
        if np.array_equal(label, before):
            return label


def unique_sets(sh: Shingles) -> Shingles:
    """The same documents with each shingle once, as sorted 40-bit prefixes of its hash.

    A prefix collision between two different shingles of one pair of documents (about 1e-8
    for documents of a hundred shingles) would count one shingle as shared.
    """
    out_hashes, out_counts = [], []
    step = 1 << 22  # documents per step, so the document tag fits in 24 bits
    for lo in range(0, len(sh), step):
        part = sh.take(np.arange(lo, min(lo + step, len(sh))))
        counts = part.counts
        doc = np.repeat(np.arange(len(counts), dtype=np.uint64), counts)
        key = np.sort((doc << np.uint64(40)) | (part.hashes >> np.uint64(24)))
        keep = np.ones(len(key), dtype=bool)
        keep[1:] = key[1:] != key[:-1]
        key = key[keep]
        out_counts.append(np.bincount((key >> np.uint64(40)).astype(np.int64), minlength=len(counts)))
        out_hashes.append(key & np.uint64((1 << 40) - 1))
    counts = np.concatenate(out_counts) if out_counts else np.zeros(0, np.int64)
    offsets = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    return Shingles(np.concatenate(out_hashes) if out_hashes else np.zeros(0, U64), offsets)


def set_jaccard(sets: Shingles, pairs: np.ndarray) -> np.ndarray:
    """Exact Jaccard similarity of the sets ``sets[a]`` and ``sets[b]`` for every row (a, b) of
    ``pairs`` (``sets`` from :func:`unique_sets`); 0 when either set is empty."""
    n = len(pairs)
    out = np.zeros(n, dtype=np.float64)
    if n == 0:
        return out
    counts = sets.counts
    ca, cb = counts[pairs[:, 0]], counts[pairs[:, 1]]
    inter = np.zeros(n, dtype=np.int64)
    step = 1 << 16  # pairs per step (memory: ~16 bytes per shingle of the step's pairs)
    for lo in range(0, n, step):
        hi = min(lo + step, n)
        tag = np.arange(hi - lo, dtype=np.uint64)
        a = sets.take(pairs[lo:hi, 0])
        b = sets.take(pairs[lo:hi, 1])
        # two runs, each sorted by (pair, shingle): a stable sort merges them in linear time
        keys = np.concatenate([(np.repeat(tag, a.counts) << np.uint64(40)) | a.hashes,
                               (np.repeat(tag, b.counts) << np.uint64(40)) | b.hashes])
        keys.sort(kind="stable")
        dup = keys[1:] == keys[:-1]
        inter[lo:hi] = np.bincount((keys[1:][dup] >> np.uint64(40)).astype(np.int64), minlength=hi - lo)
    union = ca + cb - inter
    np.divide(inter, union, out=out, where=union > 0)
    return out


def jaccard_sampling_error(s: float, num_perm: int) -> float:
    """Standard deviation of a classic num_perm-slot MinHash estimate at similarity ``s``."""
    return math.sqrt(max(s * (1 - s), 0.0) / num_perm)


_SCREEN_BITS = 22


def matching_keys(query: np.ndarray, keys: np.ndarray, max_per_query: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Pairs ``(i, j)`` with ``query[i] == keys[j] != 0``, for a large ``query`` (the rows of a
    stored index) and a small ``keys`` (a refresh's new rows). A bitmap of the keys' top bits
    screens the query first (keys are mixed hashes, so their top bits are uniform), so the cost
    is one gather per query value, not a sort of the query. ``max_per_query`` > 0 keeps at most
    that many ``j`` per ``i``. Pairs come sorted by ``i``, then ``j``'s key order."""
    empty = np.zeros(0, dtype=np.int64)
    query, keys = np.asarray(query, dtype=np.uint64), np.asarray(keys, dtype=np.uint64)
    valid = np.flatnonzero(keys != 0)
    if not len(valid) or not len(query):
        return empty, empty
    order = valid[np.argsort(keys[valid], kind="stable")]
    sk = keys[order]
    shift = np.uint64(64 - _SCREEN_BITS)
    bitmap = np.zeros(1 << _SCREEN_BITS, dtype=bool)
    bitmap[(sk >> shift).astype(np.int64)] = True
    # one shift and one gather per query value (the shifted values fit an int64 as they are);
    # zero, which never matches, is dropped from the few candidates rather than tested on all
    cand = np.flatnonzero(bitmap[(query >> shift).view(np.int64)])
    q = query[cand]
    if bitmap[0]:
        cand, q = cand[q != 0], q[q != 0]
    lo = np.searchsorted(sk, q, "left")
    n = np.searchsorted(sk, q, "right") - lo
    if max_per_query > 0:
        n = np.minimum(n, max_per_query)
    hit = n > 0
    cand, lo, n = cand[hit], lo[hit], n[hit]
    i = np.repeat(cand, n)
    j = order[np.repeat(lo - np.cumsum(np.r_[0, n[:-1]]), n) + np.arange(int(n.sum()))]
    return i.astype(np.int64), j.astype(np.int64)
