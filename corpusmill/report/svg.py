"""Hand-written inline SVG plots: a few chart shapes, no plotting library.

Every function returns one ``<svg>`` element as a string, sized in CSS pixels, with text in the
page's font and colours from :data:`PALETTE`. The output depends only on the arguments (numbers
are printed with fixed precision), so a report is the same bytes every time it is rendered.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from html import escape

#: categorical colours (Okabe-Ito, distinguishable with the common colour-vision deficiencies)
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000"]
KEPT = "#4C78A8"
MUTED = "#BAB0AC"
INK = "#222"
GRID = "#ddd"


def colour(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def _n(x: float) -> str:
    """A coordinate with one decimal, no trailing zeros: stable text for the same number."""
    s = f"{x:.1f}"
    return s[:-2] if s.endswith(".0") else s


def fmt_count(n: float) -> str:
    n = float(n)
    if abs(n) >= 1e6:
        return f"{n / 1e6:.3g}M"
    if abs(n) >= 1e4:
        return f"{n / 1e3:.3g}k"
    return f"{int(n):,}" if n == int(n) else f"{n:.3g}"


def _svg(width: float, height: float, body: list[str], title: str) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{_n(width)}" height="{_n(height)}" '
            f'viewBox="0 0 {_n(width)} {_n(height)}" role="img" aria-label="{escape(title)}">'
            f"<title>{escape(title)}</title>" + "".join(body) + "</svg>")


def _text(x: float, y: float, s: str, *, anchor: str = "start", size: int = 12, fill: str = INK,
          weight: str = "normal", rotate: float | None = None) -> str:
    tr = f' transform="rotate({_n(rotate)} {_n(x)} {_n(y)})"' if rotate is not None else ""
    bold = ' font-weight="bold"' if weight != "normal" else ""
    return (f'<text x="{_n(x)}" y="{_n(y)}" text-anchor="{anchor}" font-size="{size}" fill="{fill}"{bold}{tr}>'
            f"{escape(s)}</text>")


def _rect(x: float, y: float, w: float, h: float, fill: str, tip: str = "") -> str:
    t = f"<title>{escape(tip)}</title>" if tip else ""
    return f'<rect x="{_n(x)}" y="{_n(y)}" width="{_n(max(w, 0))}" height="{_n(max(h, 0))}" fill="{fill}">{t}</rect>'


def _line(x1, y1, x2, y2, stroke: str = GRID, width: float = 1, dash: str = "") -> str:
    d = f' stroke-dasharray="{dash}"' if dash else ""
    return f'<line x1="{_n(x1)}" y1="{_n(y1)}" x2="{_n(x2)}" y2="{_n(y2)}" stroke="{stroke}" stroke-width="{_n(width)}"{d}/>'


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About ``n`` round tick values covering [lo, hi]."""
    if hi <= lo:
        return [lo]
    step = 10 ** math.floor(math.log10((hi - lo) / n))
    for m in (1, 2, 5, 10):
        if (hi - lo) / (step * m) <= n:
            step *= m
            break
    first = math.ceil(lo / step - 1e-9) * step
    out, v = [], first
    while v <= hi + step * 1e-9:
        out.append(round(v, 10))
        v += step
    return out


def legend(items: Sequence[tuple[str, str]], x: float, y: float, max_x: float = 740) -> tuple[list[str], float]:
    """Colour keys left to right, wrapping before ``max_x``. Returns (elements, height used)."""
    out, cx, cy = [], x, y
    for label, fill in items:
        w = 24 + 6.5 * len(label)
        if cx > x and cx + w > max_x:
            cx, cy = x, cy + 16
        out.append(_rect(cx, cy - 9, 10, 10, fill))
        out.append(_text(cx + 14, cy, label, size=11))
        cx += w
    return out, cy - y + 16


# ----------------------------------------------------------------------------- charts


