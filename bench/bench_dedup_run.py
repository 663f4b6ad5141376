"""The whole ``corpusmill run`` with exact + near dedup, on 2 workers: time, peak memory, and
how the cost grows from 100k to 1M documents.

Documents are real text from Debian's fortunes (~500 bytes, so 1M documents are ~0.5 GB of
text) with 10 % planted copies at 0-20 % word edits. Each size is also run without the dedup
step (read + id check only), so the table shows what dedup itself adds.

    python bench/bench_dedup_run.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402

from bench.common import DATA_DIR, save_result, timed_cli  # noqa: E402

WORKERS = 2
SHARD_BYTES = 16_000_000  # 100k documents make 4 shards, 1M make 40: both sizes keep 2 workers busy


def corpus(n: int) -> tuple[Path, int]:
    """The JSONL file of ``n`` documents (written once, then reused), built in a child process
    so this one stays small: the peak RSS measured is the run's."""
    path = DATA_DIR / f"dedup-run-{n}.jsonl"
    meta = path.with_suffix(".json")
    if not (path.is_file() and meta.is_file()):
        DATA_DIR.mkdir(parents=True, exist_ok=True)
        code = (f"import json; from bench import dedup_corpus as dc; "
                f"docs = dc.build({n}, copy_share=0.1, mean_bytes=470, seed=3); "
                f"b = dc.write_jsonl(docs, {str(path)!r}); "
                f"open({str(meta)!r}, 'w').write(json.dumps({{'documents': {n}, 'text_bytes': b}}))")
        subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
    return path, json.loads(meta.read_text())["text_bytes"]


def run(data: Path, steps: list, workdir: Path) -> dict:
    """``corpusmill run`` as a user types it; wall time and peak RSS of the process tree."""
    pipe = workdir / "pipeline.yaml"
    pipe.write_text(yaml.safe_dump({"dataset": "bench", "inputs": [{"path": str(data), "id_field": "id"}],
                                    "execution": {"shard_bytes": SHARD_BYTES}, "steps": steps}))
    store = workdir / "store"
    shutil.rmtree(store, ignore_errors=True)
    cli = Path(sys.executable).parent / "corpusmill"
    cmd = [str(cli), "run", str(pipe), "--store", str(store), "--workers", str(WORKERS), "--quiet"]
    timing, _ = timed_cli(cmd)
    version = next((store / "bench" / "versions").iterdir())
    manifest = json.loads((version / "manifest.json").read_text())
    stats = json.loads((version / "stats.json").read_text())
    counters = manifest["stages"][-1]["counters"] if steps else {}
    return {**timing, "kept": manifest["counts"]["kept"],
            "rejected": manifest["counts"]["rejected"].get("dedup", {}), "segments": stats["segments"],
            "counters": {k: v for k, v in counters.items() if k != "lsh"}, "lsh": counters.get("lsh")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="20k and 100k documents instead of 100k and 1M")
    args = ap.parse_args()
    sizes = [20_000, 100_000] if args.quick else [100_000, 1_000_000]
    dedup = [{"dedup": {"exact": True, "near": True}}]
    rows = []
    workdir = DATA_DIR / "run-work"
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        for n in sizes:
            data, text_bytes = corpus(n)
            base = run(data, [], workdir)
            full = run(data, dedup, workdir)
            rows.append({"documents": n, "text_mb": round(text_bytes / 1e6, 1), "without_dedup": base, "with_dedup": full})
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"\n`corpusmill run`, {WORKERS} workers, shards of {SHARD_BYTES / 1e6:.0f} MB, exact + near dedup (defaults), "
          f"machine: {os.cpu_count()} cores (shared)")
    print("wall seconds, CPU seconds of all processes (user + system), peak RSS of the process tree")
    print(f"{'documents':>10s} {'text MB':>8s} {'read only s':>12s} {'(CPU s)':>8s} {'with dedup s':>13s} {'(CPU s)':>8s} "
          f"{'peak RSS MB':>12s} {'removed':>9s}")
    for r in rows:
        w, b = r["with_dedup"], r["without_dedup"]
        print(f"{r['documents']:10,d} {r['text_mb']:8.1f} {b['seconds']:12.1f} {b['cpu_seconds']:8.1f} {w['seconds']:13.1f} "
              f"{w['cpu_seconds']:8.1f} {w['peak_rss_mb']:12.0f} {sum(w['rejected'].values()):9,d}")
    if len(rows) == 2:
        small, big = rows
        scale = big["documents"] / small["documents"]
        growth = big["with_dedup"]["seconds"] / small["with_dedup"]["seconds"]
        added = (big["with_dedup"]["seconds"] - big["without_dedup"]["seconds"]) / max(
            small["with_dedup"]["seconds"] - small["without_dedup"]["seconds"], 1e-9)
        cpu_growth = big["with_dedup"]["cpu_seconds"] / small["with_dedup"]["cpu_seconds"]
        print(f"{scale:.0f}x the documents: {growth:.1f}x the wall time, {cpu_growth:.1f}x the CPU time "
              f"({added:.1f}x the wall time dedup adds)")
    save_result("dedup_run", {"quick": args.quick, "workers": WORKERS, "rows": rows})


if __name__ == "__main__":
    main()
