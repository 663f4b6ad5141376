"""Domain selection on real labelled text: which method keeps the documents of a domain?

Three real sources, built at set-up from Debian packages (``bench/select_pools.py``): English
fortunes by category, Debian package descriptions by archive Section, English man pages by
package. Each domain of a source is a task: 100 of its rows are the target examples, the pool
holds the domain at a known share (10 %, 5 % for man pages) among rows of every other label; the
same pool for every method. Each method keeps the top ``share`` of the pool (where precision =
recall) and the top 25 % (precision and recall reported), plus average precision.

Methods are scored as the ``select`` stage scores them: ``ngram_importance`` and ``classifier``
through ``Select.score_in_memory`` (map + fit + score, in this process); ``embedding`` (cosine to
the targets' mean vector) and ``hybrid`` (the default when the model is installed: the mean of the
n-gram classifier's and an embedding classifier's P(in-domain)) with the stage's own scorer
classes on MiniLM vectors that are computed once per source with the stage's encoder and cached
in bench/data/select-embeddings (the encoder is the slow part; its speed is measured on its own
and reported as docs/s). Baselines: ``random`` (seeded shuffle) and ``keywords`` (a hand-written
list per domain, written before looking at any result).

``--recipes`` adds the other recipes of the study (docs/domain-selection.md): the embedding
classifier alone, cosine to the targets' mean minus the pool's mean, k nearest targets, the
embedding classifier retrained without the pool rows it ranked highest (a PU-learning step).

Usage: python bench/bench_select.py [--quick] [--sources fortunes,debian,man] [--recipes]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import save_result  # noqa: E402
from bench.select_pools import N_TARGET, SOURCES, Source, Task, embeddings, tasks  # noqa: E402
from corpusmill.dataprep import domain_scores as D  # noqa: E402
from corpusmill.dataprep.select import Select, SelectConfig, Target, _sample_keys  # noqa: E402
from corpusmill.stage import RunInfo  # noqa: E402

KEYWORDS = {
    "computers": ["computer", "computers", "program", "programs", "programming", "programmer", "software", "hardware",
                  "unix", "code", "bug", "bugs", "system", "memory", "disk", "data", "byte", "bytes", "language",
                  "compiler", "kernel", "windows", "machine", "network", "internet", "email", "file", "files", "user",
                  "users"],
    "science": ["science", "scientist", "scientists", "scientific", "physics", "physicist", "chemistry", "biology",
                "experiment", "theory", "research", "laboratory", "lab", "energy", "atom", "atoms", "electron",
                "mathematics", "mathematician", "equation", "universe", "einstein", "newton", "hypothesis", "engineer",
                "engineering", "molecular", "protein", "sequence", "genome", "simulation", "astronomy", "statistical"],
    "politics": ["politics", "political", "politician", "politicians", "government", "president", "congress", "senate",
                 "vote", "voters", "election", "democracy", "democrat", "republican", "party", "law", "laws", "tax",
                 "taxes", "king", "state", "nation", "power", "war", "liberty", "freedom"],
    "games": ["game", "games", "play", "player", "players", "puzzle", "arcade", "level", "levels", "score", "board",
              "chess", "card", "cards", "strategy", "multiplayer", "shooter", "adventure", "fun"],
    "sound": ["sound", "audio", "music", "mp3", "ogg", "flac", "wav", "midi", "alsa", "pulseaudio", "jack", "synthesizer",
              "mixer", "player", "playlist", "speaker", "volume", "codec", "recording"],
    "graphics": ["image", "images", "graphics", "picture", "pictures", "photo", "photos", "png", "jpeg", "svg", "drawing",
                 "draw", "pixel", "bitmap", "vector", "rendering", "render", "3d", "color", "colour", "viewer"],
    "git": ["git", "repository", "commit", "commits", "branch", "branches", "merge", "rebase", "ref", "refs", "index",
            "working tree", "remote", "tag", "tags", "object", "objects", "head", "patch"],
    "openssl": ["openssl", "ssl", "tls", "certificate", "certificates", "key", "keys", "cipher", "ciphers", "rsa", "dsa",
                "ec", "x509", "pkcs", "encryption", "decrypt", "encrypt", "signature", "digest", "hash", "crl"],
    "postgresql": ["sql", "table", "tables", "database", "databases", "postgresql", "query", "queries", "column",
                   "columns", "index", "schema", "row", "rows", "transaction", "select", "insert", "function", "role"],
    "clib": ["function", "functions", "returns", "pointer", "buffer", "argument", "arguments", "struct", "errno",
             "thread", "signal", "file descriptor", "call", "calls", "system call", "null", "string", "library"],
}
METHODS = ["random", "keywords", "ngram_importance", "classifier", "embedding", "hybrid"]
RECIPES = ["emb_classifier", "emb_centroid_minus_pool", "emb_knn10", "emb_classifier_pu"]
KEEP_FRACTION = 0.25


def evaluate(scores: np.ndarray, y: np.ndarray) -> dict:
    """Precision = recall at the domain's share, precision and recall of the top 25 %, average precision."""
    pos, n = int(y.sum()), len(y)
    order = np.lexsort((np.arange(n), -scores))  # the stage's tie rule
    hits = y[order]
    k = int(np.ceil(KEEP_FRACTION * n - 1e-9))
    prec = np.cumsum(hits) / np.arange(1, n + 1)
    return {"p_at_share": round(float(hits[:pos].mean()), 4),
            "p_at_25": round(float(hits[:k].mean()), 4), "r_at_25": round(float(hits[:k].sum() / pos), 4),
            "average_precision": round(float((prec * hits).sum() / pos), 4)}


