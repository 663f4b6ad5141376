"""Sentence-embedding throughput and agreement: corpusmill's MiniLM encoder against a plain
torch/transformers forward pass of the same model, in one process, on the same texts.

Data (real text, built from Debian packages at set-up): a seeded sample of English fortunes
(``bench.common.fortunes()``) and of English man-page sentences (the first DESCRIPTION paragraph
and the option/error entries of the pages ``corpusmill.demo_sft`` reads, split at sentence ends).
Every encoder truncates at 128 tokens (the select stage's ``embedding.max_tokens``).

Speed (docs/s, tokens/doc, and the GFLOP/s that implies: 2 x 10.6M multiply-adds per token plus
attention) for:
- ``torch``: the baseline. transformers' ``AutoModel`` on the model folder, ``torch.set_num_threads``
  threads, ``inference_mode``, texts sorted by length in batches of 64 padded to the longest, mean
  pooling over the mask and L2 normalisation (what sentence-transformers does);
- ``numpy``: the reference forward pass (the select stage's only runtime before issue 22);
- ``onnxruntime fp32`` / ``int8``: the select stage's runtime (``embedding.runtime`` / ``precision``).
``2 threads`` is one process with two intra-op threads; ``2 procs x 1`` is what a run with two
workers does: two processes of one thread, each encoding half the texts (timed between a barrier
and the last result). Agreement: max |difference| and min cosine of each encoder's vectors to the
numpy reference's, on every timed text.

Selection (``--quality``): the embedding method's cut on bench_select's fortunes set-up (per
domain 50 target examples, a seeded 3,000-row pool, keep the top prevalence fraction) with each
encoder's vectors: precision, and how many kept rows differ from the reference's cut.

Usage: python bench/bench_embeddings.py [--docs N] [--quality] [--quick]
Timings are taken under the exclusive lock (flock -x /work/bench.lock) on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import random
import re
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import fortunes, save_result  # noqa: E402

MAX_TOKENS = 128
TORCH_BATCH = 64


def fortune_texts(n: int, seed: int = 0) -> list[str]:
    rows = [r["text"] for r in fortunes() if r["lang"] == "en"]
    return random.Random(seed).sample(rows, min(n, len(rows)))


def man_sentences(n: int, seed: int = 0) -> list[str]:
    """Sentences (>= 20 characters) of English man pages' descriptions and option entries."""
    from corpusmill.demo_sft import man_page_paths, page_facts

    out = []
    for p in man_page_paths():
        if "/man/man" not in str(p):  # English pages only
            continue
        facts = page_facts(p)
        if not facts:
            continue
        for text in [facts["about"], *(t for _, t in facts["entries"].values())]:
            out += [s for s in re.split(r"(?<=[.!?])\s+", " ".join(text.split())) if len(s) >= 20]
    if not out:
        raise SystemExit("no man pages found: install the Debian packages make demo installs (corpusmill.demo_sft)")
    return random.Random(seed).sample(out, min(n, len(out)))


def flops(lengths: np.ndarray, layers=6, d=384, ff=1536) -> float:
    """Multiply-adds x 2 of the encoder for texts of these token counts (no padding)."""
    L = lengths.astype(np.float64)
    return float((layers * 2 * (L * (4 * d * d + 2 * d * ff) + 2 * L * L * d)).sum())


class TorchBaseline:
    """transformers' BertModel on the same folder, batched by length with padding, mean-pooled."""

    def __init__(self, model_dir: Path, threads: int) -> None:
        import torch
        from tokenizers import Tokenizer
        from transformers import AutoModel

        torch.set_num_threads(threads)
        self.torch = torch
        self.model = AutoModel.from_pretrained(str(model_dir)).eval()
        self.tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self.tok.enable_truncation(max_length=MAX_TOKENS)
        self.tok.no_padding()

    def encode(self, texts: list[str]) -> np.ndarray:
        torch = self.torch
        enc = self.tok.encode_batch(texts)
        order = np.argsort([len(e.ids) for e in enc], kind="stable")
        out = np.zeros((len(texts), 384), np.float32)
        with torch.inference_mode():
            for s in range(0, len(order), TORCH_BATCH):
                idx = order[s:s + TORCH_BATCH]
                L = max(len(enc[i].ids) for i in idx)
                ids = torch.zeros((len(idx), L), dtype=torch.long)
                mask = torch.zeros((len(idx), L), dtype=torch.long)
                for j, i in enumerate(idx):
                    ids[j, :len(enc[i].ids)] = torch.tensor(enc[i].ids)
                    mask[j, :len(enc[i].ids)] = 1
                h = self.model(input_ids=ids, attention_mask=mask).last_hidden_state
                m = mask.unsqueeze(-1).float()
                v = (h * m).sum(1) / m.sum(1).clamp(min=1e-9)
                out[idx] = torch.nn.functional.normalize(v, p=2, dim=1).numpy()
        return out


