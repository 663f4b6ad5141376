"""Shingles and MinHash signatures, computed over whole batches with numpy.

Every hash here is plain uint64 arithmetic (numpy wraps modulo 2**64, which is fully
specified), with constants drawn from the run's seed by SplitMix64: the same text, shingling,
``num_perm`` and seed give the same signature on every platform, numpy version and process.
Signatures are stored in a version's ``index/`` and compared with those of later versions,
so neither Python's ``hash`` (salted per process) nor a dataframe library's hash (free to
change between releases) is used anywhere.

The pieces, in the order a batch goes through them:

* :func:`span_hashes` -- a 64-bit hash of each token's bytes, eight bytes per step.
* :func:`word_shingles` / :func:`char_shingles` -- one hash per shingle, grouped per document.
* :class:`MinHasher` -- ``num_perm`` slots per document by *bucketed MinHash* (the fast
  similarity sketch of Dahlgaard, Knudsen and Thorup, 2017; also what rensa's R-MinHash does).
  Each slot ``j`` is a genuine MinHash: with ``key_j(x)`` = (the first round ``r`` in which
  shingle ``x`` is thrown into slot ``j``, a random rank), the slot holds ``min over x in A of
  key_j(x)``, so two documents agree in a slot with probability equal to their Jaccard
  similarity, exactly as with ``num_perm`` independent permutations. A round throws every
  shingle into one random slot, so filling all slots costs about ``num_perm * ln(num_perm)``
  throws per document instead of ``num_perm`` hashes per shingle.
* :func:`sequence_hash` -- a 128-bit hash of a token sequence (exact duplicates).

Two implementations give the same values, bit for bit: numba-compiled kernels
(:mod:`corpusmill.dataprep._minhash_kernels`, one pass per document), and the numpy code below,
the fallback and the reference. Every function taking ``backend`` chooses with it: ``"numba"``,
``"numpy"``, ``"auto"``, or ``None`` for ``$CORPUSMILL_MINHASH_BACKEND``, else ``auto`` (see
:func:`compiled_kernels`).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from corpusmill.dataprep.textnorm import NormalForm, TokenSpans, normalise, tokenize

U64 = np.uint64
MASK64 = 0xFFFFFFFFFFFFFFFF
_GOLDEN = 0x9E3779B97F4A7C15
_MUL_SPAN = U64(0xC6A4A7935BD1E995)  # MurmurHash64A's multiplier
_MUL_SHINGLE = U64(0x9FB21C651E98DF25)
EMPTY = np.uint32(0xFFFFFFFF)  # a slot of a document without shingles
_ROUNDS = 255  # bucketing rounds; round code 255 marks a slot filled by the fallback hash
_RANK_BITS = 24


#: environment variable choosing the backend of every call that does not name one: ``numba``
#: (an error when numba cannot be imported), ``numpy``, or ``auto`` (the default; see
#: :func:`compiled_kernels`)
BACKEND_ENV = "CORPUSMILL_MINHASH_BACKEND"
BACKENDS = ("auto", "numba", "numpy")
#: documents a process signs on the numpy path under ``auto`` before it loads the kernels:
#: importing numba and loading the cached kernels (~0.4 s on the reference machine) costs what
#: the kernels save on about 150,000 documents (~2.6 us each, text to signature; the break-even,
#: rounded up), so a process that signs fewer never pays for numba, and one that signs more
#: pays at most about twice what the best choice made in hindsight would have cost
AUTO_AFTER_DOCS = 200_000
_signed_on_numpy = 0


@dataclass(frozen=True)
class KernelLoad:
    """How this process got the compiled kernels: ``module`` is None when it could not
    (``reason`` says why); the seconds are wall time, importing numba apart from compiling or
    loading the kernels from numba's on-disk cache (``cache_dir``)."""

    module: object | None
    reason: str = ""
    import_seconds: float = 0.0
    compile_seconds: float = 0.0
    cache_dir: str = ""


