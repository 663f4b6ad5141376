"""corpusmill refresh: new rows only, dedup against the parent, splits inherited, removals, diff."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from corpusmill.cli import main
from corpusmill.pipelines.refresh import refresh
from corpusmill.store import Store
from tests.conftest import REAL_TEXTS, write_jsonl

TOPICS = ["billing", "login", "shipping", "crash"]


def _rows(n, offset=0, prefix="r"):
    return [{"id": f"{prefix}{i}", "text": f"{REAL_TEXTS[i % 10]} Case number {i} about {TOPICS[i % 4]} and item {i * 7}.",
             "label": TOPICS[i % 4]} for i in range(offset, offset + n)]


def _where(version):
    out = {}
    for split in version.splits():
        for rid in version.read_split(split, columns=["id"]).column("id").to_pylist():
            out[rid] = split
    return out


PIPELINE = {"dataset": "tickets", "seed": 3,
            "inputs": [{"path": "raw/base.jsonl", "id_field": "id", "label_field": "label"}],
            "steps": [{"clean": {}}, {"dedup": {"exact": True, "near": {"threshold": 0.7}}},
                      {"split": {"ratios": {"train": 0.6, "validation": 0.2, "test": 0.2}}}]}


@pytest.fixture
def parent(tmp_path, run):
    write_jsonl(tmp_path / "raw" / "base.jsonl", _rows(600))
    return run(PIPELINE)


def test_refresh_adds_new_rows_dedups_against_parent_and_keeps_splits(tmp_path, parent):
    store = Store(tmp_path / "store")
    before = _where(parent.version)
    test_row = next(i for i, s in before.items() if s == "test")
    test_text = parent.version.read_split("test").to_pylist()
    test_text = next(r["text"] for r in test_text if r["id"] == test_row)
    new = _rows(40, offset=1000, prefix="n")
    new.append({"id": "copy", "text": test_text.upper(), "label": "billing"})  # exact copy of a test row
    new.append({"id": "twin", "text": test_text.replace("Case number", "Case no."), "label": "billing"})  # near twin
    new.append({"id": "r5", "text": "A different text that reuses an old id.", "label": "login"})
    write_jsonl(tmp_path / "raw" / "new.jsonl", new)
    result = refresh(store, "tickets", [tmp_path / "raw" / "new.jsonl"])
    v = result.version
    m = v.manifest
    assert m["parent"] == parent.version.ref
    after = _where(v)
    # every old row keeps its split; the new rows are there; duplicates of old rows are not
    assert all(after[i] == s for i, s in before.items())
    assert {f"n{i}" for i in range(1000, 1040)} <= after.keys()
    assert "copy" not in after and "twin" not in after
    rejects = v.read_rejects().to_pylist()
    why = {r["id"]: r for r in rejects if r["id"] in ("copy", "twin", "r5")}
    assert why["copy"]["reason"] == "exact_duplicate" and why["copy"]["duplicate_of"] == test_row
    assert why["twin"]["reason"] == "near_duplicate" and why["twin"]["duplicate_of"] == test_row
    assert why["r5"]["reason"] == "duplicate_id"
    # only the new rows went through the stages
    added = m["refresh"]["added"]
    assert added["rows_in"] == 43 and added["kept"] == 40
    clean = next(s for s in added["stages"] if s["name"] == "clean")
    assert clean["in"] == 42
    # accounting across the lineage
    assert m["counts"]["input"] == 643
    assert m["counts"]["kept"] == parent.manifest["counts"]["kept"] + 40
    assert sum(m["splits"].values()) == m["counts"]["kept"]
    # the merged version has its own report and card, describing all its rows
    assert "report.html" not in m["files"] and (v.path / "card.md").is_file()
    assert f"{m['counts']['kept']:,}" in (v.path / "report.html").read_text()
    # the merged index covers old and new rows, so a second refresh dedups against both
    write_jsonl(tmp_path / "raw" / "again.jsonl", [{"id": "again", "text": _rows(1, offset=1003)[0]["text"], "label": "x"}])
    second = refresh(store, v.ref, [tmp_path / "raw" / "again.jsonl"])
    rej = [r for r in second.version.read_rejects().to_pylist() if r["id"] == "again"]
    assert rej and rej[0]["duplicate_of"] == "n1003"
    assert second.manifest["parent"] == v.ref


def test_refresh_is_deterministic(tmp_path, parent):
    store = Store(tmp_path / "store")
    write_jsonl(tmp_path / "raw" / "new.jsonl", _rows(30, offset=2000, prefix="n"))
    a = refresh(store, parent.version.ref, [tmp_path / "raw" / "new.jsonl"])
    b = refresh(store, parent.version.ref, [tmp_path / "raw" / "new.jsonl"], workers=2)
    assert a.version.id == b.version.id and b.created is False
    # the same again in a fresh store, with 2 workers: same id, same bytes
    other = Store(tmp_path / "store2")
    shutil_copy = __import__("shutil").copytree
    shutil_copy(tmp_path / "store" / "tickets" / "versions" / parent.version.id,
                tmp_path / "store2" / "tickets" / "versions" / parent.version.id)
    c = refresh(other, parent.version.ref, [tmp_path / "raw" / "new.jsonl"], workers=2)
    assert c.version.id == a.version.id
    fa = {k: e["sha256"] for k, e in a.manifest["files"].items()}
    fc = {k: e["sha256"] for k, e in c.manifest["files"].items()}
    assert fa == fc


def test_refreshed_report_reads_only_the_new_files_text(tmp_path, parent, monkeypatch):
    """The merged version links the parent's data files, whose text facts the parent's report
    cached: its report decodes the text of the new run's files only, and says the same as a
    report drawn with an empty cache."""
    from corpusmill.report import facts, write_version_docs

    store = Store(tmp_path / "store")
    write_jsonl(tmp_path / "raw" / "new.jsonl", _rows(50, offset=3000, prefix="n"))
    seen = []
    real = facts.TextFacts.of.__func__

    def counting(cls, text, keys):
        seen.append(len(text))
        return real(cls, text, keys)

    monkeypatch.setattr(facts.TextFacts, "of", classmethod(counting))
    v = refresh(store, parent.version.ref, [tmp_path / "raw" / "new.jsonl"]).version
    new_files = [f for s in v.splits() for f in v.data_files(s) if f.name not in
                 {g.name for t in parent.version.splits() for g in parent.version.data_files(t)}]
    assert new_files and sum(seen) == sum(pq.read_metadata(f).num_rows for f in new_files) == 50
    html = (v.path / "report.html").read_text(encoding="utf-8")
    monkeypatch.setenv("CORPUSMILL_CACHE", str(tmp_path / "empty-cache"))
    assert write_version_docs(v)[0].read_text(encoding="utf-8") == html


def test_near_twin_inherits_split_without_near_dedup(tmp_path, run):
    """Exact dedup only: a new near twin is kept, and lands in its old twin's split."""
    write_jsonl(tmp_path / "raw" / "base.jsonl", _rows(400))
    cfg = {**PIPELINE, "steps": [{"dedup": {"exact": True}}, {"split": {}}]}
    p = run(cfg)
    before = _where(p.version)
    old = {r["id"]: r["text"] for r in p.version.read_split("test").to_pylist()}
    twins = [{"id": f"tw-{i}", "text": t + " Thanks.", "label": "x"} for i, t in old.items()]
    write_jsonl(tmp_path / "raw" / "new.jsonl", twins + _rows(200, offset=5000, prefix="n"))
    v = refresh(Store(tmp_path / "store"), "tickets", [tmp_path / "raw" / "new.jsonl"]).version
    after = _where(v)
    assert all(after[f"tw-{i}"] == "test" for i in old)  # never in train
    assert all(after[i] == s for i, s in before.items())
    fresh = [after[f"n{i}"] for i in range(5000, 5200)]
    assert 0.6 < fresh.count("train") / len(fresh) < 0.95  # new groups are split by the ratios
    split_stage = next(s for s in v.manifest["refresh"]["added"]["stages"] if s["name"] == "split")
    assert split_stage["counters"]["rows_joining_inherited_groups"] == len(old)