class _Cached:
    """The encoder interface HybridScorer reads (``encode``, ``target_texts``), over vectors computed
    once with the stage's encoder: the arithmetic is the stage's, the forward pass is not repeated."""

    def __init__(self, texts: list[str], vectors: np.ndarray, target_texts: list[str]) -> None:
        self.by_text = dict(zip(texts, vectors))
        self.target_texts = target_texts

    def encode(self, texts) -> np.ndarray:
        return np.stack([self.by_text[t] for t in texts])


def _stage(method: str, targets: list[str], **opts) -> Select:
    stage = Select(SelectConfig(method=method, keep={"top_fraction": KEEP_FRACTION}, target="bench-target", **opts),
                   name="select", run=RunInfo("bench", 0))
    stage.__dict__["target"] = Target(targets, {}, "bench examples")  # in memory, not a file
    return stage


def _recipes(T: np.ndarray, P: np.ndarray, keys: np.ndarray, negatives: int, l2: float) -> dict[str, np.ndarray]:
    out = {}
    clf = D.EmbeddingClassifier(T, negatives, l2)
    clf.fit(lambda: iter([(P, keys)]))
    out["emb_classifier"] = clf.score(P, keys)
    out["emb_centroid_minus_pool"] = P @ (T.mean(0) - P.mean(0))
    sims = np.sort(P @ T.T, axis=1)
    out["emb_knn10"] = sims[:, -10:].mean(1)
    # PU step: the pool rows the first classifier ranks in its top 20 % are not used as negatives
    order = np.lexsort((np.arange(len(P)), -out["emb_classifier"]))
    trusted = np.ones(len(P), bool)
    trusted[order[:len(P) // 5]] = False
    clf2 = D.EmbeddingClassifier(T, negatives, l2)
    clf2.fit(lambda: iter([(P[trusted], keys[trusted])]))
    out["emb_classifier_pu"] = clf2.score(P, np.where(trusted, keys, np.uint64(2**64 - 1)))
    return out


def run_task(src: Source, task: Task, with_embedding: bool, recipes: bool) -> dict:
    texts = [src.texts[i] for i in task.pool]
    ids = [f"{src.name}{i}" for i in task.pool]
    targets = [src.texts[i] for i in task.target]
    pool = pa.table({"id": ids, "text": texts})
    y = task.y
    res: dict = {"pool": len(y), "in_domain": int(y.sum()), "share": round(float(y.mean()), 4), "targets": len(targets)}
    perm = np.random.default_rng(0).permutation(len(y)).astype(np.float64)
    res["random"] = {**evaluate(-perm, y), "docs_per_s": None}
    for m in ("keywords", "ngram_importance", "classifier"):
        stage = Select(SelectConfig(method="keywords", keywords=KEYWORDS[task.domain], keep={"top_fraction": 0.25}),
                       name="select", run=RunInfo("bench", 0)) if m == "keywords" else _stage(m, targets)
        t0 = time.perf_counter()
        scores = stage.score_in_memory(pool)
        res[m] = {**evaluate(scores, y), "docs_per_s": round(len(y) / (time.perf_counter() - t0), 1)}
    if with_embedding:
        T = embeddings(src, task.target)
        P = embeddings(src, task.pool)
        res["embedding"] = {**evaluate((P @ T.mean(0)).astype(np.float64), y), "docs_per_s": None}
        stage = _stage("hybrid", targets)
        o = stage.config.classifier
        keys = _sample_keys(ids, 0)
        t0 = time.perf_counter()
        hybrid = D.HybridScorer(D.LinearClassifier(targets, o.buckets, o.negatives, o.l2, o.steps),
                                _Cached(texts + targets, np.vstack([P, T]), targets), stage.config.hybrid.embedding_l2)
        chunk = (D.hashed_ngrams(pool.column("text"), o.buckets), keys, P)
        hybrid.fit(lambda: iter([chunk]))
        scores = hybrid.score(*chunk)
        res["hybrid"] = {**evaluate(scores, y), "fit_and_score_s": round(time.perf_counter() - t0, 2), "docs_per_s": None}
        if recipes:
            for name, s in _recipes(T, P, keys, o.negatives, stage.config.hybrid.embedding_l2).items():
                res[name] = {**evaluate(s, y), "docs_per_s": None}
    return res


def encoder_speed(texts: list[str]) -> float:
    """Documents per second of the stage's encoder (embedding.* defaults) on ``texts``."""
    from corpusmill.dataprep.domain_scores import EmbeddingScorer

    enc = EmbeddingScorer([], None, 128, 16, 1)
    enc.encode(texts[:8])  # warm-up: the weights are memory-mapped
    t0 = time.perf_counter()
    enc.encode(texts)
    return round(len(texts) / (time.perf_counter() - t0), 1)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="man pages only, one domain, no embedding")
    ap.add_argument("--sources", default="fortunes,debian,man", help="comma-separated: fortunes, debian, man")
    ap.add_argument("--no-embedding", action="store_true")
    ap.add_argument("--recipes", action="store_true", help="also the study's other embedding recipes")
    ap.add_argument("--speed-docs", type=int, default=200, help="pool texts the encoder speed is measured on (0: skip)")
    args = ap.parse_args()
    names = ["man"] if args.quick else args.sources.split(",")
    with_embedding = not (args.quick or args.no_embedding)
    methods = [m for m in METHODS if with_embedding or m not in ("embedding", "hybrid")]
    methods += RECIPES if (args.recipes and with_embedding) else []
    results: dict = {}
    speed: dict = {}
    for name in names:
        try:
            src = SOURCES[name]()
            all_tasks = list(tasks(src, domains=src.domains[:1] if args.quick else None))
        except SystemExit as err:  # a source whose Debian data is missing: say what to install, go on
            print(f"{name}: skipped: {err}", flush=True)
            continue
        print(f"{name}: {len(src.texts):,} labelled texts ({src.about}); per domain {N_TARGET} targets, pool "
              f"{src.pool_rows:,} with the domain at {src.share:.0%}", flush=True)
        for task in all_tasks:
            res = results[f"{name}/{task.domain}"] = run_task(src, task, with_embedding, args.recipes)
            print("  " + task.domain + ": " + ", ".join(
                f"{m} {res[m]['p_at_share']:.3f}/{res[m]['r_at_25']:.3f}" for m in methods), flush=True)
        if with_embedding and args.speed_docs:
            sample = [src.texts[i] for i in all_tasks[0].pool[:args.speed_docs]]
            speed[name] = encoder_speed(sample)
            print(f"  encoder: {speed[name]} docs/s on {len(sample)} pool texts", flush=True)

    print("\n| pool / domain (in-domain / pool) | method | P = R at share | P at top 25% | R at top 25% | avg precision |")
    print("|---|---|---|---|---|---|")
    for key, res in results.items():
        for m in methods:
            r = res[m]
            print(f"| {key} ({res['in_domain']} / {res['pool']}) | {m} | {r['p_at_share']:.3f} | {r['p_at_25']:.3f} | "
                  f"{r['r_at_25']:.3f} | {r['average_precision']:.3f} |")
    print("\nmean over each source's domains (P = R at share; R at top 25%):")
    means: dict = {}
    for name in names:
        keys = [k for k in results if k.startswith(name + "/")]
        if not keys:
            continue
        means[name] = {m: {"p_at_share": round(float(np.mean([results[k][m]["p_at_share"] for k in keys])), 4),
                           "r_at_25": round(float(np.mean([results[k][m]["r_at_25"] for k in keys])), 4)}
                       for m in methods}
        print(f"  {name}: " + ", ".join(f"{m} {v['p_at_share']:.3f}/{v['r_at_25']:.3f}" for m, v in means[name].items()))
    docs_s = {m: [results[k][m]["docs_per_s"] for k in results if results[k][m].get("docs_per_s")] for m in methods}
    print("scoring docs/s (n-gram methods, map + fit + score in this process): " + ", ".join(
        f"{m} ~{np.median(v):,.0f}" for m, v in docs_s.items() if v))
    if speed:
        print("MiniLM encoder docs/s (embedding, hybrid): " + ", ".join(f"{k} {v}" for k, v in speed.items()))
    save_result("select", {"targets_per_domain": N_TARGET, "keep_fraction": KEEP_FRACTION, "quick": args.quick,
                           "results": results, "means": means, "encoder_docs_per_s": speed,
                           "note": "docs/s on a shared 2-core machine; embedding vectors cached per source"})


if __name__ == "__main__":
    main()