def hbar_stack(rows: Sequence[tuple[str, Sequence[tuple[str, float, str]]]], *, title: str, width: int = 760,
               label_width: int = 170, bar_height: int = 20, note: dict[str, str] | None = None,
               legend_items: Sequence[tuple[str, str]] = ()) -> str:
    """Horizontal bars, one per row label, each a stack of (segment label, value, colour).

    ``note`` maps a row label to text printed after its bar."""
    right = 190
    plot_w = width - label_width - right
    peak = max((sum(v for _, v, _ in segs) for _, segs in rows), default=0) or 1
    body, used = legend(legend_items, label_width, 14, width - 10) if legend_items else ([], 0)
    top = 6 + used
    for i, (label, segs) in enumerate(rows):
        y = top + i * (bar_height + 6)
        body.append(_text(label_width - 6, y + bar_height * 0.7, _clip(label, 26), anchor="end"))
        x = label_width
        for seg_label, v, fill in segs:
            w = plot_w * v / peak
            body.append(_rect(x, y, w, bar_height, fill, f"{label}: {seg_label} {v:,.0f}"))
            x += w
        total = sum(v for _, v, _ in segs)
        body.append(_text(x + 4, y + bar_height * 0.7, (note or {}).get(label, fmt_count(total)), size=11))
    height = top + len(rows) * (bar_height + 6) + 4
    return _svg(width, height, body, title)


def waterfall(stages: Sequence[dict], *, title: str, width: int = 760) -> str:
    """Rows through the pipeline: per stage, the rows it kept, then what it rejected, by reason.

    ``stages``: [{name, in, kept, rejected: {reason: n}}] in pipeline order."""
    reasons = sorted({r for st in stages for r in st["rejected"]})
    colours = {r: colour(i + 1) for i, r in enumerate(reasons)}
    rows = []
    notes = {}
    for st in stages:
        segs = [("kept", st["kept"], KEPT)]
        segs += [(r, n, colours[r]) for r, n in sorted(st["rejected"].items(), key=lambda kv: -kv[1])]
        rows.append((st["name"], segs))
        lost = sum(st["rejected"].values())
        notes[st["name"]] = f"{fmt_count(st['kept'])} kept" + (f", -{fmt_count(lost)}" if lost else "")
    return hbar_stack(rows, title=title, width=width, note=notes,
                      legend_items=[("kept", KEPT)] + [(r, colours[r]) for r in reasons])


def histogram(series: Sequence[tuple[str, Sequence[float], str]], edges: Sequence[float], *, title: str,
              xlabel: str, width: int = 760, height: int = 230, tick_labels: Sequence[str] | None = None,
              markers: Sequence[tuple[float, str]] = (), stacked: bool = False, log_y: bool = False,
              categories: bool = False) -> str:
    """Counts per bin for one or more series over the same ``edges`` (len = bins + 1).

    Series are drawn side by side within a bin, or stacked; ``markers`` are vertical dashed lines
    at x positions in the units of ``edges`` (thresholds), with a label. ``categories``: the bins
    are named by ``tick_labels`` (one per bin, centred) rather than bounded by edges."""
    left, right, bottom = 56, 14, 44
    body, used = legend([(name, fill) for name, _, fill in series], left, 14, width - 10) if len(series) > 1 else ([], 0)
    top = 10 + used
    pw, ph = width - left - right, height - top - bottom
    bins = len(edges) - 1

    def xpos(v: float) -> float:
        """Bins are drawn equally wide (edges may double); a value maps into its bin linearly."""
        k = max(0, min(bins - 1, _bin_of(edges, v)))
        inside = (v - edges[k]) / ((edges[k + 1] - edges[k]) or 1)
        return left + pw * (k + min(max(inside, 0.0), 1.0)) / bins

    totals = [sum(s[1][b] for s in series) for b in range(bins)] if stacked else \
        [max((s[1][b] for s in series), default=0) for b in range(bins)]
    peak = max(totals, default=0) or 1

    def ypos(v: float) -> float:
        if log_y:
            return top + ph * (1 - math.log10(1 + v) / math.log10(1 + peak))
        return top + ph * (1 - v / peak)

    for t in ([0, peak] if log_y else nice_ticks(0, peak, 4)):
        body.append(_line(left, ypos(t), left + pw, ypos(t)))
        body.append(_text(left - 4, ypos(t) + 4, fmt_count(t), anchor="end", size=10))
    for b in range(bins):
        x0, x1 = left + pw * b / bins, left + pw * (b + 1) / bins
        bw = (x1 - x0) * 0.9
        base = 0.0
        for k, (name, counts, fill) in enumerate(series):
            c = counts[b]
            if not c:
                continue
            if stacked:
                y0, y1 = ypos(base + c), ypos(base)
                body.append(_rect(x0, y0, bw, y1 - y0, fill, f"{name}: {c:,.0f} in [{edges[b]:.4g}, {edges[b + 1]:.4g})"))
                base += c
            else:
                w = bw / len(series)
                body.append(_rect(x0 + k * w, ypos(c), w, top + ph - ypos(c), fill,
                                  f"{name}: {c:,.0f} in [{edges[b]:.4g}, {edges[b + 1]:.4g})"))
    body.append(_line(left, top + ph, left + pw, top + ph, INK))
    labels = tick_labels if tick_labels is not None else [f"{e:.3g}" for e in edges]
    stride = max(1, math.ceil(len(labels) / 12))
    for i in range(0, len(labels), stride):
        body.append(_text(left + pw * (i + (0.5 if categories else 0)) / bins, top + ph + 14, labels[i], anchor="middle", size=10))
    for v, label in markers:
        if edges[0] <= v <= edges[-1]:
            body.append(_line(xpos(v), top, xpos(v), top + ph, colour(3), 1.5, "4 3"))
            body.append(_text(xpos(v) + 3, top + 10, label, size=10, fill=colour(3)))
    body.append(_text(left + pw / 2, height - 6, xlabel, anchor="middle", size=11))
    return _svg(width, height, body, title)


