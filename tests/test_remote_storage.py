"""Inputs and the dataset store on fsspec URLs: s3:// against a local moto S3 endpoint (no
network), memory:// and file:// for the generic paths. A remote run must give the same version
id and byte-identical data files as the same run on local paths."""

from __future__ import annotations

import gzip
import json
import logging
import socket
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from corpusmill.cli import main
from corpusmill.errors import CorpusmillError, StoreError
from corpusmill.pipelines import run_pipeline
from corpusmill.pipelines.refresh import refresh
from corpusmill.store import Store, store_location
from tests.conftest import REAL_TEXTS, write_jsonl, write_pipeline

BUCKET = "corpora-test"
TOPICS = ["billing", "login", "shipping", "crash"]
STEPS = [{"clean": {}}, {"dedup": {"exact": True, "near": {"threshold": 0.7}}},
         {"split": {"ratios": {"train": 0.6, "validation": 0.2, "test": 0.2}}}]


def _rows(n, offset=0, prefix="r"):
    return [{"id": f"{prefix}{i}", "text": f"{REAL_TEXTS[i % 10]} Case number {i} about {TOPICS[i % 4]} and item {i * 7}.",
             "label": TOPICS[i % 4]} for i in range(offset, offset + n)]


def _pipeline(inputs_path: str) -> dict:
    return {"dataset": "tickets", "seed": 3,
            "inputs": [{"path": inputs_path, "id_field": "id", "label_field": "label"}], "steps": STEPS}


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """A moto S3 server on a free local port, with the environment s3fs reads its endpoint and
    credentials from (the way a user points corpusmill at MinIO or another S3-compatible store)."""
    import s3fs
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    mp = pytest.MonkeyPatch()
    mp.setenv("AWS_ACCESS_KEY_ID", "testing")
    mp.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    mp.setenv("AWS_DEFAULT_REGION", "us-east-1")
    mp.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    mp.setenv("CORPUSMILL_CACHE", str(tmp_path_factory.mktemp("cache")))
    s3fs.S3FileSystem.clear_instance_cache()
    fs = s3fs.S3FileSystem()
    if not fs.exists(BUCKET):  # moto's backend is per process: another module's server made it
        fs.mkdir(BUCKET)
    yield fs
    s3fs.S3FileSystem.clear_instance_cache()
    mp.undo()
    server.stop()


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    """A new, empty local mirror: what another machine reading the same store starts with."""
    monkeypatch.setenv("CORPUSMILL_CACHE", str(tmp_path / "other-cache"))
    return tmp_path / "other-cache"


@pytest.fixture(scope="module")
def published(s3, tmp_path_factory):
    """The same corpus run twice: local inputs into a local store, and inputs on s3 (a gzip
    file and a plain one under a prefix) into a store on s3."""
    local = tmp_path_factory.mktemp("local")
    rows = _rows(300)
    write_jsonl(local / "raw" / "part-a.jsonl", rows[:150])
    write_jsonl(local / "raw" / "part-b.jsonl.gz", rows[150:], compress=True)
    for f in ("part-a.jsonl", "part-b.jsonl.gz"):
        s3.put_file(str(local / "raw" / f), f"{BUCKET}/raw/{f}")
    local_run = run_pipeline(write_pipeline(local / "p.yaml", _pipeline("raw/part-*")), store=local / "store", workers=1)
    remote_dir = tmp_path_factory.mktemp("remote")
    remote_cfg = {**_pipeline(f"s3://{BUCKET}/raw/part-*"), "store": f"s3://{BUCKET}/corpora"}
    remote_run = run_pipeline(write_pipeline(remote_dir / "p.yaml", remote_cfg), workers=1)
    return local_run, remote_run


def _cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# ----------------------------------------------------------------------------- run and publish


