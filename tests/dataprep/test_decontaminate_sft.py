"""decontaminate on instruction and chat rows: several benchmarks, each with its own fields and ids;
evidence names the benchmark row (``HumanEval/12``); cut rewrites the trained fields and ``text``
follows; a hit inside a response rejects the row unless asked otherwise; bad benchmark specs are
clear configuration errors."""

from __future__ import annotations

import json

import pytest

from corpusmill.errors import ConfigError
from corpusmill.sft import PR_SEPARATOR
from tests.conftest import write_jsonl

# HumanEval-shaped rows (task_id, prompt, canonical_solution, test): written by the test
LONGEST_PROMPT = ('from typing import List, Optional\n\n\ndef longest(strings: List[str]) -> Optional[str]:\n'
                  '    """ Out of list of strings, return the longest one. Return the first one in case of multiple\n'
                  '    strings of the same length. Return None in case the input list is empty.\n    """\n')
LONGEST_SOLUTION = ("    if not strings:\n        return None\n\n    maxlen = max(len(x) for x in strings)\n"
                    "    for s in strings:\n        if len(s) == maxlen:\n            return s\n")
LONGEST_TEST = "def check(candidate):\n    assert candidate([]) == None\n    assert candidate(['x', 'y', 'z']) == 'x'\n"
HUMANEVAL = [
    {"task_id": "HumanEval/11", "prompt": "def string_xor(a: str, b: str) -> str:\n    \"\"\" Input are two strings a and b "
     "consisting only of 1s and 0s. Perform binary XOR on these inputs and return result also as a string.\n    \"\"\"\n",
     "canonical_solution": "    return ''.join('0' if i == j else '1' for i, j in zip(a, b))\n", "test": "", "entry_point": "string_xor"},
    {"task_id": "HumanEval/12", "prompt": LONGEST_PROMPT, "canonical_solution": LONGEST_SOLUTION, "test": LONGEST_TEST,
     "entry_point": "longest"},
]
QUIZ = [  # a JSON array file, ids under "qid"
    {"qid": "Q-1", "question": "Which planet in our solar system has the longest day, longer even than its own year?",
     "answer": "Venus has the longest day of any planet in our solar system."},
    {"qid": "Q-2", "question": "What is the boiling point of water at sea level measured in degrees Celsius?",
     "answer": "42"},  # shorter than min_words: never indexed
]
FILLER = ("Some ordinary words about gardening, cooking and the weather, the kind of text that makes a long prompt "
          "worth keeping after a cut. ") * 5
HUMANEVAL_SPEC = {"path": "bench/HumanEval.jsonl.gz", "fields": ["prompt", "canonical_solution"],
                  "id_field": "task_id", "name": "humaneval"}
QUIZ_SPEC = {"path": "bench/quiz.json", "fields": ["question", "answer"], "id_field": "qid", "name": "quiz"}


def _benchmarks(tmp_path):
    write_jsonl(tmp_path / "bench" / "HumanEval.jsonl.gz", HUMANEVAL, compress=True)
    (tmp_path / "bench" / "quiz.json").write_text(json.dumps(QUIZ, indent=1))
    write_jsonl(tmp_path / "other" / "trivia.jsonl",
                [{"text": "The quick brown fox jumps over the lazy dog while the farmer watches from the porch at dawn."}])


def _cfg(rows_input: dict, **options) -> dict:
    step = {"benchmarks": [HUMANEVAL_SPEC, QUIZ_SPEC, "other/*.jsonl"], **options}
    return {"dataset": "sft", "inputs": [rows_input], "steps": [{"decontaminate": step}]}


PR_INPUT = {"path": "train.jsonl", "id_field": "id", "prompt_field": "prompt", "response_field": "response"}
CHAT_INPUT = {"path": "chat.jsonl", "id_field": "id", "messages_field": "messages"}


def _by_id(table):
    return {r["id"]: r for r in table.to_pylist()}


