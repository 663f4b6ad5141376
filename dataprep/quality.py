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

Adding a rule is one small class: a name, a column, a Config with its thresholds, and
``signal(stats) -> one value per row``; then list it in :data:`RULES` (and in the presets).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field, create_model, model_validator

from corpusmill import schema as S
from corpusmill.dataprep.text_stats import (
    BULLET_START, ELLIPSIS_END, POLICY_PHRASES, SENTENCE_END, TERMINAL_PUNCTUATION, TextStats, ratio,
)
from corpusmill.stage import BatchInfo, Stage, StageConfig, StageOutput

#: the column listing, per row, every enabled rule it fails (reject and annotate rules)
FLAGS = "q_flags"
#: the language column written by the language stage; rules with ``languages`` read it
LANG = "lang"

Action = Literal["reject", "annotate", "disabled"]


class RuleConfig(StageConfig):
    """What every rule has: an action, and optionally the languages it judges."""

    action: Action = Field(
        "reject",
        description="reject: failing rows are rejected with the rule's name as reason; annotate: "
        "failing rows are kept and flagged in q_flags; disabled: the rule and its column are off. "
        "The default comes from the stage's preset",
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


#: every rule, in the order rows are judged (the first failing reject rule is the reason)
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
RULES_BY_NAME = {r.name: r for r in RULES}

# C4's line rules edit lines; a document-level stage can only annotate them (see C4JavascriptLines).
_LINE_RULES = {"c4_javascript", "c4_policy", "c4_long_word"}


def _preset(reject: set[str]) -> dict[str, str]:
    return {r.name: "reject" if r.name in reject and r.name not in _LINE_RULES else "annotate" for r in RULES}


_GOPHER = {r.name for r in RULES if r.name.startswith("gopher_")}
_C4 = {r.name for r in RULES if r.name.startswith("c4_")}
_FINEWEB = {r.name for r in RULES if r.name.startswith("fineweb_")}

#: preset -> the default action of every rule
PRESETS: dict[str, dict[str, str]] = {
    # FineWeb's recipe: Gopher quality + repetition, C4 without its terminal punctuation rule,
    # FineWeb's own rules
    "fineweb": _preset(_GOPHER | (_C4 - {"c4_terminal_punctuation"}) | _FINEWEB),
    "gopher": _preset(_GOPHER),
    "c4": _preset(_C4),
    # score everything, reject nothing: choose thresholds later from the columns
    "annotate": _preset(set()),
}

QualityRules = create_model(
    "QualityRules",
    __base__=StageConfig,
    __module__=__name__,  # picklable: worker processes receive the config
    __doc__="Per-rule settings: rule name -> its options, true (defaults) or false (disabled).",
    **{r.name: (r.Config, Field(default_factory=r.Config, description=(r.__doc__ or "").split("\n")[0]))
       for r in RULES},
)


class QualityConfig(StageConfig):
    """Options of the ``quality`` stage."""

    preset: Literal["fineweb", "gopher", "c4", "annotate"] = Field(
        "fineweb",
        description="the default action of every rule: fineweb = the FineWeb recipe (Gopher + C4 "
        "without terminal punctuation + FineWeb rules reject); gopher / c4 = only that paper's "
        "rules reject; annotate = nothing is rejected, every signal is stored. C4's line rules "
        "(javascript, policy, long word) annotate in every preset",
    )
    rules: QualityRules = Field(  # type: ignore[valid-type]
        default_factory=QualityRules,
        description="rule name -> {action, thresholds...}, true (the preset's defaults) or false "
        "(disabled); rules not listed use their defaults",
    )

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, data: Any) -> Any:
        """Give every rule without an explicit action the preset's, so the resolved config (and
        the manifest) states each rule's action."""
        if not isinstance(data, dict):
            return data
        preset = data.get("preset", "fineweb")
        actions = PRESETS.get(preset, PRESETS["fineweb"]) if isinstance(preset, str) else PRESETS["fineweb"]
        rules = data.get("rules")
        if rules is None:
            rules = {}
        if not isinstance(rules, dict):
            return data  # reported by validation
        resolved = dict(rules)
        for name, action in actions.items():
            entry = rules.get(name, True)
            if entry is True or entry is None:
                entry = {}
            elif entry is False:
                entry = {"action": "disabled"}
            if isinstance(entry, dict):
                entry = dict(entry)
                if entry.get("action") is False:  # YAML reads 'action: off' as false
                    entry["action"] = "disabled"
                entry.setdefault("action", action)
            resolved[name] = entry
        return {**data, "rules": resolved}


