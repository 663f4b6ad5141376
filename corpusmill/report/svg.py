"""Hand-written SVG charts, the one chart kit of corpusmill: no plotting library.

Every chart (the version report, ``eval.html``, a run's loss curves, a sweep's figure) is drawn
here with one set of ticks (:func:`nice_ticks`, printed by :func:`fmt_tick`), one legend, one
palette and one estimate of how wide a text is (:func:`text_width`), which places labels so that
they neither overprint each other nor leave their SVG's viewBox. Every function returns one
``<svg>`` element as a string, sized in CSS pixels; the output depends only on the arguments
(numbers are printed with fixed precision), so a page is the same bytes every time.

Why no library: the pages must open offline with no script, be written in milliseconds at the
end of a run, and diff in git; the few chart shapes needed fit in this file.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from html import escape

#: categorical colours (Okabe-Ito, distinguishable with the common colour-vision deficiencies)
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000"]
KEPT = "#4C78A8"
MUTED = "#BAB0AC"
INK = "#222"
GRID = "#ddd"


#: width of one character as a share of the font size: a generous average for sans-serif text, so
#: that a label measured with it fits in the browser (the Chromium test checks every text's box)
CHAR_EM = 0.62


def colour(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def text_width(s: str, size: float = 12) -> float:
    """Estimated width in CSS pixels of ``s`` at font size ``size`` (an upper bound in practice)."""
    return len(s) * size * CHAR_EM


def fmt_tick(v: float) -> str:
    """A tick or bin edge as people write it: 0.05, 0.1, 2.5, 1,200, 15k (never 0.0854000001)."""
    v = round(float(v), 10)
    if v == 0:
        return "0"
    if abs(v) >= 1000:
        return fmt_count(v)
    return f"{v:.4g}"


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


def legend(items: Sequence[tuple[str, str] | tuple[str, str, str]], x: float, y: float,
           max_x: float = 740) -> tuple[list[str], float]:
    """Colour keys left to right, wrapping before ``max_x``. An item is (label, colour) drawn as a
    square, or (label, colour, "dot" | "hollow") drawn as a filled or an open dot. Returns
    (elements, height used)."""
    out, cx, cy = [], x, y
    for label, fill, *shape in items:
        w = 24 + text_width(label, 11)
        if cx > x and cx + w > max_x:
            cx, cy = x, cy + 16
        if shape:
            out.append(f'<circle cx="{_n(cx + 5)}" cy="{_n(cy - 4)}" r="4" '
                       f'fill="{"none" if shape[0] == "hollow" else fill}" stroke="{fill}"/>')
        else:
            out.append(_rect(cx, cy - 9, 10, 10, fill))
        out.append(_text(cx + 14, cy, label, size=11))
        cx += w
    return out, cy - y + 16


def _marker_labels(markers: Sequence[tuple[float, str]], xpos, top: float, right_edge: float,
                   left_edge: float) -> tuple[list[str], float]:
    """Labels of vertical markers, one row each above the plot, so that two thresholds close
    together never overprint; a label that would pass ``right_edge`` ends at its line instead.
    Returns (elements, height of the label rows)."""
    out = []
    for i, (v, label) in enumerate(markers):
        x, y, w = xpos(v), top + 11 + 13 * i, text_width(label, 10)
        if x + 3 + w <= right_edge:
            out.append(_text(x + 3, y, label, size=10, fill=colour(3)))
        elif x - 3 - w >= left_edge:
            out.append(_text(x - 3, y, label, anchor="end", size=10, fill=colour(3)))
        else:  # wider than either side: start at the left edge of the plot
            out.append(_text(left_edge, y, label, size=10, fill=colour(3)))
    return out, 13 * len(markers) + (4 if markers else 0)


# ----------------------------------------------------------------------------- charts


def hbar_stack(rows: Sequence[tuple[str, Sequence[tuple[str, float, str]]]], *, title: str, width: int = 760,
               label_width: int | None = None, bar_height: int = 20, note: dict[str, str] | None = None,
               legend_items: Sequence[tuple[str, str]] = ()) -> str:
    """Horizontal bars, one per row label, each a stack of (segment label, value, colour).

    ``note`` maps a row label to text printed after its bar. The label column is as wide as the
    longest label (``label_width`` fixes it), up to 45% of ``width``; only a label longer than
    that is shortened, with the whole label in its tooltip. The space right of the bars is as
    wide as the longest note, so no text leaves the chart."""
    notes = {label: (note or {}).get(label, fmt_count(sum(v for _, v, _ in segs))) for label, segs in rows}
    if label_width is None:
        label_width = int(min(max((text_width(r[0]) for r in rows), default=40) + 14, width * 0.45))
    right = int(max((text_width(t, 11) for t in notes.values()), default=30) + 12)
    plot_w = max(width - label_width - right, 40)
    peak = max((sum(v for _, v, _ in segs) for _, segs in rows), default=0) or 1
    body, used = legend(legend_items, 6, 14, width - 6) if legend_items else ([], 0)
    top = 6 + used
    fit = int((label_width - 12) / (12 * CHAR_EM))
    for i, (label, segs) in enumerate(rows):
        y = top + i * (bar_height + 6)
        shown = _clip(label, fit)
        tip = f"<title>{escape(label)}</title>" if shown != label else ""
        body.append(_text(label_width - 6, y + bar_height * 0.7, shown, anchor="end")[:-7] + tip + "</text>")
        x = label_width
        for seg_label, v, fill in segs:
            w = plot_w * v / peak
            body.append(_rect(x, y, w, bar_height, fill, f"{label}: {seg_label} {v:,.0f}"))
            x += w
        body.append(_text(x + 4, y + bar_height * 0.7, notes[label], size=11))
    height = top + len(rows) * (bar_height + 6) + 4
    return _svg(width, height, body, title)


def paired_bars(rows: Sequence[tuple[str, Sequence[tuple[str, float, str]]]], *, title: str, width: int = 760,
                bar_height: int = 11, legend_items: Sequence[tuple[str, str]] = ()) -> str:
    """Per row label, a few thin bars under each other on one scale, each with its value after it:
    a group's rows before and after a mix step, say.

    ``rows``: [(label, [(series, value, colour)])]. Label column and the space right of the bars
    are measured as in :func:`hbar_stack`, so no text leaves the chart."""
    notes = [[fmt_count(v) for _, v, _ in bars] for _, bars in rows]
    label_width = int(min(max((text_width(r[0]) for r in rows), default=40) + 14, width * 0.45))
    right = int(max((text_width(t, 10) for ns in notes for t in ns), default=30) + 12)
    plot_w = max(width - label_width - right, 40)
    peak = max((v for _, bars in rows for _, v, _ in bars), default=0) or 1
    body, used = legend(legend_items, 6, 14, width - 6) if legend_items else ([], 0)
    y = 6 + used
    fit = int((label_width - 12) / (12 * CHAR_EM))
    for (label, bars), ns in zip(rows, notes):
        block = len(bars) * (bar_height + 2) - 2
        shown = _clip(label, fit)
        tip = f"<title>{escape(label)}</title>" if shown != label else ""
        body.append(_text(label_width - 6, y + block / 2 + 4, shown, anchor="end")[:-7] + tip + "</text>")
        for j, ((series, v, fill), note) in enumerate(zip(bars, ns)):
            yy = y + j * (bar_height + 2)
            w = plot_w * v / peak
            body.append(_rect(label_width, yy, w, bar_height, fill, f"{label}: {series} {v:,.0f}"))
            body.append(_text(label_width + w + 4, yy + bar_height - 1.5, note, size=10))
        y += block + 8
    return _svg(width, y + 2, body, title)


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
    at x positions in the units of ``edges`` (thresholds), each labelled on its own row above the
    plot. ``categories``: the bins are named by ``tick_labels`` (one per bin, centred) rather than
    bounded by edges. Tick labels are thinned so that neighbours never touch. ``height`` is the
    plot's own height; legend and marker rows add to it."""
    left, right, bottom = 44, 14, 36
    body, used = legend([(name, fill) for name, _, fill in series], left, 14, width - 6) if len(series) > 1 else ([], 0)
    bins = len(edges) - 1
    pw = width - left - right
    shown_markers = [(v, label) for v, label in markers if edges[0] <= v <= edges[-1]]

    def xpos(v: float) -> float:
        """Bins are drawn equally wide (edges may double); a value maps into its bin linearly."""
        k = max(0, min(bins - 1, _bin_of(edges, v)))
        inside = (v - edges[k]) / ((edges[k + 1] - edges[k]) or 1)
        return left + pw * (k + min(max(inside, 0.0), 1.0)) / bins

    mark, mark_h = _marker_labels(shown_markers, xpos, 4 + used, width - 2, 2)
    top = 8 + used + mark_h
    ph = height - 8 - bottom - (0 if not used else 0)
    height = top + ph + bottom
    body += mark

    totals = [sum(s[1][b] for s in series) for b in range(bins)] if stacked else \
        [max((s[1][b] for s in series), default=0) for b in range(bins)]
    peak = max(totals, default=0) or 1

    def ypos(v: float) -> float:
        if log_y:
            return top + ph * (1 - math.log10(1 + v) / math.log10(1 + peak))
        return top + ph * (1 - v / peak)

    for t in ([0, peak] if log_y else nice_ticks(0, peak, 4 if ph > 100 else 2)):
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
            tip = f"{name}: {c:,.0f} in [{fmt_tick(edges[b])}, {fmt_tick(edges[b + 1])})"
            if stacked:
                y0, y1 = ypos(base + c), ypos(base)
                body.append(_rect(x0, y0, bw, y1 - y0, fill, tip))
                base += c
            else:
                w = bw / len(series)
                body.append(_rect(x0 + k * w, ypos(c), w, top + ph - ypos(c), fill, tip))
    body.append(_line(left, top + ph, left + pw, top + ph, INK))
    labels = list(tick_labels) if tick_labels is not None else [fmt_tick(e) for e in edges]
    slot = pw / bins
    widest = max((text_width(x, 10) for x in labels), default=0)
    stride = max(1, math.ceil((widest + 6) / slot))
    for i in range(0, len(labels), stride):
        x = left + pw * (i + (0.5 if categories else 0)) / bins
        anchor = "middle"
        if x + text_width(labels[i], 10) / 2 > width - 1:
            anchor, x = "end", width - 1
        body.append(_text(x, top + ph + 14, labels[i], anchor=anchor, size=10))
    for v, _ in shown_markers:
        body.append(_line(xpos(v), top, xpos(v), top + ph, colour(3), 1.5, "4 3"))
    body.append(_text(left + pw / 2, height - 6, _clip(xlabel, int(width / (11 * CHAR_EM))), anchor="middle", size=11))
    return _svg(width, height, body, title)