def _worker(part: int, precision: str, texts: list[str], barrier, queue) -> None:
    from corpusmill.dataprep.minilm import SentenceEncoder

    enc = SentenceEncoder(precision=precision, threads=1)
    enc.encode(texts[:64])  # warm
    barrier.wait()  # the parent's clock starts here
    queue.put((part, enc.encode(texts)))


def two_processes(precision: str, texts: list[str]) -> tuple[float, np.ndarray]:
    """Wall seconds for two one-thread processes to encode half the texts each (input order)."""
    ctx = mp.get_context("spawn")
    barrier, queue = ctx.Barrier(3), ctx.Queue()
    half = (len(texts) + 1) // 2
    parts = [texts[:half], texts[half:]]
    procs = [ctx.Process(target=_worker, args=(k, precision, p, barrier, queue)) for k, p in enumerate(parts)]
    for p in procs:
        p.start()
    barrier.wait()
    t0 = time.perf_counter()
    got = dict(queue.get() for _ in procs)
    wall = time.perf_counter() - t0
    for p in procs:
        p.join()
    return wall, np.vstack([got[0], got[1]])


def timed(fn, texts):
    fn(texts[:64])  # warm-up: session start, first allocations
    t0 = time.perf_counter()
    vecs = fn(texts)
    return time.perf_counter() - t0, vecs


def speed(sets: dict[str, list[str]], numpy_docs: int) -> dict:
    from corpusmill.dataprep.minilm import SentenceEncoder, default_model_dir

    encoders = {
        "onnxruntime fp32, 2 threads": SentenceEncoder(threads=2),
        "onnxruntime fp32, 1 thread": SentenceEncoder(threads=1),
        "onnxruntime int8, 2 threads": SentenceEncoder(precision="int8", threads=2),
        "onnxruntime int8, 1 thread": SentenceEncoder(precision="int8", threads=1),
        "numpy (reference), 2 threads": SentenceEncoder(runtime="numpy", threads=2),
        "numpy (reference), 1 thread": SentenceEncoder(runtime="numpy", threads=1),
    }
    baseline = TorchBaseline(default_model_dir(), threads=2)
    tok = encoders["numpy (reference), 1 thread"].tokenizer
    out = {}
    print(f"load before: {os.getloadavg()[0]:.2f}")
    for name, texts in sets.items():
        lengths = np.array([len(e.ids) for e in tok.encode_batch(texts)])
        few = texts[:numpy_docs]
        ref = encoders["numpy (reference), 2 threads"].encode(few)  # the agreement reference (untimed)
        res = out[name] = {"docs": len(texts), "tokens_per_doc": {"mean": round(float(lengths.mean()), 1),
                                                                  "median": float(np.median(lengths)),
                                                                  "p90": float(np.percentile(lengths, 90))},
                           "gflop_per_doc": round(flops(lengths) / len(texts) / 1e9, 3), "runs": {}}
        print(f"\n{name}: {len(texts):,} texts, tokens/doc mean {lengths.mean():.1f} median {np.median(lengths):.0f} "
              f"(truncated at {MAX_TOKENS}), {res['gflop_per_doc']} GFLOP/doc")
        runs = [("torch/transformers, 2 threads (baseline)", lambda t: baseline.encode(t), texts)]
        for k, e in encoders.items():
            runs.append((k, e.encode, few if k.startswith("numpy") else texts))
        for prec in ("fp32", "int8"):
            runs.append((f"onnxruntime {prec}, 2 procs x 1 thread", prec, texts))
        for label, fn, docs in runs:
            if isinstance(fn, str):
                seconds, vecs = two_processes(fn, docs)
            else:
                seconds, vecs = timed(fn, docs)
            n_ref = min(len(docs), len(ref))
            diff = float(np.abs(vecs[:n_ref] - ref[:n_ref]).max())
            cos = float((vecs[:n_ref] * ref[:n_ref]).sum(1).min())
            dps = len(docs) / seconds
            res["runs"][label] = {"docs": len(docs), "seconds": round(seconds, 2), "docs_per_s": round(dps, 1),
                                  "gflop_per_s": round(flops(lengths[:len(docs)]) / seconds / 1e9, 1),
                                  "max_abs_diff_vs_reference": diff, "min_cosine_vs_reference": cos}
            print(f"  {label:42s} {dps:8.1f} docs/s  {res['runs'][label]['gflop_per_s']:6.1f} GFLOP/s  "
                  f"max|diff| {diff:.1e}  min cos {cos:.5f}", flush=True)
        base = res["runs"]["torch/transformers, 2 threads (baseline)"]["docs_per_s"]
        for r in res["runs"].values():
            r["ratio_vs_torch"] = round(r["docs_per_s"] / base, 2)
    print(f"\nload after: {os.getloadavg()[0]:.2f}")
    return out


