"""Compiled (numba) kernels of :mod:`corpusmill.dataprep.minhash`: the same hashes and signatures
as its numpy code, bit for bit, in one pass per document instead of one numpy pass per step.

Imported only by :func:`corpusmill.dataprep.minhash.kernels`, the first time a batch is hashed
(never when ``corpusmill`` or ``corpusmill.dataprep.dedup`` is imported): importing numba costs
a few tenths of a second, which a run without near-duplicate detection should not pay.

Every kernel has an explicit signature, so this module's import compiles them, or, as it does
after the first time, loads them from numba's on-disk cache. The cache is kept under the
corpusmill user cache, ``<cache>/numba`` (``$CORPUSMILL_CACHE``, else
``$XDG_CACHE_HOME/corpusmill``, else ``~/.cache/corpusmill``), never next to the installed
source, which may be read-only; ``$NUMBA_CACHE_DIR`` overrides it as numba documents. Only
these kernels are cached there: other numba code in the process keeps its own setting. Where
no cache folder can be written, the kernels are compiled in every process (a warning says so).

All arithmetic is on unsigned integers with explicitly typed constants: numba, like numpy,
wraps uint64 and uint32 products modulo 2**64, but mixing an unsigned value with a plain Python
integer would promote to float64, so every constant below is a typed scalar.
"""

from __future__ import annotations

import os
import warnings

import numba
import numpy as np
from numba import types as nt

U64 = np.uint64
_GOLDEN = U64(0x9E3779B97F4A7C15)
_MUL_SPAN = U64(0xC6A4A7935BD1E995)
_MUL_SHINGLE = U64(0x9FB21C651E98DF25)
_FMIX_1 = U64(0xFF51AFD7ED558CCD)
_FMIX_2 = U64(0xC4CEB9FE1A85EC53)
_MASK32 = U64(0xFFFFFFFF)
_RANK_MASK = U64((1 << 24) - 1)
_FALLBACK_MAX = U64((1 << 24) - 2)
_FALLBACK_CODE = U64(255 << 24)
_EMPTY = np.uint32(0xFFFFFFFF)
_ROUNDS = 255
_S8, _S16, _S24, _S29, _S32, _S33, _S40, _S48, _S56 = (U64(k) for k in (8, 16, 24, 29, 32, 33, 40, 48, 56))


def _read(dtype, ndim: int = 1):
    """An input array type: C-contiguous, read-only accepted (a writable array converts)."""
    return nt.Array(dtype, ndim, "C", readonly=True)


def _write(dtype, ndim: int = 1):
    return nt.Array(dtype, ndim, "C")


def cache_dir() -> str:
    """Where the compiled kernels are cached: ``$NUMBA_CACHE_DIR`` if set, else ``<cache>/numba``."""
    if os.environ.get("NUMBA_CACHE_DIR"):
        return os.environ["NUMBA_CACHE_DIR"]
    from corpusmill.remote_store import cache_base

    return str(cache_base() / "numba")


def _compiled(signature):
    """``numba.njit`` with an explicit signature, cached in :func:`cache_dir`."""

    def wrap(fn):
        previous = numba.config.CACHE_DIR
        numba.config.CACHE_DIR = cache_dir()  # read once, when the cache locator is made
        try:
            try:
                os.makedirs(numba.config.CACHE_DIR, exist_ok=True)
            except OSError:
                pass  # numba then tries its own places, and raises when none is writable
            return numba.njit(signature, cache=True, nogil=True)(fn)
        except RuntimeError as exc:  # "cannot cache function ...: no locator available"
            warnings.warn(f"corpusmill: cannot write numba's cache ({exc}); the MinHash kernels are compiled in "
                          f"every process (a few seconds). Set CORPUSMILL_CACHE or NUMBA_CACHE_DIR to a writable "
                          f"folder to keep them.", RuntimeWarning, stacklevel=2)
            return numba.njit(signature, cache=False, nogil=True)(fn)
        finally:
            numba.config.CACHE_DIR = previous

    return wrap


@numba.njit(inline="always")
def _fmix64(h):
    h ^= h >> _S33
    h *= _FMIX_1
    h ^= h >> _S33
    h *= _FMIX_2
    h ^= h >> _S33
    return h


@numba.njit(inline="always")
def _word(data, pos, end):
    """The little-endian word of the bytes ``data[pos:min(pos + 8, end)]`` (missing bytes zero)."""
    if pos + 8 <= data.size:  # eight bytes in reach: LLVM makes one load of the eight below
        w = (U64(data[pos]) | U64(data[pos + 1]) << _S8 | U64(data[pos + 2]) << _S16
             | U64(data[pos + 3]) << _S24 | U64(data[pos + 4]) << _S32 | U64(data[pos + 5]) << _S40
             | U64(data[pos + 6]) << _S48 | U64(data[pos + 7]) << _S56)
        n = end - pos
        return w if n >= 8 else w & ((U64(1) << U64(8 * n)) - U64(1))
    w = U64(0)
    k = 0
    while k < 8 and pos + k < end:
        w |= U64(data[pos + k]) << U64(8 * k)
        k += 1
    return w


