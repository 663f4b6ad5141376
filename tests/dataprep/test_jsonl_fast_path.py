"""The JSONL fast path (Arrow's parser) gives exactly what the per-row path gives: same rows, same
rejects, same batches, same published bytes; and it is taken where the input is clean."""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import pytest

from corpusmill.dataprep import jsonl_arrow, readers
from corpusmill.pipelines.config import parse_pipeline
from corpusmill.pipelines.registry import REGISTRY
from corpusmill.pipelines.runner import make_plan
from tests.conftest import REAL_TEXTS

# lines the per-row path rejects or treats specially, each of which must send its block there
AWKWARD_LINES = [
    b"",
    b"   ",
    b"\t\r",
    b'{"text": "two objects"} {"text": "on one line"}',
    b'\xef\xbb\xbf{"text": "after a byte order mark"}',
    b'{"text": 5}',
    b'{"text": null}',
    b'{"body": "no text field"}',
    b'[1, 2, 3]',
    b'{"text": "lone surrogate \\ud800 here"}',
    b'{"text": "invalid utf-8 \xff\xfe here"}',
    b'{"text": "NUL \\u0000 inside"}',
    b'{"text": "   "}',
    b'{"text": "\\u00a0\\u2003"}',
    b'{"text": ""}',
    b'{"text": "nan", "score": NaN}',
    b'{"text": "duplicate key", "text": "the second wins"}',
    b'{"text": "trailing comma",}',
    b'{"text": "x' + b"y" * 300 + b'"}',  # over max_text_bytes=200 below
    b'{"text": "id is a float", "id": 1.5}',
    b'{"text": "id is empty", "id": ""}',
    b'{"text": "label is a bool", "id": "b1", "label": true}',
    b'{"text": "label is a float", "id": "f1", "label": 2.0}',
]
# a field to keep in meta makes the reader give up the fast path for the rest of the shard
META_LINE = b'{"text": "has meta", "id": "m1", "source_url": "https://example.org/a"}'


def clean_line(i: int, rng: random.Random, *, ids: str | None, label: str | None) -> bytes:
    row = {"text": f"{REAL_TEXTS[i % len(REAL_TEXTS)]} ({i}) \u00e9t\u00e9 \U0001f600 \"quoted\" \\ tab\there"}
    if ids:
        row["id"] = f"doc-{i}" if ids == "str" else i  # integer ids become strings
    if label == "str":
        row["label"] = rng.choice(["billing", "ops", None])
    elif label == "int":
        row["label"] = rng.choice([0, 1, 7])
    return json.dumps(row, ensure_ascii=rng.random() < 0.5).encode() + (b"\r" if rng.random() < 0.1 else b"")


def read_all(path: Path, input_spec: dict, *, fast: bool, monkeypatch, chunk: int, batch_rows: int):
    """(record tables, reject tables, number of blocks the fast path read) for one file."""
    monkeypatch.setattr(readers, "CHUNK", chunk)
    taken = []
    real_read = jsonl_arrow.ArrowJsonl.read

    def counting_read(self, block, first_line):
        table = real_read(self, block, first_line)
        taken.append(table is not None)
        return table

    monkeypatch.setattr(jsonl_arrow.ArrowJsonl, "read", counting_read)
    monkeypatch.setattr(jsonl_arrow.ArrowJsonl, "usable", staticmethod(
        (lambda b: b.mode == "text") if fast else (lambda b: False)))
    config, steps, base = parse_pipeline(
        {"dataset": "d", "inputs": [{"path": str(path), **input_spec}], "execution": {"batch_rows": batch_rows}},
        REGISTRY, base_dir=path.parent)
    plan = make_plan(config, steps, base)
    schema = readers.record_schema_for(config.inputs)
    tables, rejects = [], []
    for shard in plan.shards:
        for table, rej in readers.read_shard(shard, config.inputs[0], schema, batch_rows):
            tables.append(table)
            rejects.append(rej)
    return tables, rejects, sum(taken)


def test_python_whitespace_list_is_complete():
    assert set(jsonl_arrow.PY_WHITESPACE) == {chr(c) for c in range(sys.maxunicode + 1) if chr(c).isspace()}


@pytest.mark.parametrize("ids,label,keep_meta", [
    ("str", None, True), (None, None, True), ("str", "str", True), ("int", "int", False), (None, "str", False),
])
def test_same_rows_rejects_and_batches_as_the_per_row_path(tmp_path, monkeypatch, ids, label, keep_meta):
    rng = random.Random(f"{ids}{label}{keep_meta}")
    lines = [clean_line(i, rng, ids=ids, label=label) for i in range(1000)]
    # each awkward line lands in a block among clean ones, with clean blocks between them (two
    # blocks in a row that need the per-row path make the reader give up the fast path)
    for k, bad in enumerate(AWKWARD_LINES):
        lines.insert(40 * (k + 1), bad)
    lines.insert(len(lines) - 30, META_LINE)
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(b"\n".join(lines) + (b"\n" if rng.random() < 0.5 else b""))
    spec = {"id_field": "id" if ids else None, "label_field": "label" if label else None,
            "keep_meta": keep_meta, "max_text_bytes": 200}
    spec = {k: v for k, v in spec.items() if v is not None}
    kw = dict(monkeypatch=monkeypatch, chunk=2048, batch_rows=37)
    fast_tables, fast_rejects, taken = read_all(path, spec, fast=True, **kw)
    slow_tables, slow_rejects, _ = read_all(path, spec, fast=False, **kw)

    assert taken > 3, "the fast path should read the clean blocks"
    assert [t.num_rows if t is not None else 0 for t in fast_tables] == [t.num_rows if t is not None else 0 for t in slow_tables]
    for f, s in zip(fast_tables, slow_tables):
        if s is not None:
            assert f.schema == s.schema
            assert f.to_pylist() == s.to_pylist()
    as_rows = lambda ts: [r for t in ts if t is not None for r in t.to_pylist()]  # noqa: E731
    assert as_rows(fast_rejects) == as_rows(slow_rejects)
    # every awkward line that is not a clean row was rejected with its line number
    assert len(as_rows(slow_rejects)) >= 15


