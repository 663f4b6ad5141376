"""Pipelines are validated before anything runs, and every problem is reported at once."""

from __future__ import annotations

import subprocess
import sys

import pytest

from corpusmill.errors import ConfigError
from corpusmill.pipelines import run_pipeline
from tests.conftest import write_pipeline


def test_misspelt_keys_are_all_reported_in_one_message(tmp_path, tickets):
    cfg = {
        "dataset": "tickets",
        "seeed": 1,                                                   # top-level typo
        "inputs": [{"path": "raw/*.jsonl", "text_feild": "body"}],    # input typo
        "steps": [{"dedup": {"exatc": True}}, {"dedupe": {}}],         # stage option typo, stage kind typo
        "execution": {"batch_rows": "many"},                          # wrong type
    }
    with pytest.raises(ConfigError) as exc:
        run_pipeline(write_pipeline(tmp_path / "p.yaml", cfg), store=tmp_path / "store")
    msg = str(exc.value)
    assert "seeed: unknown key (did you mean 'seed'?)" in msg
    assert "inputs[0].text_feild: unknown key (did you mean 'text_field'?)" in msg
    assert "steps[0].dedup.exatc: unknown key (did you mean 'exact'?)" in msg
    assert "steps[1]: unknown stage kind 'dedupe' (did you mean 'dedup'?)" in msg
    assert "execution.batch_rows" in msg and "'many'" in msg
    assert len(exc.value.problems) == 5
    assert not (tmp_path / "store").exists()  # nothing ran


def test_missing_inputs_and_bad_values(tmp_path):
    cfg = {"dataset": "bad name!", "inputs": [{"path": "nowhere/*.jsonl"}, {"path": "x.unknownext"}],
           "steps": [{"dedup": {"keep": "random"}}]}
    (tmp_path / "x.unknownext").write_text("{}")
    with pytest.raises(ConfigError) as exc:
        run_pipeline(write_pipeline(tmp_path / "p.yaml", cfg), store=tmp_path / "store")
    problems = exc.value.problems
    assert any(p.startswith("dataset:") for p in problems)
    assert any("steps[0].dedup.keep" in p and "'first'" in p for p in problems)
    # input problems are found once the rest of the config is valid
    cfg["dataset"] = "ok"
    cfg["steps"] = []
    with pytest.raises(ConfigError) as exc:
        run_pipeline(write_pipeline(tmp_path / "p.yaml", cfg), store=tmp_path / "store")
    problems = exc.value.problems
    assert any("inputs[0].path: no file matches nowhere/*.jsonl" in p for p in problems)
    assert any("inputs[1].path: cannot tell the format of 'x.unknownext'" in p for p in problems)


def test_missing_required_keys_and_step_shape(tmp_path):
    with pytest.raises(ConfigError) as exc:
        run_pipeline(write_pipeline(tmp_path / "p.yaml", {"steps": [{"dedup": {}, "other": {}}, "dedup"]}),
                     store=tmp_path / "s")
    problems = exc.value.problems
    assert "dataset: missing required key" in problems
    assert "inputs: missing required key" in problems
    assert sum("a step is a mapping with exactly one stage kind" in p for p in problems) == 2


def test_yaml_syntax_error_is_a_config_error(tmp_path):
    p = tmp_path / "p.yaml"
    p.write_text("dataset: x\ninputs: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        run_pipeline(p, store=tmp_path / "s")


def test_cli_reports_problems_without_traceback(tmp_path, tickets):
    p = write_pipeline(tmp_path / "p.yaml", {"dataset": "t", "inputs": [{"path": "raw/*.jsonl", "txt_field": "body"}]})
    proc = subprocess.run([sys.executable, "-m", "corpusmill", "run", str(p), "--store", str(tmp_path / "s")],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert "inputs[0].txt_field: unknown key (did you mean 'text_field'?)" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""


def test_every_shipped_pipeline_validates(tmp_path):
    from importlib import resources

    import yaml

    from corpusmill.pipelines.config import parse_pipeline
    from corpusmill.pipelines.registry import REGISTRY

    shipped = [f for f in resources.files("corpusmill.pipelines").iterdir() if f.name.endswith(".yaml")]
    assert shipped
    for f in shipped:
        raw = yaml.safe_load(f.read_text())
        # give the inputs something to match, as the demo does
        for spec in raw["inputs"]:
            target = tmp_path / spec["path"].replace("*", "x")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text('{"text": "a"}\n')
        for step in raw["steps"]:  # and the benchmark files a decontaminate step names
            for bench in (step.get("decontaminate") or {}).get("benchmarks", []):
                target = tmp_path / (bench["path"] if isinstance(bench, dict) else bench)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text('{"task_id": "T/0", "prompt": "def f():", "canonical_solution": "return 1", "text": "a"}\n')
        config, steps, _ = parse_pipeline(raw, REGISTRY, base_dir=tmp_path)
        assert config.dataset
