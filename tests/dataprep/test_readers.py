"""Every reader format, compression and field mapping, through the real pipeline."""

from __future__ import annotations

import gzip
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from tests.conftest import REAL_TEXTS, write_jsonl


def _texts(result, split="all"):
    return result.version.read_split(split).column("text").to_pylist()


@pytest.mark.parametrize("compression", [None, "gzip", "zstd"])
def test_jsonl_with_field_mapping_and_compression(tmp_path, run, compression):
    rows = [{"ticket_id": i, "body": t, "category": ["a", "b"][i % 2], "extra": {"n": i}} for i, t in enumerate(REAL_TEXTS)]
    data = "".join(json.dumps(r) + "\n" for r in rows).encode()
    name = {None: "t.jsonl", "gzip": "t.jsonl.gz", "zstd": "t.jsonl.zst"}[compression]
    if compression == "gzip":
        data = gzip.compress(data)
    elif compression == "zstd":
        data = zstandard.ZstdCompressor().compress(data)
    (tmp_path / name).write_bytes(data)
    result = run({"dataset": "t", "inputs": [{"path": name, "text_field": "body", "id_field": "ticket_id",
                                              "label_field": "category"}]})
    table = result.version.read_split("all")
    assert table.column("text").to_pylist() == REAL_TEXTS
    assert table.column("id").to_pylist() == [str(i) for i in range(10)]
    assert table.column("label").to_pylist() == ["a", "b"] * 5
    assert table.column("source").to_pylist()[3] == f"{name}:4"
    assert json.loads(table.column("meta").to_pylist()[2]) == {"extra": {"n": 2}}


def test_csv_and_tsv(tmp_path, run):
    (tmp_path / "a.csv").write_text('id,text,label\n1,"Hello, world",x\n2,"line one\nline two",y\n3,short\n')
    (tmp_path / "b.tsv").write_text("id\ttext\n10\tfrom a tsv file\n")
    result = run({"dataset": "c", "inputs": [{"path": "a.csv", "id_field": "id", "label_field": "label"},
                                             {"path": "b.tsv", "id_field": "id"}]})
    assert _texts(result) == ["Hello, world", "line one\nline two", "from a tsv file"]
    rej = result.version.read_rejects().to_pylist()
    assert [(r["reason"], r["source"]) for r in rej] == [("malformed_row", "a.csv:5")]


def test_parquet(tmp_path, run):
    pq.write_table(pa.table({"content": REAL_TEXTS[:4], "y": [1, 0, 1, 0]}), tmp_path / "p.parquet")
    result = run({"dataset": "p", "inputs": [{"path": "p.parquet", "text_field": "content", "label_field": "y"}]})
    t = result.version.read_split("all")
    assert t.column("text").to_pylist() == REAL_TEXTS[:4]
    assert t.column("label").to_pylist() == ["1", "0", "1", "0"]
    assert t.column("source").to_pylist()[1] == "p.parquet:2"


def test_plain_text_units(tmp_path, run):
    d = tmp_path / "docs"
    d.mkdir()
    (d / "one.txt").write_text("A whole file\nis one document.\n")
    (d / "two.txt").write_text("Another file.")
    r = run({"dataset": "f", "inputs": [{"path": "docs"}]})
    assert _texts(r) == ["A whole file\nis one document.\n", "Another file."]
    assert r.version.read_split("all").column("source").to_pylist() == ["one.txt:1", "two.txt:1"]

    (tmp_path / "lines.txt").write_text("first line\nsecond line\n\nfourth line\n")
    r = run({"dataset": "l", "inputs": [{"path": "lines.txt", "text_unit": "line"}]})
    assert _texts(r) == ["first line", "second line", "fourth line"]
    assert r.manifest["counts"]["rejected"] == {"read": {"empty_text": 1}}

    (tmp_path / "cookies").write_text("First cookie\nwith two lines\n%\nSecond cookie\n%\n%\nThird\n")
    r = run({"dataset": "b", "inputs": [{"path": "cookies", "format": "text", "text_unit": "block",
                                         "block_separator": "%"}]})
    assert _texts(r) == ["First cookie\nwith two lines", "Second cookie", "Third"]
    assert r.version.read_split("all").column("source").to_pylist() == ["cookies:1", "cookies:4", "cookies:7"]


def test_prompt_response_and_messages(tmp_path, run):
    write_jsonl(tmp_path / "pr.jsonl", [{"q": "What is 2+2?", "a": "4"}, {"q": "Capital of France?", "a": "Paris"}])
    write_jsonl(tmp_path / "chat.jsonl", [
        {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]},
        {"messages": "not a list"},
    ])
    r = run({"dataset": "pr", "inputs": [{"path": "pr.jsonl", "prompt_field": "q", "response_field": "a"}]})
    t = r.version.read_split("all")
    assert t.column("prompt").to_pylist() == ["What is 2+2?", "Capital of France?"]
    assert t.column("response").to_pylist() == ["4", "Paris"]
    assert t.column("text").to_pylist()[1] == "Capital of France?\n\nParis"
    r = run({"dataset": "chat", "inputs": [{"path": "chat.jsonl", "messages_field": "messages"}]})
    t = r.version.read_split("all")
    assert t.column("messages").to_pylist() == [[{"role": "user", "content": "hi", "extra": None}, {"role": "assistant", "content": "hello", "extra": None}]]
    assert r.manifest["counts"]["rejected"] == {"read": {"invalid_messages": 1}}


