"""report.html and card.md: written for every version (run and derived), from the version's own
files, self-contained, and rendered by headless Chromium without a console message."""

from __future__ import annotations

import hashlib
import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
import yaml

from corpusmill.cli import main
from corpusmill.derive import publish_removal
from corpusmill.report.facts import leakage_matrix
from corpusmill.store import Store
from tests.report.chromium import png_facts, render
from tests.report.corpus import every_stage_pipeline, write_corpus


@pytest.fixture
def every_stage(tmp_path, run):
    write_corpus(tmp_path)
    return run(every_stage_pipeline())


def _no_remote_references(html: str) -> None:
    assert not re.search(r"<(script|link|iframe|object|embed)\b", html, re.I)
    assert "@import" not in html and "url(" not in html
    for attr, value in re.findall(r'\b(src|href)="([^"]*)"', html):
        assert value.startswith("#") or value.startswith("data:"), (attr, value)
    # the only URL left is the SVG namespace, which names the format and is never fetched
    assert set(re.findall(r"https?://[^\s\"'<>]+", html)) <= {"http://www.w3.org/2000/svg"}


def test_a_version_with_every_stage_gets_a_report_with_every_plot(every_stage, tmp_path):
    v = every_stage.version
    m = every_stage.manifest
    html = (v.path / "report.html").read_text(encoding="utf-8")
    _no_remote_references(html)
    # every stage kind ran, and each plot the issue names is there
    kinds = [next(iter(s)) for s in m["config"]["steps"]]
    assert kinds == ["clean", "language", "pii", "quality", "dedup", "select", "decontaminate", "split"]
    for anchor in ("pipeline", "lengths", "languages", "dedup", "splits", "signals", "rejects", "provenance"):
        assert f'id="{anchor}"' in html, anchor
    for title in ("rows per stage", "text length", "languages", "cluster sizes", "MinHash S-curve", "labels per split",
                  "leakage matrix", "quality rules"):
        assert f'aria-label="{title}"' in html, title
    # each plot comes with a sentence on how to read it
    assert html.count('<p class="how">') >= 10
    # one bar per stage in the waterfall, labelled with what it kept
    for st in m["stages"]:
        assert f">{st['name']}: kept {st['kept']:,}</title>" in html
    # sample rejected rows: every (stage, reason) of the manifest, with rows that really are its rejects
    rejects = v.read_rejects().to_pylist()
    for stage, reasons in m["counts"]["rejected"].items():
        for reason, n in reasons.items():
            summary = f"<b>{stage}</b>: {reason}, {n:,} rows</summary>"
            assert summary in html, summary
            block = html.split(summary, 1)[1].split("</details>", 1)[0]
            ids = {r["id"] or r["source"] for r in rejects if r["stage"] == stage and r["reason"] == reason}
            shown = set(re.findall(r'<tr><td>([^<]*)</td>', block))
            assert shown and shown <= ids, (stage, reason, shown)
    # the leakage matrix of this deduplicated, cluster-split version is zero off the diagonal
    assert "Rows leaking across splits: 0." in html


def test_card_is_a_dataset_card_with_provenance(every_stage, tmp_path):
    v = every_stage.version
    m = every_stage.manifest
    text = (v.path / "card.md").read_text(encoding="utf-8")
    _, header, body = text.split("---\n", 2)
    meta = yaml.safe_load(header)
    assert meta["license"] == "cc-by-4.0"
    assert meta["language"] == ["de", "en"]  # the French row was rejected, 'und' is not a language
    assert meta["size_categories"] == ["n<1K"] and m["counts"]["kept"] < 1000
    assert meta["task_categories"] == ["text-classification"]
    # the configs point at the data files the version holds
    for entry in meta["configs"][0]["data_files"]:
        assert sorted(v.path.glob(entry["path"])) == v.data_files(entry["split"])
    assert {e["split"] for e in meta["configs"][0]["data_files"]} == set(m["splits"])
    # provenance: the input file's real checksum, its license and source, the counts, the steps
    digest = hashlib.sha256((tmp_path / "raw" / "tickets.jsonl").read_bytes()).hexdigest()
    assert f"`{digest}` | cc-by-4.0 | written for the corpusmill tests |" in body
    assert f"{m['counts']['input']:,} rows read, {m['counts']['kept']:,} kept" in body
    assert "Support tickets in English and German" in body
    assert "- decontaminate:" in body and "## Known limitations" in body
    assert "no license" not in body


