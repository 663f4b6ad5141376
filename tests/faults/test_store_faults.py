"""A store damaged behind corpusmill's back, and store paths that cannot be used.

Each test asserts what the user sees (the message and the exit code), and that nothing partial
was read or written: a damaged version is refused whole, never half-read."""

from __future__ import annotations

import errno
import io
import json
import os
import shutil
from pathlib import Path

import pytest

from corpusmill.cli import main
from corpusmill.errors import StoreError
from corpusmill.store import Store, verify_store
from tests.conftest import REAL_TEXTS, write_jsonl, write_pipeline

TOPICS = ["billing", "login", "shipping", "crash"]


def _cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _rows(n, prefix="r"):
    return [{"id": f"{prefix}{i}", "text": f"{REAL_TEXTS[i % 10]} Case {i} about {TOPICS[i % 4]}, item {i * 7}.",
             "label": TOPICS[i % 4]} for i in range(n)]


PIPELINE = {"dataset": "tickets", "seed": 3, "execution": {"shard_bytes": 8192},
            "inputs": [{"path": "raw/*.jsonl", "id_field": "id", "label_field": "label"}],
            "steps": [{"dedup": {"exact": True}},
                      {"split": {"ratios": {"train": 0.6, "validation": 0.2, "test": 0.2}}}]}


@pytest.fixture
def built(tmp_path, capsys):
    """A store holding one version whose every split has several data files (small shards):
    (store folder, reference, version folder, pipeline file)."""
    write_jsonl(tmp_path / "raw" / "a.jsonl", _rows(200, "a"))
    write_jsonl(tmp_path / "raw" / "b.jsonl", _rows(200, "b"))
    p = write_pipeline(tmp_path / "p.yaml", PIPELINE)
    store = tmp_path / "store"
    code, out, err = _cli(capsys, "run", p, "--store", store, "--workers", "1", "--quiet")
    assert code == 0, err
    ref = out.strip().splitlines()[-1]
    version = Store(store).resolve(ref)
    return store, ref, version.path, p


def _data(folder: Path, split: str) -> list[Path]:
    return sorted((folder / "data").glob(f"{split}-*.parquet"))


def test_a_deleted_data_file_is_refused_by_every_reader_never_half_exported(built, capsys, tmp_path):
    store, ref, folder, _ = built
    manifest = json.loads((folder / "manifest.json").read_text())
    gone = _data(folder, "test")[1]
    entry = manifest["files"][f"data/{gone.name}"]
    gone.unlink()

    code, out, err = _cli(capsys, "datasets", "export", ref, "--format", "jsonl", "--out", tmp_path / "out",
                          "--store", store)
    assert code == 2
    assert (f"data/{gone.name}: missing (manifest: {entry['rows']:,} rows, {entry['bytes']:,} bytes)" in err)
    assert "datasets verify" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())  # no partial export

    for argv in (("datasets", "show", ref), ("audit", ref, "--report", tmp_path / "audit")):
        code, out, err = _cli(capsys, *argv, "--store", store)
        if argv[1] == "show":  # the summary needs only the manifest; --verify reads the files
            assert code == 0
            code, out, err = _cli(capsys, *argv, "--verify", "--store", store)
        assert code == 2, argv
        assert f"data/{gone.name}: missing" in err
    # the API refuses too: read_split, iter_batches, data_files
    v = Store(store).resolve(ref)
    with pytest.raises(StoreError, match="missing"):
        v.read_split("test")
    with pytest.raises(StoreError, match="missing"):
        list(v.iter_batches("test"))
    assert v.read_split("train").num_rows == manifest["splits"]["train"]  # the intact splits still read

    code, out, _ = _cli(capsys, "datasets", "verify", ref, "--store", store)
    assert code == 1
    assert f"error: {ref}: data/{gone.name}: missing" in out


