"""Bad input and bad options: exports that never mix or half-write, input files that cannot be
read, YAML that would expand without bound, numeric options out of range, and a run that keeps
no row.

Each test asserts what the user sees (the message, exit code 2, no traceback) and that nothing
was lost or half-written: no partial export, no published version, the previous export intact."""

from __future__ import annotations

import errno
import json
import os
import time
import tracemalloc
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from corpusmill.cli import main
from corpusmill.dataprep import readers
from corpusmill.store import Store
from tests.conftest import REAL_TEXTS, write_jsonl, write_pipeline

FORMATS = ["jsonl", "parquet", "hf", "trl", "openai"]


def _cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


def _listing(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` with its bytes: what 'nothing changed' is checked against."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _staging_left(parent: Path) -> list[str]:
    return [p.name for p in parent.iterdir() if ".corpusmill-export-" in p.name]


def _exported_reasons(out: Path, fmt: str) -> list[str]:
    if fmt == "parquet":
        return pq.read_table(out / "rejects.parquet").column("reason").to_pylist()
    if fmt == "hf":
        import datasets

        return datasets.load_from_disk(str(out / "rejects"))["reason"]
    return [json.loads(line)["reason"] for line in (out / "rejects.jsonl").read_text().splitlines()]


@pytest.fixture
def sft_version(tmp_path, capsys):
    """A prompt/response version (every export format applies) with splits and read rejects."""
    raw = tmp_path / "raw"
    rows = [{"id": f"q{i}", "prompt": f"Question {i}: {REAL_TEXTS[i % 10]}",
             "response": f"Answer {i}: we looked into it and it is fixed now, thank you for waiting."}
            for i in range(40)]
    write_jsonl(raw / "pairs.jsonl", rows)
    with open(raw / "pairs.jsonl", "ab") as f:
        f.write(b'{"id": "broken", "prompt": "unterminated\n')  # a read reject, exported with its reason
    write_pipeline(tmp_path / "p.yaml", {
        "dataset": "pairs", "inputs": [{"path": "raw/pairs.jsonl", "id_field": "id", "prompt_field": "prompt",
                                        "response_field": "response"}],
        "steps": [{"split": {"ratios": {"train": 0.6, "validation": 0.2, "test": 0.2}}}]})
    code, out, _ = _cli(capsys, "run", tmp_path / "p.yaml", "--store", tmp_path / "store", "--workers", 1, "--quiet")
    assert code == 0
    return out.strip().splitlines()[-1], tmp_path / "store"


# ----------------------------------------------------------------------------- exports


@pytest.mark.parametrize("fmt", FORMATS)
def test_export_refuses_a_folder_with_files_and_overwrite_replaces_it_whole(sft_version, tmp_path, capsys, fmt):
    ref, store = sft_version
    out = tmp_path / "export"
    code, _, err = _cli(capsys, "datasets", "export", ref, "--store", store, "--format", fmt, "--out", out)
    assert code == 0, err
    first = _listing(out)
    assert _exported_reasons(out, fmt) == ["malformed_json"]  # every format exports the rejects

    # a second export into the same folder is refused: the first one is left exactly as it was
    code, _, err = _cli(capsys, "datasets", "export", ref, "--store", store, "--format", fmt, "--out", out)
    assert code == 2
    assert f"--out {out} already holds files" in err and "--overwrite" in err
    assert _listing(out) == first

    # --overwrite replaces the folder whole: a file of another export does not survive beside it
    (out / "stale-from-another-export.jsonl").write_text("{}\n")
    code, _, err = _cli(capsys, "datasets", "export", ref, "--store", store, "--format", fmt, "--out", out,
                        "--overwrite")
    assert code == 0, err
    assert _listing(out).keys() == first.keys()
    assert _staging_left(tmp_path) == []


def test_export_to_a_file_is_a_clear_error(sft_version, tmp_path, capsys):
    ref, store = sft_version
    target = tmp_path / "notes.txt"
    target.write_text("mine\n")
    for extra in ((), ("--overwrite",)):
        code, _, err = _cli(capsys, "datasets", "export", ref, "--store", store, "--out", target, *extra)
        assert code == 2
        assert f"--out {target} is a file" in err
        assert target.read_text() == "mine\n"
    assert _staging_left(tmp_path) == []


def test_export_overwrite_never_replaces_the_current_folder(sft_version, tmp_path, capsys, monkeypatch):
    ref, store = sft_version
    work = tmp_path / "project"
    work.mkdir()
    (work / "notes.txt").write_text("mine\n")
    monkeypatch.chdir(work)
    code, _, err = _cli(capsys, "datasets", "export", ref, "--store", store, "--out", ".", "--overwrite")
    assert code == 2 and "the current folder" in err
    assert (work / "notes.txt").read_text() == "mine\n"


def _corrupt_a_page(path: Path) -> None:
    """Overwrite bytes in the middle of a Parquet file, keeping its size and footer: the file
    passes a size and row-count check, and fails when its pages are decoded."""
    data = bytearray(path.read_bytes())
    for i in range(8, len(data) // 2):
        data[i] = 0xAB
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("fmt", FORMATS)
def test_export_of_a_corrupt_data_file_names_it_and_leaves_nothing(sft_version, tmp_path, capsys, fmt):
    ref, store = sft_version
    version = Store(store).resolve(ref)
    bad = version.data_files("train")[0]
    previous = tmp_path / "previous"  # an earlier export into the same folder survives a failed --overwrite
    assert _cli(capsys, "datasets", "export", ref, "--store", store, "--format", fmt, "--out", previous)[0] == 0
    before = _listing(previous)
    _corrupt_a_page(bad)

    fresh = tmp_path / "fresh"
    code, _, err = _cli(capsys, "datasets", "export", ref, "--store", store, "--format", fmt, "--out", fresh)
    assert code == 2
    assert bad.name in err
    assert not fresh.exists()
    code, _, err = _cli(capsys, "datasets", "export", ref, "--store", store, "--format", fmt, "--out", previous,
                        "--overwrite")
    assert code == 2 and bad.name in err
    assert _listing(previous) == before
    assert _staging_left(tmp_path) == []


def test_a_write_error_during_export_leaves_nothing(sft_version, tmp_path, capsys, monkeypatch):
    import corpusmill.datasets as ds

    ref, store = sft_version
    real = ds._write_jsonl
    calls = []

    def full_disk(path, rows):
        calls.append(path)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, rows)

    monkeypatch.setattr(ds, "_write_jsonl", full_disk)
    out = tmp_path / "export"
    code, _, err = _cli(capsys, "datasets", "export", ref, "--store", store, "--out", out)
    assert code == 2
    assert "No space left on device" in err and "nothing was exported" in err
    assert not out.exists() and _staging_left(tmp_path) == []


# ----------------------------------------------------------------------------- unreadable inputs


def _denied(monkeypatch, victim: Path) -> None:
    """Opening ``victim`` raises PermissionError, as it would for a user without read access
    (the tests run as root, whom chmod does not stop)."""
    real = open

    def guarded(path, *args, **kwargs):
        if os.path.realpath(path) == os.path.realpath(victim):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(readers, "open", guarded, raising=False)


def _corpus(tmp_path: Path) -> Path:
    raw = tmp_path / "raw"
    write_jsonl(raw / "a.jsonl", [{"text": f"{t} (a)"} for t in REAL_TEXTS])
    write_jsonl(raw / "sub" / "b.jsonl", [{"text": f"{t} (b)"} for t in REAL_TEXTS])
    return raw


@pytest.mark.parametrize("where", ["alone", "in a folder"])
def test_an_input_file_that_cannot_be_opened_is_a_validation_error(tmp_path, capsys, monkeypatch, where):
    raw = _corpus(tmp_path)
    _denied(monkeypatch, raw / "sub" / "b.jsonl")
    path = "raw/sub/b.jsonl" if where == "alone" else "raw"
    write_pipeline(tmp_path / "p.yaml", {"dataset": "d", "inputs": [{"path": path}]})
    code, _, err = _cli(capsys, "run", tmp_path / "p.yaml", "--store", tmp_path / "store", "--workers", 1)
    assert code == 2
    assert "b.jsonl: cannot be read: Permission denied (EACCES)" in err and "nothing was run" in err
    assert not (tmp_path / "store" / "d").exists()


@pytest.mark.skipif(not os.path.exists("/proc/self/mem"), reason="needs Linux /proc")
def test_an_input_file_with_an_io_error_is_a_validation_error(tmp_path, capsys):
    raw = _corpus(tmp_path)
    (raw / "disk.jsonl").symlink_to("/proc/self/mem")  # a file whose first read fails with EIO, even for root
    write_pipeline(tmp_path / "p.yaml", {"dataset": "d", "inputs": [{"path": "raw"}]})
    code, _, err = _cli(capsys, "run", tmp_path / "p.yaml", "--store", tmp_path / "store", "--workers", 1)
    assert code == 2
    assert "disk.jsonl: cannot be read: Input/output error (EIO)" in err


def test_a_subfolder_that_cannot_be_listed_is_an_error_not_a_skip(tmp_path, capsys, monkeypatch):
    raw = _corpus(tmp_path)
    real = os.scandir

    def scandir(path="."):
        if Path(path) == raw / "sub":
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    write_pipeline(tmp_path / "p.yaml", {"dataset": "d", "inputs": [{"path": "raw"}]})
    code, _, err = _cli(capsys, "run", tmp_path / "p.yaml", "--store", tmp_path / "store", "--workers", 1)
    assert code == 2
    assert f"cannot list the folder {raw / 'sub'}: Permission denied (EACCES)" in err


def _after_planning(monkeypatch, action) -> None:
    real = readers.plan_shards

    def plan(*args, **kwargs):
        out = real(*args, **kwargs)
        action()
        return out

    monkeypatch.setattr(readers, "plan_shards", plan)


def test_a_file_that_vanishes_before_it_is_read_is_an_unreadable_file_reject(tmp_path, capsys, monkeypatch):
    raw = _corpus(tmp_path)
    victim = raw / "sub" / "b.jsonl"
    _after_planning(monkeypatch, victim.unlink)
    write_pipeline(tmp_path / "p.yaml", {"dataset": "d", "inputs": [{"path": "raw"}]})
    code, out, err = _cli(capsys, "run", tmp_path / "p.yaml", "--store", tmp_path / "store", "--workers", 1)
    assert code == 0, err
    version = Store(tmp_path / "store").resolve(out.strip().splitlines()[-1])
    m = version.manifest
    assert m["counts"]["rejected"]["read"] == {"unreadable_file": 1}
    assert m["counts"]["kept"] == len(REAL_TEXTS)  # a.jsonl's rows, all of them
    assert m["counts"]["input"] == m["counts"]["kept"] + 1
    reject = version.read_rejects().to_pylist()[0]
    assert reject["source"] == "sub/b.jsonl:1"
    assert str(victim) in reject["detail"] and "No such file or directory (ENOENT)" in reject["detail"]
    assert "unreadable_file 1" in err  # the summary table says so


def test_a_disk_error_while_reading_keeps_the_rows_before_it(tmp_path, capsys, monkeypatch):
    from corpusmill import fs as fsio

    raw = _corpus(tmp_path)
    victim = str((raw / "sub" / "b.jsonl").resolve())
    real_open = fsio.open_input
    planned = []

    class Failing:
        """The first half of the file's bytes, then EIO (a disk failing mid-file)."""

        def __init__(self, fh):
            self.fh, self.reads = fh, 0

        def read(self, n=-1):
            self.reads += 1
            if self.reads > 1:
                raise OSError(errno.EIO, "Input/output error")
            return self.fh.read(os.path.getsize(victim) // 2)

        def __getattr__(self, name):
            return getattr(self.fh, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fh.close()

    def open_input(path, *args, **kwargs):
        fh = real_open(path, *args, **kwargs)
        return Failing(fh) if planned and path == victim else fh

    monkeypatch.setattr(fsio, "open_input", open_input)
    _after_planning(monkeypatch, lambda: planned.append(True))
    write_pipeline(tmp_path / "p.yaml", {"dataset": "d", "inputs": [{"path": "raw"}]})
    code, out, err = _cli(capsys, "run", tmp_path / "p.yaml", "--store", tmp_path / "store", "--workers", 1)
    assert code == 0, err
    version = Store(tmp_path / "store").resolve(out.strip().splitlines()[-1])
    m = version.manifest
    assert m["counts"]["rejected"]["read"] == {"unreadable_file": 1}
    kept_b = [s for s in version.read_split("all").column("source").to_pylist() if s.startswith("sub/b.jsonl")]
    assert 0 < len(kept_b) < len(REAL_TEXTS)  # the rows of b.jsonl before the error are kept
    assert m["counts"]["input"] == m["counts"]["kept"] + 1
    detail = version.read_rejects().column("detail").to_pylist()[0]
    assert victim in detail and "Input/output error (EIO)" in detail


def test_a_file_that_breaks_between_validation_and_planning_stops_the_run(tmp_path, capsys, monkeypatch):
    from corpusmill import fs as fsio

    raw = _corpus(tmp_path)
    victim = str((raw / "sub" / "b.jsonl").resolve())
    real_open = fsio.open_input

    def open_input(path, *args, **kwargs):  # validation opens with open(); planning hashes through here
        if path == victim:
            raise PermissionError(errno.EACCES, "Permission denied", path)
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(fsio, "open_input", open_input)
    write_pipeline(tmp_path / "p.yaml", {"dataset": "d", "inputs": [{"path": "raw"}]})
    code, _, err = _cli(capsys, "run", tmp_path / "p.yaml", "--store", tmp_path / "store", "--workers", 1)
    assert code == 2
    assert "inputs[0]: sub/b.jsonl: cannot be read: Permission denied (EACCES)" in err
    assert not (tmp_path / "store" / "d" / "versions").exists()


# ----------------------------------------------------------------------------- YAML limits


def _bomb(levels: int = 9, width: int = 9) -> str:
    """'Billion laughs': each level a list of ``width`` aliases of the level before."""
    lines = ["a0: &a0 [" + ", ".join(['"lol"'] * width) + "]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]" for i in range(1, levels + 1)]
    return "\n".join(lines) + "\n"


def test_a_yaml_alias_bomb_fails_fast_with_a_short_message(tmp_path, capsys):
    path = tmp_path / "bomb.yaml"
    path.write_text("dataset: d\ninputs: [{path: x.jsonl}]\n" + _bomb())
    tracemalloc.start()
    t0 = time.perf_counter()
    code, _, err = _cli(capsys, "run", path, "--store", tmp_path / "store")
    seconds = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert code == 2
    assert "with its aliases expanded" in err and "alias bomb" in err and "not valid YAML" in err
    assert seconds < 1.0
    assert peak < 50 * 1024 * 1024
    assert len(err) < 1000
    # the train options file and the sweep space are read through the same limits
    code, _, err = _cli(capsys, "train", "--config", path)
    assert code == 2 and "alias bomb" in err and len(err) < 1000


def test_yaml_size_nesting_and_recursive_aliases_are_refused(tmp_path, capsys):
    big = tmp_path / "big.yaml"
    with open(big, "w") as f:
        f.write("dataset: d\n")
        f.write(("# padding\n" * 1000) * 1100)  # 11 MB
    deep = tmp_path / "deep.yaml"
    deep.write_text("dataset: d\nsteps: " + "[" * 5000 + "]" * 5000 + "\n")
    loop = tmp_path / "loop.yaml"
    loop.write_text("dataset: d\nsteps: &s [*s]\n")
    expected = {big: "larger than 10 MB is not read", deep: "nested more than 100 deep",
                loop: "contains it (a recursive structure)"}
    for path, message in expected.items():
        code, _, err = _cli(capsys, "run", path, "--store", tmp_path / "store")
        assert code == 2 and message in err, err
        assert len(err) < 1000


def test_a_huge_bad_value_is_quoted_briefly(tmp_path, capsys):
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump({"dataset": "d", "seed": list(range(100_000)), "inputs": [{"path": "x.jsonl"}]}))
    code, _, err = _cli(capsys, "run", path, "--store", tmp_path / "store")
    assert code == 2 and "seed:" in err
    assert len(err) < 2000


# ----------------------------------------------------------------------------- numeric options


@pytest.mark.parametrize("argv, message", [
    (["run", "p.yaml", "--workers", "0"], "argument --workers: must be a whole number >= 1, got 0"),
    (["run", "p.yaml", "--workers", "-3"], "argument --workers: must be a whole number >= 1, got -3"),
    (["refresh", "d", "--add", "x", "--workers", "0"], "argument --workers: must be a whole number >= 1, got 0"),
    (["audit", "--report", "r.json", "--threshold", "2"],
     "argument --threshold: must be a Jaccard similarity, a number with 0 < x <= 1, got 2"),
    (["audit", "--report", "r.json", "--threshold", "0"], "0 < x <= 1, got 0"),
    (["audit", "--report", "r.json", "--threshold", "nan"], "0 < x <= 1, got nan"),
    (["audit", "--report", "r.json", "--fail-above", "-1"],
     "argument --fail-above: must be a contamination rate, a number with 0 <= x <= 1, got -1"),
    (["audit", "--report", "r.json", "--ngram", "0"], "argument --ngram: must be a whole number >= 1, got 0"),
    (["audit", "--report", "r.json", "--min-words", "-1"], "argument --min-words: must be a whole number >= 0, got -1"),
    (["datasets", "stats", "d", "--tokenizer", "t", "--max-rows", "-5"], "must be a whole number >= 0, got -5"),
    (["eval", "run", "--report", "r.json", "--bootstrap", "0"], "argument --bootstrap: must be a whole number >= 1"),
    (["run", "p.yaml", "--workers", "two"], "argument --workers: 'two' is not a whole number"),
])
def test_numeric_options_out_of_range_name_the_range(capsys, argv, message):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


def test_train_model_path_that_does_not_exist_says_no_such_folder(tmp_path, capsys):
    from corpusmill.train.config import local_model_problem

    code, _, err = _cli(capsys, "train", "--dataset", "d@latest", "--task", "classification", "--model", "/missing/path")
    assert code == 2
    assert "model: no such folder: /missing/path" in err
    assert local_model_problem("./models/mine") == "no such folder: ./models/mine"
    assert local_model_problem("~/no-such-model-here") == "no such folder: ~/no-such-model-here"
    assert local_model_problem("a/b/c") == "no such folder: a/b/c"  # a hub id has one slash at most
    assert local_model_problem("sentence-transformers/all-MiniLM-L6-v2") is None  # a hub id
    assert local_model_problem("gpt2") is None
    (tmp_path / "weights.bin").write_bytes(b"")
    assert "is a file" in local_model_problem(str(tmp_path / "weights.bin"))
    assert local_model_problem(str(tmp_path)) is None


# ----------------------------------------------------------------------------- a run that keeps no row


def test_a_run_that_keeps_no_row_stops_unless_the_pipeline_allows_it(tmp_path, capsys):
    write_jsonl(tmp_path / "raw" / "short.jsonl", [{"text": f"short note {i}"} for i in range(30)])
    config = {"dataset": "notes", "inputs": [{"path": "raw/short.jsonl"}], "steps": [{"quality": {}}]}
    write_pipeline(tmp_path / "p.yaml", config)
    store = tmp_path / "store"
    code, out, err = _cli(capsys, "run", tmp_path / "p.yaml", "--store", store, "--workers", 1)
    assert code == 2 and out == ""
    assert "every row was rejected (30 rows in, 0 kept: quality rejected 30)" in err
    assert "Most by stage 'quality': gopher_word_count (30 rows), e.g. short.jsonl:1:" in err
    assert "allow_empty_version: true" in err
    assert not (store / "notes" / "versions").exists() and not (store / "notes" / "refs.json").exists()
    kept_work = [p.name for p in (store / "notes" / ".work").iterdir()]

    write_pipeline(tmp_path / "p.yaml", {**config, "allow_empty_version": True})
    code, out, err = _cli(capsys, "run", tmp_path / "p.yaml", "--store", store, "--workers", 1)
    assert code == 0, err
    ref = out.strip().splitlines()[-1]
    assert ref.split("@")[1] in kept_work  # the key is not in the version id: the stopped run's work resumed
    version = Store(store).resolve(ref)
    assert version.manifest["counts"]["kept"] == 0
    assert sum(pq.read_metadata(f).num_rows for f in version.reject_files()) == 30
