"""The ``quality`` stage: named heuristic rules, each a signal column and a threshold.

Score once, filter later: every enabled rule stores its signal as a column (``q_word_count``,
``q_dup_line_fraction``...), whatever its action. A rule with ``action: reject`` rejects the rows
that fail it, with the rule's name as the reason and the signal and threshold in the detail; a
rule with ``action: annotate`` only lists itself in the row's ``q_flags`` column. Rows that fail
several reject rules are rejected once, under the first rule in the order below; the detail names
the others.

The rules are the published heuristics of three pipelines, with their published thresholds:

* Gopher (Rae et al. 2021, *Scaling Language Models: Methods, Analysis & Insights from Training
  Gopher*, appendix A.1.1: MassiveText quality filters, and table A1: repetition filters);
* C4 (Raffel et al. 2020, *Exploring the Limits of Transfer Learning with a Unified Text-to-Text
  Transformer*, section 2.2, and the TFDS c4_utils code it points to);
* FineWeb (Penedo et al. 2024, *The FineWeb Datasets: Decanting the Web for the Finest Text Data
  at Scale*, section 3.3.5), thresholds as in datatrove's ``FineWebQualityFilter``, which built it.

Word, line and paragraph are defined once for all rules in :mod:`corpusmill.dataprep.text_stats`;
where a definition differs from a reference implementation the rule's docstring says so.

Instruction and chat rows (a prompt and response, or messages) have rules of their own (:data:`SFT_RULES`):
what goes wrong in SFT data is an empty, placeholder, refusing, repeating, looping or cut-off answer,
a conversation without an answer, a row too long for the model. They read the response side (every
assistant turn; the last one for emptiness and truncation, where those show) and the prompt where a
rule compares with it. The ``sft`` preset turns them on and the web-document rules off; it is the
default on instruction and chat rows, ``fineweb`` the default on text. The web-document rules judge
``text`` (on SFT rows, the text derived from the trained fields) when a web preset is asked for.

Every reject rule counts the rows it fails (``<rule>_failed``) in the stage's counters; ``corpusmill
run`` prints each rule's share of the stage's input and warns when one passes ``warn_share``
(:func:`run_notes`).

Adding a rule is one small class: a name, a column, a Config with its thresholds, and
``signal(stats) -> one value per row``; then list it in :data:`RULES` (and in the presets).
"""

from __future__ import annotations

import re
from functools import cached_property
from typing import Any, ClassVar, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field, create_model, model_validator

from corpusmill import schema as S
from corpusmill.dataprep.text_stats import (
    BULLET_START, ELLIPSIS_END, POLICY_PHRASES, SENTENCE_END, TERMINAL_PUNCTUATION, TextStats, ratio,
)
from corpusmill.sft import is_sft
from corpusmill.stage import BatchInfo, Stage, StageConfig, StageOutput

#: the column listing, per row, every enabled rule it fails (reject and annotate rules)
FLAGS = "q_flags"
#: the language column written by the language stage; rules with ``languages`` read it
LANG = "lang"

Action = Literal["reject", "annotate", "disabled"]


class RuleConfig(StageConfig):
    """What every rule has: an action, and optionally the languages it judges."""

    action: Action | None = Field(
        None,
        description="reject: failing rows are rejected with the rule's name as reason; annotate: "
        "failing rows are kept and flagged in q_flags; disabled: the rule and its column are off. "
        "The default (null) comes from the stage's preset",
    )
    languages: list[str] | None = Field(
        None,
        description="judge only rows whose 'lang' column is one of these codes (other rows keep the "
        "signal and never fail); null = every row. Without a 'lang' column every row is judged",
    )


def _min(default, what: str):
    return Field(default, description=f"rows with {what} below this fail; null = no lower bound")


def _max(default, what: str):
    return Field(default, description=f"rows with {what} above this fail; null = no upper bound")


class QualityRule:
    """A named threshold on one signal. Subclasses set ``name``, ``column``, ``Config`` (with
    ``min`` and/or ``max`` fields) and implement :meth:`signal`."""

    name: ClassVar[str]
    #: the signal column; rules that share one compute the same, config-independent signal
    column: ClassVar[str]
    dtype: ClassVar[pa.DataType] = pa.float64()
    Config: ClassVar[type[RuleConfig]] = RuleConfig
    #: True where the published rule also fails a value equal to the bound (FineWeb's <= and >=)
    fail_at_bound: ClassVar[bool] = False

    def __init__(self, config: RuleConfig) -> None:
        self.config = config
        self.low = getattr(config, "min", None)
        self.high = getattr(config, "max", None)

    def signal(self, stats: TextStats) -> np.ndarray:
        raise NotImplementedError

    def fails(self, values: np.ndarray) -> np.ndarray:
        out = np.zeros(len(values), dtype=bool)
        if self.low is not None:
            out |= values <= self.low if self.fail_at_bound else values < self.low
        if self.high is not None:
            out |= values >= self.high if self.fail_at_bound else values > self.high
        return out

    def columns(self) -> list[tuple[str, pa.DataType]]:
        """The signal columns the rule stores: its ``column``, and more for a rule with several signals."""
        return [(self.column, self.dtype)]

    def failing(self, signals: dict[str, np.ndarray]) -> np.ndarray:
        """Which rows fail, given the batch's signal columns."""
        return self.fails(signals[self.column])

    def why(self, signals: dict[str, np.ndarray], rows: np.ndarray) -> list[str]:
        """Why each of ``rows`` fails (see :meth:`explain`)."""
        return [self.explain(v) for v in signals[self.column][rows].tolist()]

    def explain(self, value) -> str:
        """Why a row with signal ``value`` fails, e.g. 'q_word_count=12 < min 50'."""
        shown = f"{value:.4g}" if isinstance(value, float) else str(value)
        eq = "=" if self.fail_at_bound else ""
        low, high = self.low, self.high
        if low is not None and (value <= low if self.fail_at_bound else value < low):
            return f"{self.column}={shown} <{eq} min {low}"
        return f"{self.column}={shown} >{eq} max {high}"


# ----------------------------------------------------------------------------- Gopher quality


class GopherWordCount(QualityRule):
    """Gopher: between 50 and 100,000 words."""

    name, column, dtype = "gopher_word_count", "q_word_count", pa.int64()

    class Config(RuleConfig):
        min: int | None = _min(50, "fewer words")
        max: int | None = _max(100_000, "more words")

    def signal(self, stats):
        return stats.word_count


class GopherMeanWordLength(QualityRule):
    """Gopher: mean word length between 3 and 10 characters."""

    name, column = "gopher_mean_word_length", "q_mean_word_length"

    class Config(RuleConfig):
        min: float | None = _min(3.0, "a shorter mean word length (characters)")
        max: float | None = _max(10.0, "a longer mean word length (characters)")

    def signal(self, stats):
        return ratio(stats.word_chars, stats.word_count)


class GopherSymbolWordRatio(QualityRule):
    """Gopher: symbol-to-word ratio at most 0.1, for the hash symbol or the ellipsis (the larger
    of '#' per word and '...'/'…' per word)."""

    name, column = "gopher_symbol_word_ratio", "q_symbol_word_ratio"

    class Config(RuleConfig):
        max: float | None = _max(0.1, "more '#' or ellipses per word")

    def signal(self, stats):
        words = np.maximum(stats.word_count, 1)
        hashes = stats.count("#")
        ellipses = stats.count("...") + stats.count("…")
        return np.maximum(hashes, ellipses) / words


class GopherBulletLines(QualityRule):
    """Gopher: at most 90% of lines start with a bullet point (•, ▪, ►..., or '-', '–', '*' and
    a space; the reference code counts only '•')."""

    name, column = "gopher_bullet_lines", "q_bullet_line_fraction"

    class Config(RuleConfig):
        max: float | None = _max(0.9, "a larger fraction of lines starting with a bullet")

    def signal(self, stats):
        return stats.line_fraction(stats.lines_matching(BULLET_START))


class GopherEllipsisLines(QualityRule):
    """Gopher: at most 30% of lines end with an ellipsis ('...' or '…')."""

    name, column = "gopher_ellipsis_lines", "q_ellipsis_line_fraction"

    class Config(RuleConfig):
        max: float | None = _max(0.3, "a larger fraction of lines ending in an ellipsis")

    def signal(self, stats):
        return stats.line_fraction(stats.lines_matching(ELLIPSIS_END))


