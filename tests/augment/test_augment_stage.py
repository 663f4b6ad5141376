"""The augment stage in real pipelines: only training rows grow, held-out splits are untouched,
every new row carries its provenance, leaks and copies are rejected with a reason, caps hold,
and the bytes do not depend on the worker count."""

from __future__ import annotations

import json

import pytest

from corpusmill.errors import CorpusmillError
from tests.conftest import REAL_TEXTS, write_jsonl

TOPICS = ["billing", "login", "shipping", "crash"]


def _tickets(n):
    return [{"id": f"r{i}", "label": TOPICS[i % 4],
             "text": f"{REAL_TEXTS[i % 10]} Customer {i} wrote about {TOPICS[i % 4]} from office {i % 7}."}
            for i in range(n)]


def _by_id(version, split):
    return {r["id"]: r for r in version.read_split(split).to_pylist()}


def _cfg(steps, **extra):
    return {"dataset": "t", "inputs": [{"path": "d.jsonl", "id_field": "id", "label_field": "label"}],
            "steps": steps, **extra}


def test_only_training_rows_grow_and_new_rows_carry_provenance(tmp_path, run):
    write_jsonl(tmp_path / "d.jsonl", _tickets(80))
    plain = run(_cfg([{"split": {}}]), store=tmp_path / "plain")
    aug = run(_cfg([{"split": {}}, {"augment": {"augmenters": [{"kind": "eda", "n": 4}, {"kind": "char_keyboard"}],
                                                "max_per_row": 3}}]))
    for split in ("validation", "test"):  # held-out splits: the same rows, the same texts
        before, after = _by_id(plain.version, split), _by_id(aug.version, split)
        assert before.keys() == after.keys() and before
        assert all(after[i]["text"] == before[i]["text"] and after[i]["augmented_from"] is None for i in before)
    train_before = _by_id(plain.version, "train")
    train = _by_id(aug.version, "train")
    new = {i: r for i, r in train.items() if i not in train_before}
    assert set(train_before) <= set(train) and len(new) > len(train_before)
    per_source = {}
    for i, r in new.items():
        src = train_before[r["augmented_from"]]  # every new row comes from a training row
        assert i.startswith(f"{src['id']}~{r['augmenter']}-")
        assert r["label"] == src["label"] and r["text"] != src["text"]
        params = json.loads(r["augment_params"])
        assert params["kind"] == r["augmenter"] and ("op" in params) == (r["augmenter"] == "eda")
        per_source[src["id"]] = per_source.get(src["id"], 0) + 1
    assert max(per_source.values()) <= 3
    assert {r["augmenter"] for r in new.values()} == {"eda", "char_keyboard"}  # round-robin under the cap
    m = aug.manifest
    c = m["counts"]
    assert c["input"] + c["added"] == c["kept"] + sum(sum(r.values()) for r in c["rejected"].values())
    st = next(s for s in m["stages"] if s["name"] == "augment")
    assert st["in"] + st["added"] == st["kept"] + sum(st["rejected"].values())
    assert st["kept"] - st["in"] == len(new) == st["counters"]["new_rows"]
    assert m["label_counts"]["train"] != plain.manifest["label_counts"]["train"]
    rejects = [r for r in aug.version.read_rejects().to_pylist() if r["stage"] == "augment"]
    assert len(rejects) == st["added"] - len(new) and all(r["reason"] and r["detail"] and r["augmented_from"] for r in rejects)


def _with_known_splits(run, steps, rows):
    from corpusmill.pipelines.registry import STAGES, register_stage
    from tests.dataprep.split_by_field import SplitByField

    STAGES.pop("split_by_field", None)
    register_stage(SplitByField)
    try:
        return run(_cfg([{"split_by_field": {"field": "part"}}] + steps))
    finally:
        STAGES.pop("split_by_field", None)


def _rejects(result):
    return {r["id"]: r for r in result.version.read_rejects().to_pylist() if r["stage"] == "augment"}


