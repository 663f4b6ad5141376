"""What report.html and card.md add to a run, against drawing the same plots with matplotlib.

The demo's pipeline (clean, language, pii, quality, dedup exact + near, stratified split) runs
over Debian's fortunes; the version it publishes carries report.html and card.md. Measured in
this process on that version:

* the run's wall time, and the time of ``write_version_docs`` (read the facts, render the page
  and the card): the share of the run the report costs;
* rendering only, from the same facts: corpusmill's hand-written SVG against matplotlib drawing
  the same figures (same kinds, same data) into inline SVG, the usual way to make such a page;
* importing the plotting code, each in a fresh interpreter (a run pays it once).

    python bench/bench_report.py            # every fortune (~30k rows)
    python bench/bench_report.py --quick    # the first 3,000
"""

from __future__ import annotations

import argparse
import io
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import DATA_DIR, fortunes, save_result  # noqa: E402
from tests.conftest import write_jsonl, write_pipeline  # noqa: E402


def make_corpus(limit: int) -> Path:
    root = DATA_DIR / f"report-{limit or 'all'}"
    if root.is_dir():
        shutil.rmtree(root)
    rows = fortunes()
    rows = rows[:limit] if limit else rows
    write_jsonl(root / "data" / "fortunes.jsonl", [{"text": r["text"], "category": r["category"]} for r in rows])
    return write_pipeline(root / "pipeline.yaml", {
        "dataset": "fortunes", "description": "Debian's fortune cookies, labelled by category.",
        "inputs": [{"path": "data/*.jsonl", "label_field": "category", "license": "various free licenses",
                    "source": "Debian fortunes packages"}],
        "steps": [{"clean": {}}, {"language": {"keep_und": True}}, {"pii": {}}, {"quality": {"preset": "annotate"}},
                  {"dedup": {"exact": True, "near": {"threshold": 0.8}}},
                  {"split": {"ratios": {"train": 0.8, "validation": 0.1, "test": 0.1}, "stratify": "label"}}]})