def test_truncated_and_replaced_files_are_named_with_what_differs(built, capsys):
    store, ref, folder, _ = built
    first, second = _data(folder, "train")[:2]
    size = first.stat().st_size
    with open(first, "r+b") as f:
        f.truncate(size // 2)
    v = Store(store).resolve(ref)
    with pytest.raises(StoreError, match=rf"data/{first.name}: {size // 2:,} bytes, the manifest says {size:,} "
                                         r"\(truncated"):
        v.read_split("train")

    shutil.copyfile(second, first)  # a well-formed Parquet file, but not the published one
    with pytest.raises(StoreError, match=rf"data/{first.name}: "):
        Store(store).resolve(ref).read_split("train")


def test_flipped_bytes_are_found_by_sha256_when_asked(built, capsys):
    store, ref, folder, _ = built
    f = _data(folder, "validation")[0]
    data = bytearray(f.read_bytes())
    data[len(data) // 3] ^= 0xFF  # same size, same footer: only the checksum sees it
    f.write_bytes(bytes(data))

    check = verify_store(Store(store), ref, checksums=False)
    assert check.ok  # sizes and row counts agree
    with pytest.raises(StoreError, match=rf"data/{f.name}: sha256 [0-9a-f]{{12}}\.\.\., the manifest says"):
        Store(store).resolve(ref, verify=True).read_split("validation")
    code, out, err = _cli(capsys, "datasets", "show", ref, "--verify", "--store", store)
    assert code == 2 and f"data/{f.name}: sha256" in err and "Traceback" not in err
    code, out, _ = _cli(capsys, "datasets", "verify", "--all", "--store", store)
    assert code == 1 and f"data/{f.name}: sha256" in out


@pytest.mark.parametrize("damage", ["truncated", "empty", "not_json", "a_list"])
def test_a_corrupt_manifest_makes_that_version_corrupt_not_the_listing(built, capsys, tmp_path, damage):
    store, ref, folder, pipeline = built
    write_jsonl(tmp_path / "raw" / "c.jsonl", _rows(20, "c"))  # a second, intact version
    code, out, _ = _cli(capsys, "run", pipeline, "--store", store, "--workers", "1", "--quiet")
    good = out.strip().splitlines()[-1]
    mf = folder / "manifest.json"
    text = mf.read_text()
    mf.write_text({"truncated": text[: len(text) // 2], "empty": "", "not_json": "<html>",
                   "a_list": "[1, 2]"}[damage])

    code, out, err = _cli(capsys, "datasets", "list", "--store", store, "--json")
    assert code == 0
    rows = {f"{r['dataset']}@{r['version']}": r for r in json.loads(out)}
    assert rows[ref]["status"] == "corrupt" and "manifest.json" in rows[ref]["problem"]
    assert rows[good]["status"] == "ok" and rows[good]["kept"] > 0
    code, out, err = _cli(capsys, "datasets", "list", "--store", store)
    assert code == 0 and "corrupt" in out and good in out and "Traceback" not in err

    for argv in (("datasets", "show", ref), ("datasets", "export", ref, "--out", tmp_path / "x"),
                 ("datasets", "diff", ref, good)):
        code, out, err = _cli(capsys, *argv, "--store", store)
        assert code == 2, argv
        assert f"{ref}: manifest.json is" in err or f"{ref}: manifest.json lacks" in err
        assert "Traceback" not in err
    code, out, _ = _cli(capsys, "datasets", "verify", "--all", "--store", store, "--json")
    report = json.loads(out)
    assert code == 1 and not report["ok"]
    assert [e["where"] for e in report["errors"]] == [ref]


def test_verify_reports_refs_unlisted_files_and_leftovers(built, capsys):
    store, ref, folder, _ = built
    code, out, _ = _cli(capsys, "datasets", "verify", "--all", "--store", store)
    assert code == 0 and "ok: every manifest, file and tag is as published" in out
    ds = Path(store) / "tickets"

    refs = json.loads((ds / "refs.json").read_text())
    refs["old"] = "0123456789abcdef"
    (ds / "refs.json").write_text(json.dumps(refs))
    shutil.copyfile(_data(folder, "train")[0], folder / "data" / "train-00099.parquet")
    (ds / ".work" / "feedbeef" / "final").mkdir(parents=True)  # a run that died
    code, out, _ = _cli(capsys, "datasets", "verify", "--all", "--store", store, "--json")
    report = json.loads(out)
    assert code == 1
    problems = [e["problem"] for e in report["errors"]]
    assert any("tag 'old' points at '0123456789abcdef', which is not a published version" in p for p in problems)
    assert any("data/train-00099.parquet: not in the manifest (added after publishing" in p for p in problems)
    assert [n["where"] for n in report["notes"]] == ["tickets/.work/feedbeef"]
    assert "unfinished run" in report["notes"][0]["problem"]
    # reads follow the manifest: the added file is not read
    v = Store(store).resolve(ref)
    assert v.read_split("train").num_rows == v.manifest["splits"]["train"]

    (ds / "refs.json").write_text('{"latest": ')  # truncated
    code, out, err = _cli(capsys, "datasets", "show", "tickets", "--store", store)
    assert code == 2 and "refs.json: not valid JSON" in err and "Traceback" not in err
    code, out, err = _cli(capsys, "datasets", "list", "--store", store)
    assert code == 0 and ref in out  # listed, without tags


def test_a_version_folder_without_manifest_is_half_published(built, capsys):
    store, ref, folder, _ = built
    half = folder.parent / "abcdef0123456789"
    shutil.copytree(folder, half)
    (half / "manifest.json").unlink()
    code, out, _ = _cli(capsys, "datasets", "verify", "--all", "--store", store)
    assert code == 1
    assert "tickets@abcdef0123456789: versions/abcdef0123456789 has no manifest.json: half-published" in out
    code, out, _ = _cli(capsys, "datasets", "list", "--store", store, "--json")
    assert [r["version"] for r in json.loads(out)] == [ref.split("@")[1]]  # not a version: not listed


def test_refresh_and_derived_versions_verify_clean(built, capsys, tmp_path):
    """Versions made by refresh (with removals: the base's files are rewritten) and audit --fix
    pass their own checks: verified reads refuse nothing that corpusmill wrote."""
    store, ref, folder, _ = built
    write_jsonl(tmp_path / "new.jsonl", _rows(30, "n"))
    (tmp_path / "gone.txt").write_text("a1\na2\nb3\n")
    code, out, err = _cli(capsys, "refresh", ref, "--add", tmp_path / "new.jsonl", "--remove", tmp_path / "gone.txt",
                          "--store", store, "--workers", "1", "--quiet")
    assert code == 0, err
    code, out, _ = _cli(capsys, "datasets", "verify", "--all", "--store", store)
    assert code == 0, out


# ----------------------------------------------------------------------------- store paths


def test_a_store_under_a_file_or_that_is_a_file_is_one_line(built, capsys, tmp_path):
    _, _, _, pipeline = built
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    for store in (blocker, blocker / "store"):
        for argv in (("run", pipeline, "--workers", "1"), ("datasets", "list")):
            code, out, err = _cli(capsys, *argv, "--store", store)
            assert code == 2, (argv, store)
            assert f"{blocker} is a file, not a folder; pass --store a folder" in err
            assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert blocker.read_text() == "x"


def _refuse_writes_under(monkeypatch, root: Path, code: int):
    """Every open-for-writing, mkdir, rename and replace under ``root`` fails with ``code`` (EROFS,
    EACCES): a read-only store as root sees it, where chmod would not stop root."""
    root = str(root)
    real_open, real_mkdir, real_replace, real_rename = os.open, os.mkdir, os.replace, os.rename
    import builtins
    real_builtin_open = builtins.open

    def under(path) -> bool:
        return str(os.path.abspath(os.fspath(path))).startswith(root)

    def refuse(path):
        raise OSError(code, os.strerror(code), str(path))

    def fake_open(path, flags, *a, **kw):
        if under(path) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            refuse(path)
        return real_open(path, flags, *a, **kw)

    def fake_builtin_open(file, mode="r", *a, **kw):
        if isinstance(file, (str, os.PathLike)) and under(file) and any(c in mode for c in "wax+"):
            refuse(file)
        return real_builtin_open(file, mode, *a, **kw)

    def fake_mkdir(path, *a, **kw):
        if under(path):
            refuse(path)
        return real_mkdir(path, *a, **kw)

    def fake_move(src, dst, *a, **kw):
        if under(dst):
            refuse(dst)
        return real_replace(src, dst, *a, **kw)

    monkeypatch.setattr(os, "open", fake_open)
    monkeypatch.setattr(builtins, "open", fake_builtin_open)
    monkeypatch.setattr(io, "open", fake_builtin_open)  # what pathlib's write_text opens with
    monkeypatch.setattr(os, "mkdir", fake_mkdir)
    monkeypatch.setattr(os, "replace", fake_move)
    monkeypatch.setattr(os, "rename", fake_move)


@pytest.mark.parametrize("code,said", [(errno.EROFS, "is on a read-only filesystem"),
                                       (errno.EACCES, "is not writable (permission denied)")])
def test_a_read_only_store_is_one_line_for_run_and_report(built, capsys, tmp_path, monkeypatch, code, said):
    store, ref, folder, pipeline = built
    write_jsonl(tmp_path / "raw" / "c.jsonl", _rows(20, "c"))  # a new version to build
    before = sorted(str(p) for p in Path(store).rglob("*"))
    _refuse_writes_under(monkeypatch, Path(store), code)

    code_, out, err = _cli(capsys, "run", pipeline, "--store", store, "--workers", "1", "--quiet")
    assert code_ == 2
    assert f"store {store} {said} (cannot write {store}/tickets/" in err and "pass --store a folder you can write to" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1

    code_, out, err = _cli(capsys, "datasets", "report", ref, "--store", store)
    assert code_ == 2 and "Traceback" not in err
    assert f"cannot write {folder}/report.html: " in err and len(err.strip().splitlines()) == 1
    # reading still works on a read-only store
    code_, out, err = _cli(capsys, "datasets", "verify", "--all", "--store", store)
    assert code_ == 0, out
    monkeypatch.undo()
    assert sorted(str(p) for p in Path(store).rglob("*")) == before  # nothing half-written


def test_a_full_disk_while_tagging_is_one_line_and_refs_stay_valid(built, capsys, monkeypatch):
    store, ref, _, pipeline = built
    refs_file = Path(store) / "tickets" / "refs.json"
    before = refs_file.read_text()
    import corpusmill.store as store_module

    def full(path, text):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(store_module, "atomic_write_text", full)
    code, out, err = _cli(capsys, "run", pipeline, "--store", store, "--workers", "1", "--quiet", "--tag", "new")
    assert code == 2
    assert f"store {store} has no space left on its device (cannot write {refs_file})" in err
    assert "free some space or pass --store a folder on another disk" in err
    assert "Traceback" not in err
    assert refs_file.read_text() == before
