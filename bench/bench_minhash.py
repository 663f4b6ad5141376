"""MinHash signature throughput on one core: corpusmill vs datasketch and rensa.

Same process, same documents (real text from Debian's fortunes, ~400 bytes each), 128 slots,
word 3-gram shingles of the lower-cased words. corpusmill goes from the Arrow text column to
the signature matrix, with its compiled (numba) kernels and with its numpy fallback; the
baselines are timed twice: from the text (shingles built in Python, as their users must) and
from pre-built shingle lists (the sketch alone). The headline is corpusmill's text -> signature
rate over rensa's sketch alone on pre-built shingles.

Before timing, two fresh processes load the kernels: one with an empty numba cache (what the
first run after an install pays: compiling) and one with the cache the first wrote (what every
later process pays: importing numba and loading the kernels from disk).

    python bench/bench_minhash.py [--quick]
"""

from __future__ import annotations

import argparse
import gc
import importlib.metadata
import os
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pyarrow as pa  # noqa: E402

from bench import dedup_corpus  # noqa: E402
from bench.common import save_result  # noqa: E402

NUM_PERM = 128
NGRAM = 3
WORD = re.compile(r"\w+")


def py_shingles(text: str) -> list[str]:
    """What a datasketch or rensa user writes (the cheapest form): lower-cased whitespace-separated
    words, n-grams joined by a space."""
    words = text.lower().split()
    if len(words) < NGRAM:
        return [" ".join(words)] if words else []
    return [" ".join(words[i:i + NGRAM]) for i in range(len(words) - NGRAM + 1)]


def best_rates(runs: dict, repeats: int) -> dict:
    """Documents per second of each run, its best of ``repeats`` wall times. The runs take turns
    (each repeat times every run once), so a burst of load from other work on the shared
    machine falls on all of them alike rather than on whichever was timed at that moment."""
    best = {name: float("inf") for name in runs}
    for _ in range(repeats):
        for name, (fn, _n) in runs.items():
            gc.collect()
            t0 = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t0)
    return {name: n / best[name] for name, (_fn, n) in runs.items()}


_LOAD = """
import json, time
t0 = time.perf_counter()
import corpusmill.dataprep.dedup  # what a run imports before its first batch: no numba yet
t1 = time.perf_counter()
import sys
assert "numba" not in sys.modules, "importing the dedup stage imported numba"
from corpusmill.dataprep.minhash import load_kernels
load = load_kernels()
assert load.module is not None, load.reason
print(json.dumps({"import_dedup_s": t1 - t0, "import_numba_s": load.import_seconds,
                  "kernels_s": load.compile_seconds}))
"""