class GopherAlphaWords(QualityRule):
    """Gopher: at least 80% of words contain an alphabetic character."""

    name, column = "gopher_alpha_words", "q_alpha_word_fraction"

    class Config(RuleConfig):
        min: float | None = _min(0.8, "a smaller fraction of words with a letter")

    def signal(self, stats):
        return ratio(stats.alpha_words, stats.word_count)


#: Gopher's stop words (English): a document must contain at least two of them
GOPHER_STOP_WORDS = ["the", "be", "to", "of", "and", "that", "have", "with"]


class GopherStopWords(QualityRule):
    """Gopher: at least 2 different words of the English stop words the, be, to, of, and, that,
    have, with (case-insensitive; 'to ... to' is one). English only, so by default it judges rows
    whose ``lang`` is 'en' (or every row when there is no ``lang`` column: run the language stage
    first on multilingual data, or give ``words`` and ``languages`` of your own)."""

    name, column, dtype = "gopher_stop_words", "q_stop_word_count", pa.int64()

    class Config(RuleConfig):
        min: int | None = _min(2, "fewer different stop words")
        words: list[str] = Field(GOPHER_STOP_WORDS, description="the stop words (matched lowercased)")
        languages: list[str] | None = Field(["en"], description=RuleConfig.model_fields["languages"].description)

    def signal(self, stats):
        return stats.distinct_words_in(self.config.words)


# ----------------------------------------------------------------------------- Gopher repetition


class GopherDuplicateLines(QualityRule):
    """Gopher table A1: at most 30% of lines repeat an earlier line of the document."""

    name, column = "gopher_dup_lines", "q_dup_line_fraction"

    class Config(RuleConfig):
        max: float | None = _max(0.3, "a larger fraction of repeated lines")

    def signal(self, stats):
        return stats.line_repetition[0]


class GopherDuplicateParagraphs(QualityRule):
    """Gopher table A1: at most 30% of paragraphs repeat an earlier paragraph."""

    name, column = "gopher_dup_paragraphs", "q_dup_paragraph_fraction"

    class Config(RuleConfig):
        max: float | None = _max(0.3, "a larger fraction of repeated paragraphs")

    def signal(self, stats):
        return stats.paragraph_repetition[0]


class GopherDuplicateLineChars(QualityRule):
    """Gopher table A1: at most 20% of the characters of lines are in lines that repeat an
    earlier line."""

    name, column = "gopher_dup_line_chars", "q_dup_line_char_fraction"

    class Config(RuleConfig):
        max: float | None = _max(0.2, "a larger fraction of characters in repeated lines")

    def signal(self, stats):
        return stats.line_repetition[1]


class GopherDuplicateParagraphChars(QualityRule):
    """Gopher table A1: at most 20% of the characters of paragraphs are in repeated paragraphs."""

    name, column = "gopher_dup_paragraph_chars", "q_dup_paragraph_char_fraction"

    class Config(RuleConfig):
        max: float | None = _max(0.2, "a larger fraction of characters in repeated paragraphs")

    def signal(self, stats):
        return stats.paragraph_repetition[1]


class _TopNgram(QualityRule):
    """Gopher table A1: the most frequent word n-gram covers at most this fraction of the
    characters. An n-gram that occurs once is not counted (the reference code counts it, which
    rejects most short texts)."""

    n: ClassVar[int]

    def signal(self, stats):
        return stats.top_ngram_char_fraction(self.n)


class GopherTop2gram(_TopNgram):
    __doc__ = _TopNgram.__doc__
    name, column, n = "gopher_top_2gram", "q_top_2gram_char_fraction", 2

    class Config(RuleConfig):
        max: float | None = _max(0.20, "a larger character fraction in the most frequent 2-gram")


class GopherTop3gram(_TopNgram):
    __doc__ = _TopNgram.__doc__
    name, column, n = "gopher_top_3gram", "q_top_3gram_char_fraction", 3

    class Config(RuleConfig):
        max: float | None = _max(0.18, "a larger character fraction in the most frequent 3-gram")


class GopherTop4gram(_TopNgram):
    __doc__ = _TopNgram.__doc__
    name, column, n = "gopher_top_4gram", "q_top_4gram_char_fraction", 4

    class Config(RuleConfig):
        max: float | None = _max(0.16, "a larger character fraction in the most frequent 4-gram")


class _DuplicateNgram(QualityRule):
    """Gopher table A1: characters covered by word n-grams that occur more than once (every
    occurrence, each character counted once) are at most this fraction of all word characters."""

    n: ClassVar[int]

    def signal(self, stats):
        return stats.duplicate_ngram_char_fraction(self.n)


class GopherDup5gram(_DuplicateNgram):
    __doc__ = _DuplicateNgram.__doc__
    name, column, n = "gopher_dup_5gram", "q_dup_5gram_char_fraction", 5

    class Config(RuleConfig):
        max: float | None = _max(0.15, "a larger character fraction in repeated 5-grams")


class GopherDup6gram(_DuplicateNgram):
    __doc__ = _DuplicateNgram.__doc__
    name, column, n = "gopher_dup_6gram", "q_dup_6gram_char_fraction", 6

    class Config(RuleConfig):
        max: float | None = _max(0.14, "a larger character fraction in repeated 6-grams")


class GopherDup7gram(_DuplicateNgram):
    __doc__ = _DuplicateNgram.__doc__
    name, column, n = "gopher_dup_7gram", "q_dup_7gram_char_fraction", 7

    class Config(RuleConfig):
        max: float | None = _max(0.13, "a larger character fraction in repeated 7-grams")


class GopherDup8gram(_DuplicateNgram):
    __doc__ = _DuplicateNgram.__doc__
    name, column, n = "gopher_dup_8gram", "q_dup_8gram_char_fraction", 8

    class Config(RuleConfig):
        max: float | None = _max(0.12, "a larger character fraction in repeated 8-grams")


class GopherDup9gram(_DuplicateNgram):
    __doc__ = _DuplicateNgram.__doc__
    name, column, n = "gopher_dup_9gram", "q_dup_9gram_char_fraction", 9

    class Config(RuleConfig):
        max: float | None = _max(0.11, "a larger character fraction in repeated 9-grams")


class GopherDup10gram(_DuplicateNgram):
    __doc__ = _DuplicateNgram.__doc__
    name, column, n = "gopher_dup_10gram", "q_dup_10gram_char_fraction", 10

    class Config(RuleConfig):
        max: float | None = _max(0.10, "a larger character fraction in repeated 10-grams")


# ----------------------------------------------------------------------------- C4


class C4TerminalPunctuation(QualityRule):
    """C4 keeps only lines that end in terminal punctuation (. ! ? " ', here also ” ’ » and
    full-width forms; not an ellipsis). A document-level stage does not edit text, so the signal is
    the fraction of such lines and the rule fails documents where any line lacks it (min 1.0 = the
    documents C4 would leave untouched). FineWeb found this rule removes too much and dropped it,
    hence annotate in the fineweb preset."""

    name, column = "c4_terminal_punctuation", "q_punct_line_fraction"

    class Config(RuleConfig):
        min: float | None = _min(1.0, "a smaller fraction of lines ending in terminal punctuation")

    def signal(self, stats):
        return stats.line_fraction(_terminal_lines(stats))


def _terminal_lines(stats: TextStats) -> np.ndarray:
    return stats.lines_matching(TERMINAL_PUNCTUATION) & ~stats.lines_matching(ELLIPSIS_END)


class C4MinSentences(QualityRule):
    """C4: at least 5 sentences, counted in the lines C4 keeps: lines of at least 3 words that do
    not mention javascript or a cookie/terms policy (terminal punctuation is not required, as in
    FineWeb's use of C4; a line counts its sentence ends, at least one)."""

    name, column, dtype = "c4_min_sentences", "q_sentence_count", pa.int64()

    class Config(RuleConfig):
        min: int | None = _min(5, "fewer sentences")
        min_words_per_line: int = Field(3, ge=0, description="C4 drops lines with fewer words; they hold no sentences")

    def signal(self, stats):
        ends = pc.count_substring_regex(stats.lines, SENTENCE_END).to_numpy(zero_copy_only=False)
        kept = (stats.line_words >= self.config.min_words_per_line) & ~_javascript_lines(stats) & ~_policy_lines(stats)
        return stats.per_row(stats.line_row[kept], np.maximum(ends, 1)[kept]).astype(np.int64)