def test_unknown_license_is_warned_in_card_report_and_show(tmp_path, run, capsys):
    write_corpus(tmp_path)
    cfg = every_stage_pipeline()
    cfg["steps"] = [{"clean": {}}]
    cfg["inputs"] = [{**cfg["inputs"][0], "license": None}, {"path": "bench/quiz.jsonl", "text_field": "question",
                                                             "license": "mit"}]
    r = run(cfg)
    card = (r.version.path / "card.md").read_text(encoding="utf-8")
    assert yaml.safe_load(card.split("---\n")[1])["license"] == "unknown"
    assert "Input 'raw/tickets.jsonl' has no license" in card and "**unknown**" in card
    assert "input 'bench/quiz.jsonl' has no license" not in card.lower()
    assert "input &#x27;raw/tickets.jsonl&#x27; has no license" in (r.version.path / "report.html").read_text()
    assert main(["datasets", "show", r.version.ref, "--store", str(tmp_path / "store")]) == 0
    out = capsys.readouterr().out
    assert "warning: input 'raw/tickets.jsonl' has no license" in out
    # a license for the whole pipeline covers inputs without their own
    cfg["license"] = "apache-2.0"
    r2 = run(cfg)
    card2 = (r2.version.path / "card.md").read_text(encoding="utf-8")
    assert yaml.safe_load(card2.split("---\n")[1])["license"] == "apache-2.0" and "has no license" not in card2


def test_leakage_matrix_counts_shared_texts_between_and_within_splits():
    text = pa.array(["Reset my password", "The app crashes", " reset  my\tPASSWORD ", "Card charged twice",
                     "Card charged twice", "Shipping is slow"])
    m = leakage_matrix(text, np.array([0, 0, 2, 2, 2, 1]), ["train", "validation", "test"])
    assert m["rows"] == {"train": 2, "validation": 1, "test": 3}
    assert m["matrix"] == [[0, 0, 1],   # text in train: one test row repeats it (case and spaces aside)
                           [0, 0, 0],
                           [1, 0, 2]]   # text in test: one train row; within test the twin rows


def test_leakage_key_collapses_whitespace_like_arrow_split_and_join():
    """The numpy whitespace collapse gives the keys of Arrow's split-and-join, for every kind of
    whitespace Arrow knows (ASCII and Unicode), in any position, on sliced and chunked input."""
    from corpusmill.report.facts import _normalised_text

    spaces = [chr(c) for c in (9, 10, 11, 12, 13, 28, 29, 30, 31, 32, 0x85, 0xA0, 0x1680, *range(0x2000, 0x200B),
                               0x2028, 0x2029, 0x202F, 0x205F, 0x3000)]
    lookalikes = ["\u200b", "\u2019", "\u201c", "\u2026", "\u00e9", "\u00ab", "\u3001", "\u1a00",
                  "\x07", "\x1b", "\x0e", "\x00"]  # not whitespace
    rng = np.random.default_rng(7)
    words = ["Tere", "ÉCOLE", "naïve", "Straße", "日本語", "x", "", "Ünïcode", *lookalikes]
    texts = [None, "", " ", "\u3000", "A  b", "  lead", "trail\t\n", "a\u00a0\u00a0b", "\u00c2\u00a0x", "end\u00c2"]
    for _ in range(400):
        parts = rng.choice(words, size=rng.integers(0, 8)).tolist()
        glue = [("".join(rng.choice(spaces, size=rng.integers(1, 4)).tolist()) if rng.random() < 0.8 else "")
                for _ in parts]
        texts.append("".join(g + p for g, p in zip(glue, parts)) + ("".join(rng.choice(spaces, 2)) if rng.random() < 0.3 else ""))
    arr = pa.array(texts, pa.string())
    col = pa.chunked_array([arr.slice(0, 150), arr.slice(150, 7), arr.slice(157)])
    want = pc.binary_join(pc.utf8_split_whitespace(pc.utf8_trim_whitespace(pc.utf8_lower(col))), " ")
    got = _normalised_text(col)
    assert got.to_pylist() == want.to_pylist()
    assert got.to_pylist()[4] == "a b" and got.to_pylist()[7] == "a b"