def line_plot(curves: Sequence[tuple[str, Sequence[tuple[float, float]], str]], *, title: str, xlabel: str,
              ylabel: str, width: int = 520, height: int = 260, markers: Sequence[tuple[float, str]] = (),
              points: Sequence[tuple[float, float]] = ()) -> str:
    """Curves on x, y in [0, 1] (probabilities), with dashed vertical markers and optional dots."""
    left, right, top, bottom = 50, 14, 24, 44
    pw, ph = width - left - right, height - top - bottom

    def xy(x: float, y: float) -> tuple[float, float]:
        return left + pw * x, top + ph * (1 - y)

    body = legend([(n, c) for n, _, c in curves], left, 14)[0] if len(curves) > 1 else []
    for t in (0, 0.25, 0.5, 0.75, 1.0):
        x, y = xy(t, t)
        body.append(_line(left, y, left + pw, y))
        body.append(_text(left - 4, y + 4, f"{t:g}", anchor="end", size=10))
        body.append(_text(x, top + ph + 14, f"{t:g}", anchor="middle", size=10))
    for name, pts, fill in curves:
        d = " ".join(("M" if i == 0 else "L") + "{} {}".format(*map(_n, xy(px, py))) for i, (px, py) in enumerate(pts))
        body.append(f'<path d="{d}" fill="none" stroke="{fill}" stroke-width="2"><title>{escape(name)}</title></path>')
    for px, py in points:
        x, y = xy(px, py)
        body.append(f'<circle cx="{_n(x)}" cy="{_n(y)}" r="2.5" fill="{colour(1)}" fill-opacity="0.6"/>')
    for v, label in markers:
        x, _ = xy(v, 0)
        body.append(_line(x, top, x, top + ph, colour(3), 1.5, "4 3"))
        body.append(_text(x + 3, top + 12, label, size=10, fill=colour(3)))
    body.append(_line(left, top + ph, left + pw, top + ph, INK))
    body.append(_text(left + pw / 2, height - 6, xlabel, anchor="middle", size=11))
    body.append(_text(12, top + ph / 2, ylabel, anchor="middle", size=11, rotate=-90))
    return _svg(width, height, body, title)


