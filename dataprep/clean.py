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
"""

from __future__ import annotations

import unicodedata
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pydantic import Field, field_validator

from corpusmill import schema as S
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
    strip_markup: bool = Field(
        True,
        description="convert HTML/XML to text: block elements become line/paragraph breaks, "
        "script/style content is dropped, character references are decoded; text that only looks "
        "like a tag (<nick>, <stdio.h>) is kept",
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
        "thresholds. Needs a global pass over the data (the stage then runs map/reduce/apply)",
    )


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

    # ------------------------------------------------------------------ the per-row steps

    def clean_texts(self, texts: pa.Array) -> tuple[pa.Array, dict[str, np.ndarray]]:
        """The cleaned texts and, per change kind, a mask of the rows that step changed."""
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
        if cfg.strip_markup:
            from corpusmill.dataprep.markup import decode_entities, markup_candidates, markup_to_text

            tagged, entities = markup_candidates(texts)
            step(MARKUP, _python_fix(texts, tagged, markup_to_text))
            step(ENTITIES, _python_fix(texts, entities, decode_entities))
        if cfg.unicode_form != "none":
            step(UNICODE, _normalize_unicode(texts, cfg.unicode_form))
        if cfg.whitespace != "none":
            step(WHITESPACE, normalize_whitespace(texts, cfg.whitespace))
        return texts, changes

    def _finish(self, batch: pa.Table, original: pa.Array, texts: pa.Array,
                changes: dict[str, np.ndarray], extra_counters: dict[str, int] | None = None) -> StageOutput:
        """Put the cleaned text and the clean_changes column in, reject the rows left empty."""
        n = batch.num_rows
        kinds = [k for k in KINDS if k in changes]
        matrix = np.stack([changes[k] for k in kinds], axis=1) if kinds else np.zeros((n, 0), bool)
        rows, cols = np.nonzero(matrix)  # row-major: each row's kinds in KINDS order
        offsets = np.zeros(n + 1, dtype=np.int32)
        np.cumsum(np.bincount(rows, minlength=n), out=offsets[1:])
        names = pa.array(kinds, pa.string()).take(pa.array(cols, pa.int64())) if kinds else pa.array([], pa.string())
        change_col = pa.ListArray.from_arrays(pa.array(offsets), names)

        idx = batch.schema.get_field_index(S.TEXT)
        out = batch.set_column(idx, batch.schema.field(idx), texts)
        if CHANGES in out.column_names:
            out = out.drop_columns([CHANGES])
        out = out.append_column(pa.field(CHANGES, pa.list_(pa.string())), change_col)

        empty = pc.match_substring_regex(texts, r"^\s*$").to_numpy(zero_copy_only=False)
        counters = {k: int(changes[k].sum()) for k in kinds}
        counters.update(extra_counters or {})
        counters = {k: v for k, v in counters.items() if v}
        if not empty.any():
            return StageOutput(out, None, counters)
        details = []
        lengths = pc.utf8_length(original).to_numpy(zero_copy_only=False)
        for r in np.flatnonzero(empty):
            steps = [kinds[c] for c in np.flatnonzero(matrix[r])]
            details.append(
                f"no text left after {', '.join(steps) if steps else 'cleaning'} "
                f"({lengths[r]} characters before cleaning)"
            )
        keep = pa.array(~empty)
        # a rejected row keeps the text it came in with: what was lost stays visible
        dropped = out.set_column(idx, out.schema.field(idx), original).filter(pc.invert(keep))
        return StageOutput(out.filter(keep), self.reject(dropped, EMPTY, detail=details), counters)

    def process(self, batch: pa.Table, info: BatchInfo) -> StageOutput:
        original = batch.column(S.TEXT).combine_chunks()
        texts, changes = self.clean_texts(original)
        return self._finish(batch, original, texts, changes)

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

        texts, _ = self.clean_texts(batch.column(S.TEXT).combine_chunks())
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
            "source": self.source_keys(batch),
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
        original = batch.column(S.TEXT).combine_chunks()
        texts, changes = self.clean_texts(original)
        removed_lines = 0
        changes[BOILERPLATE] = np.zeros(batch.num_rows, dtype=bool)
        if decision is not None and decision.num_rows:
            sources = self.source_keys(batch)
            lines, parents, stripped = self._lines(texts)
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
                hit = np.bincount(parents[boiler], minlength=batch.num_rows) > 0
                offsets = np.zeros(batch.num_rows + 1, dtype=np.int32)
                np.cumsum(np.bincount(parents[~boiler], minlength=batch.num_rows), out=offsets[1:])
                remaining = pa.ListArray.from_arrays(pa.array(offsets), lines.filter(pa.array(~boiler)))
                joined = pc.binary_join(remaining, "\n")
                # the blank lines around a removed line are tidied like the rest of the text
                joined = normalize_whitespace(joined, self.config.whitespace)
                texts = pc.replace_with_mask(texts, pa.array(hit), joined.filter(pa.array(hit)))
                changes[BOILERPLATE] = hit
        return self._finish(batch, original, texts, changes,
                            {"boilerplate_lines_removed": removed_lines} if removed_lines else None)
