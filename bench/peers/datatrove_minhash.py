"""datatrove's MinHash deduplication as its documentation lays it out: four pipelines on the local
executor (signatures, buckets, clusters, filter), the removed documents written by the filter's
exclusion writer.

Imports only the standard library and datatrove, so it runs as a script in an environment that
has datatrove and nothing of corpusmill's (bench/bench_peers.py builds one); bench/
bench_dedup_equivalence.py imports ``run`` instead, in corpusmill's own environment.

    python datatrove_minhash.py INPUT_FOLDER WORK [--tasks 2] [--workers 2] [--ngram 3 --bands 9 --rows 13]

INPUT_FOLDER holds JSONL files with ``id`` and ``text`` (datatrove gives each task whole files,
so ``--tasks 2`` wants at least two). Writes WORK/removed.json: datatrove's version, the LSH
layout (bands x rows) and the ids removed.
"""

from __future__ import annotations

import argparse
import json
from importlib.metadata import version
from pathlib import Path


def run(input_folder: Path, work: Path, *, glob: str = "*.jsonl", tasks: int = 1, workers: int = 2,
        ngram: int | None = None, bands: int | None = None, rows: int | None = None) -> tuple[list[str], str]:
    """The ids removed and the layout ("bands x rows"). ``tasks`` runs the signature and filter
    steps as that many shards of the input files, the bucket step has one task per band, the
    cluster step one task (datatrove's example does the same); at most ``workers`` at a time.
    ``ngram``, ``bands``, ``rows`` override ``MinhashConfig()``'s defaults (5, 14, 8)."""
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.dedup.minhash import (MinhashConfig, MinhashDedupBuckets, MinhashDedupCluster,
                                                  MinhashDedupFilter, MinhashDedupSignature)
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.writers import JsonlWriter

    overrides = {"n_grams": ngram, "num_buckets": bands, "hashes_per_bucket": rows}
    cfg = MinhashConfig(**{k: v for k, v in overrides.items() if v is not None})

    def common(step: int) -> dict:  # logging_dir=None would write a logs/ folder in the current directory
        return {"logging_dir": str(work / f"logs-{step}"), "skip_completed": False}

    def reader() -> JsonlReader:
        return JsonlReader(str(input_folder), glob_pattern=glob)

    LocalPipelineExecutor([reader(), MinhashDedupSignature(output_folder=str(work / "sigs"), config=cfg)],
                          tasks=tasks, workers=workers, **common(1)).run()
    LocalPipelineExecutor([MinhashDedupBuckets(input_folder=str(work / "sigs"), output_folder=str(work / "buckets"),
                                               config=cfg)], tasks=cfg.num_buckets, workers=workers, **common(2)).run()
    LocalPipelineExecutor([MinhashDedupCluster(input_folder=str(work / "buckets"), output_folder=str(work / "remove"),
                                               config=cfg)], tasks=1, **common(3)).run()
    LocalPipelineExecutor([reader(), MinhashDedupFilter(input_folder=str(work / "remove"),
                                                        exclusion_writer=JsonlWriter(str(work / "removed"),
                                                                                     compression=None))],
                          tasks=tasks, workers=workers, **common(4)).run()
    removed = [json.loads(line)["id"] for f in sorted((work / "removed").glob("*.jsonl"))
               for line in f.read_bytes().splitlines()]
    return removed, f"{cfg.num_buckets} x {cfg.hashes_per_bucket}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("input_folder", type=Path)
    ap.add_argument("work", type=Path)
    ap.add_argument("--tasks", type=int, default=1)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--ngram", type=int)
    ap.add_argument("--bands", type=int)
    ap.add_argument("--rows", type=int)
    args = ap.parse_args()
    removed, layout = run(args.input_folder, args.work, tasks=args.tasks, workers=args.workers,
                          ngram=args.ngram, bands=args.bands, rows=args.rows)
    (args.work / "removed.json").write_text(json.dumps({"version": version("datatrove"), "layout": layout,
                                                        "removed": removed}))


if __name__ == "__main__":
    main()
