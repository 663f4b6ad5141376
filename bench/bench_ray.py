"""The Ray executor's overhead: ``corpusmill run`` with ``--executor local`` and ``--executor ray``
(a local Ray instance) on the same corpus, 2 CPUs each, and whether both publish the same bytes.

Documents are real text from Debian's fortunes (~470 bytes, 10 % planted near copies); the
pipeline is clean, exact + near dedup, split. Ray's time includes starting and stopping its
local instance, which is what a user of one machine pays: each segment is one Ray Data
execution (map stages through ``map_batches``) and each reduce grouping one Ray Data
``groupby`` shuffle, so the table also shows the time per segment (its map phase and reduce).

With ``--s3`` a third run puts the inputs and the store on S3 (moto's server on 127.0.0.1, in
this process) and runs ``--executor ray``: the work folder is then on the bucket and the tasks
exchange every file through it (docs/ray.md), which is what a cluster without a shared
filesystem pays; moto on the loopback measures corpusmill's remote path, not a network.

    python bench/bench_ray.py [--quick] [--s3]     # --quick: 20k documents instead of 200k
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
STEPS = [{"clean": {}}, {"dedup": {"exact": True, "near": True}}, {"split": {}}]


def corpus(n: int) -> Path:
    path = DATA_DIR / f"ray-{n}.jsonl"
    if not path.is_file():
        DATA_DIR.mkdir(parents=True, exist_ok=True)
        code = (f"from bench import dedup_corpus as dc; "
                f"dc.write_jsonl(dc.build({n}, copy_share=0.1, mean_bytes=470, seed=7), {str(path)!r})")
        subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
    return path


def run(pipe: Path, store: Path | str, executor: str) -> tuple[dict, dict]:
    cmd = [str(Path(sys.executable).parent / "corpusmill"), "run", str(pipe), "--store", str(store),
           "--workers", str(WORKERS), "--executor", executor, "--quiet"]
    timing, stdout = timed_cli(cmd)
    name, vid = stdout.strip().splitlines()[-1].split("@")
    from corpusmill.store import Store

    folder = Store(store).version(name, vid).path  # a store on s3: its mirror (the publish put the version there)
    manifest = json.loads((folder / "manifest.json").read_text())
    segments = json.loads((folder / "stats.json").read_text())["segments"]  # per segment, with its reduce
    return {"seconds": timing["seconds"], "peak_rss_mb": timing["peak_rss_mb"], "segments": segments}, manifest


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="20k documents instead of 200k")
    ap.add_argument("--s3", action="store_true", help="also run Ray with the inputs and the store on S3 (moto)")
    args = ap.parse_args()
    n = 20_000 if args.quick else 200_000
    data = corpus(n)
    work = DATA_DIR / "ray-work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    pipe = work / "p.yaml"
    pipe.write_text(yaml.safe_dump({"dataset": "bench", "inputs": [{"path": str(data), "id_field": "id"}],
                                    "execution": {"shard_bytes": 8_000_000}, "steps": STEPS}))
    server = None
    try:
        local, lm = run(pipe, work / "local", "local")
        ray_, rm = run(pipe, work / "ray", "ray")
        if args.s3:
            from bench.bench_storage import start_s3

            server = start_s3()
            import s3fs

            os.environ["CORPUSMILL_CACHE"] = str(work / "cache")
            s3fs.S3FileSystem().mkdir("bench-ray")
            s3fs.S3FileSystem().put_file(str(data), f"bench-ray/raw/{data.name}")
            s3_pipe = work / "p-s3.yaml"
            s3_pipe.write_text(yaml.safe_dump({**yaml.safe_load(pipe.read_text()), "inputs": [
                {"path": f"s3://bench-ray/raw/{data.name}", "id_field": "id"}]}))
            ray_s3, sm = run(s3_pipe, "s3://bench-ray/corpora", "ray")
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(work, ignore_errors=True)

    def files(m):
        return m["version"], {k: e["sha256"] for k, e in m["files"].items()}

    same = files(lm) == files(rm)
    print(f"\n{n:,} documents, {lm['shards']} shards; clean, exact + near dedup, split; {WORKERS} CPUs each; "
          f"machine: {os.cpu_count()} cores, shared with other users")
    print(f"{'executor':10s} {'wall s':>8s} {'peak RSS MB':>12s}")
    print(f"{'local':10s} {local['seconds']:8.1f} {local['peak_rss_mb']:12.0f}")
    print(f"{'ray':10s} {ray_['seconds']:8.1f} {ray_['peak_rss_mb']:12.0f}")
    if args.s3:
        print(f"{'ray, s3':10s} {ray_s3['seconds']:8.1f} {ray_s3['peak_rss_mb']:12.0f}")
    print(f"ray / local: {ray_['seconds'] / local['seconds']:.2f}x; same version id and bytes: {same}")
    if args.s3:
        same_s3 = files(sm) == files(lm)
        print(f"ray on s3 / ray on local paths: {ray_s3['seconds'] / ray_['seconds']:.2f}x; "
              f"same version id and bytes: {same_s3}")
    print(f"\n{'segment (map phase + its reduce)':48s} {'local s':>8s} {'ray s':>8s}" + (f" {'ray s3 s':>9s}" if args.s3 else ""))
    for seg, t in local["segments"].items():
        print(f"{seg:48s} {t:8.1f} {ray_['segments'].get(seg, float('nan')):8.1f}"
              + (f" {ray_s3['segments'].get(seg, float('nan')):9.1f}" if args.s3 else ""))
    result = {"quick": args.quick, "documents": n, "shards": lm["shards"], "workers": WORKERS,
              "local": local, "ray": ray_, "ray_over_local": round(ray_["seconds"] / local["seconds"], 3),
              "identical": same}
    if args.s3:
        result.update(ray_s3=ray_s3, ray_s3_over_ray=round(ray_s3["seconds"] / ray_["seconds"], 3),
                      identical_s3=same_s3, s3_note="S3 is moto's server on 127.0.0.1 in the benchmark process")
    save_result("ray", result)


if __name__ == "__main__":
    main()
