"""N-gram decontamination of a 10k-row benchmark against 1 GB of training text (target <= 60 s
on 2 cores), with peak RSS; the baseline is the plain-Python matcher of lm-evaluation-harness
style (a set of 13-gram tuples) in the same process, on a sample of the same training rows.

The benchmark rows are 10,000 fortunes held out of the training text; 100 of them are planted
into the training text inside longer rows, so the expected number of contaminated rows is known.

    python bench/bench_decontaminate.py            # 1 GB
    python bench/bench_decontaminate.py --gb 0.1   # quick
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import DATA_DIR, TreeMonitor, fortunes, save_result  # noqa: E402


def make_data(gb: float) -> tuple[Path, Path, int]:
    from corpusmill.dataprep.ngrams import tokens

    rows = [r for r in fortunes() if len(tokens(r["text"])) >= 13]
    rng = random.Random(0)
    rng.shuffle(rows)
    bench_rows, train_rows = rows[:10_000], rows[10_000:]
    # fortunes recur across files: keep only training fortunes that share no 13-gram with the
    # benchmark, so the planted rows are the only contamination and "found" can be checked
    import pyarrow as pa

    from corpusmill.dataprep.ngrams import ngram_hashes

    bench_grams = set(ngram_hashes(pa.array([r["text"] for r in bench_rows]), 13).hashes.tolist())
    ng = ngram_hashes(pa.array([r["text"] for r in train_rows]), 13)
    leaky = {int(d) for h, d in zip(ng.hashes.tolist(), ng.doc.tolist()) if h in bench_grams}
    train_rows = [r for i, r in enumerate(train_rows) if i not in leaky]
    planted = bench_rows[:100]
    bench = DATA_DIR / "decontam-bench.jsonl"
    train = DATA_DIR / f"decontam-train-v2-{gb:g}g.jsonl"
    bench.parent.mkdir(parents=True, exist_ok=True)
    bench.write_text("".join(json.dumps({"question": r["text"]}, ensure_ascii=False) + "\n" for r in bench_rows))
    if not train.is_file():
        target, written, i = int(gb * 1e9), 0, 0
        tmp = train.with_suffix(".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            while written < target:
                text = f"{train_rows[i % len(train_rows)]['text']} [{i}]"
                if i % (len(train_rows) * 3 // 100 + 1) == 0 and i // (len(train_rows) * 3 // 100 + 1) < len(planted):
                    text = f"Seen on a forum: {planted[i // (len(train_rows) * 3 // 100 + 1)]['text']} End of quote."
                line = json.dumps({"text": text}, ensure_ascii=False) + "\n"
                f.write(line)
                written += len(line.encode())
                i += 1
        tmp.rename(train)
    return train, bench, len(planted)


def baseline(train: Path, bench: Path, n: int, limit: int) -> tuple[float, int, int]:
    """lm-eval-harness style: lower, strip punctuation, split; a Python set of n-gram tuples."""
    from corpusmill.dataprep.ngrams import tokens

    grams = set()
    for line in bench.read_text().splitlines():
        t = tokens(json.loads(line)["question"])
        grams.update(tuple(t[i: i + n]) for i in range(len(t) - n + 1))
    t0 = time.perf_counter()
    hits = rows = 0
    with open(train, encoding="utf-8") as f:
        for line in f:
            t = tokens(json.loads(line)["text"])
            hits += any(tuple(t[i: i + n]) in grams for i in range(len(t) - n + 1))
            rows += 1
            if rows == limit:
                break
    return time.perf_counter() - t0, rows, hits


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gb", type=float, default=1.0)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    from corpusmill.pipelines import run_pipeline

    train, bench, planted = make_data(args.gb)
    work = DATA_DIR / "decontam-work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    pipeline = work / "p.yaml"
    pipeline.write_text(json.dumps({
        "dataset": "decontam", "inputs": [{"path": str(train)}],
        "steps": [{"decontaminate": {"benchmarks": [str(bench)], "text_field": "question", "checks": ["ngram"]}}],
    }))
    with TreeMonitor() as rss:
        t0 = time.perf_counter()
        result = run_pipeline(pipeline, store=work / "store", workers=args.workers, quiet=True)
        seconds = time.perf_counter() - t0
    m = result.manifest
    rows = m["counts"]["input"]
    found = m["counts"]["rejected"].get("decontaminate", {}).get("contaminated_ngram", 0)
    base_s, base_rows, _ = baseline(train, bench, 13, 200_000)
    ours, base = rows / seconds, base_rows / base_s
    size = train.stat().st_size
    print(f"training text {size / 1e9:.2f} GB, {rows:,} rows; benchmark 10,000 rows; workers={args.workers}")
    print(f"corpusmill run + decontaminate: {seconds:.1f} s ({ours:,.0f} rows/s), peak RSS {rss.peak_mb:,.0f} MB; "
          f"contaminated rows found {found} of {planted} planted")
    print(f"plain-Python 13-gram set (lm-eval style), 1 process: {base:,.0f} rows/s on {base_rows:,} rows")
    print(f"ratio: {ours / base:.1f}x; target <= 60 s for 1 GB")
    save_result("decontaminate", {
        "train_bytes": size, "train_rows": rows, "benchmark_rows": 10_000, "workers": args.workers,
        "seconds": round(seconds, 1), "rows_per_s": round(ours), "peak_rss_mb": rss.peak_mb,
        "planted": planted, "found": found, "baseline_rows_per_s": round(base), "ratio": round(ours / base, 1),
        "command": f"python bench/bench_decontaminate.py --gb {args.gb:g} --workers {args.workers}",
    })
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
