"""Readers for the instruction and chat formats people have: JSON array files, Alpaca, Dolly,
ShareGPT, OpenAI chat rows, prompt/completion; dialect detection; bad shapes as rejects; an input
whose every row is rejected stops the run."""

from __future__ import annotations

import json

import pytest

from corpusmill import schema as S
from corpusmill.errors import ConfigError, CorpusmillError
from corpusmill.sft import derive_text
from tests.conftest import write_jsonl, write_pipeline

ALPACA = [
    {"instruction": "Give three tips for staying healthy.", "input": "",
     "output": "1. Eat a balanced diet.\n2. Exercise regularly.\n3. Get enough sleep."},
    {"instruction": "Translate the sentence into French.", "input": "The library opens at nine.",
     "output": "La bibliothèque ouvre à neuf heures."},
    {"instruction": "Summarise the paragraph in one sentence.", "input": "   ",
     "output": "There is no paragraph to summarise."},
]
SHAREGPT = [
    {"id": "conv-1", "system": "You are a concise assistant.", "conversations": [
        {"from": "human", "value": "What does `ls -a` show?"},
        {"from": "gpt", "value": "Every entry of the folder, hidden ones (starting with a dot) included."},
    ]},
    {"id": "conv-2", "conversations": [
        {"from": "system", "value": "You can call get_weather(city)."},
        {"from": "human", "value": "Is it raining in Oslo?"},
        {"from": "function_call", "value": '{"name": "get_weather", "arguments": {"city": "Oslo"}}'},
        {"from": "observation", "value": '{"rain_mm": 2.5}'},
        {"from": "gpt", "value": "Yes, light rain: 2.5 mm so far."},
    ]},
]
OPENAI = [
    {"messages": [
        {"role": "system", "content": "You are a weather bot."},
        {"role": "user", "content": "Weather in Lyon?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Lyon\"}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "{\"temp_c\": 18}"},
        {"role": "assistant", "content": "18 degrees in Lyon.", "weight": 1},
    ], "tools": [{"type": "function", "function": {"name": "get_weather"}}]},
    {"messages": [
        {"role": "user", "content": "Say hi."},
        {"role": "assistant", "name": "bot", "content": "Hi!", "weight": 0},
    ]},
]


def _table(result, split="all"):
    return result.version.read_split(split)


def _rejects(result):
    return {r["source"]: (r["reason"], r["detail"]) for r in result.version.read_rejects().to_pylist()}


def _text_is_derived(table):
    """text equals what corpusmill.sft.derive_text makes of the trained fields."""
    blank = table.set_column(table.schema.get_field_index(S.TEXT), S.TEXT, [[""] * table.num_rows])
    return derive_text(blank).column(S.TEXT).to_pylist() == table.column(S.TEXT).to_pylist()


# ----------------------------------------------------------------------------- JSON files


def test_json_array_file_is_read_element_by_element(tmp_path, run):
    rows = [{"text": "The backup job failed because the disk was full."}, "a bare string",
            {"text": "Please reset my password."}, [1, 2]]
    (tmp_path / "rows.json").write_text(json.dumps(rows, indent=2))
    r = run({"dataset": "arr", "inputs": [{"path": "rows.json"}]})
    t = _table(r)
    assert t.column("text").to_pylist() == [rows[0]["text"], rows[2]["text"]]
    assert t.column("source").to_pylist() == ["rows.json:1", "rows.json:3"]
    rej = _rejects(r)
    assert rej["rows.json:2"][0] == "not_an_object" and "element 2" in rej["rows.json:2"][1]
    assert rej["rows.json:4"][0] == "not_an_object"
    assert r.manifest["counts"]["input"] == 4
    assert r.manifest["inputs"][0]["files"][0]["format"] == "json"


def test_object_holding_the_rows_under_a_key(tmp_path, run):
    doc = {"version": "1.0", "license": "cc-by-4.0", "data": ALPACA}
    (tmp_path / "held.json").write_text(json.dumps(doc, indent=1))
    r = run({"dataset": "held", "inputs": [{"path": "held.json"}]})
    assert _table(r).column("response").to_pylist() == [x["output"] for x in ALPACA]
    assert _table(r).column("source").to_pylist() == ["held.json:1", "held.json:2", "held.json:3"]

    # two lists of objects: ambiguous, said before anything runs; records_key chooses
    (tmp_path / "two.json").write_text(json.dumps({"train": ALPACA[:2], "test": ALPACA[2:]}, indent=1))
    with pytest.raises(ConfigError, match="records_key"):
        run({"dataset": "two", "inputs": [{"path": "two.json"}]})
    r = run({"dataset": "two", "inputs": [{"path": "two.json", "records_key": "test"}]})
    assert _table(r).column("prompt").to_pylist() == ["Summarise the paragraph in one sentence."]


def test_json_file_holding_one_object_per_line_is_jsonl(tmp_path, run):
    write_jsonl(tmp_path / "lines.json", [{"text": "first ticket"}, {"text": "second ticket"}, {"text": "third"}])
    r = run({"dataset": "lines", "inputs": [{"path": "lines.json"}]})
    assert _table(r).column("source").to_pylist() == ["lines.json:1", "lines.json:2", "lines.json:3"]
    assert r.manifest["inputs"][0]["files"][0]["format"] == "jsonl"
    # a one-line file holding one chat row is a row, not a holder of rows
    write_jsonl(tmp_path / "one.json", [{"messages": OPENAI[1]["messages"]}])
    r = run({"dataset": "one", "inputs": [{"path": "one.json"}]})
    assert _table(r).column("text").to_pylist() == ["Say hi.\nHi!"]


def test_large_array_and_one_line_holder_are_detected_from_their_first_rows(tmp_path, run, capsys):
    rows = [{**ALPACA[i % 3], "output": f"{ALPACA[i % 3]['output']} ({i})"} for i in range(6000)]
    (tmp_path / "big.json").write_text(json.dumps(rows))  # over the 1 MB looked at, on one line
    (tmp_path / "held.json").write_text(json.dumps({"license": "cc0", "rows": SHAREGPT}))
    r = run({"dataset": "big", "inputs": [{"path": "big.json"}, {"path": "held.json"}]})
    err = capsys.readouterr().err
    assert "inputs[0] big.json: Alpaca" in err and "inputs[1] held.json: ShareGPT" in err
    assert r.manifest["counts"] == {"input": 6002, "kept": 6002, "rejected": {}}
    assert _table(r).column("source").to_pylist()[-1] == "held.json:2"


def test_malformed_array_keeps_the_elements_before_the_break(tmp_path, run):
    good = json.dumps(ALPACA[:2], indent=1)
    (tmp_path / "cut.json").write_text(good[:-1].rstrip() + ',\n {"instruction": "Name a colour", "output": \n')
    r = run({"dataset": "cut", "inputs": [{"path": "cut.json", "dialect": "alpaca"}]})
    assert _table(r).column("source").to_pylist() == ["cut.json:1", "cut.json:2"]
    reason, detail = _rejects(r)["cut.json:3"]
    assert reason == "malformed_json"
    assert "element 3" in detail and "line" in detail and "column" in detail
    assert r.manifest["counts"]["input"] == 3


def test_byte_order_marks_are_not_data(tmp_path, run):
    (tmp_path / "bom.csv").write_bytes(b"\xef\xbb\xbftext,label\nThe invoice was charged twice.,billing\n")
    (tmp_path / "bom.jsonl").write_bytes(b"\xef\xbb\xbf" + b'{"text": "The app crashes on start."}\n')
    (tmp_path / "bom.json").write_bytes(b"\xef\xbb\xbf" + json.dumps([{"text": "Dark mode, please."}]).encode())
    r = run({"dataset": "bom", "inputs": [{"path": "bom.csv", "label_field": "label"}, {"path": "bom.jsonl"},
                                          {"path": "bom.json"}]})
    t = _table(r)
    assert t.column("text").to_pylist() == ["The invoice was charged twice.", "The app crashes on start.", "Dark mode, please."]
    assert t.column("label").to_pylist()[0] == "billing"
    assert r.manifest["counts"]["rejected"] == {}


# ----------------------------------------------------------------------------- dialects


def test_sharegpt_detected_with_system_and_tool_turns(tmp_path, run, capsys):
    (tmp_path / "sharegpt.json").write_text(json.dumps(SHAREGPT, indent=2))
    r = run({"dataset": "sg", "inputs": [{"path": "sharegpt.json", "id_field": "id"}]})
    err = capsys.readouterr().err
    assert "inputs[0] sharegpt.json: ShareGPT conversations (conversations: from/value), system prompt from 'system'" in err
    t = _table(r)
    first, second = t.column("messages").to_pylist()
    assert [(m["role"], m["content"]) for m in first] == [
        ("system", "You are a concise assistant."), ("user", "What does `ls -a` show?"),
        ("assistant", "Every entry of the folder, hidden ones (starting with a dot) included.")]
    assert [m["role"] for m in second] == ["system", "user", "assistant", "tool", "assistant"]
    # the tool call is an assistant turn; its ShareGPT role is kept for exports
    assert json.loads(second[2]["extra"]) == {"from": "function_call"}
    assert json.loads(second[3]["extra"]) == {"from": "observation"}
    assert second[4]["extra"] is None
    assert _text_is_derived(t)
    assert t.column("id").to_pylist() == ["conv-1", "conv-2"]
    # the resolved dialect is recorded, so the same rows with the dialect spelled out are the same version
    inp = r.manifest["config"]["inputs"][0]
    assert (inp["dialect"], inp["messages_field"], inp["role_key"], inp["content_key"]) == ("sharegpt", "conversations", "from", "value")
    explicit = run({"dataset": "sg", "inputs": [{"path": "sharegpt.json", "id_field": "id", "dialect": "sharegpt",
                                                 "system_field": "system"}]})
    assert explicit.version.id == r.version.id and not explicit.created


def test_openai_chat_rows_keep_tool_calls_name_and_weight(tmp_path, run, capsys):
    write_jsonl(tmp_path / "ft.jsonl", OPENAI)
    r = run({"dataset": "oa", "inputs": [{"path": "ft.jsonl"}]})
    assert "OpenAI chat messages" in capsys.readouterr().err
    t = _table(r)
    first, second = t.column("messages").to_pylist()
    call = first[2]
    assert call["role"] == "assistant" and call["content"] is None
    assert json.loads(call["extra"]) == {"tool_calls": OPENAI[0]["messages"][2]["tool_calls"]}
    assert json.loads(first[3]["extra"]) == {"tool_call_id": "call_1"}
    assert json.loads(first[4]["extra"]) == {"weight": 1}
    assert json.loads(second[1]["extra"]) == {"name": "bot", "weight": 0}
    assert json.loads(t.column("meta").to_pylist()[0]) == {"tools": OPENAI[0]["tools"]}
    assert t.column("text").to_pylist()[1] == "Say hi.\nHi!"
    assert _text_is_derived(t)
    # the stored messages give back the input's messages (content null where the call had none)
    from corpusmill.sft import plain_messages

    assert plain_messages(first) == OPENAI[0]["messages"]


def test_alpaca_with_and_without_input(tmp_path, run, capsys):
    (tmp_path / "alpaca.json").write_text(json.dumps(ALPACA))
    r = run({"dataset": "alp", "inputs": [{"path": "alpaca.json"}]})
    assert "Alpaca instructions (instruction + input -> prompt, output -> response)" in capsys.readouterr().err
    t = _table(r)
    assert t.column("prompt").to_pylist() == [
        "Give three tips for staying healthy.",  # empty input: no trailing blank line
        "Translate the sentence into French.\n\nThe library opens at nine.",
        "Summarise the paragraph in one sentence.",  # whitespace-only input is empty too
    ]
    assert t.column("response").to_pylist() == [x["output"] for x in ALPACA]
    assert t.column("system").to_pylist() == [None] * 3
    assert t.column("meta").to_pylist() == [None] * 3
    assert _text_is_derived(t)

    # a template with labels: the text before an empty field goes with it
    template = "### Instruction:\n{instruction}\n\n### Input:\n{input}"
    r = run({"dataset": "alp2", "inputs": [{"path": "alpaca.json", "dialect": "alpaca", "prompt_template": template}]})
    prompts = _table(r).column("prompt").to_pylist()
    assert prompts[0] == "### Instruction:\nGive three tips for staying healthy."
    assert prompts[1] == "### Instruction:\nTranslate the sentence into French.\n\n### Input:\nThe library opens at nine."


def test_dolly_with_category_as_label_and_a_system_field(tmp_path, run):
    rows = [
        {"instruction": "When did the Eiffel Tower open?", "context": "The tower opened in March 1889.",
         "response": "In March 1889.", "category": "closed_qa", "persona": "You answer from the context only."},
        {"instruction": "Name a prime number above 10.", "context": "", "response": "11", "category": "open_qa",
         "persona": ""},
    ]
    write_jsonl(tmp_path / "dolly.jsonl", rows)
    r = run({"dataset": "dolly", "inputs": [{"path": "dolly.jsonl", "dialect": "dolly", "label_field": "category",
                                             "system_field": "persona"}]})
    t = _table(r)
    assert t.column("prompt").to_pylist() == ["When did the Eiffel Tower open?\n\nThe tower opened in March 1889.",
                                              "Name a prime number above 10."]
    assert t.column("label").to_pylist() == ["closed_qa", "open_qa"]
    assert t.column("system").to_pylist() == ["You answer from the context only.", None]
    assert t.column("text").to_pylist()[0] == (
        "You answer from the context only.\n\nWhen did the Eiffel Tower open?\n\nThe tower opened in March 1889.\n\nIn March 1889.")
    assert _text_is_derived(t)


def test_prompt_completion_rows_and_template_with_plain_mapping(tmp_path, run, capsys):
    write_jsonl(tmp_path / "trl.jsonl", [{"prompt": "2 + 2 =", "completion": " 4"}, {"prompt": "Capital of Peru?", "completion": " Lima"}])
    r = run({"dataset": "trl", "inputs": [{"path": "trl.jsonl"}]})
    assert "prompt/completion rows (prompt -> prompt, completion -> response)" in capsys.readouterr().err
    t = _table(r)
    assert t.column("prompt").to_pylist() == ["2 + 2 =", "Capital of Peru?"]
    assert t.column("response").to_pylist() == [" 4", " Lima"]
    assert r.manifest["config"]["inputs"][0]["response_field"] == "completion"

    write_jsonl(tmp_path / "qa.jsonl", [{"question": "Who wrote Dracula?", "hint": "Irish author", "answer": "Bram Stoker"}])
    r = run({"dataset": "qa", "inputs": [{"path": "qa.jsonl", "prompt_template": "Q: {question}\nHint: {hint}",
                                          "response_field": "answer"}]})
    assert _table(r).column("prompt").to_pylist() == ["Q: Who wrote Dracula?\nHint: Irish author"]


def test_role_map_and_key_map_for_another_conversation_dialect(tmp_path, run):
    rows = [{"dialogue": [{"speaker": "customer", "utterance": "My parcel is late."},
                          {"speaker": "bot", "utterance": "Sorry! It ships tomorrow."}]}]
    write_jsonl(tmp_path / "dlg.jsonl", rows)
    cfg = {"path": "dlg.jsonl", "dialect": "sharegpt", "messages_field": "dialogue", "role_key": "speaker",
           "content_key": "utterance", "role_map": {"customer": "user", "bot": "assistant"}}
    t = _table(run({"dataset": "dlg", "inputs": [cfg]}))
    assert t.column("messages").to_pylist()[0] == [
        {"role": "user", "content": "My parcel is late.", "extra": None},
        {"role": "assistant", "content": "Sorry! It ships tomorrow.", "extra": None}]

    # a role map overrides the dialect's own: human turns read as system here
    write_jsonl(tmp_path / "sg.jsonl", SHAREGPT[:1])
    t = _table(run({"dataset": "sg", "inputs": [{"path": "sg.jsonl", "dialect": "sharegpt", "role_map": {"gpt": "user"}}]}))
    assert [m["role"] for m in t.column("messages").to_pylist()[0]] == ["user", "user"]


def test_bad_conversation_shapes_are_rejects_with_reasons(tmp_path, run):
    ok = {"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello"}]}
    rows = [
        ok,
        {"conversations": "human: hi"},                                               # 2: not a list
        {"conversations": ["hi", "hello"]},                                           # 3: message not an object
        {"conversations": [{"from": "human"}]},                                       # 4: no content
        {"conversations": [{"from": "human", "value": ["a", "b"]}]},                  # 5: content not a string
        {"conversations": []},                                                        # 6: empty conversation
        {"conversations": [{"from": "bot", "value": "beep"}]},                        # 7: unknown role
        {"dialogue": ok["conversations"]},                                            # 8: field missing
        {"conversations": [{"value": "no role"}]},                                    # 9: no role
        {"conversations": [{"from": "gpt", "value": None}]},                          # 10: null content, no tool call
    ]
    write_jsonl(tmp_path / "bad.jsonl", rows)
    r = run({"dataset": "bad", "inputs": [{"path": "bad.jsonl", "dialect": "sharegpt"}]})
    assert r.manifest["counts"]["kept"] == 1
    rej = _rejects(r)
    reasons = {src.split(":")[1]: reason for src, (reason, _) in rej.items()}
    assert reasons == {"2": "invalid_messages", "3": "invalid_messages", "4": "invalid_messages",
                       "5": "invalid_messages", "6": "invalid_messages", "7": "unknown_role",
                       "8": "missing_field", "9": "invalid_messages", "10": "invalid_messages"}
    assert "role_map: {bot: assistant}" in rej["bad.jsonl:7"][1]
    assert "message 1 is a string" in rej["bad.jsonl:3"][1]
    assert "empty conversation" in rej["bad.jsonl:6"][1]
    assert "is a list, expected a string" in rej["bad.jsonl:5"][1]


