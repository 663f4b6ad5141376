"""The augment stage on instruction and chat rows: by default only the prompt side changes (the
prompt, a conversation's user turns); answers change only when `fields` names them; a new row's
text is derived from its fields, and new rows are still checked against held-out rows."""

from __future__ import annotations

import pytest

from corpusmill.errors import ConfigError
from tests.conftest import write_jsonl

QUESTIONS = [
    "How do I list the hidden files in my home directory?",
    "What is the quickest way to find which process is using port 8080?",
    "Why does my shell script fail with permission denied when I run it?",
    "How can I see how much free space is left on every mounted disk?",
    "What command shows the last fifty lines of a log file as it grows?",
    "How do I change the owner of every file inside a directory tree?",
]
ANSWERS = [
    "Run ls -a; names starting with a dot are hidden.",
    "Use ss -ltnp and look for :8080 in the local address column.",
    "The file is not executable; run chmod +x on it first.",
    "df -h prints the size, use and free space of each file system.",
    "tail -n 50 -f shows them and keeps printing new lines.",
    "chown -R user:group dir changes the owner recursively.",
]


def _qa(n):
    return [{"id": f"q{i}", "q": f"{QUESTIONS[i % 6]} (case {i})", "a": ANSWERS[i % 6]} for i in range(n)]


def _config(steps, **input_extra):
    spec = {"path": "d.jsonl", "id_field": "id", **input_extra}
    return {"dataset": "qa", "inputs": [spec], "steps": steps}


def _new_rows(version):
    rows = version.read_split("train").to_pylist()
    by_id = {r["id"]: r for r in rows}
    return [(by_id[r["augmented_from"]], r) for r in rows if r["augmented_from"]]


EDA = {"kind": "eda", "n": 2}


def test_only_prompts_change_by_default(tmp_path, run):
    write_jsonl(tmp_path / "d.jsonl", _qa(60))
    result = run(_config([{"split": {}}, {"augment": {"augmenters": [EDA, {"kind": "char_keyboard"}]}}],
                         prompt_field="q", response_field="a"))
    pairs = _new_rows(result.version)
    assert len(pairs) > 40
    for src, new in pairs:
        assert new["prompt"] != src["prompt"] and new["response"] == src["response"]
        assert new["text"] == f"{new['prompt']}\n\n{new['response']}"  # derived from the new fields
    st = next(s for s in result.manifest["stages"] if s["name"] == "augment")
    assert st["in"] + st["added"] == st["kept"] + sum(st["rejected"].values())


def test_answers_change_only_when_fields_names_them(tmp_path, run):
    write_jsonl(tmp_path / "d.jsonl", _qa(30))
    result = run(_config([{"split": {}}, {"augment": {"augmenters": [{"kind": "char_keyboard"}],
                                                       "fields": ["response"]}}],
                         prompt_field="q", response_field="a"))
    pairs = _new_rows(result.version)
    assert pairs and all(new["prompt"] == src["prompt"] and new["response"] != src["response"] for src, new in pairs)


def test_chat_rows_vary_their_user_turns_only(tmp_path, run):
    rows = []
    for i in range(30):
        rows.append({"id": f"c{i}", "messages": [
            {"role": "system", "content": "You are a careful Linux administrator."},
            {"role": "user", "content": f"{QUESTIONS[i % 6]} (case {i})"},
            {"role": "assistant", "content": ANSWERS[i % 6], "weight": 1},
            {"role": "user", "content": f"{QUESTIONS[(i + 1) % 6]} Thanks for the help."},
            {"role": "assistant", "content": ANSWERS[(i + 1) % 6]},
        ]})
    write_jsonl(tmp_path / "d.jsonl", rows)
    result = run(_config([{"split": {}}, {"augment": {"augmenters": [{"kind": "char_keyboard", "n": 2}]}}],
                         messages_field="messages"))
    pairs = _new_rows(result.version)
    assert pairs
    for src, new in pairs:
        before, after = src["messages"], new["messages"]
        assert [m["role"] for m in after] == [m["role"] for m in before]
        assert [m["extra"] for m in after] == [m["extra"] for m in before]  # a message's other keys ride along
        for b, a in zip(before, after):
            if b["role"] != "user":
                assert a["content"] == b["content"]
        assert any(a["content"] != b["content"] for b, a in zip(before, after) if b["role"] == "user")
        assert new["text"] == "\n".join(m["content"] for m in after)


def test_new_rows_that_copy_held_out_rows_are_still_rejected(tmp_path, run):
    from corpusmill.pipelines.registry import STAGES, register_stage
    from tests.dataprep.split_by_field import SplitByField

    answer = "Free some space and run the backup again."
    rows = [{"id": "tr1", "part": "train", "q": "The disk was full. The backup job failed.", "a": answer},
            {"id": "te1", "part": "test", "q": "The backup job failed. The disk was full.", "a": answer},
            {"id": "tr2", "part": "train", "q": "Please reset my password. The link expired.", "a": "Done."}]
    write_jsonl(tmp_path / "d.jsonl", rows)
    STAGES.pop("split_by_field", None)
    register_stage(SplitByField)
    try:
        result = run(_config([{"split_by_field": {"field": "part"}},
                              {"augment": {"augmenters": [{"kind": "sentence_shuffle", "n": 6}], "max_per_row": 0}}],
                             prompt_field="q", response_field="a"))
    finally:
        STAGES.pop("split_by_field", None)
    rejects = [r for r in result.version.read_rejects().to_pylist() if r["stage"] == "augment"]
    leaked = [r for r in rejects if r["reason"] == "exact_duplicate_of_heldout"]
    assert leaked and all(r["duplicate_of"] == "te1" and r["augmented_from"] == "tr1" for r in leaked)
    kept = [(src["id"], new["prompt"], new["response"]) for src, new in _new_rows(result.version)]
    assert kept == [("tr2", "The link expired. Please reset my password.", "Done.")]


def test_fields_the_rows_lack_are_configuration_errors(tmp_path, run):
    write_jsonl(tmp_path / "d.jsonl", _qa(6))
    with pytest.raises(ConfigError, match=r"steps.augment: stage 'augment': fields lists 'messages.user'"):
        run(_config([{"split": {}}, {"augment": {"augmenters": [EDA], "fields": ["messages.user"]}}],
                    prompt_field="q", response_field="a"))
    with pytest.raises(ConfigError, match="fields lists 'prompt'.*valid here: text, trained"):
        run(_config([{"split": {}}, {"augment": {"augmenters": [EDA], "fields": ["prompt"]}}], text_field="q"))