class C4LoremIpsum(QualityRule):
    """C4: no 'lorem ipsum' (case-insensitive) anywhere: placeholder text."""

    name, column, dtype = "c4_lorem_ipsum", "q_lorem_ipsum", pa.int64()

    class Config(RuleConfig):
        max: int | None = _max(0, "more occurrences of 'lorem ipsum'")

    def signal(self, stats):
        return stats.count("lorem ipsum", ignore_case=True)


class C4CurlyBracket(QualityRule):
    """C4: no curly bracket '{' anywhere: code, not natural language. Set ``action: annotate``
    or a higher ``max`` for corpora that hold code on purpose."""

    name, column, dtype = "c4_curly_bracket", "q_curly_brackets", pa.int64()

    class Config(RuleConfig):
        max: int | None = _max(0, "more '{'")

    def signal(self, stats):
        return stats.count("{")


def _javascript_lines(stats: TextStats) -> np.ndarray:
    return stats.lines_mentioning("javascript")


def _policy_lines(stats: TextStats) -> np.ndarray:
    return stats.lines_mentioning("|".join(POLICY_PHRASES))


class C4JavascriptLines(QualityRule):
    """C4 removes every line that mentions 'javascript' ('please enable JavaScript'); here the
    number of such lines. C4 edits the line rather than dropping the page, so every preset
    annotates."""

    name, column, dtype = "c4_javascript", "q_javascript_lines", pa.int64()

    class Config(RuleConfig):
        max: int | None = _max(0, "more lines mentioning javascript")

    def signal(self, stats):
        return stats.per_row(stats.line_row[_javascript_lines(stats)])


class C4PolicyLines(QualityRule):
    """C4 (code) removes lines with 'terms of use', 'privacy policy', 'cookie policy', 'uses
    cookies', 'use of cookies', 'use cookies'; here the number of such lines, annotate in every
    preset (a line rule, see c4_javascript)."""

    name, column, dtype = "c4_policy", "q_policy_lines", pa.int64()

    class Config(RuleConfig):
        max: int | None = _max(0, "more lines with a cookie/terms phrase")

    def signal(self, stats):
        return stats.per_row(stats.line_row[_policy_lines(stats)])


class C4LongWord(QualityRule):
    """C4 (code) removes lines with a word longer than 1000 characters; here the longest
    whitespace-separated token, annotate in every preset (a line rule, see c4_javascript)."""

    name, column, dtype = "c4_long_word", "q_max_word_length", pa.int64()

    class Config(RuleConfig):
        max: int | None = _max(1000, "a longer token (characters)")

    def signal(self, stats):
        return stats.max_token_length


# ----------------------------------------------------------------------------- FineWeb


class FineWebLinePunctuation(QualityRule):
    """FineWeb: more than 12% of lines end in terminal punctuation (fails at <= 0.12). Same
    signal as c4_terminal_punctuation."""

    name, column, fail_at_bound = "fineweb_line_punctuation", "q_punct_line_fraction", True

    class Config(RuleConfig):
        min: float | None = Field(0.12, description="rows whose fraction of lines ending in terminal "
                                  "punctuation is at or below this fail; null = off")

    def signal(self, stats):
        return stats.line_fraction(_terminal_lines(stats))


class FineWebShortLines(QualityRule):
    """FineWeb: less than 67% of lines are short, at most 30 characters (fails at >= 0.67)."""

    name, column, fail_at_bound = "fineweb_short_lines", "q_short_line_fraction", True

    class Config(RuleConfig):
        max: float | None = Field(
            0.67, description="rows whose fraction of short lines is at or above this fail; null = off")
        line_chars: int = Field(30, ge=1, description="a line of at most this many characters is short")

    def signal(self, stats):
        return stats.line_fraction(stats.line_length <= self.config.line_chars)


class FineWebDuplicateLineChars(QualityRule):
    """FineWeb: less than 1% of the characters of lines are in lines that repeat an earlier line
    (fails at >= 0.01; same signal as gopher_dup_line_chars)."""

    name, column, fail_at_bound = "fineweb_dup_line_chars", "q_dup_line_char_fraction", True

    class Config(RuleConfig):
        max: float | None = Field(0.01, description="rows whose fraction of characters in repeated "
                                  "lines is at or above this fail; null = off")

    def signal(self, stats):
        return stats.line_repetition[1]


class FineWebNewlineRatio(QualityRule):
    """FineWeb: at most 0.3 line breaks per word (lists, tables and menus have more)."""

    name, column = "fineweb_newline_ratio", "q_newline_word_ratio"

    class Config(RuleConfig):
        max: float | None = _max(0.3, "more line breaks per word")

    def signal(self, stats):
        return stats.count("\n") / np.maximum(stats.word_count, 1)


# ----------------------------------------------------------------------------- instruction and chat rows


class Answers:
    """The answers of a batch's instruction and chat rows, as flat arrays built once per batch.

    An answer is the response of a single-turn row, or one assistant message of a conversation.
    ``row`` is the row of each; ``last`` marks each row's last answer (the response, or the
    conversation's last assistant turn); ``asked`` is what the answer replies to (the prompt, or the
    message just before an assistant turn when that is a user message; else null); ``calls_tool``
    marks assistant turns whose extra keys hold ``tool_calls`` or ``function_call``. ``sft`` marks
    the instruction and chat rows (a prompt or messages), ``conversation`` the rows with messages.
    """

    def __init__(self, batch: pa.Table) -> None:
        names = batch.column_names
        self.batch, self.n = batch, batch.num_rows
        self.sft = np.zeros(self.n, dtype=bool)
        self.conversation = np.zeros(self.n, dtype=bool)
        #: per conversation row: assistant turns with content (or a tool call)
        self.assistant_turns = np.zeros(self.n, dtype=np.int64)
        texts, rows, last, asked, calls = [], [], [], [], []
        if S.PROMPT in names:
            prompt = _array(batch, S.PROMPT)
            single = prompt.is_valid().to_numpy(zero_copy_only=False)
            idx = np.flatnonzero(single)
            take = pa.array(idx, pa.int64())
            response = _array(batch, S.RESPONSE) if S.RESPONSE in names else pa.nulls(self.n, pa.string())
            texts.append(pc.fill_null(response.take(take), ""))
            rows.append(idx)
            last.append(np.ones(len(idx), dtype=bool))
            asked.append(prompt.take(take))
            calls.append(np.zeros(len(idx), dtype=bool))
            self.sft |= single
        if S.MESSAGES in names:
            messages = _array(batch, S.MESSAGES)
            self.conversation = messages.is_valid().to_numpy(zero_copy_only=False) & ~self.sft
            self.sft |= self.conversation
            flat = pc.list_flatten(messages)
            parent = pc.list_parent_indices(messages).to_numpy(zero_copy_only=False).astype(np.int64)
            content = pc.fill_null(flat.field("content"), "")
            role = flat.field("role")
            user = pc.fill_null(pc.equal(role, "user"), False).to_numpy(zero_copy_only=False)
            answer = pc.fill_null(pc.equal(role, "assistant"), False).to_numpy(zero_copy_only=False)
            answer &= self.conversation[parent]
            if "extra" in [f.name for f in flat.type]:
                tool = pc.fill_null(pc.match_substring_regex(flat.field("extra"), r'"(?:tool_calls|function_call)"'),
                                    False).to_numpy(zero_copy_only=False)
            else:
                tool = np.zeros(len(flat), dtype=bool)
            # the message before each one, when it is the same row's user message
            after_user = np.zeros(len(flat), dtype=bool)
            after_user[1:] = user[:-1] & (parent[1:] == parent[:-1])
            previous = content.take(pa.array(np.maximum(np.arange(len(flat)) - 1, 0), pa.int64()))
            asked_flat = pc.if_else(pa.array(after_user), previous, pa.nulls(len(flat), pa.string()))
            at = np.flatnonzero(answer)
            take = pa.array(at, pa.int64())
            row_of = parent[at]
            is_last = np.ones(len(at), dtype=bool)
            is_last[:-1] = row_of[1:] != row_of[:-1]
            texts.append(content.take(take))
            rows.append(row_of)
            last.append(is_last)
            asked.append(asked_flat.take(take))
            calls.append(tool[at])
            blank = pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(content.take(take))), 0).to_numpy(zero_copy_only=False)
            self.assistant_turns = np.bincount(row_of[~blank | tool[at]], minlength=self.n).astype(np.int64)
        self.texts: pa.Array = pa.concat_arrays([t.cast(pa.string()) for t in texts]) if texts else pa.array([], pa.string())
        self.row = np.concatenate(rows) if rows else np.zeros(0, np.int64)
        self.last = np.concatenate(last) if last else np.zeros(0, bool)
        self.asked: pa.Array = pa.concat_arrays([a.cast(pa.string()) for a in asked]) if asked else pa.array([], pa.string())
        self.calls_tool = np.concatenate(calls) if calls else np.zeros(0, bool)
        #: per row, its last answer's position in the flat arrays, -1 when it has none
        self.last_of_row = np.full(self.n, -1, dtype=np.int64)
        self.last_of_row[self.row[self.last]] = np.flatnonzero(self.last)

    @cached_property
    def stats(self) -> TextStats:
        """Word, line and n-gram measurements of the answers (one 'row' per answer)."""
        return TextStats(self.texts)

    @cached_property
    def normalised(self) -> pa.Array:
        """The answers compared as people read them: NFKC, lower case, typographic apostrophes
        straightened, whitespace runs as one space, trimmed."""
        return normalise(self.texts)

    @cached_property
    def stripped(self) -> pa.Array:
        return pc.utf8_rtrim_whitespace(pc.utf8_ltrim_whitespace(self.texts))

    def count_per_row(self, mask: np.ndarray) -> np.ndarray:
        """How many answers of each row ``mask`` (one value per answer) holds."""
        return np.bincount(self.row[mask], minlength=self.n).astype(np.int64)

    def max_per_row(self, values: np.ndarray) -> np.ndarray:
        out = np.zeros(self.n, dtype=np.asarray(values).dtype)
        np.maximum.at(out, self.row, values)
        return out

    def of_last(self, values: np.ndarray, fill=0) -> np.ndarray:
        """Per row, ``values`` (one per answer) of its last answer; ``fill`` for rows without one."""
        values = np.asarray(values)
        out = np.full(self.n, fill, dtype=values.dtype)
        has = self.last_of_row >= 0
        out[has] = values[self.last_of_row[has]]
        return out


