"""Worker processes end with the command, however it ends: `corpusmill run` killed with SIGKILL in
the middle of a run leaves no process behind (not its workers' server, not a worker), and the rerun
resumes the finished shards and publishes a complete version."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from corpusmill.hashing import file_sha256
from corpusmill.store import Store
from tests.conftest import write_jsonl, write_pipeline

psutil = pytest.importorskip("psutil")

ROOT = Path(__file__).resolve().parents[2]

#: a map stage that sleeps on every batch, so that a run is still in the middle when it is killed
NAP_STAGE = '''
import time

import numpy as np
from pydantic import Field

from corpusmill.pipelines.registry import register_stage
from corpusmill.stage import Filter, StageConfig


class NapConfig(StageConfig):
    seconds: float = Field(0.1, description="sleep per batch")


@register_stage
class Nap(Filter):
    kind = "nap"
    Config = NapConfig

    def keep(self, batch):
        time.sleep(self.config.seconds)
        return np.ones(batch.num_rows, dtype=bool), "never"
'''

#: `corpusmill` with the nap stage registered (a stage outside corpusmill registers itself on import)
DRIVER = '''
import sys

import napstage  # noqa: F401

from corpusmill.cli import main

if __name__ == "__main__":
    sys.exit(main())
'''


def _nap_pipeline(tmp_path: Path, rows: int = 3000, seconds: float = 0.15) -> Path:
    (tmp_path / "napstage.py").write_text(NAP_STAGE)
    (tmp_path / "drive.py").write_text(DRIVER)
    write_jsonl(tmp_path / "raw" / "d.jsonl", [{"id": f"r{i}", "text": f"row {i} of a corpus that takes its time"}
                                               for i in range(rows)])
    return write_pipeline(tmp_path / "nap.yaml", {
        "dataset": "nap", "inputs": [{"path": "raw/d.jsonl", "id_field": "id"}],
        "steps": [{"nap": {"seconds": seconds}}, {"dedup": {"exact": True}}],
        "execution": {"shard_bytes": 8192, "batch_rows": 100}})


def _command(tmp_path: Path, pipeline: Path, *extra: str) -> tuple[list[str], dict]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    return [sys.executable, str(tmp_path / "drive.py"), "run", str(pipeline), "--store", str(tmp_path / "store"),
            "--workers", "2", *extra], env


def _wait_for(condition, timeout: float, what: str):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_sigkill_of_run_leaves_no_process_and_the_rerun_resumes(tmp_path):
    pipeline = _nap_pipeline(tmp_path)
    cmd, env = _command(tmp_path, pipeline, "--quiet")
    proc = subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    parent = psutil.Process(proc.pid)
    work = tmp_path / "store" / "nap" / ".work"
    try:
        # mid-run: the server and both workers up, and some shard of the first segment finished
        _wait_for(lambda: any(work.glob("*/seg0/*.done.json")), 60, "a finished shard")
        family = _wait_for(lambda: (lambda c: c if len(c) >= 3 else None)(parent.children(recursive=True)),
                           10, "the workers' server and two workers")
        assert proc.poll() is None, proc.stderr.read().decode()
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        gone, alive = psutil.wait_procs(family, timeout=5)
        assert not alive, f"still running 5 s after the command was killed: {[p.cmdline()[:3] for p in alive]}"
    finally:
        for p in parent.children(recursive=True) if proc.poll() is None else []:
            p.kill()
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # whatever the assertion above found: never left running
        except ProcessLookupError:
            pass
    store = Store(tmp_path / "store")
    assert store.versions("nap") == []

    # the rerun resumes the finished shards (its log says so) and publishes every row
    cmd, env = _command(tmp_path, pipeline)
    rerun = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    assert "Traceback" not in rerun.stderr
    first_segment = next(line for line in rerun.stderr.splitlines() if line.startswith("[1/"))
    resumed = int(first_segment.split(" resumed")[0].rsplit(", ", 1)[1])
    assert resumed >= 1, first_segment
    version = store.resolve(rerun.stdout.strip().splitlines()[-1])
    manifest = version.manifest
    for rel, entry in manifest["files"].items():
        assert file_sha256(version.path / rel) == entry["sha256"], rel
    assert manifest["counts"]["input"] == 3000 and manifest["counts"]["kept"] == 3000
    assert sorted(version.read_split("all").column("id").to_pylist()) == sorted(f"r{i}" for i in range(3000))
    assert json.loads((tmp_path / "store" / "nap" / "refs.json").read_text())["latest"] == version.id
    assert not any(work.glob("*")), "work folder left behind"


def test_a_worker_whose_parent_is_gone_ends_itself(tmp_path):
    """die_with_parent: a process whose parent ended before it armed the signal ends at once."""
    code = ("import os, sys; from corpusmill.pipelines.workers import die_with_parent; "
            "die_with_parent(os.getppid() + 10**6); print('still here')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.returncode == 1 and "still here" not in out.stdout
