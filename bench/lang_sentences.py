"""A real multilingual sentence set for the language benchmark, built from Debian's translated man
pages (the manpages-l10n project and the older Japanese and Chinese translations) and the plain
English ones.

Each sentence is labelled with the language of the package its page came from. What the set keeps:

* prose only: every block of a page (``corpusmill.demo_sft.parse_man``) cut into lines (lists and
  ``.nf`` blocks keep their line breaks) and lines into sentences (after ``. ! ? ;`` and the CJK
  full stops), then sentences of at least ``MIN_CHARS`` characters whose characters are mostly
  letters and whose words are mostly not code (options ``-x``, paths, ``name(3)``, ``a_b``,
  ``x=y``, ``$VAR``...) and that end like a sentence;
* translated text only: a translated page whose English original is not installed is skipped, and
  a sentence that also appears in the English original is dropped (po4a leaves paragraphs nobody
  translated in English, and they would be mislabelled);
* each sentence once per language (translator credits repeat on every page), then at most
  ``per_lang`` sentences per language, drawn by a stable hash, so the same packages give the same
  set on every machine.

No identifier is used to clean the set: the labels come from the packages alone, so no backend is
favoured by how the set was made.

    python bench/lang_sentences.py            # builds bench/data/lang-sentences/sentences.jsonl
    sudo apt-get install $(python -c "from bench.lang_sentences import LANG_DEBIAN_PACKAGES as p; print(*p)")
"""

from __future__ import annotations

import gzip
import re
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import orjson  # noqa: E402
from xxhash import xxh3_64_intdigest  # noqa: E402

from bench.common import DATA_DIR  # noqa: E402
from corpusmill.demo_sft import parse_man  # noqa: E402

#: translated man pages: Debian package -> the language its pages are in (ISO 639-1; Norwegian
#: Bokmål as ``no``, the code the three identifiers use). Left out: manpages-el and manpages-id
#: (25 and 98 sentences once checked against the English originals), manpages-sr (langdetect has
#: no Serbian), manpages-mk (26 pages)
LANG_TRANSLATIONS = {
    "manpages-cs": "cs", "manpages-da": "da", "manpages-de": "de", "manpages-es": "es",
    "manpages-fi": "fi", "manpages-fr": "fr", "manpages-hu": "hu", "manpages-it": "it",
    "manpages-ja": "ja", "manpages-nb": "no", "manpages-nl": "nl", "manpages-pl": "pl", "manpages-pt-br": "pt",
    "manpages-ro": "ro", "manpages-ru": "ru", "manpages-sv": "sv", "manpages-tr": "tr", "manpages-uk": "uk",
    "manpages-vi": "vi", "manpages-zh": "zh",
}
#: English pages: the sentences labelled en, and the originals the translations are checked against
#: (the pages of the translated tools; the more of them are installed, the more translated pages
#: can be checked and used)
LANG_ENGLISH_PACKAGES = (
    "manpages", "manpages-dev", "coreutils", "util-linux", "findutils", "grep", "sed", "tar", "procps",
    "passwd", "login", "man-db", "dpkg", "apt", "debianutils", "bsdutils", "e2fsprogs", "gzip", "diffutils",
    "less", "psmisc", "iproute2", "systemd", "sysvinit-utils", "mount", "bash", "openssh-client", "hostname",
)
#: languages not written in the Latin script
NON_LATIN = frozenset({"ja", "ru", "uk", "zh"})
#: every Debian package the set is built from (what set-up installs with apt)
LANG_DEBIAN_PACKAGES = (*LANG_TRANSLATIONS, *LANG_ENGLISH_PACKAGES)

MIN_CHARS = 40
PER_LANG = 1000
#: a language with fewer sentences is left out: too few for a per-language figure
MIN_PER_LANG = 100
OUT_DIR = DATA_DIR / "lang-sentences"

_SENTENCE_END = re.compile(r"(?<=[.!?;])\s+(?=\S)|(?<=[。！？；])")
_CODE_WORD = re.compile(
    r"^[-+]{1,2}\w|^[/~.]\w*/|\w/\w|\w\(\d\w*\)|\w\(\)|[_=$<>{}\[\]|\\@#*`]|^\w+\.\w+$|\d+[:.]\d+"
)
_ENDS_LIKE_A_SENTENCE = re.compile(r"[.!?。！？\"»”]$")
_LETTER = re.compile(r"[^\W\d_]")
_WORD = re.compile(r"[^\W\d_]+")
_TRANSLATION_DIR = re.compile(r".*/man/([a-z]{2}(?:_[A-Z]{2})?)/man([1-8])/([^/]+\.gz)")


def _package_pages(package: str) -> list[Path]:
    try:
        listed = subprocess.run(["dpkg", "-L", package], capture_output=True, text=True, check=False).stdout
    except FileNotFoundError:
        return []
    pages = []
    for line in listed.splitlines():
        if re.fullmatch(r".*/man/(?:[a-z]{2}(?:_[A-Z]{2})?/)?man[1-8]/[^/]+\.gz", line):
            p = Path(line)
            if p.is_file() and not p.is_symlink():
                pages.append(p)
    return sorted(pages)


def _read(path: Path) -> str:
    try:
        return gzip.decompress(path.read_bytes()).decode("utf-8", "replace")
    except (OSError, EOFError):
        return ""