def test_s3_run_publishes_the_same_version_and_bytes_as_local(s3, published):
    local_run, remote_run = published
    assert remote_run.created
    assert remote_run.version.id == local_run.version.id
    lm, rm = local_run.manifest, remote_run.manifest
    assert rm["files"] == lm["files"]  # same names, sizes and sha256 for data, rejects and index
    assert rm["counts"] == lm["counts"] and rm["splits"] == lm["splits"]
    assert rm["inputs"][0]["path"] == f"s3://{BUCKET}/raw/part-*"
    assert [f["name"] for f in rm["inputs"][0]["files"]] == ["part-a.jsonl", "part-b.jsonl.gz"]
    prefix = f"{BUCKET}/corpora/tickets/versions/{remote_run.version.id}"
    remote_files = sorted(p[len(prefix) + 1:] for p in s3.find(prefix))
    assert "manifest.json" in remote_files and "report.html" in remote_files
    data = [rel for rel in lm["files"] if rel.startswith("data/")]
    assert len(data) >= 3  # train, validation and test
    for rel in lm["files"]:  # the objects on s3 are byte-identical to the local run's files
        assert s3.cat_file(f"{prefix}/{rel}") == (local_run.version.path / rel).read_bytes(), rel
    assert json.loads(s3.cat_file(f"{BUCKET}/corpora/tickets/refs.json")) == {"latest": remote_run.version.id}
    # the work folder lived in the local mirror and is gone; the run did not write in the pipeline's folder
    store = Store(f"s3://{BUCKET}/corpora")
    assert not (store.root / "tickets" / ".work" / remote_run.version.id).exists()


def test_rerun_on_s3_finds_the_published_version(s3, published, tmp_path, fresh_cache):
    _, remote_run = published
    cfg = {**_pipeline(f"s3://{BUCKET}/raw/part-*"), "store": f"s3://{BUCKET}/corpora"}
    again = run_pipeline(write_pipeline(tmp_path / "p.yaml", cfg), workers=1, tags=("v1",))
    assert not again.created and again.version.id == remote_run.version.id
    # read from a mirror that had nothing: the files were downloaded and checked
    assert again.version.path.is_relative_to(fresh_cache)
    assert again.version.read_split("train").num_rows == remote_run.manifest["splits"]["train"]
    assert Store(f"s3://{BUCKET}/corpora").refs("tickets")["v1"] == remote_run.version.id


def test_datasets_commands_and_resolve_against_s3(s3, published, capsys, tmp_path, fresh_cache, monkeypatch):
    _, remote_run = published
    url = f"s3://{BUCKET}/corpora"
    vid = remote_run.version.id
    code, out, _ = _cli(capsys, "datasets", "list", "--store", url, "--json")
    assert code == 0
    rows = json.loads(out)
    assert [(r["dataset"], r["version"]) for r in rows] == [("tickets", vid)]
    monkeypatch.setenv("CORPUSMILL_STORE", url)  # the environment variable works as --store does
    code, out, _ = _cli(capsys, "datasets", "show", f"tickets@{vid[:6]}", "--json")
    assert code == 0 and json.loads(out)["version"] == vid
    code, out, _ = _cli(capsys, "datasets", "export", "tickets", "--format", "jsonl", "--out", str(tmp_path / "exp"))
    assert code == 0
    exported = sum(1 for f in (tmp_path / "exp").glob("*.jsonl") for _ in f.open())
    assert exported == remote_run.manifest["counts"]["kept"]
    code, out, _ = _cli(capsys, "audit", "tickets", "--report", str(tmp_path / "audit.json"), "--fix", "tickets@fixed")
    assert code == 0 and (tmp_path / "audit.json").is_file()
    fixed = json.loads((tmp_path / "audit.json").read_text())["fix"]["ref"]  # a derived version, published on s3
    fixed_id = fixed.split("@")[1]
    assert s3.exists(f"{BUCKET}/corpora/tickets/versions/{fixed_id}/manifest.json")
    assert Store(url).refs("tickets")["fixed"] == fixed_id
    assert Store(url).resolve("tickets@fixed").manifest["parent"] == remote_run.version.ref
    Store(url).set_ref("tickets", "latest", vid)  # the other tests expect the first version as latest

    store = Store(url)
    v = store.resolve("tickets@latest")
    assert v.ref == remote_run.version.ref and (v.path / "data").is_dir()
    # a run.json records the store a version came from: the URL, and the mirror's path opens it too
    assert store_location(v) == url
    assert Store(store.root).location == url and Store(store.root).resolve("tickets").id == vid


