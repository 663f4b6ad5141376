"""Bad input never crashes a run and is never skipped silently: each bad row is a reject with
its reason, file and line, and input = kept + rejected."""

from __future__ import annotations

import gzip
import json

import pyarrow.parquet as pq

from tests.conftest import REAL_TEXTS


def test_mixed_bad_corpus_is_fully_accounted(tmp_path, run):
    raw = tmp_path / "raw"
    raw.mkdir()
    good = [json.dumps({"id": f"g{i}", "text": t}).encode() for i, t in enumerate(REAL_TEXTS)]
    lines = good[:5] + [
        b'{"id": "bad-json", "text": "unterminated',                    # line 6: malformed JSON
        b'{"id": "bad-utf8", "text": "caf\xe9 au lait"}',                # line 7: invalid UTF-8 (latin-1 byte)
        b'{"id": "nul", "text": "abc\\u0000def"}',                       # line 8: NUL in the text
        b'{"id": "empty", "text": "   "}',                               # line 9: empty text
        json.dumps({"id": "huge", "text": "word " * 1_000_000}).encode(),  # line 10: a 5 MB document
        b'{"id": "no-text", "body": "text is under another key"}',       # line 11: missing text field
        b'{"id": "numeric", "text": 12345}',                             # line 12: numeric text
        json.dumps({"id": "g0", "text": "a second row claiming id g0"}).encode(),  # line 13: duplicate id
        b"[1, 2, 3]",                                                    # line 14: not an object
    ] + good[5:]
    (raw / "mixed.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    # a gzip file cut in the middle
    full = gzip.compress(b"".join(json.dumps({"id": f"z{i}", "text": f"{REAL_TEXTS[i % 10]} ({i})"}).encode() + b"\n"
                                  for i in range(2000)), mtime=0)
    (raw / "cut.jsonl.gz").write_bytes(full[: len(full) // 2])

    result = run({"dataset": "mixed", "inputs": [{"path": "raw/*", "id_field": "id"}]})
    m = result.manifest
    rejected = m["counts"]["rejected"]
    assert rejected["read"] == {
        "empty_text": 1, "invalid_text_type": 1, "invalid_utf8": 1, "malformed_json": 1, "missing_text": 1,
        "not_an_object": 1, "nul_byte": 1, "too_large": 1, "truncated_file": 1,
    }
    assert rejected["unique_ids"] == {"duplicate_id": 1}
    total_rejected = sum(sum(r.values()) for r in rejected.values())
    assert m["counts"]["input"] == m["counts"]["kept"] + total_rejected
    # the rows of the cut gzip file that could be read are kept
    kept_gz = [s for s in result.version.read_split("all").column("source").to_pylist() if s.startswith("cut.jsonl.gz")]
    assert 0 < len(kept_gz) < 2000

    rej = result.version.read_rejects().to_pylist()
    by_reason = {r["reason"]: r for r in rej}
    assert by_reason["malformed_json"]["source"] == "mixed.jsonl:6"
    assert by_reason["invalid_utf8"]["source"] == "mixed.jsonl:7"
    assert by_reason["invalid_utf8"]["raw"] == lines[6]  # the raw bytes are kept: nothing is lost
    assert by_reason["too_large"]["source"] == "mixed.jsonl:10"
    assert len(by_reason["too_large"]["text"]) == 5_000_000
    assert "text_field" in by_reason["missing_text"]["detail"]
    assert by_reason["duplicate_id"]["text"] == "a second row claiming id g0"
    assert by_reason["duplicate_id"]["duplicate_of"] == "g0"
    assert by_reason["truncated_file"]["source"].startswith("cut.jsonl.gz:")
    assert all(r["detail"] for r in rej)
    # the kept g0 is the first one
    kept = {r["id"]: r["text"] for r in result.version.read_split("all").to_pylist()}
    assert kept["g0"] == REAL_TEXTS[0]
    # rejects are stored per stage in the version
    names = sorted(p.name for p in result.version.reject_files())
    assert names == ["read-00000.parquet", "read-00001.parquet", "unique_ids-00001.parquet"]
    assert sum(pq.read_metadata(p).num_rows for p in result.version.reject_files()) == total_rejected


def test_raising_the_size_limit_keeps_large_documents(tmp_path, run):
    from tests.conftest import write_jsonl

    write_jsonl(tmp_path / "big.jsonl", [{"text": "word " * 300_000}, {"text": "small"}])
    default = run({"dataset": "big", "inputs": [{"path": "big.jsonl"}]})
    assert default.manifest["counts"]["rejected"]["read"] == {"too_large": 1}
    raised = run({"dataset": "big", "inputs": [{"path": "big.jsonl", "max_text_bytes": 0}]})
    assert raised.manifest["counts"]["kept"] == 2


def test_generated_ids_of_identical_texts_stay_unique(tmp_path, run):
    from tests.conftest import write_jsonl

    write_jsonl(tmp_path / "d.jsonl", [{"text": "same words"}, {"text": "other"}, {"text": "same words"}])
    result = run({"dataset": "ids", "inputs": [{"path": "d.jsonl"}]})
    ids = result.version.read_split("all").column("id").to_pylist()
    assert len(set(ids)) == 3
    assert ids[2] == ids[0] + "-2"
    assert result.manifest["counts"]["kept"] == 3


def test_a_byte_order_mark_is_not_part_of_a_text_file(tmp_path, run):
    """Editors on Windows open UTF-8 files with a BOM: it is not the first row's text, in any unit."""
    bom = "\ufeff".encode()
    (tmp_path / "lines.txt").write_bytes(bom + "first line\nsecond line\n".encode())
    (tmp_path / "whole.txt").write_bytes(bom + "a whole file\nof two lines".encode())
    (tmp_path / "blocks.txt").write_bytes(bom + "block one\n\nblock two\n".encode())
    texts = {}
    for name, unit in (("lines", "line"), ("whole", "file"), ("blocks", "block")):
        r = run({"dataset": name, "inputs": [{"path": f"{name}.txt", "text_unit": unit}]})
        texts[name] = sorted(r.version.read_split("all").column("text").to_pylist())
    assert texts == {"lines": ["first line", "second line"], "whole": ["a whole file\nof two lines"],
                     "blocks": ["block one", "block two"]}