def test_row_linking_two_splits_is_rejected(tmp_path, run):
    write_jsonl(tmp_path / "raw" / "base.jsonl", [
        {"id": f"a{i}", "text": t, "doc": f"doc{i}"} for i, t in enumerate(REAL_TEXTS)])
    cfg = {"dataset": "tickets", "inputs": [{"path": "raw/base.jsonl", "id_field": "id"}],
           "steps": [{"split": {"group_by": "doc", "ratios": {"train": 0.5, "test": 0.5}}}]}
    p = run(cfg)
    where = _where(p.version)
    a = next(i for i, s in where.items() if s == "train")
    b = next(i for i, s in where.items() if s == "test")
    doc_b = f"doc{b[1:]}"
    texts = dict(enumerate(REAL_TEXTS))
    # same text as a train row (its cluster) and same document as a test row
    write_jsonl(tmp_path / "raw" / "new.jsonl", [{"id": "bridge", "text": texts[int(a[1:])], "doc": doc_b},
                                                 {"id": "ok", "text": "A brand new ticket about refunds.", "doc": doc_b}])
    v = refresh(Store(tmp_path / "store"), "tickets", [tmp_path / "raw" / "new.jsonl"]).version
    rej = {r["id"]: r for r in v.read_rejects().to_pylist()}
    assert rej["bridge"]["reason"] == "split_conflict"
    assert a in rej["bridge"]["detail"] and b in rej["bridge"]["detail"]
    # "ok" shares the document with the bridge, so it is linked to both old rows through it
    assert rej["ok"]["reason"] == "split_conflict"
    assert v.manifest["refresh"]["added"]["kept"] == 0


