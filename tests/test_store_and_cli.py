"""The store's addressing and the datasets commands: list, show, diff, export."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from corpusmill.cli import main
from corpusmill.errors import StoreError
from corpusmill.store import Store
from tests.conftest import REAL_TEXTS, assert_run_imports_none, write_jsonl, write_pipeline


def _cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def two_versions(tmp_path, capsys):
    raw = tmp_path / "raw"
    write_jsonl(raw / "t.jsonl", [{"id": f"t{i}", "text": t, "label": "x"} for i, t in enumerate(REAL_TEXTS[:6])])
    p = write_pipeline(tmp_path / "p.yaml", {"dataset": "tickets", "inputs": [{"path": "raw/*.jsonl", "id_field": "id",
                                                                                "label_field": "label"}]})
    store = str(tmp_path / "store")
    code, out, _ = _cli(capsys, "run", str(p), "--store", store, "--workers", "1", "--tag", "v1")
    assert code == 0
    ref_a = out.strip().splitlines()[-1]
    # refreshed data: t0 removed, t1 changed, t6/t7 added, and a duplicate row
    rows = [{"id": f"t{i}", "text": t, "label": "x"} for i, t in enumerate(REAL_TEXTS[:8]) if i != 0]
    rows[0]["text"] = "The backup job now succeeds every night."
    write_jsonl(raw / "t.jsonl", rows)
    code, out, _ = _cli(capsys, "run", str(p), "--store", store, "--workers", "1")
    ref_b = out.strip().splitlines()[-1]
    return store, ref_a, ref_b


def test_run_prints_reference_last_and_rerun_is_identical(two_versions, capsys, tmp_path):
    store, ref_a, ref_b = two_versions
    assert ref_a.startswith("tickets@") and ref_a != ref_b
    code, out, err = _cli(capsys, "run", str(tmp_path / "p.yaml"), "--store", store, "--workers", "2")
    assert out.strip() == ref_b
    assert "nothing redone" in err


def test_refs_tags_and_prefixes(two_versions):
    store, ref_a, ref_b = two_versions
    s = Store(store)
    assert s.resolve("tickets").ref == ref_b
    assert s.resolve("tickets@latest").ref == ref_b
    assert s.resolve("tickets@v1").ref == ref_a
    assert s.resolve(ref_a[: len("tickets@") + 6]).ref == ref_a
    with pytest.raises(StoreError, match="no version or tag 'nope'"):
        s.resolve("tickets@nope")
    with pytest.raises(StoreError, match="no dataset 'other'"):
        s.resolve("other@latest")


def test_list_and_show_json(two_versions, capsys):
    store, ref_a, ref_b = two_versions
    code, out, _ = _cli(capsys, "datasets", "list", "--store", store, "--json")
    rows = json.loads(out)
    assert [f"{r['dataset']}@{r['version']}" for r in rows] == [ref_a, ref_b]
    assert rows[0]["tags"] == ["v1"] and rows[1]["tags"] == ["latest"]
    code, out, _ = _cli(capsys, "datasets", "show", ref_a, "--store", store, "--json")
    m = json.loads(out)
    assert m["dataset"] == "tickets" and m["version"] == ref_a.split("@")[1] and m["parent"] is None
    assert m["counts"] == {"input": 6, "kept": 6, "rejected": {}}
    assert m["splits"] == {"all": 6}
    assert m["inputs"][0]["files"][0]["name"] == "t.jsonl"
    assert len(m["inputs"][0]["files"][0]["sha256"]) == 64
    code, out, _ = _cli(capsys, "datasets", "show", ref_a, "--store", store)
    assert code == 0 and "unique_ids" in out and "splits" in out


def test_diff(two_versions, capsys):
    store, ref_a, ref_b = two_versions
    code, out, _ = _cli(capsys, "datasets", "diff", ref_a, ref_b, "--store", store, "--json")
    d = json.loads(out)["splits"]["all"]
    assert (d["added"], d["removed"], d["changed"], d["unchanged"]) == (2, 1, 1, 4)
    assert d["examples"] == {"added": ["t6", "t7"], "removed": ["t0"], "changed": ["t1"]}
    code, out, _ = _cli(capsys, "datasets", "diff", ref_a, ref_b, "--store", store)
    assert "added" in out


def test_export_jsonl_parquet_hf(two_versions, capsys, tmp_path):
    store, ref_a, _ = two_versions
    out_dir = tmp_path / "exp"
    code, out, _ = _cli(capsys, "datasets", "export", ref_a, "--format", "jsonl", "--out", str(out_dir), "--store", store)
    assert code == 0
    rows = [json.loads(line) for line in (out_dir / "all.jsonl").read_text().splitlines()]
    assert [r["text"] for r in rows] == REAL_TEXTS[:6]
    assert (out_dir / "rejects.jsonl").read_text() == ""
    code, _, _ = _cli(capsys, "datasets", "export", ref_a, "--format", "parquet", "--out", str(tmp_path / "pq"), "--store", store)
    import pyarrow.parquet as pq

    assert pq.read_table(tmp_path / "pq" / "all.parquet").num_rows == 6
    datasets = pytest.importorskip("datasets")
    code, _, _ = _cli(capsys, "datasets", "export", ref_a, "--format", "hf", "--out", str(tmp_path / "hf"), "--store", store)
    dd = datasets.load_from_disk(str(tmp_path / "hf"))
    assert dd["all"]["text"] == REAL_TEXTS[:6]


def test_export_keeps_rejects_with_raw_bytes(tmp_path, run, capsys):
    (tmp_path / "d.jsonl").write_bytes(b'{"text": "good"}\n{"text": "caf\xe9"}\n')
    r = run({"dataset": "d", "inputs": [{"path": "d.jsonl"}]})
    code, _, _ = _cli(capsys, "datasets", "export", r.version.ref, "--out", str(tmp_path / "e"), "--store", str(tmp_path / "store"))
    rej = [json.loads(x) for x in (tmp_path / "e" / "rejects.jsonl").read_text().splitlines()]
    import base64

    assert rej[0]["reason"] == "invalid_utf8"
    assert base64.b64decode(rej[0]["raw_base64"]) == b'{"text": "caf\xe9"}'


def test_unknown_reference_is_a_clean_error(tmp_path, capsys):
    code, out, err = _cli(capsys, "datasets", "show", "nothing@latest", "--store", str(tmp_path / "empty"))
    assert code == 2 and "no dataset 'nothing'" in err and "Traceback" not in err


def test_run_does_not_import_torch(tmp_path):
    write_jsonl(tmp_path / "d.jsonl", [{"text": t} for t in REAL_TEXTS])
    p = write_pipeline(tmp_path / "p.yaml", {"dataset": "d", "inputs": [{"path": "d.jsonl"}], "steps": [{"dedup": {}}]})
    assert_run_imports_none(p, tmp_path / "s")


def test_store_location_from_environment(tmp_path, monkeypatch, capsys):
    write_jsonl(tmp_path / "d.jsonl", [{"text": "hello there"}])
    p = write_pipeline(tmp_path / "p.yaml", {"dataset": "env", "inputs": [{"path": "d.jsonl"}]})
    monkeypatch.setenv("CORPUSMILL_STORE", str(tmp_path / "envstore"))
    code, out, _ = _cli(capsys, "run", str(p), "--workers", "1", "--quiet")
    assert Store(tmp_path / "envstore").resolve(out.strip()).manifest["counts"]["kept"] == 1


def test_version_ids_and_remembered_texts(two_versions, monkeypatch):
    """ids() lists every row's id; inside remembered_texts a version's data is scanned only for
    ids not asked before (found or not), and the answers are the same as without it."""
    from corpusmill import store as store_module
    from corpusmill.store import Version, remembered_texts

    root, ref_a, _ = two_versions
    version = Store(root).resolve(ref_a)
    assert sorted(version.ids().to_pylist()) == [f"t{i}" for i in range(6)]
    plain = version.texts_by_id(["t1", "t4", "nope"])
    assert set(plain) == {"t1", "t4"} and plain["t1"] == REAL_TEXTS[1]

    scans = []
    original = Version._read_texts
    monkeypatch.setattr(Version, "_read_texts", lambda self, ids: scans.append(list(ids)) or original(self, ids))
    with remembered_texts():
        assert version.texts_by_id(["t1", "t4", "nope"]) == plain
        assert version.texts_by_id(["t4", "nope", "t1"]) == plain  # all remembered: no scan
        assert version.texts_by_id(["t2", "t1"]) == {"t2": REAL_TEXTS[2], "t1": REAL_TEXTS[1]}
    assert scans == [["t1", "t4", "nope"], ["t2"]]
    assert store_module._TEXT_MEMO is None  # forgotten after the block
    version.texts_by_id(["t1"])
    assert scans[-1] == ["t1"]


def test_published_files_keep_dictionaries_except_for_the_text(tmp_path, run):
    """Text is almost never repeated: published data and reject files store it plain (a
    dictionary attempt costs writing and reading); other columns keep dictionary encoding."""
    import pyarrow.parquet as pq

    rows = [{"id": f"r{i}", "text": REAL_TEXTS[i % len(REAL_TEXTS)] + f" #{i}", "label": "ab"[i % 2]} for i in range(40)]
    rows += [{"id": "dup", "text": rows[0]["text"], "label": "a"}]
    write_jsonl(tmp_path / "d.jsonl", rows)
    r = run({"dataset": "d", "inputs": [{"path": "d.jsonl", "id_field": "id", "label_field": "label"}],
             "steps": [{"dedup": {"exact": True}}]})
    files = [*r.version.data_files("all"), *r.version.reject_files()]
    assert len(files) == 2
    for f in files:
        meta = pq.read_metadata(f).row_group(0)
        encodings = {meta.column(i).path_in_schema: meta.column(i).encodings for i in range(meta.num_columns)}
        assert "RLE_DICTIONARY" not in encodings["text"], f
        assert "RLE_DICTIONARY" in encodings["id"] and "RLE_DICTIONARY" in encodings["label"], f


@pytest.mark.parametrize("codec", ["zstd", "none"])
def test_text_compression_sets_the_text_codec_of_published_data_files(tmp_path, run, codec):
    """The text column of data files is LZ4 by default (``execution.text_compression`` picks
    another); every other column, and the rejects, are zstd; the choice is part of the version
    id, and a refresh that rewrites a file keeps its parent's codec."""
    import pyarrow.parquet as pq

    from corpusmill.pipelines.refresh import refresh

    rows = [{"id": f"r{i}", "text": REAL_TEXTS[i % len(REAL_TEXTS)] + f" #{i}", "label": "ab"[i % 2]} for i in range(40)]
    rows += [{"id": "dup", "text": rows[0]["text"], "label": "a"}]
    write_jsonl(tmp_path / "d.jsonl", rows)
    cfg = {"dataset": "d", "inputs": [{"path": "d.jsonl", "id_field": "id", "label_field": "label"}],
           "steps": [{"dedup": {"exact": True}}]}
    default = run(cfg, store=tmp_path / "default")
    chosen = run({**cfg, "execution": {"text_compression": codec}})
    assert default.version.id != chosen.version.id

    def codecs(f):
        meta = pq.read_metadata(f).row_group(0)
        return {meta.column(i).path_in_schema: meta.column(i).compression for i in range(meta.num_columns)}

    for r, text in ((default, "LZ4"), (chosen, codec.upper().replace("NONE", "UNCOMPRESSED"))):
        data = codecs(r.version.data_files("all")[0])
        assert data.pop("text") == text and set(data.values()) == {"ZSTD"}
        assert set(codecs(r.version.reject_files()[0]).values()) == {"ZSTD"}
    # a refresh that removes a row rewrites that data file in the parent's codec
    (tmp_path / "gone.txt").write_text("r3\n")
    write_jsonl(tmp_path / "more.jsonl", [{"id": "new", "text": "A new ticket about the printer.", "label": "a"}])
    child = refresh(Store(tmp_path / "store"), chosen.version.ref, [tmp_path / "more.jsonl"], remove=tmp_path / "gone.txt")
    old_files = [f for f in child.version.data_files("all") if f.name in {g.name for g in chosen.version.data_files("all")}]
    assert old_files and all(codecs(f)["text"] == text for f in old_files)