def test_killed_publish_is_not_a_version(s3, published, tmp_path, capsys):
    """Files uploaded, manifest never written: not listed, not resolvable, not 'already published'."""
    _, remote_run = published
    half = f"{BUCKET}/corpora/tickets/versions/0123456789abcdef"
    s3.pipe_file(f"{half}/data/train-00000.parquet", b"PAR1 half an upload")
    s3.pipe_file(f"{half}/stats.json", b"{}")
    store = Store(f"s3://{BUCKET}/corpora")
    listed = [v.id for v in store.versions("tickets")]
    assert remote_run.version.id in listed and "0123456789abcdef" not in listed
    assert not store.has_version("tickets", "0123456789abcdef")
    with pytest.raises(StoreError, match="no version or tag '0123456789abcdef'"):
        store.resolve("tickets@0123456789abcdef")
    code, out, _ = _cli(capsys, "datasets", "list", "--store", f"s3://{BUCKET}/corpora", "--json")
    assert sorted(r["version"] for r in json.loads(out)) == sorted(listed)
    s3.rm(half, recursive=True)


def test_a_changed_remote_file_fails_the_checksum(s3, published, fresh_cache):
    _, remote_run = published
    vid = remote_run.version.id
    rel = next(r for r in remote_run.manifest["files"] if r.startswith("data/"))
    key = f"{BUCKET}/corpora/tickets/versions/{vid}/{rel}"
    original = s3.cat_file(key)
    s3.pipe_file(key, original[:-8] + b"XXXXXXXX")
    try:
        with pytest.raises(StoreError, match="sha256") as err:
            Store(f"s3://{BUCKET}/corpora").resolve(f"tickets@{vid}")
        assert rel in str(err.value)
        assert list(fresh_cache.glob(f"stores/*/tickets/versions/{vid}/{rel}")) == []  # never put in the mirror
        assert list(fresh_cache.glob(f"stores/*/tickets/.fetched/{vid}")) == []
    finally:
        s3.pipe_file(key, original)
    assert Store(f"s3://{BUCKET}/corpora").resolve(f"tickets@{vid}").read_split("test").num_rows > 0


def test_refresh_on_an_s3_store(s3, published, tmp_path, fresh_cache, monkeypatch, capsys):
    """The parent is mirrored from s3, new rows come from s3, the new version is uploaded: files
    it shares with the parent are copied on the remote side."""
    _, remote_run = published
    new = _rows(30, offset=1000, prefix="n")
    new.append({"id": "r5", "text": "A different text that reuses an old id.", "label": "login"})
    write_jsonl(tmp_path / "new.jsonl", new)
    s3.put_file(str(tmp_path / "new.jsonl"), f"{BUCKET}/incoming/new.jsonl")
    store = Store(f"s3://{BUCKET}/corpora")
    copied = []
    real_copy = store.remote.fs.copy
    monkeypatch.setattr(store.remote.fs, "copy", lambda src, dst, **kw: (copied.append(dst), real_copy(src, dst, **kw)))
    result = refresh(store, "tickets", [f"s3://{BUCKET}/incoming/new.jsonl"])
    monkeypatch.undo()
    monkeypatch.setenv("CORPUSMILL_CACHE", str(fresh_cache))
    v = result.version
    # the parent's data files (and the index parts it inherits) were copied inside S3, not uploaded again
    parent_data = {rel for rel in remote_run.manifest["files"] if rel.startswith("data/")}
    assert parent_data <= {c.split(f"/versions/{v.id}/", 1)[1] for c in copied}
    assert result.created and v.manifest["parent"] == remote_run.version.ref
    assert v.manifest["counts"]["kept"] == remote_run.manifest["counts"]["kept"] + 30
    assert v.manifest["refresh"]["added"]["rejected"]["unseen_ids"] == {"duplicate_id": 1}
    assert Store(f"s3://{BUCKET}/corpora").refs("tickets")["latest"] == v.id
    # a reader elsewhere (a fresh mirror) sees the new version with every file intact
    monkeypatch.setenv("CORPUSMILL_CACHE", str(tmp_path / "elsewhere"))
    got = Store(f"s3://{BUCKET}/corpora").resolve("tickets")
    assert got.path.is_relative_to(tmp_path / "elsewhere")
    assert got.id == v.id
    assert sum(got.read_split(s).num_rows for s in got.splits()) == v.manifest["counts"]["kept"]
    for rel in v.manifest["files"]:
        assert s3.cat_file(f"{BUCKET}/corpora/tickets/versions/{v.id}/{rel}") == (v.path / rel).read_bytes()
    capsys.readouterr()
    code, out, _ = _cli(capsys, "datasets", "diff", remote_run.version.ref, v.ref, "--store", f"s3://{BUCKET}/corpora", "--json")
    assert code == 0 and json.loads(out)["refresh"]["refreshes"] == 1  # the lineage, followed through the mirror
    # refreshing again with the same file publishes nothing new
    again = refresh(store, remote_run.version.ref, [f"s3://{BUCKET}/incoming/new.jsonl"])
    assert not again.created and again.version.id == v.id