def test_new_rows_that_copy_held_out_rows_are_rejected(tmp_path, run):
    rows = [
        {"id": "tr1", "part": "train", "label": "a", "text": "The disk was full. The backup job failed."},
        {"id": "te1", "part": "test", "label": "a", "text": "The backup job failed. The disk was full."},
        {"id": "tr2", "part": "train", "label": "b", "text": "Please reset my password. The link expired."},
    ]
    write_jsonl(tmp_path / "d.jsonl", rows)
    r = _with_known_splits(run, [{"augment": {"augmenters": [{"kind": "sentence_shuffle", "n": 6}], "max_per_row": 0}}], rows)
    rej = _rejects(r)
    leaked = [x for x in rej.values() if x["reason"] == "exact_duplicate_of_heldout"]
    assert leaked and all(x["duplicate_of"] == "te1" and x["augmented_from"] == "tr1" for x in leaked)
    # the other swap of tr2 is one new row; its repeats are exact duplicates of it; no-ops are unchanged
    kept_new = [x for x in r.version.read_split("train").to_pylist() if x["augmented_from"]]
    assert [x["text"] for x in kept_new] == ["The link expired. Please reset my password."]
    assert {x["reason"] for x in rej.values()} == {"exact_duplicate_of_heldout", "exact_duplicate", "augment_unchanged"}
    dup = [x for x in rej.values() if x["reason"] == "exact_duplicate"]
    assert all(x["duplicate_of"] == kept_new[0]["id"] for x in dup)
    assert _by_id(r.version, "test")["te1"]["text"] == rows[1]["text"]


LONG = ("Our team cannot log in since the update this morning and the error page says 403 forbidden while the "
        "mobile app keeps asking for a password that was changed last week by the administrator of the account "
        "who is now on holiday until the end of the month")


def test_near_copies_of_held_out_rows_and_of_each_other_are_rejected(tmp_path, run):
    rows = [{"id": "tr", "part": "train", "label": "a", "text": LONG},
            {"id": "te", "part": "test", "label": "a", "text": LONG + " again"}]
    write_jsonl(tmp_path / "d.jsonl", rows)
    keyboard = {"kind": "char_keyboard", "aug_word_p": 0.05, "n": 3}
    r = _with_known_splits(run, [{"augment": {"augmenters": [keyboard], "near": 0.5}}], rows)
    rej = _rejects(r)
    assert len(rej) == 3 and {x["reason"] for x in rej.values()} == {"near_duplicate_of_heldout"}
    assert all(x["duplicate_of"] == "te" and 0.5 <= x["similarity"] < 1 for x in rej.values())

    rows[1]["text"] = "Something else entirely about invoices and a refund that never arrived."
    write_jsonl(tmp_path / "d.jsonl", rows)
    r = _with_known_splits(run, [{"augment": {"augmenters": [keyboard], "near": 0.5}}], rows)
    rej = _rejects(r)
    kept = [x["id"] for x in r.version.read_split("train").to_pylist() if x["augmented_from"]]
    assert len(kept) == 1 and len(rej) == 2
    assert all(x["reason"] == "near_duplicate" and x["duplicate_of"] == kept[0] for x in rej.values())
    r = _with_known_splits(run, [{"augment": {"augmenters": [keyboard], "near": 0.5, "distinct_near": False}}], rows)
    assert sum(1 for x in r.version.read_split("train").to_pylist() if x["augmented_from"]) == 3