def test_remove_ids_and_replace_a_row(tmp_path, parent):
    store = Store(tmp_path / "store")
    before = _where(parent.version)
    old_text = {r["id"]: r["text"] for s in parent.version.splits() for r in parent.version.read_split(s).to_pylist()}
    (tmp_path / "gone.txt").write_text("r1\nr2\n\nnot-there\n")
    # r2 comes back corrected (same text, new label): its old fingerprints must not block it
    write_jsonl(tmp_path / "raw" / "new.jsonl", [{"id": "r2", "text": old_text["r2"], "label": "shipping"}])
    v = refresh(store, parent.version.ref, [tmp_path / "raw" / "new.jsonl"], remove=tmp_path / "gone.txt").version
    after = _where(v)
    assert "r1" not in after and after["r2"] == before["r2"]
    row = next(r for r in v.read_split(after["r2"]).to_pylist() if r["id"] == "r2")
    assert row["label"] == "shipping"
    m = v.manifest
    assert m["refresh"]["removed"]["rows"] == 2 and m["refresh"]["removed"]["ids_not_found"] == 1
    rej = [r for r in v.read_rejects().to_pylist() if r["reason"] == "removed"]
    assert sorted(r["id"] for r in rej) == ["r1", "r2"]
    assert m["counts"]["kept"] == parent.manifest["counts"]["kept"] - 2 + 1
    # the parent is untouched
    assert _where(Store(tmp_path / "store").resolve(parent.version.ref)) == before


def test_cli_refresh_prints_reference_last(tmp_path, parent, capsys):
    write_jsonl(tmp_path / "raw" / "new.jsonl", _rows(5, offset=3000, prefix="n"))
    code = main(["refresh", "tickets@latest", "--add", str(tmp_path / "raw" / "new.jsonl"),
                 "--store", str(tmp_path / "store"), "--tag", "r1", "--workers", "1"])
    assert code == 0
    ref = capsys.readouterr().out.strip().splitlines()[-1]
    v = Store(tmp_path / "store").resolve("tickets@r1")
    assert ref == v.ref and v.manifest["parent"] == parent.version.ref


