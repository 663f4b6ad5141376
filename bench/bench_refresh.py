"""``corpusmill refresh`` against a full rebuild: a version of N documents gets 5 % new ones.

The pipeline is a typical one: clean, exact + near dedup, leakage-safe split (near twins
grouped). The parent is built from N documents; then the same 5 % new documents are (a) added
with ``corpusmill refresh`` (new rows only, deduplicated against the parent's stored index,
splits inherited) and (b) built together with the old ones from scratch by ``corpusmill run``,
the only way without refresh. Both run as a user types them, on 2 workers, on the same files.

Documents are real text from Debian's fortunes (~470 bytes) with 10 % planted near copies at
0-20 % word edits, so some new documents are copies of old ones and are rejected by the refresh.

    python bench/bench_refresh.py [--quick] [--pipeline minimal|shipped] [--repeat N]

The refresh and the rebuild each run ``--repeat`` times (default 3); the median is reported.
``--quick``: 100k documents instead of 1M. ``--pipeline shipped``: the steps of the shipped
pipeline (pipelines/demo.yaml: clean, language, pii, quality annotate, dedup, split; split
without ``stratify``, as these documents have no label) instead of the minimal clean, dedup,
split.
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
SHARD_BYTES = 16_000_000
NEW_SHARE = 0.05
STEPS = [{"clean": {}}, {"dedup": {"exact": True, "near": True}}, {"split": {}}]


def shipped_steps() -> list[dict]:
    """The shipped pipeline's steps; split without stratify (the bench documents have no label)."""
    steps = yaml.safe_load((ROOT / "pipelines" / "demo.yaml").read_text())["steps"]
    for step in steps:
        if "split" in step:
            step["split"] = {k: v for k, v in step["split"].items() if k != "stratify"}
    return steps


def corpus(n: int) -> tuple[Path, Path]:
    """base.jsonl (n documents) and new.jsonl (5 % more), written once in a child process."""
    base, new = DATA_DIR / f"refresh-{n}-base.jsonl", DATA_DIR / f"refresh-{n}-new.jsonl"
    if not (base.is_file() and new.is_file()):
        DATA_DIR.mkdir(parents=True, exist_ok=True)
        extra = int(n * NEW_SHARE)
        code = (f"from bench import dedup_corpus as dc; import random; "
                f"docs = dc.build({n + extra}, copy_share=0.1, mean_bytes=470, seed=11); "
                f"random.Random(5).shuffle(docs); "  # new documents copy old ones, as fresh data does
                f"dc.write_jsonl(docs[:{n}], {str(base)!r}); dc.write_jsonl(docs[{n}:], {str(new)!r})")
        subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
    return base, new


def cli(args: list[str], cache: Path) -> tuple[dict, str]:
    """Run ``corpusmill ARGS`` with ``cache`` as its user cache; wall seconds, CPU seconds, peak
    RSS, and the reference printed last."""
    cmd = [str(Path(sys.executable).parent / "corpusmill"), *args, "--workers", str(WORKERS), "--quiet"]
    timing, stdout = timed_cli(cmd, env={"CORPUSMILL_CACHE": str(cache)})
    return timing, stdout.strip().splitlines()[-1]