def line_plot(curves: Sequence[tuple[str, Sequence[tuple[float, float]], str]], *, title: str, xlabel: str,
              ylabel: str, width: int = 520, height: int = 260, markers: Sequence[tuple[float, str]] = (),
              points: Sequence[tuple[float, float]] = (),
              point_groups: Sequence[tuple[str, Sequence[tuple[float, float]], str]] = ()) -> str:
    """Curves on x, y in [0, 1] (probabilities), with dashed vertical markers and dots: ``points``
    unnamed, ``point_groups`` as (name, points, colour), named in the legend."""
    left, right, bottom = 50, 14, 44
    keys = [(n, c) for n, _, c in curves] if len(curves) > 1 or point_groups else []
    keys += [(n, c) for n, _, c in point_groups]
    body, used = legend(keys, left, 14, width - 6) if keys else ([], 0)
    top = 14 + used
    ph = height - 24 - bottom
    height = top + ph + bottom
    pw = width - left - right

    def xy(x: float, y: float) -> tuple[float, float]:
        return left + pw * x, top + ph * (1 - y)

    for t in (0, 0.25, 0.5, 0.75, 1.0):
        x, y = xy(t, t)
        body.append(_line(left, y, left + pw, y))
        body.append(_text(left - 4, y + 4, fmt_tick(t), anchor="end", size=10))
        body.append(_text(x, top + ph + 14, fmt_tick(t), anchor="end" if t == 1.0 else "middle", size=10))
    for name, pts, fill in curves:
        d = " ".join(("M" if i == 0 else "L") + "{} {}".format(*map(_n, xy(px, py))) for i, (px, py) in enumerate(pts))
        body.append(f'<path d="{d}" fill="none" stroke="{fill}" stroke-width="2"><title>{escape(name)}</title></path>')
    for _, pts, fill in [("", points, colour(1)), *point_groups]:
        for px, py in pts:
            x, y = xy(px, py)
            body.append(f'<circle cx="{_n(x)}" cy="{_n(y)}" r="2.5" fill="{fill}" fill-opacity="0.6"/>')
    mark, _ = _marker_labels(markers, lambda v: xy(v, 0)[0], top - 10, width - 2, left)
    for v, _label in markers:
        x, _ = xy(v, 0)
        body.append(_line(x, top, x, top + ph, colour(3), 1.5, "4 3"))
    body += mark
    body.append(_line(left, top + ph, left + pw, top + ph, INK))
    body.append(_text(left + pw / 2, height - 6, xlabel, anchor="middle", size=11))
    body.append(_text(14, top + ph / 2, ylabel, anchor="middle", size=11, rotate=-90))
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


