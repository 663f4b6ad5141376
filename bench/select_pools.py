"""Real labelled pools for the domain-selection benchmark (``bench/bench_select.py``).

Each source is a list of texts with a topical label, read from Debian packages at set-up, never
committed:

* ``fortunes``: the English Debian fortunes by category (``bench.common.fortunes()``). Short
  jokes and quotes; the categories are loose (``computers`` competes with ``linux``, ``perl``).
* ``debian``: Debian package descriptions (short + long description) by archive Section, over the
  sections that name an application topic (:data:`DEBIAN_SECTIONS`). The long descriptions are in
  the ``Translation-en`` index, which Debian container images skip:
  ``apt-get -o Acquire::Languages=en update`` (:data:`DEBIAN_SETUP`) fetches it.
* ``man``: English man pages (one-line description + first DESCRIPTION paragraph) by the package
  that installed them: git, openssl, PostgreSQL's client, the C library pages of manpages-dev,
  against the other pages of :data:`MAN_PACKAGES`.

A **task** is one domain of one source: ``N_TARGET`` rows of the domain are the target examples;
the pool holds ``pool_rows`` other rows with the domain at a known ``share`` (seeded samples; the
same rows for every method). :func:`tasks` yields them.
"""

from __future__ import annotations

import random
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: what the ``debian`` source needs beyond a plain ``apt-get update``: the long descriptions
DEBIAN_SETUP = "apt-get -o Acquire::Languages=en update"
APT_LISTS = Path("/var/lib/apt/lists")
#: archive sections that name what a package is for (not its language or packaging kind)
DEBIAN_SECTIONS = ("science", "math", "electronics", "hamradio", "games", "sound", "video", "graphics", "net",
                   "web", "httpd", "mail", "comm", "database", "editors", "text", "tex", "admin", "vcs", "utils")
#: apt packages whose English man pages the ``man`` source reads (most are on any Debian system)
MAN_PACKAGES = ("git-man", "openssl", "postgresql-client-15", "manpages-dev", "manpages", "systemd", "iproute2",
                "coreutils", "util-linux", "dpkg-dev", "dpkg", "apt", "perl", "passwd", "e2fsprogs", "procps",
                "man-db", "valgrind", "xz-utils", "zstd", "tar", "findutils", "strace", "curl", "sed", "grep")
#: the man source's domains: label -> the packages whose pages carry it
MAN_DOMAINS = {"git": ("git-man",), "openssl": ("openssl",), "postgresql": ("postgresql-client-15",),
               "clib": ("manpages-dev",)}
N_TARGET = 100


@dataclass(frozen=True)
class Source:
    name: str
    texts: list[str]
    labels: np.ndarray  # str, one per text
    domains: tuple[str, ...]
    share: float  # the domain's share of each task's pool
    pool_rows: int
    about: str


@dataclass(frozen=True)
class Task:
    source: str
    domain: str
    target: list[int]  # indices into the source's texts
    pool: list[int]  # sorted indices; the pool's input order
    y: np.ndarray  # bool per pool row: in the domain


def _apt_cat(path: Path) -> str:
    """A Debian index file as text, whatever its compression (apt's own reader)."""
    if path.suffix in ("", ".txt") or path.name.endswith(("_Packages", "_Translation-en")):
        return path.read_text("utf-8", "replace")
    return subprocess.run(["/usr/lib/apt/apt-helper", "cat-file", str(path)], capture_output=True, text=True,
                          check=True).stdout


def _stanzas(text: str) -> Iterator[dict[str, str]]:
    for block in text.split("\n\n"):
        rec: dict[str, str] = {}
        key = None
        for line in block.split("\n"):
            if line.startswith((" ", "\t")) and key:
                rec[key] += "\n" + line[1:]
            elif ":" in line:
                key, _, value = line.partition(":")
                rec[key] = value.strip()
        if rec:
            yield rec


def _main_lists(kind: str) -> list[Path]:
    # the release's main component only: security/updates repeat packages with newer versions
    return sorted(p for p in APT_LISTS.glob(f"*_dists_*_main_*{kind}*")
                  if not re.search(r"-(security|updates|backports)_", p.name))