def test_several_benchmarks_each_with_own_fields_and_ids(tmp_path, run):
    _benchmarks(tmp_path)
    write_jsonl(tmp_path / "train.jsonl", [
        {"id": "copied-prompt", "prompt": "Complete this:\n" + LONGEST_PROMPT, "response": "def longest(s): ..."},
        {"id": "solution-answer", "prompt": "Write the function body.", "response": LONGEST_SOLUTION},
        {"id": "quiz-question", "prompt": QUIZ[0]["question"].upper(), "response": "I think it is Venus, but let me check."},
        {"id": "trivia", "prompt": "Say something.", "response": "The quick brown fox jumps over the lazy dog while the "
                                                                  "farmer watches from the porch, they said."},
        {"id": "only-the-tests", "prompt": "Write tests for longest().", "response": LONGEST_TEST},  # test: not listed
        {"id": "short-answer", "prompt": "What is six times seven?", "response": "42"},  # below min_words
        {"id": "clean", "prompt": "How do I water tomatoes?", "response": "Water them deeply in the evening."},
    ])
    r = run(_cfg(PR_INPUT))
    assert sorted(r.version.read_split("all").column("id").to_pylist()) == ["clean", "only-the-tests", "short-answer"]
    rej = _by_id(r.version.read_rejects())
    assert rej["copied-prompt"]["duplicate_of"] == "humaneval:HumanEval/12"
    assert rej["copied-prompt"]["reason"] == "contaminated_ngram"
    assert rej["copied-prompt"]["detail"].startswith("humaneval: prompt shares the 13-gram span 'from typing import list")
    assert rej["copied-prompt"]["detail"].endswith("with HumanEval/12 (prompt)")
    # the answer field alone equals a canonical solution: an exact match, which the derived text never was
    assert (rej["solution-answer"]["reason"], rej["solution-answer"]["duplicate_of"]) == ("contaminated_exact", "humaneval:HumanEval/12")
    assert rej["solution-answer"]["detail"] == "humaneval: response matches HumanEval/12 (canonical_solution) (exact, similarity 1.00)"
    assert (rej["quiz-question"]["reason"], rej["quiz-question"]["duplicate_of"]) == ("contaminated_exact", "quiz:Q-1")
    assert "prompt matches Q-1 (question)" in rej["quiz-question"]["detail"]
    # a plain-string benchmark keeps working; its rows are named <file>:<line>
    assert rej["trivia"]["duplicate_of"] == "other/*.jsonl:trivia.jsonl:1"
    assert rej["trivia"]["detail"].startswith("other/*.jsonl: response shares the 13-gram span")


def test_fields_narrows_what_is_checked(tmp_path, run):
    _benchmarks(tmp_path)
    write_jsonl(tmp_path / "train.jsonl", [
        {"id": "prompt-hit", "prompt": "Complete this:\n" + LONGEST_PROMPT, "response": "ok"},
        {"id": "response-hit", "prompt": "Write the function body.", "response": LONGEST_SOLUTION},
    ])
    r = run(_cfg(PR_INPUT, fields=["response"]))
    assert r.version.read_split("all").column("id").to_pylist() == ["prompt-hit"]
    assert r.version.read_rejects().column("id").to_pylist() == ["response-hit"]


def test_cut_removes_the_span_from_the_prompt_and_text_follows(tmp_path, run):
    _benchmarks(tmp_path)
    prompt = FILLER + "\n" + LONGEST_PROMPT + "\n" + FILLER
    write_jsonl(tmp_path / "train.jsonl", [
        {"id": "long-prompt", "prompt": prompt, "response": "Here is a careful answer that is entirely our own."},
        {"id": "long-response", "prompt": "Explain the function.", "response": FILLER + LONGEST_PROMPT + FILLER},
    ])
    r = run(_cfg(PR_INPUT, mode="cut"))
    kept = _by_id(r.version.read_split("all"))
    assert set(kept) == {"long-prompt"}
    row = kept["long-prompt"]
    assert "longest" not in row["prompt"] and row["prompt"].count("\n\n") == 1  # two fragments of filler
    assert row["prompt"].startswith("Some ordinary words")
    assert row["response"] == "Here is a careful answer that is entirely our own."
    assert row["text"] == row["prompt"] + PR_SEPARATOR + row["response"]  # derived again, not edited on its own
    # by default a hit inside a response rejects the row: a cut answer no longer answers its prompt
    rej = _by_id(r.version.read_rejects())
    assert rej["long-response"]["reason"] == "contaminated_ngram"
    assert rej["long-response"]["duplicate_of"] == "humaneval:HumanEval/12"
    assert rej["long-response"]["detail"].endswith("with HumanEval/12 (prompt) (response_hit: reject)")
    assert "longest" in rej["long-response"]["response"]  # the reject holds the row as it came in
    stage = next(s for s in r.manifest["stages"] if s["name"] == "decontaminate")
    assert stage["counters"]["rows_cut"] == 1 and stage["counters"]["response_hits"] == 1


def test_response_hit_cut_cuts_the_response(tmp_path, run):
    _benchmarks(tmp_path)
    write_jsonl(tmp_path / "train.jsonl", [
        {"id": "long-response", "prompt": "Explain the function.", "response": FILLER + LONGEST_PROMPT + FILLER}])
    r = run(_cfg(PR_INPUT, mode="cut", response_hit="cut"))
    row = r.version.read_split("all").to_pylist()[0]
    assert "longest" not in row["response"] and "Optional" not in row["response"]
    assert row["response"].startswith("Some ordinary words") and row["prompt"] == "Explain the function."
    assert row["text"] == row["prompt"] + PR_SEPARATOR + row["response"] and "longest" not in row["text"]
    assert r.version.read_rejects() is None