@lru_cache(maxsize=1)
def load_kernels() -> KernelLoad:
    """Import numba and the kernels, once per process and never at import time: a run without
    near-duplicate detection does not pay for numba."""
    t0 = time.perf_counter()
    try:
        import numba
    except ImportError as exc:
        return KernelLoad(None, f"numba cannot be imported ({exc}); pip install numba")
    if numba.config.DISABLE_JIT:
        return KernelLoad(None, "NUMBA_DISABLE_JIT is set: the kernels would run as plain Python")
    t1 = time.perf_counter()
    from corpusmill.dataprep import _minhash_kernels as kernels

    return KernelLoad(kernels, "", t1 - t0, time.perf_counter() - t1, kernels.cache_dir())


def resolve_backend(backend: str | None = None) -> str:
    """``backend`` if given, else ``$CORPUSMILL_MINHASH_BACKEND``, else ``auto``; a ValueError
    names an unknown one."""
    choice = backend or os.environ.get(BACKEND_ENV) or "auto"
    if choice not in BACKENDS:
        where = "backend" if backend else f"${BACKEND_ENV}"
        raise ValueError(f"{where} is {choice!r}; expected one of {', '.join(BACKENDS)}")
    return choice


def compiled_kernels(backend: str | None, sign_docs: int = 0):
    """The kernel module a call uses, or None for the numpy path.

    ``numba`` loads the kernels (a RuntimeError says why when they cannot be loaded), ``numpy``
    never does. ``auto`` uses them once they are loaded, and loads them when this process has
    signed :data:`AUTO_AFTER_DOCS` documents on the numpy path (``sign_docs``: the documents
    this call signs; shingling alone never triggers the load); without numba it stays on numpy.
    Both paths give the same values, so which one a batch takes changes nothing but the time.
    """
    global _signed_on_numpy
    choice = resolve_backend(backend)
    if choice == "numpy":
        return None
    if choice == "numba":
        load = load_kernels()
        if load.module is None:
            raise RuntimeError(f"the numba MinHash backend was asked for, but {load.reason}")
        return load.module
    if load_kernels.cache_info().currsize or _signed_on_numpy + sign_docs > AUTO_AFTER_DOCS:
        return load_kernels().module
    _signed_on_numpy += sign_docs
    return None


def splitmix64(seed: int, n: int, stream: int = 0) -> np.ndarray:
    """``n`` pseudo-random uint64 from SplitMix64 (Steele, Lea, Flood 2014), a published
    fixed sequence: constants derived from it never change."""
    base = (seed * 0x100000001B3 + stream * 0x632BE59BD9B4E019) & MASK64
    z = (U64(base) + np.arange(1, n + 1, dtype=U64) * U64(_GOLDEN))
    z = (z ^ (z >> U64(30))) * U64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> U64(27))) * U64(0x94D049BB133111EB)
    return z ^ (z >> U64(31))