def _array(batch: pa.Table, name: str) -> pa.Array:
    col = batch.column(name)
    return col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col


def normalise(texts: pa.Array) -> pa.Array:
    """NFKC, lower case, ’ as ', whitespace runs as one space, trimmed: how answers and prompts
    are compared (an echo, a placeholder)."""
    out = pc.utf8_lower(pc.utf8_normalize(texts, "NFKC"))
    out = pc.replace_substring(out, "’", "'")
    out = pc.replace_substring_regex(out, r"\s+", " ")
    return pc.utf8_trim_whitespace(out)


def _bools(array) -> np.ndarray:
    return pc.fill_null(array, False).to_numpy(zero_copy_only=False).astype(bool)


class SftRule(QualityRule):
    """A rule on instruction and chat rows. :meth:`measure` reads the batch's :class:`Answers` (the
    response side; the prompt side where the rule says so) and returns the signal per row; rows it
    does not judge (plain-text rows, and those :meth:`judged` leaves out) get a null signal and
    never fail. Signals count answers, so on a conversation they say how many turns failed."""

    dtype: ClassVar[pa.DataType] = pa.int64()

    def measure(self, answers: Answers) -> np.ndarray:
        raise NotImplementedError

    def judged(self, answers: Answers) -> np.ndarray:
        """The rows this rule judges. Default: every instruction and chat row."""
        return answers.sft

    def signals(self, answers: Answers) -> dict[str, np.ndarray]:
        """Every signal column of the rule, one value per row."""
        return {self.column: self.measure(answers)}


#: what a whole answer must not be (compared normalised: lower case, whitespace collapsed, one
#: trailing '.' or '!' dropped): the placeholders of generated and scraped instruction sets
PLACEHOLDERS = [
    "<nooutput>", "<no output>", "nooutput", "no output", "<noinput>", "<empty>", "<blank>", "<none>", "<null>",
    "<placeholder>", "<answer>", "<response>", "<output>", "n/a", "na", "none", "null", "nil", "nan", "undefined",
    "todo", "tbd", "tba", "fixme", "-", "--", "---", "—", "...", "…", "..", ".", "?", "??", "???", "empty", "blank",
    "placeholder", "answer", "response", "output", "lorem ipsum", "xxx", "your answer here", "your response here",
    "answer here", "response here", "insert answer here", "insert response here", "no answer", "no response",
    "not applicable",
]
#: a whole answer that is a fill-in-the-blank template: '[insert ...]', '<your answer>', '{answer}'
PLACEHOLDER_TEMPLATE = (r"^[\[<{(] ?(?:insert|your|add|enter|put|fill in|write|type|answer|response|output|"
                        r"placeholder|todo)\b[^\]>})]*[\]>})]$")


#: one pair of brackets or quotes around a whole answer: '(none)' is compared as 'none'
_WRAPPED = r"^[\[(<{\"'“‘] ?(.*?) ?[\])>}\"'”’]$"


class PlaceholderResponse(SftRule):
    """No answer is a placeholder: a whole answer such as '<nooutput>', 'N/A', '...', 'TODO', '-',
    'none', 'null' (:data:`PLACEHOLDERS`, compared in lower case, whitespace collapsed, one trailing
    '.' or '!' dropped, with or without one pair of brackets or quotes around it), or a template such as '[insert answer here]'. Every assistant turn of a
    conversation is judged. A one-word answer 'None.' to a question whose answer is none is rejected
    too: drop 'none' from ``values`` for such data."""

    name, column = "placeholder_response", "q_placeholder_answers"

    class Config(RuleConfig):
        max: int | None = _max(0, "more placeholder answers")
        values: list[str] = Field(PLACEHOLDERS, description="whole answers that are placeholders (lower case)")

    def measure(self, answers):
        text = pc.replace_substring_regex(answers.normalised, r"(.)[.!]$", r"\1")
        values = pa.array([v.lower() for v in self.config.values], pa.string())
        hit = _bools(pc.is_in(text, value_set=values))
        hit |= _bools(pc.is_in(pc.replace_substring_regex(text, _WRAPPED, r"\1"), value_set=values))
        hit |= _bools(pc.match_substring_regex(answers.normalised, PLACEHOLDER_TEMPLATE))
        return answers.count_per_row(hit & _bools(pc.greater(pc.utf8_length(answers.normalised), 0)))


#: refusal and AI-disclaimer boilerplate, found anywhere in an answer outside quoted spans (a response
#: that quotes the phrase, or code holding it as a string, is about it)
REFUSAL_PHRASES = [
    "as an ai language model", "as a language model", "as an ai model", "as an ai assistant, i cannot",
    "as an artificial intelligence, i", "i'm sorry, but i cannot", "i'm sorry, but i can't", "i am sorry, but i cannot",
    "i am sorry, but i can't", "i'm sorry, i cannot", "i'm sorry, i can't", "sorry, but i cannot", "sorry, but i can't",
    "i cannot fulfill", "i can't fulfill", "i cannot fulfil", "i'm unable to fulfill", "i am unable to fulfill",
    "i cannot comply", "i can't comply", "i cannot assist with", "i can't assist with", "i cannot help with that",
    "i can't help with that", "i cannot provide assistance", "i'm not able to provide", "i am not able to provide",
    "i do not have personal opinions", "i don't have personal opinions", "i don't have the ability to browse",
    "i do not have the ability to browse", "my knowledge cutoff", "my training data only goes",
]
#: refusal openings, matched only where an answer starts (optionally after 'Sorry,' or
#: 'Unfortunately,'): elsewhere 'I am unable to' is ordinary prose
REFUSAL_OPENINGS = [
    "i am unable to", "i'm unable to", "i cannot", "i can't", "i am not able to", "i'm not able to",
    "i won't be able to", "i will not be able to", "i must decline", "i refuse to",
]


