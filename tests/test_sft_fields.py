"""The trained-fields rule: a stage reads and rewrites the fields the trainer reads, text is derived."""

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from corpusmill import schema as S
from corpusmill.errors import CorpusmillError
from corpusmill.sft import (
    FieldSelection, assistant_turns_text, check_fields, derive_text, first_user_turn, user_turns_text,
)


def _batch():
    """Three kinds of row in one batch: plain text, a single turn with a system prompt, a conversation."""
    schema = S.record_schema(prompt_response=True, messages=True)
    msgs = [
        {"role": "system", "content": "Be brief.", "extra": None},
        {"role": "user", "content": "Hi, I am Ann.", "extra": None},
        {"role": "assistant", "content": "Hello Ann.", "extra": '{"weight": 0}'},
        {"role": "user", "content": "Bye", "extra": None},
        {"role": "assistant", "content": "Bye!", "extra": None},
    ]
    rows = {
        S.ID: ["a", "b", "c"],
        S.TEXT: ["plain row", "stale", "stale"],
        S.SYSTEM: [None, "You help.", None],
        S.PROMPT: [None, "Say hi", None],
        S.RESPONSE: [None, "<b>hi</b>", None],
        S.MESSAGES: [None, None, msgs],
        S.SOURCE: ["f:1", "f:2", "f:3"],
        S.META: [None, None, None],
    }
    return pa.Table.from_pydict(rows, schema=schema)


def test_text_is_derived_from_the_trained_fields():
    t = derive_text(_batch())
    assert t.column(S.TEXT).to_pylist() == [
        "plain row",
        "You help.\n\nSay hi\n\n<b>hi</b>",
        "Be brief.\nHi, I am Ann.\nHello Ann.\nBye\nBye!",
    ]


def test_the_trained_selection_covers_every_trained_string_and_plain_text():
    sel = FieldSelection(_batch(), ["trained"])
    got = sorted(zip(sel.rows.tolist(), sel.strings.to_pylist()))
    assert got == sorted([
        (0, "plain row"), (1, "You help."), (1, "Say hi"), (1, "<b>hi</b>"),
        (2, "Be brief."), (2, "Hi, I am Ann."), (2, "Hello Ann."), (2, "Bye"), (2, "Bye!"),
    ])


def test_a_rewrite_lands_in_the_trained_fields_and_text_follows():
    batch = _batch()
    sel = FieldSelection(batch, ["trained"])
    out = sel.write(pc.utf8_upper(sel.strings))
    assert out.column(S.RESPONSE).to_pylist() == [None, "<B>HI</B>", None]
    msgs = out.column(S.MESSAGES).to_pylist()[2]
    assert [m["content"] for m in msgs] == ["BE BRIEF.", "HI, I AM ANN.", "HELLO ANN.", "BYE", "BYE!"]
    assert msgs[2]["extra"] == '{"weight": 0}'  # other keys of a message ride along
    assert out.column(S.TEXT).to_pylist()[0] == "PLAIN ROW"
    assert out.column(S.TEXT).to_pylist()[1] == "YOU HELP.\n\nSAY HI\n\n<B>HI</B>"
    assert out.schema == batch.schema


def test_a_role_narrows_the_selection():
    sel = FieldSelection(_batch(), ["messages.assistant", "response"])
    assert sorted(sel.strings.to_pylist()) == ["<b>hi</b>", "Bye!", "Hello Ann."]
    assert sel.refs == ["messages", "response"]  # segments in the order the fields are named
    out = sel.write(["A1", "A2", "R"])
    assert out.column(S.RESPONSE).to_pylist()[1] == "R"
    assert [m["content"] for m in out.column(S.MESSAGES).to_pylist()[2]] == ["Be brief.", "Hi, I am Ann.", "A1", "Bye", "A2"]
    # text of the plain row is not selected, so it stays
    assert out.column(S.TEXT).to_pylist()[0] == "plain row"


def test_per_row_reduces_string_flags():
    sel = FieldSelection(_batch(), ["trained"])
    flags = [s == "Bye" for s in sel.strings.to_pylist()]
    assert sel.per_row(flags).tolist() == [False, False, True]


def test_a_sliced_batch_round_trips():
    batch = pa.concat_tables([_batch(), _batch()]).slice(2, 3)
    sel = FieldSelection(batch, ["trained"])
    out = sel.write(sel.strings)
    assert out.column(S.MESSAGES).to_pylist() == batch.column(S.MESSAGES).to_pylist()
    assert out.column(S.TEXT).to_pylist()[0].startswith("Be brief.")


def test_sides_and_first_user_turn():
    b = _batch()
    assert user_turns_text(b).to_pylist() == ["plain row", "You help.\n\nSay hi", "Be brief.\nHi, I am Ann.\nBye"]
    assert assistant_turns_text(b).to_pylist() == ["plain row", "<b>hi</b>", "Hello Ann.\nBye!"]
    assert first_user_turn(b).to_pylist() == ["plain row", "Say hi", "Hi, I am Ann."]


def test_a_field_the_rows_lack_is_a_clear_error():
    text_only = S.record_schema()
    with pytest.raises(CorpusmillError, match=r"stage 'pii': fields lists 'response'.*valid here: text, trained.*response_field"):
        check_fields(["response"], text_only, "pii")
    check_fields(["messages.user", "prompt"], S.record_schema(prompt_response=True, messages=True), "pii")
