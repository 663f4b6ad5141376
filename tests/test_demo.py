"""The demo's corpus builder reads fortune files (blocks separated by '%') into labelled JSONL."""

from __future__ import annotations

import json

from corpusmill.demo import build_fortunes_corpus, read_fortune_file
from corpusmill.pipelines import run_pipeline


def _fake_fortunes(root):
    (root / "de").mkdir(parents=True)
    (root / "es" / "off").mkdir(parents=True)
    (root / "science").write_text("Entropy isn't what it used to be.\n%\nIn theory, theory and practice agree.\n%\n")
    (root / "science.dat").write_bytes(b"\x00\x00binary index")
    (root / "de" / "murphy").write_text("Was schiefgehen kann, geht schief.\n%\nWas schiefgehen kann, geht schief.\n%\n\n%\n")
    (root / "es" / "off" / "rude").write_text("skipped: offensive section\n%\n")
    (root / "brasil").write_text("Quem tudo quer, tudo perde.\n%\n")


def test_read_fortune_file(tmp_path):
    p = tmp_path / "f"
    p.write_text("one\n  -- someone\n%\ntwo\n%\n")
    assert read_fortune_file(p) == ["one\n  -- someone", "two"]


def test_build_corpus_and_run_demo_pipeline(tmp_path):
    root = tmp_path / "fortunes"
    _fake_fortunes(root)
    counts = build_fortunes_corpus(tmp_path / "work" / "data", root)
    assert counts == {"en": 2, "de": 3, "pt": 1}
    rows = [json.loads(x) for x in (tmp_path / "work" / "data" / "fortunes-de.jsonl").read_text().splitlines()]
    assert rows[0] == {"text": "Was schiefgehen kann, geht schief.", "category": "murphy", "lang": "de", "file": "de/murphy"}
    from importlib import resources

    (tmp_path / "work" / "pipeline.yaml").write_text(
        resources.files("corpusmill.pipelines").joinpath("demo.yaml").read_text())
    result = run_pipeline(tmp_path / "work" / "pipeline.yaml", workers=1)
    m = result.manifest
    assert m["counts"]["input"] == 6
    assert m["counts"]["rejected"]["read"] == {"empty_text": 1}
    assert m["counts"]["rejected"]["dedup"] == {"exact_duplicate": 1}
    labels = [y for split in result.version.splits() for y in result.version.read_split(split).column("label").to_pylist()]
    assert sorted(labels) == ["brasil", "murphy", "science", "science"]
    assert set(result.version.splits()) <= {"train", "validation", "test"}  # demo_split (until the split stage lands)
    assert result.version.path.is_relative_to(tmp_path / "work" / "store")


def test_demo_split_is_stable_and_proportional(tmp_path):
    import pyarrow as pa

    from corpusmill.demo import DemoSplit, DemoSplitConfig
    from corpusmill.stage import BatchInfo, RunInfo

    batch = pa.table({"id": [f"row-{i}" for i in range(4000)], "text": ["x"] * 4000})
    stage = DemoSplit(DemoSplitConfig(validation=0.1, test=0.2), name="demo_split", run=RunInfo("d", seed=0))
    split = stage.process(batch, BatchInfo(0, 0)).kept.column("split").to_pylist()
    share = {s: split.count(s) / 4000 for s in ("train", "validation", "test")}
    assert abs(share["validation"] - 0.1) < 0.02 and abs(share["test"] - 0.2) < 0.02
    again = stage.process(batch.slice(1000, 10), BatchInfo(0, 1000)).kept.column("split").to_pylist()
    assert again == split[1000:1010]  # a row's split depends on its id only