#: quoted spans, which an answer mentions rather than says: "...", “...”, `...`, «...», and '...'
#: opened after a space (so that the apostrophe of "I'm" opens nothing)
_QUOTED = r"\"[^\"\n]*\"|“[^”\n]*”|`[^`\n]*`|«[^»\n]*»|(?:^|\s)'[^\n]*?'(?:[\s.,;:!?)]|$)"


def _alternatives(phrases: list[str]) -> str:
    return "|".join(re.escape(p.lower().replace("’", "'")) for p in sorted(phrases, key=len, reverse=True))


class Refusal(SftRule):
    """No answer is refusal or AI-disclaimer boilerplate: a phrase of :data:`REFUSAL_PHRASES`
    ('As an AI language model', "I'm sorry, but I cannot", 'I cannot fulfill'...) anywhere in it, or
    one of :data:`REFUSAL_OPENINGS` ('I am unable to', 'I cannot'...) where it starts. Quoted spans
    ("...", `...`, '...' and their typographic forms) are mentioned, not said, and are not read, so an
    answer about such boilerplate survives. Case-insensitive; every assistant turn is judged."""

    name, column = "refusal", "q_refusal_answers"

    class Config(RuleConfig):
        max: int | None = _max(0, "more refusing answers")
        phrases: list[str] = Field(REFUSAL_PHRASES, description="phrases that refuse wherever they stand")
        openings: list[str] = Field(REFUSAL_OPENINGS, description="phrases that refuse where an answer starts")

    def measure(self, answers):
        text = pc.replace_substring_regex(answers.normalised, _QUOTED, " ")
        hit = np.zeros(len(text), dtype=bool)
        if self.config.phrases:
            hit |= _bools(pc.match_substring_regex(
                text, rf"(?:^|[^\"'“‘«`\w])(?:{_alternatives(self.config.phrases)})"))
        if self.config.openings:
            hit |= _bools(pc.match_substring_regex(
                text, rf"^(?:(?:i'm |i am )?sorry[,.!]? |unfortunately,? |apologies[,.!]? )?"
                      rf"(?:{_alternatives(self.config.openings)})\b"))
        return answers.count_per_row(hit)


class EmptyResponse(SftRule):
    """The answer is not empty or only whitespace: the response, or a conversation's last assistant
    turn (a last turn that only calls a tool, with ``tool_calls``/``function_call`` and no text, is
    not judged). The signal is the answer's length in characters, whitespace trimmed."""

    name, column = "empty_response", "q_response_chars"

    class Config(RuleConfig):
        min: int | None = _min(1, "fewer characters in the (last) answer, whitespace trimmed")

    def measure(self, answers):
        return answers.of_last(pc.utf8_length(answers.stripped).to_numpy(zero_copy_only=False).astype(np.int64))

    def judged(self, answers):
        has = answers.last_of_row >= 0
        has[has] = ~answers.calls_tool[answers.last_of_row[has]]
        return has


class MissingAssistantTurn(SftRule):
    """A conversation has an assistant turn with content (or a tool call): the trainer's target. The
    signal counts them; a conversation whose only assistant turns are empty has 0. A conversation
    whose last assistant turn is empty after earlier ones with content fails empty_response instead.
    Single-turn rows are not judged (their empty response is empty_response's)."""

    name, column = "missing_assistant_turn", "q_assistant_turns"

    class Config(RuleConfig):
        min: int | None = _min(1, "fewer assistant turns with content")

    def measure(self, answers):
        return answers.assistant_turns

    def judged(self, answers):
        return answers.conversation


class ResponseEqualsPrompt(SftRule):
    """No answer repeats what it answers: the response compared with the prompt, an assistant turn
    with the user message just before it, both normalised (NFKC, lower case, whitespace collapsed,
    trailing punctuation dropped). Empty answers are empty_response's."""

    name, column = "response_equals_prompt", "q_echo_answers"

    class Config(RuleConfig):
        max: int | None = _max(0, "more answers that repeat their prompt")

    def measure(self, answers):
        def key(texts):
            return pc.replace_substring_regex(normalise(texts), r"[\p{P}\s]+$", "")

        answer, asked = key(answers.texts), key(answers.asked)
        echo = _bools(pc.equal(answer, asked)) & _bools(pc.greater(pc.utf8_length(answer), 0))
        return answers.count_per_row(echo)


class RepetitionLoop(SftRule):
    """No answer loops: the share of its word 3-grams (``n``) that repeat an earlier 3-gram of the
    same answer is at most ``max`` (0.5: a paragraph said twice stays just under it, three times
    goes over; judged on answers of at least ``min_words`` words), and no line (one with a letter or
    digit: a run of '}' is code) is repeated more than ``max_line_repeats`` times in a row (5 times
    fails). The signal is the largest 3-gram share over a row's answers; ``q_loop_line_run`` holds
    the longest run of one line."""

    name, column, dtype = "repetition_loop", "q_loop_ngram_share", pa.float64()
    line_column: ClassVar[str] = "q_loop_line_run"

    class Config(RuleConfig):
        max: float | None = _max(0.5, "a larger share of repeated word n-grams in an answer")
        n: int = Field(3, ge=2, le=10, description="words per n-gram")
        min_words: int = Field(8, ge=1, description="answers with fewer words are not judged by the n-gram share")
        max_line_repeats: int | None = Field(4, ge=1, description="rows with an answer repeating one line more "
                                             "times in a row than this fail; null = off")

    def measure(self, answers):
        st, n = answers.stats, self.config.n
        start, occurrences = st.repeated_ngrams(n)
        repeats = np.bincount(st.word_row[start], weights=1.0 - 1.0 / occurrences, minlength=st.n)
        share = ratio(repeats, np.maximum(st.word_count - n + 1, 0))
        share[st.word_count < self.config.min_words] = 0.0
        return answers.max_per_row(share)

    def columns(self):
        return [(self.column, self.dtype), (self.line_column, pa.int64())]

    def signals(self, answers):
        return {self.column: self.measure(answers), self.line_column: self.line_runs(answers)}

    def line_runs(self, answers: Answers) -> np.ndarray:
        st = answers.stats
        lines, rows = st.lines, st.line_row
        worded = _bools(pc.match_substring_regex(lines, r"[\pL\pN]"))
        ids = pc.dictionary_encode(lines.filter(pa.array(worded))).indices.to_numpy(zero_copy_only=False)
        rows = rows[worded]
        same = np.zeros(len(ids), dtype=bool)
        same[1:] = (ids[1:] == ids[:-1]) & (rows[1:] == rows[:-1])
        run_id = np.cumsum(~same) - 1
        lengths = np.bincount(run_id) if len(run_id) else np.zeros(0, np.int64)
        longest = np.zeros(st.n, dtype=np.int64)
        np.maximum.at(longest, rows, lengths[run_id])
        return answers.max_per_row(longest)

    def failing(self, signals):
        out = self.fails(signals[self.column])
        if self.config.max_line_repeats is not None:
            out |= signals[self.line_column] > self.config.max_line_repeats
        return out

    def why(self, signals, rows):
        out = []
        for r in rows.tolist():
            run = int(signals[self.line_column][r])
            if self.config.max_line_repeats is not None and run > self.config.max_line_repeats:
                out.append(f"{self.line_column}={run} > max_line_repeats {self.config.max_line_repeats}")
            else:
                out.append(self.explain(float(signals[self.column][r])))
        return out


