"""``corpusmill datasets show`` and ``datasets report``: a version in the terminal, and its report files.

The terminal summary reads the manifest and each mix step's small ``index/<stage>/mix.json`` (no data
file), so it is instant on any corpus.
"""

from __future__ import annotations

import webbrowser
from pathlib import Path

from corpusmill.report import CARD, REPORT, write_version_docs
from corpusmill.report.card import card_license, license_warnings
from corpusmill.report.facts import mix_steps

BAR = 24
#: labels listed one by one in ``datasets show`` (``--labels N``); the rest are one 'others' row
TOP_LABELS = 12


def _bar(share: float, width: int = BAR) -> str:
    full = round(max(0.0, min(1.0, share)) * width)
    return "█" * full + "·" * (width - full)


def label_table(labels: dict[str, dict], top: int = TOP_LABELS, ref: str = "REF"):
    """Labels as rows, splits as columns: the ``top`` most frequent labels and one row for the
    rest, so the table is as wide as the splits are many, whatever the number of labels."""
    from rich.table import Table

    from corpusmill.report.dataset import top_labels

    shown, rest = top_labels(labels, top)
    n = len(shown) + len(rest)
    title = f"labels ({n:,})" if not rest else f"labels: the {len(shown)} most frequent of {n:,}"
    t = Table(title=title, title_justify="left")
    t.add_column("label", overflow="fold")
    for split in labels:
        t.add_column(split, justify="right")
    t.add_column("share", justify="right")
    grand = sum(sum(cnt.values()) for cnt in labels.values()) or 1
    for y in shown:
        per = [labels[s].get(y, 0) for s in labels]
        t.add_row("(no label)" if y is None else str(y), *[f"{k:,}" for k in per], f"{sum(per) / grand:.1%}")
    if rest:
        per = [sum(labels[s].get(y, 0) for y in rest) for s in labels]
        t.add_row(f"{len(rest):,} others", *[f"{k:,}" for k in per], f"{sum(per) / grand:.1%}", style="dim")
        t.caption = f"every label: corpusmill datasets show {ref} --labels {n} (or --json, under label_counts)"
        t.caption_justify = "left"
    return t


def mix_block(step: dict, top: int = TOP_LABELS) -> list:
    """A mix step in ``datasets show``: one line of totals, then per field a table of the ``top``
    biggest groups, before -> after, and one row for the rest."""
    from rich.markup import escape
    from rich.table import Table

    from corpusmill.report.dataset import mix_line, top_groups

    out = [escape(mix_line(step)) + (f" [yellow]({escape(step['missing'])})[/yellow]" if step.get("missing") else "")]
    for field, groups in step.get("groups", {}).items():
        shown, rest = top_groups(groups, top)
        nb = sum(g["before"] for g in groups) or 1
        na = sum(g["after"] for g in groups) or 1
        title = (f"{step['stage']}: {field} ({len(groups):,} groups)" if not rest
                 else f"{step['stage']}: {field}, the {len(shown)} biggest of {len(groups):,} groups")
        t = Table(title=escape(title), title_justify="left")
        for col in ("group", "before", "share", "after", "share ", "target"):
            t.add_column(col, justify="left" if col == "group" else "right", overflow="fold" if col == "group" else None)

        def row(name, b, a, target, **kw):
            t.add_row(escape(name), f"{b:,}", f"{b / nb:.1%}", f"{a:,}", f"{a / na:.1%}",
                      "" if target is None else f"{target:,}", **kw)

        for g in shown:
            row(str(g["group"]), g["before"], g["after"], g["target"])
        if rest:
            row(f"{len(rest):,} others", sum(g["before"] for g in rest), sum(g["after"] for g in rest), None,
                style="dim")
            t.caption = "every group: --json, under mix"
            t.caption_justify = "left"
        out.append(t)
    return out


def show(version, console, top: int = TOP_LABELS) -> None:
    """Print the version as rich tables: inputs, stages, splits, labels (the ``top`` most frequent
    and one row for the rest), each mix step's groups before and after (as many), languages, dedup."""
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
    for split, n in m["splits"].items():
        t.add_row(split, f"{n:,}", _bar(n / (c["kept"] or 1)))
    console.print(t)
    if labels:
        console.print(label_table(labels, top, version.ref))

    for step in mix_steps(version):
        for line in mix_block(step, top):
            console.print(line)

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
