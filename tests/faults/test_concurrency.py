"""Several ``corpusmill`` processes on one store at the same time: runs of the same pipeline,
different pipelines on the same dataset, refreshes and tag updates. Every process ends with exit
0 and no traceback, every version is complete, refs.json is valid with every tag right, and the
store verifies clean (no work folder left behind)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from corpusmill import locks
from corpusmill.store import Store, verify_store
from tests.conftest import REAL_TEXTS, write_jsonl, write_pipeline

TOPICS = ["billing", "login", "shipping", "crash"]


def _rows(n, prefix):
    return [{"id": f"{prefix}{i}", "text": f"{REAL_TEXTS[i % 10]} Case {i} of {prefix} about {TOPICS[i % 4]}, "
                                         f"item {i * 7} and order {i * 13}.", "label": TOPICS[i % 4]}
            for i in range(n)]


def _pipeline(tmp_path: Path, name: str, inputs: str, steps: list) -> Path:
    return write_pipeline(tmp_path / name, {
        "dataset": "tickets", "seed": 3, "execution": {"shard_bytes": 32768},
        "inputs": [{"path": inputs, "id_field": "id", "label_field": "label"}], "steps": steps})


STEPS = [{"clean": {}}, {"dedup": {"exact": True, "near": {"threshold": 0.8}}},
         {"split": {"ratios": {"train": 0.8, "test": 0.2}}}]


@pytest.fixture
def corpus(tmp_path):
    write_jsonl(tmp_path / "raw" / "a.jsonl", _rows(1500, "a"))
    write_jsonl(tmp_path / "raw" / "b.jsonl", _rows(1500, "b"))
    return tmp_path


def _start(tmp_path: Path, *argv) -> subprocess.Popen:
    env = {**os.environ, "CORPUSMILL_CACHE": str(tmp_path / "cache"), "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "corpusmill", *map(str, argv)], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(procs: list[subprocess.Popen]) -> list[tuple[int, str, str]]:
    out = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=300)
        out.append((p.returncode, stdout, stderr))
    for code, stdout, stderr in out:
        assert code == 0, stderr
        assert "Traceback" not in stderr
    return out


def _assert_sound(store: Path) -> dict[str, str]:
    """refs.json parses, every tag points at a complete version, verify finds nothing (not even
    a leftover work folder); returns the refs."""
    refs = json.loads((store / "tickets" / "refs.json").read_text())
    check = verify_store(Store(store))
    assert check.ok, check.as_json()
    assert check.findings == [], check.as_json()  # no work folder, no temporary file left
    for tag, vid in refs.items():
        v = Store(store).resolve(f"tickets@{tag}")
        assert v.id == vid
        assert sum(v.read_split(s).num_rows for s in v.splits()) == v.manifest["counts"]["kept"]
    return refs


@pytest.mark.parametrize("n", [2, 4])
def test_runs_of_the_same_pipeline_build_once_and_keep_every_tag(corpus, n):
    p = _pipeline(corpus, "p.yaml", "raw/*.jsonl", STEPS)
    procs = [_start(corpus, "run", p, "--store", "store", "--workers", "2", "--tag", f"t{k}") for k in range(n)]
    results = _finish(procs)
    refs_printed = {stdout.strip().splitlines()[-1] for _, stdout, _ in results}
    assert len(refs_printed) == 1
    ref = refs_printed.pop()
    built = [stderr for _, _, stderr in results if "built in" in stderr]
    reused = [stderr for _, _, stderr in results if "already published" in stderr]
    assert len(built) == 1 and len(reused) == n - 1  # the others waited, then reused it
    refs = _assert_sound(corpus / "store")
    assert refs == {"latest": ref.split("@")[1], **{f"t{k}": ref.split("@")[1] for k in range(n)}}


def test_different_pipelines_on_one_dataset_both_publish_with_their_tags(corpus):
    one = _pipeline(corpus, "one.yaml", "raw/a.jsonl", STEPS)
    two = _pipeline(corpus, "two.yaml", "raw/*.jsonl", [{"dedup": {"exact": True}},
                                                        {"split": {"ratios": {"train": 0.5, "test": 0.5}}}])
    procs = [_start(corpus, "run", pipe, "--store", "store", "--workers", "1", "--quiet", "--tag", tag)
             for pipe, tag in ((one, "one"), (two, "two"), (one, "one-again"), (two, "two-again"))]
    results = _finish(procs)
    printed = [stdout.strip().splitlines()[-1].split("@")[1] for _, stdout, _ in results]
    assert printed[0] == printed[2] and printed[1] == printed[3] and printed[0] != printed[1]
    refs = _assert_sound(corpus / "store")
    assert refs["one"] == refs["one-again"] == printed[0]
    assert refs["two"] == refs["two-again"] == printed[1]
    assert refs["latest"] in (printed[0], printed[1])
    assert {v.id for v in Store(corpus / "store").versions("tickets")} == {printed[0], printed[1]}


def test_a_second_run_waits_for_the_lock_holder_then_reuses_its_version(corpus):
    """While another process builds the version (here: this test holds its lock), a run waits,
    says so, and never touches the work folder; once the holder has published, the run reuses
    the version."""
    from corpusmill.pipelines.config import load_pipeline, store_root
    from corpusmill.pipelines.registry import REGISTRY
    from corpusmill.pipelines.runner import make_plan

    p = _pipeline(corpus, "p.yaml", "raw/*.jsonl", STEPS)
    config, steps, base = load_pipeline(p, REGISTRY)
    plan = make_plan(config, steps, base, store_root=store_root(str(corpus / "store"), config, base))
    store = Store(corpus / "store")
    lock = locks.lock_path(store.dataset_dir("tickets"), plan.version_id)
    work = store.work_dir("tickets", plan.version_id)
    with locks.hold(lock, what="a test", store=str(store.root)):
        work.mkdir(parents=True)
        (work / "held-by-the-first-run").write_text("x")
        waiting = _start(corpus, "run", p, "--store", "store", "--workers", "1")
        deadline = time.time() + 60
        said = ""
        while time.time() < deadline and waiting.poll() is None and "waiting for" not in said:
            said += _stderr_line(waiting)
        assert waiting.poll() is None  # still waiting
        assert (work / "held-by-the-first-run").is_file()  # not resumed, not removed
        # the holder publishes (as the first run would), then lets go
        from corpusmill.pipelines.runner import _execute

        _execute(plan, store, workers=1, quiet=True)
    (code, stdout, stderr), = _finish([waiting])
    assert f"waiting for another process (process {os.getpid()}) to finish building tickets@{plan.version_id}" in said
    assert "already published" in stderr and stdout.strip().endswith(plan.version_id)
    _assert_sound(corpus / "store")


def _stderr_line(proc: subprocess.Popen) -> str:
    """The next line ``proc`` writes to stderr, or "" after 0.2 s without one."""
    import select

    if not select.select([proc.stderr], [], [], 0.2)[0]:
        return ""
    return proc.stderr.readline()


def test_refreshes_and_runs_at_the_same_time(corpus, capsys):
    from corpusmill.cli import main

    p = _pipeline(corpus, "p.yaml", "raw/a.jsonl", STEPS)
    assert main(["run", str(p), "--store", str(corpus / "store"), "--workers", "1", "--quiet"]) == 0
    parent = capsys.readouterr().out.strip().splitlines()[-1]
    write_jsonl(corpus / "new.jsonl", _rows(300, "n"))
    other = _pipeline(corpus, "other.yaml", "raw/b.jsonl", STEPS)
    procs = [_start(corpus, "refresh", parent, "--add", "new.jsonl", "--store", "store", "--workers", "1",
                    "--quiet", "--tag", f"r{k}") for k in range(2)]
    procs.append(_start(corpus, "run", other, "--store", "store", "--workers", "1", "--quiet", "--tag", "other"))
    results = _finish(procs)
    refreshed = {stdout.strip().splitlines()[-1] for _, stdout, _ in results[:2]}
    assert len(refreshed) == 1
    vid = refreshed.pop().split("@")[1]
    refs = _assert_sound(corpus / "store")
    assert refs["r0"] == refs["r1"] == vid
    assert refs["other"] == results[2][1].strip().splitlines()[-1].split("@")[1]
    assert Store(corpus / "store").resolve(f"tickets@{vid}").manifest["parent"] == parent
