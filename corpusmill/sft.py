"""Instruction and chat rows: which fields a stage reads and rewrites, and ``text`` derived from them.

A row is one of three kinds (DESIGN.md, the trained-fields rule):

* plain text: only ``text``;
* a single turn: ``prompt`` and ``response``, optional ``system``;
* a conversation: ``messages``, a list of ``{role, content, extra}`` (``extra``: the message's other
  keys, such as ``tool_calls`` or ``name``, as one JSON object, or null).

For instruction and chat rows the trained fields are the data; ``text`` is derived from them
(:func:`derive_text`) for search, display and reports, after every rewrite, and never edited on its own.

A stage names what it reads or rewrites with a list of **field references**:

* ``text``: the text column (for SFT rows, the derived text: read-only in effect);
* ``prompt``, ``response``, ``system``: those columns;
* ``messages``: the content of every message; ``messages.<role>`` (``messages.user``,
  ``messages.assistant``, ...): the content of that role's messages only;
* ``trained``: every trained field (system, prompt, response, every message's content), and
  ``text`` for plain-text rows: the default of rewriting stages.

:class:`FieldSelection` turns such a list into one flat Arrow string array over a batch (so a
vectorised text function runs once over every selected string) and writes the results back,
re-deriving ``text``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from corpusmill import schema as S
from corpusmill.errors import CorpusmillError

TRAINED = "trained"
#: the roles a conversation may hold once read (readers map other dialects onto these)
ROLES = ("system", "user", "assistant", "tool")
#: separator between system, prompt and response in the derived text; between messages it is "\n"
PR_SEPARATOR = "\n\n"


def is_sft(schema: pa.Schema) -> bool:
    """True when rows of this schema may be instruction or chat rows."""
    return S.PROMPT in schema.names or S.MESSAGES in schema.names


def field_choices(schema: pa.Schema) -> list[str]:
    """The field references valid on this schema, for messages."""
    out = [S.TEXT, TRAINED]
    for c in (S.SYSTEM, S.PROMPT, S.RESPONSE):
        if c in schema.names:
            out.append(c)
    if S.MESSAGES in schema.names:
        out += [S.MESSAGES] + [f"{S.MESSAGES}.{r}" for r in ROLES]
    return out


def check_fields(fields: Sequence[str], schema: pa.Schema, stage: str, option: str = "fields") -> None:
    """Raise a clear error when ``fields`` names a field these rows do not have."""
    valid = field_choices(schema)
    bad = [f for f in fields if f not in valid and not (f.startswith(S.MESSAGES + ".") and S.MESSAGES in schema.names)]
    if bad:
        hint = []
        for f in bad:
            base = f.split(".")[0]
            if base in (S.PROMPT, S.RESPONSE, S.SYSTEM):
                hint.append(f"map it in the inputs ({base}_field, or dialect: alpaca / dolly, or prompt_template)")
            elif base == S.MESSAGES:
                hint.append("map it in the inputs (messages_field, or dialect: sharegpt / openai)")
        raise CorpusmillError(
            f"stage '{stage}': {option} lists {', '.join(repr(f) for f in bad)}, which these rows do not have; "
            f"valid here: {', '.join(valid)}" + (f" ({hint[0]})" if hint else "")
        )


def _column(batch: pa.Table, name: str) -> pa.Array:
    col = batch.column(name)
    return col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col


def _list_offsets(arr: pa.ListArray) -> np.ndarray:
    """Offsets into ``arr.flatten()`` (null lists count as empty), from 0."""
    lengths = pc.fill_null(pc.list_value_length(arr), 0).to_numpy(zero_copy_only=False).astype(np.int64)
    return np.concatenate([[0], np.cumsum(lengths)])


def plain_rows(batch: pa.Table) -> np.ndarray:
    """Rows that are plain text: neither a prompt nor messages."""
    n = batch.num_rows
    mask = np.ones(n, dtype=bool)
    for c in (S.PROMPT, S.MESSAGES):
        if c in batch.column_names:
            mask &= _column(batch, c).is_null().to_numpy(zero_copy_only=False)
    return mask


def _message_contents(messages: pa.Array) -> tuple[pa.Array, pa.Array, np.ndarray]:
    """(flat content, flat role, offsets) of a messages column."""
    flat = messages.flatten()
    return flat.field("content"), flat.field("role"), _list_offsets(messages)


def derive_text(batch: pa.Table) -> pa.Table:
    """``batch`` with ``text`` re-derived from the trained fields on instruction and chat rows:
    system, prompt and response joined by a blank line; a conversation's message contents joined
    by newlines. Plain-text rows keep their text."""
    names = batch.column_names
    if S.TEXT not in names or not (S.PROMPT in names or S.MESSAGES in names):
        return batch
    text = _column(batch, S.TEXT)
    derived = None
    if S.PROMPT in names:
        joined = _join_present(batch, (S.SYSTEM, S.PROMPT, S.RESPONSE))
        has_prompt = pc.is_valid(_column(batch, S.PROMPT))
        derived = pc.if_else(has_prompt, joined, pa.nulls(len(joined), pa.string()))
    if S.MESSAGES in names:
        messages = _column(batch, S.MESSAGES)
        content, _, offsets = _message_contents(messages)
        content = pc.fill_null(content, "")
        lists = pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), content, mask=messages.is_null())
        joined = pc.binary_join(lists, "\n")
        derived = joined if derived is None else pc.coalesce(derived, joined)
    new = pc.coalesce(derived, text)
    if new.equals(text):
        return batch
    return batch.set_column(names.index(S.TEXT), batch.schema.field(S.TEXT), new)


def _join_present(batch: pa.Table, columns: tuple[str, ...]) -> pa.Array:
    """The columns' values joined by :data:`PR_SEPARATOR`, nulls skipped. The prompt's nulls are
    read as "" (callers mask rows without a prompt): pyarrow 26 drops rows whose every input is
    null from a skip-join instead of returning null for them."""
    parts = [pc.fill_null(_column(batch, c), "") if c == S.PROMPT else _column(batch, c)
             for c in columns if c in batch.column_names]
    return pc.binary_join_element_wise(*parts, PR_SEPARATOR, null_handling="skip")


@dataclass
class _Segment:
    ref: str  # "text", "prompt", "messages", ...
    rows: np.ndarray  # row of each selected string
    mask: np.ndarray  # selected positions in the column (or in the messages' flat content)
    roles: frozenset[str] | None = None  # messages only; None = every role


class FieldSelection:
    """The strings of a batch that a stage reads or rewrites, as one flat array.

    ``strings`` holds them field by field; ``rows`` says which row each came from and ``refs``
    which field. :meth:`write` puts rewritten strings back (same order) and re-derives ``text``.
    """

    def __init__(self, batch: pa.Table, fields: Sequence[str]) -> None:
        self.batch = batch
        self.segments: list[_Segment] = []
        parts: list[pa.Array] = []
        names = batch.column_names
        plain = plain_rows(batch)
        expanded: list[str] = []
        for f in fields:
            if f == TRAINED:
                expanded += [c for c in (S.SYSTEM, S.PROMPT, S.RESPONSE, S.MESSAGES) if c in names]
                expanded.append("text:plain")
            else:
                expanded.append(f)
        seen_roles: dict[str, set[str] | None] = {}
        order: list[str] = []
        for f in expanded:
            if f.startswith(S.MESSAGES):
                role = f.partition(".")[2]
                if S.MESSAGES not in seen_roles:
                    order.append(S.MESSAGES)
                    seen_roles[S.MESSAGES] = set()
                cur = seen_roles[S.MESSAGES]
                if not role:
                    seen_roles[S.MESSAGES] = None
                elif cur is not None:
                    cur.add(role)
            elif f not in order:
                order.append(f)
        if "text" in order and "text:plain" in order:
            order.remove("text:plain")
        for ref in order:
            if ref in ("text", "text:plain"):
                col = _column(batch, S.TEXT)
                mask = plain.copy() if ref == "text:plain" else np.ones(batch.num_rows, dtype=bool)
                rows = np.flatnonzero(mask)
                self.segments.append(_Segment(S.TEXT, rows, mask))
                parts.append(col.filter(pa.array(mask)))
            elif ref == S.MESSAGES:
                if S.MESSAGES not in names:
                    continue
                roles = seen_roles[S.MESSAGES]
                content, role, offsets = _message_contents(_column(batch, S.MESSAGES))
                mask = content.is_valid().to_numpy(zero_copy_only=False)
                if roles is not None:
                    mask &= pc.is_in(role, pa.array(sorted(roles), pa.string())).to_numpy(zero_copy_only=False)
                parent = np.repeat(np.arange(batch.num_rows), np.diff(offsets))
                self.segments.append(_Segment(S.MESSAGES, parent[mask], mask, frozenset(roles) if roles else None))
                parts.append(content.filter(pa.array(mask)))
            else:
                if ref not in names:
                    continue
                col = _column(batch, ref)
                mask = col.is_valid().to_numpy(zero_copy_only=False)
                self.segments.append(_Segment(ref, np.flatnonzero(mask), mask))
                parts.append(col.filter(pa.array(mask)))
        self.strings: pa.Array = pa.concat_arrays([p.cast(pa.string()) for p in parts]) if parts else pa.array([], pa.string())
        self.rows: np.ndarray = np.concatenate([s.rows for s in self.segments]) if self.segments else np.zeros(0, np.int64)
        self.refs: list[str] = [s.ref for s in self.segments]
        self._bounds = np.cumsum([0] + [len(s.rows) for s in self.segments])

    def __len__(self) -> int:
        return len(self.strings)

    def ref_of(self) -> np.ndarray:
        """The field of each selected string (``text``, ``prompt``, ``messages``...), as an object array."""
        out = np.empty(len(self.rows), dtype=object)
        for k, s in enumerate(self.segments):
            out[self._bounds[k]:self._bounds[k + 1]] = s.ref
        return out

    def per_row(self, values: np.ndarray, how: str = "any") -> np.ndarray:
        """Reduce a per-string boolean array to one value per row: ``any`` or ``all`` (rows with no
        selected string: False for any, True for all)."""
        n = self.batch.num_rows
        values = np.asarray(values, dtype=bool)
        if how == "any":
            out = np.zeros(n, dtype=bool)
            np.logical_or.at(out, self.rows, values)
        else:
            out = np.ones(n, dtype=bool)
            np.logical_and.at(out, self.rows, values)
        return out

    def write(self, strings: pa.Array | Sequence[str]) -> pa.Table:
        """The batch with the selected strings replaced by ``strings`` (same order) and ``text``
        re-derived from the trained fields."""
        if not isinstance(strings, (pa.Array, pa.ChunkedArray)):
            strings = pa.array(list(strings), pa.string())
        if isinstance(strings, pa.ChunkedArray):
            strings = strings.combine_chunks()
        if len(strings) != len(self.strings):
            raise ValueError(f"{len(strings)} strings for {len(self.strings)} selected")
        batch = self.batch
        for k, seg in enumerate(self.segments):
            new = strings.slice(self._bounds[k], self._bounds[k + 1] - self._bounds[k])
            name = seg.ref
            idx = batch.column_names.index(name)
            col = _column(batch, name)
            if name == S.MESSAGES:
                col = _replace_contents(col, seg.mask, new)
            else:
                col = pc.replace_with_mask(col, pa.array(seg.mask), new.cast(col.type))
            batch = batch.set_column(idx, batch.schema.field(name), col)
        return derive_text(batch)


def _replace_contents(messages: pa.Array, mask: np.ndarray, new: pa.Array) -> pa.Array:
    """A messages column whose flat contents at ``mask`` are replaced by ``new``."""
    flat = messages.flatten()
    content = pc.replace_with_mask(flat.field("content"), pa.array(mask), new)
    struct_type = flat.type
    children = [content if f.name == "content" else flat.field(f.name) for f in struct_type]
    structs = pa.StructArray.from_arrays(children, fields=list(struct_type))
    offsets = pa.array(_list_offsets(messages), pa.int32())
    out = pa.ListArray.from_arrays(offsets, structs, mask=messages.is_null())
    return out.cast(messages.type)


def default_fields(schema: pa.Schema) -> list[str]:
    """What a rewriting stage touches when its ``fields`` option is not set: the trained fields on
    instruction and chat rows, ``text`` on plain rows."""
    return [TRAINED] if is_sft(schema) else [S.TEXT]


def user_turns_text(batch: pa.Table) -> pa.Array:
    """Per row, the user side: the prompt (with the system prompt, if any), or the user turns of a
    conversation joined by newlines, or the text of a plain row."""
    return _side_text(batch, user=True)


def first_user_turn(batch: pa.Table) -> pa.Array:
    """Per row, the prompt, or the first user turn of a conversation, or the text of a plain row:
    the key that keeps rows asking the same thing together."""
    names = batch.column_names
    out = None
    if S.PROMPT in names:
        out = _column(batch, S.PROMPT)
    if S.MESSAGES in names:
        messages = _column(batch, S.MESSAGES)
        content, role, offsets = _message_contents(messages)
        is_user = pc.equal(role, "user").to_numpy(zero_copy_only=False)
        parent = np.repeat(np.arange(batch.num_rows), np.diff(offsets))
        first = np.full(batch.num_rows, -1, dtype=np.int64)
        pos = np.flatnonzero(is_user)
        # the first user message of each row: the first occurrence of each parent among them
        rows, at = np.unique(parent[pos], return_index=True)
        first[rows] = pos[at]
        values = content.take(pa.array(np.where(first >= 0, first, 0))) if len(content) else pa.nulls(batch.num_rows, pa.string())
        values = pc.if_else(pa.array(first >= 0), values, pa.nulls(batch.num_rows, pa.string()))
        out = values if out is None else pc.coalesce(out, values)
    text = _column(batch, S.TEXT)
    return text if out is None else pc.coalesce(out, text)


def _side_text(batch: pa.Table, *, user: bool) -> pa.Array:
    names = batch.column_names
    out = None
    if S.PROMPT in names:
        if user:
            out = _join_present(batch, (S.SYSTEM, S.PROMPT))
            out = pc.if_else(pc.is_valid(_column(batch, S.PROMPT)), out, pa.nulls(batch.num_rows, pa.string()))
        else:
            out = _column(batch, S.RESPONSE)
    if S.MESSAGES in names:
        messages = _column(batch, S.MESSAGES)
        content, role, offsets = _message_contents(messages)
        keep = pc.is_in(role, pa.array(["system", "user"] if user else ["assistant"])).to_numpy(zero_copy_only=False)
        parent = np.repeat(np.arange(batch.num_rows), np.diff(offsets))
        kept_parent = parent[keep]
        counts = np.bincount(kept_parent, minlength=batch.num_rows)
        sub_offsets = pa.array(np.concatenate([[0], np.cumsum(counts)]), pa.int32())
        lists = pa.ListArray.from_arrays(sub_offsets, pc.fill_null(content.filter(pa.array(keep)), ""))
        joined = pc.binary_join(lists, "\n")
        joined = pc.if_else(messages.is_valid(), joined, pa.nulls(batch.num_rows, pa.string()))
        out = joined if out is None else pc.coalesce(out, joined)
    text = _column(batch, S.TEXT)
    return text if out is None else pc.coalesce(out, text)


def assistant_turns_text(batch: pa.Table) -> pa.Array:
    """Per row, the response, or the assistant turns of a conversation joined by newlines, or the
    text of a plain row."""
    return _side_text(batch, user=False)


def plain_messages(messages: list[dict] | None) -> list[dict] | None:
    """A stored conversation as the message dicts people and chat templates know: ``extra``'s keys
    merged back into each message (``{"role", "content", "tool_calls"...}``), no ``extra`` key."""
    if messages is None:
        return None
    import orjson

    out = []
    for m in messages:
        d = {"role": m["role"], "content": m["content"]}
        extra = m.get("extra")
        if extra:
            d.update(orjson.loads(extra))
        out.append(d)
    return out
