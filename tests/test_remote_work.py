"""A run's work folder on an object store (corpusmill.remote_work), against a local moto S3
server: what a Ray task fetches into its scratch folder and uploads back, and what the driver
opens lazily. (The whole Ray run on S3 is in tests/pipelines/test_ray_executor.py, slow.)"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from corpusmill.pipelines.ray_executor import remote_env, remote_markers, write_remote_marker
from corpusmill.remote_work import RemoteWork, WorkFile
from tests.test_remote_storage import BUCKET, s3  # noqa: F401 - the moto S3 server fixture

ROWS = pa.table({"id": ["t1", "t2", "t3"], "text": ["The disk is full.", "Reset my password.", "Refund twice."]})


@pytest.fixture
def work(s3, tmp_path, request):  # noqa: F811
    url = f"s3://{BUCKET}/corpora/tickets/.work/{request.node.name[:40]}"
    w = RemoteWork(url, tmp_path / "driver-work")
    yield w
    w.remove()


def _put_parquet(s3, work, rel, table):  # noqa: F811
    buf = pa.BufferOutputStream()
    pq.write_table(table, buf)
    s3.pipe_file(work.path(rel), buf.getvalue().to_pybytes())


def test_scratch_fetches_reads_and_uploads_only_what_the_task_wrote(s3, work, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.setenv("CORPUSMILL_CACHE", str(tmp_path / "node-cache"))  # the node's own cache, not the driver's
    _put_parquet(s3, work, "seg0/00001.parquet", ROWS)
    with work.shard_scratch(["seg0/00001.parquet", "decisions/dedup/shard-00001.parquet"]) as folder:
        assert folder.is_relative_to(tmp_path / "node-cache" / "scratch")
        assert pq.read_table(folder / "seg0/00001.parquet").equals(ROWS)
        assert not (folder / "decisions/dedup/shard-00001.parquet").exists()  # not on the remote: nothing fetched
        # the task changes its fetched input (it never does; here it shows that inputs are not uploaded back)
        pq.write_table(ROWS.slice(0, 1), folder / "seg0/00001.parquet")
        (folder / "final/rejects").mkdir(parents=True)
        pq.write_table(ROWS.slice(2), folder / "final/rejects/clean-00001.parquet")
        (folder / "seg1/stats/00001").mkdir(parents=True)
        (folder / "seg1/stats/00001/001.json").write_text('{"clean": {"in": 3}}')
    assert not folder.exists()
    assert work.listing("") == ["final/rejects/clean-00001.parquet", "seg0/00001.parquet", "seg1/stats/00001/001.json"]
    assert pq.read_table(s3.open(work.path("seg0/00001.parquet"))).num_rows == 3  # the input as it was
    assert pq.read_table(s3.open(work.path("final/rejects/clean-00001.parquet"))).column("id").to_pylist() == ["t3"]
    assert not (tmp_path / "driver-work").exists()  # the task never touched the driver's folder


def test_a_failed_task_uploads_nothing(s3, work, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.setenv("CORPUSMILL_CACHE", str(tmp_path / "node-cache"))
    with pytest.raises(RuntimeError, match="stage crashed"):
        with work.shard_scratch([]) as folder:
            (folder / "seg0").mkdir()
            pq.write_table(ROWS, folder / "seg0/00002.parquet")
            raise RuntimeError("stage crashed")
    assert not folder.exists()
    assert work.listing("") == []


def test_work_file_is_fetched_when_first_opened(s3, work):  # noqa: F811
    _put_parquet(s3, work, "facts/dedup/00000.parquet", ROWS)
    f = WorkFile(work, "facts/dedup/00000.parquet")
    local = work.local / "facts/dedup/00000.parquet"
    assert not local.exists() and f.url == f"{work.url}/facts/dedup/00000.parquet" and f.name == "00000.parquet"
    assert pq.read_metadata(f).num_rows == 3  # pyarrow opens it through os.fspath
    assert local.is_file()
    assert pq.read_table(f, columns=["id"]).column("id").to_pylist() == ["t1", "t2", "t3"]
    with pytest.raises(FileNotFoundError, match="00009.parquet"):
        pq.read_table(WorkFile(work, "facts/dedup/00009.parquet"))


def test_markers_folders_and_server_side_copy(s3, work):  # noqa: F811
    _put_parquet(s3, work, "seg1/00000.parquet", ROWS)
    work.write_text("seg1/stats/00000/000.json", "{}")  # not a marker: a statistics file one level down
    write_remote_marker(work, 1, {"shard": 0, "stages": {"dedup": {"in": 3}}, "splits": {}})
    write_remote_marker(work, 1, {"shard": 4, "stages": {}, "splits": {}})
    assert remote_markers(work, 1) == {0: {"shard": 0, "stages": {"dedup": {"in": 3}}, "splits": {}},
                                       4: {"shard": 4, "stages": {}, "splits": {}}}
    assert remote_markers(work, 2) == {}
    work.copy("seg1/00000.parquet", "final/data/all-00000.parquet")
    assert work.num_rows("final/data/all-00000.parquet") == 3
    # the driver's copy of final/: a local file of the remote size is kept, a missing one fetched
    (work.local / "final/index").mkdir(parents=True)
    (work.local / "final/index/meta.json").write_text('{"kind": "dedup"}')
    work.push("final/index/meta.json")
    (work.local / "final/index/meta.json").write_text('{"kind": "dedup"}'.upper())  # same size: kept
    assert work.fetch_tree("final", keep_present=True) == ["final/data/all-00000.parquet", "final/index/meta.json"]
    assert (work.local / "final/index/meta.json").read_text() == '{"KIND": "DEDUP"}'
    assert pq.read_table(work.local / "final/data/all-00000.parquet").equals(ROWS)
    work.remove("seg1")
    assert work.listing("seg1") == [] and work.exists("final/data/all-00000.parquet")
    work.remove()
    assert work.listing("") == []


def test_ray_workers_get_the_object_store_settings_but_not_the_cache(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://minio:9000")
    monkeypatch.setenv("FSSPEC_S3_ANON", "true")
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", "/keys/gcs.json")
    monkeypatch.setenv("CORPUSMILL_CACHE", "/driver/cache")
    monkeypatch.setenv("HOME_GROWN_SECRET", "x")
    env = remote_env()
    assert env["AWS_ENDPOINT_URL"] == "http://minio:9000" and env["FSSPEC_S3_ANON"] == "true"
    assert env["GOOGLE_APPLICATION_CREDENTIALS"] == "/keys/gcs.json"
    assert "CORPUSMILL_CACHE" not in env and "HOME_GROWN_SECRET" not in env
