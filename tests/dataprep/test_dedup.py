"""The dedup stage through the real pipeline: exact copies, light and heavy edits, unrelated
texts, empty and one-word documents, determinism across worker counts, keep policies,
partitioned band keys and incremental runs against an earlier version."""

from __future__ import annotations

import hashlib
import json
import random

import pyarrow as pa
import pytest

from corpusmill.errors import CorpusmillError
from corpusmill.stage import Stage, StageOutput
from tests.conftest import write_jsonl

PARAGRAPHS = [
    "The backup job failed again last night because the disk on the storage server was full. Nobody noticed "
    "until the morning shift arrived, and by then the nightly export had also been skipped for two days in a row.",
    "Please reset my password, the link in the welcome email has expired and the portal keeps telling me that my "
    "account is locked. I tried three different browsers and cleared the cookies, but nothing seems to help.",
    "Invoice 2231 was charged twice on my credit card this month. I contacted the bank and they confirmed both "
    "payments went through, so I would like the second charge refunded as soon as possible, thank you.",
    "The mobile app crashes whenever I open the settings page on my Android phone. It started after the last "
    "update; before that everything worked fine, and reinstalling the app did not change anything at all.",
    "Can you add a dark mode to the web dashboard? Working late in the evening with the bright white background "
    "is tiring, and most of the other tools our team uses already offer a darker theme for their users.",
    "Our whole team cannot log in since the update this morning. The error message says access denied with code "
    "403, even for the administrators, so we are completely blocked and cannot serve our own customers today.",
    "Shipping to Canada took three weeks, which is much longer than the five business days promised on the "
    "website. The parcel also arrived with a torn corner, although luckily the contents were not damaged.",
    "Thanks for the quick fix yesterday, everything works as expected now. The reports load in a few seconds "
    "instead of a minute, and the charts finally show the right totals for every region in the company.",
    "The export to CSV drops every row that contains a comma in the title field. Quoting the values would solve "
    "it, and it would also be nice to choose the delimiter and the character encoding before downloading.",
    "I would like to cancel my subscription at the end of the current billing period. Please confirm by email "
    "that no further payments will be taken and tell me how long my data will stay available afterwards.",
    "Our office printer shows a paper jam error although there is no paper stuck anywhere inside. We opened every "
    "tray and door twice, restarted it, and even updated the firmware, but the message keeps coming back.",
    "The search on your help center never finds articles when I type more than two words. Single words work, "
    "but longer questions return nothing, which makes it really hard to find answers without calling support.",
]
VOCAB = sorted({w.strip(".,?;") for p in PARAGRAPHS for w in p.split()})


def substitute(text: str, k: int, seed: int) -> str:
    """``text`` with ``k`` words replaced by other words of the corpus (fixed positions per seed)."""
    rng = random.Random(seed)
    words = text.split()
    for i in rng.sample(range(len(words)), k):
        words[i] = rng.choice([w for w in VOCAB if w.lower() != words[i].lower().strip(".,?;")])
    return " ".join(words)


def corpus() -> list[dict]:
    rows = [{"id": f"p{i:02d}", "text": t} for i, t in enumerate(PARAGRAPHS)]
    rows += [
        {"id": "exact-case", "text": PARAGRAPHS[0].upper()},
        {"id": "exact-space", "text": "  " + PARAGRAPHS[1].replace(" ", "   ") + "\n"},
        {"id": "light-1", "text": substitute(PARAGRAPHS[2], 1, seed=1)},
        {"id": "light-punct", "text": PARAGRAPHS[3].replace(",", "").replace(".", "!") + " Regards"},
        {"id": "light-2", "text": substitute(PARAGRAPHS[3], 1, seed=2)},  # joins p03 and light-punct
        {"id": "heavy", "text": substitute(PARAGRAPHS[4], 18, seed=3)},
        {"id": "empty-ish", "text": "!!! ???"},
        {"id": "empty-ish-2", "text": "!!!   ???"},
        {"id": "one-word", "text": "Thanks"},
        {"id": "one-word-2", "text": "thanks"},
        {"id": "one-word-3", "text": "Hello"},
    ]
    return rows


def near(**kw) -> dict:
    return {"threshold": 0.8, **kw}


def pipeline(path: str, dedup: dict, **extra) -> dict:
    return {"dataset": "tickets", "inputs": [{"path": path, "id_field": "id"}], "steps": [{"dedup": dedup}], **extra}


def rejects_by_id(result) -> dict:
    return {r["id"]: r for r in result.version.read_rejects().to_pylist()}


