"""The ``mix`` stage: caps, floors, weights and temperature sampling reach their targets within
one row per group, repeats are counted as added rows, held-out splits pass untouched, the choice
is the same on any worker count, and bad options stop the run before anything runs."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pyarrow as pa
import pytest

from corpusmill.cli import main
from corpusmill.errors import ConfigError
from tests.conftest import write_jsonl

WORDS = "river stone maple cloud lantern harbor copper meadow violet ember falcon orchard".split()


def _text(i: int, words: int = 6) -> str:
    """A distinct sentence per i (no two rows are near twins)."""
    picks = [WORDS[(i * 7 + k * 5 + i // 12) % len(WORDS)] for k in range(words)]
    return f"row {i} says " + " ".join(picks) + f" {i * 7919 % 10007}"


def _rows(sizes: dict[str, int], field: str = "label", start: int = 0, prefix: str = "r") -> list[dict]:
    rows, i = [], start
    for group, n in sizes.items():
        for _ in range(n):
            row = {"id": f"{prefix}{i:04d}", "text": _text(i), field: group}
            rows.append(row)
            i += 1
    return rows


def _pipeline(steps: list[dict], *, label: bool = True, files: str = "rows*.jsonl", extra: dict | None = None) -> dict:
    inp = {"path": files, "id_field": "id"}
    if label:
        inp["label_field"] = "label"
    return {"dataset": "mixed", "inputs": [inp], "steps": steps, **(extra or {})}


def _kept(result) -> list[dict]:
    return result.version.read_split("all").to_pylist()


def _rejects(result) -> list[dict]:
    t = result.version.read_rejects()
    return t.to_pylist() if t is not None else []


def _count(rows, key) -> dict:
    out: dict = {}
    for r in rows:
        k = key(r)
        out[k] = out.get(k, 0) + 1
    return out


def _meta(r, name):
    return json.loads(r["meta"])[name]


def _stage(result, name="mix") -> dict:
    return next(s for s in result.manifest["stages"] if s["name"] == name)


def test_caps_keep_at_most_n_per_group_and_say_which_group(tmp_path, run):
    write_jsonl(tmp_path / "rows.jsonl", _rows({"ops": 30, "billing": 10, "app": 5}))
    result = run(_pipeline([{"mix": {"max_per": {"label": 8}}}]))
    assert _count(_kept(result), lambda r: r["label"]) == {"ops": 8, "billing": 8, "app": 5}
    rejects = _rejects(result)
    assert _count(rejects, lambda r: (r["reason"], r["label"])) == {("over_cap", "ops"): 22, ("over_cap", "billing"): 2}
    ops = next(r for r in rejects if r["label"] == "ops")
    assert ops["stage"] == "mix" and ops["detail"].startswith("label=ops: 30 rows, max_per.label 8 keeps 8")
    c = result.manifest["counts"]
    assert c["input"] == 45 and c["kept"] == 21 and c["rejected"] == {"mix": {"over_cap": 24}}


def test_weights_reach_their_shares_within_one_row_and_floors_bring_rows_back(tmp_path, run):
    rows = _rows({"forum": 50, "docs": 50, "wiki": 7}, field="src")
    write_jsonl(tmp_path / "rows.jsonl", rows)
    mix = {"weights": {"meta.src": {"forum": 0.2, "docs": 0.8}}}
    result = run(_pipeline([{"mix": mix}], label=False))
    got = _count(_kept(result), lambda r: _meta(r, "src"))
    # down-sampling only: the largest total both groups can fill is 50 / 0.8 = 62 rows
    assert abs(got["forum"] - 62 * 0.2) <= 1 and abs(got["docs"] - 62 * 0.8) <= 1
    assert sum(got.values()) == 62 and "wiki" not in got  # not listed: weight 0
    reasons = _count(_rejects(result), lambda r: (r["reason"], _meta(r, "src")))
    assert reasons == {("downsampled", "forum"): 50 - got["forum"], ("downsampled", "wiki"): 7}
    detail = next(r["detail"] for r in _rejects(result) if _meta(r, "src") == "forum")
    assert detail.startswith(f"meta.src=forum: target {got['forum']} of its 50 rows (share 0.2000 of 62 by weights.meta.src)")

    floored = run(_pipeline([{"mix": {**mix, "min_per": {"meta.src": 20}}}], label=False), name="floor.yaml")
    got = _count(_kept(floored), lambda r: _meta(r, "src"))
    assert got == {"forum": 20, "docs": 50, "wiki": 7}
    assert _stage(floored)["counters"]["floor_restored"] == 20 - 12 + 7


def test_min_per_with_upsample_repeats_a_small_group_up_to_its_floor(tmp_path, run):
    write_jsonl(tmp_path / "rows.jsonl", _rows({"ops": 12, "app": 3}))
    result = run(_pipeline([{"mix": {"min_per": {"label": 10}, "upsample": True}}]))
    kept = _kept(result)
    assert _count(kept, lambda r: r["label"]) == {"ops": 12, "app": 10}
    assert result.manifest["counts"]["added"] == 7 and _stage(result)["added"] == 7


def _shares(sizes: dict[str, int], alpha: float) -> dict[str, float]:
    z = sum(n ** alpha for n in sizes.values())
    return {g: n ** alpha / z for g, n in sizes.items()}


def test_temperature_sampling_gives_the_expected_shares_of_three_languages(tmp_path, run):
    sizes = {"en": 100, "de": 30, "ga": 10}
    write_jsonl(tmp_path / "rows.jsonl", _rows(sizes, field="lang"))
    # up-sampling keeps the total (140) and repeats the small languages: 75 / 41 / 24 rows
    result = run(_pipeline([{"mix": {"alpha": {"meta.lang": 0.5}, "upsample": True}}], label=False))
    kept = _kept(result)
    got = _count(kept, lambda r: _meta(r, "lang"))
    want = _shares(sizes, 0.5)
    assert sum(got.values()) == 140
    for g in sizes:
        assert abs(got[g] - 140 * want[g]) <= 1, (g, got, want)
    assert got == {"en": 75, "de": 41, "ga": 24}
    # accounting: rows in + added = kept + rejected, the repeats are marked
    c, st = result.manifest["counts"], _stage(result)
    assert c["input"] + c["added"] == c["kept"] + sum(sum(r.values()) for r in c["rejected"].values())
    assert st["added"] == (41 - 30) + (24 - 10) == st["counters"]["repeats"]
    assert st["rejected"] == {"downsampled": 25}
    ids = [r["id"] for r in kept]
    assert len(ids) == len(set(ids))
    originals = {r["id"]: r for r in kept if r["repeat_of"] is None}
    repeats = [r for r in kept if r["repeat_of"] is not None]
    assert len(repeats) == 25
    for r in repeats:
        src = originals[r["repeat_of"]]
        assert r["id"].startswith(src["id"] + "~r") and r["text"] == src["text"] and r["meta"] == src["meta"]
    # every one of the 10 ga rows is there, 4 of them three times (2 repeats), the rest twice
    assert sorted(_count([r for r in kept if _meta(r, "lang") == "ga"], lambda r: r["repeat_of"] or r["id"]).values()) \
        == [2] * 6 + [3] * 4


def test_temperature_sampling_without_upsample_only_cuts(tmp_path, run):
    sizes = {"en": 100, "de": 30, "ga": 10}
    write_jsonl(tmp_path / "rows.jsonl", _rows(sizes, field="lang"))
    result = run(_pipeline([{"mix": {"alpha": {"meta.lang": 0.3}}}], label=False))
    got = _count(_kept(result), lambda r: _meta(r, "lang"))
    want = _shares(sizes, 0.3)
    total = sum(got.values())
    assert got["ga"] == 10 and total == int(10 / want["ga"])  # the smallest language binds
    for g in sizes:
        assert abs(got[g] - total * want[g]) <= 1
    assert "added" not in result.manifest["counts"] and "repeat_of" not in _kept(result)[0]


def test_max_rows_and_order_by_keep_the_best_scored_rows(tmp_path, run):
    rows = [{"id": f"r{i:03d}", "text": _text(i, words=3 + i % 17), "label": "a" if i % 3 else "b"} for i in range(60)]
    write_jsonl(tmp_path / "rows.jsonl", rows)
    steps = [{"quality": {"preset": "annotate"}}, {"mix": {"max_rows": 20, "order_by": "q_word_count"}}]
    result = run(_pipeline(steps))
    kept, rejects = _kept(result), _rejects(result)
    assert len(kept) == 20 and {r["reason"] for r in rejects} == {"downsampled"}
    assert min(r["q_word_count"] for r in kept) >= max(r["q_word_count"] for r in rejects)
    assert rejects[0]["detail"] == "max_rows 20: 60 rows, kept by highest q_word_count first"


def test_only_the_training_split_is_mixed_and_held_out_splits_keep_their_rows(tmp_path, run):
    write_jsonl(tmp_path / "rows.jsonl", _rows({"ops": 120, "billing": 30, "app": 10}))
    split = {"split": {"ratios": {"train": 0.8, "validation": 0.1, "test": 0.1}, "near": False}}
    plain = run(_pipeline([split]), name="plain.yaml", store=tmp_path / "plain")
    mixed = run(_pipeline([split, {"mix": {"max_per": {"label": 20}}}]))
    assert mixed.manifest["config"]["steps"][1]["mix"]["splits"] == ["train"]  # resolved default
    for s in ("validation", "test"):
        assert mixed.version.read_split(s).to_pylist() == plain.version.read_split(s).to_pylist()
    train = mixed.version.read_split("train").to_pylist()
    counts = _count(train, lambda r: r["label"])
    assert counts["ops"] == 20 and counts["billing"] == 20 and counts["app"] <= 10
    assert {r["split"] for r in _rejects(mixed)} == {"train"}
    assert _stage(mixed)["counters"]["rows_passed_through"] == sum(plain.manifest["splits"][s] for s in ("validation", "test"))


def test_the_same_version_and_bytes_on_one_and_two_workers(tmp_path, run):
    rows = _rows({"en": 90, "de": 40, "ga": 12}, field="lang")
    for k in range(3):  # three files: three shards
        write_jsonl(tmp_path / f"rows{k}.jsonl", rows[k::3])
    mix = {"alpha": {"meta.lang": 0.3}, "upsample": True, "max_rows": 150, "max_per": {"meta.lang": 80}}
    a = run(_pipeline([{"mix": mix}], label=False), workers=1, store=tmp_path / "s1")
    b = run(_pipeline([{"mix": mix}], label=False), workers=2, store=tmp_path / "s2")
    assert a.version.id == b.version.id

    def digests(v):
        return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted((v.path / "data").glob("*.parquet"))}

    assert digests(a.version) == digests(b.version) and len(digests(a.version)) == 3
    assert len(_kept(a)) == 150
    seeded = run(_pipeline([{"mix": mix}], label=False, extra={"seed": 7}), store=tmp_path / "s3")
    assert {r["id"] for r in _kept(seeded)} != {r["id"] for r in _kept(a)}  # the seed picks other rows


@pytest.mark.parametrize("mix, message", [
    ({"max_per": {"lang": 5}}, "mix max_per: the rows have no column 'lang' at this step"),
    ({"alpha": {"label": 0.3}, "order_by": "q_word_count"}, "mix order_by: the rows have no column 'q_word_count'"),
    ({"max_per": {"label": 5}, "splits": ["train"]}, "needs a split step before mix"),
])
def test_a_field_the_rows_lack_is_a_config_error_before_anything_runs(tmp_path, run, mix, message):
    write_jsonl(tmp_path / "rows.jsonl", _rows({"ops": 5}))
    with pytest.raises(ConfigError, match=message):
        run(_pipeline([{"mix": mix}]))


def test_bad_options_exit_2_with_every_problem_named(tmp_path, capsys):
    from tests.conftest import write_pipeline

    write_jsonl(tmp_path / "rows.jsonl", _rows({"ops": 5}))
    p = write_pipeline(tmp_path / "p.yaml", _pipeline([{"mix": {"max_per": {"lang": 5}}}]))
    assert main(["run", str(p), "--store", str(tmp_path / "store")]) == 2
    err = capsys.readouterr().err
    assert "no column 'lang'" in err and "a language step before mix adds lang" in err and "Traceback" not in err
    p = write_pipeline(tmp_path / "q.yaml", _pipeline([{"mix": {"weights": {"label": {"a": 1}}, "alpha": {"label": 0.3},
                                                               "max_repeats": 2}}]))
    assert main(["run", str(p), "--store", str(tmp_path / "store")]) == 2
    err = capsys.readouterr().err
    assert "set weights or alpha, not both" in err and "max_repeats limits upsample" in err


def test_preview_prints_the_groups_before_and_after_without_publishing(tmp_path, run, capsys):
    write_jsonl(tmp_path / "rows.jsonl", _rows({"ops": 30, "billing": 10, "app": 5}))
    base = run(_pipeline([{"clean": {}}]))
    store = tmp_path / "store"
    before = sorted(p.name for p in (store / "mixed" / "versions").iterdir())
    rc = main(["mix", "preview", "--dataset", base.version.ref, "--config", '{"max_per": {"label": 8}}',
               "--store", str(store)])
    out = capsys.readouterr().out
    assert rc == 0
    assert "45 rows" in out and "label" in out
    line = next(x for x in out.splitlines() if " ops " in x)
    assert "30" in line and "8" in line
    assert sorted(p.name for p in (store / "mixed" / "versions").iterdir()) == before
    rc = main(["mix", "preview", "--dataset", base.version.ref, "--config", '{"max_per": {"label": 8}}',
               "--store", str(store), "--json"])
    report = json.loads(capsys.readouterr().out)
    assert report["groups"]["label"][0] == {"group": "ops", "before": 30, "after": 8, "target": None}
    assert main(["mix", "preview", "--dataset", base.version.ref, "--config", '{"max_per": {"lang": 8}}',
                 "--store", str(store)]) == 2
    assert "no column 'lang'" in capsys.readouterr().err


def test_run_summary_warns_when_a_stratified_split_misses_its_tolerance(tmp_path, capsys):
    from tests.conftest import write_pipeline

    # 'app' has 3 rows: whole groups cannot be split 80/10/10
    write_jsonl(tmp_path / "rows.jsonl", _rows({"ops": 40, "app": 3}))
    split = {"split": {"ratios": {"train": 0.8, "validation": 0.1, "test": 0.1}, "stratify": "label", "near": False}}
    p = write_pipeline(tmp_path / "p.yaml", _pipeline([split]))
    assert main(["run", str(p), "--store", str(tmp_path / "store")]) == 0
    err = " ".join(capsys.readouterr().err.split())
    assert "warning: split step 'split': a label value is" in err
    assert "off its split ratio, more than tolerance 0.02" in err


def test_repeats_never_take_a_group_above_its_cap(tmp_path, run):
    # 10 rows per label; every ga row is 'poems': temperature sampling wants 24 ga rows, the cap allows 15
    rows = _rows({"en": 100, "de": 30, "ga": 10}, field="lang")
    for i, r in enumerate(rows):
        r["label"] = "poems" if r["lang"] == "ga" else f"l{i // 10}"
    write_jsonl(tmp_path / "rows.jsonl", rows)
    result = run(_pipeline([{"mix": {"alpha": {"meta.lang": 0.5}, "upsample": True, "max_per": {"label": 15}}}]))
    kept = _kept(result)
    labels = _count(kept, lambda r: r["label"])
    assert labels["poems"] == 15 and max(labels.values()) == 15
    assert _count(kept, lambda r: _meta(r, "lang")) == {"en": 75, "de": 41, "ga": 15}  # ga stays short
    c = result.manifest["counts"]
    assert c["input"] + c["added"] == c["kept"] + sum(sum(r.values()) for r in c["rejected"].values())


def test_preview_of_a_pipeline_mixes_its_inputs_as_read_and_says_so(tmp_path, capsys):
    from tests.conftest import write_pipeline

    write_jsonl(tmp_path / "rows.jsonl", _rows({"ops": 30, "billing": 10, "app": 5}))
    split = {"split": {"ratios": {"train": 0.8, "test": 0.2}, "near": False}}
    p = write_pipeline(tmp_path / "p.yaml", _pipeline([split, {"mix": {"max_per": {"label": 8}}}]))
    assert main(["mix", "preview", "--pipeline", str(p), "--store", str(tmp_path / "store"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert "the 1 step(s) before 'mix' are not applied" in report["note"]
    assert report["config"]["splits"] == "all" and report["counters"]["rows_out"] == 8 + 8 + 5
    assert not (tmp_path / "store").exists()