#: last words that leave a sentence open (English, German, French, Spanish); German separable
#: particles (an, auf, aus, mit, zu...) legitimately end sentences and are not listed (English "an" neither)
DANGLING_WORDS = [
    "the", "a", "and", "or", "of", "to", "with", "for", "from", "by", "as", "that", "than", "like", "your",
    "its", "their", "such", "der", "die", "das", "dem", "den", "des", "und", "oder", "für", "le", "la", "les", "de",
    "des", "du", "et", "ou", "pour", "avec", "un", "une", "el", "los", "las", "del", "y", "o", "para", "con", "una",
]
#: a line of code, a command, a list item or a table row rather than prose: lines that may end without
#: punctuation (a line starting in lower case is a command or a continuation, not a sentence)
_CODE_LIKE = r"[{}=\\`$]|->|::|^\s{4}|^\t|^\s*(?:[-+*•>]|\d+[.)]|[a-z][.)])\s|^\s*[\p{Ll}$#/.|-]|\|\s*$"
_SENTENCE_END = r"[.!?。！？…][\"'”’»)\]]*\s"
TRUNCATION = {0: "complete", 1: "ends mid-sentence", 2: "ends on a dangling word or , : ( [ {",
              3: "unclosed code fence", 4: "unbalanced brackets"}


class TruncatedResponse(SftRule):
    """The (last) answer is not cut off. It is judged truncated (signal ``q_truncation``, a code) when:

    * 3: it opens a ``` code fence it never closes;
    * 4: more than ``max_open_brackets`` of one kind of bracket ( [ { are left open and it does not
      end with terminal punctuation or a closing bracket;
    * 2: it ends on ',', ':', '(', '[', '{', a dash, or on an article, conjunction or preposition
      (:data:`DANGLING_WORDS`) at the end of a prose line;
    * 1: it ends mid-sentence: on a letter, in a prose line, when an earlier sentence of it ends
      with terminal punctuation (the answer punctuates its sentences, but not its last one), the
      answer has at least ``min_answer_words`` words and the unfinished sentence ``min_words``.

    What legitimately ends without a full stop is left alone: code and commands (a line with
    brackets, operators, paths or backticks, indented, or starting in lower case), list items, table rows, headings, numbers
    and maths, single words and terse fragments ('Print the version and exit': no earlier sentence
    end). Only the response or a conversation's last assistant turn is judged: a cut shows at the end."""

    name, column = "truncated_response", "q_truncation"

    class Config(RuleConfig):
        max: int | None = Field(0, description="rows whose truncation code (see the rule) is above this fail; "
                                "0 = any truncation sign; null = off")
        min_words: int = Field(2, ge=1, description="words an unfinished last sentence needs to count as cut off")
        min_answer_words: int = Field(15, ge=1, description="words an answer needs before a missing full stop "
                                      "counts as cut off (short answers are often terse fragments)")
        max_open_brackets: int = Field(1, ge=0, description="unclosed brackets of one kind an answer may leave open")
        words: list[str] = Field(DANGLING_WORDS, description="last words that leave a sentence open (lower case)")

    def explain(self, value):
        return f"{self.column}={value} ({TRUNCATION.get(int(value), '?')})"

    def judged(self, answers):
        return answers.last_of_row >= 0

    def measure(self, answers):
        last = np.flatnonzero(answers.last)
        text = answers.stripped.take(pa.array(last, pa.int64()))
        code = np.zeros(len(last), dtype=np.int64)
        last_line = pc.replace_substring_regex(text, r"(?s)^.*\n", "")
        # a line holding a sentence end followed by a capital is prose, whatever code it mentions
        prose = ~_bools(pc.match_substring_regex(last_line, _CODE_LIKE))
        prose |= _bools(pc.match_substring_regex(last_line, rf"{_SENTENCE_END}+\p{{Lu}}"))
        words = pc.list_value_length(pc.utf8_split_whitespace(last_line)).to_numpy(zero_copy_only=False)
        # 1: an unfinished last sentence in an answer that ends its other sentences
        tail = pc.replace_substring_regex(text, rf"(?s)^.*{_SENTENCE_END}", "")
        earlier_end = _bools(pc.not_equal(pc.utf8_length(tail), pc.utf8_length(text)))
        tail_words = pc.list_value_length(pc.utf8_split_whitespace(tail)).to_numpy(zero_copy_only=False)
        on_letter = _bools(pc.match_substring_regex(text, r"\pL$"))
        long = answers.stats.word_count[last] >= self.config.min_answer_words
        code[on_letter & prose & earlier_end & long & (tail_words >= self.config.min_words)] = 1
        # 2: a dangling end
        dangling = _bools(pc.match_substring_regex(text, r"[,:(\[{—–]$"))
        if self.config.words:
            dangling |= prose & (words >= 2) & _bools(pc.match_substring_regex(
                pc.utf8_lower(last_line), rf"(?:^|\s)(?:{_alternatives(self.config.words)})$"))
        code[dangling] = 2
        # 4: brackets left open; 3: an unclosed code fence
        open_ = np.zeros(len(last), dtype=np.int64)
        for o, c in ("()", "[]", "{}"):
            open_ = np.maximum(open_, _count(text, o) - _count(text, c))
        closed = _bools(pc.match_substring_regex(text, r"[.!?…\"'”»)\]}>`]$"))
        code[(open_ > self.config.max_open_brackets) & ~closed] = 4
        code[_count(text, "```") % 2 == 1] = 3
        out = np.zeros(answers.n, dtype=np.int64)
        out[answers.row[last]] = code
        return out


def _count(texts: pa.Array, substring: str) -> np.ndarray:
    return pc.count_substring(texts, substring).to_numpy(zero_copy_only=False).astype(np.int64)


class TooManyTokens(SftRule):
    """The row fits the model: the tokens of its trained fields (system, prompt, response, every
    message; the text of plain rows), counted with the tokenizer in ``tokenizer`` (a local folder
    AutoTokenizer reads, such as a model's), are at most ``max``. Chat-template and special tokens
    are not counted: leave a margin. Off until ``tokenizer`` is set; transformers is imported only
    then. Judges every row, plain text included."""

    name, column = "too_many_tokens", "q_tokens"

    class Config(RuleConfig):
        max: int | None = _max(2048, "more tokens in the trained fields")
        tokenizer: str | None = Field(None, description="a local tokenizer folder (relative to the pipeline "
                                      "file), read with transformers' AutoTokenizer; null = the rule is off")

    def __init__(self, config, base_dir: str | None = None) -> None:
        super().__init__(config)
        self.path = tokenizer_path(config.tokenizer, base_dir) if config.tokenizer else None
        self._tokenizer = None

    def judged(self, answers):
        return np.ones(answers.n, dtype=bool)

    def measure(self, answers):
        from corpusmill.sft import FieldSelection

        if self._tokenizer is None:
            from transformers import AutoTokenizer

            self._tokenizer = AutoTokenizer.from_pretrained(str(self.path), local_files_only=True)
        selection = FieldSelection(answers.batch, ["trained"])
        strings = pc.fill_null(selection.strings, "").to_pylist()
        ids = self._tokenizer(strings, add_special_tokens=False)["input_ids"] if strings else []
        lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
        return np.bincount(selection.rows, weights=lengths, minlength=answers.n).astype(np.int64)


def tokenizer_path(path: str, base_dir: str | None):
    from pathlib import Path

    p = Path(path).expanduser()
    return p if p.is_absolute() or base_dir is None else Path(base_dir) / p


#: the instruction and chat rules, in the order rows are judged: the most specific reason first
SFT_RULES: list[type[SftRule]] = [
    MissingAssistantTurn, EmptyResponse, PlaceholderResponse, Refusal, ResponseEqualsPrompt, RepetitionLoop,
    TruncatedResponse, TooManyTokens,
]


#: every web-document rule, in the order rows are judged (the first failing reject rule is the reason)
RULES: list[type[QualityRule]] = [
    GopherWordCount, GopherMeanWordLength, GopherSymbolWordRatio, GopherBulletLines, GopherEllipsisLines,
    GopherAlphaWords, GopherStopWords,
    GopherDuplicateLines, GopherDuplicateParagraphs, GopherDuplicateLineChars, GopherDuplicateParagraphChars,
    GopherTop2gram, GopherTop3gram, GopherTop4gram,
    GopherDup5gram, GopherDup6gram, GopherDup7gram, GopherDup8gram, GopherDup9gram, GopherDup10gram,
    C4TerminalPunctuation, C4MinSentences, C4LoremIpsum, C4CurlyBracket, C4JavascriptLines, C4PolicyLines,
    C4LongWord,
    FineWebLinePunctuation, FineWebShortLines, FineWebDuplicateLineChars, FineWebNewlineRatio,
]
#: every rule, in the order rows are judged: the instruction and chat rules first, so a row that
#: fails both kinds is rejected for what is wrong with its answer
ALL_RULES: list[type[QualityRule]] = [*SFT_RULES, *RULES]
RULES_BY_NAME = {r.name: r for r in ALL_RULES}
SFT_RULE_NAMES = frozenset(r.name for r in SFT_RULES)