def test_key_hashes_tell_keys_apart_whatever_the_layout():
    from corpusmill.report.facts import key_hashes

    keys = ["reset my password", "", None, "reset my password", "日本語 テキスト", "reset my passwore"]
    small = pa.array(keys, pa.string())
    h = key_hashes(small)
    assert h.dtype == np.uint64 and len(h) == len(keys)
    assert h[0] == h[3] and h[2] == 0 and len({int(x) for x in h[[0, 1, 4, 5]]}) == 4
    # large offsets, slices and chunks give the same values row for row
    chunked = pa.chunked_array([small.slice(0, 2), small.slice(2)])
    assert (key_hashes(small.cast(pa.large_string())) == h).all() and (key_hashes(chunked) == h).all()
    assert (key_hashes(small.slice(3, 2)) == h[3:5]).all()


def test_text_facts_are_cached_by_file_checksum_and_give_the_same_report(every_stage, monkeypatch):
    """The second report of a version reads no text: each data file's lengths and leakage key
    hashes come from the cache, named by the file's sha256, and the figures are the same. A broken
    entry is computed again."""
    from corpusmill.report import facts, write_version_docs

    v = every_stage.version
    first = facts.gather(v)  # the run's report already filled the cache
    shas = [v.manifest["files"][f"data/{f.name}"]["sha256"] for s in v.splits() for f in v.data_files(s)]
    cached = sorted(p.stem for p in facts.TextFacts.folder().glob("*.arrow"))
    assert set(shas) <= set(cached)
    html = (v.path / "report.html").read_text(encoding="utf-8")

    def no_text(*_a, **_k):
        raise AssertionError("a cached file's text was read")

    with monkeypatch.context() as mp:
        mp.setattr(facts.TextFacts, "of", no_text)
        again = facts.gather(v)
        assert write_version_docs(v)[0].read_text(encoding="utf-8") == html
    assert again == first and first.leakage is not None and first.lengths["rows_after"] == v.manifest["counts"]["kept"]
    # a truncated entry and a garbage one are recomputed, with the same figures
    entry = facts.TextFacts.folder() / f"{shas[0]}.arrow"
    entry.write_bytes(b"not arrow")
    for other in shas[1:]:
        table = pa.ipc.open_file(pa.memory_map(str(facts.TextFacts.folder() / f"{other}.arrow"))).read_all()
        pa.ipc.new_file(str(facts.TextFacts.folder() / f"{other}.arrow"), table.schema).close()
    assert facts.gather(v) == first
    assert pa.ipc.open_file(pa.memory_map(str(entry))).read_all().num_rows > 0  # and written again


def test_text_facts_without_a_writable_cache_still_give_the_report(every_stage, monkeypatch, tmp_path):
    from corpusmill.report import facts

    v = every_stage.version
    want = facts.gather(v)
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder would go")
    monkeypatch.setenv("CORPUSMILL_CACHE", str(blocker))
    assert facts.gather(v) == want


def test_report_is_a_function_of_the_version(tmp_path, run):
    write_corpus(tmp_path)
    cfg = every_stage_pipeline(execution={"shard_bytes": 2048})
    one = run(cfg, workers=1, store=tmp_path / "s1")
    two = run(cfg, workers=2, store=tmp_path / "s2")
    assert one.version.id == two.version.id
    for name in ("report.html", "card.md"):
        assert (one.version.path / name).read_bytes() == (two.version.path / name).read_bytes(), name
    # `datasets report` writes the same files again
    before = (one.version.path / "report.html").read_bytes()
    (one.version.path / "report.html").unlink()
    (one.version.path / "card.md").unlink()
    assert main(["datasets", "report", one.version.ref, "--store", str(tmp_path / "s1")]) == 0
    assert (one.version.path / "report.html").read_bytes() == before
    assert (one.version.path / "card.md").is_file()


def test_derived_version_gets_its_own_report(every_stage, tmp_path):
    parent = every_stage.version
    store = Store(tmp_path / "store")
    victim = parent.read_split("train").column("id")[0].as_py()
    child, created = publish_removal(store, parent, "tickets", "audit_fix",
                                     {"train": {victim: {"reason": "leaked_exact", "detail": "test row t9"}}}, {})
    assert created and child.manifest["parent"] == parent.ref
    html = (child.path / "report.html").read_text(encoding="utf-8")
    assert f"derived from {parent.ref}" in html
    assert ">audit_fix: kept " in html and "<b>audit_fix</b>: leaked_exact, 1 rows</summary>" in html
    assert victim in html.split("<b>audit_fix</b>", 1)[1]
    card = (child.path / "card.md").read_text(encoding="utf-8")
    assert f"derived from `{parent.ref}`" in card and "| audit_fix |" in card


