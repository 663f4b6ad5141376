"""`corpusmill augment preview` shows source rows beside their new rows, from the store."""

from __future__ import annotations

import json

from corpusmill.cli import main
from tests.conftest import REAL_TEXTS, write_jsonl


def test_preview_pairs_sources_with_their_new_rows(tmp_path, run, capsys):
    rows = [{"id": f"r{i}", "text": f"{REAL_TEXTS[i % 10]} Ticket {i} came from office {i % 3}.", "label": f"l{i % 2}"}
            for i in range(40)]
    write_jsonl(tmp_path / "d.jsonl", rows)
    res = run({"dataset": "p", "inputs": [{"path": "d.jsonl", "id_field": "id", "label_field": "label"}],
               "steps": [{"split": {}}, {"augment": {"augmenters": [{"kind": "eda", "n": 2},
                                                                   {"kind": "sentence_shuffle", "name": "shuffle"}]}}]})
    store = str(tmp_path / "store")
    assert main(["augment", "preview", "--dataset", res.version.ref, "--store", store, "-n", "3", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    texts = {r["id"]: r["text"] for r in rows}
    assert len(report["examples"]) == 3 and report["new_rows"] == res.manifest["stages"][-1]["counters"]["new_rows"]
    for ex in report["examples"]:
        assert ex["text"] == texts[ex["id"]] and ex["variants"]
        for v in ex["variants"]:
            assert v["id"].startswith(ex["id"] + "~") and v["text"] != ex["text"]
    assert set(report["by_augmenter"]) == {"eda", "shuffle"}
    args = ["augment", "preview", "--dataset", res.version.ref, "--store", store, "--augmenter", "shuffle"]
    assert main(args + ["--json"]) == 0
    only = json.loads(capsys.readouterr().out)
    assert only["by_augmenter"] == {"shuffle": report["by_augmenter"]["shuffle"]}
    assert {v["augmenter"] for ex in only["examples"] for v in ex["variants"]} == {"shuffle"}
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "augment preview" in out and "before" in out and "after" in out and only["examples"][0]["id"] in out
    # a version without an augment step says so
    plain = run({"dataset": "q", "inputs": [{"path": "d.jsonl", "id_field": "id"}], "steps": [{"split": {}}]})
    assert main(["augment", "preview", "--dataset", plain.version.ref, "--store", store]) != 0
    assert "augment" in capsys.readouterr().err
