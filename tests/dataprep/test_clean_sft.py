"""The clean stage on instruction and chat rows: every trained field is cleaned and text follows,
markup is stripped or kept per field, code is never touched, counters name the field, a field
emptied by cleaning rejects its row with the field named, and options naming a field the rows
lack are configuration errors before anything runs. Text corpora are cleaned as before."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from corpusmill import schema as S
from corpusmill.dataprep.clean import Clean, CleanConfig
from corpusmill.errors import ConfigError
from corpusmill.sft import derive_text
from corpusmill.stage import BatchInfo, RunInfo
from tests.conftest import write_jsonl

HTML_ANSWER = "<p>Use <b>git stash</b> to shelve your changes.</p><p>Then <code>git pull</code>.</p>"
CODE_ANSWER = (
    "Wrap the text in `<strong>` like this:\n"
    "\n"
    "```html\n"
    "<p>Fish &amp; chips</p>\n"
    "\n"
    "\n"
    "\n"
    "<strong>bold</strong>   \n"
    "```\n"
    "and the browser shows it in bold &amp; black.  "
)
CODE_BLOCK = CODE_ANSWER[CODE_ANSWER.index("```html"):CODE_ANSWER.index("```\nand") + 3]


def _rows(prompts, responses, messages=None, system=None):
    n = len(prompts)
    schema = S.record_schema(prompt_response=True, messages=messages is not None)
    cols = {
        S.ID: [f"r{i}" for i in range(n)], S.TEXT: [""] * n, S.SYSTEM: system or [None] * n,
        S.PROMPT: prompts, S.RESPONSE: responses, S.SOURCE: [f"f.jsonl:{i + 1}" for i in range(n)],
        S.META: [None] * n,
    }
    if messages is not None:
        cols[S.MESSAGES] = messages
    return derive_text(pa.Table.from_pydict(cols, schema=schema))


def _clean(batch, **options):
    stage = Clean(CleanConfig(**options), name="clean", run=RunInfo("t", 0))
    assert stage.check(batch.schema) == []
    out = stage.process(batch, BatchInfo(0, 0))
    assert out.kept.num_rows + (out.rejected.num_rows if out.rejected else 0) == batch.num_rows
    return out


def _msg(role, content, extra=None):
    return {"role": role, "content": content, "extra": extra}


def test_html_in_a_response_is_cleaned_and_text_is_derived_from_the_cleaned_fields():
    batch = _rows(["How do I <i>temporarily</i> save my work in git?"], [HTML_ANSWER])
    out = _clean(batch)
    row = out.kept.to_pylist()[0]
    assert row["prompt"] == "How do I temporarily save my work in git?"
    assert row["response"] == "Use git stash to shelve your changes.\n\nThen git pull."
    assert row["text"] == row["prompt"] + "\n\n" + row["response"]
    assert row["clean_changes"] == ["markup_stripped"]
    assert out.counters == {"markup_stripped": 1, "markup_stripped.prompt": 1, "markup_stripped.response": 1}


def test_markup_is_kept_in_the_fields_strip_markup_does_not_name():
    batch = _rows(["<p>Show me a <b>bold</b> word in HTML</p>"], ["<strong>word</strong>"])
    out = _clean(batch, strip_markup=["prompt"])
    row = out.kept.to_pylist()[0]
    assert row["prompt"] == "Show me a bold word in HTML"  # stripped in the prompt
    assert row["response"] == "<strong>word</strong>"  # kept in the answer
    assert row["text"] == "Show me a bold word in HTML\n\n<strong>word</strong>"
    assert out.counters == {"markup_stripped": 1, "markup_stripped.prompt": 1}

    untouched = _clean(batch, strip_markup=False).kept.to_pylist()[0]
    assert untouched["prompt"] == batch.column("prompt")[0].as_py() and untouched["clean_changes"] == []


def test_fields_narrow_what_is_cleaned():
    batch = _rows(["<b>Why</b>  is the sky blue?   "], [HTML_ANSWER])
    row = _clean(batch, fields=["response"]).kept.to_pylist()[0]
    assert row["prompt"] == "<b>Why</b>  is the sky blue?   "
    assert row["response"].startswith("Use git stash")


def test_code_fences_and_inline_code_are_never_touched():
    batch = _rows(["Make a word bold in HTML"], [CODE_ANSWER])
    row = _clean(batch).kept.to_pylist()[0]
    # the fence keeps its markup, entities, blank lines and trailing spaces; inline code keeps its tag
    assert CODE_BLOCK in row["response"]
    assert row["response"] == CODE_ANSWER.replace("black.  ", "black.").replace("bold &amp; black", "bold & black")
    assert row["clean_changes"] == ["entities_decoded", "whitespace_normalized"]

    # an HTML answer around a fence: the tags go, the fence stays on lines of its own
    answer = "<p>Run this:</p>\n```python\nprint('<br>')  \n\n\n\nx = 1 &amp; 2\n```\n<p>Done &amp; <b>dusted</b>.</p>"
    fence = answer[answer.index("```python"):answer.index("```\n<p>") + 3]
    row = _clean(_rows(["Show me"], [answer])).kept.to_pylist()[0]
    assert row["response"] == f"Run this:\n\n{fence}\n\nDone & dusted."
    # ~~~ fences, an unclosed fence (to the end), and ``` inline on one line
    for answer, code in [("~~~\n<b>a</b>  \n~~~\n<b>x</b>", "~~~\n<b>a</b>  \n~~~"),
                         ("See <b>this</b>:\n```\n<i>open</i>   \n\n\n", "```\n<i>open</i>   \n\n\n"),
                         ("Inline ```<b>x</b>``` and <b>y</b>", "```<b>x</b>```")]:
        cleaned = _clean(_rows(["q"], [answer])).kept.column("response")[0].as_py()
        assert code in cleaned and "<b>" not in cleaned.replace(code, ""), (answer, cleaned)


def test_text_corpora_are_cleaned_as_before_code_fences_included():
    texts = ["```\n<b>x</b>   \n```", "plain   \n\n\n\ntext &amp; more"]
    batch = pa.table({"id": ["a", "b"], "text": texts, "source": ["f:1", "f:2"], "meta": pa.nulls(2, pa.string())})
    out = _clean(batch)
    assert out.kept.column("text").to_pylist() == ["```\nx\n```", "plain\n\ntext & more"]
    assert out.counters == {"markup_stripped": 1, "entities_decoded": 1, "whitespace_normalized": 2}


def test_chat_turns_are_cleaned_per_role_and_message_keys_ride_along():
    conv = [_msg("system", "You are terse."),
            _msg("user", "What does <code>ls -a</code> show?"),
            _msg("assistant", "<p>Hidden files too.</p>", '{"weight": 1}'),
            _msg("assistant", "", '{"tool_calls": [{"id": "c1"}]}'),  # a tool call: no content, kept as is
            _msg("tool", "total 0\u200b"),
            _msg("assistant", "Files whose name starts with a dot.   ")]
    batch = _rows([None], [None], messages=[conv])
    out = _clean(batch)
    msgs = out.kept.column("messages").to_pylist()[0]
    assert [m["content"] for m in msgs] == ["You are terse.", "What does ls -a show?", "Hidden files too.", "",
                                            "total 0", "Files whose name starts with a dot."]
    assert [m["extra"] for m in msgs] == [m["extra"] for m in conv]
    assert out.kept.column("text")[0].as_py() == "\n".join(m["content"] for m in msgs)
    assert out.counters == {
        "markup_stripped": 1, "invisible_removed": 1, "whitespace_normalized": 1,
        "markup_stripped.messages.user": 1, "markup_stripped.messages.assistant": 1,
        "invisible_removed.messages.tool": 1, "whitespace_normalized.messages.assistant": 1,
    }
    # HTML kept in the assistant's turns only
    kept = _clean(batch, strip_markup=["messages.user"]).kept.column("messages").to_pylist()[0]
    assert kept[1]["content"] == "What does ls -a show?" and kept[2]["content"] == "<p>Hidden files too.</p>"


def test_a_field_emptied_by_cleaning_rejects_its_row_with_the_field_named():
    batch = _rows(["Say something", "<script>alert(1)</script>", "Empty answer"],
                  ["<style>p {}</style>", "ok", ""])
    out = _clean(batch)
    assert out.kept.column("id").to_pylist() == ["r2"]  # an answer that came in empty is the quality stage's to judge
    rej = {r["id"]: r for r in out.rejected.to_pylist()}
    assert rej["r0"]["reason"] == "empty_after_clean"
    assert rej["r0"]["detail"] == "response: no text left after markup_stripped (19 characters before cleaning)"
    assert rej["r1"]["detail"].startswith("prompt: no text left after markup_stripped")
    assert rej["r1"]["prompt"] == "<script>alert(1)</script>"  # a rejected row keeps what it came in with


def _sft_pipeline(tmp_path, rows, clean, **input_extra):
    write_jsonl(tmp_path / "d.jsonl", rows)
    spec = {"path": "d.jsonl", "id_field": "id", "prompt_field": "q", "response_field": "a", **input_extra}
    return {"dataset": "qa", "inputs": [spec], "steps": [{"clean": clean}]}


def _published(result) -> list[dict]:
    return [r for split in result.version.splits() for r in result.version.read_split(split).to_pylist()]


def test_a_pipeline_cleans_the_trained_fields_and_counts_per_field(tmp_path, run):
    rows = [{"id": f"q{i}", "q": f"Question {i}: what is <b>HTML</b>?", "a": f"<p>A markup language ({i}).</p>"}
            for i in range(6)]
    result = run(_sft_pipeline(tmp_path, rows, {}))
    got = _published(result)
    assert {r["response"] for r in got} == {f"A markup language ({i})." for i in range(6)}
    assert all(r["text"] == f"{r['prompt']}\n\n{r['response']}" for r in got)
    stage = next(s for s in result.manifest["stages"] if s["name"] == "clean")
    assert stage["counters"] == {"markup_stripped": 6, "markup_stripped.prompt": 6, "markup_stripped.response": 6}


def test_boilerplate_removal_leaves_instruction_rows_alone(tmp_path, run):
    sig = "Hope this helps!"
    rows = [{"id": f"q{i}", "q": f"How do I fix error {i}?", "a": f"Restart service {i}.\n{sig}"} for i in range(8)]
    config = _sft_pipeline(tmp_path, rows, {"boilerplate": {"min_documents": 2}})
    # plain rows in the same dataset, with the same closing line: there it is boilerplate
    posts = pa.table({"id": [f"p{i}" for i in range(8)], "text": [f"Post {i} about disks.\n{sig}" for i in range(8)]})
    pq.write_table(posts, tmp_path / "posts.parquet")
    config["inputs"].append({"path": "posts.parquet", "id_field": "id"})
    got = {r["id"]: r for r in _published(run(config))}
    assert all(got[f"q{i}"]["response"].endswith(sig) for i in range(8))
    assert all(got[f"p{i}"]["text"] == f"Post {i} about disks." for i in range(8))


def test_fields_the_rows_lack_are_configuration_errors_before_anything_runs(tmp_path, run):
    write_jsonl(tmp_path / "t.jsonl", [{"id": "a", "text": "<b>hi</b>"}])
    text_only = {"dataset": "t", "inputs": [{"path": "t.jsonl", "id_field": "id"}],
                 "steps": [{"clean": {"fields": ["response"], "strip_markup": ["messages.user"]}}]}
    with pytest.raises(ConfigError) as err:
        run(text_only, store=tmp_path / "s1")
    msg = str(err.value)
    assert "steps.clean: stage 'clean': fields lists 'response', which these rows do not have" in msg
    assert "strip_markup lists 'messages.user'" in msg and "valid here: text, trained" in msg
    assert not (tmp_path / "s1").exists() or not any((tmp_path / "s1").rglob("*.parquet"))

    rows = [{"id": "q", "q": "Hi", "a": "Hello"}]
    with pytest.raises(ConfigError, match=r"fields lists 'messages.assistant'.*messages_field"):
        run(_sft_pipeline(tmp_path, rows, {"fields": ["prompt", "messages.assistant"]}), store=tmp_path / "s2")
    with pytest.raises(ConfigError, match="an empty list selects nothing"):
        run(_sft_pipeline(tmp_path, rows, {"strip_markup": []}), store=tmp_path / "s3")
