"""Domain selection on real labelled text: which method keeps the documents of a domain?

Data: the English Debian fortunes (``bench.common.fortunes()``), each with its category. For
each domain (a category), 50 of its rows are the target examples; the pool is a seeded random
sample of the other English fortunes (every category, the domain's remaining rows included), the
same pool for every domain and method. Each method scores the pool exactly as the ``select``
stage does (``Select.score_in_memory``: map + fit + score, in this process) and keeps the top
``prevalence`` fraction (where precision = recall) and the top 2 x prevalence.

Baselines: ``keywords`` (a hand-written list per domain, written before looking at results) and
``random`` (a seeded shuffle). The embedding method encodes the pool once (timed, for docs/s);
later domains reuse those vectors with their own target centroid (the same arithmetic as the
stage). Usage: python bench/bench_select.py [--quick] [--pool N] [--no-embedding]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import fortunes, save_result  # noqa: E402
from corpusmill.dataprep.select import Select, SelectConfig, Target  # noqa: E402
from corpusmill.stage import RunInfo  # noqa: E402

DOMAINS = {
    "computers": ["computer", "computers", "program", "programs", "programming", "programmer", "software", "hardware",
                  "unix", "code", "bug", "bugs", "system", "memory", "disk", "data", "byte", "bytes", "language",
                  "compiler", "kernel", "windows", "machine", "network", "internet", "email", "file", "files", "user",
                  "users"],
    "science": ["science", "scientist", "scientists", "scientific", "physics", "physicist", "chemistry", "biology",
                "experiment", "theory", "research", "laboratory", "lab", "energy", "atom", "atoms", "electron",
                "mathematics", "mathematician", "equation", "universe", "einstein", "newton", "hypothesis", "engineer",
                "engineering"],
    "politics": ["politics", "political", "politician", "politicians", "government", "president", "congress", "senate",
                 "vote", "voters", "election", "democracy", "democrat", "republican", "party", "law", "laws", "tax",
                 "taxes", "king", "state", "nation", "power", "war", "liberty", "freedom"],
}
N_TARGET = 50


def evaluate(scores: np.ndarray, y: np.ndarray) -> dict:
    """Precision and recall of the top prevalence and top 2 x prevalence, and average precision."""
    pos = int(y.sum())
    order = np.lexsort((np.arange(len(y)), -scores))  # the stage's tie rule
    hits = y[order]
    out = {}
    for name, k in (("at_prevalence", pos), ("at_2x_prevalence", 2 * pos)):
        tp = int(hits[:k].sum())
        out[name] = {"kept": k, "precision": round(tp / k, 4), "recall": round(tp / pos, 4)}
    prec = np.cumsum(hits) / np.arange(1, len(y) + 1)
    out["average_precision"] = round(float((prec * hits).sum() / pos), 4)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="1,500-row pool, one domain, no embedding")
    ap.add_argument("--pool", type=int, default=5000, help="pool rows (default 5000; 0 = every English fortune)")
    ap.add_argument("--no-embedding", action="store_true")
    args = ap.parse_args()
    pool_n = 1500 if args.quick else args.pool
    domains = ["computers"] if args.quick else list(DOMAINS)
    with_embedding = not (args.quick or args.no_embedding)

    rows = [r for r in fortunes() if r["lang"] == "en"]
    rng = random.Random(0)
    targets, reserved = {}, set()
    for d in domains:
        idx = [i for i, r in enumerate(rows) if r["category"] == d]
        rng.shuffle(idx)
        targets[d] = [rows[i]["text"] for i in idx[:N_TARGET]]
        reserved.update(idx[:N_TARGET])
    candidates = [i for i in range(len(rows)) if i not in reserved]
    rng.shuffle(candidates)
    chosen = sorted(candidates[:pool_n] if pool_n else candidates)
    pool = pa.table({"id": [f"f{i}" for i in chosen], "text": [rows[i]["text"] for i in chosen]})
    categories = np.array([rows[i]["category"] for i in chosen])
    print(f"pool: {pool.num_rows:,} English fortunes; targets: {N_TARGET} rows per domain; domains: {', '.join(domains)}")

    methods = ["ngram_importance", "classifier", "keywords"] + (["embedding"] if with_embedding else [])
    results: dict = {}
    pool_vectors = None
    embed_seconds = None
    for d in domains:
        y = categories == d
        res = results[d] = {"pool": int(pool.num_rows), "in_domain": int(y.sum()), "prevalence": round(float(y.mean()), 4)}
        perm = np.random.default_rng(0).permutation(len(y)).astype(np.float64)
        res["random"] = {**evaluate(-perm, y), "docs_per_s": None}
        for m in methods:
            opts = {"method": m, "keep": {"top_fraction": max(float(y.mean()), 1e-6)}}
            opts.update({"keywords": DOMAINS[d]} if m == "keywords" else {"target": "bench-target"})
            stage = Select(SelectConfig(**opts), name="select", run=RunInfo("bench", 0))
            stage.__dict__["target"] = Target(targets[d], {}, f"{d} examples")  # in memory, not a file
            t0 = time.perf_counter()
            if m == "embedding":
                # EmbeddingScorer.score is vectors @ centroid: encode the pool once, reuse it
                scorer = stage.scorer
                if pool_vectors is None:
                    t0 = time.perf_counter()
                    pool_vectors = scorer._encode(pool.column("text").to_pylist())
                    embed_seconds = time.perf_counter() - t0
                scores = (pool_vectors @ scorer.centroid).astype(np.float64)
                seconds = embed_seconds
            else:
                scores = stage.score_in_memory(pool)
                seconds = time.perf_counter() - t0
            res[m] = {**evaluate(scores, y), "docs_per_s": round(pool.num_rows / seconds, 1)}
            print(f"  {d:10s} {m:17s} P@prev {res[m]['at_prevalence']['precision']:.3f}  "
                  f"AP {res[m]['average_precision']:.3f}  {res[m]['docs_per_s']:,.0f} docs/s", flush=True)

    print()
    head = f"| domain (in-domain / pool) | method | P = R at prevalence | P at 2x | R at 2x | avg precision | vs random (P) | docs/s |"
    print(head)
    print("|" + "---|" * 8)
    for d, res in results.items():
        base = res["random"]["at_prevalence"]["precision"] or 1e-9
        for m in ["random", *methods]:
            r = res[m]
            dps = f"{r['docs_per_s']:,.0f}" if r["docs_per_s"] else "-"
            print(f"| {d} ({res['in_domain']} / {res['pool']}) | {m} | {r['at_prevalence']['precision']:.3f} | "
                  f"{r['at_2x_prevalence']['precision']:.3f} | {r['at_2x_prevalence']['recall']:.3f} | "
                  f"{r['average_precision']:.3f} | {r['at_prevalence']['precision'] / base:.1f}x | {dps} |")
    save_result("select", {"pool_rows": int(pool.num_rows), "targets_per_domain": N_TARGET, "quick": args.quick,
                           "results": results,
                           "note": "docs/s: scoring in this process, one core-ish, on a shared 2-core machine"})


if __name__ == "__main__":
    main()
