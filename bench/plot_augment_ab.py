"""Draw the A/B figure of docs/augmentation.md from bench/results/augment_ab.json, as a plain SVG
(no plotting library needed): test accuracy of A (no augmentation) and B (EDA) per seed with
95% bootstrap intervals, and the paired difference B - A with its interval.

    python bench/plot_augment_ab.py [--out docs/augmentation-ab.svg]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def svg(result: dict) -> str:
    runs = result["runs"]
    rows = [(f"seed {r['seed']}", r) for r in runs]
    width, left, right, row_h, top = 860, 110, 70, 46, 54
    height = top + row_h * (len(rows) + 1) + 60
    gap = 70
    half = (width - left - right - gap) // 2
    # left panel: accuracy; right panel: difference
    lo = min(min(r["A"]["accuracy_ci"][0], r["B"]["accuracy_ci"][0]) for r in runs)
    hi = max(max(r["A"]["accuracy_ci"][1], r["B"]["accuracy_ci"][1]) for r in runs)
    lo, hi = int(lo * 50) / 50, (int(hi * 50) + 1) / 50  # whole ticks of 0.02
    diffs = [r["B_minus_A"]["accuracy"] for r in runs] + [
        {"difference": result["pooled"]["difference"], "ci": result["pooled"]["difference_ci"]}]
    dmax = max(0.02, max(max(abs(d["ci"][0]), abs(d["ci"][1])) for d in diffs))
    dmax = (int(dmax * 50) + 1) / 50  # ticks of dmax / 2

    def xa(v):
        return left + (v - lo) / (hi - lo) * half

    def xd(v):
        x0 = left + half + gap
        return x0 + (v + dmax) / (2 * dmax) * half

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">',
           '<rect width="100%" height="100%" fill="white"/>',
           f'<text x="{left}" y="18" font-size="14" font-weight="bold">Test accuracy, {result["test_rows_scored"]:,} test rows, '
           f'{result["splits_A"]["train"]} training rows (95% bootstrap CI)</text>',
           f'<text x="{left}" y="38" fill="#555">A: no augmentation (grey)  B: + EDA (blue)</text>',
           f'<text x="{left + half + gap}" y="38" fill="#555">B - A, paired (95% CI)</text>']
    for k in range(round((hi - lo) / 0.02) + 1):  # axis ticks
        v = lo + 0.02 * k
        out.append(f'<line x1="{xa(v):.1f}" y1="{top}" x2="{xa(v):.1f}" y2="{height - 50}" stroke="#eee"/>')
        out.append(f'<text x="{xa(v):.1f}" y="{height - 34}" text-anchor="middle">{v:.2f}</text>')
    for k in range(5):
        d = -dmax + k * dmax / 2
        out.append(f'<line x1="{xd(d):.1f}" y1="{top}" x2="{xd(d):.1f}" y2="{height - 50}" stroke="#eee"/>')
        out.append(f'<text x="{xd(d):.1f}" y="{height - 34}" text-anchor="middle">{d:+.3f}</text>')
    out.append(f'<line x1="{xd(0):.1f}" y1="{top}" x2="{xd(0):.1f}" y2="{height - 50}" stroke="#999"/>')
    for i, (label, r) in enumerate(rows + [("mean of seeds", None)]):
        y = top + 20 + i * row_h
        out.append(f'<text x="{left - 10}" y="{y + 4}" text-anchor="end">{label}</text>')
        if r is not None:
            for dy, key, colour in ((-7, "A", "#888"), (7, "B", "#1f5fbf")):
                a, (c0, c1) = r[key]["accuracy"], r[key]["accuracy_ci"]
                out.append(f'<line x1="{xa(c0):.1f}" y1="{y + dy}" x2="{xa(c1):.1f}" y2="{y + dy}" stroke="{colour}" stroke-width="2"/>')
                out.append(f'<circle cx="{xa(a):.1f}" cy="{y + dy}" r="4" fill="{colour}"/>')
            d = r["B_minus_A"]["accuracy"]
        else:
            d = {"difference": result["pooled"]["difference"], "ci": result["pooled"]["difference_ci"]}
        c0, c1 = d["ci"]
        out.append(f'<line x1="{xd(c0):.1f}" y1="{y}" x2="{xd(c1):.1f}" y2="{y}" stroke="black" stroke-width="2"/>')
        out.append(f'<circle cx="{xd(d["difference"]):.1f}" cy="{y}" r="4" fill="black"/>')
        out.append(f'<text x="{xd(c1) + 6:.1f}" y="{y + 4}" fill="#333">{d["difference"]:+.3f}</text>')
    out.append(f'<text x="{left}" y="{height - 12}" fill="#555">all-MiniLM-L6-v2, LoRA, {result["train"]["max_steps"]} '
               f'optimizer steps for A and for B; task: fortune category, 4 classes</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--result", default=str(ROOT / "bench" / "results" / "augment_ab.json"))
    ap.add_argument("--out", default=str(ROOT / "docs" / "augmentation-ab.svg"))
    args = ap.parse_args()
    Path(args.out).write_text(svg(json.loads(Path(args.result).read_text())))
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
