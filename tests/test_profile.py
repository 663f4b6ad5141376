"""``corpusmill run --profile``: CPU seconds and peak RSS of the whole process tree (the command, the
workers' server and its pool workers) in the version's stats.json and in the summary."""

from __future__ import annotations

import json
import subprocess
import sys

from corpusmill.cli import main
from tests.conftest import REAL_TEXTS, write_jsonl, write_pipeline


def corpus(tmp_path):
    rows = [{"id": f"r{i}", "text": f"{REAL_TEXTS[i % len(REAL_TEXTS)]} (ticket {i}, queue {i % 7})"} for i in range(3000)]
    write_jsonl(tmp_path / "d.jsonl", rows)
    return write_pipeline(tmp_path / "p.yaml", {
        "dataset": "tickets", "inputs": [{"path": "d.jsonl", "id_field": "id"}],
        "execution": {"shard_bytes": 32 << 10},  # several shards, so a pool of workers runs them
        "steps": [{"dedup": {"exact": True, "near": {"threshold": 0.8}}}, {"split": {}}]})


def test_profile_records_the_whole_process_tree_in_stats_json(tmp_path):
    pipeline = corpus(tmp_path)
    store = tmp_path / "store"
    cmd = [sys.executable, "-m", "corpusmill", "run", str(pipeline), "--store", str(store), "--workers", "2", "--profile"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    ref = done.stdout.strip().splitlines()[-1]
    stats = json.loads(next((store / "tickets" / "versions").glob("*/stats.json")).read_text())
    prof = stats["profile"]
    assert set(prof) >= {"cpu_seconds", "cpu_seconds_command", "peak_rss_bytes", "samples", "interval_s", "processes",
                         "seconds", "method"}
    # the command, the workers' server, two workers (and multiprocessing's resource tracker)
    assert prof["processes"] >= 4
    # the workers' CPU is in the total, not in the command's own
    assert prof["cpu_seconds"] > prof["cpu_seconds_command"] + 0.1
    assert prof["peak_rss_bytes"] > 50 * 2**20  # several Python processes with pyarrow loaded
    assert prof["samples"] >= 2 and prof["interval_s"] == 0.05
    line = next(x for x in done.stderr.splitlines() if x.startswith("profile (whole process tree"))
    assert f"CPU {prof['cpu_seconds']:.1f} s user+system" in line and "recorded in stats.json" in line
    assert ref.startswith("tickets@")

    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0
    assert "not recorded: the version was already published" in again.stderr
    assert json.loads(next((store / "tickets" / "versions").glob("*/stats.json")).read_text())["profile"] == prof


def test_without_the_flag_stats_json_has_no_profile(tmp_path, capsys):
    pipeline = corpus(tmp_path)
    assert main(["run", str(pipeline), "--store", str(tmp_path / "store"), "--workers", "1"]) == 0
    stats = json.loads(next((tmp_path / "store" / "tickets" / "versions").glob("*/stats.json")).read_text())
    assert "profile" not in stats and "seconds" in stats
    assert "profile (whole process tree" not in capsys.readouterr().err


def test_profile_without_psutil_says_what_to_install(tmp_path, capsys, monkeypatch):
    pipeline = corpus(tmp_path)
    monkeypatch.setitem(sys.modules, "psutil", None)  # import psutil raises ImportError
    assert main(["run", str(pipeline), "--store", str(tmp_path / "store"), "--profile"]) == 2
    err = capsys.readouterr().err
    assert "pip install psutil" in err and "Traceback" not in err
    assert not (tmp_path / "store" / "tickets").exists()