def test_conversations_cut_user_turns_and_reject_assistant_hits(tmp_path, run):
    _benchmarks(tmp_path)
    user_hit = [{"role": "system", "content": "You are a careful programmer."},
                {"role": "user", "content": "Hi, can you help me with some code today?"},
                {"role": "assistant", "content": "Of course, paste it here."},
                {"role": "user", "content": FILLER + "\n" + LONGEST_PROMPT + "\n" + FILLER},
                {"role": "assistant", "content": "Sort by length and return the first longest string."}]
    assistant_hit = [{"role": "user", "content": "Show me a function that returns the longest string."},
                     {"role": "assistant", "content": "Here you go:\n" + LONGEST_PROMPT + LONGEST_SOLUTION}]
    write_jsonl(tmp_path / "chat.jsonl", [{"id": "user-hit", "messages": user_hit},
                                          {"id": "assistant-hit", "messages": assistant_hit}])
    r = run(_cfg(CHAT_INPUT, mode="cut"))
    kept = _by_id(r.version.read_split("all"))
    assert set(kept) == {"user-hit"}
    turns = kept["user-hit"]["messages"]
    assert [m["role"] for m in turns] == [m["role"] for m in user_hit]
    assert "longest" not in turns[3]["content"] and turns[3]["content"].startswith("Some ordinary words")
    assert [m["content"] for i, m in enumerate(turns) if i != 3] == [m["content"] for i, m in enumerate(user_hit) if i != 3]
    assert kept["user-hit"]["text"] == "\n".join(m["content"] for m in turns)
    rej = _by_id(r.version.read_rejects())
    assert rej["assistant-hit"]["duplicate_of"] == "humaneval:HumanEval/12"
    assert "messages[1] (assistant) shares the 13-gram span" in rej["assistant-hit"]["detail"]
    # fields narrows to the user turns: the assistant's copy is not looked at
    r = run(_cfg(CHAT_INPUT, mode="cut", fields=["messages.user"]))
    assert set(r.version.read_split("all").column("id").to_pylist()) == {"user-hit", "assistant-hit"}


def test_plain_text_rows_are_unchanged_by_fields_and_response_hit(tmp_path, run):
    _benchmarks(tmp_path)
    write_jsonl(tmp_path / "train.jsonl", [{"id": "doc", "text": FILLER + LONGEST_PROMPT + FILLER}])
    r = run({"dataset": "plain", "inputs": [{"path": "train.jsonl", "id_field": "id"}],
             "steps": [{"decontaminate": {"benchmarks": [HUMANEVAL_SPEC], "mode": "cut"}}]})
    row = r.version.read_split("all").to_pylist()[0]
    assert "longest" not in row["text"] and row["text"].count("\n\n") == 1


@pytest.mark.parametrize("spec, step, expected", [
    ({**HUMANEVAL_SPEC, "id_field": "name"}, {}, "row 1 has no id_field 'name' (its fields: canonical_solution, "
                                                 "entry_point, prompt, task_id, test)"),
    ({**HUMANEVAL_SPEC, "fields": ["prompt", "solution"]}, {}, "no row has field 'solution'; its rows have "
                                                               "canonical_solution, entry_point, prompt, task_id, test"),
    ({**HUMANEVAL_SPEC, "path": "bench/missing.jsonl"}, {}, "benchmark 'humaneval'"),
    (HUMANEVAL_SPEC, {"fields": ["messages"]}, "fields lists 'messages', which these rows do not have"),
    (HUMANEVAL_SPEC, {"mode": "cut", "fields": ["text"]}, "cannot be cut on its own: use fields: [trained]"),
    ({**HUMANEVAL_SPEC, "ids": "task_id"}, {}, "ids"),
])
def test_bad_benchmark_spec_is_a_clear_configuration_error(tmp_path, run, spec, step, expected):
    _benchmarks(tmp_path)
    write_jsonl(tmp_path / "train.jsonl", [{"id": "a", "prompt": "Hi there.", "response": "Hello."}])
    with pytest.raises(ConfigError) as err:
        run({"dataset": "bad", "inputs": [PR_INPUT], "steps": [{"decontaminate": {"benchmarks": [spec], **step}}]})
    assert expected in str(err.value)
    if "id_field" in expected:
        assert "HumanEval.jsonl.gz" in str(err.value)


def test_broken_json_benchmark_names_file_and_line(tmp_path, run):
    (tmp_path / "bench").mkdir()
    (tmp_path / "bench" / "b.jsonl").write_text('{"q": "one two three four five"}\n{"q": "broken\n')
    write_jsonl(tmp_path / "train.jsonl", [{"id": "a", "prompt": "Hi there.", "response": "Hello."}])
    with pytest.raises(ConfigError) as err:
        run({"dataset": "bad", "inputs": [PR_INPUT],
             "steps": [{"decontaminate": {"benchmarks": [{"path": "bench/b.jsonl", "fields": ["q"]}]}}]})
    assert "benchmark 'bench/b.jsonl' (b.jsonl): line 2 is not valid JSON" in str(err.value)
