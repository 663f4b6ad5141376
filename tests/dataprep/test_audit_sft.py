"""corpusmill audit against benchmark files given with their fields and id field: evidence names
the benchmark row (``HumanEval/12``) and the fields on both sides; instruction and chat versions are
matched field by field; the old --against form, the report's keys and the exit codes still hold."""

from __future__ import annotations

import json

import pytest

from corpusmill.cli import main
from corpusmill.store import Store
from tests.conftest import write_jsonl
from tests.dataprep.test_decontaminate_sft import HUMANEVAL, LONGEST_PROMPT, LONGEST_SOLUTION, QUIZ

HUMANEVAL_ARG = "{path: %s, fields: [prompt, canonical_solution], id_field: task_id, name: humaneval}"
SUMMARY_KEYS = {"test_split", "train_split", "test_rows", "train_rows", "exact", "near", "ngram", "any",
                "contamination_rate", "label_conflicts"}


def _audit(capsys, *argv):
    code = main(["audit", *argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def bench(tmp_path):
    write_jsonl(tmp_path / "HumanEval.jsonl.gz", HUMANEVAL, compress=True)
    (tmp_path / "quiz.json").write_text(json.dumps({"version": 2, "data": QUIZ}))  # the list under one key
    return tmp_path


def _version(tmp_path, run, rows, input_):
    from corpusmill.pipelines.registry import STAGES, register_stage

    from tests.dataprep.split_by_field import SplitByField

    write_jsonl(tmp_path / "d.jsonl", rows)
    STAGES.pop("split_by_field", None)
    register_stage(SplitByField)
    try:
        return run({"dataset": "ds", "inputs": [{"path": "d.jsonl", "id_field": "id", **input_}],
                    "steps": [{"split_by_field": {"field": "part"}}]})
    finally:
        STAGES.pop("split_by_field", None)


def test_benchmarks_with_fields_and_ids_name_the_benchmark_row(bench, capsys):
    write_jsonl(bench / "train.jsonl", [
        {"id": "t1", "text": "Please complete:\n" + LONGEST_PROMPT},
        {"id": "t2", "text": LONGEST_SOLUTION},
        {"id": "t3", "text": QUIZ[0]["question"]},
        {"id": "t4", "text": "Tomatoes need full sun and regular watering to grow well in the garden."},
    ])
    report = bench / "r.json"
    code, out, _ = _audit(capsys, "--train", str(bench / "train.jsonl"), "--id-field", "id",
                          "--benchmark", HUMANEVAL_ARG % (bench / "HumanEval.jsonl.gz"),
                          "--benchmark", "{path: %s, fields: [question, answer], id_field: qid, name: quiz}" % (bench / "quiz.json"),
                          "--report", str(report))
    assert code == 0
    r = json.loads(report.read_text())
    he, quiz = r["summary"]["pairs"]["humaneval vs train"], r["summary"]["pairs"]["quiz vs train"]
    assert set(he) == SUMMARY_KEYS
    # rows of the benchmark, not (row, field) entries: HumanEval/12 leaks through both its fields and counts once
    assert (he["test_rows"], he["train_rows"], he["exact"], he["ngram"], he["any"]) == (2, 4, 1, 1, 1)
    assert he["contamination_rate"] == 0.5
    assert (quiz["test_rows"], quiz["exact"], quiz["any"]) == (2, 1, 1)
    found = {(h["test_split"], h["test_id"], h["test_field"], h["train_id"]) for c in ("exact", "ngram") for h in r[c]}
    assert found == {("humaneval", "HumanEval/12", "prompt", "t1"), ("humaneval", "HumanEval/12", "canonical_solution", "t2"),
                     ("quiz", "Q-1", "question", "t3")}
    assert "test HumanEval/12 ~ train t1" in out


def test_instruction_version_is_matched_field_by_field_and_fixed(tmp_path, run, bench, capsys):
    rows = [
        {"id": "tr-solution", "prompt": "Write the body of longest().", "response": LONGEST_SOLUTION, "part": "train"},
        {"id": "tr-clean", "prompt": "How do I water tomatoes?", "response": "Deeply, in the evening.", "part": "train"},
        {"id": "te-clean", "prompt": "What do bees eat?", "response": "Nectar and pollen from flowers.", "part": "test"},
    ]
    res = _version(tmp_path, run, rows, {"prompt_field": "prompt", "response_field": "response"})
    store = str(tmp_path / "store")
    report = tmp_path / "r.json"
    code, _, _ = _audit(capsys, res.version.ref, "--store", store, "--benchmark", HUMANEVAL_ARG % (bench / "HumanEval.jsonl.gz"),
                        "--report", str(report), "--fix", "ds@clean")
    assert code == 0
    r = json.loads(report.read_text())
    s = r["summary"]["pairs"]["humaneval vs train"]
    assert (s["train_rows"], s["exact"], s["any"]) == (2, 1, 1)  # the response alone equals the canonical solution
    hit = r["exact"][0]
    assert (hit["test_id"], hit["test_field"], hit["train_id"], hit["train_field"]) == (
        "HumanEval/12", "canonical_solution", "tr-solution", "response")
    assert r["summary"]["pairs"]["test vs train"]["any"] == 0
    fixed = Store(store).resolve("ds@clean")
    assert fixed.read_split("train").column("id").to_pylist() == ["tr-clean"]
    assert fixed.read_rejects().to_pylist()[0]["duplicate_of"] == "HumanEval/12"
    # --fields text matches the derived text as before: prompt + response is no exact copy of anything
    code, _, _ = _audit(capsys, res.version.ref, "--store", store, "--fields", "text", "--checks", "exact",
                        "--benchmark", HUMANEVAL_ARG % (bench / "HumanEval.jsonl.gz"), "--report", str(report))
    assert json.loads(report.read_text())["summary"]["pairs"]["humaneval vs train"]["exact"] == 0


def test_chat_version_fields_choose_the_turns(tmp_path, run, bench, capsys):
    chat = [{"role": "user", "content": "Show me the function."},
            {"role": "assistant", "content": "Here:\n" + LONGEST_PROMPT + LONGEST_SOLUTION}]
    rows = [{"id": "c1", "messages": chat, "part": "train"},
            {"id": "c2", "messages": [{"role": "user", "content": "Hello, who are you?"},
                                      {"role": "assistant", "content": "A helpful assistant."}], "part": "test"}]
    res = _version(tmp_path, run, rows, {"messages_field": "messages"})
    store, report = str(tmp_path / "store"), tmp_path / "r.json"
    args = [res.version.ref, "--store", store, "--benchmark", HUMANEVAL_ARG % (bench / "HumanEval.jsonl.gz"),
            "--report", str(report), "--fail-above", "0"]
    code, _, err = _audit(capsys, *args)
    assert code == 1 and "above --fail-above 0" in err
    r = json.loads(report.read_text())
    assert {h["train_field"] for h in r["ngram"]} == {"messages[1] (assistant)"}
    code, _, _ = _audit(capsys, *args, "--fields", "messages.user")
    assert code == 0


def test_against_keeps_working_and_names_rows_by_file_and_line(bench, capsys):
    write_jsonl(bench / "train.jsonl", [{"question": QUIZ[0]["question"]}])  # --text-field: every file side
    write_jsonl(bench / "plain.jsonl", [{"question": "A different question about rivers and lakes and seas?"},
                                        {"question": QUIZ[0]["question"]}])
    report = bench / "r.json"
    code, _, _ = _audit(capsys, "--train", str(bench / "train.jsonl"), "--against", str(bench / "plain.jsonl"),
                        "--text-field", "question", "--report", str(report), "--fail-above", "0.6")
    assert code == 0
    r = json.loads(report.read_text())
    assert r["summary"]["pairs"]["against:plain.jsonl vs train"]["any"] == 1
    assert r["exact"][0]["test_id"] == "plain.jsonl:2"


@pytest.mark.parametrize("spec, expected", [
    ("{path: HumanEval.jsonl.gz, fields: [prompt], id_field: name}", "row 1 has no id_field 'name'"),
    ("{path: HumanEval.jsonl.gz, fields: [question]}", "no row has field 'question'; its rows have canonical_solution"),
    ("{path: HumanEval.jsonl.gz, id: task_id}", "id: Extra inputs are not permitted (keys: path, fields, id_field, name)"),
    ("{path: HumanEval.jsonl.gz", "is not a YAML mapping"),
    ("missing.jsonl", "missing.jsonl"),
])
def test_bad_benchmark_spec_exits_2_with_a_clear_message(bench, capsys, monkeypatch, spec, expected):
    monkeypatch.chdir(bench)
    write_jsonl(bench / "train.jsonl", [{"text": "Some training text that is long enough to count."}])
    code, _, err = _audit(capsys, "--train", "train.jsonl", "--benchmark", spec, "--report", str(bench / "r.json"))
    assert code == 2 and expected in err and "Traceback" not in err