def matrix(row_labels: Sequence[str], col_labels: Sequence[str], values: Sequence[Sequence[float]], *, title: str,
           row_title: str, col_title: str, cell: int = 72, shares: Sequence[Sequence[float]] | None = None) -> str:
    """A heat map with the count in each cell; shade by ``shares`` (0..1) when given, else by count."""
    label_w = 10 + 7 * max((len(s) for s in row_labels), default=4)
    top = 46
    width = label_w + cell * len(col_labels) + 20
    height = top + cell * len(row_labels) + 10
    peak = max((v for row in values for v in row), default=0) or 1
    body = [_text(label_w + cell * len(col_labels) / 2, 12, col_title, anchor="middle", size=11, weight="bold"),
            _text(4, top - 6, row_title, size=11, weight="bold")]
    for j, c in enumerate(col_labels):
        body.append(_text(label_w + cell * (j + 0.5), top - 8, _clip(c, cell // 6), anchor="middle", size=11))
    for i, r in enumerate(row_labels):
        y = top + i * cell
        body.append(_text(label_w - 6, y + cell / 2 + 4, _clip(r, 24), anchor="end", size=11))
        for j in range(len(col_labels)):
            v = values[i][j]
            share = shares[i][j] if shares is not None else v / peak
            alpha = 0.08 + 0.85 * min(max(share, 0.0), 1.0) if v else 0.0
            x = label_w + j * cell
            body.append(f'<rect x="{_n(x)}" y="{_n(y)}" width="{cell - 2}" height="{cell - 2}" fill="{colour(0)}" '
                        f'fill-opacity="{alpha:.3f}" stroke="{GRID}"><title>{escape(r)} / {escape(c)}: {v:,.0f}</title></rect>')
            body.append(_text(x + cell / 2 - 1, y + cell / 2 + 4, fmt_count(v), anchor="middle", size=11,
                              fill="#fff" if alpha > 0.55 else INK))
    return _svg(width, height, body, title)


def interval_bars(groups: Sequence[tuple[str, Sequence[tuple[str, float, float, float, str]]]], *, title: str,
                  width: int = 760, label_width: int = 150, lo: float | None = None, hi: float | None = None) -> str:
    """Per group (a metric), one horizontal bar per model with its confidence interval as whiskers.

    ``groups``: [(metric, [(model, value, ci_low, ci_high, colour)])]."""
    vals = [x for _, bars in groups for _, v, a, b, _ in bars for x in (v, a, b) if x is not None and math.isfinite(x)]
    lo = min([0.0, *vals]) if lo is None else lo
    hi = max([1e-9, *vals]) if hi is None else hi
    right, top, bh = 150, 10, 16
    pw = width - label_width - right

    def xpos(v: float) -> float:
        return label_width + pw * (v - lo) / ((hi - lo) or 1)

    body, y = [], top
    for metric, bars in groups:
        body.append(_text(4, y + 12, metric, size=12, weight="bold"))
        y += 18
        for model, v, a, b, fill in bars:
            body.append(_text(label_width - 6, y + bh * 0.75, _clip(model, 20), anchor="end", size=11))
            if v is None or not math.isfinite(v):
                body.append(_text(label_width + 4, y + bh * 0.75, "n/a", size=11))
                y += bh + 6
                continue
            zero = xpos(0.0 if lo <= 0 <= hi else lo)
            body.append(_rect(min(zero, xpos(v)), y, abs(xpos(v) - zero), bh, fill,
                              f"{model} {metric}: {v:.4g} [{a:.4g}, {b:.4g}]"))
            if lo < 0:
                body.append(_line(zero, y - 2, zero, y + bh + 2, INK))
            yc = y + bh / 2
            body += [_line(xpos(a), yc, xpos(b), yc, INK, 1.5), _line(xpos(a), y + 3, xpos(a), y + bh - 3, INK, 1.5),
                     _line(xpos(b), y + 3, xpos(b), y + bh - 3, INK, 1.5)]
            body.append(_text(xpos(max(v, b)) + 6, y + bh * 0.75, f"{v:.4g} [{a:.4g}, {b:.4g}]", size=11))
            y += bh + 6
        y += 8
    return _svg(width, y + 4, body, title)


def _bin_of(edges: Sequence[float], v: float) -> int:
    return bisect.bisect_right(list(edges), v) - 1


def _clip(s: str, n: int) -> str:
    return s if len(s) <= n else s[: n - 1] + "…"
