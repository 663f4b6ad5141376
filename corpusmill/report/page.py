"""The HTML page around the plots: one self-contained file, opened offline.

No script, no web font, no remote anything. A Content-Security-Policy in the page forbids every
load but inline styles and ``data:`` images, so a remote reference that slips in is refused by the
browser (and shows up as a console error, which the rendering test checks for).
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"

CSS = """
body{font-family:-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;color:#222;max-width:1000px;margin:24px auto;
padding:0 16px;line-height:1.45}
h1{font-size:1.5em;margin-bottom:4px}h2{font-size:1.2em;margin-top:32px;border-bottom:1px solid #ddd;padding-bottom:4px}
h3{font-size:1.02em;margin:18px 0 6px}
.sub{color:#666;margin-top:0}.how{color:#444;font-size:.93em;margin:4px 0 8px;max-width:780px}
.warn{background:#fff4e5;border-left:4px solid #E69F00;padding:6px 10px;margin:8px 0}
table{border-collapse:collapse;font-size:.88em;margin:6px 0 12px}
th,td{border:1px solid #ddd;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f6f6f6}td.n{text-align:right;font-variant-numeric:tabular-nums}
td.t{max-width:560px;white-space:pre-wrap;word-break:break-word}
code{background:#f3f3f3;padding:0 3px}
details{margin:4px 0}summary{cursor:pointer}
nav a{margin-right:10px}
svg{display:block;margin:6px 0;max-width:100%;height:auto}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(300px,1fr));gap:2px 18px}
.grid figure{margin:0;min-width:0}.grid figcaption{font-size:.85em;font-weight:600;overflow-wrap:anywhere}
"""


def esc(x) -> str:
    return escape("" if x is None else str(x))


def table(head: Sequence[str], rows: Sequence[Sequence], numeric: Sequence[int] = (), text: Sequence[int] = ()) -> str:
    """An HTML table; columns listed in ``numeric`` are right-aligned, in ``text`` wrapped."""
    out = ["<table><tr>" + "".join(f"<th>{esc(h)}</th>" for h in head) + "</tr>"]
    for row in rows:
        cells = []
        for i, v in enumerate(row):
            cls = ' class="n"' if i in numeric else (' class="t"' if i in text else "")
            shown = f"{v:,}" if isinstance(v, int) and not isinstance(v, bool) else esc(v)
            cells.append(f"<td{cls}>{shown}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    return "".join(out) + "</table>"


class Page:
    """Sections of plots, each with a sentence on how to read it."""

    def __init__(self, title: str, subtitle: str = "") -> None:
        self.title = title
        self.subtitle = subtitle
        self.parts: list[str] = []
        self.toc: list[tuple[str, str]] = []

    def section(self, anchor: str, heading: str) -> None:
        self.toc.append((anchor, heading))
        self.parts.append(f'<h2 id="{esc(anchor)}">{esc(heading)}</h2>')

    def plot(self, heading: str | None, how: str, svg: str) -> None:
        """A plot with its reading guide (plain text, escaped)."""
        if heading:
            self.parts.append(f"<h3>{esc(heading)}</h3>")
        self.parts.append(f'<p class="how">{esc(how)}</p>{svg}')

    def grid(self, heading: str | None, how: str, plots: list[tuple[str, str]]) -> None:
        """Small plots side by side, as many per line as the page is wide, under one reading guide;
        each plot is (caption, svg)."""
        if heading:
            self.parts.append(f"<h3>{esc(heading)}</h3>")
        cells = "".join(f"<figure><figcaption>{esc(c)}</figcaption>{svg}</figure>" for c, svg in plots)
        self.parts.append(f'<p class="how">{esc(how)}</p><div class="grid">{cells}</div>')

    def text(self, s: str, cls: str = "how") -> None:
        self.parts.append(f'<p class="{cls}">{esc(s)}</p>')

    def warn(self, s: str) -> None:
        self.text(s, "warn")

    def html(self, fragment: str) -> None:
        """Markup built with :func:`table` or :func:`esc` (never raw user text)."""
        self.parts.append(fragment)

    def render(self) -> str:
        nav = " ".join(f'<a href="#{esc(a)}">{esc(h)}</a>' for a, h in self.toc)
        return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
                '<meta name="viewport" content="width=device-width, initial-scale=1">'
                f"<title>{esc(self.title)}</title><style>{CSS}</style></head><body>"
                f"<h1>{esc(self.title)}</h1>" + (f'<p class="sub">{esc(self.subtitle)}</p>' if self.subtitle else "")
                + (f"<nav>{nav}</nav>" if nav else "") + "\n".join(self.parts) + "\n</body></html>\n")
