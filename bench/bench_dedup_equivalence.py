"""Which ``near`` settings reproduce other tools' MinHash defaults, with removal counts side by side.

The defaults, as read from each tool's source (datatrove 0.10.1 installed from the ``bench``
extra; text-dedup 0.4.0 and Data-Juicer (py-data-juicer) 1.6.1 read from their PyPI packages):

=============  ===================  =====  ======  ===========  ==========================
tool           shingles             slots  thresh  bands x rows  decision
=============  ===================  =====  ======  ===========  ==========================
datatrove      word 5-grams (1)     112    none    14 x 8        any shared band
text-dedup     word 5-grams (2)     250    0.7     25 x 10 (4)   any shared band
Data-Juicer    word 5-grams (3)     256    0.7     25 x 10 (4)   any shared band
corpusmill     word 3-grams (5)     128    0.8     16 x 8 (6)    Jaccard of the shingle sets
=============  ===================  =====  ======  ===========  ==========================

(1) ``MinhashConfig``: ``simplify_text`` (lower-case, punctuation removed, digits to 0,
diacritics folded) then spaCy's English word tokenizer; (2) ``minhash.py``: lower-cased, split
on ``\\W``; (3) ``document_minhash_deduplicator``: ``tokenization="space"`` (split on whitespace,
punctuation stays on the word), lower-cased, ``window_size=5``; (4) both call datasketch's
``optimal_param(threshold, num_perm)`` with weights 0.5/0.5; corpusmill picks the same layout
with ``fp_weight: 0.5, fn_weight: 0.5``; (5) lower-cased, punctuation separates words;
(6) weights 0.05/0.95.

None of the three checks a candidate pair: two documents that share one band are duplicates
(union-find over the buckets). corpusmill reproduces that with the tool's layout, ``verify:
false`` and a threshold below the smallest estimate a shared band gives (rows / num_perm), so
every candidate is accepted; the second corpusmill row per tool keeps the tool's shingles and
threshold and verifies every pair (what corpusmill does by default).

Each configuration runs ``corpusmill run`` (exact dedup off, so only the near step decides) on
the same corpus, from bench/dedup_corpus.py: base documents of ~400 bytes built from fortunes
used at most once (two base documents share no text) and 25 % planted copies with 0-20 %
word edits. datatrove runs its own four-step MinHash pipeline (needs ``pip install
'corpusmill[bench]'``). text-dedup and Data-Juicer are not run: text-dedup 0.4.0 needs
``datasets`` with its own version pins and Data-Juicer pulls in hundreds of megabytes of
dependencies; their rows are corpusmill at their settings.

Scores, from the planted truth (a family: a base document and its copies):

* removed: rows removed;
* wrong: removals a family cannot explain (more rows removed from a family than it has
  copies), a lower bound on false removals;
* families merged: families with copies of which exactly one row is left.

    python bench/bench_dedup_equivalence.py [--docs 30000]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import yaml  # noqa: E402

from bench import dedup_corpus  # noqa: E402
from bench.common import save_result  # noqa: E402

#: (label, tool whose default it reproduces, near options)
CONFIGS = [
    ("corpusmill default", "-", {"threshold": 0.8}),
    ("corpusmill at datatrove's layout, every candidate", "datatrove",
     {"ngram": 5, "num_perm": 112, "bands": 14, "rows": 8, "verify": False, "threshold": 0.05}),
    ("corpusmill, 5-grams, threshold 0.72, verified", "datatrove", {"ngram": 5, "threshold": 0.72}),
    ("corpusmill at text-dedup's layout, every candidate", "text-dedup",
     {"ngram": 5, "num_perm": 250, "bands": 25, "rows": 10, "verify": False, "threshold": 0.03}),
    ("corpusmill at Data-Juicer's layout, every candidate", "Data-Juicer",
     {"ngram": 5, "num_perm": 256, "bands": 25, "rows": 10, "verify": False, "threshold": 0.03}),
    ("corpusmill, 5-grams, threshold 0.7, verified", "text-dedup, Data-Juicer",
     {"ngram": 5, "threshold": 0.7, "fp_weight": 0.5, "fn_weight": 0.5}),
    # a tool run with threshold 0.8: the same threshold on longer shingles is a stricter test
    ("corpusmill, 5-grams, threshold 0.8, verified", "a 5-gram tool at 0.8", {"ngram": 5, "threshold": 0.8}),
]


def score(docs, removed: set[str]) -> dict:
    size = Counter(d.family for d in docs)
    gone = Counter(d.family for d in docs if d.id in removed)
    wrong = sum(max(0, n - (size[f] - 1)) for f, n in gone.items())
    with_copies = [f for f, s in size.items() if s > 1]
    merged = sum(gone[f] == size[f] - 1 for f in with_copies)
    return {"removed": len(removed), "wrong": wrong, "families_merged": merged, "families_with_copies": len(with_copies)}


def run_corpusmill(data: Path, workdir: Path, near: dict, k: int) -> tuple[set[str], dict]:
    """The ids the near step removed, and its LSH layout."""
    from corpusmill.pipelines import run_pipeline

    pipe = workdir / f"pipeline-{k}.yaml"
    pipe.write_text(yaml.safe_dump({
        "dataset": f"equiv{k}", "inputs": [{"path": str(data), "id_field": "id"}],
        "steps": [{"dedup": {"exact": False, "near": near}}],
    }))
    result = run_pipeline(pipe, store=workdir / "store", workers=2, quiet=True)
    rej = result.version.read_rejects()
    lsh = next(s for s in result.manifest["stages"] if s["name"] == "dedup")["counters"]["lsh"]
    return set(rej.column("id").to_pylist()) if rej is not None else set(), lsh


def run_datatrove(data: Path, workdir: Path) -> set[str]:
    """datatrove's MinHash pipeline with its defaults (MinhashConfig()), as its example runs it."""
    import orjson
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.dedup.minhash import (MinhashConfig, MinhashDedupBuckets, MinhashDedupCluster,
                                                  MinhashDedupFilter, MinhashDedupSignature)
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.writers import JsonlWriter

    _xxhash_takes_text()
    cfg = MinhashConfig()
    w = workdir / "datatrove"
    def common(step: int) -> dict:  # logging_dir=None would write a logs/ folder in the current directory
        return {"logging_dir": str(w / f"logs-{step}"), "skip_completed": False}

    LocalPipelineExecutor([JsonlReader(str(data.parent), glob_pattern=data.name),
                           MinhashDedupSignature(output_folder=str(w / "sigs"), config=cfg)],
                          tasks=1, **common(1)).run()
    LocalPipelineExecutor([MinhashDedupBuckets(input_folder=str(w / "sigs"), output_folder=str(w / "buckets"),
                                               config=cfg)], tasks=cfg.num_buckets, workers=2, **common(2)).run()
    LocalPipelineExecutor([MinhashDedupCluster(input_folder=str(w / "buckets"), output_folder=str(w / "remove"),
                                               config=cfg)], tasks=1, **common(3)).run()
    LocalPipelineExecutor([JsonlReader(str(data.parent), glob_pattern=data.name),
                           MinhashDedupFilter(input_folder=str(w / "remove"),
                                              exclusion_writer=JsonlWriter(str(w / "removed"), compression=None))],
                          tasks=1, **common(4)).run()
    return {orjson.loads(line)["id"] for f in (w / "removed").glob("*.jsonl") for line in f.read_bytes().splitlines()}


