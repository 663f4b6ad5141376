"""Faults while a version is published: SIGKILL at random points of a run's publish and of a
refresh, and a disk that fills up at any write of the publish. Each leaves either no new version
or a complete one, a valid refs.json, and a rerun that publishes the same version, byte for byte."""

from __future__ import annotations

import errno
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from corpusmill.cli import main
from corpusmill.hashing import file_sha256
from corpusmill.store import Store
from tests.conftest import REAL_TEXTS, write_jsonl, write_pipeline

ROOT = Path(__file__).resolve().parents[2]

#: `corpusmill` whose publishing steps each log their name to $FAULT_LOG and pause $FAULT_PAUSE
#: seconds first, so that a kill after a random delay lands between any two of them
DRIVER = '''
import os
import sys
import time

from corpusmill import store
from corpusmill.pipelines import executors, refresh, runner

LOG = open(os.environ["FAULT_LOG"], "a", buffering=1)
PAUSE = float(os.environ.get("FAULT_PAUSE", "0.03"))


def slowed(owner, name):
    real = getattr(owner, name)

    def step(*args, **kwargs):
        LOG.write(name + "\\n")
        time.sleep(PAUSE)
        return real(*args, **kwargs)

    setattr(owner, name, step)


for owner, names in [(runner, ["_finish", "atomic_write_text", "publish_docs"]),
                     (refresh, ["_materialise_base", "_assemble", "atomic_write_text", "publish_docs"]),
                     (store, ["atomic_write_text"]),
                     (store.Store, ["publish", "set_ref"]),
                     (executors.Executor, ["discard"])]:
    for name in names:
        slowed(owner, name)

from corpusmill.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
'''


def _corpus(tmp_path: Path, n: int = 3000) -> dict:
    rows = [{"id": f"t{i}", "text": f"{REAL_TEXTS[i % 10]} Ticket {i % 1900}.", "label": str(i % 3)} for i in range(n)]
    write_jsonl(tmp_path / "raw" / "a.jsonl", rows)
    return {"dataset": "pub", "seed": 5, "inputs": [{"path": "raw/a.jsonl", "id_field": "id", "label_field": "label"}],
            "steps": [{"dedup": {"exact": True}}, {"split": {"ratios": {"train": 0.8, "test": 0.2}}}],
            "execution": {"shard_bytes": 65536, "batch_rows": 1000}}


def _files(version) -> dict[str, str]:
    return {str(p.relative_to(version.path)): file_sha256(p) for p in sorted(version.path.rglob("*.parquet"))}


def _check_store(store_path: Path, name: str) -> list[str]:
    """Every version listed is complete (each manifest file present with its checksum and row
    count) and refs.json, when there is one, is valid JSON naming only published versions.
    Returns the ids of the versions."""
    store = Store(store_path)
    ids = []
    for v in store.versions(name):
        m = v.manifest
        for rel, entry in m["files"].items():
            assert file_sha256(v.path / rel) == entry["sha256"], f"{v.id}: {rel}"
            if "rows" in entry:
                assert pq.read_metadata(v.path / rel).num_rows == entry["rows"], rel
        assert sum(m["splits"].values()) == m["counts"]["kept"]
        ids.append(v.id)
    versions = store_path / name / "versions"
    assert sorted(p.name for p in versions.iterdir()) == sorted(ids) if versions.is_dir() else not ids, \
        "a folder in versions/ without a complete manifest"
    refs_file = store_path / name / "refs.json"
    if refs_file.exists():
        refs = json.loads(refs_file.read_text())
        assert set(refs.values()) <= set(ids), refs
    return ids


def _driver(tmp_path: Path) -> tuple[Path, dict]:
    (tmp_path / "drive.py").write_text(DRIVER)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)]),
           "FAULT_LOG": str(tmp_path / "steps.log")}
    return tmp_path / "drive.py", env