# ----------------------------------------------------------------------------- figures of panels (training)


@dataclass
class Series:
    """One series of a :class:`Panel`: points drawn as a line or as dots."""

    label: str
    x: list  # numbers, or any values on a categorical axis
    y: list[float]
    style: str = "line"  # line | dots | hollow (dots drawn as rings: e.g. pruned trials)
    colour: str | None = None


@dataclass
class Panel:
    """One plot of a :func:`figure`: its series on a linear, log or categorical x axis."""

    xlabel: str
    ylabel: str
    series: list[Series] = field(default_factory=list)
    xscale: str = "linear"  # linear | log | category
    categories: list | None = None  # category axis: the order of its values (default: as they appear)


def _fmt_value(v) -> str:
    """An axis value: categories as they are, learning rates as 3e-04, the rest as :func:`fmt_tick`."""
    if isinstance(v, str):
        return v
    if isinstance(v, bool) or v is None:
        return str(v)
    if v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e5):
        return f"{v:.0e}"
    return fmt_tick(v)


def _finite(values) -> list[float]:
    return [float(v) for v in values if isinstance(v, (int, float)) and math.isfinite(v)]


def _panel(p: Panel, ox: float, oy: float, w: float, h: float) -> list[str]:
    """SVG elements of one panel whose plot area is (ox, oy, w, h)."""
    out = [f'<rect x="{_n(ox)}" y="{_n(oy)}" width="{_n(w)}" height="{_n(h)}" fill="none" stroke="#999"/>']
    ys = _finite(y for s in p.series for y in s.y)
    if not ys:
        return out + [_text(ox + w / 2, oy + h / 2, "no data", anchor="middle")]
    ylo, yhi = min(ys), max(ys)
    pad = (yhi - ylo) * 0.05 or abs(yhi) * 0.05 or 1.0
    ylo, yhi = ylo - pad, yhi + pad
    if p.xscale == "category":
        cats = list(dict.fromkeys([_fmt_value(c) for c in p.categories or []]
                                  + [_fmt_value(x) for s in p.series for x in s.x]))
        xpos = {c: (i + 0.5) / len(cats) for i, c in enumerate(cats)}
        to_x = lambda x: ox + w * xpos[_fmt_value(x)]  # noqa: E731
        xticks = [(to_x(c), c) for c in cats]
    else:
        log = p.xscale == "log"
        xs = [math.log10(x) if log else x for x in _finite(x for s in p.series for x in s.x) if not log or x > 0]
        xlo, xhi = (min(xs), max(xs)) if xs else (0.0, 1.0)
        xpad = (xhi - xlo) * 0.05 or 0.5
        xlo, xhi = xlo - xpad, xhi + xpad

        def to_x(x):
            v = math.log10(x) if log else x
            return ox + w * (v - xlo) / (xhi - xlo)

        if log:  # 1-2-5 steps per decade, or every digit when the range is under a decade
            decades = range(math.floor(xlo), math.ceil(xhi) + 1)
            for mantissas in ((1,), (1, 2, 5), (1, 2, 3, 4, 5, 6, 7, 8, 9)):
                vals = [m * 10.0 ** e for e in decades for m in mantissas if xlo <= math.log10(m * 10.0 ** e) <= xhi]
                if len(vals) >= 3:
                    break
            xticks = [(to_x(v), _fmt_value(v)) for v in vals]
        else:
            xticks = [(to_x(t), _fmt_value(t)) for t in nice_ticks(xlo, xhi)]
    to_y = lambda y: oy + h * (1 - (y - ylo) / (yhi - ylo))  # noqa: E731
    for t in nice_ticks(ylo, yhi):
        y = to_y(t)
        out.append(_line(ox, y, ox + w, y, "#eee"))
        out.append(_text(ox - 4, y + 4, _fmt_value(t), anchor="end", size=10))
    widest = max((text_width(label, 10) for _, label in xticks), default=0)
    stride = max(1, math.ceil((widest + 6) / (w / max(len(xticks), 1))))
    for x, label in xticks[::stride]:
        out.append(_text(x, oy + h + 14, label, anchor="middle", size=10))
    out.append(_text(ox + w / 2, oy + h + 30, p.xlabel, anchor="middle", size=11))
    out.append(_text(ox - 42, oy + h / 2, p.ylabel, anchor="middle", size=11, rotate=-90))
    for i, s in enumerate(p.series):
        fill = s.colour or colour(i)
        pts = [(to_x(x), to_y(y)) for x, y in zip(s.x, s.y)
               if isinstance(y, (int, float)) and math.isfinite(y) and (p.xscale != "log" or x > 0)]
        if s.style == "line" and len(pts) > 1:
            path = " ".join(f"{_n(x)},{_n(y)}" for x, y in pts)
            out.append(f'<polyline points="{path}" fill="none" stroke="{fill}" stroke-width="1.5"/>')
            if len(pts) <= 30:  # few points (evaluations): mark them
                out += [f'<circle cx="{_n(x)}" cy="{_n(y)}" r="2" fill="{fill}"/>' for x, y in pts]
        else:
            hollow = "none" if s.style == "hollow" else fill
            out += [f'<circle cx="{_n(x)}" cy="{_n(y)}" r="3.5" fill="{hollow}" stroke="{fill}"/>' for x, y in pts]
    return out


