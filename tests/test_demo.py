"""The demo's corpus builder reads fortune files (blocks separated by '%') into JSONL, each file
labelled by the Debian package that installed it, never by its folder."""

from __future__ import annotations

import json
import os
import stat

import pytest

from corpusmill.demo import build_fortunes_corpus, dpkg_owners, read_fortune_file
from corpusmill.errors import CorpusmillError
from corpusmill.pipelines import run_pipeline


def _fake_fortunes(root):
    """A fortunes folder and its package index (path -> package), as make demo's packages leave it."""
    files = {
        "science": ("fortunes", "Entropy isn't what it used to be.\n%\nIn theory, theory and practice agree.\n%\n"),
        "de/murphy": ("fortunes-de", "Was schiefgehen kann, geht schief.\n%\nWas schiefgehen kann, geht schief.\n%\n\n%\n"),
        "es/off/rude": ("fortunes-es-off", "skipped: offensive section\n%\n"),
        "brasil": ("fortunes-br", "Quem tudo quer, tudo perde.\n%\n"),
    }
    index = {}
    for rel, (package, text) in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
        (root / f"{rel}.dat").write_bytes(b"\x00\x00binary index")
        index[root / rel] = index[root / f"{rel}.dat"] = package
    return index


def _more_packages(root, index):
    """What the issue's machine had on top: Chinese files at the top level (fortunes-zh),
    Bulgarian, Esperanto (and its ISO-8859-3 copy), Irish; a Slovak file and another package's
    hints in cs/; a file no package installed and one of a package the demo does not know."""
    files = {
        "chinese": ("fortunes-zh", "天下没有不散的筵席。\n%\n千里之行，始于足下。\n%\n"),
        "tang300": ("fortunes-zh", "床前明月光，疑是地上霜。\n%\n"),
        "bg/bgproverb": ("fortunes-bg", "Бързата работа срам за майстора.\n%\n"),
        "eo/proverbaro": ("fortunes-eo", "Kiu multon parolas, malmulton faras.\n%\n"),
        "eo-iso3/proverbaro": ("fortunes-eo-iso3", "Kiu multon parolas, malmulton faras.\n%\n"),
        "ga/proverbs": ("fortunes-ga", "Is fearr Gaeilge briste ná Béarla cliste.\n%\n"),
        "cs/murphy": ("fortunes-cs", "Co se může pokazit, to se pokazí.\n%\n"),
        "cs/klasik-sk": ("fortunes-cs", "Smeje sa jazvám, kto ranu nikdy nepocítil.\n%\n"),
        "cs/debian-hints": ("fortunes-debian-hints", "Tip: apt-get install balíček nainstaluje balíček.\n%\n"),
        "debian-hints": ("fortunes-debian-hints", "Tip: read /usr/share/doc for a package's documentation.\n%\n"),
        "klingon": ("fortunes-tlh", "Heghlu'meH QaQ jajvam.\n%\n"),
        "my-own": (None, "A fortune a user copied here by hand.\n%\n"),
    }
    for rel, (package, text) in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text, encoding="utf-8")
        if package:
            index[root / rel] = package
    (root / "chinese.u8").symlink_to("chinese")  # links are read under their target's name
    return index


def _rows(folder) -> dict[str, dict]:
    """file -> its first row, over every JSONL file written."""
    out = {}
    for p in sorted(folder.glob("*.jsonl")):
        for line in p.read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            out.setdefault(row["file"], row)
    return out


def test_read_fortune_file(tmp_path):
    p = tmp_path / "f"
    p.write_text("one\n  -- someone\n%\ntwo\n%\n")
    assert read_fortune_file(p) == ["one\n  -- someone", "two"]


def test_build_corpus_and_run_demo_pipeline(tmp_path):
    root = tmp_path / "fortunes"
    index = _fake_fortunes(root)
    corpus = build_fortunes_corpus(tmp_path / "work" / "data", root, package_index=lambda r: index)
    assert corpus.counts == {"en": 2, "de": 3, "pt": 1}
    rows = [json.loads(x) for x in (tmp_path / "work" / "data" / "fortunes-de.jsonl").read_text().splitlines()]
    assert rows[0] == {"text": "Was schiefgehen kann, geht schief.", "category": "murphy", "lang": "de",
                       "package": "fortunes-de", "file": "de/murphy"}
    assert corpus.skipped == {"offensive section": ["es/off/rude"]}
    from importlib import resources

    (tmp_path / "work" / "pipeline.yaml").write_text(
        resources.files("corpusmill.pipelines").joinpath("demo.yaml").read_text())
    result = run_pipeline(tmp_path / "work" / "pipeline.yaml", workers=1)
    m = result.manifest
    assert m["counts"]["input"] == 6
    assert m["counts"]["rejected"]["read"] == {"empty_text": 1}
    assert m["counts"]["rejected"]["dedup"] == {"exact_duplicate": 1}
    labels = [x for s in result.version.splits() for x in result.version.read_split(s).column("label").to_pylist()]
    assert sorted(labels) == ["brasil", "murphy", "science", "science"]
    assert set(result.version.splits()) <= {"train", "validation", "test"}
    assert result.version.path.is_relative_to(tmp_path / "work" / "store")
    from corpusmill.demo import audit_demo

    report = audit_demo(result.version, tmp_path / "work")
    assert (tmp_path / "work" / "audit.json").is_file()
    assert set(report) >= {"exact", "near", "ngram", "label_conflicts", "summary"}


