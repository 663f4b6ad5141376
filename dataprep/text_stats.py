"""Vectorised measurements of a batch of texts, for the quality rules.

:class:`TextStats` splits a batch once into words, lines and paragraphs with Arrow kernels and
answers every per-row question (word count, duplicated lines, repeated n-grams...) with numpy
over those flat arrays; nothing loops over rows in Python. Each measurement is computed on
first use, so a stage pays only for the rules it runs.

Definitions shared by every rule:

* **word**: a whitespace-separated token with leading and trailing punctuation and symbols
  (Unicode categories P and S) removed; a token that is only punctuation/symbols is not a word.
  This is close to what the reference implementations get from a word tokenizer (``Hello,`` ->
  ``Hello``), without one per language. N-grams are built from lowercased words.
* **line**: a ``\\n``-separated piece with surrounding whitespace removed; blank lines are not
  lines (they separate paragraphs).
* **paragraph**: a piece between blank lines, surrounding whitespace removed.
* characters are Unicode code points.
"""

from __future__ import annotations

from functools import cached_property

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_EDGE_PUNCTUATION = r"^[\p{P}\p{S}]+|[\p{P}\p{S}]+$"
#: a line ends a sentence: . ! ? or a closing quote (C4 keeps lines ending in . ! ? " ') and
#: their full-width/CJK forms; a line ending in an ellipsis does not count (C4)
TERMINAL_PUNCTUATION = r"[.!?\"'”’»。！？‼⁉]$"
ELLIPSIS_END = r"(?:\.\.\.|…)$"
#: a line that starts with a bullet: a bullet character, or '-', '–', '*' followed by a space
BULLET_START = r"^(?:[•‣◦⁃▪▫●○■□➢➤►▶∙]|[-–*]\s)"
#: sentence ends inside a line: terminal punctuation, closing quotes/brackets, then space or end
SENTENCE_END = r"[.!?。！？]+[\"'”’»)\]]*(?:\s|$)"
POLICY_PHRASES = ("terms of use", "privacy policy", "cookie policy", "uses cookies", "use of cookies", "use cookies")


def _np(a) -> np.ndarray:
    return a.to_numpy(zero_copy_only=False)


def ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator, 0 where the denominator is 0."""
    num = np.asarray(numerator, dtype=np.float64)
    den = np.asarray(denominator, dtype=np.float64)
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


def first_occurrence(values: pa.Array, rows: np.ndarray) -> np.ndarray:
    """True where ``values[i]`` is the first of its value within its row."""
    if len(values) == 0:
        return np.zeros(0, dtype=bool)
    ids = _np(pc.dictionary_encode(values).indices).astype(np.int64)
    _, first = np.unique(rows * (int(ids.max()) + 1) + ids, return_index=True)
    out = np.zeros(len(ids), dtype=bool)
    out[first] = True
    return out


class TextStats:
    """Measurements of ``texts`` (one per row), computed on first use."""

    def __init__(self, texts: pa.Array | pa.ChunkedArray) -> None:
        self.texts = texts.combine_chunks() if isinstance(texts, pa.ChunkedArray) else texts
        self.n = len(self.texts)
        self._ngrams: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        self._mentions: dict[str, np.ndarray] = {}

    def per_row(self, rows: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        """Sum of ``weights`` (or a count) per row."""
        out = np.bincount(rows, weights=weights, minlength=self.n)
        return out if weights is not None else out.astype(np.int64)

    def per_row_max(self, rows: np.ndarray, values: np.ndarray) -> np.ndarray:
        out = np.zeros(self.n, dtype=np.int64)
        np.maximum.at(out, rows, values)
        return out

    # ------------------------------------------------------------------ whole text

    @cached_property
    def lowered(self) -> pa.Array:
        return pc.utf8_lower(self.texts)

    def count(self, substring: str, ignore_case: bool = False) -> np.ndarray:
        """Non-overlapping occurrences of ``substring`` per row."""
        return _np(pc.count_substring(self.texts, substring, ignore_case=ignore_case)).astype(np.int64)

    # ------------------------------------------------------------------ words

    @cached_property
    def _tokens(self) -> tuple[pa.Array, np.ndarray]:
        split = pc.utf8_split_whitespace(self.texts)
        return pc.list_flatten(split), _np(pc.list_parent_indices(split)).astype(np.int64)

    @cached_property
    def _words(self) -> tuple[pa.Array, np.ndarray]:
        tokens, rows = self._tokens
        # most tokens are letters and digits only: strip the others (a regex is 10x a type check)
        other = pc.invert(pc.utf8_is_alnum(tokens))
        stripped = pc.replace_substring_regex(tokens.filter(other), _EDGE_PUNCTUATION, "")
        words = pc.replace_with_mask(tokens, other, stripped)
        keep = pc.greater(pc.utf8_length(words), 0)
        return words.filter(keep), rows[_np(keep)]

    @property
    def words(self) -> pa.Array:
        return self._words[0]

    @property
    def word_row(self) -> np.ndarray:
        return self._words[1]

    @cached_property
    def words_lower(self) -> pa.Array:
        return pc.utf8_lower(self.words)

    @cached_property
    def word_length(self) -> np.ndarray:
        return _np(pc.utf8_length(self.words)).astype(np.int64)

    @cached_property
    def word_count(self) -> np.ndarray:
        return self.per_row(self.word_row)

    @cached_property
    def word_chars(self) -> np.ndarray:
        return self.per_row(self.word_row, self.word_length)

    @cached_property
    def max_token_length(self) -> np.ndarray:
        """Longest whitespace-separated token per row, punctuation included (C4's 'word')."""
        tokens, rows = self._tokens
        return self.per_row_max(rows, _np(pc.utf8_length(tokens)).astype(np.int64))

    @cached_property
    def alpha_words(self) -> np.ndarray:
        """Words with at least one letter, per row."""
        letters = _np(pc.utf8_is_alpha(self.words))
        mixed = ~letters
        letters[mixed] = _np(pc.match_substring_regex(self.words.filter(pa.array(mixed)), r"\pL"))
        return self.per_row(self.word_row[letters])

    def distinct_words_in(self, vocabulary: list[str]) -> np.ndarray:
        """How many different words of ``vocabulary`` each row contains (lowercased)."""
        index = _np(pc.index_in(self.words_lower, value_set=pa.array([w.lower() for w in vocabulary], pa.string())))
        hit = ~np.isnan(index) if index.dtype.kind == "f" else index >= 0
        rows, which = self.word_row[hit], index[hit].astype(np.int64)
        pairs = np.unique(rows * len(vocabulary) + which)
        return self.per_row(pairs // len(vocabulary))

    # ------------------------------------------------------------------ lines and paragraphs

    @staticmethod
    def _pieces(split: pa.Array) -> tuple[pa.Array, np.ndarray]:
        rows = _np(pc.list_parent_indices(split)).astype(np.int64)
        pieces = pc.utf8_trim_whitespace(pc.list_flatten(split))
        keep = pc.greater(pc.utf8_length(pieces), 0)
        return pieces.filter(keep), rows[_np(keep)]

    @cached_property
    def _lines(self) -> tuple[pa.Array, np.ndarray]:
        return self._pieces(pc.split_pattern(self.texts, "\n"))

    @property
    def lines(self) -> pa.Array:
        return self._lines[0]

    @property
    def line_row(self) -> np.ndarray:
        return self._lines[1]

    @cached_property
    def line_length(self) -> np.ndarray:
        return _np(pc.utf8_length(self.lines)).astype(np.int64)

    @cached_property
    def line_count(self) -> np.ndarray:
        return self.per_row(self.line_row)

    def line_fraction(self, mask: np.ndarray) -> np.ndarray:
        """Fraction of each row's lines where ``mask`` (one value per line) is true."""
        return ratio(self.per_row(self.line_row[mask]), self.line_count)

    def lines_matching(self, pattern: str) -> np.ndarray:
        return _np(pc.match_substring_regex(self.lines, pattern))

    def lines_mentioning(self, pattern: str) -> np.ndarray:
        """Lines where the regex ``pattern`` matches, ignoring case. Rare phrases: the whole texts
        are checked first and only the lines of the rows that match are looked at."""
        if pattern not in self._mentions:
            out = np.zeros(len(self.lines), dtype=bool)
            rows = _np(pc.match_substring_regex(self.texts, pattern, ignore_case=True))
            if rows.any():
                candidates = rows[self.line_row]
                out[candidates] = _np(pc.match_substring_regex(
                    self.lines.filter(pa.array(candidates)), pattern, ignore_case=True))
            self._mentions[pattern] = out
        return self._mentions[pattern]

    @cached_property
    def line_words(self) -> np.ndarray:
        """Whitespace-separated tokens per line."""
        return _np(pc.list_value_length(pc.utf8_split_whitespace(self.lines))).astype(np.int64)

    @cached_property
    def _paragraphs(self) -> tuple[pa.Array, np.ndarray]:
        return self._pieces(pc.split_pattern_regex(self.texts, r"\n[ \t]*\n"))

    def _repetition(self, pieces: pa.Array, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per row: the fraction of pieces that repeat an earlier piece of the row, and the
        fraction of the pieces' characters that sit in such repeats."""
        repeat = ~first_occurrence(pieces, rows)
        length = _np(pc.utf8_length(pieces)).astype(np.float64)
        fraction = ratio(self.per_row(rows[repeat]), self.per_row(rows))
        chars = ratio(self.per_row(rows, length * repeat), self.per_row(rows, length))
        return fraction, chars

    @cached_property
    def line_repetition(self) -> tuple[np.ndarray, np.ndarray]:
        return self._repetition(*self._lines)

    @cached_property
    def paragraph_repetition(self) -> tuple[np.ndarray, np.ndarray]:
        return self._repetition(*self._paragraphs)

    # ------------------------------------------------------------------ n-grams

    @cached_property
    def _word_ids(self) -> tuple[np.ndarray, int]:
        ids = _np(pc.dictionary_encode(self.words_lower).indices).astype(np.int64)
        return ids, int(ids.max()) + 1 if len(ids) else 1

    def repeated_ngrams(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """The occurrences of the word n-grams that occur at least twice in their row: their start
        positions (ascending) and, for each, how often its n-gram occurs in the row.

        Built up from (n-1)-grams, exactly (no hashing): an n-gram can repeat only where the
        (n-1)-grams at its start and at the next word both repeat, so each level looks only at
        the survivors of the one before, and n-grams are numbered by the pair (number of the
        (n-1)-gram, last word). Typical text keeps few positions past n = 3.
        """
        if n not in self._ngrams:
            ids, vocabulary = self._word_ids
            rows = self.word_row
            if n == 1:
                start, key = np.arange(len(ids)), rows * vocabulary + ids
            else:
                prev_start, prev_number = self._repeated_ngram_numbers(n - 1)
                nxt = np.searchsorted(prev_start, prev_start + 1)
                ok = nxt < len(prev_start)
                ok[ok] = prev_start[nxt[ok]] == prev_start[ok] + 1
                last = prev_start + n - 1
                ok &= last < len(ids)
                ok[ok] = rows[last[ok]] == rows[prev_start[ok]]
                start, key = prev_start[ok], prev_number[ok] * vocabulary + ids[last[ok]]
            _, number, counts = np.unique(key, return_inverse=True, return_counts=True)
            occurrences = counts[number]
            repeated = occurrences >= 2
            self._ngrams[n] = (start[repeated], number[repeated], occurrences[repeated])
        start, _, occurrences = self._ngrams[n]
        return start, occurrences

    def _repeated_ngram_numbers(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        self.repeated_ngrams(n)
        start, number, _ = self._ngrams[n]
        return start, number

    @cached_property
    def _cumulative_length(self) -> np.ndarray:
        return np.concatenate([[0], np.cumsum(self.word_length)])

    def top_ngram_char_fraction(self, n: int) -> np.ndarray:
        """Gopher: characters of the most frequent n-gram times its count, over all word characters.
        The most frequent is the one with the highest count, ties to the longest; an n-gram that
        occurs once is not a repetition (fraction 0). Capped at 1 (occurrences may overlap)."""
        start, occurrences = self.repeated_ngrams(n)
        chars = self._cumulative_length[start + n] - self._cumulative_length[start]
        rows = self.word_row[start]
        best = np.zeros(self.n, dtype=np.float64)
        if len(start):
            order = np.lexsort((chars, occurrences, rows))  # the best of each row comes last
            last = np.ones(len(order), dtype=bool)
            last[:-1] = rows[order][1:] != rows[order][:-1]
            pick = order[last]
            best[rows[pick]] = occurrences[pick] * chars[pick]
        return np.minimum(1.0, ratio(best, self.word_chars))

    def duplicate_ngram_char_fraction(self, n: int) -> np.ndarray:
        """Gopher: fraction of word characters covered by an n-gram that occurs more than once in
        the row, each character counted once however many repeated n-grams cover it."""
        starts, _ = self.repeated_ngrams(n)
        total = len(self.word_length)
        # +1 where a repeated n-gram starts, -1 just after it ends: a running sum > 0 means covered
        cover = np.cumsum(np.bincount(starts, minlength=total + 1) - np.bincount(starts + n, minlength=total + 1))
        covered = cover[:total] > 0
        return ratio(self.per_row(self.word_row, self.word_length * covered), self.word_chars)
