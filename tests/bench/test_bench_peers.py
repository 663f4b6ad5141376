"""bench/bench_peers.py: the scores against planted families, a peer whose environment cannot be
built is skipped with a message while corpusmill still runs, and a tool past its time or memory is
stopped."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from bench import bench_peers
from bench.dedup_corpus import Doc, write_jsonl
from tests.conftest import REAL_TEXTS


def test_precision_and_recall_count_removals_a_family_can_explain():
    # family 0: a base and two copies, family 1: a base and one copy, family 2: a base alone
    docs = [Doc("b0", "", 0, -1.0), Doc("c0", "", 0, 0.05), Doc("c1", "", 0, 0.1),
            Doc("b1", "", 1, -1.0), Doc("c2", "", 1, 0.0), Doc("b2", "", 2, -1.0)]
    # two removals from family 0 (whichever member is kept), one from family 2, which has no copies
    s = bench_peers.score(docs, {"b0", "c0", "b2"})
    assert (s["removed"], s["correct"], s["wrong"], s["planted_copies"]) == (3, 2, 1, 3)
    assert s["precision"] == pytest.approx(2 / 3, abs=1e-4) and s["recall"] == pytest.approx(2 / 3, abs=1e-4)
    # removing a whole family (3 rows) is one more than its two copies
    s = bench_peers.score(docs, {"b0", "c0", "c1", "c2"})
    assert (s["correct"], s["wrong"], s["precision"], s["recall"]) == (3, 1, 0.75, 1.0)
    assert bench_peers.score(docs, set())["precision"] == 1.0


def test_a_peer_that_cannot_be_built_is_skipped_and_corpusmill_still_runs(tmp_path, capsys):
    docs = [Doc(f"b{i}", t, i, -1.0) for i, t in enumerate(REAL_TEXTS)]
    docs += [Doc(f"c{i}", REAL_TEXTS[i], i, 0.0) for i in (1, 4, 7)]  # three exact copies
    data = tmp_path / "docs.jsonl"
    write_jsonl(docs, data)
    pins = tmp_path / "pins"
    pins.mkdir()
    # pip fails at once: no index to look in, and a package that does not exist
    (pins / "text-dedup.txt").write_text("--no-index\nno-such-package-for-corpusmill==0.0.1\n")
    runs = [r for r in bench_peers.RUNS if r.env in (None, "text-dedup", "data-juicer")]
    rows = bench_peers.compare(data, tmp_path / "work", runs, env_dir=tmp_path / "envs", pins_dir=pins)
    err = capsys.readouterr().err
    assert "text-dedup skipped: could not build its environment" in err
    assert "data-juicer skipped: no pins" in err
    assert [r["env"] for r in rows] == [None]
    assert (rows[0]["removed"], rows[0]["precision"], rows[0]["recall"]) == (3, 1.0, 1.0)
    assert rows[0]["seconds"] > 0 and rows[0]["peak_rss_mb"] > 0


def test_a_tool_past_its_time_or_memory_is_stopped(tmp_path):
    m = bench_peers.measure([sys.executable, "-c", "import time; time.sleep(60)"], log=tmp_path / "log.txt",
                            timeout=1)
    assert m["stopped"] == "> 1 s" and m["seconds"] < 10
    m = bench_peers.measure([sys.executable, "-c", "import time; b = bytearray(400 << 20); time.sleep(60)"],
                            log=tmp_path / "log.txt", max_mb=100)
    assert m["stopped"] == "> 100 MB" and m["seconds"] < 10
    m = bench_peers.measure([sys.executable, "-c", "raise SystemExit('no such corpus')"], log=tmp_path / "log.txt",
                            timeout=10)
    assert "no such corpus" in m["failed"]