def _kill_during(cmd: list[str], env: dict, log: Path, first_step: str, delay: float) -> bool:
    """Run ``cmd``; ``delay`` seconds after it logs ``first_step``, SIGKILL it (and its process
    group). False when it finished before."""
    log.write_text("")
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        end = time.monotonic() + 120
        while first_step not in log.read_text().split() and proc.poll() is None and time.monotonic() < end:
            time.sleep(0.01)
        time.sleep(delay)
        killed = proc.poll() is None
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        killed = False
    finally:
        proc.communicate()
    return killed


def _publish_span(cmd: list[str], env: dict, log: Path, first_step: str) -> float:
    """Seconds from ``first_step`` to the end of a run of ``cmd`` that is not killed."""
    log.write_text("")
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    while first_step not in log.read_text().split() and proc.poll() is None:
        time.sleep(0.01)
    t0 = time.monotonic()
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.decode()
    return time.monotonic() - t0


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_sigkill_during_publish_leaves_no_half_version(tmp_path, seed):
    cfg = _corpus(tmp_path)
    pipeline = write_pipeline(tmp_path / "p.yaml", cfg)
    drive, env = _driver(tmp_path)
    log = tmp_path / "steps.log"

    def cmd(store: str) -> list[str]:
        return [sys.executable, str(drive), "run", str(pipeline), "--store", str(tmp_path / store), "--workers", "1",
                "--quiet"]

    span = _publish_span(cmd("reference"), env, log, "_finish")
    reference = Store(tmp_path / "reference").resolve("pub")
    assert _check_store(tmp_path / "reference", "pub") == [reference.id]
    rng = random.Random(seed)
    kills = attempts = 0
    while kills < 3 and attempts < 8:  # kill, look, kill the rerun again at another point...
        attempts += 1
        killed = _kill_during(cmd("store"), env, log, "_finish", rng.uniform(0, 0.8 * span))
        assert _check_store(tmp_path / "store", "pub") in ([], [reference.id])
        kills += killed
        if not killed:  # this run was faster than the reference and published first: start afresh
            shutil.rmtree(tmp_path / "store")
    assert kills >= 1
    final = subprocess.run(cmd("store"), env=env, capture_output=True, text=True, timeout=120)
    assert final.returncode == 0, final.stderr
    assert final.stdout.strip().splitlines()[-1] == reference.ref
    assert _check_store(tmp_path / "store", "pub") == [reference.id]
    assert json.loads((tmp_path / "store" / "pub" / "refs.json").read_text()) == {"latest": reference.id}
    assert _files(Store(tmp_path / "store").resolve("pub")) == _files(reference)
    assert not any((tmp_path / "store" / "pub" / ".work").glob("*/final")), "work folder left behind"


@pytest.mark.parametrize("seed", [1, 2])
def test_sigkill_during_refresh_leaves_parent_intact_and_rerun_publishes_the_same_version(tmp_path, seed):
    cfg = _corpus(tmp_path, 2000)
    pipeline = write_pipeline(tmp_path / "p.yaml", cfg)
    new = write_jsonl(tmp_path / "new" / "more.jsonl", [
        {"id": f"n{i}", "text": f"{REAL_TEXTS[i % 10]} New ticket {i}.", "label": str(i % 3)} for i in range(400)])
    drive, env = _driver(tmp_path)
    log = tmp_path / "steps.log"
    for store in ("reference", "store"):
        assert main(["run", str(pipeline), "--store", str(tmp_path / store), "--workers", "1", "--quiet"]) == 0
    parent = Store(tmp_path / "store").resolve("pub")

    def cmd(store: str) -> list[str]:
        return [sys.executable, str(drive), "refresh", parent.ref, "--add", str(new), "--store", str(tmp_path / store),
                "--workers", "1", "--quiet"]

    span = _publish_span(cmd("reference"), env, log, "_materialise_base")
    expected = Store(tmp_path / "reference").resolve("pub")
    assert expected.id != parent.id
    rng = random.Random(seed)
    kills = 0
    for _ in range(3):
        kills += _kill_during(cmd("store"), env, log, "_materialise_base", rng.uniform(0, 0.8 * span))
        assert set(_check_store(tmp_path / "store", "pub")) in ({parent.id}, {parent.id, expected.id})
        assert Store(tmp_path / "store").refs("pub")["latest"] in (parent.id, expected.id)
    assert kills >= 1
    final = subprocess.run(cmd("store"), env=env, capture_output=True, text=True, timeout=120)
    assert final.returncode == 0, final.stderr
    assert final.stdout.strip().splitlines()[-1] == expected.ref
    assert sorted(_check_store(tmp_path / "store", "pub")) == sorted([parent.id, expected.id])
    assert _files(Store(tmp_path / "store").resolve("pub")) == _files(expected)
    assert _files(Store(tmp_path / "store").resolve(parent.ref)) == _files(parent)


