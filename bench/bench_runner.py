"""The runner with no stages over a large JSONL corpus: rows/s and peak RSS (target < 1.5 GB).

The corpus is real text (Debian's fortunes) repeated with a counter until it reaches the target
size, with the fields a real corpus has (text, category, lang). The baseline in the same process
is the straightforward single-process loop: json.loads per line, pyarrow table, Parquet file.

    python bench/bench_runner.py            # 1 GB
    python bench/bench_runner.py --gb 0.1   # quick
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from bench.common import DATA_DIR, TreeMonitor, fortunes, save_result  # noqa: E402


def make_corpus(gb: float) -> Path:
    path = DATA_DIR / f"runner-{gb:g}g.jsonl"
    if path.is_file():
        return path
    target = int(gb * 1e9)
    rows = fortunes()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    written = i = 0
    with open(tmp, "w", encoding="utf-8") as f:
        while written < target:
            r = rows[i % len(rows)]
            line = json.dumps({"text": f"{r['text']} [{i}]", "category": r["category"], "lang": r["lang"]},
                              ensure_ascii=False) + "\n"
            f.write(line)
            written += len(line.encode())
            i += 1
    tmp.rename(path)
    return path


def baseline(path: Path, out: Path, limit_rows: int) -> tuple[float, int]:
    """json.loads + pyarrow + Parquet, one process, on the first ``limit_rows`` rows."""
    t0 = time.perf_counter()
    texts, n = [], 0
    writer = None
    with open(path, encoding="utf-8") as f:
        for line in f:
            texts.append(json.loads(line)["text"])
            n += 1
            if len(texts) == 65536 or n == limit_rows:
                t = pa.table({"text": texts})
                writer = writer or pq.ParquetWriter(out, t.schema, compression="zstd")
                writer.write_table(t)
                texts = []
            if n == limit_rows:
                break
    if writer:
        writer.close()
    return time.perf_counter() - t0, n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gb", type=float, default=1.0)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    from corpusmill.pipelines import run_pipeline

    corpus = make_corpus(args.gb)
    size = corpus.stat().st_size
    work = DATA_DIR / "runner-work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    pipeline = work / "p.yaml"
    pipeline.write_text(json.dumps({"dataset": "bench", "inputs": [{"path": str(corpus), "label_field": "category"}],
                                    "steps": []}))
    with TreeMonitor() as rss:
        t0 = time.perf_counter()
        result = run_pipeline(pipeline, store=work / "store", workers=args.workers)
        seconds = time.perf_counter() - t0
    rows = result.manifest["counts"]["input"]
    base_s, base_rows = baseline(corpus, work / "baseline.parquet", min(rows, 1_000_000))
    ours = rows / seconds
    base = base_rows / base_s
    print(f"corpus: {size / 1e9:.2f} GB, {rows:,} rows, workers={args.workers}, cpus={os.cpu_count()}")
    print(f"{'':28}{'rows/s':>12}{'MB/s':>10}")
    print(f"{'corpusmill run (no stages)':28}{ours:>12,.0f}{size / seconds / 1e6:>10.1f}   peak RSS {rss.peak_mb:,.0f} MB")
    print(f"{'json.loads+pyarrow, 1 proc':28}{base:>12,.0f}{'':>10}   (on {base_rows:,} rows)")
    print(f"ratio: {ours / base:.2f}x the plain loop; accounting checked for every row; peak RSS target < 1536 MB")
    save_result("runner", {
        "corpus_bytes": size, "rows": rows, "workers": args.workers, "seconds": round(seconds, 2),
        "rows_per_s": round(ours), "mb_per_s": round(size / seconds / 1e6, 1), "peak_rss_mb": rss.peak_mb,
        "baseline_rows_per_s": round(base), "ratio_vs_baseline": round(ours / base, 2),
        "command": f"python bench/bench_runner.py --gb {args.gb:g} --workers {args.workers}",
    })
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