# ----------------------------------------------------------------------------- errors a user can fix


def test_missing_remote_inputs_are_a_clear_error(s3, tmp_path, capsys):
    cfg = {**_pipeline(f"s3://{BUCKET}/nothing-here/*.jsonl"), "store": str(tmp_path / "store")}
    p = write_pipeline(tmp_path / "p.yaml", cfg)
    code, out, err = _cli(capsys, "run", str(p))
    assert code == 2
    assert f"no file matches s3://{BUCKET}/nothing-here/*.jsonl" in err and "Traceback" not in err
    cfg["inputs"][0]["path"] = "s3://no-such-bucket-corpusmill/raw/data.jsonl"
    write_pipeline(tmp_path / "p.yaml", cfg)
    code, out, err = _cli(capsys, "run", str(p))
    assert code == 2 and "s3://no-such-bucket-corpusmill/raw/data.jsonl" in err and "Traceback" not in err


def test_unreachable_store_is_a_clear_error(s3, capsys, monkeypatch):
    import s3fs

    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens on the discard port
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    s3fs.S3FileSystem.clear_instance_cache()
    try:
        code, out, err = _cli(capsys, "datasets", "list", "--store", f"s3://{BUCKET}/corpora")
    finally:
        s3fs.S3FileSystem.clear_instance_cache()
    assert code == 2 and f"s3://{BUCKET}/corpora" in err and "Traceback" not in err


def test_a_protocol_without_its_package_names_the_extra(tmp_path, capsys):
    import importlib.util

    if importlib.util.find_spec("gcsfs") is not None:
        pytest.skip("gcsfs is installed here; the message for a missing package cannot be shown")
    code, out, err = _cli(capsys, "datasets", "list", "--store", "gs://bucket/corpora")
    assert code == 2 and "pip install 'corpusmill[gcs]'" in err and "gs://bucket/corpora" in err


# ----------------------------------------------------------------------------- generic fsspec paths