def test_a_shard_without_duplicates_is_published_with_the_dedup_columns(tmp_path, run):
    """Dedup last: a shard whose rows no decision touches is published as the previous segment
    wrote it, so that segment writes them as dedup's apply would (with ``cluster_id``); every
    data file has the same columns and the version reads as one table."""
    import pyarrow.parquet as pq

    first = [{"id": f"a{i}", "text": f"first file row number {i} with some words"} for i in range(20)]
    write_jsonl(tmp_path / "in" / "a.jsonl", first + [{"id": "dupe", "text": first[0]["text"]}])
    write_jsonl(tmp_path / "in" / "b.jsonl", [{"id": f"b{i}", "text": f"second file entry {i} other words"} for i in range(20)])
    r = run({"dataset": "d", "inputs": [{"path": "in/*.jsonl", "id_field": "id"}], "steps": [{"dedup": {"exact": True}}]},
            workers=2)
    files = r.version.data_files("all")
    assert len(files) == 2 and len({tuple(pq.read_schema(f).names) for f in files}) == 1
    table = r.version.read_split("all")
    assert table.num_rows == 40 and table.column("cluster_id").to_pylist() == table.column("id").to_pylist()


def test_skip_pandas_probe_keeps_pandas_usable():
    """run and refresh spare pyarrow's probe import of pandas; pandas still works when used."""
    code = (
        "import sys\n"
        "from corpusmill.pipelines.workers import skip_pandas_probe\n"
        "skip_pandas_probe()\n"
        "import pyarrow as pa\n"
        "t = pa.table({'a': pa.array(['x', 'y', 'x'])})\n"
        "assert 'pandas' not in sys.modules\n"
        "try:\n"
        "    import pandas as pd\n"
        "except ImportError:\n"
        "    print('no pandas'); sys.exit(0)\n"
        "assert t.to_pandas()['a'].tolist() == ['x', 'y', 'x']\n"
        "assert pa.types.is_dictionary(pa.array(pd.Series(['u', 'v'], dtype='category')).type)\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() in ("ok", "no pandas")


def test_parser_builds_train_flags_only_for_train_and_sweep():
    """run and refresh do not wait for the train option flags (built from the train config
    models); train, sweep and the full parser have them."""
    from corpusmill.cli import build_parser

    assert vars(build_parser("train").parse_args(["train", "--dataset", "d@v", "--lora-r", "4"]))["cfg:lora.r"] == 4
    assert vars(build_parser().parse_args(["sweep", "--space", "s.yaml", "--lora-r", "8"]))["cfg:lora.r"] == 8
    args = build_parser("run").parse_args(["run", "p.yaml", "--workers", "2"])
    assert args.workers == 2 and args.command == "run"
    with pytest.raises(SystemExit):  # the flag is unknown to a parser built for another command
        build_parser("run").parse_args(["train", "--lora-r", "4"])