def test_bad_single_turn_rows_are_rejects_with_reasons(tmp_path, run):
    rows = ALPACA[:1] + [
        {"instruction": "", "input": "", "output": "orphan answer"},       # 2: every template field empty
        {"instruction": "Add 2 and 2.", "input": 4, "output": "4"},        # 3: a field of the wrong type
        {"instruction": "Add 2 and 2.", "input": ""},                      # 4: no output
        {"instruction": "Add 2 and 2.", "output": None},                   # 5: null output
    ]
    (tmp_path / "alp.json").write_text(json.dumps(rows))
    r = run({"dataset": "alp", "inputs": [{"path": "alp.json", "dialect": "alpaca"}]})
    assert {s: reason for s, (reason, _) in _rejects(r).items()} == {
        "alp.json:2": "missing_field", "alp.json:3": "invalid_field_type", "alp.json:4": "missing_field",
        "alp.json:5": "invalid_field_type"}
    assert r.version.read_rejects().column("raw").to_pylist()[0]  # the element's bytes are kept


# ----------------------------------------------------------------------------- detection and configuration


def test_rows_with_a_text_field_stay_plain_text_and_unknown_shapes_are_said(tmp_path, run, capsys):
    write_jsonl(tmp_path / "t.jsonl", [{"text": "a ticket", "messages": [{"role": "user", "content": "x"}]}])
    r = run({"dataset": "t", "inputs": [{"path": "t.jsonl"}]})
    assert "messages" not in r.version.schema().names  # the existing text behaviour is kept
    assert "the rows hold 'text', read as plain text as before; they also look like OpenAI chat" in capsys.readouterr().err
    write_jsonl(tmp_path / "odd.jsonl", [{"q": "a", "a": "b"}, {"q": "c", "a": "d"}])
    with pytest.raises(CorpusmillError, match="set text_field"):
        run({"dataset": "odd", "inputs": [{"path": "odd.jsonl"}]})
    assert "no known dialect in the first rows (fields: q, a)" in capsys.readouterr().err


