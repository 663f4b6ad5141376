"""The train command line: options from defaults < --config YAML < flags, every problem at once,
and no torch for commands that do not train."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml

from corpusmill.cli import main
from corpusmill.errors import ConfigError
from corpusmill.train.config import build_config, options_table


def test_flags_override_the_file_which_overrides_defaults(tmp_path):
    f = tmp_path / "train.yaml"
    f.write_text(yaml.safe_dump({"dataset": "tickets@v1", "model": "m", "task": "classification", "lr": 1e-3,
                                 "lora": {"r": 4, "alpha": 8}, "max_steps": 50}))
    cfg = build_config(f, {"max_steps": 7, "lora.r": 16})
    assert (cfg.lr, cfg.max_steps, cfg.lora.r, cfg.lora.alpha, cfg.batch_size) == (1e-3, 7, 16, 8.0, 16)  # batch_size: the classification default


def test_every_problem_is_reported_at_once(tmp_path):
    with pytest.raises(ConfigError) as err:
        build_config(None, {"dataset": "d", "task": "regression", "lr": -1, "lora.rank": 3, "batchsize": 2})
    msg = str(err.value)
    assert "model: missing required key" in msg and "task:" in msg and "lr:" in msg
    assert "lora.rank: unknown key" in msg and "batchsize: unknown key (did you mean 'batch_size'?)" in msg
    with pytest.raises(ConfigError) as err:
        build_config(None, {"dataset": "d", "model": "m", "task": "classification", "packing": True,
                            "early_stopping_metric": "val_perplexity", "early_stopping_patience": 2, "eval_every": 0})
    msg = str(err.value)
    assert "packing: only for task causal-lm" in msg and "val_perplexity' is not computed for classification" in msg
    assert "early_stopping_patience: needs evaluations during training" in msg


def test_every_option_is_a_documented_flag(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    help_text = capsys.readouterr().out
    for key, _, description in options_table():
        assert "--" + key.replace("_", "-").replace(".", "-") in help_text
        assert description, key


def test_cli_trains_from_a_config_file_and_flags(tiny, store, tmp_path, capsys):
    f = tmp_path / "train.yaml"
    f.write_text(yaml.safe_dump({"dataset": "tickets", "model": str(tiny["bert"]), "task": "classification",
                                 "max_steps": 50, "batch_size": 4, "store": str(store)}))
    out = tmp_path / "run"
    code = main(["train", "--config", str(f), "--max-steps", "2", "--output", str(out), "--lora-r", "2",
                 "--lora-target-modules", "query,value", "--no-keep-best"])
    stdout, stderr = capsys.readouterr()
    assert code == 0 and stdout.strip() == str(out.resolve())
    run = json.loads((out / "run.json").read_text())
    assert run["steps"] == 2 and run["config"]["lora"] == {"r": 2, "alpha": 16.0, "dropout": 0.05,
                                                             "target_modules": ["query", "value"]}
    assert "tokens/s" in stderr
    assert yaml.safe_load((out / "hyperparameters.yaml").read_text())["max_steps"] == 2


def test_bad_dataset_reference_is_a_clean_error(tiny, store, tmp_path, capsys):
    code = main(["train", "--dataset", "tickets@nope", "--model", str(tiny["bert"]), "--task", "classification",
                 "--store", str(store), "--output", str(tmp_path / "r")])
    assert code == 2 and "no version or tag 'nope'" in capsys.readouterr().err


def test_parser_and_other_commands_do_not_import_torch(tmp_path):
    code = ("import sys; from corpusmill.cli import build_parser; build_parser(); "
            "bad = [m for m in ('torch', 'transformers', 'peft') if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
