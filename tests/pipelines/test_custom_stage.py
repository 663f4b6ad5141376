"""A filter written as in the README plugs into pipelines with one registration."""

from __future__ import annotations

import pyarrow.compute as pc
from pydantic import Field

from corpusmill.pipelines.registry import STAGES, register_stage
from corpusmill.stage import Filter, StageConfig
from tests.conftest import write_jsonl


class MinWordsConfig(StageConfig):
    min: int = Field(5, description="rows with fewer whitespace-separated words are rejected")


class MinWords(Filter):
    kind = "min_words"
    Config = MinWordsConfig

    def keep(self, batch):
        words = pc.list_value_length(pc.utf8_split_whitespace(batch["text"])).to_numpy()
        return words >= self.config.min, "too_few_words"


def test_readme_filter_runs_in_a_pipeline(tmp_path, run, monkeypatch):
    monkeypatch.setitem(STAGES, "min_words", STAGES.get("min_words"))  # restored after the test
    register_stage(MinWords)
    write_jsonl(tmp_path / "d.jsonl", [{"text": "one two three"}, {"text": "one two three four five six"},
                                       {"text": "hi"}])
    r = run({"dataset": "mw", "inputs": [{"path": "d.jsonl"}], "steps": [{"min_words": {"min": 4}}]})
    assert r.version.read_split("all").column("text").to_pylist() == ["one two three four five six"]
    assert r.manifest["counts"]["rejected"] == {"min_words": {"too_few_words": 2}}
    assert [x["stage"] for x in r.version.read_rejects().to_pylist()] == ["min_words", "min_words"]