def test_files_of_different_shapes_in_one_input_are_a_configuration_error(tmp_path, run):
    (tmp_path / "mix").mkdir()
    (tmp_path / "mix" / "a.json").write_text(json.dumps(ALPACA))
    write_jsonl(tmp_path / "mix" / "b.jsonl", SHAREGPT)
    with pytest.raises(ConfigError, match="different shapes"):
        run({"dataset": "mix", "inputs": [{"path": "mix"}]})


def test_contradicting_keys_are_reported_before_anything_runs(tmp_path, run):
    write_jsonl(tmp_path / "x.jsonl", SHAREGPT)
    with pytest.raises(ConfigError) as err:
        run({"dataset": "x", "inputs": [
            {"path": "x.jsonl", "dialect": "sharegpt", "prompt_field": "q"},
            {"path": "x.jsonl", "role_map": {"bot": "robot"}},
            {"path": "x.jsonl", "prompt_template": "{instruction"},
            {"path": "x.jsonl", "dialect": "text", "messages_field": "conversations"},
            {"path": "x.jsonl", "prompt_template": "{a}", "prompt_field": "b", "response_field": "c"},
        ]})
    problems = "\n".join(err.value.problems)
    assert "inputs[0]: dialect: sharegpt reads conversations; prompt_field" in problems
    assert "inputs[1].role_map" in problems and "'robot'" in problems
    assert "inputs[2].prompt_template" in problems
    assert "inputs[3]: dialect: text reads text_field only" in problems
    assert "inputs[4]: set prompt_field or prompt_template, not both" in problems


