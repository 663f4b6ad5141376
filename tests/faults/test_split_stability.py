"""Splits across versions: the same text stays in the same split, whichever copy is kept.

The case of issue 19: version 1 is built; version 2 adds rows that repeat texts already present,
in an input listed *earlier*, so ``dedup`` keeps the new copies (new ids) and rejects the old
rows. A split keyed by the kept row's id moved some of those texts from train to validation or
test; keyed by content, no text a model trained on in version 1 reaches version 2's held-out
splits, whether version 2 is a plain rebuild or a refresh.
"""

from __future__ import annotations

import json
import re
from collections import Counter

import pytest

from corpusmill.cli import main
from corpusmill.pipelines.refresh import refresh
from corpusmill.store import Store
from tests.conftest import REAL_TEXTS, write_jsonl

TOPICS = ["billing", "login", "shipping", "crash"]
HELD_OUT = ("validation", "test")


def _rows(n, offset=0, prefix="r"):
    return [{"id": f"{prefix}{i}", "text": f"{REAL_TEXTS[i % 10]} Case number {i} about {TOPICS[i % 4]}, item {i * 7}.",
             "label": TOPICS[i % 4]} for i in range(offset, offset + n)]


def norm(text: str) -> str:
    """The split's notion of the same text: case and whitespace ignored."""
    return re.sub(r"\s+", " ", text).strip().lower()


def texts_by_split(version) -> dict[str, str]:
    """normalised text -> split, over every split of ``version``."""
    return {norm(t): s for s in version.splits() for t in version.read_split(s, columns=["text"]).column("text").to_pylist()}


def pipeline(inputs, steps, dataset="tickets"):
    return {"dataset": dataset, "seed": 3, "inputs": [{"path": p, "id_field": "id", "label_field": "label"} for p in inputs],
            "steps": steps}


def repeats(rows, prefix="copy-"):
    """Every row again under a new id, the text with other case and spacing (the same normalised text)."""
    return [{**r, "id": prefix + r["id"], "text": "  " + r["text"].upper().replace(" ", "  ")} for r in rows]


def assert_nothing_leaked(v1, v2) -> None:
    before, after = texts_by_split(v1), texts_by_split(v2)
    trained = {t for t, s in before.items() if s == "train"}
    leaked = sorted(t for t in trained if after.get(t) in HELD_OUT)
    assert leaked == [], f"{len(leaked)} texts trained on in {v1.ref} are held out in {v2.ref}: {leaked[:3]}"
    moved = sorted(t for t, s in before.items() if t in after and after[t] != s)
    assert moved == []


@pytest.mark.parametrize("dedup", [{"exact": True}, {"exact": True, "near": {"threshold": 0.8}},
                                   {"exact": True, "duplicates": "group"}, None],
                         ids=["exact", "exact+near", "group", "no-dedup"])
def test_a_rebuild_with_earlier_copies_keeps_every_text_in_its_split(tmp_path, run, dedup):
    base = _rows(400)
    write_jsonl(tmp_path / "b.jsonl", base)
    steps = ([{"dedup": dedup}] if dedup else []) + [{"split": {}}]
    v1 = run(pipeline(["b.jsonl"], steps)).version
    # version 2: an input listed before the old one repeats half of its texts under new ids
    write_jsonl(tmp_path / "a.jsonl", repeats(base[::2]) + _rows(100, offset=1000, prefix="n"))
    r2 = run(pipeline(["a.jsonl", "b.jsonl"], steps))
    v2 = r2.version
    assert v2.id != v1.id
    if dedup and dedup.get("duplicates") != "group":
        kept = set(v2.ids().to_pylist())
        assert {f"copy-r{i}" for i in range(0, 400, 2)} <= kept  # the new copies are the kept rows
    assert_nothing_leaked(v1, v2)
    # nothing lost: every row is kept or rejected with its reason
    counts = r2.manifest["counts"]
    assert counts["input"] == 700
    assert counts["kept"] + sum(n for reasons in counts["rejected"].values() for n in reasons.values()) == 700