def figure(panels: list[Panel], title: str, panel_width: int = 300, panel_height: int = 220, columns: int = 3) -> str:
    """One standalone SVG document (a file of its own: white background, its own font) with the
    panels in rows of ``columns`` and one legend for all of them in its header."""
    cols = max(1, min(columns, len(panels)))
    rows = max(1, math.ceil(len(panels) / cols))
    left, gap_x, gap_y = 60, 70, 56
    width = left + cols * (panel_width + gap_x)
    keys: dict[str, tuple[str, str]] = {}
    for p in panels:
        for i, s in enumerate(p.series):
            keys.setdefault(s.label, (s.colour or colour(i), "hollow" if s.style == "hollow" else "dot"))
    keys_svg, used = legend([(label, c, shape) for label, (c, shape) in keys.items()], left, 40, width - 6)
    top = 36 + used
    height = top + rows * (panel_height + gap_y)
    body = [f'<rect width="{width}" height="{height}" fill="white"/>',
            _text(left, 20, title, size=14, weight="bold"), *keys_svg]
    for i, p in enumerate(panels):
        r, c = divmod(i, cols)
        body += _panel(p, left + c * (panel_width + gap_x), top + r * (panel_height + gap_y), panel_width, panel_height)
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" font-family="sans-serif">\n' + "\n".join(body) + "\n</svg>\n")
