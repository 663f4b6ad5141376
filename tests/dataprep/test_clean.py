"""The clean stage: each cleaning kind changes what it should and leaves the rest alone, counts
what it did, and boilerplate removal finds repeated lines per source across shards."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from corpusmill.dataprep.clean import Clean, CleanConfig
from corpusmill.errors import ConfigError
from corpusmill.stage import BatchInfo, RunInfo
from tests.conftest import REAL_TEXTS, write_jsonl


def clean(texts: list[str], **options):
    """Run the stage's map path on ``texts``; returns (kept texts by input position or None,
    clean_changes by position, output)."""
    batch = pa.table({
        "id": [f"r{i}" for i in range(len(texts))],
        "text": texts,
        "source": [f"f.jsonl:{i + 1}" for i in range(len(texts))],
        "meta": pa.nulls(len(texts), pa.string()),
    })
    stage = Clean(CleanConfig(**options), name="clean", run=RunInfo("t", 0))
    out = stage.process(batch, BatchInfo(0, 0))
    kept = dict(zip(out.kept.column("id").to_pylist(), out.kept.column("text").to_pylist()))
    changes = dict(zip(out.kept.column("id").to_pylist(), out.kept.column("clean_changes").to_pylist()))
    return [kept.get(f"r{i}") for i in range(len(texts))], [changes.get(f"r{i}") for i in range(len(texts))], out


# ----------------------------------------------------------------------------- unicode


def test_nfc_composes_and_nfkc_folds_compatibility_forms():
    texts = ["Cafe\u0301 cre\u0300me", "ﬁnal score: 10²", "plain ascii"]
    nfc, changes, out = clean(texts)
    assert nfc[0] == "Café crème" and len(nfc[0]) == 10
    assert nfc[1] == "ﬁnal score: 10²"  # NFC keeps compatibility characters
    assert changes == [["unicode_normalized"], [], []]
    assert out.counters == {"unicode_normalized": 1}

    nfkc, _, _ = clean(texts, unicode_form="NFKC")
    assert nfkc[:2] == ["Café crème", "final score: 102"]

    untouched, _, _ = clean(texts, unicode_form="none")
    assert untouched[0] == "Cafe\u0301 cre\u0300me"


# ----------------------------------------------------------------------------- mojibake


def test_mojibake_is_repaired_and_correct_accents_are_left_alone():
    texts = [
        "The cafÃ© serves crÃ¨me brÃ»lÃ©e.",  # UTF-8 read as Latin-1
        "He said â€œyesâ€\x9d and didnâ€™t look back.",  # UTF-8 read as Windows-1252
        "„Grüß Gott“, sagte der Förster.",  # correct German with low/high quotes (ß + “ look suspicious)
        "Příliš žluťoučký kůň úpěl ďábelské ódy.",  # correct Czech
        "Съешь же ещё этих мягких французских булок.",  # correct Russian
        "It\x92s what the old mail client sent \x96 in Windows-1252.",  # cp1252 read as Latin-1: C1 controls
    ]
    out, changes, stage_out = clean(texts)
    assert out[0] == "The café serves crème brûlée."
    assert out[1] == "He said “yes” and didn’t look back."
    assert out[2:5] == texts[2:5]
    assert out[5] == "It’s what the old mail client sent – in Windows-1252."  # not just the controls removed
    assert changes == [["mojibake_fixed"], ["mojibake_fixed"], [], [], [], ["mojibake_fixed"]]
    assert stage_out.counters["mojibake_fixed"] == 3

    off, _, _ = clean(texts, fix_mojibake=False)
    assert off[0] == texts[0]


# ----------------------------------------------------------------------------- markup


def test_html_document_becomes_text_with_paragraphs_and_without_scripts():
    page = (
        "<!DOCTYPE html>\n<html><head><title>Release notes</title>"
        "<style>p { color: red }</style><script>track('<p>visit</p>');</script></head>\n"
        "<body><h1>Version 2.1</h1>\n<p>The export   now keeps\n commas &amp; quotes.</p>"
        "<ul><li>Faster start-up</li><li>Dark mode</li></ul><!-- build 7731 -->"
        "<p>Thanks to all <a href=\"/people\">contributors</a>.</p></body></html>"
    )
    out, changes, _ = clean([page])
    assert out[0] == (
        "Release notes\n\nVersion 2.1\n\nThe export now keeps commas & quotes.\n\n"
        "Faster start-up\nDark mode\n\nThanks to all contributors."
    )
    assert "markup_stripped" in changes[0]


def test_markup_fragments_are_stripped_but_text_that_looks_like_tags_is_kept():
    texts = [
        "Use <b>bold</b> sparingly.<br>New line here.",
        "<Knghtbrd> the build is green again\n<A> finally",  # IRC log: nicks, not tags
        "#include <stdio.h>\nint main(void) { return 0; }",
        "if a < b and c > d then swap",
        "<br> did you try rebooting?\n<joe> br: yes",  # a chat nick that is an HTML element name
        "Prices: AT&amp;T &gt; Verizon &#8211; says who?",  # character references only
        "      ,_,\n     <o o>\n    <  ^  >\n   an owl, not a tag",  # ASCII art keeps its indentation
        "<?xml version=\"1.0\"?><ticket><subject>Refund</subject> <message>Card charged twice.</message></ticket>",
    ]
    out, changes, stage_out = clean(texts)
    assert out[0] == "Use bold sparingly.\nNew line here."
    assert out[1:5] == texts[1:5]
    assert out[5] == "Prices: AT&T > Verizon – says who?"
    assert out[6] == texts[6] and changes[6] == []
    assert out[7] == "Refund Card charged twice."
    assert changes[5] == ["entities_decoded"]
    assert stage_out.counters["markup_stripped"] == 2 and stage_out.counters["entities_decoded"] == 1

    off, _, _ = clean(texts, strip_markup=False)
    assert off[0] == texts[0] and off[5] == texts[5]


# ----------------------------------------------------------------------------- control and invisible


def test_control_characters_and_ansi_escapes_are_removed_tabs_and_newlines_kept():
    texts = [
        "Build \x1b[32mpassed\x1b[0m in 3s",
        "I have more humility in my little finger than you have in your whole ____\b\b\b\bBODY!",
        "bell\x07 here and a C1\x85 control",
        "col1\tcol2\nrow2",
    ]
    out, changes, _ = clean(texts, whitespace="none", fix_mojibake=False)
    assert out[0] == "Build passed in 3s"
    assert out[1].endswith("whole ____BODY!")
    assert out[2] == "bell here and a C1 control"
    assert out[3] == "col1\tcol2\nrow2" and changes[3] == []
    # with mojibake repair on, a C1 control is first read as the Windows-1252 character it stands for
    assert clean(texts, whitespace="none")[0][2] == "bell here and a C1… control"

    off, _, _ = clean(texts, remove_control=False, whitespace="none")
    assert off[0] == texts[0]


def test_invisible_characters_are_removed_but_emoji_joiners_stay():
    texts = [
        "zero\u200bwidth",
        "\ufeffBOM at the start",
        "hyph\u00aden\u00adated",
        "ab\u202edc",  # right-to-left override (a 'trojan source' trick)
        "family: 👨\u200d👩\u200d👧 and Persian می\u200cخواهم",  # ZWJ / ZWNJ carry meaning
    ]
    out, changes, _ = clean(texts)
    assert out[:4] == ["zerowidth", "BOM at the start", "hyphenated", "abdc"]
    assert out[4] == texts[4] and changes[4] == []


# ----------------------------------------------------------------------------- whitespace


def test_whitespace_modes():
    text = "  Title\r\n\r\n\r\n\r\nFirst\u00a0line   \n    indented line\t\n\n\n"
    out, changes, _ = clean([text, "already tidy\n\nyes"])
    assert out[0] == "  Title\n\nFirst line\n    indented line"  # layout (indentation) is kept
    assert changes == [["whitespace_normalized"], []]

    collapsed, _, _ = clean([text], whitespace="collapse")
    assert collapsed[0] == "Title\n\nFirst line\nindented line"

    raw, _, _ = clean([text], whitespace="none")
    assert raw[0] == text


# ----------------------------------------------------------------------------- empty rows, counters


def test_rows_left_empty_are_rejected_with_their_original_text():
    texts = ["<script>alert(1)</script>", "\u200b\u200b", "   \n\t ", REAL_TEXTS[0]]
    out, _, stage_out = clean(texts)
    assert out == [None, None, None, REAL_TEXTS[0]]
    rej = stage_out.rejected.to_pylist()
    assert [r["reason"] for r in rej] == ["empty_after_clean"] * 3
    assert [r["text"] for r in rej] == texts[:3]  # what was lost stays visible
    assert "markup_stripped" in rej[0]["detail"] and "25 characters" in rej[0]["detail"]
    assert "invisible_removed" in rej[1]["detail"]


def test_clean_through_the_pipeline_counts_every_kind_in_the_manifest(tmp_path, run):
    rows = [
        {"id": "moji", "text": "Na zdravÃ­! The cafÃ© opened today."},
        {"id": "html", "text": "<p>Opening hours:</p><p>Mon&ndash;Fri</p>"},
        {"id": "ctrl", "text": "ring\x07ring"},
        {"id": "zw", "text": "no\u200bspace"},
        {"id": "nfd", "text": "Cafe\u0301"},
        {"id": "ws", "text": "trailing   \n\n\n\nspaces"},
        {"id": "empty", "text": "<style>p{}</style>"},
        {"id": "plain", "text": REAL_TEXTS[1]},
    ]
    write_jsonl(tmp_path / "raw" / "mixed.jsonl", rows)
    result = run({"dataset": "c", "inputs": [{"path": "raw/mixed.jsonl", "id_field": "id"}], "steps": [{"clean": {}}]})
    stage = next(s for s in result.manifest["stages"] if s["name"] == "clean")
    assert stage["counters"] == {
        "mojibake_fixed": 1, "markup_stripped": 2, "control_removed": 1, "invisible_removed": 1,
        "unicode_normalized": 1, "whitespace_normalized": 1,
    }
    assert stage["rejected"] == {"empty_after_clean": 1}
    kept = {r["id"]: r for r in result.version.read_split("all").to_pylist()}
    assert kept["moji"]["text"] == "Na zdraví! The café opened today."
    assert kept["html"]["text"] == "Opening hours:\n\nMon–Fri"
    assert kept["plain"]["text"] == REAL_TEXTS[1] and kept["plain"]["clean_changes"] == []
    assert kept["nfd"]["clean_changes"] == ["unicode_normalized"]
    assert result.manifest["config"]["steps"][0]["clean"]["unicode_form"] == "NFC"


# ----------------------------------------------------------------------------- boilerplate


def _site_pages(site: str, n: int, footer: str) -> list[dict]:
    return [{"text": f"Home | Products | Contact\n{REAL_TEXTS[i % 10]} (page {i} of {site})\n{footer}",
             "site": site} for i in range(n)]


def test_boilerplate_lines_are_removed_per_source_across_shards(tmp_path, run):
    # two sources (files); the navigation line repeats in every page of both, the footer of each
    # site only in its own pages; the article lines are all different
    write_jsonl(tmp_path / "raw" / "shop.jsonl", _site_pages("shop", 40, "© 2024 Shop Inc. All rights reserved."))
    write_jsonl(tmp_path / "raw" / "blog.jsonl", _site_pages("blog", 12, "Posted by the blog team") +
                [{"text": "Home | Products | Contact", "site": "blog"}])
    config = {"dataset": "b", "inputs": [{"path": "raw/*.jsonl"}],
              "steps": [{"clean": {"boilerplate": {"min_documents": 5, "min_fraction": 0.5}}}],
              "execution": {"shard_bytes": 2048}}
    result = run(config)
    kept = result.version.read_split("all").to_pylist()
    assert len(kept) == 52
    for row in kept:
        assert "Home | Products" not in row["text"] and "©" not in row["text"] and "Posted by" not in row["text"]
        assert "(page " in row["text"]
        assert row["clean_changes"] == ["boilerplate_removed"]
    assert kept[0]["text"] == f"{REAL_TEXTS[0]} (page 0 of blog)"
    stage = next(s for s in result.manifest["stages"] if s["name"] == "clean")
    assert stage["rejected"] == {"empty_after_clean": 1}  # the page that was only navigation
    assert stage["counters"]["boilerplate_removed"] == 53  # rows changed, the one rejected included
    assert stage["counters"]["boilerplate_lines_removed"] == 52 * 2 + 1
    assert stage["counters"]["boilerplate_lines_found"] == 4  # nav in each source + two footers
    assert result.manifest["shards"] > 2
    found = pq.read_table(result.version.path / "index" / "clean" / "boilerplate_lines.parquet").to_pylist()
    assert {(r["source"], r["line"]) for r in found} == {
        ("blog.jsonl", "Home | Products | Contact"), ("blog.jsonl", "Posted by the blog team"),
        ("shop.jsonl", "Home | Products | Contact"), ("shop.jsonl", "© 2024 Shop Inc. All rights reserved."),
    }
    assert next(r for r in found if r["source"] == "shop.jsonl")["documents"] == 40


def test_boilerplate_thresholds_and_duplicate_documents(tmp_path, run):
    # a signature in 4 of 40 messages: boilerplate at min_documents 4, not at the default 5, and
    # not at min_fraction 0.2; 10 exact copies of one message do not make its lines boilerplate
    msgs = [{"text": f"{REAL_TEXTS[i % 10]} Ref {i}." + ("\n-- \nSent from my phone" if i < 4 else "")}
            for i in range(40)]
    msgs += [{"text": "Meeting moved to 3pm.\nSee you there."}] * 10
    write_jsonl(tmp_path / "mail.jsonl", msgs)

    def lines_found(options):
        result = run({"dataset": "m", "inputs": [{"path": "mail.jsonl"}], "steps": [{"clean": {"boilerplate": options}}]})
        stage = next(s for s in result.manifest["stages"] if s["name"] == "clean")
        return stage["counters"].get("boilerplate_lines_found"), result

    assert lines_found({"min_documents": 4, "min_fraction": 0.0})[0] == 2  # "--" and "Sent from my phone"
    assert lines_found({"min_documents": 4, "min_fraction": 0.2})[0] == 0
    found, result = lines_found(True)
    assert found == 0
    texts = result.version.read_split("all").column("text").to_pylist()
    assert texts.count("Meeting moved to 3pm.\nSee you there.") == 10


def test_boilerplate_source_from_a_meta_field(tmp_path, run):
    # one file, two sites told apart by the 'site' field (kept in meta)
    rows = _site_pages("shop", 6, "Shop footer line") + _site_pages("blog", 6, "Blog footer line")
    rows += [{"text": "Shop footer line\nBlog footer line\nHome | Products | Contact\nan orphan", "site": None}]
    write_jsonl(tmp_path / "all.jsonl", rows)
    result = run({"dataset": "s", "inputs": [{"path": "all.jsonl"}],
                  "steps": [{"clean": {"boilerplate": {"source": "meta.site", "min_fraction": 0.5}}}]})
    texts = result.version.read_split("all").column("text").to_pylist()
    assert all("footer" not in t and "Home |" not in t for t in texts[:12])
    assert texts[12] == rows[12]["text"]  # no site: the row takes no part in boilerplate removal


def test_boilerplate_off_means_no_reduce_step():
    assert Clean(CleanConfig(), name="clean", run=RunInfo("t", 0)).needs_reduce is False
    assert Clean(CleanConfig(boilerplate=True), name="clean", run=RunInfo("t", 0)).needs_reduce is True


# ----------------------------------------------------------------------------- determinism, config


def test_clean_and_quality_are_deterministic_across_worker_counts(tmp_path, run):
    # several shards, a reduce step (boilerplate) and the quality rules: one process or two
    # must give the same version, byte for byte
    rows = _site_pages("shop", 30, "Shop footer") + [{"text": "cafÃ© <b>x</b>\u200b  \n\n\n\ny"}] * 3
    write_jsonl(tmp_path / "raw" / "a.jsonl", rows)
    write_jsonl(tmp_path / "raw" / "b.jsonl", list(reversed(rows)))
    config = {"dataset": "d", "inputs": [{"path": "raw/*.jsonl"}],
              "steps": [{"clean": {"boilerplate": True}}, {"quality": {"preset": "annotate"}}],
              "execution": {"shard_bytes": 1024}}
    one = run(config, workers=1, store=tmp_path / "s1")
    two = run(config, workers=2, store=tmp_path / "s2")
    assert one.manifest["shards"] > 2
    assert one.version.id == two.version.id
    assert one.manifest["files"] == two.manifest["files"]  # same bytes, file by file
    assert one.manifest["stages"] == two.manifest["stages"]


def test_bad_clean_options_are_reported_together(tmp_path, run):
    write_jsonl(tmp_path / "x.jsonl", [{"text": "hello"}])
    with pytest.raises(ConfigError) as err:
        run({"dataset": "x", "inputs": [{"path": "x.jsonl"}],
             "steps": [{"clean": {"unicode_form": "NFD", "strip_html": True, "boilerplate": {"source": "url"}}}]})
    text = str(err.value)
    assert "steps[0].clean.unicode_form" in text
    assert "strip_html: unknown key (did you mean 'strip_markup'?)" in text
    assert "steps[0].clean.boilerplate" in text and "meta.<field>" in text
