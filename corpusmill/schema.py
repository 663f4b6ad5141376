"""The record shape: Arrow columns every stage sees, and the extra columns of a rejected row."""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa

ID = "id"
TEXT = "text"
LABEL = "label"
PROMPT = "prompt"
RESPONSE = "response"
SYSTEM = "system"  # optional system prompt of a single-turn row
MESSAGES = "messages"
SOURCE = "source"  # "<file name relative to its input pattern>:<line or row number>"
META = "meta"  # JSON object of the input fields that were not mapped, or null
SPLIT = "split"

# Columns of a rejected row, added to the columns the row had when the stage saw it.
STAGE = "stage"
REASON = "reason"
DETAIL = "detail"  # human-readable why, e.g. the JSON parser's message
DUPLICATE_OF = "duplicate_of"  # id of the kept representative, for duplicates
SIMILARITY = "similarity"  # estimated similarity to duplicate_of, for duplicates
RAW = "raw"  # the undecodable input bytes, for rows that could not be read

#: a conversation: role, content, and the message's other keys (tool_calls, name, weight...) as one
#: JSON object, or null; exports merge ``extra`` back into the message
MESSAGE_TYPE = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string()), ("extra", pa.string())]))
#: the conversation type of versions written before ``extra`` (code version < 0.3.0)
MESSAGE_TYPE_V1 = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))

REJECT_FIELDS = [
    pa.field(STAGE, pa.string(), nullable=False),
    pa.field(REASON, pa.string(), nullable=False),
    pa.field(DETAIL, pa.string()),
    pa.field(DUPLICATE_OF, pa.string()),
    pa.field(SIMILARITY, pa.float32()),
    pa.field(RAW, pa.binary()),
]
REJECT_COLUMNS = [f.name for f in REJECT_FIELDS]


def record_schema(*, label: bool = False, prompt_response: bool = False, messages: bool = False) -> pa.Schema:
    """Schema of rows as they leave the reader. Optional columns exist only when an input maps them,
    so the schema is a function of the pipeline config, identical on every shard."""
    fields = [pa.field(ID, pa.string(), nullable=False), pa.field(TEXT, pa.string(), nullable=False)]
    if label:
        fields.append(pa.field(LABEL, pa.string()))
    if prompt_response:
        fields += [pa.field(SYSTEM, pa.string()), pa.field(PROMPT, pa.string()), pa.field(RESPONSE, pa.string())]
    if messages:
        fields.append(pa.field(MESSAGES, MESSAGE_TYPE))
    fields += [pa.field(SOURCE, pa.string(), nullable=False), pa.field(META, pa.string())]
    return pa.schema(fields)


def reject_schema(base: pa.Schema) -> pa.Schema:
    """``base`` with nullable copies of its fields, followed by the reject columns."""
    fields = [pa.field(f.name, f.type) for f in base if f.name not in REJECT_COLUMNS]
    return pa.schema(fields + REJECT_FIELDS)


def make_rejects(
    rows: pa.Table,
    *,
    stage: str,
    reason: str | Sequence[str],
    detail: str | Sequence[str | None] | None = None,
    duplicate_of: Sequence[str | None] | None = None,
    similarity: Sequence[float | None] | None = None,
) -> pa.Table:
    """Attach the reject columns to ``rows`` (the rows a stage drops, with every column they had).

    ``reason`` and ``detail`` may be one value for all rows or one per row.
    """
    n = rows.num_rows

    def column(value, type_):
        if value is None:
            return pa.nulls(n, type_)
        if isinstance(value, (str, bytes)):
            return pa.array([value] * n, type_)
        return pa.array(list(value), type_)

    if not isinstance(reason, str) and any(r is None for r in reason):
        raise ValueError("every rejected row needs a reason")
    out = rows
    for name in REJECT_COLUMNS:
        if name in out.column_names:
            out = out.drop_columns([name])
    out = out.append_column(REJECT_FIELDS[0], column(stage, pa.string()))
    out = out.append_column(REJECT_FIELDS[1], column(reason, pa.string()))
    out = out.append_column(REJECT_FIELDS[2], column(detail, pa.string()))
    out = out.append_column(REJECT_FIELDS[3], column(duplicate_of, pa.string()))
    out = out.append_column(REJECT_FIELDS[4], column(similarity, pa.float32()))
    out = out.append_column(REJECT_FIELDS[5], pa.nulls(n, pa.binary()))
    return out


def empty_like(schema: pa.Schema) -> pa.Table:
    return schema.empty_table()
