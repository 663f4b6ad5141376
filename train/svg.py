"""Self-contained SVG charts: loss curves of a run, a sweep's metric against each hyper-parameter.

Plain SVG text, no plotting library: the files open in any browser, diff in git and render on
GitHub, and writing them costs nothing at the end of a run. One figure is a row of panels; a
panel holds series drawn as lines or dots, on a linear, log or categorical x axis.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from html import escape

COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#7f7f7f"]


@dataclass
class Series:
    label: str
    x: list  # numbers, or any values on a categorical axis
    y: list[float]
    style: str = "line"  # line | dots | hollow (dots drawn as rings: e.g. pruned trials)
    colour: str | None = None


@dataclass
class Panel:
    xlabel: str
    ylabel: str
    series: list[Series] = field(default_factory=list)
    xscale: str = "linear"  # linear | log | category
    categories: list | None = None  # category axis: the order of its values (default: as they appear)


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.ceil(lo / step) * step
    return [start + i * step for i in range(int((hi - start) / step + 1e-9) + 1)]


def _fmt(v) -> str:
    if isinstance(v, str):
        return v
    if isinstance(v, bool) or v is None:
        return str(v)
    if v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e5):
        return f"{v:.0e}"
    return f"{v:.4g}"


def _finite(values) -> list[float]:
    return [float(v) for v in values if isinstance(v, (int, float)) and math.isfinite(v)]


def _panel(p: Panel, ox: float, oy: float, w: float, h: float) -> list[str]:
    """SVG elements of one panel whose plot area is (ox, oy, w, h)."""
    out = [f'<rect x="{ox}" y="{oy}" width="{w}" height="{h}" fill="none" stroke="#999"/>']
    ys = _finite(y for s in p.series for y in s.y)
    if not ys:
        return out + [f'<text x="{ox + w / 2}" y="{oy + h / 2}" text-anchor="middle">no data</text>']
    ylo, yhi = min(ys), max(ys)
    pad = (yhi - ylo) * 0.05 or abs(yhi) * 0.05 or 1.0
    ylo, yhi = ylo - pad, yhi + pad
    if p.xscale == "category":
        cats = list(dict.fromkeys([_fmt(c) for c in p.categories or []] + [_fmt(x) for s in p.series for x in s.x]))
        xpos = {c: (i + 0.5) / len(cats) for i, c in enumerate(cats)}
        to_x = lambda x: ox + w * xpos[_fmt(x)]  # noqa: E731
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
            xticks = [(to_x(v), _fmt(v)) for v in vals]
        else:
            xticks = [(to_x(t), _fmt(t)) for t in _ticks(xlo, xhi)]
    to_y = lambda y: oy + h * (1 - (y - ylo) / (yhi - ylo))  # noqa: E731
    for t in _ticks(ylo, yhi):
        y = to_y(t)
        out.append(f'<line x1="{ox}" y1="{y:.1f}" x2="{ox + w}" y2="{y:.1f}" stroke="#eee"/>')
        out.append(f'<text x="{ox - 4}" y="{y + 4:.1f}" text-anchor="end" font-size="10">{escape(_fmt(t))}</text>')
    for x, label in xticks:
        out.append(f'<text x="{x:.1f}" y="{oy + h + 14}" text-anchor="middle" font-size="10">{escape(label)}</text>')
    out.append(f'<text x="{ox + w / 2}" y="{oy + h + 30}" text-anchor="middle" font-size="11">{escape(p.xlabel)}</text>')
    out.append(f'<text transform="translate({ox - 42},{oy + h / 2}) rotate(-90)" text-anchor="middle" '
               f'font-size="11">{escape(p.ylabel)}</text>')
    for i, s in enumerate(p.series):
        colour = s.colour or COLOURS[i % len(COLOURS)]
        pts = [(to_x(x), to_y(y)) for x, y in zip(s.x, s.y)
               if isinstance(y, (int, float)) and math.isfinite(y) and (p.xscale != "log" or x > 0)]
        if s.style == "line" and len(pts) > 1:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y in pts)
            out.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="1.5"/>')
            if len(pts) <= 30:  # few points (evaluations): mark them
                out += [f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2" fill="{colour}"/>' for x, y in pts]
        else:
            fill = "none" if s.style == "hollow" else colour
            out += [f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="{fill}" stroke="{colour}"/>' for x, y in pts]
    return out


def _legend(series: list[Series], x: float, y: float) -> list[str]:
    """One legend for the figure, in its header: every panel draws the same kinds of series."""
    out = []
    seen: dict[str, str] = {}
    for i, s in enumerate(series):
        seen.setdefault(s.label, (s.colour or COLOURS[i % len(COLOURS)], s.style))
    for label, (colour, style) in seen.items():
        fill = "none" if style == "hollow" else colour
        out.append(f'<circle cx="{x + 5}" cy="{y - 4}" r="4" fill="{fill}" stroke="{colour}"/>')
        out.append(f'<text x="{x + 13}" y="{y}" font-size="11">{escape(label)}</text>')
        x += 24 + 7 * len(label)
    return out


def figure(panels: list[Panel], title: str, panel_width: int = 300, panel_height: int = 220, columns: int = 3) -> str:
    """One SVG document with the panels in rows of ``columns``."""
    cols = max(1, min(columns, len(panels)))
    rows = max(1, math.ceil(len(panels) / cols))
    left, top, gap_x, gap_y = 60, 52, 70, 56
    width = left + cols * (panel_width + gap_x)
    height = top + rows * (panel_height + gap_y)
    body = [f'<rect width="{width}" height="{height}" fill="white"/>',
            f'<text x="{left}" y="20" font-size="14" font-weight="bold">{escape(title)}</text>',
            *_legend([s for p in panels for s in p.series], left, 40)]
    for i, p in enumerate(panels):
        r, c = divmod(i, cols)
        body += _panel(p, left + c * (panel_width + gap_x), top + r * (panel_height + gap_y), panel_width, panel_height)
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" font-family="sans-serif">\n' + "\n".join(body) + "\n</svg>\n")