def fmix64(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 64-bit finaliser, in place: every input bit affects every output bit."""
    h ^= h >> U64(33)
    h *= U64(0xFF51AFD7ED558CCD)
    h ^= h >> U64(33)
    h *= U64(0xC4CEB9FE1A85EC53)
    h ^= h >> U64(33)
    return h


_TAIL_MASKS = np.array([0] + [(1 << (8 * k)) - 1 for k in range(1, 8)] + [MASK64], dtype=U64)


def span_hashes(data: np.ndarray, starts: np.ndarray, ends: np.ndarray, *, backend: str | None = None) -> np.ndarray:
    """A 64-bit hash of the bytes ``data[s:e]`` of every span, read eight bytes at a time.

    The state starts as the span's length times the golden ratio; each step xors in the next
    little-endian 64-bit word (bytes past the span masked off), multiplies by MurmurHash64A's
    constant and xor-shifts right by 29. Spans of up to eight bytes (most words) take one step.
    Callers combine these values and finish with :func:`fmix64`.
    """
    kernels = compiled_kernels(backend)
    if kernels is not None:
        data, starts, ends = _contiguous(data, starts, ends)
        if len(starts) and (starts.min() < 0 or ends.max() > len(data)):  # the kernel reads unchecked
            raise ValueError(f"spans outside the {len(data)} bytes given")
        return kernels.span_hashes(data, starts, ends)
    n = len(starts)
    if n == 0:
        return np.zeros(0, U64)
    padded = np.zeros(len(data) + 8, dtype=np.uint8)
    padded[: len(data)] = data
    # every byte position seen as the start of a little-endian 8-byte word (overlapping views)
    words = np.ndarray((len(data) + 1,), dtype="<u8", buffer=padded, strides=(1,))
    length = ends - starts
    h = words[starts]
    h &= _TAIL_MASKS[np.minimum(length, 8)]
    h ^= length.astype(U64) * U64(_GOLDEN)
    h *= _MUL_SPAN
    h ^= h >> U64(29)
    long = np.flatnonzero(length > 8)
    step = 8
    while long.size:
        chunk = words[starts[long] + step] & _TAIL_MASKS[np.minimum(length[long] - step, 8)]
        mixed = (h[long] ^ chunk) * _MUL_SPAN
        mixed ^= mixed >> U64(29)
        h[long] = mixed
        step += 8
        long = long[length[long] > step]
    return h


def _contiguous(data: np.ndarray, *index: np.ndarray) -> tuple[np.ndarray, ...]:
    """A byte buffer and int64 index arrays as the kernels' signatures take them."""
    return (np.ascontiguousarray(data, dtype=np.uint8),
            *(np.ascontiguousarray(a, dtype=np.int64) for a in index))


@dataclass
class Shingles:
    """Shingle hashes of a batch of documents: those of document ``i`` are
    ``hashes[offsets[i]:offsets[i+1]]`` (a document without words has none)."""

    hashes: np.ndarray  # uint64
    offsets: np.ndarray  # int64, len n + 1

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def counts(self) -> np.ndarray:
        return np.diff(self.offsets)

    def take(self, docs: np.ndarray) -> "Shingles":
        """The shingles of the documents ``docs`` (indices), in that order."""
        counts = self.counts[docs]
        offsets = np.zeros(len(docs) + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        src = np.repeat(self.offsets[docs] - offsets[:-1], counts) + np.arange(offsets[-1])
        return Shingles(self.hashes[src], offsets)


def token_hashes(tokens: TokenSpans, *, backend: str | None = None) -> np.ndarray:
    return span_hashes(tokens.data, tokens.starts, tokens.ends, backend=backend)


def word_shingles(tokens: TokenSpans, n: int, *, backend: str | None = None) -> Shingles:
    """Hashes of every run of ``n`` consecutive words of each document; a document of fewer
    than ``n`` words (but at least one) is one shingle of all its words.

    A shingle hash is ``fmix64((...(t1 * c + t2) * c + ... + tk) ^ k)`` over its word hashes.
    """
    if n < 1:
        raise ValueError(f"a shingle has at least one word, got n={n}")
    counts = tokens.counts
    per_doc = np.where(counts >= n, counts - n + 1, np.minimum(counts, 1))
    offsets = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(per_doc, out=offsets[1:])
    kernels = compiled_kernels(backend)
    if kernels is not None:
        out = np.empty(offsets[-1], dtype=U64)
        data, starts, ends, doc_offsets = _contiguous(tokens.data, tokens.starts, tokens.ends, tokens.doc_offsets)
        if len(starts) and (starts.min() < 0 or ends.max() > len(data) or doc_offsets[-1] > len(starts)):
            raise ValueError("token spans outside their text")  # the kernel reads unchecked
        kernels.word_shingles(data, starts, ends, doc_offsets, n, offsets, out)
        return Shingles(out, offsets)
    t = token_hashes(tokens, backend="numpy")
    total = len(t)
    # every window of n consecutive words, then keep those inside one document
    width = max(total - n + 1, 0)
    acc = t[:width].copy()
    for k in range(1, n):
        acc *= _MUL_SHINGLE
        acc += t[k:k + width]
    acc ^= U64(n)
    valid = np.ones(width, dtype=bool)
    ends = tokens.doc_offsets[1:]
    for k in range(1, n):  # windows starting in the last n-1 words of a document cross its end
        pos = ends - k
        valid[pos[(pos >= 0) & (pos < width)]] = False
    out = acc[valid]
    short = np.flatnonzero((counts > 0) & (counts < n))
    if short.size:  # a short document: one shingle of all its words
        first, c = tokens.doc_offsets[short], counts[short]
        s_acc = t[first].copy()
        for k in range(1, n - 1):
            more = c > k
            s_acc = np.where(more, s_acc * _MUL_SHINGLE + t[np.minimum(first + k, total - 1)], s_acc)
        s_acc ^= c.astype(U64)
        out = np.insert(out, offsets[short] - np.arange(len(short)), s_acc)
    return Shingles(fmix64(out), offsets)


def char_shingles(normalised, n: int, *, backend: str | None = None) -> Shingles:
    """Hashes of every run of ``n`` consecutive characters of each normalised document
    (words joined by one space); a shorter, non-empty document is one shingle."""
    data, doc_offsets = normalised.data, normalised.offsets
    # character starts: bytes that are not UTF-8 continuation bytes
    char_pos = np.flatnonzero((data & 0xC0) != 0x80)
    char_offsets = np.searchsorted(char_pos, doc_offsets)
    counts = np.diff(char_offsets)
    per_doc = np.where(counts >= n, counts - n + 1, np.minimum(counts, 1))
    offsets = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(per_doc, out=offsets[1:])
    doc = np.repeat(np.arange(len(counts)), per_doc)
    first = char_offsets[:-1][doc] + (np.arange(offsets[-1]) - offsets[doc])
    last = first + np.minimum(counts[doc], n)  # exclusive, in characters
    char_end = np.append(char_pos, len(data))
    return Shingles(fmix64(span_hashes(data, char_pos[first], char_end[last], backend=backend)), offsets)


@dataclass(frozen=True)
class Shingling:
    """How documents become sets: ``kind`` word or char n-grams of the words normal form."""

    kind: str = "word"
    n: int = 3

    def shingles(self, texts, *, backend: str | None = None) -> Shingles:
        """Shingles of every text of a string column."""
        form = NormalForm.words()
        if self.kind == "word":
            return word_shingles(tokenize(texts, form), self.n, backend=backend)
        return char_shingles(normalise(texts, form), self.n, backend=backend)


class MinHasher:
    """``num_perm``-slot MinHash signatures of shingle sets (uint32 per slot).

    Round ``r`` throws shingle ``x`` into slot ``top bits of (x32 * m_r mod 2**32)`` with rank
    ``low 24 bits`` of the same product, where ``x32`` is the upper half of the shingle hash and
    ``m_r`` an odd constant from the seed; the slot keeps the smallest ``r << 24 | rank``. A
    document runs rounds until every slot is filled (about ``num_perm * ln(num_perm)`` throws
    in all; further rounds could not change a filled slot). Slots still empty after 254 rounds
    (documents of a handful of shingles) take ``255 << 24 | min of a per-slot hash`` instead,
    classic MinHash. ``0xFFFFFFFF`` in every slot marks a document without shingles.
    """

    def __init__(self, num_perm: int, seed: int, *, chunk_shingles: int = 1 << 17, chunk_docs: int = 4096,
                 backend: str | None = None) -> None:
        if not 1 <= num_perm <= 4096:
            raise ValueError(f"num_perm must be in 1..4096, got {num_perm}")
        if backend is not None:
            resolve_backend(backend)  # an unknown name fails here, not on the first batch
        self.num_perm = num_perm
        self.seed = seed
        self.backend = backend
        self.chunk_shingles = chunk_shingles
        self.chunk_docs = chunk_docs
        self.round_mult = (splitmix64(seed, _ROUNDS, stream=1) | U64(1)).astype(np.uint32)
        self.fallback_mult = (splitmix64(seed, num_perm, stream=2) | U64(1)).astype(np.uint32)
        self.fallback_add = splitmix64(seed, num_perm, stream=3).astype(np.uint32)
        self._pow2 = num_perm & (num_perm - 1) == 0
        self._slot_shift = np.uint32(32 - (num_perm.bit_length() - 1))

    def rounds_first(self, counts: np.ndarray) -> np.ndarray:
        """Rounds a document of ``counts`` shingles runs before its slots are checked:
        ``num_perm * ln(num_perm)`` throws, which leave one slot empty on average."""
        p = self.num_perm
        return np.clip(np.ceil(p * np.log(p) / np.maximum(counts, 1)), 1, _ROUNDS - 1).astype(np.int64)

    def signatures(self, shingles: Shingles) -> np.ndarray:
        """[documents x num_perm] uint32 signatures."""
        n, p = len(shingles), self.num_perm
        sig = np.full((n, p), EMPTY, dtype=np.uint32)
        kernels = compiled_kernels(self.backend, sign_docs=n)
        if kernels is not None:
            hashes = np.ascontiguousarray(shingles.hashes, dtype=U64)
            offsets = np.ascontiguousarray(shingles.offsets, dtype=np.int64)
            if n and (offsets[0] < 0 or offsets[-1] > len(hashes) or (offsets[1:] < offsets[:-1]).any()):
                raise ValueError("shingle offsets out of order or past the hashes")  # the kernel reads unchecked
            kernels.signatures(hashes, offsets, self.round_mult,
                               self.fallback_mult, self.fallback_add, int(self._slot_shift) if self._pow2 else 0,
                               int(np.ceil(self.num_perm * np.log(self.num_perm))), sig)
            return sig
        counts = shingles.counts
        docs = np.flatnonzero(counts > 0)
        if not docs.size:
            return sig
        # fewest shingles (most rounds) first: the shingles of round r are then a prefix of a
        # chunk, and documents needing as many rounds go together (few Python-level rounds)
        docs = docs[np.argsort(counts[docs], kind="stable")]
        cum = np.cumsum(counts[docs])
        start = 0
        while start < len(docs):
            stop = int(np.searchsorted(cum, (cum[start - 1] if start else 0) + self.chunk_shingles, side="right"))
            stop = min(max(stop, start + 1), start + self.chunk_docs, len(docs))
            part = docs[start:stop]
            sub = shingles.take(part)
            sig[part] = self._chunk((sub.hashes >> U64(32)).astype(np.uint32), sub.counts)
            start = stop
        return sig

    def _throw(self, keys: np.ndarray, h: np.ndarray, base: np.ndarray, first, rounds: np.ndarray) -> None:
        """Throw shingle ``i`` in rounds ``first + t`` for ``t < rounds[i]``. ``first`` is one
        round for all shingles or one per shingle. Shingles are taken in order of decreasing
        ``rounds``, so those of step ``t`` are a prefix."""
        if not h.size:
            return
        if (rounds[1:] > rounds[:-1]).any():
            order = np.argsort(-rounds, kind="stable")
            h, base, rounds = h[order], base[order], rounds[order]
            if isinstance(first, np.ndarray):
                first = first[order]
        g = np.empty(len(h), dtype=np.uint32)
        idx = np.empty(len(h), dtype=np.uint32)
        rank_mask = np.uint32((1 << _RANK_BITS) - 1)
        per_shingle = isinstance(first, np.ndarray)
        ends = np.searchsorted(-rounds, -np.arange(1, int(rounds[0]) + 1), side="right")
        for t, m in enumerate(ends):
            gm, im = g[:m], idx[:m]
            if per_shingle:
                r = first[:m] + t
                np.multiply(h[:m], self.round_mult[r], out=gm)
                code = r.astype(np.uint32) << np.uint32(_RANK_BITS)
            else:
                np.multiply(h[:m], self.round_mult[first + t], out=gm)
                code = np.uint32((first + t) << _RANK_BITS)
            if self._pow2:
                np.right_shift(gm, self._slot_shift, out=im)
            else:
                np.right_shift(gm, np.uint32(16), out=im)
                im *= np.uint32(self.num_perm)
                im >>= np.uint32(16)
            im += base[:m]
            gm &= rank_mask
            gm |= code
            np.minimum.at(keys, im, gm)

    def _chunk(self, h: np.ndarray, counts: np.ndarray) -> np.ndarray:
        """Signatures of documents with ``counts`` (non-decreasing) shingles each."""
        nd, p = len(counts), self.num_perm
        keys = np.full(nd * p, EMPTY, dtype=np.uint32)
        doc = np.repeat(np.arange(nd, dtype=np.uint32), counts)
        base = doc * np.uint32(p)
        done = self.rounds_first(counts)  # rounds run so far, per document
        self._throw(keys, h, base, 0, np.repeat(done, counts))
        keys = keys.reshape(nd, p)
        first = np.zeros(nd + 1, dtype=np.int64)
        np.cumsum(counts, out=first[1:])
        open_docs = np.flatnonzero((keys == EMPTY).any(axis=1))
        while open_docs.size:
            # documents with empty slots: about num_perm more throws each, then look again
            c = counts[open_docs]
            extra = np.minimum(np.ceil(p / c).astype(np.int64), _ROUNDS - done[open_docs])
            sel = np.repeat(first[open_docs] - np.cumsum(c) + c, c) + np.arange(c.sum())
            self._throw(keys.reshape(-1), h[sel], base[sel], np.repeat(done[open_docs], c), np.repeat(extra, c))
            done[open_docs] += extra
            open_docs = open_docs[(keys[open_docs] == EMPTY).any(axis=1) & (done[open_docs] < _ROUNDS)]
        if (keys == EMPTY).any():
            self._fallback(keys, h, doc)
        return keys

    def _fallback(self, keys: np.ndarray, h: np.ndarray, doc: np.ndarray) -> None:
        """Fill slots no round reached: slot j takes min over the document's shingles of a
        per-slot hash (top 24 bits of a*x + b mod 2**32), ranked after every round."""
        d, j = np.nonzero(keys == EMPTY)
        first = np.searchsorted(doc, d)
        count = np.searchsorted(doc, d, side="right") - first
        pair = np.repeat(np.arange(len(d)), count)
        x = h[np.repeat(first, count) + (np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count))]
        v = (x * self.fallback_mult[j[pair]] + self.fallback_add[j[pair]]) >> np.uint32(32 - _RANK_BITS)
        best = np.full(len(d), np.uint32((1 << _RANK_BITS) - 2))
        np.minimum.at(best, pair, v)
        keys[d, j] = np.uint32(_ROUNDS << _RANK_BITS) | best


def estimate_jaccard(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Share of equal slots of row-aligned signature matrices (0 where either has no shingles)."""
    a, b = np.atleast_2d(a), np.atleast_2d(b)
    est = (a == b).mean(axis=1)
    empty = (a[:, 0] == EMPTY) | (b[:, 0] == EMPTY)
    return np.where(empty, 0.0, est)


def sequence_hash(tokens: TokenSpans) -> tuple[np.ndarray, np.ndarray]:
    """A 128-bit hash (two uint64) of each document's token sequence: documents with the same
    normal form, and only those (up to 2**-64 per pair of distinct tokens), hash alike."""
    t = token_hashes(tokens)
    counts = tokens.counts
    n = len(counts)
    pos = np.arange(len(t)) - np.repeat(tokens.doc_offsets[:-1], counts)
    top = int(counts.max()) if n else 0
    out = []
    for stream, mult in ((0, 0xA0761D6478BD642F), (1, 0xE7037ED1A0B428DB)):
        powers = np.cumprod(np.full(max(top, 1), U64(mult), dtype=U64))  # mult**(k+1)
        acc = np.zeros(n, dtype=U64)
        if len(t):
            terms = (t ^ U64(stream * _GOLDEN & MASK64)) * powers[pos]
            nonempty = counts > 0
            acc[nonempty] = np.add.reduceat(terms, tokens.doc_offsets[:-1][nonempty])
        out.append(fmix64(acc ^ (counts.astype(U64) * U64(0xD6E8FEB86659FD93))))
    return out[0], out[1]
