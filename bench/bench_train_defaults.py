"""Which classification defaults learn in a short run: the study behind train/config.py's
``lr``, ``head_lr``, ``warmup_ratio`` and ``batch_size`` for ``task: classification``.

    python bench/bench_train_defaults.py                 # 3 tasks x every setting, seed 0
    python bench/bench_train_defaults.py --seeds 0 1     # more seeds
    python bench/bench_train_defaults.py --settings old new tuned

Three small tasks built from real text (Debian's fortunes, which ``make bench`` installs; see
bench.common.fortunes), each published as a dataset version through a one-stage pipeline (a
stratified ``split``) and read back through the store, as the trainer always does:

- ``lang``: which of 8 languages a fortune is written in (the demo's task), 300 rows per language;
- ``category``: 4 English fortune files (computers, definitions, politics, songs-poems), 600 rows each;
- ``en-de``: English or German, 1,000 rows each (binary).

Every setting trains the demo's encoder (all-MiniLM-L6-v2, LoRA on query/key/value/dense) for
``--max-steps`` (60) on at most 2,000 training rows of 32 tokens (64 for ``category``), then predicts
the test split; accuracy and macro-F1 with 95% bootstrap intervals (1,000 resamples), next to the
majority class's accuracy. Settings differ only in the options they name; everything else is the
trainer's defaults. Accuracy only, no timings: the figures do not depend on the machine's load.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import fortunes, save_result  # noqa: E402

#: what each setting sets; the rest is the trainer's defaults at the time of the run
SETTINGS = {
    "old": {"lr": 2e-4, "head_lr": 2e-4, "warmup_ratio": 0.05, "batch_size": 8},   # the defaults before issue 20
    "head30": {"lr": 2e-4, "head_lr": 6e-3, "warmup_ratio": 0.1, "batch_size": 16},  # only the head faster (30x lr)
    "new": {"lr": 1e-3, "head_lr": 3e-2, "warmup_ratio": 0.1, "batch_size": 16},    # candidate defaults
    "tuned": {"lr": 2e-3, "head_lr": 3e-2, "warmup_ratio": 0.1, "batch_size": 16},  # the demo's hand-picked rates
    "defaults": {},                                                                # whatever the trainer defaults are now
}
CATEGORIES = ("computers", "definitions", "politics", "songs-poems")
LANGS = ("cs", "de", "en", "es", "it", "pl", "pt", "ru")


def task_rows(rows: list[dict]) -> dict[str, list[dict]]:
    """The three tasks' rows ({id, text, label}), a stable sample of the fortunes."""
    rng = random.Random(0)
    by = lambda key, value: [r for r in rows if r[key] == value]  # noqa: E731

    def take(pool: list[dict], n: int, label: str) -> list[dict]:
        pool = sorted(pool, key=lambda r: (r["file"], r["text"]))
        return [{"text": r["text"], "label": label} for r in rng.sample(pool, min(n, len(pool)))]

    tasks = {"lang": [], "category": [], "en-de": []}
    for lang in LANGS:
        tasks["lang"] += take(by("lang", lang), 300, lang)
    english = by("lang", "en")
    for cat in CATEGORIES:
        tasks["category"] += take([r for r in english if r["category"] == cat], 600, cat)
    tasks["en-de"] = take(english, 1000, "en") + take(by("lang", "de"), 1000, "de")
    return tasks


def publish(name: str, rows: list[dict], work: Path) -> str:
    """Write the rows as JSONL and publish them with a stratified split; returns NAME@VERSION."""
    from corpusmill.pipelines import run_pipeline

    data = work / f"{name}.jsonl"
    data.write_text("".join(json.dumps({"id": f"{name}-{i}", **r}, ensure_ascii=False) + "\n"
                            for i, r in enumerate(rows)), encoding="utf-8")
    pipeline = work / f"{name}.yaml"
    pipeline.write_text(f"dataset: {name}\nstore: store\nseed: 0\ninputs:\n  - path: {data.name}\n"
                        "    text_field: text\n    label_field: label\nsteps:\n"
                        "  - split: {ratios: {train: 0.7, validation: 0.1, test: 0.2}, stratify: label}\n")
    return run_pipeline(pipeline, workers=1).version.ref