def test_memory_and_file_urls_give_the_local_version(tmp_path, monkeypatch):
    """memory:// goes through the generic fsspec code (inputs and store); file:// is a local path."""
    import fsspec

    monkeypatch.setenv("CORPUSMILL_CACHE", str(tmp_path / "cache"))
    rows = _rows(120)
    write_jsonl(tmp_path / "raw" / "a.jsonl", rows[:70])
    write_jsonl(tmp_path / "raw" / "sub" / "b.jsonl", rows[70:])
    mem = fsspec.filesystem("memory")
    mem.put(str(tmp_path / "raw"), "/corpusmill-test/raw", recursive=True)
    try:
        local = run_pipeline(write_pipeline(tmp_path / "p.yaml", _pipeline("raw")), store=tmp_path / "store", workers=1)
        via_file = run_pipeline(write_pipeline(tmp_path / "f.yaml", _pipeline(f"file://{tmp_path}/raw")),
                                store=f"file://{tmp_path}/store", workers=1)
        assert via_file.version.id == local.version.id and not via_file.created
        remote = run_pipeline(write_pipeline(tmp_path / "m.yaml", _pipeline("memory://corpusmill-test/raw")),
                              store="memory://corpusmill-test/store", workers=1)
        assert remote.created and remote.version.id == local.version.id
        assert [f["name"] for f in remote.manifest["inputs"][0]["files"]] == ["a.jsonl", "sub/b.jsonl"]
        for rel in local.manifest["files"]:
            got = mem.cat_file(f"/corpusmill-test/store/tickets/versions/{local.version.id}/{rel}")
            assert got == (local.version.path / rel).read_bytes(), rel
        assert Store("memory://corpusmill-test/store").resolve("tickets").id == local.version.id
    finally:
        mem.rm("/corpusmill-test", recursive=True)


def test_store_url_in_yaml_and_relative_local_store(tmp_path):
    from corpusmill.pipelines.config import store_root

    assert store_root("s3://bucket/corpora/", None, None) == "s3://bucket/corpora"
    assert store_root(f"file://{tmp_path}/st", None, None) == tmp_path / "st"
    assert store_root(None, None, None) == Path("corpusmill-store").resolve()


def test_remote_parquet_input(s3, tmp_path):
    import pyarrow as pa

    table = pa.table({"id": [f"p{i}" for i in range(20)], "text": [f"{REAL_TEXTS[i % 10]} ({i})" for i in range(20)]})
    pq.write_table(table, tmp_path / "rows.parquet")
    s3.put_file(str(tmp_path / "rows.parquet"), f"{BUCKET}/pq/rows.parquet")
    cfg = {"dataset": "pq", "inputs": [{"path": f"s3://{BUCKET}/pq/rows.parquet", "id_field": "id"}]}
    r = run_pipeline(write_pipeline(tmp_path / "p.yaml", cfg), store=tmp_path / "store", workers=1)
    assert r.manifest["counts"]["kept"] == 20
    assert sorted(r.version.read_split("all").column("id").to_pylist()) == sorted(table.column("id").to_pylist())


@pytest.mark.parametrize("pattern", ["raw/**/*.jsonl", "raw/*.jsonl", "raw/*/*.jsonl", "raw/**", "raw", "raw/sub/b.jsonl",
                                     "raw/.hidden/*.jsonl"])
def test_remote_globs_name_files_as_local_globs_do(tmp_path, pattern):
    """Names relative to the pattern's root are part of the version id: a remote pattern must
    find the same files under the same names as the local one (hidden files included)."""
    import fsspec

    from corpusmill.dataprep.readers import expand_input
    from corpusmill.fs import open_input
    from corpusmill.pipelines.config import InputSpec

    for rel in ["a.jsonl", "sub/b.jsonl", "sub/deep/c.jsonl", ".hidden/d.jsonl", "sub/.e.jsonl", "notes.txt"]:
        write_jsonl(tmp_path / "raw" / rel, [{"text": rel}])
    mem = fsspec.filesystem("memory")
    mem.put(str(tmp_path / "raw"), "/globs/raw", recursive=True)
    try:
        local = expand_input(InputSpec(path=pattern), tmp_path)
        remote = expand_input(InputSpec(path=f"memory://globs/{pattern}"), tmp_path)
        assert local and [name for _, name in remote] == [name for _, name in local]
        for (url, _), (path, _) in zip(remote, local):  # each URL opens the file it names
            with open_input(url) as fh:
                assert fh.read() == Path(path).read_bytes()
    finally:
        mem.rm("/globs", recursive=True)