def test_exact_and_near_duplicates_leave_with_reasons(tmp_path, run, capfd):
    write_jsonl(tmp_path / "d.jsonl", corpus())
    result = run(pipeline("d.jsonl", {"exact": True, "near": near()}))
    rej = rejects_by_id(result)
    assert {k: (v["reason"], v["duplicate_of"]) for k, v in rej.items()} == {
        "exact-case": ("exact_duplicate", "p00"),
        "exact-space": ("exact_duplicate", "p01"),
        "light-1": ("near_duplicate", "p02"),
        "light-punct": ("near_duplicate", "p03"),
        "light-2": ("near_duplicate", "p03"),
        "empty-ish-2": ("exact_duplicate", "empty-ish"),  # no words: only exact dedup sees them
        "one-word-2": ("exact_duplicate", "one-word"),
    }
    assert rej["exact-case"]["similarity"] == 1.0
    for name in ("light-1", "light-punct", "light-2"):
        assert 0.8 <= rej[name]["similarity"] < 1.0
        assert "Jaccard" in rej[name]["detail"] and "shingle sets" in rej[name]["detail"]
    kept = result.version.read_split("all")
    assert "heavy" in kept.column("id").to_pylist()  # 18 of ~45 words changed: a different text
    assert kept.column("cluster_id").to_pylist() == kept.column("id").to_pylist()
    stage = result.manifest["stages"][-1]
    assert stage["rejected"] == {"exact_duplicate": 4, "near_duplicate": 3}
    lsh = stage["counters"]["lsh"]
    assert lsh["bands"] * lsh["rows"] <= 128 and set(lsh["s_curve"]) >= {"0.50", "0.80", "1.00"}
    assert stage["counters"]["near_clusters"] == 2
    err = capfd.readouterr().err
    assert f"{lsh['bands']} bands x {lsh['rows']} rows" in err and "expected miss rate" in err
    index = result.version.path / "index" / "dedup"
    meta = json.loads((index / "meta.json").read_text())
    assert meta["rows"] == kept.num_rows and meta["near"]["num_perm"] == 128


def test_worker_count_does_not_change_a_byte(tmp_path, run):
    rows = corpus() * 1
    rows += [{"id": f"x{i}", "text": substitute(PARAGRAPHS[i % 12], 1 + i % 3, seed=100 + i)} for i in range(40)]
    write_jsonl(tmp_path / "d.jsonl", rows)
    cfg = pipeline("d.jsonl", {"exact": True, "near": near()}, execution={"shard_bytes": 4096, "batch_rows": 7})
    one = run(cfg, workers=1, store=tmp_path / "s1")
    two = run(cfg, workers=2, store=tmp_path / "s2")
    assert one.manifest["shards"] > 2
    assert one.version.ref == two.version.ref

    def digests(version):
        return {str(p.relative_to(version.path)): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted(version.path.rglob("*.parquet"))}

    assert digests(one.version) == digests(two.version)
    assert one.manifest["counts"] == two.manifest["counts"]


def test_keep_longest_and_keep_quality(tmp_path, run):
    base = PARAGRAPHS[5]
    rows = [
        {"id": "short", "text": base, "score": 0.2},
        {"id": "long", "text": base + " Please hurry.", "score": 0.1},
        {"id": "best", "text": base.replace("today", "this week"), "score": 0.9},
    ]
    write_jsonl(tmp_path / "d.jsonl", rows)
    longest = run(pipeline("d.jsonl", {"near": near(threshold=0.7), "keep": "longest"}))
    assert longest.version.read_split("all").column("id").to_pylist() == ["long"]
    first = run(pipeline("d.jsonl", {"near": near(threshold=0.7)}))
    assert first.version.read_split("all").column("id").to_pylist() == ["short"]
    # the input's fields other than id and text land in meta, so no 'score' column yet
    with pytest.raises(CorpusmillError, match="no column 'score'"):
        run(pipeline("d.jsonl", {"near": near(threshold=0.7), "keep": "quality", "quality_column": "score"}))


class ScoreFromMeta(Stage):
    """A quality signal as an earlier stage would add it: meta's 'score' as a float column."""

    kind = "score_from_meta"

    def process(self, batch, info):
        scores = [json.loads(m)["score"] if m else None for m in batch.column("meta").to_pylist()]
        return StageOutput(batch.append_column("score", pa.array(scores, pa.float64())))