def debian_source() -> Source:
    packages = _main_lists("binary-amd64_Packages") or _main_lists("_Packages")
    translations = _main_lists("i18n_Translation-en")
    if not packages or not translations:
        raise SystemExit(f"debian pool: no Packages or Translation-en index under {APT_LISTS}; run: {DEBIAN_SETUP}")
    section = {}
    for p in packages:
        for r in _stanzas(_apt_cat(p)):
            if "Package" in r and "Description-md5" in r:
                section[r["Package"]] = (r.get("Section", "").split("/")[-1], r["Description-md5"])
    texts, labels, seen = [], [], set()
    for p in translations:
        for r in _stanzas(_apt_cat(p)):
            pkg, md5 = r.get("Package"), r.get("Description-md5")
            if pkg not in section or section[pkg][1] != md5 or section[pkg][0] not in DEBIAN_SECTIONS:
                continue
            if re.search(r"-(data|doc|dbg|common|dev|l10n|locale|plugins?)$", pkg):
                continue  # companion packages repeat their main package's text
            short, _, long = r.get("Description-en", "").partition("\n")
            body = "\n".join(" " if line == "." else line for line in long.split("\n")).strip()
            key = short.lower().split("(")[0].strip()
            if len(body) < 80 or key in seen or md5 in seen:
                continue
            seen.update((key, md5))
            texts.append(f"{short}\n{body}")
            labels.append(section[pkg][0])
    return Source("debian", texts, np.array(labels), ("science", "games", "sound", "graphics"), share=0.10,
                  pool_rows=2000, about="Debian package descriptions by Section")


def man_source() -> Source:
    from corpusmill.demo_sft import man_page_paths, page_facts

    owner = {p: dom for dom, pkgs in MAN_DOMAINS.items() for p in pkgs}
    texts, labels, seen = [], [], set()
    for pkg in MAN_PACKAGES:
        for path in man_page_paths((pkg,)):
            if "/man/man" not in str(path):  # English pages only
                continue
            f = page_facts(path)
            if not f or len(f["about"]) < 60:
                continue
            text = f"{f['desc']}. {f['about']}"
            if text in seen:
                continue
            seen.add(text)
            texts.append(text)
            labels.append(owner.get(pkg, "other"))
    if not texts:
        raise SystemExit(f"man pool: no man pages found; apt-get install {' '.join(MAN_PACKAGES)}")
    return Source("man", texts, np.array(labels), tuple(MAN_DOMAINS), share=0.05, pool_rows=1200,
                  about="English man pages by package")


def fortunes_source() -> Source:
    from bench.common import fortunes

    rows = [r for r in fortunes() if r["lang"] == "en"]
    return Source("fortunes", [r["text"] for r in rows], np.array([r["category"] for r in rows]),
                  ("computers", "science", "politics"), share=0.10, pool_rows=2000,
                  about="English Debian fortunes by category")


SOURCES = {"fortunes": fortunes_source, "debian": debian_source, "man": man_source}


def tasks(src: Source, seed: int = 0, domains: tuple[str, ...] | None = None) -> Iterator[Task]:
    """One task per domain: N_TARGET target rows, and a pool of ``src.pool_rows`` rows with the
    domain at ``src.share`` (seeded; the other rows come from every other label)."""
    order = list(range(len(src.texts)))
    random.Random(f"{seed}:{src.name}").shuffle(order)  # one order for all domains: their pools overlap
    for d in domains or src.domains:
        inside = [i for i in order if src.labels[i] == d]
        outside = [i for i in order if src.labels[i] != d]
        n_in = round(src.pool_rows * src.share)
        if len(inside) < N_TARGET + n_in:
            raise SystemExit(f"{src.name}/{d}: {len(inside)} rows, need {N_TARGET + n_in}")
        pool = sorted(inside[N_TARGET:N_TARGET + n_in] + outside[:src.pool_rows - n_in])
        yield Task(src.name, d, inside[:N_TARGET], pool, src.labels[pool] == d)


def embeddings(src: Source, indices: list[int], cache_dir: Path | None = None) -> np.ndarray:
    """all-MiniLM-L6-v2 vectors of ``src.texts[indices]``, cached per source in bench/data (keyed by
    each text's xxh3 digest, so a changed source only encodes its new texts)."""
    from xxhash import xxh3_64_intdigest

    from bench.common import DATA_DIR
    from corpusmill.dataprep.minilm import SentenceEncoder

    path = (cache_dir or DATA_DIR / "select-embeddings") / f"{src.name}.npz"
    keys = np.array([xxh3_64_intdigest(src.texts[i].encode()) for i in indices], dtype=np.uint64)
    known: dict[int, np.ndarray] = {}
    if path.is_file():
        z = np.load(path)
        known = dict(zip(z["keys"].tolist(), z["vecs"]))
    missing = sorted({int(k) for k in keys} - set(known))
    if missing:
        first = {int(k): i for k, i in zip(keys, indices)}
        vecs = SentenceEncoder().encode([src.texts[first[k]] for k in missing], batch_rows=16)
        known.update(zip(missing, vecs))
        path.parent.mkdir(parents=True, exist_ok=True)
        all_keys = np.array(sorted(known), dtype=np.uint64)
        np.savez(path, keys=all_keys, vecs=np.stack([known[int(k)] for k in all_keys]))
    return np.stack([known[int(k)] for k in keys])
