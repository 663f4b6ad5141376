"""Inputs and the store on S3 against the same run on local disk.

The same corpus and pipeline (clean, exact + near dedup, split) run as a user types them, on 2
workers, each twice (alternated, best kept): (a) local JSONL files into a local store (the baseline), (b) the same files on S3 into
a store on S3. Then the published version is read back (``datasets export``) from the local
store and from S3 with an empty mirror, which downloads and checks every file. The S3 endpoint
is moto's server on 127.0.0.1 in this process: the figures show what corpusmill's remote path
costs (listing, ranged reads, uploads, checksums, the mirror), not a real network's latency.

Documents are real text from Debian's fortunes, repeated with a numbered suffix up to N.

    python bench/bench_storage.py [--quick]     # --quick: 20k documents instead of 200k
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import socket
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import orjson  # noqa: E402
import yaml  # noqa: E402

from bench.common import DATA_DIR, fortunes, save_result, timed_cli  # noqa: E402

WORKERS = 2
REPEATS = 2
BUCKET = "bench-corpora"
STEPS = [{"clean": {}}, {"dedup": {"exact": True, "near": True}}, {"split": {}}]


def corpus(n: int, folder: Path, files: int = 4) -> None:
    texts = [r["text"] for r in fortunes()]
    folder.mkdir(parents=True, exist_ok=True)
    per = -(-n // files)
    for k in range(files):
        lines = [orjson.dumps({"text": f"{texts[i % len(texts)]} ({i // len(texts)})"})
                 for i in range(k * per, min(n, (k + 1) * per))]
        (folder / f"part-{k}.jsonl").write_bytes(b"\n".join(lines) + b"\n")


def start_s3() -> object:
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1",
                      AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}")
    return server


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    n = 20_000 if args.quick else 200_000
    raw = DATA_DIR / f"storage-{n}"
    if not raw.is_dir():
        corpus(n, raw)
    size_mb = sum(f.stat().st_size for f in raw.iterdir()) / 2**20
    server = start_s3()
    import s3fs

    work = Path(tempfile.mkdtemp(prefix="bench-storage-"))
    os.environ["CORPUSMILL_CACHE"] = str(work / "cache")
    try:
        fs = s3fs.S3FileSystem()
        fs.mkdir(BUCKET)
        for f in sorted(raw.iterdir()):
            fs.put_file(str(f), f"{BUCKET}/raw/{f.name}")
        cli = [sys.executable, "-m", "corpusmill"]
        results: dict[str, dict] = {"local": {}, "s3": {}}
        for rep in range(REPEATS):  # alternated, each into a new store; the best of each is kept
            for where, inputs, store in (("local", f"{raw}/*.jsonl", str(work / f"store-{rep}")),
                                         ("s3", f"s3://{BUCKET}/raw/*.jsonl", f"s3://{BUCKET}/corpora-{rep}")):
                p = work / f"{where}.yaml"
                p.write_text(yaml.safe_dump({"dataset": "fortunes", "inputs": [{"path": inputs}], "steps": STEPS,
                                             "execution": {"shard_bytes": 8_000_000}}))
                run, out = timed_cli([*cli, "run", str(p), "--store", store, "--workers", str(WORKERS), "--quiet"])
                ref = out.strip().splitlines()[-1]
                shutil.rmtree(work / "cache", ignore_errors=True)  # the export reads the version from an empty mirror
                shutil.rmtree(work / f"export-{where}", ignore_errors=True)
                export, _ = timed_cli([*cli, "datasets", "export", ref, "--store", store, "--format", "jsonl",
                                       "--out", str(work / f"export-{where}")])
                r = results[where]
                r.setdefault("ref", ref)
                if ref != r["ref"] or ref != results["local"]["ref"]:
                    raise SystemExit(f"version ids differ: {ref} vs {results['local']['ref']}")
                for key, m in (("run", run), ("export_cold", export)):
                    r.setdefault(f"{key}_all", []).append(m)
                    if key not in r or m["seconds"] < r[key]["seconds"]:
                        r[key] = m
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)

    print(f"\n{n:,} documents, {size_mb:.0f} MB of JSONL, {WORKERS} workers, best of {REPEATS}; "
          f"version {results['local']['ref']} on both")
    print("wall seconds (best run), and CPU seconds of the command's process tree (moto's server, in this")
    print("process, is not counted): on a shared machine the CPU figure is the steadier one")
    print(f"{'step':<42}{'local (s)':>10}{'s3 via moto (s)':>17}{'s3 / local':>12}{'CPU local':>11}{'CPU s3':>9}")
    rows = {}
    for key, label in (("run", "run (read, clean, dedup, split, publish)"), ("export_cold", "export from an empty mirror")):
        a, b = results["local"][key]["seconds"], results["s3"][key]["seconds"]
        ca = min(m["cpu_seconds"] for m in results["local"][f"{key}_all"])
        cb = min(m["cpu_seconds"] for m in results["s3"][f"{key}_all"])
        rows[key] = {"local_s": a, "s3_s": b, "ratio": round(b / a, 2), "local_cpu_s": ca, "s3_cpu_s": cb}
        print(f"{label:<42}{a:>10.2f}{b:>17.2f}{b / a:>11.2f}x{ca:>11.1f}{cb:>9.1f}")
    save_result("storage", {"documents": n, "megabytes": round(size_mb, 1), "workers": WORKERS,
                            "version": results["local"]["ref"], "steps": rows, "details": results,
                            "note": "S3 is moto's server on 127.0.0.1 in the benchmark process"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