# ----------------------------------------------------------------------------- every row rejected


def _cli_run(tmp_path, config, capsys):
    from corpusmill.cli import main

    path = write_pipeline(tmp_path / "p.yaml", config)
    capsys.readouterr()
    code = main(["run", str(path), "--store", str(tmp_path / "store"), "--workers", "1", "--quiet"])
    return code, capsys.readouterr()


def test_an_input_whose_every_row_is_rejected_stops_the_run(tmp_path, capsys):
    (tmp_path / "alpaca.jsonl").write_text(json.dumps(ALPACA, indent=2))  # a JSON array named .jsonl
    write_jsonl(tmp_path / "ok.jsonl", [{"text": "a readable ticket"}])
    code, out = _cli_run(tmp_path, {"dataset": "d", "inputs": [{"path": "ok.jsonl"}, {"path": "alpaca.jsonl"}]}, capsys)
    assert code == 2
    assert "Traceback" not in out.err
    assert "inputs[1] (alpaca.jsonl): the reader rejected all" in out.err
    assert "Most were malformed_json" in out.err
    assert "this file is a JSON array" in out.err and "format: json" in out.err
    assert "allow_empty" in out.err
    assert not (tmp_path / "store" / "d" / "refs.json").exists()  # nothing was published

    write_jsonl(tmp_path / "chat.jsonl", [{"dialogue": "hi"}, {"dialogue": "hello"}])
    code, out = _cli_run(tmp_path, {"dataset": "d", "inputs": [{"path": "chat.jsonl"}]}, capsys)
    assert code == 2
    assert "Most were missing_text (2 of 2), e.g. chat.jsonl:1: no field 'text' (fields: dialogue)" in out.err
    assert "set text_field" in out.err

    # allowed: the run goes on and publishes what the other inputs gave
    code, out = _cli_run(tmp_path, {"dataset": "d", "inputs": [
        {"path": "ok.jsonl"}, {"path": "alpaca.jsonl", "format": "jsonl", "allow_empty": True}]}, capsys)
    assert code == 0 and out.out.startswith("d@")


def test_a_partly_rejected_input_still_publishes(tmp_path, run):
    write_jsonl(tmp_path / "p.jsonl", [{"text": "fine"}, {"body": "no text"}])
    r = run({"dataset": "p", "inputs": [{"path": "p.jsonl"}]})
    assert r.manifest["counts"]["kept"] == 1
    assert r.manifest["counts"]["rejected"] == {"read": {"missing_text": 1}}


def test_refresh_reads_new_files_in_the_dialect_the_parent_detected(tmp_path, run):
    from corpusmill.pipelines.refresh import refresh
    from corpusmill.store import Store

    (tmp_path / "sharegpt.json").write_text(json.dumps(SHAREGPT[:1]))
    parent = run({"dataset": "sg", "inputs": [{"path": "sharegpt.json"}]})
    (tmp_path / "more.json").write_text(json.dumps(SHAREGPT[1:]))
    child = refresh(Store(tmp_path / "store"), parent.version.ref, [tmp_path / "more.json"]).version
    roles = sorted(tuple(m["role"] for m in msgs) for msgs in child.read_split("all").column("messages").to_pylist())
    assert roles == [("system", "user", "assistant"), ("system", "user", "assistant", "tool", "assistant")]