def quality(pool_n: int) -> dict:
    """The embedding method's top-prevalence cut with each encoder's vectors, per domain."""
    from corpusmill.dataprep.minilm import SentenceEncoder

    rows = [r for r in fortunes() if r["lang"] == "en"]
    rng = random.Random(0)
    domains = ["computers", "science", "politics"]
    targets, reserved = {}, set()
    for d in domains:  # bench_select.py's construction: 50 examples per domain, then the pool
        idx = [i for i, r in enumerate(rows) if r["category"] == d]
        rng.shuffle(idx)
        targets[d] = [rows[i]["text"] for i in idx[:50]]
        reserved.update(idx[:50])
    candidates = [i for i in range(len(rows)) if i not in reserved]
    rng.shuffle(candidates)
    chosen = sorted(candidates[:pool_n])
    pool = [rows[i]["text"] for i in chosen]
    cats = np.array([rows[i]["category"] for i in chosen])
    encoders = {"numpy (reference)": SentenceEncoder(runtime="numpy", threads=0),
                "onnxruntime fp32": SentenceEncoder(threads=0), "onnxruntime int8": SentenceEncoder(precision="int8", threads=0)}
    vectors = {k: (e.encode(pool), {d: e.encode(t).mean(0) for d, t in targets.items()}) for k, e in encoders.items()}
    out = {}
    print(f"\nselection, embedding method: pool {len(pool):,} fortunes, 50 target examples per domain, top prevalence kept")
    for d in domains:
        y = cats == d
        k = int(y.sum())
        res = out[d] = {"in_domain": k, "pool": len(pool)}
        ref_s = (vectors["numpy (reference)"][0] @ vectors["numpy (reference)"][1][d]).astype(np.float64)
        kept_ref = set(np.lexsort((np.arange(len(ref_s)), -ref_s))[:k].tolist())
        for name, (pv, cents) in vectors.items():
            s = (pv @ cents[d]).astype(np.float64)
            kept = np.lexsort((np.arange(len(s)), -s))[:k]  # the stage's tie rule: earlier row first
            res[name] = {"precision": round(float(y[kept].mean()), 4),
                         "kept_rows_differing_from_reference": len(kept_ref - set(kept.tolist())),
                         "max_abs_score_diff": float(np.abs(s - ref_s).max())}
            print(f"  {d:10s} {name:18s} P {res[name]['precision']:.3f}  kept rows differing from the reference "
                  f"{res[name]['kept_rows_differing_from_reference']:3d} / {k}  max|score diff| {res[name]['max_abs_score_diff']:.1e}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=2000, help="texts per set (default 2000)")
    ap.add_argument("--numpy-docs", type=int, default=400, help="texts the slow numpy reference times (default 400)")
    ap.add_argument("--quality", action="store_true", help="also the selection check (untimed; ~2 minutes)")
    ap.add_argument("--pool", type=int, default=3000, help="--quality: pool rows (default 3000)")
    ap.add_argument("--quick", action="store_true", help="200 texts per set, 50 for numpy, no selection check")
    args = ap.parse_args()
    n, n_np = (200, 50) if args.quick else (args.docs, args.numpy_docs)
    sets = {"fortunes": fortune_texts(n), "man-page sentences": man_sentences(n)}
    result = {"max_tokens": MAX_TOKENS, "sets": speed(sets, n_np)}
    if args.quality and not args.quick:
        result["selection"] = quality(args.pool)
    save_result("embeddings", {**result, "quick": args.quick,
                               "note": "docs/s in one process on the 2-core machine; see the docstring for each run"})


if __name__ == "__main__":
    main()