def median_run(runs: list[tuple[dict, str]]) -> dict:
    """The run of median wall time, with every run's wall time beside it."""
    ordered = sorted((t for t, _ in runs), key=lambda t: t["seconds"])
    return {**ordered[(len(ordered) - 1) // 2], "all_seconds": [round(t["seconds"], 2) for t, _ in runs]}


def manifest(store: Path, ref: str) -> dict:
    name, vid = ref.split("@")
    return json.loads((store / name / "versions" / vid / "manifest.json").read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="100k documents instead of 1M")
    ap.add_argument("--pipeline", choices=["minimal", "shipped"], default="minimal",
                    help="minimal: clean, exact + near dedup, split; shipped: the steps of pipelines/demo.yaml")
    ap.add_argument("--repeat", type=int, default=3,
                    help="runs of the refresh and of the rebuild; the median of each is reported (default: 3)")
    args = ap.parse_args()
    steps = STEPS if args.pipeline == "minimal" else shipped_steps()
    names = ", ".join(next(iter(step)) for step in steps)
    n = 100_000 if args.quick else 1_000_000
    base, new = corpus(n)
    load_before = os.getloadavg()[0]
    work = DATA_DIR / "refresh-work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        def pipeline(name: str, files: list[Path]) -> Path:
            p = work / f"{name}.yaml"
            p.write_text(yaml.safe_dump({"dataset": "bench", "inputs": [{"path": str(f), "id_field": "id"} for f in files],
                                         "execution": {"shard_bytes": SHARD_BYTES}, "steps": steps}))
            return p

        # the user cache (the report's text facts, by file checksum) as a user has it: each
        # refresh starts from what the parent's run left there, each rebuild from an empty one,
        # so no run finds what an earlier repeat of itself cached
        parent_cache = work / "cache-parent"
        parent_cost, parent = cli(["run", str(pipeline("parent", [base])), "--store", str(work / "store")], parent_cache)
        refs = (work / "store" / "bench" / "refs.json").read_text()
        refreshes, rebuilds = [], []
        for k in range(args.repeat):
            if k:  # the same refresh again: drop the version it published (it would be found, not rebuilt)
                shutil.rmtree(work / "store" / "bench" / "versions" / child.split("@")[1])
                (work / "store" / "bench" / "refs.json").write_text(refs)
            cache = work / f"cache-refresh-{k}"
            if parent_cache.is_dir():
                shutil.copytree(parent_cache, cache)
            refreshes.append(cli(["refresh", parent, "--add", str(new), "--store", str(work / "store")], cache))
            child = refreshes[-1][1]
        rebuild_yaml = pipeline("rebuild", [base, new])
        for k in range(args.repeat):
            if k:
                shutil.rmtree(work / "rebuild")
            rebuilds.append(cli(["run", str(rebuild_yaml), "--store", str(work / "rebuild")], work / f"cache-rebuild-{k}"))
            rebuilt = rebuilds[-1][1]
        refresh_cost, rebuild_cost = median_run(refreshes), median_run(rebuilds)
        pm, cm, rm = manifest(work / "store", parent), manifest(work / "store", child), manifest(work / "rebuild", rebuilt)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    ratio = refresh_cost["seconds"] / rebuild_cost["seconds"]
    added = cm["refresh"]["added"]
    print(f"\n{n:,} documents + {int(n * NEW_SHARE):,} new ({NEW_SHARE:.0%}); pipeline ({args.pipeline}): {names}; "
          f"{WORKERS} workers; machine: {os.cpu_count()} cores, load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after")
    print(f"{'':32s} {'wall s':>8s} {'CPU s':>8s} {'peak RSS MB':>12s} {'rows kept':>11s}")
    print(f"{'parent: corpusmill run (N)':32s} {parent_cost['seconds']:8.1f} {parent_cost['cpu_seconds']:8.1f} "
          f"{parent_cost['peak_rss_mb']:12.0f} {pm['counts']['kept']:11,d}")
    print(f"{'corpusmill refresh (+5%)':32s} {refresh_cost['seconds']:8.1f} {refresh_cost['cpu_seconds']:8.1f} "
          f"{refresh_cost['peak_rss_mb']:12.0f} {cm['counts']['kept']:11,d}")
    print(f"{'full rebuild: corpusmill run':32s} {rebuild_cost['seconds']:8.1f} {rebuild_cost['cpu_seconds']:8.1f} "
          f"{rebuild_cost['peak_rss_mb']:12.0f} {rm['counts']['kept']:11,d}")
    print(f"median of {args.repeat} runs each; refresh runs {refresh_cost['all_seconds']} s, rebuild runs {rebuild_cost['all_seconds']} s")
    print(f"refresh / rebuild wall time: {ratio:.3f} (target <= 0.10); the refresh read {added['rows_in']:,} new rows, "
          f"kept {added['kept']:,}, rejected {added['rows_in'] - added['kept']:,} "
          f"({', '.join(f'{s}:{r} {c:,}' for s, rs in added['rejected'].items() for r, c in rs.items())})")
    save_result("refresh" if args.pipeline == "minimal" else "refresh-shipped", {
        "quick": args.quick, "pipeline": args.pipeline, "steps": steps, "documents": n, "new_documents": int(n * NEW_SHARE), "workers": WORKERS,
                            "parent": {**parent_cost, "kept": pm["counts"]["kept"]},
                            "refresh": {**refresh_cost, "kept": cm["counts"]["kept"], "added": {
                                "rows_in": added["rows_in"], "kept": added["kept"], "rejected": added["rejected"]}},
                            "rebuild": {**rebuild_cost, "kept": rm["counts"]["kept"]},
                            "refresh_over_rebuild": round(ratio, 4)})


if __name__ == "__main__":
    main()
