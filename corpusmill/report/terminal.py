"""``corpusmill datasets show`` and ``datasets report``: a version in the terminal, and its report files.

The terminal summary reads the manifest only (no data file), so it is instant on any corpus.
"""

from __future__ import annotations

import webbrowser
from pathlib import Path

from corpusmill.report import CARD, REPORT, write_version_docs
from corpusmill.report.card import card_license, license_warnings

BAR = 24


def _bar(share: float, width: int = BAR) -> str:
    full = round(max(0.0, min(1.0, share)) * width)
    return "█" * full + "·" * (width - full)


def show(version, console) -> None:
    """Print the version as rich tables: inputs, stages, splits with labels, languages, dedup."""
    from rich.table import Table

    m = version.manifest
    stats = version.stats
    c = m["counts"]
    rejected = sum(sum(r.values()) for r in c["rejected"].values())
    console.print(f"[bold]{version.ref}[/bold]  parent: {m.get('parent') or '-'}  code {m['code_version']}  "
                  f"seed {m['seed']}  created {stats.get('created_at', '?')}")
    desc = m.get("config", {}).get("description")
    if desc:
        console.print(desc)
    lic, _ = card_license(m)
    console.print(f"{c['input']:,} rows in = [bold]{c['kept']:,}[/bold] kept + {rejected:,} rejected "
                  f"({rejected / (c['input'] or 1):.1%}); license: {lic}")

    t = Table(title="inputs", title_justify="left")
    for col in ("path", "files", "bytes", "sha256", "license", "source"):
        t.add_column(col, justify="right" if col in ("files", "bytes") else "left")
    default = m.get("config", {}).get("license")
    for inp in m["inputs"]:
        files = inp["files"]
        digest = files[0]["sha256"][:12] + ("…" if len(files) == 1 else f"… (+{len(files) - 1})") if files else "-"
        lic_in = inp.get("license") or default
        t.add_row(inp["path"], str(len(files)), f"{sum(f['bytes'] for f in files):,}", digest,
                  lic_in or "[yellow]unknown[/yellow]", inp.get("source") or "-")
    console.print(t)

    t = Table(title="stages", title_justify="left")
    for col in ("stage", "in", "kept", "rejected", "", "reasons"):
        t.add_column(col, justify="right" if col in ("in", "kept", "rejected") else "left")
    for st in m["stages"]:
        rej = sum(st["rejected"].values())
        reasons = ", ".join(f"{r} {n:,}" for r, n in sorted(st["rejected"].items(), key=lambda kv: -kv[1]))
        t.add_row(st["name"], f"{st['in']:,}", f"{st['kept']:,}", f"{rej:,}" if rej else "-",
                  f"[red]{_bar(rej / (st['in'] or 1), 12)}[/red]" if rej else "", reasons)
    console.print(t)

    labels = m.get("label_counts") or {}
    t = Table(title="splits", title_justify="left")
    t.add_column("split")
    t.add_column("rows", justify="right")
    t.add_column("share")
    names = sorted({y for cnt in labels.values() for y in cnt})
    for y in names:
        t.add_column(y or "(no label)", justify="right")
    for split, n in m["splits"].items():
        cnt = labels.get(split, {})
        t.add_row(split, f"{n:,}", _bar(n / (c["kept"] or 1)), *[f"{cnt.get(y, 0):,}" for y in names])
    console.print(t)

    lang = next((st for st in m["stages"] if st["name"].startswith("language")), None)
    if lang:
        counts = sorted(((k[5:], v) for k, v in lang["counters"].items() if k.startswith("lang_")), key=lambda kv: -kv[1])
        total = sum(v for _, v in counts) or 1
        t = Table(title="languages (rows the language stage saw)", title_justify="left")
        for col in ("lang", "rows", "share", ""):
            t.add_column(col, justify="right" if col == "rows" else "left")
        for k, v in counts[:12]:
            t.add_row(k, f"{v:,}", f"{v / total:.1%}", _bar(v / total))
        if len(counts) > 12:
            t.add_row(f"{len(counts) - 12} others", f"{sum(v for _, v in counts[12:]):,}", "", "")
        console.print(t)

    for st in m["stages"]:
        lsh = st["counters"].get("lsh") if st["name"].startswith("dedup") else None
        dups = {r: n for r, n in st["rejected"].items()} if st["name"].startswith("dedup") else {}
        if dups or isinstance(lsh, dict):
            line = f"{st['name']}: " + (", ".join(f"{r} {n:,}" for r, n in dups.items()) or "no duplicates")
            if isinstance(lsh, dict):
                line += (f"; MinHash {lsh['num_perm']} slots as {lsh['bands']} bands x {lsh['rows']} rows, "
                         f"threshold {lsh['threshold']:g}, miss rate at threshold {lsh.get('miss_rate_at_threshold', 0):.1%}")
            console.print(line)
    for w in license_warnings(m):
        console.print(f"[yellow]warning:[/yellow] {w}")
    report = version.path / REPORT
    if report.is_file():
        console.print(f"report: {report}\ncard:   {version.path / CARD}")
    else:
        console.print(f"no report yet: corpusmill datasets report {version.ref}")


def report(version, *, open_it: bool = False, regenerate: bool = True) -> Path:
    """(Re)write the version's report.html and card.md; open the report in a browser if asked.

    With ``open_it`` an existing report is opened as it is, unless ``regenerate``."""
    path = version.path / REPORT
    if regenerate or not path.is_file():
        path, _ = write_version_docs(version)
    if open_it:
        webbrowser.open(path.resolve().as_uri())
    return path