def matplotlib_page(m: dict, f) -> str:
    """The report's figures drawn by matplotlib, each saved as inline SVG (the baseline)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    svgs = []

    def save(fig) -> None:
        buf = io.StringIO()
        fig.savefig(buf, format="svg")
        plt.close(fig)
        svgs.append(buf.getvalue())

    # waterfall: kept plus rejected by reason, per stage
    fig, ax = plt.subplots(figsize=(8, 4))
    names = [st["name"] for st in m["stages"]]
    ax.barh(names, [st["kept"] for st in m["stages"]])
    left = np.array([st["kept"] for st in m["stages"]], dtype=float)
    for reason in sorted({r for st in m["stages"] for r in st["rejected"]}):
        vals = np.array([st["rejected"].get(reason, 0) for st in m["stages"]], dtype=float)
        ax.barh(names, vals, left=left, label=reason)
        left += vals
    ax.legend()
    save(fig)
    # histograms: lengths, cluster sizes, signals
    hists = [(f.lengths["edges"], [f.lengths["before"], f.lengths["after"]])]
    sizes = f.clusters["sizes"] if f.clusters else {}
    hists.append((list(range(len(sizes) + 1)), [list(sizes.values())]))
    hists += [(h["edges"], [h["kept"], h["rejected"]]) for h in f.signals.values()]
    for edges, series in hists:
        fig, ax = plt.subplots(figsize=(8, 2.5))
        x = np.arange(len(edges) - 1)
        for k, counts in enumerate(series):
            ax.bar(x + k * 0.4, counts, width=0.4)
        ax.set_xticks(x, [f"{e:.3g}" for e in edges[:-1]])
        save(fig)
    # languages and labels: stacked horizontal bars
    for groups in ([(k, [v, f.languages["rejected"].get(k, 0)]) for k, v in f.languages["kept"].items()],
                   [(s, list(c.values())) for s, c in m["label_counts"].items()]):
        fig, ax = plt.subplots(figsize=(8, 3))
        left = np.zeros(len(groups))
        for j in range(max(len(v) for _, v in groups)):
            vals = np.array([v[j] if j < len(v) else 0 for _, v in groups], dtype=float)
            ax.barh([g for g, _ in groups], vals, left=left)
            left += vals
        save(fig)
    # S-curve and leakage matrix
    lsh = next(st["counters"]["lsh"] for st in m["stages"] if "lsh" in st["counters"])
    s = np.linspace(0, 1, 101)
    fig, ax = plt.subplots(figsize=(5, 2.6))
    ax.plot(s, 1 - (1 - s ** lsh["rows"]) ** lsh["bands"])
    ax.axvline(lsh["threshold"], linestyle="--")
    save(fig)
    fig, ax = plt.subplots(figsize=(4, 4))
    mat = np.array(f.leakage["matrix"])
    ax.imshow(mat)
    for i in range(mat.shape[0]):
        for j in range(mat.shape[1]):
            ax.text(j, i, str(mat[i, j]), ha="center")
    save(fig)
    return "".join(svgs)


def median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def import_seconds(module: str) -> float:
    code = f"import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="the first 3,000 fortunes")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    from corpusmill.pipelines import run_pipeline
    from corpusmill.report import dataset, facts, write_version_docs
    from corpusmill.report.card import license_warnings

    pipeline = make_corpus(3000 if args.quick else 0)
    store = pipeline.parent / "store"
    t0 = time.perf_counter()
    result = run_pipeline(pipeline, store=store, workers=2, quiet=True)
    run_s = time.perf_counter() - t0
    v = result.version
    m = v.manifest
    docs_s = median_time(lambda: write_version_docs(v), args.repeats)
    gather_s = median_time(lambda: facts.gather(v), args.repeats)
    found = facts.gather(v)
    ours_s = median_time(lambda: dataset.render(m, v.stats, found, license_warnings(m)), args.repeats)
    matplotlib_page(m, found)  # warm-up: font cache, first figure
    theirs_s = median_time(lambda: matplotlib_page(m, found), args.repeats)
    imp_ours = statistics.median(import_seconds("corpusmill.report.svg") for _ in range(3))
    imp_theirs = statistics.median(import_seconds("matplotlib.pyplot") for _ in range(3))
    rows = [("render the plots (warm, median)", ours_s, theirs_s),
            ("import the plotting code (fresh interpreter)", imp_ours, imp_theirs)]
    print(f"\n{m['counts']['input']:,} rows in, {m['counts']['kept']:,} kept; run {run_s:.2f}s with 2 workers; "
          f"report.html {(v.path / 'report.html').stat().st_size / 1024:.0f} KiB")
    print(f"write_version_docs (read facts + render + card): {docs_s:.3f}s = {docs_s / run_s:.1%} of the run "
          f"(reading the facts: {gather_s:.3f}s)\n")
    print(f"| {'step':<46} | corpusmill s | matplotlib s | matplotlib / corpusmill |")
    print(f"|{'-' * 48}|-------------:|-------------:|------------------------:|")
    for name, a, b in rows:
        print(f"| {name:<46} | {a:12.4f} | {b:12.4f} | {b / a:22.1f}x |")
    save_result("report", {
        "rows_in": m["counts"]["input"], "rows_kept": m["counts"]["kept"], "quick": args.quick,
        "run_seconds": round(run_s, 3), "docs_seconds": round(docs_s, 4), "docs_share_of_run": round(docs_s / run_s, 4),
        "gather_seconds": round(gather_s, 4), "render_seconds": round(ours_s, 4),
        "matplotlib_render_seconds": round(theirs_s, 4), "import_seconds": round(imp_ours, 4),
        "matplotlib_import_seconds": round(imp_theirs, 4),
        "report_kib": round((v.path / "report.html").stat().st_size / 1024, 1)})


if __name__ == "__main__":
    main()