def test_caps_per_row_and_per_dataset(tmp_path, run):
    write_jsonl(tmp_path / "d.jsonl", _tickets(60))
    eda = {"kind": "eda", "n": 6}
    r = run(_cfg([{"split": {}}, {"augment": {"augmenters": [eda], "max_per_row": 2, "max_new_rows": 25}}]))
    train = r.version.read_split("train").to_pylist()
    new = [x for x in train if x["augmented_from"]]
    assert len(new) == 25
    assert max(sum(1 for x in new if x["augmented_from"] == s) for s in {x["augmented_from"] for x in new}) <= 2
    reasons = {x["reason"] for x in _rejects(r).values()}
    assert {"over_row_cap", "over_dataset_cap"} <= reasons
    r = run(_cfg([{"split": {}}, {"augment": {"augmenters": [eda], "max_ratio": 0.5}}]))
    originals = sum(1 for x in r.version.read_split("train").to_pylist() if not x["augmented_from"])
    assert r.manifest["splits"]["train"] - originals == int(0.5 * originals)


def test_same_bytes_whatever_the_worker_count_and_batch_size(tmp_path, run):
    rows = _tickets(240)
    write_jsonl(tmp_path / "d.jsonl", rows)
    steps = [{"split": {}}, {"augment": {"augmenters": [{"kind": "eda", "n": 2}, {"kind": "char_random", "action": "swap"}]}}]
    small = {"shard_bytes": 8192}
    one = run(_cfg(steps, execution=small), store=tmp_path / "a", workers=1)
    two = run(_cfg(steps, execution=small), store=tmp_path / "b", workers=2)
    assert one.manifest["shards"] >= 3
    assert one.version.id == two.version.id
    data = lambda m: {k: v["sha256"] for k, v in m["files"].items() if not k.startswith("index")}
    assert data(one.manifest) == data(two.manifest)
    # another batch size is another version (new rows follow their batch), with the same rows
    batched = run(_cfg(steps, execution={**small, "batch_rows": 7}), store=tmp_path / "c")
    for split in ("train", "test"):
        rows_of = lambda v: sorted(v.read_split(split).to_pylist(), key=lambda x: x["id"])
        assert rows_of(one.version) == rows_of(batched.version)


def test_augment_needs_splits_and_valid_options(tmp_path, run):
    write_jsonl(tmp_path / "d.jsonl", _tickets(10))
    with pytest.raises(CorpusmillError, match="put a `split` step before `augment`"):
        run(_cfg([{"augment": {"augmenters": [{"kind": "eda"}]}}]))
    from corpusmill.errors import ConfigError

    with pytest.raises(ConfigError) as err:
        run(_cfg([{"split": {}}, {"augment": {"augmenters": [{"kind": "eda"}, {"kind": "eda", "alpha": 0.9},
                                                             {"kind": "thesaurus"}], "near": 2}}]))
    msg = str(err.value)
    assert "alpha" in msg and "thesaurus" in msg
    # a missing WordNet is reported before any row is read, with how to install it
    from corpusmill.augment.wordnet import WordNetMissing

    with pytest.raises(WordNetMissing, match="wordnet-base"):
        run(_cfg([{"split": {}}, {"augment": {"augmenters": [{"kind": "eda", "wordnet_dir": "no-wordnet-here"}]}}]),
            store=tmp_path / "fresh")
    assert not any((tmp_path / "fresh").rglob("*.parquet"))


def test_a_version_derived_from_an_augmented_one_keeps_the_accounting(tmp_path, run):
    from corpusmill.derive import publish_removal
    from corpusmill.store import Store

    write_jsonl(tmp_path / "d.jsonl", _tickets(40))
    res = run(_cfg([{"split": {}}, {"augment": {"augmenters": [{"kind": "sentence_shuffle"}]}}]))
    new_id = next(r["id"] for r in res.version.read_split("train").to_pylist() if r["augmented_from"])
    store = Store(tmp_path / "store")
    fixed, created = publish_removal(store, res.version, "t", "audit_fix",
                                     {"train": {new_id: {"reason": "leaked_exact", "detail": "test"}}}, {})
    c = fixed.manifest["counts"]
    assert created and c["added"] == res.manifest["counts"]["added"] and c["kept"] == res.manifest["counts"]["kept"] - 1
    assert c["input"] + c["added"] == c["kept"] + sum(sum(r.values()) for r in c["rejected"].values())
