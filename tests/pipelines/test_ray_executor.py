"""--executor ray: the same stages as Ray tasks give the same version id and the same bytes."""

from __future__ import annotations

import importlib.util

import pytest

from corpusmill.pipelines import run_pipeline
from tests.conftest import REAL_TEXTS, write_jsonl, write_pipeline

pytestmark = pytest.mark.slow  # starting a local Ray instance takes longer than the default suite allows


@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="needs the ray extra: pip install 'corpusmill[ray]'")
def test_ray_and_local_executors_publish_identical_versions(tmp_path):
    rows = [{"id": f"r{i}", "text": f"{REAL_TEXTS[i % 10]} Case {i % 700} about item {i % 350}.", "doc": f"d{i % 97}"}
            for i in range(3000)]
    rows += [{"id": "bad"}, {"id": f"r{5}", "text": "a reused id"}]
    write_jsonl(tmp_path / "a.jsonl", rows[:1500])
    write_jsonl(tmp_path / "b.jsonl", rows[1500:])
    p = write_pipeline(tmp_path / "p.yaml", {
        "dataset": "t", "inputs": [{"path": "*.jsonl", "id_field": "id"}],
        "execution": {"shard_bytes": 40_000, "batch_rows": 256},
        "steps": [{"clean": {}}, {"dedup": {"exact": True, "near": True}}, {"split": {"group_by": "doc"}}]})
    local = run_pipeline(p, store=tmp_path / "local", workers=2, quiet=True)
    ray_run = run_pipeline(p, store=tmp_path / "ray", workers=2, quiet=True, executor="ray")
    assert len(local.manifest["stages"]) == len(ray_run.manifest["stages"]) and local.manifest["shards"] > 4
    assert ray_run.version.id == local.version.id
    files = lambda m: {k: e["sha256"] for k, e in m["files"].items()}  # noqa: E731
    assert files(ray_run.manifest) == files(local.manifest)
    assert ray_run.manifest["counts"] == local.manifest["counts"]
    assert sum(local.manifest["counts"]["rejected"].get("dedup", {}).values()) > 0
