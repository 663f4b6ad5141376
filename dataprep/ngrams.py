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
    for seq in _UNICODE_SPACES:
        m = len(seq)
        if len(data) < m:
            continue
        hit = data[: len(data) - m + 1] == seq[0]
        for k in range(1, m):
            hit &= data[k: len(data) - m + 1 + k] == seq[k]
        for k in range(m):
            cls[np.flatnonzero(hit) + k] = _SEP


def token_hashes(texts: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """(hash of every token, row of every token), tokens in text order."""
    data, offsets = _buffers(pc.utf8_lower(texts))
    if data.size == 0:
        return np.zeros(0, np.uint64), np.zeros(0, np.int64)
    cls = _BYTE_CLASS[data]
    if data.max() >= 0x80:
        _mark_unicode_spaces(data, cls)
    keep = cls != _DROP
    if not keep.all():
        before = np.zeros(len(keep) + 1, dtype=np.int64)
        np.cumsum(keep, out=before[1:])
        data, cls, offsets = data[keep], cls[keep], before[offsets]
    word = cls == _KEEP
    # a token starts at a word byte that follows a separator or begins its row
    first = word.copy()
    first[1:] &= ~word[:-1]
    row_starts = offsets[:-1][offsets[:-1] < offsets[1:]]
    first[row_starts] = word[row_starts]
    starts = np.flatnonzero(first)
    if starts.size == 0:
        return np.zeros(0, np.uint64), np.zeros(0, np.int64)
    token_of_byte = np.cumsum(first) - 1
    idx = np.flatnonzero(word)
    pos = idx - starts[token_of_byte[idx]]
    powers = np.ones(int(pos.max()) + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        np.cumprod(np.full(len(powers) - 1, _TOKEN_MULT), out=powers[1:])
        contrib = (data[idx].astype(np.uint64) + np.uint64(1)) * powers[pos]
    sums = np.add.reduceat(contrib, np.flatnonzero(np.r_[True, token_of_byte[idx][1:] != token_of_byte[idx][:-1]]))
    rows = np.searchsorted(offsets, starts, side="right") - 1
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

