"""Precision and recall of near-duplicate removal against planted truth, by true Jaccard.

The corpus: base documents of ~400 bytes made of fortunes used at most once (so two base
documents share no text) and planted copies of random bases with 0-20 % of their words
edited. The whole ``corpusmill run`` (exact + near dedup, threshold 0.8, defaults otherwise)
decides; the truth is the family each row was planted from.

* precision: share of removed rows whose ``duplicate_of`` is of their own family; a second
  figure also counts removals across families whose true Jaccard reaches the threshold (the
  fortunes hold some quotes twice, re-wrapped, in two packages: real duplicates nobody planted);
* recall, per bucket of true Jaccard (word 3-gram shingle sets, computed exactly) between a
  planted copy and its base: share of pairs that end in one cluster (same kept row).

A second run does the same with datasketch's ``MinHashLSH`` (threshold 0.8, 128 slots,
its default weights) on the same shingles, without verification, for reference.

    python bench/bench_dedup_quality.py [--quick]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import yaml  # noqa: E402

from bench import dedup_corpus  # noqa: E402
from bench.common import save_result  # noqa: E402

THRESHOLD = 0.8
BUCKETS = [0.0, 0.5, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 1.0, 1.01]


def true_jaccard(texts_a: list[str], texts_b: list[str]) -> np.ndarray:
    from corpusmill.dataprep import lsh
    from corpusmill.dataprep.minhash import Shingling

    sh = Shingling("word", 3).shingles(pa.array(texts_a + texts_b))
    sets = lsh.unique_sets(sh)
    n = len(texts_a)
    return lsh.set_jaccard(sets, np.stack([np.arange(n), np.arange(n, 2 * n)], axis=1))


def score(docs, keeper_of: dict[str, str], label: str) -> dict:
    """Precision of removals and recall per true-Jaccard bucket of (copy, base) pairs."""
    family = {d.id: d.family for d in docs}
    text = {d.id: d.text for d in docs}
    removed = {i: k for i, k in keeper_of.items() if k != i}
    correct = sum(family[i] == family[k] for i, k in removed.items())
    # a removal across families is still right when the two texts really are near duplicates:
    # the fortunes hold some texts twice (the same quote in two packages, re-wrapped)
    other = [(i, k) for i, k in removed.items() if family[i] != family[k]]
    other_j = true_jaccard([text[i] for i, _ in other], [text[k] for _, k in other]) if other else np.zeros(0)
    unplanted = int((other_j >= THRESHOLD).sum())
    base_of = {d.family: d for d in docs if d.edit_rate < 0}
    copies = [d for d in docs if d.edit_rate >= 0]
    jac = true_jaccard([d.text for d in copies], [base_of[d.family].text for d in copies])
    found = np.array([keeper_of[d.id] == keeper_of[base_of[d.family].id] for d in copies])
    rows = []
    for lo, hi in zip(BUCKETS[:-1], BUCKETS[1:]):
        sel = (jac >= lo) & (jac < hi)
        if sel.any():
            rows.append({"jaccard": f"[{lo:.2f}, {min(hi, 1.0):.2f}{']' if hi > 1 else ')'}", "pairs": int(sel.sum()),
                         "recall": round(float(found[sel].mean()), 4)})
    high = jac >= THRESHOLD + 0.05
    out = {
        "method": label, "removed": len(removed), "correct_removals": int(correct),
        "precision": round(correct / max(len(removed), 1), 4),
        "unplanted_true_duplicates": unplanted,
        "precision_counting_unplanted": round((correct + unplanted) / max(len(removed), 1), 4),
        "recall_at_threshold_plus_0.05": round(float(found[high].mean()), 4), "pairs_at_threshold_plus_0.05": int(high.sum()),
        "buckets": rows,
    }
    return out


def run_corpusmill(docs, workdir: Path) -> tuple[dict[str, str], float]:
    from corpusmill.pipelines import run_pipeline
    from corpusmill.store import Store

    data = workdir / "docs.jsonl"
    dedup_corpus.write_jsonl(docs, data)
    pipe = workdir / "pipeline.yaml"
    pipe.write_text(yaml.safe_dump({
        "dataset": "quality", "inputs": [{"path": str(data), "id_field": "id"}],
        "steps": [{"dedup": {"exact": True, "near": {"threshold": THRESHOLD}}}],
    }))
    t0 = time.perf_counter()
    result = run_pipeline(pipe, store=workdir / "store", workers=2)
    seconds = time.perf_counter() - t0
    version = Store(workdir / "store").resolve(result.version.ref)
    keeper = {i: i for i in version.read_split("all").column("id").to_pylist()}
    rej = version.read_rejects()
    if rej is not None:
        keeper.update(zip(rej.column("id").to_pylist(), rej.column("duplicate_of").to_pylist()))
    return keeper, seconds


def run_datasketch(docs) -> tuple[dict[str, str], float]:
    """datasketch MinHashLSH as its documentation shows it: insert each document, query first;
    a document with a hit is removed in favour of the first hit (no verification)."""
    from datasketch import MinHash, MinHashLSH

    from corpusmill.dataprep.minhash import Shingling

    t0 = time.perf_counter()
    sh = Shingling("word", 3).shingles(pa.array([d.text for d in docs]))
    index = MinHashLSH(threshold=THRESHOLD, num_perm=128)
    keeper: dict[str, str] = {}
    for k, d in enumerate(docs):
        m = MinHash(num_perm=128, seed=1)
        m.update_batch([int(h).to_bytes(8, "little") for h in sh.hashes[sh.offsets[k]:sh.offsets[k + 1]]])
        hits = index.query(m)
        if hits:
            first = min(hits, key=lambda i: int(i.split(":")[0]))
            keeper[d.id] = keeper[first.split(":", 1)[1]]
        else:
            index.insert(f"{k}:{d.id}", m)
            keeper[d.id] = d.id
    return keeper, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="a smaller corpus, no datasketch run")
    args = ap.parse_args()
    n = 6_000 if args.quick else 30_000
    docs = dedup_corpus.build(n, copy_share=0.25, reuse=False, mean_bytes=400, seed=2)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        keeper, seconds = run_corpusmill(docs, Path(tmp))
    results.append({**score(docs, keeper, "corpusmill (exact + near, verify)"), "seconds": round(seconds, 2)})
    if not args.quick:
        keeper, seconds = run_datasketch(docs)
        results.append({**score(docs, keeper, "datasketch MinHashLSH (estimates only)"), "seconds": round(seconds, 2)})
    print(f"\n{n:,} documents ({sum(d.edit_rate >= 0 for d in docs):,} planted copies at 0-20 % word edits), "
          f"threshold {THRESHOLD}")
    for r in results:
        print(f"\n{r['method']}: removed {r['removed']:,}, precision {r['precision']:.4f} "
              f"({r['precision_counting_unplanted']:.4f} counting {r['unplanted_true_duplicates']} unplanted true duplicates), "
              f"recall for Jaccard >= "
              f"{THRESHOLD + 0.05:.2f}: {r['recall_at_threshold_plus_0.05']:.4f} ({r['pairs_at_threshold_plus_0.05']:,} pairs), "
              f"{r['seconds']:.1f} s")
        print(f"  {'true Jaccard':14s} {'pairs':>7s} {'recall':>7s}")
        for b in r["buckets"]:
            print(f"  {b['jaccard']:14s} {b['pairs']:7,d} {b['recall']:7.3f}")
    save_result("dedup_quality", {"quick": args.quick, "documents": n, "threshold": THRESHOLD, "results": results})


if __name__ == "__main__":
    main()