# C4's line rules edit lines; a document-level stage can only annotate them (see C4JavascriptLines).
_LINE_RULES = {"c4_javascript", "c4_policy", "c4_long_word"}


def _preset(reject: set[str]) -> dict[str, str]:
    return {r.name: "reject" if r.name in reject and r.name not in _LINE_RULES else "annotate" for r in RULES}


_GOPHER = {r.name for r in RULES if r.name.startswith("gopher_")}
_C4 = {r.name for r in RULES if r.name.startswith("c4_")}
_FINEWEB = {r.name for r in RULES if r.name.startswith("fineweb_")}

#: web-document preset -> the default action of every web-document rule
PRESETS: dict[str, dict[str, str]] = {
    # FineWeb's recipe: Gopher quality + repetition, C4 without its terminal punctuation rule,
    # FineWeb's own rules
    "fineweb": _preset(_GOPHER | (_C4 - {"c4_terminal_punctuation"}) | _FINEWEB),
    "gopher": _preset(_GOPHER),
    "c4": _preset(_C4),
    # score everything, reject nothing: choose thresholds later from the columns
    "annotate": _preset(set()),
}
Preset = Literal["sft", "fineweb", "gopher", "c4", "annotate"]


def preset_actions(preset: str) -> dict[str, str]:
    """The default action of every rule (web-document and instruction/chat) under ``preset``.

    ``sft``: every instruction and chat rule rejects, the web-document rules are off (their
    thresholds describe web pages: on instruction data they reject most good answers). The web
    presets leave the instruction and chat rules off, except ``annotate``, which scores everything.
    """
    if preset == "sft":
        return {**{r.name: "reject" for r in SFT_RULES}, **{r.name: "disabled" for r in RULES}}
    web = PRESETS.get(preset, PRESETS["fineweb"])
    return {**{r.name: "annotate" if preset == "annotate" else "disabled" for r in SFT_RULES}, **web}


def default_preset(schema: pa.Schema) -> str:
    """The preset of a stage that names none: ``sft`` on instruction and chat rows, ``fineweb`` on text."""
    return "sft" if is_sft(schema) else "fineweb"


QualityRules = create_model(
    "QualityRules",
    __base__=StageConfig,
    __module__=__name__,  # picklable: worker processes receive the config
    __doc__="Per-rule settings: rule name -> its options, true (defaults) or false (disabled).",
    **{r.name: (r.Config, Field(default_factory=r.Config, description=(r.__doc__ or "").split("\n")[0]))
       for r in ALL_RULES},
)


class QualityConfig(StageConfig):
    """Options of the ``quality`` stage."""

    preset: Preset | None = Field(
        None,
        description="the default action of every rule: sft = the instruction and chat rules reject (empty, "
        "placeholder, refusal, echo, loop, truncated answers...), web-document rules off; fineweb = the "
        "FineWeb recipe (Gopher + C4 without terminal punctuation + FineWeb rules reject); gopher / c4 = only "
        "that paper's rules reject; annotate = nothing is rejected, every signal is stored. C4's line rules "
        "(javascript, policy, long word) annotate in every preset. null (default) = sft on instruction and "
        "chat rows, fineweb on text; the manifest records the preset chosen",
    )
    rules: QualityRules = Field(  # type: ignore[valid-type]
        default_factory=QualityRules,
        description="rule name -> {action, thresholds...}, true (the preset's defaults) or false "
        "(disabled); rules not listed use their defaults",
    )
    warn_share: float | None = Field(
        0.1, ge=0, le=1,
        description="`corpusmill run` warns when one reject rule fails more than this share of the stage's "
        "input rows (a rule that rejects most rows is usually the wrong rule for the data); null = never",
    )

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, data: Any) -> Any:
        """Give every rule without an explicit action the preset's, so the resolved config (and
        the manifest) states each rule's action. Without a preset the actions wait for the rows'
        schema (:meth:`Quality.resolve`)."""
        if not isinstance(data, dict):
            return data
        preset = data.get("preset")
        actions = preset_actions(preset) if isinstance(preset, str) else None
        rules = data.get("rules")
        if rules is None:
            rules = {}
        if not isinstance(rules, dict):
            return data  # reported by validation
        resolved = dict(rules)
        for name in RULES_BY_NAME:
            entry = rules.get(name, True)
            if entry is True or entry is None:
                entry = {}
            elif entry is False:
                entry = {"action": "disabled"}
            if isinstance(entry, dict):
                entry = dict(entry)
                if entry.get("action") is False:  # YAML reads 'action: off' as false
                    entry["action"] = "disabled"
                if entry.get("action") is None and actions is not None:
                    entry["action"] = actions[name]
            resolved[name] = entry
        return {**data, "rules": resolved}

    def for_schema(self, schema: pa.Schema) -> "QualityConfig":
        """This config with the preset chosen for rows of ``schema`` when none was given."""
        if self.preset is not None:
            return self
        return QualityConfig.model_validate({**self.model_dump(), "preset": default_preset(schema)})


