"""--executor ray: the segments on Ray Data (one map_batches per stage) and the reduce groupings
as Ray Data groupby shuffles give the same version id and the same bytes as the local executor."""

from __future__ import annotations

import importlib.util

import pytest

from corpusmill.pipelines import run_pipeline
from tests.conftest import REAL_TEXTS, write_jsonl, write_pipeline

pytestmark = pytest.mark.slow  # starting a local Ray instance takes longer than the default suite allows


@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="needs the ray extra: pip install 'corpusmill[ray]'")
def test_ray_and_local_executors_publish_identical_versions(tmp_path, monkeypatch):
    import corpusmill.pipelines.ray_executor as rx

    rows = []
    for i in range(3000):
        text = f"{REAL_TEXTS[i % 10]} {REAL_TEXTS[(i // 10) % 10]} Ticket {i} was opened by customer {i * 7 % 1000}."
        if i % 9 == 4:
            text = rows[i - 3]["text"].upper()  # exact copy after normalisation
        elif i % 9 == 7:
            text = rows[i - 5]["text"].replace("was opened", "was filed")  # near copy
        elif i % 97 == 5:
            text = "<p>  </p>"  # empty once the markup is stripped: clean rejects it
        rows.append({"id": f"r{i}", "text": text, "doc": f"d{i % 97}"})
    rows += [{"id": "bad"}, {"id": "r5", "text": "a reused id"}]
    write_jsonl(tmp_path / "a.jsonl", rows[:1500])
    write_jsonl(tmp_path / "b.jsonl", rows[1500:])
    with (tmp_path / "a.jsonl").open("a") as f:
        f.write('{"id": "broken", "text": "no closing\n')  # a malformed line: a read reject
    p = write_pipeline(tmp_path / "p.yaml", {
        "dataset": "t", "inputs": [{"path": "*.jsonl", "id_field": "id"}],
        "execution": {"shard_bytes": 60_000, "batch_rows": 256},
        # memory_mb this small cuts every band into several groups (local: parts on disk)
        "steps": [{"clean": {}}, {"dedup": {"exact": True, "near": {"memory_mb": 0.2}}}, {"split": {"group_by": "doc"}}]})
    local = run_pipeline(p, store=tmp_path / "local", workers=2, quiet=True)
    grouped = []
    real = rx.RayGroupBy.__call__
    monkeypatch.setattr(rx.RayGroupBy, "__call__", lambda self, facts, columns, records, keys, reduce: (
        grouped.append(records.func.__name__), real(self, facts, columns, records, keys, reduce))[1])
    ray_run = run_pipeline(p, store=tmp_path / "ray", workers=2, quiet=True, executor="ray")
    assert grouped == ["id_records", "exact_records", "dedup_band_records", "split_band_records"]
    assert ray_run.version.id == local.version.id
    files = lambda m: {k: e["sha256"] for k, e in m["files"].items()}  # noqa: E731
    assert files(ray_run.manifest) == files(local.manifest)
    assert ray_run.manifest["stages"] == local.manifest["stages"]  # counts and counters, stage by stage
    counts = local.manifest["counts"]
    assert local.manifest["shards"] > 4
    assert counts["rejected"]["read"] == {"malformed_json": 1, "missing_text": 1}
    assert counts["rejected"]["unique_ids"] == {"duplicate_id": 1}
    assert counts["rejected"]["clean"]["empty_after_clean"] > 0
    assert counts["rejected"]["dedup"]["exact_duplicate"] > 300 and counts["rejected"]["dedup"]["near_duplicate"] > 250