class Quality(Stage):
    """The ``quality`` stage (see the module docstring)."""

    kind = "quality"
    Config = QualityConfig

    def __init__(self, config: QualityConfig, *, name: str, run) -> None:
        super().__init__(config, name=name, run=run)
        self.rules = [cls(getattr(config.rules, cls.name)) for cls in RULES
                      if getattr(config.rules, cls.name).action != "disabled"]

    @property
    def columns(self) -> list[tuple[str, pa.DataType]]:
        """The signal columns this stage adds, in order, then q_flags."""
        seen: dict[str, pa.DataType] = {}
        for rule in self.rules:
            seen.setdefault(rule.column, rule.dtype)
        return list(seen.items()) + [(FLAGS, pa.list_(pa.string()))]

    def output_fields(self, schema: pa.Schema) -> pa.Schema:
        names = {c for c, _ in self.columns}
        fields = [f for f in schema if f.name not in names]
        return pa.schema(fields + [pa.field(c, t) for c, t in self.columns])

    def process(self, batch: pa.Table, info: BatchInfo) -> StageOutput:
        n = batch.num_rows
        stats = TextStats(batch.column(S.TEXT))
        lang = batch.column(LANG).combine_chunks() if LANG in batch.column_names else None
        signals: dict[str, np.ndarray] = {}
        fails = np.zeros((n, len(self.rules)), dtype=bool)
        for j, rule in enumerate(self.rules):
            if rule.column not in signals:
                signals[rule.column] = rule.signal(stats)
            failed = rule.fails(signals[rule.column])
            if rule.config.languages is not None and lang is not None:
                judged = pc.is_in(lang, value_set=pa.array(rule.config.languages, pa.string()))
                failed &= pc.fill_null(judged, False).to_numpy(zero_copy_only=False)
            fails[:, j] = failed

        out = batch.drop_columns([c for c, _ in self.columns if c in batch.column_names])
        for column, dtype in self.columns[:-1]:
            out = out.append_column(pa.field(column, dtype), pa.array(signals[column], dtype))
        out = out.append_column(pa.field(FLAGS, pa.list_(pa.string())), self._flags(fails))

        rejecting = np.array([r.config.action == "reject" for r in self.rules], dtype=bool)
        rejected = (fails & rejecting).any(axis=1)
        counters = {f"{r.name}_flagged": int(fails[~rejected, j].sum())
                    for j, r in enumerate(self.rules) if r.config.action == "annotate"}
        counters = {k: v for k, v in counters.items() if v}
        if not rejected.any():
            return StageOutput(out, None, counters)
        reasons, details = self._reasons(fails[rejected], rejecting, {c: v[rejected] for c, v in signals.items()})
        return self.split(out, ~rejected, reasons, details, counters)

    def _reasons(self, fails: np.ndarray, rejecting: np.ndarray, signals: dict[str, np.ndarray]):
        """For rejected rows: the first failing reject rule, and a detail that explains it and
        names the other rules the row fails."""
        first = np.argmax(fails & rejecting, axis=1)
        reasons = [self.rules[j].name for j in first]
        details = [""] * len(first)
        others: list[list[str]] = [[] for _ in first]
        for j, rule in enumerate(self.rules):
            rows = np.flatnonzero(fails[:, j])
            values = signals[rule.column][rows].tolist()
            for r, v in zip(rows.tolist(), values):
                if first[r] == j:
                    details[r] = rule.explain(v)
                else:
                    others[r].append(f"{rule.name} ({rule.explain(v)})")
        details = [d + ("; also fails " + ", ".join(o) if o else "") for d, o in zip(details, others)]
        return reasons, details

    def _flags(self, fails: np.ndarray) -> pa.Array:
        """One list per row of the names of the rules it fails, in rule order."""
        n = fails.shape[0]
        rows, cols = np.nonzero(fails)
        offsets = np.zeros(n + 1, dtype=np.int32)
        np.cumsum(np.bincount(rows, minlength=n), out=offsets[1:])
        names = pa.array([r.name for r in self.rules], pa.string()).take(pa.array(cols, pa.int64()))
        return pa.ListArray.from_arrays(pa.array(offsets), names)