def _xxhash_takes_text() -> None:
    """datatrove 0.10.1 passes str to xxhash, which the xxhash 4 this environment has refuses: encode it
    as UTF-8 first, as older xxhash did, so datatrove runs with its default hash unchanged."""
    import xxhash
    from datatrove.utils.hashes import xxhash as dt_xxhash

    dt_xxhash.xxhash32 = lambda data: xxhash.xxh32_intdigest(data.encode() if isinstance(data, str) else data)
    dt_xxhash.xxhash64 = lambda data: xxhash.xxh64_intdigest(data.encode() if isinstance(data, str) else data)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=30_000, help="documents in the corpus (default 30,000)")
    ap.add_argument("--no-datatrove", action="store_true", help="skip the datatrove run")
    args = ap.parse_args()
    docs = dedup_corpus.build(args.docs, copy_share=0.25, reuse=False, mean_bytes=400, seed=2)
    copies = sum(d.edit_rate >= 0 for d in docs)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "in").mkdir()
        data = tmp / "in" / "docs.jsonl"
        dedup_corpus.write_jsonl(docs, data)
        for k, (label, tool, near) in enumerate(CONFIGS):
            removed, lsh = run_corpusmill(data, tmp, near, k)
            results.append({"method": label, "reproduces": tool, "near": near,
                            "layout": f"{lsh['bands']} x {lsh['rows']}", **score(docs, removed)})
            print(f"{label}: removed {len(removed):,}", file=sys.stderr)
        if not args.no_datatrove:
            try:
                removed = run_datatrove(data, tmp)
            except ImportError as err:
                print(f"datatrove not run ({err}): pip install 'corpusmill[bench]'", file=sys.stderr)
            else:
                results.append({"method": "datatrove 0.10.1 itself (MinhashConfig defaults)", "reproduces": "datatrove",
                                "near": None, "layout": "14 x 8", **score(docs, removed)})
    print(f"\n{len(docs):,} documents, {copies:,} planted copies (0-20 % word edits); exact dedup off\n")
    print(f"| {'method':52s} | {'reproduces':23s} | {'bands x rows':12s} | {'removed':>7s} | {'wrong':>5s} | "
          f"{'families merged':>15s} |")
    print(f"|{'-' * 54}|{'-' * 25}|{'-' * 14}|{'-' * 9}|{'-' * 7}|{'-' * 17}|")
    for r in results:
        print(f"| {r['method']:52s} | {r['reproduces']:23s} | {r['layout']:12s} | {r['removed']:7,d} | {r['wrong']:5,d} | "
              f"{r['families_merged']:7,d} of {r['families_with_copies']:,} |")
    save_result("dedup_equivalence", {"documents": len(docs), "planted_copies": copies, "results": results})


if __name__ == "__main__":
    main()
