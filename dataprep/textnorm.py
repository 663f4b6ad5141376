"""Text normalisation for comparisons, vectorised over the UTF-8 bytes of a whole Arrow column.

Deduplication compares normalised forms, never the stored text: lower-cased, with runs of
separators collapsed to one space, optionally with punctuation and digits neutralised. The
regular-expression kernels of Arrow run at about 16 MB/s on one core, which would make the
normaliser the slowest part of a run; here every step is a numpy pass over the byte buffer
(tens of bytes per nanosecond for ASCII text), with one small decode for non-ASCII characters.

Characters are classified by their Unicode general category *as of Unicode 3.2*
(``unicodedata.ucd_3_2_0``, frozen in every Python version), so the normal form, and with it
every stored hash and signature, does not change when Python's Unicode tables are updated.
Code points unassigned in 3.2 count as word characters (later scripts), except the emoji and
pictograph planes U+1F000-U+1FFFF, which count as symbols.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

# character classes
WORD, DIGIT, SPACE, PUNCT, SYMBOL, FORMAT, CONTROL = range(7)
# what a normal form does with a character of a class
KEEP, SEP, ZERO, DROP = range(4)

_TABLE_SIZE = 0x30000  # planes 0-2; above, everything is a word character (CJK extensions, private use)
_CONTINUATION = 255


@lru_cache(maxsize=1)
def char_classes() -> np.ndarray:
    """Class of every code point below U+30000 (uint8), built once per process."""
    ucd = unicodedata.ucd_3_2_0
    code = {"Nd": DIGIT, "Cf": FORMAT, "Cc": CONTROL, "Cn": WORD, "Co": WORD, "Cs": WORD}
    for cat in ("Lu", "Ll", "Lt", "Lm", "Lo", "Mn", "Mc", "Me", "Nl", "No"):
        code[cat] = WORD
    for cat in ("Zs", "Zl", "Zp"):
        code[cat] = SPACE
    for cat in ("Pc", "Pd", "Ps", "Pe", "Pi", "Pf", "Po"):
        code[cat] = PUNCT
    for cat in ("Sm", "Sc", "Sk", "So"):
        code[cat] = SYMBOL
    out = np.fromiter(map(code.__getitem__, map(ucd.category, map(chr, range(_TABLE_SIZE)))),
                      dtype=np.uint8, count=_TABLE_SIZE)
    for ws in "\t\n\v\f\r\x1c\x1d\x1e\x1f\x85":  # what str.split() treats as whitespace
        out[ord(ws)] = SPACE
    out[0xAD] = FORMAT  # soft hyphen: Pd in 3.2, Cf since 4.0
    out[0xFE00:0xFE10] = FORMAT  # variation selectors (emoji presentation): invisible
    out[0x1F000:0x20000] = SYMBOL  # emoji and pictographs, unassigned in 3.2
    return out


@dataclass(frozen=True)
class NormalForm:
    """What happens to each class of character, and whether text is lower-cased first.

    SEP characters are separators: each run of them becomes one space, and runs at the start
    or end of a text disappear. DROP characters vanish without separating; invisible format
    characters (soft hyphen, zero-width joiner, variation selectors) are dropped in every form.
    ZERO characters become ``0``.
    """

    lowercase: bool
    actions: tuple[int, int, int, int, int, int, int]  # indexed by class

    @classmethod
    def words(cls) -> "NormalForm":
        """Lower-cased words (letters, marks, digits) separated by single spaces: what shingles see."""
        return cls(True, (KEEP, KEEP, SEP, SEP, SEP, DROP, SEP))

    @classmethod
    def exact(cls, *, lowercase: bool, punctuation: bool, whitespace: bool, digits: bool) -> "NormalForm":
        """The exact-duplicate comparison form; see :class:`corpusmill.dataprep.dedup.ExactConfig`."""
        return cls(lowercase, (
            KEEP,
            ZERO if digits else KEEP,
            SEP if whitespace else KEEP,
            SEP if punctuation else KEEP,
            SEP if punctuation else KEEP,
            DROP,
            KEEP,
        ))


@dataclass
class Normalised:
    """Normalised texts as one UTF-8 byte buffer: text ``i`` is ``data[offsets[i]:offsets[i+1]]``."""

    data: np.ndarray  # uint8
    offsets: np.ndarray  # int64, len n + 1, offsets[0] == 0

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def to_arrow(self) -> pa.Array:
        return pa.Array.from_buffers(pa.large_string(), len(self),
                                     [None, pa.py_buffer(self.offsets), pa.py_buffer(self.data)])


def utf8_buffers(texts: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """The byte buffer and int64 offsets (starting at 0) of a string column, without copying text."""
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks() if texts.num_chunks != 1 else texts.chunk(0)
    if texts.null_count:
        texts = pc.fill_null(texts, "")
    large = pa.types.is_large_string(texts.type)
    if not (large or pa.types.is_string(texts.type)):
        raise TypeError(f"expected a string column, got {texts.type}")
    bufs = texts.buffers()
    n = len(texts)
    offsets = np.frombuffer(bufs[1], dtype=np.int64 if large else np.int32)[texts.offset: texts.offset + n + 1]
    start, end = (int(offsets[0]), int(offsets[-1])) if n else (0, 0)
    data = np.frombuffer(bufs[2], dtype=np.uint8)[start:end] if bufs[2] is not None and end > start else np.zeros(0, np.uint8)
    return data, offsets.astype(np.int64) - start


_LEAD = 254
_DECODE = 253
_CONT = 7  # class code of a UTF-8 continuation byte on the fast path


def warm_up() -> None:
    """Build the lookup tables now (~0.1 s) rather than on the first text: for a process that
    has a moment to spare before its text arrives."""
    _class_tables()


@lru_cache(maxsize=1)
def _class_tables() -> tuple[bytes, np.ndarray]:
    """The byte table (class of ASCII bytes; continuation bytes _CONT; lead bytes _LEAD) and
    the class of non-ASCII characters by their first two bytes: the class when every
    character starting with those two bytes shares it, else _DECODE."""
    classes = char_classes()
    table = np.empty(256, dtype=np.uint8)
    table[:128] = classes[:128]
    table[0x80:0xC0] = _CONT  # bytes 0x80-0xBF follow a lead byte
    table[0xC0:] = _LEAD
    pair = np.full(1 << 16, _DECODE, dtype=np.uint8)
    class_of = np.full(0x110000, WORD, dtype=np.uint8)
    class_of[:_TABLE_SIZE] = classes
    b1 = np.arange(0x80, 0xC0)
    # two-byte characters (U+0080-U+07FF): the first two bytes are the whole character
    b0 = np.arange(0xC2, 0xE0)
    pair[(b0[:, None] << 8) | b1] = class_of[((b0[:, None] & 0x1F) << 6) | (b1 & 0x3F)]
    # three- and four-byte characters: blocks of 64 or 4096 code points share their first two bytes
    for lead, width, shift, mask in ((np.arange(0xE0, 0xF0), 64, 12, 0x0F), (np.arange(0xF0, 0xF5), 4096, 18, 0x07)):
        first = ((lead[:, None] & mask) << shift) | ((b1 & 0x3F) << (shift - 6))
        valid = first + width <= 0x110000
        blocks = class_of[first[valid][:, None] + np.arange(width)]
        uniform = (blocks == blocks[:, :1]).all(axis=1)
        keys = ((lead[:, None] << 8) | b1)[valid]
        pair[keys[uniform]] = blocks[uniform, 0]
    return table.tobytes(), pair


@lru_cache(maxsize=16)
def _action_table(form: NormalForm) -> bytes:
    """Class code -> action, as a translate table; continuation bytes count as kept."""
    table = np.full(256, KEEP, dtype=np.uint8)
    table[:7] = form.actions
    return table.tobytes()


def _lead_classes(data: np.ndarray, leads: np.ndarray) -> np.ndarray:
    """The class of the non-ASCII characters starting at ``leads``: looked up by their first
    two bytes, which settle almost every character (all of Latin, Greek, Cyrillic, CJK...);
    the rest (general punctuation, some symbol blocks) are decoded to a code point."""
    pair = _class_tables()[1]
    b0 = data[leads]
    cls = pair[(b0.astype(np.uint16) << 8) | data[leads + 1]]
    odd = np.flatnonzero(cls == _DECODE)
    if odd.size:
        pos = leads[odd]
        padded = np.zeros(len(data) + 3, dtype=np.uint8)
        padded[:-3] = data
        c0, c1, c2, c3 = (padded[pos + k].astype(np.uint32) for k in range(4))
        cp = np.where(c0 >= 0xF0, ((c0 & 0x07) << 18) | ((c1 & 0x3F) << 12) | ((c2 & 0x3F) << 6) | (c3 & 0x3F),
                      ((c0 & 0x0F) << 12) | ((c1 & 0x3F) << 6) | (c2 & 0x3F))
        decoded = np.full(len(cp), WORD, dtype=np.uint8)
        low = cp < _TABLE_SIZE
        decoded[low] = char_classes()[cp[low]]
        cls[odd] = decoded
    return cls


def byte_actions(data: np.ndarray, form: NormalForm) -> np.ndarray:
    """The action of every byte: that of the character it belongs to. Continuation bytes copy
    their lead's action, except that a multi-byte ZERO character keeps only its lead byte (the
    caller rewrites it to ``0``) and drops the rest."""
    actions = np.asarray(form.actions, dtype=np.uint8)
    cls = np.frombuffer(bytearray(data).translate(_class_tables()[0]), dtype=np.uint8)
    act = np.full(len(data), KEEP, dtype=np.uint8)
    ascii_ = cls < _CONT
    act[ascii_] = actions[cls[ascii_]]
    leads = np.flatnonzero(cls == _LEAD)
    if leads.size:
        lead_act = actions[_lead_classes(data, leads)]
        act[leads] = lead_act
        cont_act = np.where(lead_act == ZERO, np.uint8(DROP), lead_act)
        b0 = data[leads]
        act[leads + 1] = cont_act
        longer = b0 >= 0xE0
        act[leads[longer] + 2] = cont_act[longer]
        four = b0 >= 0xF0
        act[leads[four] + 3] = cont_act[four]
    return act


@dataclass
class TokenSpans:
    """Tokens of every text as byte spans ``data[starts[j]:ends[j]]`` of one buffer; the tokens
    of text ``i`` are ``doc_offsets[i]:doc_offsets[i+1]``."""

    data: np.ndarray  # uint8, the (lower-cased, digit-rewritten) text bytes
    starts: np.ndarray  # int64
    ends: np.ndarray  # int64
    doc_offsets: np.ndarray  # int64, len n + 1

    def __len__(self) -> int:
        return len(self.doc_offsets) - 1

    @property
    def counts(self) -> np.ndarray:
        return np.diff(self.doc_offsets)


def tokenize(texts: pa.Array | pa.ChunkedArray, form: NormalForm) -> TokenSpans:
    """Split every text of a string column into the tokens of ``form``: maximal runs of
    characters that are not separators. Two texts have the same normal form exactly when
    they have the same token sequence, so hashing tokens stands in for building the normal
    form (no text is copied on the common path)."""
    return tokenize_forms(texts, [form])[0]


def tokenize_forms(texts: pa.Array | pa.ChunkedArray, forms: list[NormalForm]) -> list[TokenSpans]:
    """:func:`tokenize` for several forms sharing one lower-casing (when they all lower-case,
    or none does) and one classification of the characters.

    Texts holding characters that vanish (format characters) or become ``0`` (non-ASCII
    digits, with ``digits``) go through a slower path that rewrites their bytes; the others
    are not held up by them. Both paths give the same tokens for the same text.
    """
    if len({f.lowercase for f in forms}) > 1:
        return [tokenize_forms(texts, [f])[0] for f in forms]
    if forms[0].lowercase:
        texts = pc.utf8_lower(texts)
        forms = [NormalForm(False, f.actions) for f in forms]
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks() if texts.num_chunks != 1 else texts.chunk(0)
    data, offsets = utf8_buffers(texts)
    n = len(offsets) - 1
    cls = np.frombuffer(bytearray(data).translate(_class_tables()[0]), dtype=np.uint8)
    leads = lead_cls = None
    if data.size and int(data.max()) >= 0x80:
        # Fast path: continuation bytes count as token bytes and only lead bytes get their
        # character's class; the stray tokens this makes of a separator's continuation bytes
        # are trimmed in _spans.
        leads = np.flatnonzero(cls == _LEAD)
        lead_cls = _lead_classes(data, leads)
        cls = cls.copy()
        cls[leads] = lead_cls
    out = []
    for form in forms:
        stray = False
        if leads is not None:
            lead_act = np.asarray(form.actions, dtype=np.uint8)[lead_cls]
            rewrite = (lead_act == DROP) | (lead_act == ZERO)
            if rewrite.any():
                slow = np.zeros(n, dtype=bool)
                slow[np.searchsorted(offsets, leads[rewrite], side="right") - 1] = True
                out.append(_merge(texts, slow, form))
                continue
            stray = bool((lead_act == SEP).any())
        act = np.frombuffer(cls.tobytes().translate(_action_table(form)), dtype=np.uint8)
        out.append(_spans(data, offsets, act, form, stray))
    return out


def _tokenize_rewriting(texts: pa.Array, form: NormalForm) -> TokenSpans:
    """The slow path: every byte gets its character's action, then the bytes are rewritten
    (format characters removed, digits turned to ``0``)."""
    data, offsets = utf8_buffers(texts)
    act = byte_actions(data, form)
    if ZERO in form.actions:
        data = np.where(act == ZERO, np.uint8(0x30), data)
    keep = act != DROP
    data, act, offsets = data[keep], act[keep], _shrink_offsets(offsets, keep)
    return _spans(data, offsets, act, form, False)


def _merge(texts: pa.Array, slow: np.ndarray, form: NormalForm) -> TokenSpans:
    """Tokens of texts split between the fast (``~slow``) and slow path, in text order."""
    fast_idx, slow_idx = np.flatnonzero(~slow), np.flatnonzero(slow)
    a = tokenize(texts.take(pa.array(fast_idx)), form) if fast_idx.size else None
    b = _tokenize_rewriting(texts.take(pa.array(slow_idx)), form)
    parts = [p for p in (a, b) if p is not None]
    who = np.concatenate([fast_idx, slow_idx])  # original text of each part's text, in part order
    counts_parts = np.concatenate([p.counts for p in parts])
    data = np.concatenate([p.data for p in parts])
    shift = np.cumsum([0] + [len(p.data) for p in parts[:-1]])
    starts = np.concatenate([p.starts + d for p, d in zip(parts, shift)])
    ends = np.concatenate([p.ends + d for p, d in zip(parts, shift)])
    first_parts = np.concatenate([p.doc_offsets[:-1] + o for p, o in
                                  zip(parts, np.cumsum([0] + [len(p.starts) for p in parts[:-1]]))])
    n = len(slow)
    counts = np.zeros(n, dtype=np.int64)
    counts[who] = counts_parts
    first = np.zeros(n, dtype=np.int64)
    first[who] = first_parts
    doc_offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(counts, out=doc_offsets[1:])
    src = np.repeat(first - doc_offsets[:-1], counts) + np.arange(doc_offsets[-1])
    return TokenSpans(data, starts[src], ends[src], doc_offsets)


def _spans(data: np.ndarray, offsets: np.ndarray, act: np.ndarray, form: NormalForm, stray_tokens: bool) -> TokenSpans:
    """Token spans from the per-byte actions (continuation bytes of kept characters solid)."""
    if data.size == 0:
        z = np.zeros(0, np.int64)
        return TokenSpans(data, z, z, np.zeros(len(offsets), np.int64))
    if ZERO in form.actions:
        data = np.where(act == ZERO, np.uint8(0x30), data)
    solid = np.zeros(len(data) + 2, dtype=bool)
    solid[1:-1] = act != SEP
    # a token starts at a solid byte after a separator or at a text start, and ends likewise
    before = solid[:-2].copy()
    before[offsets[:-1][offsets[:-1] < len(data)]] = False
    starts = np.flatnonzero(solid[1:-1] & ~before)
    after = solid[2:].copy()
    after[offsets[1:][offsets[1:] > 0] - 1] = False
    ends = np.flatnonzero(solid[1:-1] & ~after) + 1
    if stray_tokens:  # a token cannot start with a continuation byte: skip them, drop what is left empty
        stray = np.flatnonzero((data[starts] & 0xC0) == 0x80)
        if stray.size:
            pos, end = starts[stray], ends[stray]
            for _ in range(3):
                pos = np.where((pos < end) & ((data[np.minimum(pos, len(data) - 1)] & 0xC0) == 0x80), pos + 1, pos)
            starts[stray] = pos
            empty = stray[pos == end]
            if empty.size:
                starts, ends = np.delete(starts, empty), np.delete(ends, empty)
    return TokenSpans(data, starts, ends, np.searchsorted(starts, offsets).astype(np.int64))


def normalise(texts: pa.Array | pa.ChunkedArray, form: NormalForm) -> Normalised:
    """The normal form of every text of a string column, as one buffer (tokens joined by one space)."""
    if form.lowercase:
        texts = pc.utf8_lower(texts)
    data, offsets = utf8_buffers(texts)
    n = len(offsets) - 1
    if data.size == 0:
        return Normalised(np.zeros(0, np.uint8), np.zeros(n + 1, np.int64))
    act = byte_actions(data, form)
    data = np.where(act == ZERO, np.uint8(0x30), data) if ZERO in form.actions else data.copy()
    sep = act == SEP
    keep = (act != SEP) & (act != DROP)
    # a separator run (DROP characters inside it do not break it) becomes one space, but only
    # between two kept characters of the same text
    visible = act != DROP
    run_start = sep & visible
    prev_sep = np.zeros(len(data), dtype=bool)
    idx = np.flatnonzero(visible)
    prev_sep[idx[1:]] = sep[idx[:-1]]
    run_start &= ~prev_sep
    run_start[offsets[:-1][offsets[:-1] < len(data)]] = sep[offsets[:-1][offsets[:-1] < len(data)]]
    starts = np.flatnonzero(run_start)
    solid = np.zeros(len(data) + 1, dtype=np.int64)  # solid[i]: kept bytes before byte i
    np.cumsum(keep, out=solid[1:])
    doc = np.searchsorted(offsets, starts, side="right") - 1
    inner = (solid[starts] > solid[offsets[doc]]) & (solid[offsets[doc + 1]] > solid[starts])
    keep[starts[inner]] = True
    data[starts[inner]] = 0x20
    return Normalised(data[keep], _shrink_offsets(offsets, keep))


def _shrink_offsets(offsets: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Offsets of the same texts after keeping only the bytes where ``keep`` is true."""
    kept_before = np.zeros(len(keep) + 1, dtype=np.int64)
    np.cumsum(keep, out=kept_before[1:])
    return kept_before[offsets]