def is_prose(sentence: str) -> bool:
    """A sentence of running text: long enough, mostly letters, few code words, ends like a sentence."""
    if len(sentence) < MIN_CHARS or "\ufffd" in sentence or not _ENDS_LIKE_A_SENTENCE.search(sentence):
        return False
    visible = [ch for ch in sentence if not ch.isspace()]
    if sum(bool(_LETTER.match(ch)) for ch in visible) < 0.75 * len(visible):
        return False
    words = sentence.split()
    if len(words) >= 3:
        code = sum(bool(_CODE_WORD.search(w.strip(",.;:\"'«»„“”").lstrip("("))) for w in words)
        return code <= 0.1 * len(words)
    return len(sentence) >= 2 * MIN_CHARS  # a CJK sentence has no spaces; no code with none either


def page_sentences(source: str) -> list[str]:
    """The prose sentences of one man page, in page order."""
    out = []
    for items in parse_man(source).values():
        for item in items:
            for line in item["text"].split("\n"):
                for s in _SENTENCE_END.split(" ".join(line.split())):
                    s = s.strip()
                    if is_prose(s):
                        out.append(s)
    return out


def _key(s: str) -> str:
    return " ".join(s.lower().split())


def looks_english(sentence: str, lang: str, english_words: set[str]) -> bool:
    """A sentence left in English in a translated page (a paragraph nobody translated, in an older
    version of the page than the English original installed): in a language written in another
    script, half of its letters or more are Latin; else most of its words (80%, of at least 4) are
    words of the English pages."""
    letters = _WORD.findall(sentence)
    if lang in NON_LATIN:
        total = sum(len(w) for w in letters)
        latin = sum(ch < "\u0250" for w in letters for ch in w)
        return latin >= 0.5 * total
    words = [w.lower() for w in letters]
    return len(words) >= 4 and sum(w in english_words for w in words) >= 0.8 * len(words)


def build(per_lang: int = PER_LANG) -> list[dict]:
    """Every kept sentence as ``{text, lang, page}``, at most ``per_lang`` per language, sorted by
    language and then by a stable hash of the text."""
    english_pages = {p for pkg in LANG_ENGLISH_PACKAGES for p in _package_pages(pkg)
                     if re.fullmatch(r".*/man/man[1-8]/[^/]+\.gz", str(p))}
    english_index = {(p.parent.name, p.name): p for p in english_pages}
    found: dict[str, dict[str, str]] = defaultdict(dict)  # lang -> sentence key -> page
    texts: dict[str, dict[str, str]] = defaultdict(dict)
    skipped, dropped = Counter(), Counter()
    for page in sorted(english_pages):
        for s in page_sentences(_read(page)):
            found["en"].setdefault(_key(s), str(page))
            texts["en"].setdefault(_key(s), s)
    english_words = {w for s in texts["en"].values() for w in _WORD.findall(s.lower())}
    english_cache: dict[Path, set[str]] = {}
    for package, lang in LANG_TRANSLATIONS.items():
        for page in _package_pages(package):
            m = _TRANSLATION_DIR.fullmatch(str(page))
            if not m:
                continue
            original = english_index.get((f"man{m.group(2)}", m.group(3)))
            if original is None:
                skipped[lang] += 1
                continue
            if original not in english_cache:
                english_cache[original] = {_key(s) for s in page_sentences(_read(original))}
            untranslated = english_cache[original]
            for s in page_sentences(_read(page)):
                k = _key(s)
                if k in untranslated or k in texts["en"] or looks_english(s, lang, english_words):
                    dropped[lang] += 1
                    continue
                found[lang].setdefault(k, str(page))
                texts[lang].setdefault(k, s)
    rows, skipped_langs = [], {}
    for lang in sorted(found):
        if len(found[lang]) < MIN_PER_LANG:
            skipped_langs[lang] = len(found[lang])
            continue
        keys = sorted(found[lang], key=lambda k: (xxh3_64_intdigest(k.encode()), k))[:per_lang]
        rows += [{"text": texts[lang][k], "lang": lang, "page": found[lang][k]} for k in keys]
    print("sentences dropped as untranslated English: "
          + ", ".join(f"{lang} {n}" for lang, n in sorted(dropped.items())), file=sys.stderr)
    if skipped_langs:
        print(f"languages left out (under {MIN_PER_LANG} sentences): "
              + ", ".join(f"{lang} {n}" for lang, n in sorted(skipped_langs.items())), file=sys.stderr)
    if skipped:
        print("translated pages skipped (English original not installed): "
              + ", ".join(f"{lang} {n}" for lang, n in sorted(skipped.items())), file=sys.stderr)
    return rows


def sentences(per_lang: int = PER_LANG, rebuild: bool = False) -> list[dict]:
    """The sentence set, built once and cached under bench/data/lang-sentences/ (rebuilt when asked).
    Fails with the apt-get command when too few languages are installed."""
    path = OUT_DIR / f"sentences-{per_lang}.jsonl"
    if path.is_file() and not rebuild:
        return [orjson.loads(line) for line in path.read_bytes().splitlines()]
    rows = build(per_lang)
    langs = {r["lang"] for r in rows}
    if len(langs) < 12:
        raise SystemExit(f"only {len(langs)} languages in the sentence set ({', '.join(sorted(langs))}); install "
                         f"the man pages: apt-get install {' '.join(LANG_DEBIAN_PACKAGES)}")
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    tmp.replace(path)
    return rows


def main() -> None:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--per-lang", type=int, default=PER_LANG)
    ap.add_argument("--rebuild", action="store_true")
    args = ap.parse_args()
    rows = sentences(args.per_lang, rebuild=args.rebuild)
    counts = Counter(r["lang"] for r in rows)
    print(f"{len(rows):,} sentences in {len(counts)} languages: "
          + ", ".join(f"{lang} {n:,}" for lang, n in sorted(counts.items())))


if __name__ == "__main__":
    main()