def kernel_load_times() -> dict:
    """Seconds a fresh process spends to get the kernels: with an empty numba cache (compiling)
    and again with the cache that run wrote (loading), each in its own process."""
    out = {}
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache}
        for when in ("cold", "warm"):
            done = subprocess.run([sys.executable, "-c", _LOAD], env=env, capture_output=True, text=True,
                                  cwd=Path(__file__).resolve().parents[1])
            if done.returncode:
                raise SystemExit(f"loading the kernels failed:\n{done.stderr}")
            out[when] = json.loads(done.stdout.strip().splitlines()[-1])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer documents and repeats")
    args = ap.parse_args()
    pa.set_cpu_count(1)
    pa.set_io_thread_count(1)

    import datasketch
    import rensa

    from corpusmill.dataprep.minhash import MinHasher, Shingling, load_kernels
    from corpusmill.dataprep.textnorm import char_classes

    loads = kernel_load_times()
    if load_kernels().module is None:
        raise SystemExit(f"the compiled kernels are not available here: {load_kernels().reason}")

    n_docs = 4_000 if args.quick else 40_000
    n_ds = 500 if args.quick else 3_000  # datasketch is slow: a subset, reported per document
    repeats = 2 if args.quick else 3
    docs = [d.text for d in dedup_corpus.build(n_docs, copy_share=0.1, mean_bytes=380, seed=1)]
    column = pa.array(docs)
    mean_bytes = column.nbytes / len(docs)
    char_classes()  # one-time table, built when the module is first used
    shingling = Shingling("word", NGRAM)
    hasher, hasher_np = MinHasher(NUM_PERM, seed=1, backend="numba"), MinHasher(NUM_PERM, seed=1, backend="numpy")
    prebuilt = [py_shingles(t) for t in docs]
    encoded = [[s.encode() for s in sh] for sh in prebuilt[:n_ds]]
    batches = [column.slice(lo, 8192) for lo in range(0, len(docs), 8192)]  # what the pipeline hands a stage
    our_shingles = [shingling.shingles(b, backend="numba") for b in batches]
    ours_count = sum(int(sh.counts.sum()) for sh in our_shingles) / len(docs)
    theirs_count = sum(map(len, prebuilt)) / len(docs)
    same = all((hasher.signatures(sh) == hasher_np.signatures(sh)).all() for sh in our_shingles)

    def ours():
        for b in batches:
            hasher.signatures(shingling.shingles(b, backend="numba"))

    def ours_numpy():
        for b in batches:
            hasher_np.signatures(shingling.shingles(b, backend="numpy"))

    def ours_sketch():
        for sh in our_shingles:
            hasher.signatures(sh)

    def ds_from_text():
        for t in docs[:n_ds]:
            m = datasketch.MinHash(num_perm=NUM_PERM, seed=1)
            m.update_batch([s.encode() for s in py_shingles(t)])

    def ds_prebuilt():
        for sh in encoded:
            m = datasketch.MinHash(num_perm=NUM_PERM, seed=1)
            m.update_batch(sh)

    def rensa_from_text():
        for t in docs:
            m = rensa.RMinHash(num_perm=NUM_PERM, seed=1)
            m.update(py_shingles(t))
            m.digest()

    def rensa_prebuilt():
        for sh in prebuilt:
            m = rensa.RMinHash(num_perm=NUM_PERM, seed=1)
            m.update(sh)
            m.digest()

    ours_name = "corpusmill (text -> signatures, batches of 8192)"
    rensa_sketch = "rensa RMinHash.update (pre-built shingles)"
    runs = {
        ours_name: (ours, len(docs)),
        "corpusmill numpy fallback (text -> signatures)": (ours_numpy, len(docs)),
        "corpusmill sketch alone (pre-built shingle hashes)": (ours_sketch, len(docs)),
        "datasketch MinHash.update_batch (text -> signature)": (ds_from_text, n_ds),
        "datasketch MinHash.update_batch (pre-built shingles)": (ds_prebuilt, n_ds),
        "rensa RMinHash.update (text -> signature)": (rensa_from_text, len(docs)),
        "rensa RMinHash.update (pre-built shingles)": (rensa_prebuilt, len(docs)),
    }
    rates = best_rates(runs, repeats)
    ours_rate = rates[ours_name]
    print(f"\n{len(docs):,} documents, {mean_bytes:.0f} bytes on average, {NUM_PERM} slots, word {NGRAM}-grams, one core;"
          f" shingles per document: corpusmill {ours_count:.1f}, the baselines' pre-built lists {theirs_count:.1f}")
    print(f"{'method':58s} {'docs/s':>10s} {'corpusmill is':>14s}")
    rows = []
    for name, rate in rates.items():
        ratio = ours_rate / rate
        print(f"{name:58s} {rate:10,.0f} {ratio:13.2f}x")
        rows.append({"method": name, "docs_per_s": round(rate, 1), "corpusmill_speedup": round(ratio, 3)})
    headline = ours_rate / rates[rensa_sketch]
    print(f"\ncorpusmill text -> signature / rensa's sketch alone on pre-built shingles: {headline:.2f}x "
          f"({ours_rate:,.0f} vs {rates[rensa_sketch]:,.0f} documents/s)")
    print(f"numba and numpy backends give the same signatures: {same}")
    cold, warm = loads["cold"], loads["warm"]
    print(f"kernels in a fresh process: first ever (empty cache) import numba {cold['import_numba_s']:.2f} s + compile "
          f"{cold['kernels_s']:.2f} s; later (cached) import numba {warm['import_numba_s']:.2f} s + load "
          f"{warm['kernels_s']:.2f} s; importing the dedup stage {warm['import_dedup_s']:.2f} s (numba not imported)")
    import numba

    save_result("minhash", {
        "quick": args.quick, "documents": len(docs), "datasketch_documents": n_ds, "mean_bytes": round(mean_bytes, 1),
        "num_perm": NUM_PERM, "shingles": f"word {NGRAM}-grams", "repeats": repeats, "rows": rows,
        "shingles_per_doc": {"corpusmill": round(ours_count, 2), "baselines": round(theirs_count, 2)},
        "vs_rensa_sketch_alone": round(headline, 3), "backends_identical": bool(same),
        "kernel_load_s": {k: {n: round(v, 3) for n, v in d.items()} for k, d in loads.items()},
        "versions": {"datasketch": datasketch.__version__, "rensa": importlib.metadata.version("rensa"),
                     "numba": numba.__version__},
    })


if __name__ == "__main__":
    main()
