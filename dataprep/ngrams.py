"""Word n-gram hashes, vectorised over the UTF-8 bytes of a whole Arrow column.

Tokens follow the contamination definition of GPT-3 and lm-evaluation-harness: lower-case, ASCII
punctuation removed (``string.punctuation``: "don't" -> "dont"), split on whitespace. A token's
hash is a polynomial over its bytes, an n-gram's hash a polynomial over its n token hashes, both
in wrapping uint64 arithmetic followed by the splitmix64 finaliser: fully specified, hence the
same on every platform and library version, so hashes can be stored and compared across runs.
"""

from __future__ import annotations

import string
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_KEEP, _DROP, _SEP = 0, 1, 2
_BYTE_CLASS = np.zeros(256, dtype=np.uint8)
for _c in string.punctuation:
    _BYTE_CLASS[ord(_c)] = _DROP
for _c in string.whitespace:
    _BYTE_CLASS[ord(_c)] = _SEP
_TOKEN_MULT = np.uint64(0x100000001B3)  # FNV prime: odd, mixes bytes into the high bits
_NGRAM_MULT = np.uint64(0x9E3779B97F4A7C15)
_PUNCT_TABLE = str.maketrans("", "", string.punctuation)


def mix64(z: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser (wrapping uint64)."""
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def tokens(text: str) -> list[str]:
    """The reference tokenisation, in plain Python (used for evidence and in tests)."""
    return text.lower().translate(_PUNCT_TABLE).split()


@dataclass
class NgramHashes:
    hashes: np.ndarray  # uint64, one per n-gram
    doc: np.ndarray  # int64: the row each n-gram belongs to
    position: np.ndarray  # int64: index of the n-gram's first token within its row


def _buffers(texts: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks() if texts.num_chunks != 1 else texts.chunk(0)
    texts = pc.fill_null(texts, "") if texts.null_count else texts
    if pa.types.is_string(texts.type):
        texts = texts.cast(pa.large_string())
    bufs = texts.buffers()
    n = len(texts)
    offsets = np.frombuffer(bufs[1], dtype=np.int64)[texts.offset: texts.offset + n + 1]
    start, end = (int(offsets[0]), int(offsets[-1])) if n else (0, 0)
    data = np.frombuffer(bufs[2], dtype=np.uint8)[start:end] if bufs[2] is not None and end > start else np.zeros(0, np.uint8)
    return data, offsets - start


# UTF-8 of the non-ASCII characters str.split() treats as whitespace
_UNICODE_SPACES = [chr(c).encode() for c in (0x85, 0xA0, 0x1680, *range(0x2000, 0x200B), 0x2028, 0x2029, 0x202F,
                                              0x205F, 0x3000)]


def _mark_unicode_spaces(data: np.ndarray, cls: np.ndarray) -> None:
    """Mark the bytes of non-ASCII whitespace as separators (checked only at their lead bytes)."""
    leads = np.flatnonzero((data == 0xC2) | (data == 0xE1) | (data == 0xE2) | (data == 0xE3))
    if leads.size == 0:
        return
    padded = np.concatenate([data, np.zeros(2, np.uint8)])
    for seq in _UNICODE_SPACES:
        hit = leads[padded[leads] == seq[0]]
        for k in range(1, len(seq)):
            hit = hit[padded[hit + k] == seq[k]]
        for k in range(len(seq)):
            cls[hit + k] = _SEP


def _inverse(m: np.uint64) -> np.uint64:
    """Multiplicative inverse of an odd number mod 2**64 (Newton's iteration)."""
    with np.errstate(over="ignore"):
        inv = m
        for _ in range(6):
            inv = inv * (np.uint64(2) - m * inv)
    return inv


_TOKEN_MULT_INV = _inverse(_TOKEN_MULT)
_POWERS: dict[str, np.ndarray] = {}


def _powers(kind: str, n: int) -> np.ndarray:
    """M**i (kind 'fwd') or M**-i ('inv') for i < n, wrapping uint64; cached and grown by doubling."""
    table = _POWERS.get(kind)
    if table is None or len(table) < n:
        size = max(n, 2 * len(table) if table is not None else 1 << 20)
        table = np.empty(size, dtype=np.uint64)
        table[0] = 1
        with np.errstate(over="ignore"):
            np.cumprod(np.full(size - 1, _TOKEN_MULT if kind == "fwd" else _TOKEN_MULT_INV), out=table[1:])
        _POWERS[kind] = table
    return table[:n]


class HashSet:
    """Membership of uint64 hashes, vectorised: a bitmap on the low bits screens queries, and only
    those that pass are looked up in the sorted array (a few percent of non-members)."""

    def __init__(self, hashes: np.ndarray, values: np.ndarray | None = None, bits: int = 24) -> None:
        order = np.argsort(hashes, kind="stable")
        self.hashes = hashes[order]
        self.values = values[order] if values is not None else None
        self.mask = np.uint64((1 << bits) - 1)
        self.bitmap = np.zeros(1 << bits, dtype=bool)
        self.bitmap[(self.hashes & self.mask).astype(np.int64)] = True

    def __len__(self) -> int:
        return len(self.hashes)

    def find(self, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(indices of the queries that are members, position of their first match in ``hashes``)."""
        if not len(self.hashes) or not len(queries):
            e = np.zeros(0, np.int64)
            return e, e
        maybe = np.flatnonzero(self.bitmap[(queries & self.mask).astype(np.int64)])
        pos = np.minimum(np.searchsorted(self.hashes, queries[maybe]), len(self.hashes) - 1)
        hit = self.hashes[pos] == queries[maybe]
        return maybe[hit], pos[hit]


def token_hashes(texts: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """(hash of every token, row of every token), tokens in text order.

    A token's hash is ``mix64(sum_i (byte_i + 1) * M**i)`` over its bytes (punctuation removed),
    computed for all tokens at once from prefix sums over the word bytes of the whole column.
    """
    data, offsets = _buffers(pc.utf8_lower(texts))
    if data.size == 0:
        return np.zeros(0, np.uint64), np.zeros(0, np.int64)
    cls = _BYTE_CLASS[data]
    if data.max() >= 0x80:
        _mark_unicode_spaces(data, cls)
    # a byte is a separator, a dropped punctuation byte, or part of a word; a token starts at a word
    # byte whose previous kept byte is a separator, or which is the first kept byte of its row
    kept = np.flatnonzero(cls != _DROP)
    kcls = cls[kept]
    word = kcls == _KEEP
    first = word.copy()
    first[1:] &= ~word[:-1]
    row_first = np.searchsorted(kept, offsets[:-1])  # first kept byte of each row
    row_first = row_first[row_first < np.searchsorted(kept, offsets[1:])]
    first[row_first] = word[row_first]
    wpos = np.flatnonzero(word)  # word bytes, as positions in `kept`
    if wpos.size == 0:
        return np.zeros(0, np.uint64), np.zeros(0, np.int64)
    w = data[kept[wpos]].astype(np.uint64) + np.uint64(1)
    starts = np.flatnonzero(first[wpos])  # token starts, as positions in `w`
    ends = np.r_[starts[1:], len(w)]
    with np.errstate(over="ignore"):
        prefix = np.zeros(len(w) + 1, dtype=np.uint64)
        np.cumsum(w * _powers("fwd", len(w)), out=prefix[1:])
        # sum over a token of (b + 1) * M**i, rebased to its start by M**-start
        sums = (prefix[ends] - prefix[starts]) * _powers("inv", len(w))[starts]
    rows = np.searchsorted(offsets, kept[wpos[starts]], side="right") - 1
    return mix64(sums), rows


def ngram_hashes(texts: pa.Array | pa.ChunkedArray, n: int) -> NgramHashes:
    """Hashes of every word n-gram of every row (rows with fewer than n tokens have none)."""
    tok, rows = token_hashes(texts)
    m = len(tok) - n + 1
    if m <= 0:
        e = np.zeros(0, np.int64)
        return NgramHashes(np.zeros(0, np.uint64), e, e)
    acc = np.zeros(m, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for k in range(n):
            acc = acc * _NGRAM_MULT + tok[k: k + m]
    valid = rows[:m] == rows[n - 1: n - 1 + m]
    first_token = np.zeros(len(rows), dtype=np.int64)
    if len(rows):
        row_begin = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]])
        first_token[row_begin] = row_begin
        first_token = np.maximum.accumulate(first_token)
    where = np.flatnonzero(valid)
    return NgramHashes(mix64(acc[where]), rows[where], where - first_token[where])


def shared_span(text_a: str, text_b: str, n: int) -> str:
    """The longest run of tokens the two texts share, grown from their shared n-grams (evidence)."""
    ta, tb = tokens(text_a), tokens(text_b)
    grams = {}
    for i in range(len(tb) - n + 1):
        grams.setdefault(tuple(tb[i: i + n]), i)
    best = ""
    i = 0
    while i <= len(ta) - n:
        j = grams.get(tuple(ta[i: i + n]))
        if j is None:
            i += 1
            continue
        length = n
        while i + length < len(ta) and j + length < len(tb) and ta[i + length] == tb[j + length]:
            length += 1
        span = " ".join(ta[i: i + length])
        if len(span) > len(best):
            best = span
        i += length - n + 1
    return best

