"""Arrow's JSON parser for clean blocks of JSONL: the reader's fast path.

Parsing JSON into Python objects and encoding every text back to UTF-8 for Arrow costs ~9 us a
row; Arrow's C++ parser builds the columns directly in ~3 us. It is used only where it gives
exactly the rows the per-row path (``RecordBuilder.add``) would give, and only in ``text`` mode:

- every line of the block is one JSON object, so row ``i`` is line ``first + i``: no blank or
  whitespace-only lines, no two objects on one line, no byte order mark;
- the text field is a string on every row, non-empty, not only whitespace (Python's notion of
  whitespace), without NUL, and within ``max_text_bytes``;
- the id field, where mapped, is a non-empty string or an integer on every row; the label field,
  where mapped, is a string or an integer or null;
- other fields, kept in ``meta`` (``keep_meta``), are strings, integers, booleans or non-integral
  floats present and non-null on every row of the block; ``meta`` is then assembled column-wise
  into the JSON object (sorted keys) orjson writes in the per-row path. Nested values, nulls,
  missing fields, integral floats (``5`` and ``5.0`` both parse to 5.0) and strings Arrow
  takes for timestamps send the block to the per-row path.

A block that breaks any of these (a malformed line, a wrong type, a row to reject) returns None
and goes through the per-row path, which rejects what must be rejected with its reason. So the
rows, their order and every byte published are the same whichever path read them.
"""

from __future__ import annotations

import io
import re

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj
from xxhash import xxh3_64_hexdigest

from corpusmill import schema as S

# the characters for which Python's str.isspace() is true (tests check this list against Python)
PY_WHITESPACE = ("\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
                 "\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000")
_ONLY_WHITESPACE = "^[" + "".join(f"\\x{{{ord(c):x}}}" for c in PY_WHITESPACE) + "]*$"
# a line that is empty or only ASCII whitespace: the per-row path rejects it as blank_line.
# The regex is slow, so it runs only on blocks where a line starts with whitespace at all.
_BLANK_LINE = re.compile(rb"(?:^|\n)[ \t\r\x0b\x0c]*(?:\n|\Z)")
_SPACE_BYTES = np.frombuffer(b"\n \t\r\x0b\x0c", np.uint8)
# a NUL in a parsed string can only come from this escape (a raw NUL is not valid JSON)
_NUL_ESCAPE = b"\\u0000"
_BOM = b"\xef\xbb\xbf"
# JSON string escapes as orjson writes them (backslash first); other control characters, which
# orjson writes as \u00XX, send the block to the per-row path
_JSON_ESCAPES = [("\\", "\\\\"), ('"', '\\"'), ("\n", "\\n"), ("\r", "\\r"), ("\t", "\\t"),
                 ("\x08", "\\b"), ("\x0c", "\\f")]
_RARE_CONTROL = "[\\x00-\\x07\\x0b\\x0e-\\x1f]"