# ----------------------------------------------------------------------------- a full disk


class FullDisk:
    """The writes of a run (text files, Parquet row groups) recorded; from the first write into a
    file whose path holds ``fail_on``, each raises OSError(ENOSPC) as a full disk does."""

    def __init__(self, monkeypatch, fail_on: str | None = None) -> None:
        import pathlib

        import pyarrow.parquet

        self.fail_on, self.full, self.steps = fail_on, False, []
        for owner, name in [(pathlib.Path, "write_text"), (pathlib.Path, "write_bytes"),
                            (pyarrow.parquet.ParquetWriter, "write_table")]:
            monkeypatch.setattr(owner, name, self._counted(getattr(owner, name)))

    def _counted(self, real):
        def write(obj, *args, **kwargs):
            target = str(getattr(obj, "where", obj))
            self.steps.append(target)
            self.full = self.full or (self.fail_on is not None and self.fail_on in target)
            if self.full:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), target)
            return real(obj, *args, **kwargs)

        return write


def _run(pipeline: Path, store: Path) -> int:
    return main(["run", str(pipeline), "--store", str(store), "--workers", "1", "--quiet"])


#: where the disk fills up: a shard of the map phase, then each step of the publish in turn
FULL_AT = ["/seg0/", "/final/data/", "/final/rejects/", "/final/index/", "manifest.json", "stats.json",
           "report.html", "card.md", "refs.json"]


def test_disk_full_at_any_write_of_the_publish_is_one_line_and_the_rerun_after_freeing_space_publishes(
        tmp_path, monkeypatch, capsys):
    pipeline = write_pipeline(tmp_path / "p.yaml", _corpus(tmp_path, 2000))
    with monkeypatch.context() as m:
        counting = FullDisk(m)
        assert _run(pipeline, tmp_path / "reference") == 0
    reference = Store(tmp_path / "reference").resolve("pub")
    capsys.readouterr()
    for where in FULL_AT:
        assert any(where in w for w in counting.steps), (where, counting.steps)  # each is a write of the run
    for i, where in enumerate(FULL_AT):
        store_path = tmp_path / f"store-{i}"
        with monkeypatch.context() as m:
            FullDisk(m, fail_on=where)
            code = _run(pipeline, store_path)
        out = capsys.readouterr()
        assert code == 2, (where, out.err)
        assert "Traceback" not in out.err and out.out == ""
        lines = out.err.strip().splitlines()
        assert len(lines) == 1, out.err
        assert "no space left" in lines[0] and "(ENOSPC)" in lines[0] and str(store_path) in lines[0], lines[0]
        # nothing half-published: no version, or (the disk filled up at the tag) the whole version
        ids = _check_store(store_path, "pub")
        assert ids == ([reference.id] if where == "refs.json" else []), (where, ids)
        # space freed: the rerun publishes the same version as a run that never met a full disk
        assert _run(pipeline, store_path) == 0
        assert capsys.readouterr().out.strip() == reference.ref
        assert _check_store(store_path, "pub") == [reference.id]
        assert _files(Store(store_path).resolve("pub")) == _files(reference)
        assert Store(store_path).refs("pub") == {"latest": reference.id}
        assert (Store(store_path).resolve("pub").path / "report.html").is_file()