def score(run_dir: Path, store: str, resamples: int) -> dict:
    """Accuracy and macro-F1 (95% bootstrap intervals) of a run on its version's test split."""
    import numpy as np

    from corpusmill.evaluate import metrics as M
    from corpusmill.evaluate.compare import score_forward
    from corpusmill.store import Store
    from corpusmill.train import modeling
    from corpusmill.train.config import TrainConfig
    from corpusmill.train.run import build_examples, load_run
    from corpusmill.train.system import resolve_device

    run = load_run(run_dir)
    cfg = TrainConfig(**run["config"])
    version = Store(store).resolve(run["dataset"]["reference"])
    tokenizer = modeling.load_tokenizer(str(run_dir / "model"), False)
    ex, labels, _, _ = build_examples(cfg, version, tokenizer, "test", 0, labels=run.get("labels"))
    model = modeling.load_trained(run, run_dir / "model")
    dev = resolve_device("cpu")
    preds = score_forward(model.to(dev), ex, int(tokenizer.pad_token_id), False, dev, 64)["preds"]
    y = np.asarray(ex.labels)
    out = M.classification_set(y, preds, len(labels) + 1).with_intervals(M.resamples(len(y), resamples, 0))
    majority = Counter(y.tolist()).most_common(1)[0][1] / len(y)
    return {"n": len(y), "accuracy": out["accuracy"], "accuracy_ci": out["accuracy_ci"],
            "macro_f1": out["macro_f1"], "macro_f1_ci": out["macro_f1_ci"], "majority": majority,
            "predicted_classes": len(set(preds.tolist()))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--settings", nargs="+", default=["old", "head30", "new", "tuned"], choices=list(SETTINGS))
    ap.add_argument("--tasks", nargs="+", default=["lang", "category", "en-de"], choices=["lang", "category", "en-de"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0])
    ap.add_argument("--max-steps", type=int, default=60)
    ap.add_argument("--bootstrap", type=int, default=1000)
    args = ap.parse_args()

    from corpusmill.demo import DEMO_TRAIN, demo_model_path
    from corpusmill.train.config import TrainConfig
    from corpusmill.train.run import train
    from corpusmill.train.system import quiet_libraries

    quiet_libraries()
    work = Path(tempfile.mkdtemp(prefix="bench-train-defaults-"))
    tasks = task_rows(fortunes())
    results = []
    for task in args.tasks:
        ref = publish(task.replace("-", "_"), tasks[task], work)
        for setting in args.settings:
            for seed in args.seeds:
                run_dir = work / f"run-{task}-{setting}-{seed}"
                cfg = TrainConfig(
                    dataset=ref, model=str(demo_model_path()), store=str(work / "store"), output=str(run_dir),
                    task="classification", method="lora", lora=DEMO_TRAIN["lora"], max_train_rows=2000,
                    max_seq_len=64 if task == "category" else 32, max_steps=args.max_steps, eval_split="",
                    device="cpu", seed=seed, **SETTINGS[setting])
                record = train(cfg)
                row = {"task": task, "setting": setting, "seed": seed, "rows": len(tasks[task]),
                       "classes": len({r["label"] for r in tasks[task]}),
                       "resolved": {k: record["config"][k] for k in ("lr", "head_lr", "warmup_ratio", "batch_size")},
                       **score(run_dir, str(work / "store"), args.bootstrap)}
                results.append(row)
                print(f"{task:9s} {setting:8s} seed {seed}: accuracy {row['accuracy']:.3f} "
                      f"[{row['accuracy_ci'][0]:.3f}, {row['accuracy_ci'][1]:.3f}]  macro-F1 {row['macro_f1']:.3f} "
                      f"[{row['macro_f1_ci'][0]:.3f}, {row['macro_f1_ci'][1]:.3f}]  majority {row['majority']:.3f}  "
                      f"(n={row['n']}, {row['predicted_classes']}/{row['classes']} classes predicted)", flush=True)
    print(f"saved {save_result('train_defaults', {'max_steps': args.max_steps, 'results': results})}")


if __name__ == "__main__":
    main()