class ArrowJsonl:
    """Reads one input's clean JSONL blocks into record tables (see the module docstring)."""

    def __init__(self, builder) -> None:
        spec = builder.spec
        self.schema = builder.schema
        self.text_field = spec.text_field
        self.id_field = spec.id_field
        self.label_field = spec.label_field if S.LABEL in builder.schema.names else None
        self.mapped = {f for f in (spec.text_field, spec.id_field, spec.label_field) if f}
        self.keep_meta = spec.keep_meta
        self.max_bytes = spec.max_text_bytes
        self.id_prefix = builder.id_prefix.encode("utf-8", "surrogatepass")
        self.source_prefix = builder.source_prefix
        self.misses = 0  # blocks in a row the per-row path had to read
        self.unfit = False  # the rows' shape (their meta fields) needs the per-row path
        self.probed = False
        # every field is parsed (and checked for valid UTF-8) whether kept or not, as the
        # per-row path parses the whole line
        self.parse_options = pj.ParseOptions(explicit_schema=pa.schema([pa.field(spec.text_field, pa.string())]),
                                             newlines_in_values=False, unexpected_field_behavior="infer")

    @staticmethod
    def usable(builder) -> bool:
        """Only plain text rows: prompt/response and chat messages take the per-row path."""
        return builder.mode == "text" and builder.spec.text_field not in (builder.spec.id_field, builder.spec.label_field)

    @property
    def gave_up(self) -> bool:
        """The shard's rows are not the kind the fast path reads (their meta fields are nested,
        null or integral floats), or two blocks in a row needed the per-row path: stop spending
        a parse on each block."""
        return self.unfit or self.misses >= 2

    def read(self, block: bytes, first_line: int) -> pa.Table | None:
        """The record table of ``block`` (whole lines, each ending in a newline but possibly the
        last), or None where the per-row path must read it."""
        if not self.probed:
            # the shard's first ~64 KB show cheaply whether its rows' shape suits the fast path
            self.probed = True
            end = block.find(b"\n", 1 << 16) + 1
            if 0 < end < len(block):
                self._read(block[:end], first_line)
                if self.unfit:
                    return None
        table = self._read(block, first_line)
        self.misses = 0 if table is not None else self.misses + 1
        return table

    def _read(self, block: bytes, first_line: int) -> pa.Table | None:
        if not block or _BOM in block or _NUL_ESCAPE in block or self._blank_line(block):
            return None
        lines = block.count(b"\n") + (not block.endswith(b"\n"))
        try:
            table = pj.read_json(io.BytesIO(block), read_options=pj.ReadOptions(use_threads=False, block_size=len(block) + 1),
                                 parse_options=self.parse_options)
        except (pa.ArrowException, UnicodeDecodeError, ValueError):
            return None
        if table.num_rows != lines:
            return None
        try:
            table.validate(full=True)  # valid UTF-8 in every string, kept or not
        except pa.ArrowInvalid:
            return None
        if not all(pa.types.is_string(t) or pa.types.is_integer(t) or pa.types.is_null(t) for t in table.schema.types):
            # Arrow reads the NaN and Infinity literals, which JSON (and the per-row path) rejects
            if b"NaN" in block or b"Infinity" in block:
                return None
        meta = pa.nulls(table.num_rows, pa.string())
        if self.keep_meta and any(name not in self.mapped for name in table.column_names):
            meta = self._meta(table)
            if meta is None or meta is False:
                self.unfit = meta is None
                return None
        text = table.column(self.text_field)
        if not self._texts_ok(text):
            return None
        ids = self._ids(table, text)
        labels = self._labels(table)
        if ids is None or labels is False:
            return None
        n = table.num_rows
        columns = {
            S.ID: ids,
            S.TEXT: text.combine_chunks(),
            S.SOURCE: pa.array([f"{self.source_prefix}{line}" for line in range(first_line, first_line + n)], pa.string()),
            S.META: meta,
        }
        if S.LABEL in self.schema.names:
            columns[S.LABEL] = labels if labels is not None else pa.nulls(n, pa.string())
        # columns other inputs of the pipeline map (prompt, messages...): null on plain-text rows
        return pa.Table.from_arrays([columns[f.name] if f.name in columns else pa.nulls(n, f.type) for f in self.schema],
                                    schema=self.schema)

    def _meta(self, table: pa.Table) -> pa.Array | None | bool:
        """The unmapped fields of each row as a JSON object with sorted keys, byte for byte as
        orjson writes it in the per-row path. None where the rows' shape needs that path (a
        missing or null field, which Arrow cannot tell apart, a nested value, an integral float, a
        string Arrow took for a time); False where only this block does (a rare control character)."""
        fragments = []
        for name in sorted(c for c in table.column_names if c not in self.mapped):
            col = table.column(name)
            if col.null_count:
                return None
            if pa.types.is_string(col.type):
                if pc.any(pc.match_substring_regex(col, _RARE_CONTROL)).as_py():
                    return False
                for raw, escaped in _JSON_ESCAPES:
                    col = pc.replace_substring(col, raw, escaped)
                value = pc.binary_join_element_wise('"', col, '"', "")
            elif pa.types.is_integer(col.type):
                value = col.cast(pa.string())
            elif pa.types.is_boolean(col.type):
                value = pc.if_else(col, "true", "false")
            elif pa.types.is_floating(col.type):
                values = col.to_numpy()
                if (values == np.floor(values)).any():
                    # 5 and 5.0 both arrive as 5.0 (Arrow widens a column mixing integers and
                    # floats, and integers beyond int64), while the per-row path writes each as given
                    return None
                dumps = orjson.dumps
                value = pa.array([dumps(v).decode() for v in values.tolist()], pa.string())
            else:
                return None
            key = orjson.dumps(name).decode()
            fragments.append(pc.binary_join_element_wise(key, value, ":"))
        meta = pc.binary_join_element_wise("{", pc.binary_join_element_wise(*fragments, ","), "}", "")
        return meta.combine_chunks() if isinstance(meta, pa.ChunkedArray) else meta

    @staticmethod
    def _blank_line(block: bytes) -> bool:
        """Whether a line is empty or only whitespace (checked by regex only where a line starts
        with whitespace at all, which the vectorised test finds cheaply)."""
        buf = np.frombuffer(block, np.uint8)
        starts = np.flatnonzero(buf[:-1] == 10) + 1  # (a newline ending the block starts no line)
        if not np.isin(buf[starts], _SPACE_BYTES).any() and buf[0] not in _SPACE_BYTES:
            return False
        return _BLANK_LINE.search(block, 0, len(block) - block.endswith(b"\n")) is not None

    def _texts_ok(self, text: pa.ChunkedArray) -> bool:
        if text.null_count:
            return False
        if self.max_bytes and pc.max(pc.binary_length(text)).as_py() > self.max_bytes:
            return False
        return not pc.any(pc.match_substring_regex(text, _ONLY_WHITESPACE)).as_py()

    def _ids(self, table: pa.Table, text: pa.ChunkedArray) -> pa.Array | None:
        if not self.id_field:
            # generated ids: a hash of the file name and the text, as the per-row path builds them
            prefix = self.id_prefix
            return pa.array([xxh3_64_hexdigest(prefix + t) for t in text.cast(pa.binary()).to_pylist()], pa.string())
        if self.id_field not in table.column_names:
            return None
        ids = table.column(self.id_field)
        if pa.types.is_integer(ids.type):
            ids = ids.cast(pa.string())
        elif not pa.types.is_string(ids.type):
            return None
        if ids.null_count or pc.any(pc.equal(pc.binary_length(ids), 0)).as_py():
            return None
        return ids.combine_chunks()

    def _labels(self, table: pa.Table) -> pa.Array | None | bool:
        """The label column, None when the input has none, False when a row needs the per-row path."""
        if not self.label_field or self.label_field not in table.column_names:
            return None
        labels = table.column(self.label_field)
        if pa.types.is_integer(labels.type):
            labels = labels.cast(pa.string())
        elif pa.types.is_null(labels.type):
            labels = labels.cast(pa.string())
        elif not pa.types.is_string(labels.type):
            return False
        return labels.combine_chunks()
