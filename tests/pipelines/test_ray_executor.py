"""--executor ray: the segments on Ray Data (one map_batches per stage) and the reduce groupings
as Ray Data groupby shuffles give the same version id and the same bytes as the local executor."""

from __future__ import annotations

import importlib.util
import shutil

import pytest

from corpusmill.pipelines import run_pipeline
from tests.conftest import REAL_TEXTS, write_jsonl, write_pipeline
from tests.test_remote_storage import BUCKET, s3  # noqa: F401 - the moto S3 server fixture

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


@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="needs the ray extra: pip install 'corpusmill[ray]'")
def test_ray_run_with_inputs_and_store_on_s3_shares_files_only_through_the_object_store(s3, tmp_path, monkeypatch):  # noqa: F811
    """Inputs and store on S3 (moto), --executor ray: the same version id and bytes as the local
    executor on local paths, and the tasks exchange every work file through the bucket: whenever
    the driver writes a shard's marker, the shard's files are on S3 and the driver's local work
    folder holds none of the shards' rows, rejects or facts. A run killed in the dedup reduce
    resumes from the markers on S3 (its local folder is gone: the next driver may be elsewhere)."""
    import corpusmill.pipelines.ray_executor as rx
    from corpusmill.remote_work import WorkFile
    from corpusmill.store import Store

    rows = []
    for i in range(1200):
        text = f"{REAL_TEXTS[i % 10]} Order {i} shipped to customer {i * 7 % 500} in box {i % 13}."
        if i % 9 == 4:
            text = rows[i - 3]["text"].upper()  # exact copy after normalisation
        elif i % 9 == 7:
            text = rows[i - 5]["text"].replace("shipped to", "sent to")  # near copy
        rows.append({"id": f"r{i}", "text": text, "doc": f"d{i % 41}", "label": ["a", "b", "c"][i % 3]})
    rows.append({"id": "r3", "text": "a reused id"})
    raw = tmp_path / "raw"
    write_jsonl(raw / "a.jsonl", rows[:600])
    write_jsonl(raw / "b.jsonl", rows[600:])
    for f in ("a.jsonl", "b.jsonl"):
        s3.put_file(str(raw / f), f"{BUCKET}/ray/raw/{f}")
    cfg = {"dataset": "orders", "inputs": [{"path": "raw/*.jsonl", "id_field": "id", "label_field": "label"}],
           "execution": {"shard_bytes": 30_000, "batch_rows": 128},
           "steps": [{"clean": {}}, {"dedup": {"exact": True, "near": {"threshold": 0.7}}}, {"split": {"group_by": "doc"}}]}
    local = run_pipeline(write_pipeline(tmp_path / "local.yaml", cfg), store=tmp_path / "local-store", workers=2, quiet=True)

    url = f"s3://{BUCKET}/ray/corpora"
    remote_cfg = {**cfg, "inputs": [{**cfg["inputs"][0], "path": f"s3://{BUCKET}/ray/raw/*.jsonl"}], "store": url}
    driver_work = Store(url).work_dir("orders", local.version.id)
    seen = []
    real_marker = rx.write_remote_marker

    def checked_marker(remote, k, result):
        sid = f"{result['shard']:05d}"
        on_s3 = set(remote.listing(""))
        local_files = sorted(p.relative_to(driver_work).as_posix() for p in driver_work.rglob("*.parquet")
                             if not p.relative_to(driver_work).as_posix().startswith(("decisions/", "final/index/")))
        seen.append((k, sid, local_files, any(f.startswith(f"seg{k}/stats/{sid}/") for f in on_s3),
                     sorted(f for f in on_s3 if f.startswith((f"seg{k}/{sid}.", "final/data/")) and sid in f)))
        return real_marker(remote, k, result)

    monkeypatch.setattr(rx, "write_remote_marker", checked_marker)
    grouped = []
    real = rx.RayGroupBy.__call__
    monkeypatch.setattr(rx.RayGroupBy, "__call__", lambda self, facts, columns, records, keys, reduce: (
        grouped.append({type(f).__name__ for f in facts if f is not None}), real(self, facts, columns, records, keys, reduce))[1])
    real_reduce = rx.run_remote_reduce

    def killed_in_dedup(stage, *args):
        if stage.name == "dedup":
            raise KeyboardInterrupt("killed")
        return real_reduce(stage, *args)

    monkeypatch.setattr(rx, "run_remote_reduce", killed_in_dedup)
    pipeline = write_pipeline(tmp_path / "remote.yaml", remote_cfg)
    with pytest.raises(KeyboardInterrupt):
        run_pipeline(pipeline, workers=2, quiet=True, executor="ray")
    assert {k for k, *_ in seen} == {0, 1} and s3.exists(f"{BUCKET}/ray/corpora/orders/.work/{local.version.id}")
    shutil.rmtree(driver_work)
    monkeypatch.setattr(rx, "run_remote_reduce", real_reduce)
    ray_run = run_pipeline(pipeline, workers=2, quiet=True, executor="ray")

    assert ray_run.version.id == local.version.id
    assert ray_run.manifest["files"] == local.manifest["files"]  # names, sizes, sha256
    assert ray_run.manifest["stages"] == local.manifest["stages"] and ray_run.manifest["counts"]["rejected"]["dedup"]
    prefix = f"{BUCKET}/ray/corpora/orders/versions/{local.version.id}"
    for rel in local.manifest["files"]:
        assert s3.cat_file(f"{prefix}/{rel}") == (local.version.path / rel).read_bytes(), rel
    # the grouping tasks were handed the facts on S3, not files of the driver
    assert grouped == [{WorkFile.__name__}] * 4
    shards = local.manifest["shards"]
    assert shards >= 4 and len(seen) == 4 * shards  # every shard of the 4 segments, once: none run twice
    assert all(local_files == [] for _, _, local_files, _, _ in seen), [s for s in seen if s[2]][:3]
    assert all(stats_on_s3 for _, _, _, stats_on_s3, _ in seen)
    assert sum(bool(files) for k, _, _, _, files in seen if k < 3) > shards  # rows of segments 1-3 on S3
    assert sum(bool(files) for k, _, _, _, files in seen if k == 3) == shards  # every data file of the last
    # published: the work folder is gone from the bucket and from the driver
    assert not s3.exists(f"{BUCKET}/ray/corpora/orders/.work/{local.version.id}") and not driver_work.exists()
