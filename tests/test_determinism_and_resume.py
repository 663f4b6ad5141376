"""Same inputs + config + seed -> same reference and byte-identical files, whatever the worker
count; a run killed at any point leaves no half version and a rerun finishes with the same one."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest

from corpusmill.hashing import file_sha256
from corpusmill.store import Store
from tests.conftest import REAL_TEXTS, write_jsonl, write_pipeline


def _corpus(tmp_path, n=20000):
    rows = [{"text": f"{REAL_TEXTS[i % 10]} Ticket {i % 7000}.", "label": str(i % 3)} for i in range(n)]
    write_jsonl(tmp_path / "raw" / "a.jsonl", rows[: n // 2])
    write_jsonl(tmp_path / "raw" / "b.jsonl.gz", rows[n // 2:], compress=True)
    return {"dataset": "det", "seed": 3, "inputs": [{"path": "raw/*", "label_field": "label"}],
            "steps": [{"dedup": {"exact": True}}], "execution": {"shard_bytes": 65536, "batch_rows": 1000}}


def _files(version):
    return {str(p.relative_to(version.path)): file_sha256(p)
            for p in sorted(version.path.rglob("*.parquet"))}


def test_same_reference_and_bytes_for_any_worker_count(tmp_path, run):
    cfg = _corpus(tmp_path)
    one = run(cfg, workers=1, store=tmp_path / "s1")
    two = run(cfg, workers=2, store=tmp_path / "s2")
    assert one.version.id == two.version.id
    assert one.manifest["shards"] > 5
    assert _files(one.version) == _files(two.version)
    assert len(_files(one.version)) > 5
    m1 = (one.version.path / "manifest.json").read_bytes()
    assert m1 == (two.version.path / "manifest.json").read_bytes()
    # 20000 rows, 7000 distinct texts per label pattern -> exact duplicates removed
    assert one.manifest["counts"]["rejected"]["dedup"]["exact_duplicate"] > 0


def test_rerun_returns_the_same_version_without_redoing_work(tmp_path, run):
    cfg = _corpus(tmp_path, 2000)
    first = run(cfg)
    again = run(cfg)
    assert first.created and not again.created
    assert again.version.ref == first.version.ref
    changed = run({**cfg, "seed": 4})
    assert changed.version.id != first.version.id
    assert Store(tmp_path / "store").refs("det")["latest"] == changed.version.id


def test_version_id_ignores_location_and_store(tmp_path, run):
    cfg = _corpus(tmp_path, 500)
    a = run(cfg, store=tmp_path / "s1")
    moved = tmp_path / "elsewhere"
    (tmp_path / "raw").rename(moved)
    cfg["inputs"][0]["path"] = str(moved / "*")
    b = run(cfg, store=tmp_path / "s2")
    assert a.version.id == b.version.id
    assert _files(a.version) == _files(b.version)


def _check_store_is_consistent(store: Store, name: str) -> None:
    """Every listed version is complete: its manifest's files exist with their checksums."""
    for v in store.versions(name):
        m = v.manifest
        for rel, entry in m["files"].items():
            assert file_sha256(v.path / rel) == entry["sha256"], rel
        assert sum(m["splits"].values()) == m["counts"]["kept"]


def test_sigkill_at_random_points_then_rerun(tmp_path):
    cfg = _corpus(tmp_path, 60000)
    cfg["execution"]["shard_bytes"] = 32768
    pipeline = write_pipeline(tmp_path / "p.yaml", cfg)
    ref_store = tmp_path / "reference"
    clean = subprocess.run([sys.executable, "-m", "corpusmill", "run", str(pipeline), "--store", str(ref_store),
                            "--workers", "2", "--quiet"], capture_output=True, text=True, check=True)
    expected_ref = clean.stdout.strip().splitlines()[-1]
    store_path = tmp_path / "store"
    store = Store(store_path)
    rng = random.Random(7)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "corpusmill", "run", str(pipeline), "--store", str(tmp_path / "timing"),
                    "--workers", "2", "--quiet"], capture_output=True, check=True)
    duration = time.perf_counter() - start
    kills = 0
    for _ in range(4):
        proc = subprocess.Popen([sys.executable, "-m", "corpusmill", "run", str(pipeline), "--store", str(store_path),
                                 "--workers", "2", "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                start_new_session=True)
        time.sleep(rng.uniform(0.2, duration * 0.9))
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            kills += 1
        proc.wait()
        _check_store_is_consistent(store, "det")
        if store.versions("det"):  # the run got to publish before the kill
            break
    assert kills >= 1
    final = subprocess.run([sys.executable, "-m", "corpusmill", "run", str(pipeline), "--store", str(store_path),
                            "--workers", "2", "--quiet"], capture_output=True, text=True, check=True)
    assert final.stdout.strip().splitlines()[-1] == expected_ref
    _check_store_is_consistent(store, "det")
    reference = Store(ref_store).resolve(expected_ref)
    assert _files(store.resolve(expected_ref)) == _files(reference)
    assert not any((store_path / "det" / ".work").glob("*/final")), "work folder left behind"


def test_failed_run_resumes_finished_shards(tmp_path, run, monkeypatch):
    """A run that dies in the middle keeps its finished shards; the rerun redoes only the rest."""
    from corpusmill.pipelines import runner

    cfg = _corpus(tmp_path, 4000)
    real = runner.run_segment_shard
    calls = []

    def flaky(pipe, k, shard, work):
        calls.append((k, shard.index))
        if k == 1 and shard.index == 3:
            raise RuntimeError("simulated crash")
        return real(pipe, k, shard, work)

    monkeypatch.setattr(runner, "run_segment_shard", flaky)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run(cfg)
    assert not Store(tmp_path / "store").versions("det")
    done_before = list(calls)
    calls.clear()
    monkeypatch.setattr(runner, "run_segment_shard", real)
    monkeypatch.setattr(runner, "run_segment_shard", lambda *a: (calls.append((a[1], a[2].index)), real(*a))[1])
    result = run(cfg)
    # segment 0 finished for every shard and is not redone; segment 1 resumes at shard 3; segment 2 runs once
    shards = result.manifest["shards"]
    assert [s for k, s in done_before if k == 0] == list(range(shards))
    assert [s for k, s in calls if k == 0] == []
    assert [s for k, s in calls if k == 1] == list(range(3, shards))
    assert [s for k, s in calls if k == 2] == list(range(shards))
    fresh = run(cfg, store=tmp_path / "fresh")
    assert _files(fresh.version) == _files(result.version)
    assert json.loads((result.version.path / "manifest.json").read_text())["version"] == fresh.version.id