def test_keep_the_best_quality_signal(tmp_path, run, monkeypatch):
    from corpusmill.pipelines import registry

    monkeypatch.setitem(registry.STAGES, "score_from_meta", "tests.dataprep.test_dedup:ScoreFromMeta")
    base = PARAGRAPHS[5]
    write_jsonl(tmp_path / "d.jsonl", [
        {"id": "short", "text": base, "score": 0.2},
        {"id": "best", "text": base.replace("today", "this week"), "score": 0.9},
        {"id": "long", "text": base + " Please hurry.", "score": 0.1},
        {"id": "unrelated", "text": PARAGRAPHS[6], "score": 0.0},
    ])
    cfg = pipeline("d.jsonl", {"near": near(threshold=0.7), "keep": "quality", "quality_column": "score"})
    cfg["steps"].insert(0, {"score_from_meta": None})
    result = run(cfg)
    assert result.version.read_split("all").column("id").to_pylist() == ["best", "unrelated"]
    assert {r["id"]: r["duplicate_of"] for r in result.version.read_rejects().to_pylist()} == {"short": "best", "long": "best"}


def test_estimates_instead_of_verification(tmp_path, run):
    write_jsonl(tmp_path / "d.jsonl", corpus())
    result = run(pipeline("d.jsonl", {"exact": True, "near": near(verify=False)}))
    rej = rejects_by_id(result)
    assert rej["light-1"]["reason"] == "near_duplicate"
    assert "MinHash estimate" in rej["light-1"]["detail"]
    assert (rej["light-1"]["similarity"] * 128) == pytest.approx(round(rej["light-1"]["similarity"] * 128), abs=1e-3)


def test_char_shingles_and_explicit_bands(tmp_path, run):
    write_jsonl(tmp_path / "d.jsonl", corpus())
    result = run(pipeline("d.jsonl", {"exact": False, "near": near(shingle="char", ngram=5, bands=32, rows=4)}))
    lsh = result.manifest["stages"][-1]["counters"]["lsh"]
    assert (lsh["bands"], lsh["rows"], lsh["chosen"]) == (32, 4, "given")
    rej = rejects_by_id(result)
    # without exact dedup, case and spacing copies are near duplicates with similarity 1
    assert rej["exact-case"]["reason"] == "near_duplicate" and rej["exact-case"]["similarity"] == 1.0
    assert rej["light-1"]["duplicate_of"] == "p02"
    assert "heavy" not in rej and "p04" not in rej


def test_band_keys_partitioned_to_disk_give_the_same_decisions(tmp_path, run):
    rows = corpus() + [{"id": f"x{i}", "text": substitute(PARAGRAPHS[i % 12], 1 + i % 4, seed=i)} for i in range(60)]
    write_jsonl(tmp_path / "d.jsonl", rows)
    mem = run(pipeline("d.jsonl", {"near": near()}), store=tmp_path / "a")
    disk = run(pipeline("d.jsonl", {"near": near(memory_mb=0.001)}), store=tmp_path / "b")
    assert rejects_by_id(mem).keys() == rejects_by_id(disk).keys()
    assert [(r["id"], r["duplicate_of"]) for r in mem.version.read_rejects().to_pylist()] == \
           [(r["id"], r["duplicate_of"]) for r in disk.version.read_rejects().to_pylist()]
    assert len(rejects_by_id(mem)) > 20


def test_incremental_runs_compare_with_the_previous_version(tmp_path, run):
    write_jsonl(tmp_path / "v1.jsonl", [{"id": f"p{i:02d}", "text": t} for i, t in enumerate(PARAGRAPHS[:8])])
    store = tmp_path / "store"
    v1 = run(pipeline("v1.jsonl", {"exact": True, "near": near()}), store=store, name="v1.yaml")
    write_jsonl(tmp_path / "v2.jsonl", [
        {"id": "n-exact", "text": PARAGRAPHS[0].lower()},
        {"id": "n-near", "text": substitute(PARAGRAPHS[1], 1, seed=5)},
        {"id": "n-new", "text": PARAGRAPHS[9]},
        {"id": "n-new-copy", "text": substitute(PARAGRAPHS[9], 1, seed=6)},
        {"id": "n-other", "text": PARAGRAPHS[10]},
    ])
    cfg2 = pipeline("v2.jsonl", {"exact": True, "near": near(), "against": "tickets@latest", "keep": "longest"})
    cfg2["dataset"] = "tickets-v2"
    v2 = run(cfg2, store=store, name="v2.yaml")
    rej = rejects_by_id(v2)
    assert {k: (v["reason"], v["duplicate_of"]) for k, v in rej.items()} == {
        "n-exact": ("exact_duplicate", "p00"),  # old rows win, whatever the keep policy
        "n-near": ("near_duplicate", "p01"),
        "n-new-copy": ("near_duplicate", "n-new"),
    }
    assert "earlier version" in rej["n-near"]["detail"]
    counters = v2.manifest["stages"][-1]["counters"]
    assert counters["against"] == v1.version.ref and counters["duplicates_of_against"] == 2
    meta = json.loads((v2.version.path / "index" / "dedup" / "meta.json").read_text())
    assert meta["rows"] == 8 + 2  # the old index, linked in, and the two new rows kept
    # a third version sees the first one's rows through the second one's index
    write_jsonl(tmp_path / "v3.jsonl", [{"id": "m", "text": substitute(PARAGRAPHS[7], 1, seed=8)},
                                        {"id": "m2", "text": PARAGRAPHS[10] + " Thanks."}])
    cfg3 = pipeline("v3.jsonl", {"exact": True, "near": near(), "against": "tickets-v2"})
    cfg3["dataset"] = "tickets-v3"
    v3 = run(cfg3, store=store, name="v3.yaml")
    rej3 = rejects_by_id(v3)
    assert rej3["m"]["duplicate_of"] == "p07" and rej3["m2"]["duplicate_of"] == "n-other"