@pytest.mark.parametrize("dedup", [{"exact": True}, None], ids=["exact", "no-dedup"])
def test_a_refresh_with_copies_keeps_every_text_in_its_split(tmp_path, run, dedup):
    base = _rows(400)
    write_jsonl(tmp_path / "raw" / "base.jsonl", base)
    steps = ([{"dedup": dedup}] if dedup else []) + [{"split": {}}]
    v1 = run(pipeline(["raw/base.jsonl"], steps)).version
    write_jsonl(tmp_path / "raw" / "new.jsonl", repeats(base[::2]) + _rows(100, offset=1000, prefix="n"))
    v2 = refresh(Store(tmp_path / "store"), "tickets", [tmp_path / "raw" / "new.jsonl"]).version
    assert_nothing_leaked(v1, v2)
    assert v2.manifest["counts"]["input"] == 700


def diff_json(capsys, store, a, b) -> dict:
    assert main(["datasets", "diff", a, b, "--store", str(store), "--json", "--no-drift"]) == 0
    return json.loads(capsys.readouterr().out)


def test_diff_reports_texts_that_changed_split_by_content_not_id(tmp_path, run, capsys):
    """Two versions whose splits disagree about some texts kept under other ids: the id-based
    count sees nothing, the text-based report names each move, with examples and the ids."""
    base = _rows(300)
    write_jsonl(tmp_path / "b.jsonl", base)
    v1 = run(pipeline(["b.jsonl"], [{"split": {}}])).version
    # the same texts under new ids, split with another seed: many texts land elsewhere
    write_jsonl(tmp_path / "c.jsonl", repeats(base))
    v2 = run({**pipeline(["c.jsonl"], [{"split": {}}]), "seed": 4}).version
    d = diff_json(capsys, tmp_path / "store", v1.ref, v2.ref)
    assert d["moved_between_splits"] == 0  # no id is in both versions: the contract's field
    assert {"from", "to", "splits", "refresh"} <= d.keys()
    m = d["moved_texts"]
    before, after = texts_by_split(v1), texts_by_split(v2)
    truth = Counter((before[t], after[t]) for t in before if before[t] != after[t])
    assert m["texts_in_both"] == 300 and m["moved"] == sum(truth.values()) > 0
    assert {(x["from"], x["to"]): x["texts"] for x in m["moves"]} == dict(truth)
    assert m["held_out_after_train"] == sum(n for (src, dst), n in truth.items() if src == "train")
    example = m["moves"][0]["examples"][0]
    rid = example["ids_from"][0]
    assert example["ids_to"] == ["copy-" + rid] and norm(example["text"]) in before
    assert before[norm(example["text"])] == m["moves"][0]["from"]
    # printed: the counts per move, an example with its ids, and a warning for train texts held out
    assert main(["datasets", "diff", v1.ref, v2.ref, "--store", str(tmp_path / "store"), "--no-drift"]) == 0
    out = capsys.readouterr().out
    first = m["moves"][0]
    assert f"texts that changed split: {m['moved']} of the 300 texts in both versions" in out
    assert f"{first['from']} -> {first['to']} {first['texts']}" in out
    assert f"(ids {rid} -> copy-{rid})" in out
    assert f"warning: {m['held_out_after_train']} texts of {v1.ref}'s train split are in another split" in out


def test_diff_after_a_rebuild_with_earlier_copies_reports_no_moved_text(tmp_path, run, capsys):
    base = _rows(300)
    write_jsonl(tmp_path / "b.jsonl", base)
    steps = [{"dedup": {"exact": True}}, {"split": {}}]
    v1 = run(pipeline(["b.jsonl"], steps)).version
    write_jsonl(tmp_path / "a.jsonl", repeats(base[::3]))
    v2 = run(pipeline(["a.jsonl", "b.jsonl"], steps)).version
    d = diff_json(capsys, tmp_path / "store", v1.ref, v2.ref)
    assert d["moved_texts"]["texts_in_both"] == 300
    assert d["moved_texts"]["moved"] == 0 and d["moved_texts"]["moves"] == []
    assert main(["datasets", "diff", v1.ref, v2.ref, "--store", str(tmp_path / "store"), "--no-drift"]) == 0
    out = capsys.readouterr().out
    assert "texts that changed split: 0 of the 300 texts in both versions" in out and "warning" not in out