class Quality(Stage):
    """The ``quality`` stage (see the module docstring)."""

    kind = "quality"
    Config = QualityConfig

    def __init__(self, config: QualityConfig, *, name: str, run) -> None:
        super().__init__(config, name=name, run=run)
        self._rules: dict[tuple[bool, bool], list[QualityRule]] = {}

    def resolve(self, schema: pa.Schema) -> QualityConfig:
        return self.config.for_schema(schema)

    def rules_for(self, schema: pa.Schema) -> list[QualityRule]:
        """The enabled rules on rows of ``schema``: the instruction and chat rules only where the
        rows may be such rows (too_many_tokens on any rows), too_many_tokens only with a tokenizer."""
        sft = is_sft(schema)
        key = (sft, S.MESSAGES in schema.names)
        if key not in self._rules:
            config = self.config.for_schema(schema)
            rules: list[QualityRule] = []
            for cls in ALL_RULES:
                options = getattr(config.rules, cls.name)
                if options.action == "disabled":
                    continue
                if cls is TooManyTokens:
                    if options.tokenizer:
                        rules.append(TooManyTokens(options, self.run.base_dir if self.run else None))
                elif cls is MissingAssistantTurn and S.MESSAGES not in schema.names:
                    continue  # no conversations to judge
                elif cls.name not in SFT_RULE_NAMES or sft:
                    rules.append(cls(options))
            self._rules[key] = rules
        return self._rules[key]

    @property
    def rules(self) -> list[QualityRule]:
        """The enabled rules on text rows (see :meth:`rules_for`)."""
        return self.rules_for(pa.schema([(S.TEXT, pa.string())]))

    def columns_for(self, schema: pa.Schema) -> list[tuple[str, pa.DataType]]:
        """The signal columns this stage adds on rows of ``schema``, in order, then q_flags."""
        seen: dict[str, pa.DataType] = {}
        for rule in self.rules_for(schema):
            for column, dtype in rule.columns():
                seen.setdefault(column, dtype)
        return list(seen.items()) + [(FLAGS, pa.list_(pa.string()))]

    @property
    def columns(self) -> list[tuple[str, pa.DataType]]:
        return self.columns_for(pa.schema([(S.TEXT, pa.string())]))

    def output_fields(self, schema: pa.Schema) -> pa.Schema:
        columns = self.columns_for(schema)
        names = {c for c, _ in columns}
        fields = [f for f in schema if f.name not in names]
        return pa.schema(fields + [pa.field(c, t) for c, t in columns])

    def check(self, schema: pa.Schema) -> list[str]:
        problems = []
        config = self.config
        if not is_sft(schema):
            if config.preset == "sft":
                problems.append("preset: sft judges instruction and chat rows, and these rows have only text "
                                "(map prompt_field/response_field or messages_field in the inputs, or use preset: "
                                "fineweb)")
            else:
                defaults = preset_actions(config.preset or "fineweb")
                asked = [r.name for r in SFT_RULES if r is not TooManyTokens
                         and getattr(config.rules, r.name).action not in (None, "disabled", defaults[r.name])]
                if asked:
                    problems.append(f"rules {', '.join(asked)} judge instruction and chat rows, and these rows have "
                                    "only text (map prompt_field/response_field or messages_field in the inputs)")
        tokens = getattr(config.rules, TooManyTokens.name)
        if tokens.tokenizer and tokens.action != "disabled":
            path = tokenizer_path(tokens.tokenizer, self.run.base_dir if self.run else None)
            if not path.is_dir():
                problems.append(f"rules.too_many_tokens.tokenizer: no folder {path} (a local tokenizer folder, such "
                                "as a model's, relative to the pipeline file)")
            else:
                import importlib.util

                if importlib.util.find_spec("transformers") is None:
                    problems.append("rules.too_many_tokens needs transformers to read the tokenizer: "
                                    "pip install transformers")
        return problems

    def identity(self):
        """The tokenizer's files, by content, when too_many_tokens counts with one."""
        tokens = getattr(self.config.rules, TooManyTokens.name)
        if not tokens.tokenizer or tokens.action == "disabled":
            return None
        path = tokenizer_path(tokens.tokenizer, self.run.base_dir if self.run else None)
        if not path.is_dir():
            return None
        from corpusmill.hashing import file_sha256

        return {"tokenizer": {f.name: file_sha256(f) for f in sorted(path.iterdir())
                              if f.is_file() and _TOKENIZER_FILE.match(f.name)}}

    def process(self, batch: pa.Table, info: BatchInfo) -> StageOutput:
        n = batch.num_rows
        rules = self.rules_for(batch.schema)
        stats = TextStats(batch.column(S.TEXT))
        answers = Answers(batch) if any(isinstance(r, SftRule) for r in rules) else None
        lang = batch.column(LANG).combine_chunks() if LANG in batch.column_names else None
        signals: dict[str, np.ndarray] = {}
        judged: dict[str, np.ndarray] = {}  # SFT signal columns: the rows that have a value
        fails = np.zeros((n, len(rules)), dtype=bool)
        for j, rule in enumerate(rules):
            if isinstance(rule, SftRule):
                rows = rule.judged(answers)
                for column, values in rule.signals(answers).items():
                    signals[column], judged[column] = values, rows
                failed = rule.failing(signals) & rows
            else:
                if rule.column not in signals:
                    signals[rule.column] = rule.signal(stats)
                failed = rule.failing(signals)
            if rule.config.languages is not None and lang is not None:
                in_languages = pc.is_in(lang, value_set=pa.array(rule.config.languages, pa.string()))
                failed &= pc.fill_null(in_languages, False).to_numpy(zero_copy_only=False)
            fails[:, j] = failed

        columns = self.columns_for(batch.schema)
        out = batch.drop_columns([c for c, _ in columns if c in batch.column_names])
        for column, dtype in columns[:-1]:
            mask = ~judged[column] if column in judged else None
            out = out.append_column(pa.field(column, dtype), pa.array(signals[column], dtype, mask=mask))
        out = out.append_column(pa.field(FLAGS, pa.list_(pa.string())), self._flags(fails, rules))

        rejecting = np.array([r.config.action == "reject" for r in rules], dtype=bool)
        rejected = (fails & rejecting).any(axis=1)
        counters = {f"{r.name}_flagged": int(fails[~rejected, j].sum())
                    for j, r in enumerate(rules) if r.config.action == "annotate"}
        # every row a reject rule fails, whichever rule named the reason: the share the run reports
        counters.update({f"{r.name}{FAILED}": int(fails[:, j].sum()) for j, r in enumerate(rules) if rejecting[j]})
        counters = {k: v for k, v in counters.items() if v}
        if not rejected.any():
            return StageOutput(out, None, counters)
        reasons, details = self._reasons(rules, fails[rejected], rejecting, {c: v[rejected] for c, v in signals.items()})
        return self.split(out, ~rejected, reasons, details, counters)

    @staticmethod
    def _reasons(rules, fails: np.ndarray, rejecting: np.ndarray, signals: dict[str, np.ndarray]):
        """For rejected rows: the first failing reject rule, and a detail that explains it and
        names the other rules the row fails."""
        first = np.argmax(fails & rejecting, axis=1)
        reasons = [rules[j].name for j in first]
        details = [""] * len(first)
        others: list[list[str]] = [[] for _ in first]
        for j, rule in enumerate(rules):
            rows = np.flatnonzero(fails[:, j])
            for r, why in zip(rows.tolist(), rule.why(signals, rows)):
                if first[r] == j:
                    details[r] = why
                else:
                    others[r].append(f"{rule.name} ({why})")
        details = [d + ("; also fails " + ", ".join(o) if o else "") for d, o in zip(details, others)]
        return reasons, details

    @staticmethod
    def _flags(fails: np.ndarray, rules) -> pa.Array:
        """One list per row of the names of the rules it fails, in rule order."""
        n = fails.shape[0]
        rows, cols = np.nonzero(fails)
        offsets = np.zeros(n + 1, dtype=np.int32)
        np.cumsum(np.bincount(rows, minlength=n), out=offsets[1:])
        names = pa.array([r.name for r in rules], pa.string()).take(pa.array(cols, pa.int64()))
        return pa.ListArray.from_arrays(pa.array(offsets), names)


#: the files of a tokenizer folder that decide how it splits text (model weights are not read)
_TOKENIZER_FILE = re.compile(r"^(?:tokenizer.*|vocab.*|merges\.txt|special_tokens_map\.json|added_tokens\.json|"
                             r".*\.model|spiece.*|config\.json)$")
#: the counter of rows a reject rule fails: '<rule>_failed'
FAILED = "_failed"


# ----------------------------------------------------------------------------- the run's report


def _quality_steps(manifest: dict):
    """(stage entry, resolved options) of each quality step of a manifest, named as the runner names them."""
    from corpusmill.stage import manifest_steps

    stages = {s["name"]: s for s in manifest.get("stages", [])}
    for name, kind, options in manifest_steps(manifest):
        if kind == Quality.kind and name in stages:
            yield stages[name], options


def run_notes(manifest: dict) -> tuple[list[str], list[str]]:
    """What a run's summary says about its quality steps: one line per step with the share of its
    input each reject rule failed (a row failing several rules counts for each), and a warning for
    every rule whose share is above the step's ``warn_share``. Returns (lines, warnings)."""
    lines, warnings = [], []
    sft_rows = any(f["name"] in (S.PROMPT, S.MESSAGES) for f in manifest.get("schema", []))
    for stage, options in _quality_steps(manifest):
        rows_in = stage.get("in", 0)
        failed = {k[: -len(FAILED)]: v for k, v in stage.get("counters", {}).items()
                  if k.endswith(FAILED) and k[: -len(FAILED)] in RULES_BY_NAME}
        if not rows_in:
            continue
        shares = sorted(failed.items(), key=lambda kv: -kv[1])
        listed = ", ".join(f"{rule} {n / rows_in:.1%}" for rule, n in shares) or "none"
        lines.append(f"{stage['name']} (preset {options.get('preset')}): share of its {rows_in:,} rows each rule "
                     f"rejected: {listed}")
        limit = options.get("warn_share", 0.1)
        if limit is None:
            continue
        for rule, n in shares:
            if n / rows_in <= limit:
                break
            if rule not in SFT_RULE_NAMES and sft_rows:
                hint = ("on instruction and chat rows use preset: sft (the default when no preset is given), "
                        "or set this rule's action: annotate")
            else:
                hint = (f"read a few of its rejects (rejects/{stage['name']}-*.parquet in the version) before "
                        f"trusting it; if the rule is wrong for this data, set rules.{rule}.action: annotate or "
                        "change its threshold")
            warnings.append(f"quality rule '{rule}' rejected {n:,} of {rows_in:,} rows ({n / rows_in:.1%}, "
                            f"more than warn_share {limit:g}) in step '{stage['name']}': {hint}")
    return lines, warnings