def test_labels_come_from_each_files_package_not_its_folder(tmp_path):
    """Issue 19: with fortunes-zh, -bg, -eo and -ga installed, the top-level Chinese files were
    labelled English (and bg/, eo/, ga/ were not read). Each file now carries its package's language."""
    root = tmp_path / "fortunes"
    index = _more_packages(root, _fake_fortunes(root))
    corpus = build_fortunes_corpus(tmp_path / "data", root, package_index=lambda r: index)
    rows = _rows(tmp_path / "data")
    lang = {f: r["lang"] for f, r in rows.items()}
    assert lang == {"science": "en", "de/murphy": "de", "brasil": "pt", "chinese": "zh", "tang300": "zh",
                    "bg/bgproverb": "bg", "eo/proverbaro": "eo", "ga/proverbs": "ga", "cs/murphy": "cs",
                    "cs/klasik-sk": "sk", "cs/debian-hints": "cs", "debian-hints": "en"}
    assert rows["chinese"]["package"] == "fortunes-zh" and rows["chinese"]["text"] == "天下没有不散的筵席。"
    assert corpus.counts["zh"] == 3 and corpus.counts["en"] == 3  # science 2 + the English hint
    # nothing Chinese is English: the en file holds only the English package files
    en = [json.loads(x) for x in (tmp_path / "data" / "fortunes-en.jsonl").read_text(encoding="utf-8").splitlines()]
    assert {r["package"] for r in en} == {"fortunes", "fortunes-debian-hints"}
    # what was left out is named, with why: never a silent skip, never a guess from the folder
    skipped = corpus.skipped
    assert skipped["offensive section"] == ["es/off/rude"]
    assert skipped["fortunes-eo-iso3: fortunes-eo's proverbs again, in ISO-8859-3 (not UTF-8)"] == ["eo-iso3/proverbaro"]
    assert skipped["fortunes-tlh: a package the demo knows no language for (add it to "
                   "corpusmill.demo.PACKAGE_LANGS)"] == ["klingon"]
    assert skipped["installed by no Debian package (dpkg lists no owner), so no language is known"] == ["my-own"]
    assert sum(len(v) for v in skipped.values()) == 4
    assert corpus.packages["fortunes-cs"].languages == {"cs": 1, "sk": 1}
    # the demo prints which packages it read, and what it left out
    text = "\n".join(corpus.describe())
    assert "demo corpus: 16 fortunes in 9 languages" in text
    assert "labelled by Debian package: fortunes (en 2; 1 file); fortunes-bg (bg 1; 1 file); " in text
    assert "fortunes-zh (zh 3; 2 files)" in text and "fortunes-cs (cs 1, sk 1; 2 files)" in text
    assert "left out: 1 file, installed by no Debian package (dpkg lists no owner), so no language is known: my-own" in text


def test_a_folder_no_package_lists_is_refused(tmp_path):
    root = tmp_path / "fortunes"
    _fake_fortunes(root)
    with pytest.raises(CorpusmillError, match=r"no Debian package lists a file under .*fortunes \(dpkg -S .*\): the demo "
                                              r"labels each fortune file by the package that installed it. Run 'make demo'"):
        build_fortunes_corpus(tmp_path / "data", root, package_index=lambda r: {})
    assert not (tmp_path / "data").exists()
    with pytest.raises(CorpusmillError, match="not found: the demo reads Debian's fortunes packages"):
        build_fortunes_corpus(tmp_path / "data", tmp_path / "missing", package_index=lambda r: {})


def test_dpkg_owners_reads_dpkg(tmp_path, monkeypatch):
    """The default index asks dpkg which packages own the folder (-S), then their files (-L)."""
    root = tmp_path / "fortunes"
    index = _more_packages(root, _fake_fortunes(root))
    lists = {}
    for path, package in index.items():
        lists.setdefault(package, [str(root)]).append(str(path))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for package, paths in lists.items():
        (bin_dir / f"{package}.list").write_text("\n".join(["/.", "/usr", *paths]) + "\n")
    owners = ", ".join(sorted(lists))
    dpkg = bin_dir / "dpkg"
    dpkg.write_text(f"""#!/bin/sh
case "$1" in
  -S) echo "diversion by someone from: {root}"; echo "{owners}: {root}"; echo "fortunes: {root}/science" ;;
  -L) cat "{bin_dir}/$2.list" ;;
esac
""")
    dpkg.chmod(dpkg.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    assert dpkg_owners(root) == index
    monkeypatch.setenv("PATH", str(tmp_path / "nowhere"))
    assert dpkg_owners(root) == {}
