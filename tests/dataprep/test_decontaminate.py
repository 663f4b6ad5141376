"""decontaminate: training rows overlapping benchmark files are removed with evidence, or cut."""

from __future__ import annotations

from tests.conftest import write_jsonl

BENCH = [
    {"question": "Which planet in our solar system has the longest day, longer even than its own year on the calendar?"},
    {"question": "What is the boiling point of water at sea level measured in degrees Celsius under normal pressure?"},
]
FILLER = ("Lorem of a different kind: this sentence is ordinary training text about gardening, cooking and "
          "the weather, repeated to make a long document that is worth keeping after a cut. ") * 3


def _train():
    return [
        {"id": "clean", "text": "Tomatoes need full sun and regular watering to grow well in the garden."},
        {"id": "exact", "text": BENCH[1]["question"].upper()},
        {"id": "copied", "text": "Quiz night! Which planet in our solar system has the longest day, longer even than its own year? Answer: Venus."},
        {"id": "long", "text": FILLER + " Which planet in our solar system has the longest day, longer even than its own year on the calendar? " + FILLER},
    ]


def _cfg(mode="drop"):
    return {"dataset": "dc", "inputs": [{"path": "train.jsonl", "id_field": "id"}],
            "steps": [{"decontaminate": {"benchmarks": ["bench/*.jsonl"], "text_field": "question", "mode": mode}}]}


def test_drop_mode_rejects_with_benchmark_row_and_span(tmp_path, run):
    write_jsonl(tmp_path / "bench" / "quiz.jsonl", BENCH)
    write_jsonl(tmp_path / "train.jsonl", _train())
    r = run(_cfg())
    assert r.version.read_split("all").column("id").to_pylist() == ["clean"]
    rej = {x["id"]: x for x in r.version.read_rejects().to_pylist()}
    assert rej["exact"]["reason"] == "contaminated_exact"
    assert rej["copied"]["reason"] == rej["long"]["reason"] == "contaminated_ngram"
    assert rej["copied"]["duplicate_of"].startswith("bench/*.jsonl:")
    assert "which planet in our solar system has the longest day longer even than its own year" in rej["copied"]["detail"]


def test_cut_mode_keeps_long_documents_without_the_span(tmp_path, run):
    write_jsonl(tmp_path / "bench" / "quiz.jsonl", BENCH)
    write_jsonl(tmp_path / "train.jsonl", _train())
    r = run(_cfg("cut"))
    kept = {x["id"]: x["text"] for x in r.version.read_split("all").to_pylist()}
    assert set(kept) == {"clean", "long"}
    assert "longest day" not in kept["long"] and kept["long"].count("\n\n") == 1
    rej = {x["id"]: x["reason"] for x in r.version.read_rejects().to_pylist()}
    assert rej == {"exact": "contaminated_exact", "copied": "contaminated_ngram"}  # too short to keep a fragment
    stage = next(s for s in r.manifest["stages"] if s["name"] == "decontaminate")
    # one span per row; its overlapping 13-grams all matched (7 in "long", 4 in "copied")
    assert stage["counters"] == {"rows_cut": 2, "spans_cut": 2, "ngrams_matched": 11}


def test_changed_benchmark_changes_the_version(tmp_path, run):
    write_jsonl(tmp_path / "bench" / "quiz.jsonl", BENCH)
    write_jsonl(tmp_path / "train.jsonl", _train())
    first = run(_cfg())
    write_jsonl(tmp_path / "bench" / "quiz.jsonl", BENCH[:1])
    second = run(_cfg())
    assert first.version.id != second.version.id
    assert "exact" in second.version.read_split("all").column("id").to_pylist()


def test_near_check_catches_an_edited_copy(tmp_path, run):
    write_jsonl(tmp_path / "bench" / "quiz.jsonl", BENCH)
    edited = BENCH[1]["question"].replace("measured in", "given in")  # one word changed
    write_jsonl(tmp_path / "train.jsonl", [{"id": "edited", "text": edited}, {"id": "clean", "text": "Tomatoes need sun."}])
    cfg = _cfg()
    cfg["steps"][0]["decontaminate"]["checks"] = ["near"]
    cfg["steps"][0]["decontaminate"]["threshold"] = 0.6
    r = run(cfg)
    rej = r.version.read_rejects().to_pylist()
    assert [(x["id"], x["reason"]) for x in rej] == [("edited", "contaminated_near")]
    assert 0.6 <= rej[0]["similarity"] < 1.0