def test_a_moved_tag_is_a_new_version(tmp_path, run):
    store = tmp_path / "store"
    write_jsonl(tmp_path / "a.jsonl", [{"id": "a", "text": PARAGRAPHS[0]}])
    run(pipeline("a.jsonl", {"near": near()}), store=store, name="a.yaml")
    write_jsonl(tmp_path / "new.jsonl", [{"id": "n", "text": substitute(PARAGRAPHS[0], 1, seed=1)}])
    cfg = pipeline("new.jsonl", {"near": near(), "against": "tickets@latest"})
    cfg["dataset"] = "fresh"
    first = run(cfg, store=store, name="n.yaml")
    assert first.manifest["counts"]["kept"] == 0
    write_jsonl(tmp_path / "a.jsonl", [{"id": "b", "text": PARAGRAPHS[1]}])
    run(pipeline("a.jsonl", {"near": near()}), store=store, name="a.yaml")  # tickets@latest moves
    second = run(cfg, store=store, name="n.yaml")
    assert second.version.id != first.version.id and second.created
    assert second.manifest["counts"]["kept"] == 1


def test_config_mistakes_are_reported_before_running(tmp_path, run):
    write_jsonl(tmp_path / "d.jsonl", corpus()[:3])
    with pytest.raises(CorpusmillError) as err:
        run(pipeline("d.jsonl", {"near": {"bands": 20, "rows": 10}, "keep": "quality"}))
    text = str(err.value)
    assert "exceeds num_perm=128" in text and "quality_column" in text
    with pytest.raises(CorpusmillError, match="no dataset 'nowhere'"):
        run(pipeline("d.jsonl", {"near": True, "against": "nowhere@latest"}))
    other = run({"dataset": "plain", "inputs": [{"path": "d.jsonl", "id_field": "id"}]}, store=tmp_path / "s")
    with pytest.raises(CorpusmillError, match="no dedup index"):
        run(pipeline("d.jsonl", {"near": True, "against": "plain"}), store=tmp_path / "s")
    assert other.created
    run(pipeline("d.jsonl", {"near": True}), store=tmp_path / "s", name="x.yaml")
    with pytest.raises(CorpusmillError, match="other settings"):
        run(pipeline("d.jsonl", {"near": {"num_perm": 64}, "against": "tickets"}), store=tmp_path / "s")


def test_exact_then_near_as_two_steps(tmp_path, run):
    write_jsonl(tmp_path / "d.jsonl", corpus())
    cfg = pipeline("d.jsonl", {"exact": True})
    cfg["steps"].append({"dedup": {"exact": False, "near": near()}})
    result = run(cfg)
    rejected = result.manifest["counts"]["rejected"]
    assert rejected["dedup"] == {"exact_duplicate": 4} and rejected["dedup_2"] == {"near_duplicate": 3}
    kept = result.version.read_split("all")
    assert kept.column_names.count("cluster_id") == 1
    assert sorted(p.name for p in (result.version.path / "index").iterdir()) == ["dedup", "dedup_2"]


def test_column_major_joins_fixed_binary_parts_in_order():
    """Band keys of several index parts (chunks of any size, sliced too) become one matrix with
    the rows in order, stored band by band."""
    import numpy as np

    from corpusmill.dataprep.dedup import column_major, from_fixed_binary, to_fixed_binary

    rng = np.random.default_rng(3)
    parts = [rng.integers(0, 2**63, size=(n, 5), dtype=np.uint64) for n in (0, 3, 4096, 5000, 9000)]
    arrays = [to_fixed_binary(p) for p in parts]
    columns = [pa.chunked_array(arrays[:2]), arrays[2], pa.chunked_array([arrays[3].slice(0, 2500), arrays[3].slice(2500)]),
               arrays[4]]
    got = column_major(columns, np.uint64)
    assert got.shape == (18099, 5) and got.flags["F_CONTIGUOUS"]
    assert np.array_equal(got, np.concatenate(parts))
    assert np.array_equal(from_fixed_binary(arrays[4].slice(10, 7), np.uint64), parts[4][10:17])