@numba.njit(inline="always")
def _span_hash(data, start, end):
    length = end - start
    h = _word(data, start, end)
    h ^= U64(length) * _GOLDEN
    h *= _MUL_SPAN
    h ^= h >> _S29
    pos = start + 8
    while pos < end:
        h = (h ^ _word(data, pos, end)) * _MUL_SPAN
        h ^= h >> _S29
        pos += 8
    return h


@_compiled(_write(nt.uint64)(_read(nt.uint8), _read(nt.int64), _read(nt.int64)))
def span_hashes(data, starts, ends):
    """:func:`corpusmill.dataprep.minhash.span_hashes`."""
    out = np.empty(starts.size, dtype=np.uint64)
    for i in range(starts.size):
        out[i] = _span_hash(data, starts[i], ends[i])
    return out


@_compiled(nt.void(_read(nt.uint8), _read(nt.int64), _read(nt.int64), _read(nt.int64), nt.int64, _read(nt.int64),
                   _write(nt.uint64)))
def word_shingles(data, starts, ends, doc_offsets, n, offsets, out):
    """:func:`corpusmill.dataprep.minhash.word_shingles` into ``out`` (``offsets`` already made)."""
    t = np.empty(starts.size, dtype=np.uint64)
    for i in range(starts.size):
        t[i] = _span_hash(data, starts[i], ends[i])
    nn = U64(n)
    for d in range(doc_offsets.size - 1):
        first, count = doc_offsets[d], doc_offsets[d + 1] - doc_offsets[d]
        o = offsets[d]
        if count >= n:
            for w in range(count - n + 1):
                acc = t[first + w]
                for k in range(1, n):
                    acc = acc * _MUL_SHINGLE + t[first + w + k]
                out[o + w] = _fmix64(acc ^ nn)
        elif count > 0:  # fewer words than n: one shingle of all of them
            acc = t[first]
            for k in range(1, count):
                acc = acc * _MUL_SHINGLE + t[first + k]
            out[o] = _fmix64(acc ^ U64(count))


@numba.njit(inline="always")
def _slot_and_key(x, m, code, pow2, shift, pp):
    g = (x * m) & _MASK32
    slot = g >> shift if pow2 else ((g >> _S16) * pp) >> _S16
    return slot, np.uint32(code | (g & _RANK_MASK))


@_compiled(nt.void(_read(nt.uint64), _read(nt.int64), _read(nt.uint32), _read(nt.uint32), _read(nt.uint32), nt.int64,
                   nt.int64, _write(nt.uint32, 2)))
def signatures(hashes, offsets, round_mult, fallback_mult, fallback_add, slot_shift, throws, sig):
    """:meth:`corpusmill.dataprep.minhash.MinHasher.signatures` into ``sig`` (filled with EMPTY).
    ``slot_shift``: ``32 - log2(num_perm)`` when ``num_perm`` is a power of two, else 0;
    ``throws``: about ``num_perm * ln(num_perm)``, how many throws to make before looking for
    empty slots.

    One document at a time. A slot's value is settled by the first round that reaches it (a
    later round's code is larger), so running rounds until no slot is empty gives the numpy
    path's values, however the rounds are grouped: first enough rounds for ``throws`` throws
    (a branch-free minimum each), then one round at a time until every slot is filled.
    """
    p = sig.shape[1]
    pow2 = slot_shift > 0
    shift = U64(slot_shift)
    pp = U64(p)
    x = np.empty(0, dtype=np.uint64)
    for d in range(offsets.size - 1):
        lo, hi = offsets[d], offsets[d + 1]
        c = hi - lo
        if c == 0:
            continue
        if x.size < c:
            x = np.empty(max(c, 2 * x.size), dtype=np.uint64)
        for i in range(c):
            x[i] = hashes[lo + i] >> _S32
        keys = sig[d]
        first = min((throws + c - 1) // c, _ROUNDS - 1)
        for r in range(first):
            m, code = U64(round_mult[r]), U64(r) << _S24
            for i in range(c):
                slot, key = _slot_and_key(x[i], m, code, pow2, shift, pp)
                keys[slot] = min(keys[slot], key)
        empty = 0
        for j in range(p):
            empty += keys[j] == _EMPTY
        r = first
        while empty and r < _ROUNDS:
            m, code = U64(round_mult[r]), U64(r) << _S24
            for i in range(c):
                slot, key = _slot_and_key(x[i], m, code, pow2, shift, pp)
                if key < keys[slot]:
                    empty -= keys[slot] == _EMPTY
                    keys[slot] = key
            r += 1
        if empty:  # a handful of shingles: classic MinHash in the slots no round reached
            for j in range(p):
                if keys[j] != _EMPTY:
                    continue
                a, b = U64(fallback_mult[j]), U64(fallback_add[j])
                best = _FALLBACK_MAX
                for i in range(c):
                    best = min(best, (((x[i] * a + b) & _MASK32) >> _S8))
                keys[j] = np.uint32(_FALLBACK_CODE | best)

