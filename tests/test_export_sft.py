"""``datasets export`` for trainers: TRL's prompt/completion and messages, OpenAI chat JSONL,
column choice, rejects in every format, and the prompt written exactly as ``corpusmill train``
writes it (one function for both)."""

from __future__ import annotations

import base64
import json

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import Field

from corpusmill import schema as S
from corpusmill.cli import main
from corpusmill.datasets import DEFAULT_PROMPT_TEMPLATE, export, written_prompts
from corpusmill.errors import CorpusmillError
from corpusmill.pipelines import run_pipeline
from corpusmill.pipelines.registry import STAGES, register_stage
from corpusmill.stage import BatchInfo, Stage, StageConfig, StageOutput
from corpusmill.store import Store
from tests.conftest import write_jsonl, write_pipeline

QA = [
    {"id": "q1", "instruction": "What do bees make?", "output": "Bees make honey and wax.", "sys": "Answer in one sentence."},
    {"id": "q2", "instruction": "How many days are in a week?", "output": "A week has seven days."},
    {"id": "q3", "instruction": "What is frozen water called?", "output": "Frozen water is called ice.", "sys": ""},
    {"id": "q4", "instruction": "Which planet is closest to the sun?", "output": "Mercury.", "plain": True},
    {"id": "q5", "instruction": 5, "output": "a number is not a prompt"},  # rejected by the reader
]
TOOL_CALLS = [{"id": "call_1", "type": "function",
               "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]
CHAT = [
    {"id": "c1", "messages": [{"role": "user", "content": "What is the weather in Paris?"},
                              {"role": "assistant", "content": "Let me look it up."},
                              {"role": "tool", "content": "18 C and sunny"},
                              {"role": "assistant", "content": "It is 18 C and sunny in Paris."}],
     "extras": [None, {"tool_calls": TOOL_CALLS}, {"tool_call_id": "call_1"}, {"weight": 1}]},
    {"id": "c2", "messages": [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Hi"},
                              {"role": "assistant", "content": "Hello! How can I help?"}]},
    {"id": "c3", "messages": "not a list"},  # rejected by the reader
]


class SftExtrasConfig(StageConfig):
    note: str = Field("", description="unused")


class SftExtras(Stage):
    """Test-only: what the readers write for richer inputs, from fields kept in ``meta``: a system
    prompt (``sys``), a message's extra keys (``extras``, one object or null per message), and a
    row that is plain text in an instruction dataset (``plain``)."""

    kind = "test_sft_extras"
    Config = SftExtrasConfig

    def process(self, batch: pa.Table, info: BatchInfo) -> StageOutput:
        meta = [orjson.loads(m) if m else {} for m in batch.column(S.META).to_pylist()]
        names = batch.column_names
        if S.SYSTEM in names:
            system = [m.get("sys") for m in meta]
            batch = batch.set_column(names.index(S.SYSTEM), batch.schema.field(S.SYSTEM), pa.array(system, pa.string()))
        plain = [bool(m.get("plain")) for m in meta]
        for col in (S.PROMPT, S.RESPONSE, S.SYSTEM):
            if col in names:
                values = [None if p else v for p, v in zip(plain, batch.column(col).to_pylist())]
                batch = batch.set_column(names.index(col), batch.schema.field(col), pa.array(values, pa.string()))
        if S.MESSAGES in names:
            conversations = batch.column(S.MESSAGES).to_pylist()
            for msgs, m in zip(conversations, meta):
                for msg, extra in zip(msgs or [], m.get("extras") or []):
                    msg["extra"] = json.dumps(extra, sort_keys=True) if extra else None
            field = batch.schema.field(S.MESSAGES)
            batch = batch.set_column(names.index(S.MESSAGES), field, pa.array(conversations, field.type))
        return StageOutput(batch)


@pytest.fixture
def store(tmp_path):
    """Versions ``qa`` (prompt/response, a system prompt on q1, q4 plain text) and ``chat``
    (conversations, c1 with tool calls), each with one reader reject, and ``notes`` (text only)."""
    write_jsonl(tmp_path / "qa.jsonl", QA)
    write_jsonl(tmp_path / "chat.jsonl", CHAT)
    write_jsonl(tmp_path / "notes.jsonl", [{"id": "n1", "text": "Bees make honey and wax in the hive."}])
    registered = SftExtras.kind in STAGES
    register_stage(SftExtras)
    specs = {"qa": {"path": "qa.jsonl", "id_field": "id", "prompt_field": "instruction", "response_field": "output"},
             "chat": {"path": "chat.jsonl", "id_field": "id", "messages_field": "messages"},
             "notes": {"path": "notes.jsonl", "id_field": "id"}}
    try:
        for name, spec in specs.items():
            p = write_pipeline(tmp_path / f"{name}.yaml", {"dataset": name, "inputs": [spec],
                                                           "steps": [{"test_sft_extras": {}}]})
            run_pipeline(p, store=tmp_path / "store", workers=1)
    finally:
        if not registered:
            STAGES.pop(SftExtras.kind, None)
    return Store(tmp_path / "store")


def _cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


class WordTokenizer:
    """Enough of a tokenizer for the trainer's example builder: one id per word."""

    eos_token_id = 0

    def __init__(self):
        self.vocab: dict[str, int] = {}

    def __call__(self, texts, add_special_tokens=True, truncation=False):
        ids = [[self.vocab.setdefault(w, len(self.vocab) + 1) for w in t.split()] for t in texts]
        return {"input_ids": ids}


# ----------------------------------------------------------------------------- the prompt, as train writes it


def test_trl_prompt_is_written_exactly_as_the_trainer_writes_it(store, tmp_path, capsys):
    from corpusmill.train.config import TrainConfig
    from corpusmill.train.run import build_examples

    version = store.resolve("qa")
    template = "### Question:\n{prompt}\n\n### Answer:\n"
    code, out, err = _cli(capsys, "datasets", "export", "qa", "--store", store.root, "--format", "trl",
                          "--out", tmp_path / "t", "--prompt-template", r"### Question:\n{prompt}\n\n### Answer:\n",
                          "--columns", "id")
    assert code == 0, err
    rows = {r["id"]: r for r in _lines(tmp_path / "t" / "all.jsonl")}
    assert set(rows) == {"q1", "q2", "q3"}  # q4 is plain text: no prompt for TRL, counted
    assert "1 rows written to no file" in err
    assert rows["q1"] == {"prompt": "Answer in one sentence.\n\n" + template.format(prompt="What do bees make?"),
                          "completion": "Bees make honey and wax.", "id": "q1"}
    assert rows["q2"]["prompt"] == template.format(prompt="How many days are in a week?")
    assert rows["q3"]["prompt"] == template.format(prompt="What is frozen water called?")  # empty system: none

    # the trainer, reading the same version with the same template, writes the same prompts
    cfg = TrainConfig(dataset="qa", model="unused", task="causal-lm", store=str(store.root), prompt_template=template)
    ex, _, fmt, _ = build_examples(cfg, version, WordTokenizer(), "all", 0)
    assert fmt == "prompt_response"
    trained = dict(zip(ex.ids, ex.prompts))
    assert {i: trained[i] for i in rows} == {i: r["prompt"] for i, r in rows.items()}
    # and the defaults agree: an export without --prompt-template matches a train run without prompt_template
    assert TrainConfig.model_fields["prompt_template"].default == DEFAULT_PROMPT_TEMPLATE == "{prompt}\n"
    export(version, "trl", tmp_path / "d")
    assert _lines(tmp_path / "d" / "all.jsonl")[0]["prompt"] == "Answer in one sentence.\n\nWhat do bees make?\n"


def test_system_field_in_the_template_and_bad_templates():
    table = pa.table({"system": ["Be brief.", None, ""], "prompt": ["Hi", "Yo", None]})
    assert written_prompts(table, "[{system}] {prompt} =>").to_pylist() == ["[Be brief.] Hi =>", "[] Yo =>", "[]  =>"]
    assert written_prompts(table, "{prompt}\n").to_pylist() == ["Be brief.\n\nHi\n", "Yo\n", "\n"]
    assert written_prompts(pa.table({"prompt": ["Hi"]}), "{{json}}: {prompt}").to_pylist() == ["{json}: Hi"]
    for bad, message in [("{instruction}", "'{instruction}' is not filled in"), ("no field", "must contain '{prompt}'"),
                         ("{prompt", "write a literal brace"), ("{prompt!r}", "without a conversion")]:
        with pytest.raises(CorpusmillError, match=message):
            written_prompts(table, bad)


def test_a_bad_template_is_a_clean_error_in_export_and_train(store, tmp_path, capsys):
    from corpusmill.errors import ConfigError
    from corpusmill.train.config import build_config

    code, _, err = _cli(capsys, "datasets", "export", "qa", "--store", store.root, "--format", "trl",
                        "--out", tmp_path / "t", "--prompt-template", "{instruction}\n")
    assert code == 2 and "'{instruction}' is not filled in" in err and "Traceback" not in err
    with pytest.raises(ConfigError, match="prompt_template: .*'{instruction}' is not filled in"):
        build_config(None, {"dataset": "qa", "model": "m", "task": "causal-lm", "prompt_template": "{instruction}"})


# ----------------------------------------------------------------------------- messages, openai


def test_chat_exports_keep_tool_calls_and_extra_keys(store, tmp_path, capsys):
    code, _, err = _cli(capsys, "datasets", "export", "chat", "--store", store.root, "--format", "trl", "--out", tmp_path / "t")
    assert code == 0, err
    rows = _lines(tmp_path / "t" / "all.jsonl")
    assert [list(r) for r in rows] == [["messages"], ["messages"]]  # only what the trainer reads
    c1 = rows[0]["messages"]
    assert c1[1] == {"role": "assistant", "content": "Let me look it up.", "tool_calls": TOOL_CALLS}
    assert c1[2] == {"role": "tool", "content": "18 C and sunny", "tool_call_id": "call_1"}
    assert c1[3]["weight"] == 1 and all("extra" not in m for m in c1)
    # OpenAI chat fine-tuning files: {"messages": [...]} per line, the same messages
    code, _, _ = _cli(capsys, "datasets", "export", "chat", "--store", store.root, "--format", "openai", "--out", tmp_path / "o")
    assert _lines(tmp_path / "o" / "all.jsonl") == rows
    # the plain jsonl export and the hf export merge the extra keys back the same way
    _cli(capsys, "datasets", "export", "chat", "--store", store.root, "--format", "jsonl", "--out", tmp_path / "j")
    assert [r["messages"] for r in _lines(tmp_path / "j" / "all.jsonl")] == [r["messages"] for r in rows]
    datasets = pytest.importorskip("datasets")
    _cli(capsys, "datasets", "export", "chat", "--store", store.root, "--format", "hf", "--out", tmp_path / "h")
    hf = datasets.load_from_disk(str(tmp_path / "h"))["all"]
    assert hf[0]["messages"][1]["tool_calls"] == TOOL_CALLS and "extra" not in hf[0]["messages"][1]


def test_openai_writes_prompt_response_rows_as_messages(store, tmp_path):
    result = export(store.resolve("qa"), "openai", tmp_path / "o")
    rows = _lines(tmp_path / "o" / "all.jsonl")
    assert rows[0] == {"messages": [{"role": "system", "content": "Answer in one sentence."},
                                    {"role": "user", "content": "What do bees make?"},
                                    {"role": "assistant", "content": "Bees make honey and wax."}]}
    assert rows[1]["messages"][0]["role"] == "user"  # no system prompt, no system message
    assert result.shape == "messages" and result.skipped == {"all": 1}


def test_a_version_of_prompt_rows_and_conversations_is_one_messages_file_for_trl(tmp_path, capsys):
    write_jsonl(tmp_path / "qa.jsonl", QA)
    write_jsonl(tmp_path / "chat.jsonl", CHAT)
    registered = SftExtras.kind in STAGES
    register_stage(SftExtras)
    try:
        p = write_pipeline(tmp_path / "mixed.yaml", {"dataset": "mixed", "steps": [{"test_sft_extras": {}}], "inputs": [
            {"path": "qa.jsonl", "id_field": "id", "prompt_field": "instruction", "response_field": "output"},
            {"path": "chat.jsonl", "id_field": "id", "messages_field": "messages"}]})
        run_pipeline(p, store=tmp_path / "store", workers=1)
    finally:
        if not registered:
            STAGES.pop(SftExtras.kind, None)
    code, _, err = _cli(capsys, "datasets", "export", "mixed", "--store", tmp_path / "store", "--format", "trl",
                        "--columns", "id", "--out", tmp_path / "t")
    assert code == 0 and "prompt/response rows are written as system/user/assistant messages" in err
    assert "all: 1 rows written to no file" in err  # q4, plain text
    rows = {r["id"]: r for r in _lines(tmp_path / "t" / "all.jsonl")}
    assert sorted(rows) == ["c1", "c2", "q1", "q2", "q3"] and all(list(r) == ["messages", "id"] for r in rows.values())
    assert rows["q1"]["messages"] == [{"role": "system", "content": "Answer in one sentence."},
                                      {"role": "user", "content": "What do bees make?"},
                                      {"role": "assistant", "content": "Bees make honey and wax."}]


def test_text_version_is_trl_language_modelling_and_not_openai(store, tmp_path, capsys):
    result = export(store.resolve("notes"), "trl", tmp_path / "t")
    assert result.shape == "text" and _lines(tmp_path / "t" / "all.jsonl") == [{"text": "Bees make honey and wax in the hive."}]
    code, _, err = _cli(capsys, "datasets", "export", "notes", "--store", store.root, "--format", "openai", "--out", tmp_path / "o")
    assert code == 2 and "neither prompt/response nor messages rows" in err


def test_trl_folder_loads_with_load_dataset_without_the_rejects(store, tmp_path):
    datasets = pytest.importorskip("datasets")
    export(store.resolve("qa"), "trl", tmp_path / "t")
    dd = datasets.load_dataset(str(tmp_path / "t"))
    assert list(dd) == ["train"]  # 'all' (no split step) is the train split; rejects.jsonl is not a split
    assert dd["train"].column_names == ["prompt", "completion"] and dd["train"].num_rows == 3


# ----------------------------------------------------------------------------- columns, rejects


def test_columns_keep_and_drop(store, tmp_path, capsys):
    code, _, _ = _cli(capsys, "datasets", "export", "qa", "--store", store.root, "--columns", "id,prompt", "--out", tmp_path / "k")
    assert code == 0
    assert _lines(tmp_path / "k" / "all.jsonl")[0] == {"id": "q1", "prompt": "What do bees make?"}
    rejects = _lines(tmp_path / "k" / "rejects.jsonl")
    assert set(rejects[0]) == {"id", "prompt", "stage", "reason", "detail", "duplicate_of", "similarity", "raw_base64"}
    code, _, _ = _cli(capsys, "datasets", "export", "qa", "--store", store.root, "--format", "parquet",
                      "--drop-columns", "meta,source,text", "--out", tmp_path / "d")
    assert pq.read_table(tmp_path / "d" / "all.parquet").column_names == ["id", "system", "prompt", "response"]
    assert "meta" not in pq.read_table(tmp_path / "d" / "rejects.parquet").column_names


def test_unknown_column_is_exit_2_with_the_valid_names(store, tmp_path, capsys):
    for fmt in ("jsonl", "trl"):
        code, _, err = _cli(capsys, "datasets", "export", "qa", "--store", store.root, "--format", fmt,
                            "--columns", "id,q_nope", "--out", tmp_path / fmt)
        assert code == 2 and "no column 'q_nope'" in err and "id, text, system, prompt" in err and "Traceback" not in err
    code, _, err = _cli(capsys, "datasets", "export", "qa", "--store", store.root, "--format", "trl",
                        "--drop-columns", "meta", "--out", tmp_path / "x")
    assert code == 2 and "nothing to drop" in err
    with pytest.raises(SystemExit) as exit_:
        main(["datasets", "export", "qa", "--store", str(store.root), "--columns", "id", "--drop-columns", "meta",
              "--out", str(tmp_path / "y")])
    assert exit_.value.code == 2


@pytest.mark.parametrize("fmt", ["jsonl", "parquet", "hf", "trl", "openai"])
def test_rejects_are_written_in_every_format(store, tmp_path, fmt):
    if fmt == "hf":
        datasets = pytest.importorskip("datasets")
    result = export(store.resolve("chat"), fmt, tmp_path / fmt)
    if fmt == "parquet":
        rejects = pq.read_table(tmp_path / fmt / "rejects.parquet").to_pylist()
    elif fmt == "hf":
        rejects = datasets.load_from_disk(str(tmp_path / fmt / "rejects")).to_list()
        assert list(datasets.load_from_disk(str(tmp_path / fmt))) == ["all"]  # not a split of the DatasetDict
    else:
        rejects = _lines(tmp_path / fmt / "rejects.jsonl")
    assert len(rejects) == 1 and result.files[[f for f in result.files if f.startswith("rejects")][0]] == 1
    assert rejects[0]["stage"] == "read" and rejects[0]["reason"] == "invalid_messages"
    raw = rejects[0]["raw"] if fmt in ("parquet", "hf") else base64.b64decode(rejects[0]["raw_base64"])
    assert b'"not a list"' in raw


OPENAI_ROWS = [
    {"id": "t1", "messages": [
        {"role": "user", "content": "What is the weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": TOOL_CALLS},
        {"role": "tool", "tool_call_id": "call_1", "name": "get_weather", "content": "18 C and sunny"},
        {"role": "assistant", "content": "It is 18 C and sunny in Paris.", "weight": 1}]},
    {"id": "t2", "messages": [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Hi"},
                              {"role": "assistant", "content": "Hello! How can I help?"}]},
]


def test_conversations_written_by_the_reader_round_trip_through_every_export(tmp_path):
    """OpenAI chat rows with tool calls, content null, name and weight: the reader keeps the extra
    keys, every export gives the messages back as they came in, and a jsonl export reads back the same."""
    write_jsonl(tmp_path / "tools.jsonl", OPENAI_ROWS)
    p = write_pipeline(tmp_path / "tools.yaml", {"dataset": "tools", "inputs": [
        {"path": "tools.jsonl", "id_field": "id", "messages_field": "messages"}]})
    version = run_pipeline(p, store=tmp_path / "store", workers=1).version
    sent = [r["messages"] for r in OPENAI_ROWS]
    for fmt in ("jsonl", "trl", "openai"):
        export(version, fmt, tmp_path / fmt)
        assert [r["messages"] for r in _lines(tmp_path / fmt / "all.jsonl")] == sent, fmt

    p = write_pipeline(tmp_path / "again.yaml", {"dataset": "again", "inputs": [
        {"path": "jsonl/all.jsonl", "id_field": "id", "messages_field": "messages"}]})
    again = run_pipeline(p, store=tmp_path / "store", workers=1).version
    export(again, "openai", tmp_path / "again")
    assert [r["messages"] for r in _lines(tmp_path / "again" / "all.jsonl")] == sent