def test_hf_save_to_disk_folder(tmp_path, run):
    datasets = pytest.importorskip("datasets")
    datasets.DatasetDict({
        "train": datasets.Dataset.from_dict({"sentence": REAL_TEXTS[:3], "label": [0, 1, 0]}),
        "test": datasets.Dataset.from_dict({"sentence": REAL_TEXTS[3:5], "label": [1, 1]}),
    }).save_to_disk(str(tmp_path / "hfds"))
    r = run({"dataset": "hf", "inputs": [{"path": "hfds", "format": "hf_disk", "split": "test",
                                          "text_field": "sentence", "label_field": "label"}]})
    t = r.version.read_split("all")
    assert t.column("text").to_pylist() == REAL_TEXTS[3:5]
    assert t.column("label").to_pylist() == ["1", "1"]


def test_big_line_file_is_sharded_with_exact_line_numbers(tmp_path, run):
    rows = [{"text": f"{REAL_TEXTS[i % 10]} #{i}"} for i in range(3000)]
    lines = [json.dumps(r) for r in rows]
    lines[1234] = "{broken"
    (tmp_path / "big.jsonl").write_text("\n".join(lines))  # no final newline
    cfg = {"dataset": "big", "inputs": [{"path": "big.jsonl"}], "execution": {"shard_bytes": 4096}}
    r = run(cfg)
    assert r.manifest["shards"] > 20
    t = r.version.read_split("all")
    sources = t.column("source").to_pylist()
    assert len(sources) == 2999
    expected = [f"big.jsonl:{i + 1}" for i in range(3000) if i != 1234]
    assert sources == expected
    assert t.column("text").to_pylist()[-1].endswith("#2999")
    rej = r.version.read_rejects().to_pylist()
    assert [(x["reason"], x["source"]) for x in rej] == [("malformed_json", "big.jsonl:1235")]


def test_generated_ids_do_not_depend_on_location_or_line(tmp_path, run):
    write_jsonl(tmp_path / "a" / "x.jsonl", [{"text": "alpha"}, {"text": "beta"}])
    write_jsonl(tmp_path / "b" / "x.jsonl", [{"text": "gamma"}, {"text": "alpha"}, {"text": "beta"}])
    ids_a = dict(zip(*[run({"dataset": "a", "inputs": [{"path": "a/x.jsonl"}]}).version.read_split("all").column(c).to_pylist()
                       for c in ("text", "id")]))
    ids_b = dict(zip(*[run({"dataset": "b", "inputs": [{"path": "b/x.jsonl"}]}).version.read_split("all").column(c).to_pylist()
                       for c in ("text", "id")]))
    assert ids_a["alpha"] == ids_b["alpha"] and ids_a["beta"] == ids_b["beta"]


def test_hub_dataset_name_goes_through_load_dataset(tmp_path, run, monkeypatch):
    """No network here: the real hub path is exercised with load_dataset answering from memory."""
    datasets = pytest.importorskip("datasets")
    calls = []

    def fake_load_dataset(name, split=None, **kw):
        calls.append((name, split))
        return datasets.Dataset.from_dict({"text": REAL_TEXTS[:2]})

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    r = run({"dataset": "hub", "inputs": [{"path": "someorg/tickets", "format": "hf_hub", "split": "validation"}]})
    assert calls == [("someorg/tickets", "validation")]
    assert _texts(r) == REAL_TEXTS[:2]
    assert r.manifest["inputs"][0]["files"][0]["sha256"] == "hub:someorg/tickets:validation"


def test_line_files_are_cut_into_the_fewest_shards_of_equal_size(tmp_path):
    """A file of 2.5 shard_bytes is three shards of ~1/3 each (not two full ones and a half),
    cut at line starts; boundaries depend only on the bytes and shard_bytes."""
    from types import SimpleNamespace

    from corpusmill.dataprep.readers import InputFile, plan_shards

    lines = [json.dumps({"text": f"{REAL_TEXTS[i % 10]} #{i}"}) + "\n" for i in range(2000)]
    path = tmp_path / "d.jsonl"
    path.write_text("".join(lines))
    size = path.stat().st_size
    f = InputFile(0, str(path), "d.jsonl", "jsonl", None, size)
    shards, _ = plan_shards([f], [SimpleNamespace()], int(size / 2.5))
    assert len(shards) == 3
    sizes = [s.nbytes for s in shards]
    longest = max(len(x) for x in lines)
    assert max(sizes) - min(sizes) <= 2 * longest and max(sizes) <= size / 2.5 + longest
    data = path.read_bytes()
    assert all(data[s.start - 1:s.start] == b"\n" for s in shards[1:])  # at line starts
    assert [s.first_line for s in shards] == [1] + [data[:s.start].count(b"\n") + 1 for s in shards[1:]]
    assert plan_shards([f], [SimpleNamespace()], size)[0][0].nbytes == size  # one shard when it fits