def test_a_clean_corpus_is_read_by_the_fast_path_and_publishes_the_same_bytes(tmp_path, monkeypatch, run):
    rng = random.Random(7)
    path = tmp_path / "clean.jsonl"
    path.write_bytes(b"".join(clean_line(i, rng, ids=None, label=None) + b"\n" for i in range(3000)))
    config = {"dataset": "clean", "inputs": [{"path": "clean.jsonl"}], "execution": {"batch_rows": 500},
              "steps": [{"dedup": {"exact": True, "near": False}}]}
    taken = []
    real_read = jsonl_arrow.ArrowJsonl.read
    monkeypatch.setattr(jsonl_arrow.ArrowJsonl, "read",
                        lambda self, b, f: taken.append(1) or real_read(self, b, f))
    fast = run(config, store=tmp_path / "fast")
    assert taken, "a clean JSONL corpus should take the fast path"
    monkeypatch.setattr(jsonl_arrow.ArrowJsonl, "usable", staticmethod(lambda b: False))
    slow = run(config, store=tmp_path / "slow")
    assert fast.version.id == slow.version.id
    files = sorted(p.relative_to(fast.version.path) for p in fast.version.path.rglob("*.parquet"))
    assert files
    for rel in files:
        assert (fast.version.path / rel).read_bytes() == (slow.version.path / rel).read_bytes(), rel


def test_a_blank_line_and_two_objects_on_one_line_do_not_cancel_out(tmp_path, monkeypatch):
    # Arrow skips the blank line and reads two rows from the other: the row count alone matches
    path = tmp_path / "compensating.jsonl"
    path.write_bytes(b'{"text": "first"}\n\n{"text": "second"} {"text": "third"}\n{"text": "fourth"}\n')
    kw = dict(monkeypatch=monkeypatch, chunk=1 << 20, batch_rows=100)
    tables, rejects, taken = read_all(path, {}, fast=True, **kw)
    assert taken == 0
    assert [t for t in tables if t is not None][0].column("text").to_pylist() == ["first", "fourth"]
    reasons = [(r["reason"], r["source"]) for t in rejects if t is not None for r in t.to_pylist()]
    assert reasons == [("blank_line", "compensating.jsonl:2"), ("malformed_json", "compensating.jsonl:3")]


def meta_line(i: int, rng: random.Random, shape: str) -> bytes:
    row = {"zone": rng.choice(["eu-west", 'quo"te', "back\\slash", "new\nline", "tab\there", "\u00e9t\u00e9",
                           "back\x08space", "form\x0cfeed", "cr\rlf", "slash/\x7f"]),
           "text": f"{REAL_TEXTS[i % len(REAL_TEXTS)]} #{i}", "id": f"r{i}", "votes": rng.randrange(-5, 10**12),
           "ok": rng.random() < 0.5, "score": rng.random() + 0.001, "\u00fcber key": "x"}
    if i == 250:
        row["zone"] = "control \x01 character"  # orjson writes \u0001: this row's block takes the per-row path
    if shape == "integral_float":
        row["score"] = float(rng.randrange(3))
    elif shape == "nested":
        row["tags"] = {"a": [1, 2]}
    elif shape == "sometimes_missing" and i % 7 == 0:
        del row["ok"]
    keys = list(row)
    rng.shuffle(keys)  # key order varies per row; meta's keys are sorted either way
    return json.dumps({k: row[k] for k in keys}, ensure_ascii=rng.random() < 0.5).encode()


@pytest.mark.parametrize("shape", ["flat", "integral_float", "nested", "sometimes_missing"])
def test_meta_is_written_as_the_per_row_path_writes_it(tmp_path, monkeypatch, shape):
    rng = random.Random(shape)
    path = tmp_path / "meta.jsonl"
    lines = [meta_line(i, rng, shape) for i in range(300)]
    path.write_bytes(b"\n".join(lines) + b"\n")
    kw = dict(monkeypatch=monkeypatch, chunk=4096, batch_rows=50)
    fast_tables, _, taken = read_all(path, {"id_field": "id"}, fast=True, **kw)
    slow_tables, _, _ = read_all(path, {"id_field": "id"}, fast=False, **kw)
    fast_rows = [r for t in fast_tables if t is not None for r in t.to_pylist()]
    assert fast_rows == [r for t in slow_tables if t is not None for r in t.to_pylist()]
    assert len(fast_rows) == 300
    meta = json.loads(fast_rows[0]["meta"])
    assert list(meta) == sorted(meta) and "text" not in meta and "id" not in meta
    if shape == "flat":
        assert taken > 5, "flat scalar meta fields should be assembled by the fast path"
    else:
        assert taken == 0, f"{shape} meta needs the per-row path"