def test_diff_shows_what_the_refresh_did_and_drift(tmp_path, parent, capsys):
    store = Store(tmp_path / "store")
    same = _rows(60, offset=4000, prefix="n")  # more of the same kind
    shifted = [{"id": f"s{i}", "label": "refund",
                "text": f"Kundennummer {i}: die Rückerstattung für Bestellung {i * 13} ist seit Wochen überfällig, "
                        f"bitte überweisen Sie den Betrag von {i} Euro endlich auf mein Konto."} for i in range(60)]
    write_jsonl(tmp_path / "raw" / "same.jsonl", same)
    write_jsonl(tmp_path / "raw" / "shifted.jsonl", shifted)
    (tmp_path / "gone.txt").write_text("r7\n")
    a = refresh(store, parent.version.ref, [tmp_path / "raw" / "same.jsonl"], remove=tmp_path / "gone.txt").version
    b = refresh(store, parent.version.ref, [tmp_path / "raw" / "shifted.jsonl"]).version
    code = main(["datasets", "diff", parent.version.ref, a.ref, "--store", str(tmp_path / "store"), "--json"])
    assert code == 0
    da = json.loads(capsys.readouterr().out)
    assert da["refresh"]["added_kept"] == 60 and da["refresh"]["removed"] == 1
    assert sum(s["added"] for s in da["splits"].values()) == 60
    assert sum(s["removed"] for s in da["splits"].values()) == 1
    main(["datasets", "diff", parent.version.ref, b.ref, "--store", str(tmp_path / "store"), "--json"])
    db = json.loads(capsys.readouterr().out)
    # the shifted rows: a label never seen, other words, longer texts; the same kind: little drift
    assert db["drift"]["label"]["unseen_values"] == ["refund"] and db["drift"]["label"]["total_variation"] == 1.0
    assert da["drift"]["label"]["total_variation"] < 0.1
    assert db["drift"]["ngrams"]["1gram"]["new_share_added"] > 0.5 > da["drift"]["ngrams"]["1gram"]["new_share_added"]
    assert db["drift"]["length"]["chars_added"]["p50"] > da["drift"]["length"]["chars_added"]["p50"]
    # and readable on a terminal
    main(["datasets", "diff", parent.version.ref, b.ref, "--store", str(tmp_path / "store")])
    text = capsys.readouterr().out
    assert "new rows read 60, kept 60" in text and "values not in the old rows: refund" in text


def test_old_index_is_loaded_once_while_the_map_phase_runs(tmp_path, parent, monkeypatch):
    """dedup's `against` index and split's inherited index are loaded by the stages' prepare(),
    on a thread while the new rows are mapped, once each; an error there is the run's error."""
    import threading

    from corpusmill.dataprep import dedup, split
    from corpusmill.errors import CorpusmillError

    calls = []
    for module, cls in ((dedup, "_OldIndex"), (split, "_Inherited")):
        original = getattr(module, cls).load.__func__
        klass = getattr(module, cls)

        def load(kls, stage, _original=original, _name=cls):
            calls.append((_name, threading.current_thread() is threading.main_thread()))
            return _original(kls, stage)
        monkeypatch.setattr(klass, "load", classmethod(load))
    write_jsonl(tmp_path / "raw" / "new.jsonl", _rows(30, offset=2000, prefix="n"))
    store = Store(tmp_path / "store")
    refresh(store, "tickets", [tmp_path / "raw" / "new.jsonl"])
    assert sorted(calls) == [("_Inherited", False), ("_OldIndex", False)]

    def broken(kls, stage):
        raise CorpusmillError("the index of tickets@x cannot be read")
    monkeypatch.setattr(dedup._OldIndex, "load", classmethod(broken))
    write_jsonl(tmp_path / "raw" / "other.jsonl", _rows(5, offset=3000, prefix="m"))
    with pytest.raises(CorpusmillError, match="cannot be read"):
        refresh(store, "tickets", [tmp_path / "raw" / "other.jsonl"])
