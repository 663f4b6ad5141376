"""The ``clean`` stage: repair and normalise each row's text, and drop boilerplate lines.

Steps, in this order, each switchable (see :class:`CleanConfig`):

1. ``fix_mojibake``: text that was decoded with the wrong codec (``cafÃ©`` -> ``café``), repaired
   with ftfy's encoding fixes only (quotes, ligatures and widths are left alone).
2. ``remove_control``: ANSI escape sequences and C0/C1 control characters (tab and line breaks
   stay for the whitespace step).
3. ``remove_invisible``: zero-width and bidirectional formatting characters, soft hyphens, BOMs.
   ZWJ/ZWNJ stay: they change how emoji and several scripts render.
4. ``strip_markup``: HTML/XML to text (:mod:`corpusmill.dataprep.markup`), and character
   references (``&amp;``) decoded in rows that have no tags.
5. ``unicode_form``: Unicode normalisation, NFC by default.
6. ``whitespace``: line endings, exotic spaces, trailing spaces, runs of blank lines.
7. ``boilerplate`` (off by default): lines that repeat across many documents of the same source
   (navigation, footers, signatures). This needs a global count, so with it the stage runs as
   map (count line occurrences per source) / reduce (decide which lines are boilerplate) / apply.

Everything that can be is an Arrow kernel over the whole batch; ftfy and the markup parser run
only on the rows a vectorised pre-check flags. Each step counts the rows it changed (the stage's
counters in the manifest), and the ``clean_changes`` column lists the steps that changed each
row. Rows left with no text are rejected as ``empty_after_clean``.

Instruction and chat rows (:mod:`corpusmill.sft`): the stage cleans the fields the trainer reads
(every trained field by default; ``fields`` narrows or widens that) and re-derives ``text`` from
them. Per field:

* ``strip_markup`` may name the fields whose HTML is converted (``[prompt, messages.user]``:
  prompts lose their HTML, responses that are meant to show HTML keep it);
* code is never touched: a fenced block (```` ``` ```` or ``~~~``) and an inline code span
  (`` `x` ``) in an instruction or chat field are set aside before the steps run and put back
  byte for byte after them (:func:`shield_code`);
* a field that had text and has none after cleaning rejects its row (``empty_after_clean``, the
  detail names the field); a field that was empty already is left to the quality stage;
* the counters say which field each change was made in (``markup_stripped.response``,
  ``whitespace_normalized.messages.assistant``), next to the per-kind row counts.

Plain-text rows are cleaned exactly as before, code fences included, and boilerplate removal
looks only at plain-text rows: the lines of a prompt or an answer are not a page template.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pydantic import Field, field_validator

from corpusmill import schema as S
from corpusmill import sft
from corpusmill.errors import CorpusmillError
from corpusmill.stage import BatchInfo, ReduceStage, StageConfig, StageOutput, write_decisions

#: the column that lists, per row, the steps that changed its text
CHANGES = "clean_changes"
EMPTY = "empty_after_clean"

# Change kinds: counter names in the manifest and the values of the clean_changes column.
MOJIBAKE = "mojibake_fixed"
CONTROL = "control_removed"
INVISIBLE = "invisible_removed"
MARKUP = "markup_stripped"
ENTITIES = "entities_decoded"
UNICODE = "unicode_normalized"
WHITESPACE = "whitespace_normalized"
BOILERPLATE = "boilerplate_removed"
KINDS = (MOJIBAKE, CONTROL, INVISIBLE, MARKUP, ENTITIES, UNICODE, WHITESPACE, BOILERPLATE)

# UTF-8 bytes read as Latin-1 or Windows-1252: a lead byte (U+00C2..U+00F4) followed by as many
# continuation bytes as it announces, each seen as U+0080..U+00BF or as the cp1252 letter for
# 0x80..0x9F; or a C1 control character, which is what Windows-1252 punctuation (’ “ ” – …)
# becomes when read as Latin-1. Cheap and generous; ftfy decides whether the row really is
# mojibake (and turns the C1 controls back into the punctuation they stood for).
_CONTINUATION = r"[\x{80}-\x{BF}€‚ƒ„…†‡ˆ‰Š‹ŒŽ‘’“”•–—˜™š›œžŸ]"
MOJIBAKE_HINT = (
    rf"[\x{{C2}}-\x{{DF}}]{_CONTINUATION}|[\x{{E0}}-\x{{EF}}]{_CONTINUATION}{{2}}"
    rf"|[\x{{F0}}-\x{{F4}}]{_CONTINUATION}{{3}}|[\x{{80}}-\x{{9F}}]"
)
ANSI_ESCAPE = r"\x1B(?:\[[0-9;?]*[ -/]*[@-~]|[@-Z\\-_])"
# C0 and C1 controls except tab, line feed, vertical tab, form feed, carriage return (whitespace)
CONTROL_CHARS = r"[\x00-\x08\x0E-\x1F\x7F\x{80}-\x{9F}]"
# zero-width space, LRM/RLM, bidi embeddings/overrides/isolates, word joiner and invisible
# operators, BOM/zero-width no-break space, soft hyphen, Mongolian vowel separator,
# interlinear annotation marks
INVISIBLE_CHARS = (
    r"[\x{200B}\x{200E}\x{200F}\x{202A}-\x{202E}\x{2060}-\x{2064}\x{2066}-\x{2069}"
    r"\x{FEFF}\x{00AD}\x{180E}\x{FFF9}-\x{FFFB}]"
)
_LINE_BREAKS = r"\r\n?|[\x0B\x0C\x{85}\x{2028}]"
_SPACES = r"[\x{00A0}\x{1680}\x{2000}-\x{200A}\x{202F}\x{205F}\x{3000}]"


class BoilerplateConfig(StageConfig):
    """Which repeated lines count as boilerplate. A line is compared with surrounding whitespace
    removed; it is boilerplate in a source when it occurs in at least ``min_documents`` distinct
    documents of that source and in at least ``min_fraction`` of them. Exact copies of a document
    count once, so duplicated documents do not make their own lines boilerplate (dedup deals with
    them)."""

    min_documents: int = Field(
        5, ge=2,
        description="a line must occur in at least this many distinct documents of its source; the "
        "floor keeps small sources from losing lines that repeat by chance",
    )
    min_fraction: float = Field(
        0.05, ge=0.0, le=1.0,
        description="... and in at least this fraction of the source's distinct documents (0 = no "
        "fraction floor); keeps large sources from losing common short lines such as 'Thanks!'",
    )
    source: str = Field(
        "file",
        description="what a source is: 'file' = the input file the row came from (the file part of "
        "the source column), or 'meta.<field>' = that field of the row's meta (e.g. meta.site); rows "
        "without the field keep all their lines",
    )

    @field_validator("source")
    @classmethod
    def _known_source(cls, v: str) -> str:
        if v != "file" and not (v.startswith("meta.") and len(v) > 5):
            raise ValueError("use 'file' or 'meta.<field>'")
        return v


class CleanConfig(StageConfig):
    """Options of the ``clean`` stage. Every step is on by default except boilerplate removal."""

    unicode_form: Literal["NFC", "NFKC", "none"] = Field(
        "NFC",
        description="Unicode normalisation. NFC composes characters without changing what they "
        "mean; NFKC also folds compatibility forms (ligatures, full-width letters, superscripts: "
        "'ﬁ' -> 'fi', '²' -> '2'), which loses information; none = leave as is",
    )
    fix_mojibake: bool = Field(
        True, description="repair text decoded with the wrong codec (ftfy's encoding fixes only)"
    )
    fields: list[str] | None = Field(
        None,
        description="the fields cleaned, as field references: text, prompt, response, system, messages, "
        "messages.<role> (messages.user...), trained. Default: trained on instruction and chat rows (every "
        "field the trainer reads, and the text of plain rows), text on text corpora. The text of "
        "instruction and chat rows is derived from the cleaned fields, never cleaned on its own",
    )
    strip_markup: bool | list[str] = Field(
        True,
        description="convert HTML/XML to text: block elements become line/paragraph breaks, "
        "script/style content is dropped, character references are decoded; text that only looks "
        "like a tag (<nick>, <stdio.h>) is kept. true = in every cleaned field; a list of field "
        "references = only in those, e.g. [prompt, messages.user] strips HTML from prompts and keeps "
        "it in answers that are meant to show it; false = nowhere. Code fences and inline code in "
        "instruction and chat fields are never converted",
    )
    remove_control: bool = Field(True, description="remove ANSI escape sequences and C0/C1 control characters")
    remove_invisible: bool = Field(
        True, description="remove zero-width, bidirectional-formatting and soft-hyphen characters, BOMs"
    )
    whitespace: Literal["normalize", "collapse", "none"] = Field(
        "normalize",
        description="normalize: line endings to \\n, Unicode spaces to ' ', no trailing spaces, at most "
        "one blank line in a row, no leading/trailing blank lines (indentation is kept: poems, code); "
        "collapse: also every run of spaces/tabs to one space and no indentation; none: leave as is",
    )
    boilerplate: bool | BoilerplateConfig = Field(
        False,
        description="remove lines repeated across documents of the same source; true = default "
        "thresholds. Needs a global pass over the data (the stage then runs map/reduce/apply). Plain-text "
        "rows only: instruction and chat rows take no part",
    )

    @field_validator("fields", "strip_markup")
    @classmethod
    def _field_lists(cls, v):
        if isinstance(v, list):
            if not v:
                raise ValueError("an empty list selects nothing; leave the option out for the default "
                                 "(or strip_markup: false for no markup stripping)")
            repeated = sorted({f for f in v if v.count(f) > 1})
            if repeated:
                raise ValueError(f"listed more than once: {', '.join(repeated)}")
        return v


def _changed(before: pa.Array, after: pa.Array) -> np.ndarray:
    return pc.not_equal(before, after).to_numpy(zero_copy_only=False)


def _fix_rows(texts: pa.Array, candidates: pa.Array, fix) -> pa.Array:
    """Apply ``fix`` (texts -> texts, vectorised) to the rows where ``candidates`` is true only:
    most rows need no change, and a pre-check is one pass where the fix is several."""
    if not pc.any(candidates).as_py():
        return texts
    return pc.replace_with_mask(texts, candidates, fix(texts.filter(candidates)))


def _python_fix(texts: pa.Array, candidates: pa.Array, fix) -> pa.Array:
    """Apply the per-row Python function ``fix`` to the rows where ``candidates`` is true."""
    return _fix_rows(texts, candidates, lambda rows: pa.array([fix(t) for t in rows.to_pylist()], pa.string()))


def _fix_mojibake(texts: pa.Array) -> pa.Array:
    candidates = pc.match_substring_regex(texts, MOJIBAKE_HINT)
    if not pc.any(candidates).as_py():
        return texts
    import ftfy

    # encoding repairs only: quotes, ligatures, character widths and line breaks are the text's own
    config = ftfy.TextFixerConfig(
        unescape_html=False, remove_terminal_escapes=False, fix_latin_ligatures=False,
        fix_character_width=False, uncurl_quotes=False, fix_line_breaks=False,
        remove_control_chars=False, normalization=None, explain=False,
    )
    return _python_fix(texts, candidates, lambda t: ftfy.fix_text(t, config))


def _remove_control(texts: pa.Array) -> pa.Array:
    # ESC (0x1B) is in CONTROL_CHARS, so the check finds the ANSI sequences too
    return _fix_rows(texts, pc.match_substring_regex(texts, CONTROL_CHARS), lambda rows: pc.replace_substring_regex(
        pc.replace_substring_regex(rows, ANSI_ESCAPE, ""), CONTROL_CHARS, ""))


def _remove_invisible(texts: pa.Array) -> pa.Array:
    return _fix_rows(texts, pc.match_substring_regex(texts, INVISIBLE_CHARS),
                     lambda rows: pc.replace_substring_regex(rows, INVISIBLE_CHARS, ""))


def _normalize_unicode(texts: pa.Array, form: str) -> pa.Array:
    # ASCII text is in every normal form. For the rest Python's unicodedata is used rather than
    # Arrow's utf8_normalize: its quick check returns normalised text at once, which made it
    # about 3x faster on the fortunes corpus, where almost every row is already NFC.
    return _python_fix(texts, pc.invert(pc.string_is_ascii(texts)), lambda t: unicodedata.normalize(form, t))


# anything normalize_whitespace would change (the pre-check that spares the other rows)
_UNTIDY = rf"{_LINE_BREAKS}|\x{{2029}}|{_SPACES}|[ \t]\n|\n\n\n|^[ \t]*\n|\s$"


def normalize_whitespace(texts: pa.Array, mode: str) -> pa.Array:
    """Whitespace as ``CleanConfig.whitespace`` describes it."""
    if mode == "none":
        return texts
    if mode == "collapse":
        return _fix_rows(texts, pc.match_substring_regex(texts, rf"{_UNTIDY}|[ \t][ \t]|^\s|\n\s"),
                         lambda rows: _tidy(rows, collapse=True))
    return _fix_rows(texts, pc.match_substring_regex(texts, _UNTIDY), lambda rows: _tidy(rows, collapse=False))


def _tidy(texts: pa.Array, collapse: bool) -> pa.Array:
    out = pc.replace_substring_regex(texts, _LINE_BREAKS, "\n")
    out = pc.replace_substring_regex(out, r"\x{2029}", "\n\n")
    out = pc.replace_substring_regex(out, _SPACES, " ")
    if collapse:
        out = pc.replace_substring_regex(out, r"[ \t]+", " ")
        out = pc.replace_substring_regex(out, r" ?\n ?", "\n")
    else:
        out = pc.replace_substring_regex(out, r"[ \t]+\n", "\n")
    out = pc.replace_substring_regex(out, r"\n{3,}", "\n\n")
    if collapse:
        return pc.utf8_trim_whitespace(out)
    # drop leading blank lines and all trailing whitespace, keep the first line's indentation
    out = pc.replace_substring_regex(out, r"^(?:[ \t]*\n)+", "")
    return pc.utf8_rtrim_whitespace(out)


# ----------------------------------------------------------------------------- code in instruction data

#: a fenced code block (CommonMark): an opening fence of 3+ backticks (its info string without
#: backticks, so ```x``` on one line is inline code) or tildes, up to 3 spaces in, through the
#: closing fence of the same character and at least the same length, or to the end of the text
_FENCE = re.compile(
    r"^[ ]{0,3}(?:(?P<bt>`{3,})[^`\n]*|(?P<tl>~{3,})[^\n]*)"
    r"(?:\n.*?)??(?:\n[ ]{0,3}(?(bt)(?P=bt)`*|(?P=tl)~*)[ \t]*(?=\n|\Z)|\Z)",
    re.M | re.S,
)
#: an inline code span on one line: a run of backticks, text, the same run
_INLINE_CODE = re.compile(r"(?<!`)(?P<ticks>`+)(?!`)[^\n]+?(?<!`)(?P=ticks)(?!`)")
#: a set-aside block is one character of Unicode plane 15 (private use), which no cleaning step
#: changes or removes; texts that already hold such characters are not shielded
_SLOT = 0xF0000
_SLOTS = re.compile("[\U000F0000-\U000FFFFD]")
_SLOT_AROUND = re.compile("([ \t]*)([\U000F0000-\U000FFFFD])([ \t]*)")


def shield_code(texts: pa.Array, candidates: np.ndarray) -> tuple[pa.Array, dict[int, list[tuple[str, bool]]]]:
    """``texts`` with each code fence and inline code span (of the ``candidates`` rows that have a
    backtick or tilde) replaced by one private-use character, and per changed position the blocks
    set aside, as (block, is a fence) in order: :func:`unshield_code` puts them back."""
    candidates = np.asarray(candidates, dtype=bool) & pc.match_substring_regex(texts, "`|~~~").to_numpy(
        zero_copy_only=False)
    blocks: dict[int, list[tuple[str, bool]]] = {}
    if not candidates.any():
        return texts, blocks
    positions = np.flatnonzero(candidates)
    out = []
    for pos, text in zip(positions.tolist(), texts.take(pa.array(positions)).to_pylist()):
        if _SLOTS.search(text):
            out.append(text)
            continue
        found: list[tuple[str, bool]] = []

        def slot(m: re.Match, fenced: bool) -> str:
            found.append((m.group(0), fenced))
            return chr(_SLOT + len(found) - 1)

        shielded = _FENCE.sub(lambda m: slot(m, True), text)
        shielded = _INLINE_CODE.sub(lambda m: slot(m, False), shielded)
        if found and len(found) < 0xFFFE:
            blocks[pos] = found
            out.append(shielded)
        else:
            out.append(text)
    mask = np.zeros(len(texts), dtype=bool)
    mask[positions] = True
    return pc.replace_with_mask(texts, pa.array(mask), pa.array(out, pa.string())), blocks


def unshield_code(texts: pa.Array, blocks: dict[int, list[tuple[str, bool]]]) -> pa.Array:
    """The set-aside blocks back in place, as written. A fence goes back on lines of its own, with
    no spaces around it, even when markup conversion joined its line to the text around it."""
    if not blocks:
        return texts
    positions = np.array(sorted(blocks), dtype=np.int64)
    out = []
    for pos, text in zip(positions.tolist(), texts.take(pa.array(positions)).to_pylist()):
        found = blocks[pos]

        def put(m: re.Match) -> str:
            block, fenced = found[ord(m.group(2)) - _SLOT]
            if not fenced:
                return m.group(1) + block + m.group(3)
            before = "" if m.start() == 0 or text[m.start() - 1] == "\n" else "\n"
            after = "" if m.end() == len(text) or text[m.end()] == "\n" else "\n"
            return before + block + after

        out.append(_SLOT_AROUND.sub(put, text))
    mask = np.zeros(len(texts), dtype=bool)
    mask[positions] = True
    return pc.replace_with_mask(texts, pa.array(mask), pa.array(out, pa.string()))


def _is_blank(texts: pa.Array) -> np.ndarray:
    return pc.match_substring_regex(texts, r"^\s*$").to_numpy(zero_copy_only=False)


class Clean(ReduceStage):
    """The ``clean`` stage (see the module docstring)."""

    kind = "clean"
    Config = CleanConfig

    @property
    def boilerplate(self) -> BoilerplateConfig | None:
        b = self.config.boilerplate
        if b is True:
            return BoilerplateConfig()
        return b or None

    @property
    def needs_reduce(self) -> bool:
        return self.boilerplate is not None

    def output_fields(self, schema: pa.Schema) -> pa.Schema:
        fields = [f for f in schema if f.name != CHANGES]
        return pa.schema(fields + [pa.field(CHANGES, pa.list_(pa.string()))])

    # ------------------------------------------------------------------ which strings

    def fields_for(self, schema: pa.Schema) -> list[str]:
        """The field references cleaned on rows of ``schema``."""
        return list(self.config.fields) if self.config.fields else sft.default_fields(schema)

    def check(self, schema: pa.Schema) -> list[str]:
        options = [("fields", self.config.fields)]
        if isinstance(self.config.strip_markup, list):
            options.append(("strip_markup", self.config.strip_markup))
        problems = []
        for option, refs in options:
            if refs:
                try:
                    sft.check_fields(refs, schema, self.name, option)
                except CorpusmillError as e:
                    problems.append(str(e))
        return problems

    def strings(self, batch: pa.Table) -> "_Strings":
        """The strings this stage cleans in ``batch`` and what each one allows."""
        sel = sft.FieldSelection(batch, self.fields_for(batch.schema))
        n = len(sel)
        segments = sel.segments
        is_text = np.concatenate([np.full(len(g.rows), g.ref == S.TEXT) for g in segments]) if segments else np.zeros(0, bool)
        plain_text = is_text & sft.plain_rows(batch)[sel.rows]
        markup = None
        if isinstance(self.config.strip_markup, list):
            allowed = sft.FieldSelection(batch, self.config.strip_markup)
            where = {g.ref: np.flatnonzero(g.mask) for g in allowed.segments}
            markup = np.concatenate([np.isin(np.flatnonzero(g.mask), where.get(g.ref, np.zeros(0, np.int64)))
                                     for g in segments]) if segments else np.zeros(0, bool)
        labels = None
        if sft.is_sft(batch.schema):
            parts = []
            for g in segments:
                if g.ref == S.MESSAGES:
                    col = batch.column(S.MESSAGES)
                    col = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
                    roles = pc.fill_null(col.flatten().field("role").filter(pa.array(g.mask)), "?")
                    parts.append(pc.binary_join_element_wise("messages", roles, "."))
                else:
                    parts.append(pa.array(np.full(len(g.rows), g.ref, dtype=object), pa.string()))
            labels = pa.concat_arrays(parts) if parts else pa.array([], pa.string())
        return _Strings(sel, is_text, plain_text, markup, None if is_text.all() else ~is_text, labels)

    # ------------------------------------------------------------------ the per-string steps

    def clean_texts(self, texts: pa.Array, markup: np.ndarray | None = None,
                    shield: np.ndarray | None = None) -> tuple[pa.Array, dict[str, np.ndarray]]:
        """The cleaned texts and, per change kind, a mask of the texts that step changed.
        ``markup``: per text, whether markup may be stripped (None: everywhere strip_markup is on);
        ``shield``: per text, whether its code fences and inline code are set aside (None: none).

        Setting code aside is per-string Python, so it runs only where it can matter: on the
        shielded texts that hold a backtick or tilde and that cleaning changed. Those are cleaned
        again from the original with their code set aside (a text cleaning leaves as it is had no
        code changed)."""
        cleaned, changes = self._steps(texts, markup)
        if shield is None or not shield.any():
            return cleaned, changes
        redo = np.asarray(shield, dtype=bool) & _changed(texts, cleaned)
        if redo.any():
            redo &= pc.match_substring_regex(texts, "`|~~~").to_numpy(zero_copy_only=False)
        if not redo.any():
            return cleaned, changes
        positions = pa.array(np.flatnonzero(redo))
        sub, blocks = shield_code(texts.take(positions), np.ones(len(positions), dtype=bool))
        sub, sub_changes = self._steps(sub, None if markup is None else np.asarray(markup, dtype=bool)[redo])
        cleaned = pc.replace_with_mask(cleaned, pa.array(redo), unshield_code(sub, blocks))
        for kind, mask in sub_changes.items():
            changes[kind][redo] = mask
        return cleaned, changes

    def _steps(self, texts: pa.Array, markup: np.ndarray | None) -> tuple[pa.Array, dict[str, np.ndarray]]:
        """Every enabled step in order over ``texts``; per change kind, the texts it changed."""
        cfg = self.config
        changes: dict[str, np.ndarray] = {}

        def step(kind: str, after: pa.Array) -> None:
            nonlocal texts
            changes[kind] = _changed(texts, after)
            texts = after

        if cfg.fix_mojibake:
            step(MOJIBAKE, _fix_mojibake(texts))
        if cfg.remove_control:
            step(CONTROL, _remove_control(texts))
        if cfg.remove_invisible:
            step(INVISIBLE, _remove_invisible(texts))
        if cfg.strip_markup is not False:
            from corpusmill.dataprep.markup import decode_entities, markup_candidates, markup_to_text

            tagged, entities = markup_candidates(texts)
            if markup is not None:
                allowed = pa.array(np.asarray(markup, dtype=bool))
                tagged, entities = pc.and_(tagged, allowed), pc.and_(entities, allowed)
            step(MARKUP, _python_fix(texts, tagged, markup_to_text))
            step(ENTITIES, _python_fix(texts, entities, decode_entities))
        if cfg.unicode_form != "none":
            step(UNICODE, _normalize_unicode(texts, cfg.unicode_form))
        if cfg.whitespace != "none":
            step(WHITESPACE, normalize_whitespace(texts, cfg.whitespace))
        return texts, changes

    def _finish(self, strings: "_Strings", original: pa.Array, texts: pa.Array,
                changes: dict[str, np.ndarray], extra_counters: dict[str, int] | None = None) -> StageOutput:
        """Write the cleaned strings back (text re-derived), add the clean_changes column, reject
        the rows a string was left empty in."""
        sel = strings.sel
        batch = sel.batch
        n = batch.num_rows
        kinds = [k for k in KINDS if k in changes]
        matrix = np.stack([sel.per_row(changes[k]) for k in kinds], axis=1) if kinds else np.zeros((n, 0), bool)
        rows, cols = np.nonzero(matrix)  # row-major: each row's kinds in KINDS order
        offsets = np.zeros(n + 1, dtype=np.int32)
        np.cumsum(np.bincount(rows, minlength=n), out=offsets[1:])
        names = pa.array(kinds, pa.string()).take(pa.array(cols, pa.int64())) if kinds else pa.array([], pa.string())
        change_col = pa.ListArray.from_arrays(pa.array(offsets), names)
        out = _with_changes(sel.write(texts), change_col)

        counters = {k: int(matrix[:, c].sum()) for c, k in enumerate(kinds)}
        if strings.labels is not None:  # instruction and chat rows: which field each change was made in
            for k in kinds:
                if changes[k].any():
                    counts = pc.value_counts(strings.labels.filter(pa.array(changes[k]))).to_pylist()
                    counters.update({f"{k}.{c['values']}": c["counts"] for c in counts})
        counters.update(extra_counters or {})
        counters = {k: v for k, v in counters.items() if v}

        # a plain row's text left empty goes, as ever; a trained field goes when cleaning emptied it
        # (one that came in empty is the quality stage's to judge); SFT rows' text is derived
        blank = _is_blank(texts)
        bad = blank & np.where(strings.is_text, strings.plain_text, ~_is_blank(original))
        empty = sel.per_row(bad)
        if not empty.any():
            return StageOutput(out, None, counters)
        lengths = pc.utf8_length(original).to_numpy(zero_copy_only=False)
        why: dict[int, list[str]] = {}
        for i in np.flatnonzero(bad).tolist():
            steps = [k for k in kinds if changes[k][i]]
            text = (f"no text left after {', '.join(steps) if steps else 'cleaning'} "
                    f"({lengths[i]} characters before cleaning)")
            label = None if strings.labels is None else strings.labels[i].as_py()
            why.setdefault(int(sel.rows[i]), []).append(text if label is None else f"{label}: {text}")
        details = ["; ".join(why[r]) for r in np.flatnonzero(empty).tolist()]
        keep = pa.array(~empty)
        # a rejected row keeps the fields it came in with: what was lost stays visible
        dropped = _with_changes(batch, change_col).filter(pc.invert(keep))
        return StageOutput(out.filter(keep), self.reject(dropped, EMPTY, detail=details), counters)

    def process(self, batch: pa.Table, info: BatchInfo) -> StageOutput:
        strings = self.strings(batch)
        original = strings.sel.strings
        texts, changes = self.clean_texts(original, strings.markup, strings.shield)
        return self._finish(strings, original, texts, changes)

    # ------------------------------------------------------------------ boilerplate: map/reduce/apply

    def source_keys(self, batch: pa.Table) -> pa.Array:
        """Per row, the source its lines are counted in (null: the row takes no part)."""
        cfg = self.boilerplate
        if cfg.source == "file":
            return pc.replace_substring_regex(batch.column(S.SOURCE).combine_chunks(), r":[0-9]+$", "")
        import orjson

        key = cfg.source.removeprefix("meta.")
        out = []
        for m in batch.column(S.META).to_pylist():
            value = orjson.loads(m).get(key) if m else None
            out.append(None if value is None else (value if isinstance(value, str) else orjson.dumps(value).decode()))
        return pa.array(out, pa.string())

    @staticmethod
    def _lines(texts: pa.Array) -> tuple[pa.Array, np.ndarray, pa.Array]:
        """All lines of all rows, each line's row, and the lines stripped of surrounding whitespace."""
        split = pc.split_pattern(texts, "\n")
        parents = pc.list_parent_indices(split).to_numpy()
        lines = pc.list_flatten(split)
        return lines, parents, pc.utf8_trim_whitespace(lines)

    def map_facts(self, batch: pa.Table, info: BatchInfo) -> pa.Table:
        import xxhash

        # plain rows' text only: the lines of a prompt or an answer are no page template
        strings = self.strings(batch)
        texts, _ = self.clean_texts(strings.sel.strings, strings.markup, strings.shield)
        plain = strings.plain_text
        texts = texts.filter(pa.array(plain))
        sources = self.source_keys(batch)
        if len(texts) < batch.num_rows:  # rows that are not plain text (or not cleaned) take no part
            in_play = np.zeros(batch.num_rows, dtype=bool)
            in_play[strings.sel.rows[plain]] = True
            texts = pc.replace_with_mask(pc.fill_null(pa.nulls(batch.num_rows, pa.string()), ""), pa.array(in_play), texts)
            sources = pc.if_else(pa.array(in_play), sources, pa.nulls(batch.num_rows, pa.string()))
        _, parents, stripped = self._lines(texts)
        nonempty = pc.greater(pc.utf8_length(stripped), 0)
        kept = parents[nonempty.to_numpy(zero_copy_only=False)]
        counts = np.bincount(kept, minlength=batch.num_rows)
        offsets = np.zeros(batch.num_rows + 1, dtype=np.int32)
        np.cumsum(counts, out=offsets[1:])
        # a document is its cleaned text's hash: exact copies count once per line
        doc = np.fromiter((xxhash.xxh3_64_intdigest(t.encode()) for t in texts.to_pylist()),
                          dtype=np.uint64, count=batch.num_rows)
        return pa.table({
            "source": sources,
            "doc": pa.array(doc),
            "lines": pa.ListArray.from_arrays(pa.array(offsets), stripped.filter(nonempty)),
        })

    def reduce(self, facts: list[Path | None], decisions: Path, index: Path) -> dict[str, int]:
        cfg = self.boilerplate
        triples, docs, shard_sources = [], [], {}
        for shard, path in enumerate(facts):
            if path is None:
                continue
            t = pq.read_table(path).filter(pc.is_valid(pc.field("source")))
            parents = pc.list_parent_indices(t.column("lines"))
            flat = pa.table({
                "source": t.column("source").take(parents),
                "doc": t.column("doc").take(parents),
                "line": pc.list_flatten(t.column("lines")),
            })
            triples.append(flat.group_by(["source", "line", "doc"], use_threads=False).aggregate([]))
            docs.append(t.select(["source", "doc"]).group_by(["source", "doc"], use_threads=False).aggregate([]))
            shard_sources[shard] = pc.unique(t.column("source").combine_chunks())
        if not triples:
            write_decisions(decisions, {})
            return {"boilerplate_lines_found": 0}
        per_line = (pa.concat_tables(triples).group_by(["source", "line", "doc"], use_threads=False).aggregate([])
                    .group_by(["source", "line"], use_threads=False).aggregate([("doc", "count")]))
        per_source = (pa.concat_tables(docs).group_by(["source", "doc"], use_threads=False).aggregate([])
                      .group_by("source", use_threads=False).aggregate([("doc", "count")]))
        per_line = per_line.join(per_source.rename_columns(["source", "source_documents"]), "source",
                                 use_threads=False)
        documents = per_line.column("doc_count")
        enough = pc.and_(
            pc.greater_equal(documents, cfg.min_documents),
            pc.greater_equal(pc.cast(documents, pa.float64()),
                             pc.multiply(pc.cast(per_line.column("source_documents"), pa.float64()), cfg.min_fraction)),
        )
        found = (per_line.filter(enough)
                 .select(["source", "line", "doc_count", "source_documents"])
                 .rename_columns(["source", "line", "documents", "source_documents"])
                 .sort_by([("source", "ascending"), ("line", "ascending")]))
        index.mkdir(parents=True, exist_ok=True)
        pq.write_table(found, index / "boilerplate_lines.parquet", compression="zstd")
        tables = {}
        for shard, sources in shard_sources.items():
            mine = found.filter(pc.is_in(found.column("source"), value_set=sources))
            if mine.num_rows:
                tables[shard] = mine.select(["source", "line"])
        write_decisions(decisions, tables)
        return {"boilerplate_lines_found": found.num_rows,
                "boilerplate_sources": len(set(found.column("source").to_pylist()))}

    def apply(self, batch: pa.Table, info: BatchInfo, decision: pa.Table | None) -> StageOutput:
        strings = self.strings(batch)
        original = strings.sel.strings
        texts, changes = self.clean_texts(original, strings.markup, strings.shield)
        removed_lines = 0
        changes[BOILERPLATE] = np.zeros(len(texts), dtype=bool)
        if decision is not None and decision.num_rows:
            at = np.flatnonzero(strings.plain_text)  # the plain rows' texts among the strings
            plain = texts.take(pa.array(at))
            sources = self.source_keys(batch).take(pa.array(strings.sel.rows[at]))
            lines, parents, stripped = self._lines(plain)
            positions = pa.table({
                "source": sources.take(pa.array(parents)),
                "line": stripped,
                "position": pa.array(np.arange(len(lines), dtype=np.int64)),
            })
            hits = positions.join(decision, ["source", "line"], join_type="inner", use_threads=False)
            boiler = np.zeros(len(lines), dtype=bool)
            boiler[hits.column("position").to_numpy()] = True
            if boiler.any():
                removed_lines = int(boiler.sum())
                hit = np.bincount(parents[boiler], minlength=len(plain)) > 0
                offsets = np.zeros(len(plain) + 1, dtype=np.int32)
                np.cumsum(np.bincount(parents[~boiler], minlength=len(plain)), out=offsets[1:])
                remaining = pa.ListArray.from_arrays(pa.array(offsets), lines.filter(pa.array(~boiler)))
                joined = pc.binary_join(remaining, "\n")
                # the blank lines around a removed line are tidied like the rest of the text
                joined = normalize_whitespace(joined, self.config.whitespace)
                mask = np.zeros(len(texts), dtype=bool)
                mask[at[hit]] = True
                texts = pc.replace_with_mask(texts, pa.array(mask), joined.filter(pa.array(hit)))
                changes[BOILERPLATE] = mask
        return self._finish(strings, original, texts, changes,
                            {"boilerplate_lines_removed": removed_lines} if removed_lines else None)


@dataclass
class _Strings:
    """The strings a clean pass works on (one flat array over the selected fields), and per string
    what applies to it."""

    sel: sft.FieldSelection
    #: the string is a ``text`` value (not a trained field of an instruction or chat row)
    is_text: np.ndarray
    #: ... of a plain-text row: the strings emptiness rejects on as ever, and boilerplate reads
    plain_text: np.ndarray
    #: markup may be stripped (None: wherever strip_markup is on)
    markup: np.ndarray | None
    #: code is set aside (instruction and chat fields; None: no string)
    shield: np.ndarray | None
    #: the field of each string for the counters (``response``, ``messages.user``); None on text corpora
    labels: pa.Array | None


def _with_changes(batch: pa.Table, change_col: pa.Array) -> pa.Table:
    if CHANGES in batch.column_names:
        batch = batch.drop_columns([CHANGES])
    return batch.append_column(pa.field(CHANGES, pa.list_(pa.string())), change_col)