def test_datasets_show_prints_a_readable_summary(every_stage, tmp_path, capsys):
    m = every_stage.manifest
    assert main(["datasets", "show", "tickets", "--store", str(tmp_path / "store")]) == 0
    out = capsys.readouterr().out
    assert f"{m['counts']['input']:,} rows in = {m['counts']['kept']:,} kept" in out
    for st in m["stages"]:
        assert st["name"] in out
    for split, n in m["splits"].items():
        assert re.search(rf"{split}\s+│\s+{n:,}\b", out), split
    assert "languages (rows the language stage saw)" in out and re.search(r"\bde\s+│\s+4\b", out)
    assert "MinHash 128 slots" in out and "cc-by-4.0" in out
    assert f"report: {every_stage.version.path / 'report.html'}" in out


def test_report_renders_in_headless_chromium_without_console_messages(every_stage, tmp_path):
    page = every_stage.version.path / "report.html"
    png = tmp_path / "report.png"
    console = render(page, png, tmp_path / "chromium-profile")
    assert console == []
    width, height, distinct = png_facts(png)
    assert (width, height) == (1100, 2400) and png.stat().st_size > 20_000 and distinct > 16
    # the check can fail: a remote image slipped into the page is refused by its policy and logged
    broken = tmp_path / "broken.html"
    broken.write_text(page.read_text(encoding="utf-8").replace(
        "</h1>", '</h1><img src="https://example.com/plot.png">', 1), encoding="utf-8")
    console = render(broken, tmp_path / "broken.png", tmp_path / "chromium-profile")
    assert any("example.com/plot.png" in line for line in console), console


def test_distributions_past_the_row_cap_say_they_are_from_the_first_rows(every_stage, monkeypatch):
    from corpusmill.report import facts, write_version_docs

    v = every_stage.version
    full = facts.gather(v)
    assert not full.data_sampled and full.lengths["rows_after"] == every_stage.manifest["counts"]["kept"]
    monkeypatch.setattr(facts, "MAX_ROWS", 5)
    capped = facts.gather(v)
    assert capped.data_sampled and capped.rejects_sampled
    assert capped.lengths["rows_after"] == 5 and capped.lengths["rows_before"] == 10
    html = write_version_docs(v)[0].read_text(encoding="utf-8")
    assert "computed from the first rows of the files" in html
    # counts still come from the manifest, whole
    assert f"{every_stage.manifest['counts']['input']:,} rows in" in html


def test_datasets_report_open_writes_a_missing_report_and_opens_it(every_stage, tmp_path, monkeypatch, capsys):
    opened = []
    monkeypatch.setattr("webbrowser.open", opened.append)
    v = every_stage.version
    (v.path / "report.html").unlink()
    assert main(["datasets", "report", v.ref, "--open", "--store", str(tmp_path / "store")]) == 0
    assert (v.path / "report.html").is_file()
    assert opened == [(v.path / "report.html").resolve().as_uri()]
    assert capsys.readouterr().out.strip() == str(v.path / "report.html")


def test_a_report_that_fails_does_not_cost_the_run(tmp_path, run, monkeypatch, capsys):
    from corpusmill.report import dataset

    def broken(*args, **kwargs):
        raise ValueError("a plotting bug")

    write_corpus(tmp_path)
    cfg = every_stage_pipeline()
    cfg["steps"] = [{"clean": {}}]
    monkeypatch.setattr(dataset, "render", broken)
    r = run(cfg)
    assert r.created and (r.version.path / "manifest.json").is_file()
    assert not (r.version.path / "report.html").exists()
    assert "report.html/card.md not written" in capsys.readouterr().err
    monkeypatch.undo()
    assert main(["datasets", "report", r.version.ref, "--store", str(tmp_path / "store")]) == 0
    assert (r.version.path / "report.html").is_file() and (r.version.path / "card.md").is_file()
