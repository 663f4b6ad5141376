"""``report.html``: what happened to the rows of one version, as plots with a reading guide each."""

from __future__ import annotations

import json

from corpusmill.report import svg
from corpusmill.report.facts import VersionFacts
from corpusmill.report.page import Page, esc, table

TOP_LANGUAGES = 15


def render(manifest: dict, stats: dict, facts: VersionFacts, warnings: list[str]) -> str:
    m = manifest
    c = m["counts"]
    rejected = sum(sum(r.values()) for r in c["rejected"].values())
    page = Page(f"{m['dataset']}@{m['version']}",
                f"{c['input']:,} rows in = {c['kept']:,} kept + {rejected:,} rejected; "
                + ", ".join(f"{s} {n:,}" for s, n in m["splits"].items())
                + (f"; derived from {m['parent']}" if m.get("parent") else ""))
    for w in warnings:
        page.warn(w)
    if facts.data_sampled or facts.rejects_sampled:
        page.warn("Distributions below are computed from the first rows of the files (see each caption); "
                  "counts come from the manifest and are complete.")
    _overview(page, m)
    _lengths(page, facts)
    _languages(page, facts)
    _dedup(page, m, facts)
    _splits(page, m, facts)
    _signals(page, m, facts)
    _changes(page, m)
    _samples(page, facts)
    _provenance(page, m)
    return page.render()


def _overview(page: Page, m: dict) -> None:
    page.section("pipeline", "Rows through the pipeline")
    page.plot(None, "One bar per stage, in pipeline order. The blue part is the rows the stage kept and passed on; "
              "the coloured parts to its right are the rows it rejected, one colour per reason. Each bar is as long "
              "as the rows the stage received, so the blue part of one bar is the whole of the next.",
              svg.waterfall(m["stages"], title="rows per stage"))
    rows = []
    for st in m["stages"]:
        rej = sum(st["rejected"].values())
        reasons = ", ".join(f"{r} {n:,}" for r, n in sorted(st["rejected"].items(), key=lambda kv: -kv[1]))
        rows.append([st["name"], st["in"], st["kept"], rej, reasons])
    page.html(table(["stage", "in", "kept", "rejected", "reasons"], rows, numeric=(1, 2, 3)))


def _lengths(page: Page, f: VersionFacts) -> None:
    if not f.lengths:
        return
    L = f.lengths
    page.section("lengths", "Text length before and after")
    sampled = " (first rows of the files only)" if f.data_sampled or f.rejects_sampled else ""
    med_after = f"{L['median_after']:,.0f}" if L["median_after"] is not None else "-"
    page.plot(None, f"Characters per text, in bins that double in width. 'Before' is every input row: the "
              f"{L['rows_after']:,} kept rows plus every rejected row as the rejecting stage saw it (after cleaning, "
              f"for stages that run after clean); 'after' is the kept rows{sampled}. Median {L['median_before']:,.0f} "
              f"characters before, {med_after} after. Bins emptied between the two show what the filters removed.",
              svg.histogram([("before", L["before"], svg.MUTED), ("after", L["after"], svg.KEPT)], L["edges"],
                            title="text length", xlabel="characters (bin start)",
                            tick_labels=[svg.fmt_count(e) for e in L["edges"]]))


def _languages(page: Page, f: VersionFacts) -> None:
    if not f.languages:
        return
    kept, rej = f.languages["kept"], f.languages["rejected"]
    langs = sorted(set(kept) | set(rej), key=lambda k: (-(kept.get(k, 0) + rej.get(k, 0)), k))
    shown, rest = langs[:TOP_LANGUAGES], langs[TOP_LANGUAGES:]
    rows = [(lang, [("kept", kept.get(lang, 0), svg.KEPT), ("rejected", rej.get(lang, 0), svg.colour(3))])
            for lang in shown]
    if rest:
        rows.append((f"{len(rest)} others", [("kept", sum(kept.get(x, 0) for x in rest), svg.KEPT),
                                             ("rejected", sum(rej.get(x, 0) for x in rest), svg.colour(3))]))
    total = sum(kept.values()) or 1
    notes = {lang: f"{kept.get(lang, 0) / total:.1%} of kept" for lang in shown}
    page.section("languages", "Languages")
    page.plot(None, "Rows per detected language (the lang column), most frequent first. Blue: kept rows; red: rejected "
              "rows that had a language by the time they were rejected (a language filter's rejects, and later "
              "stages'). 'und' is text too short or too mixed to tell.",
              svg.hbar_stack(rows, title="languages", note=notes,
                             legend_items=[("kept", svg.KEPT), ("rejected", svg.colour(3))]))


def _dedup(page: Page, m: dict, f: VersionFacts) -> None:
    lsh = next((st["counters"].get("lsh") for st in m["stages"]
                if st["name"].startswith("dedup") and isinstance(st["counters"].get("lsh"), dict)), None)
    if not f.clusters and not lsh:
        return
    page.section("dedup", "Duplicates")
    if f.clusters:
        sizes = {int(k): v for k, v in f.clusters["sizes"].items()}
        top = max(sizes, default=1)
        cap = 10
        counts = [sizes.get(k, 0) for k in range(1, min(top, cap) + 1)]
        labels = [str(k) for k in range(1, min(top, cap) + 1)]
        if top > cap:
            counts.append(sum(v for k, v in sizes.items() if k > cap))
            labels.append(f"{cap + 1}+")
        edges = list(range(len(counts) + 1))
        page.plot("Cluster sizes", f"How many kept rows stand for how many input rows: a cluster of size k is one kept "
                  f"row and k-1 rows rejected as its duplicates (exact or near). {f.clusters['duplicates']:,} duplicates "
                  f"in {f.clusters['clusters']:,} clusters of two or more; size 1 is rows with no duplicate. "
                  "The vertical axis is logarithmic, so a few large clusters stay visible next to many singletons.",
                  svg.histogram([("clusters", counts, svg.KEPT)], [e + 0.5 for e in edges], title="cluster sizes",
                                xlabel="rows per cluster", tick_labels=labels + [""], log_y=True))
    if lsh:
        b, r, t = lsh["bands"], lsh["rows"], lsh["threshold"]
        pts = [(i / 100, 1 - (1 - (i / 100) ** r) ** b) for i in range(101)]
        rug = [(s, 0.02) for s in f.near_similarities]
        page.plot("MinHash S-curve", f"The chance that two texts of a given Jaccard similarity share at least one of the "
                  f"{b} LSH bands of {r} slots and so are compared at all: 1 - (1 - s^{r})^{b}. Left of the threshold "
                  f"({t:g}) the curve should be low (few wasted comparisons), right of it high (few missed duplicates; "
                  f"miss rate at the threshold {lsh.get('miss_rate_at_threshold', 0):.1%}). Dots on the floor are the "
                  "similarities of the near duplicates that were rejected.",
                  svg.line_plot([("P(candidate)", pts, svg.KEPT)], title="MinHash S-curve", xlabel="Jaccard similarity",
                                ylabel="P(candidate pair)", markers=[(t, f"threshold {t:g}")], points=rug))


def _splits(page: Page, m: dict, f: VersionFacts) -> None:
    labels = m.get("label_counts") or {}
    if not labels and not f.leakage:
        return
    page.section("splits", "Splits")
    if labels:
        names = sorted({y for c in labels.values() for y in c})
        colours = {y: svg.colour(i) for i, y in enumerate(names)}
        rows = []
        for split, c in labels.items():
            total = sum(c.values()) or 1
            rows.append((split, [(y or "(no label)", 100 * c.get(y, 0) / total, colours[y]) for y in names]))
        notes = {s: f"{sum(c.values()):,} rows" for s, c in labels.items()}
        page.plot("Labels per split", "Share of each label within each split (each bar is 100%). With stratified "
                  "splitting the bars should look alike; a label missing from a split cannot be evaluated there.",
                  svg.hbar_stack(rows, title="labels per split", note=notes,
                                 legend_items=[(y or "(no label)", colours[y]) for y in names]))
        head = ["label"] + list(labels)
        page.html(table(head, [[y or "(no label)"] + [labels[s].get(y, 0) for s in labels] for y in names],
                        numeric=tuple(range(1, len(head)))))
    if f.leakage:
        L = f.leakage
        sp = L["splits"]
        shares = [[v / (L["rows"][sp[j]] or 1) for j, v in enumerate(row)] for row in L["matrix"]]
        total_off = sum(v for i, row in enumerate(L["matrix"]) for j, v in enumerate(row) if i != j)
        page.plot("Leakage between splits", "Cell (row A, column B): rows of split B whose text, lower-cased with "
                  "whitespace collapsed, also occurs in split A. Off the diagonal every number should be 0: a test row "
                  "that also sits in train measures memory, not skill. On the diagonal: rows that share their text "
                  f"with another row of the same split. Rows leaking across splits: {total_off:,}.",
                  svg.matrix(sp, sp, L["matrix"], shares=shares, title="leakage matrix", row_title="text in split",
                             col_title="rows of split"))
    decon = [st for st in m["stages"] if st["name"].startswith("decontaminate")]
    for st in decon:
        rej = sum(st["rejected"].values())
        page.text(f"{st['name']}: {rej:,} rows rejected as overlapping the benchmark files"
                  + (f" ({', '.join(f'{r} {n:,}' for r, n in st['rejected'].items())})" if rej else "")
                  + (f"; {st['counters'].get('rows_cut', 0):,} rows had overlapping spans cut" if st["counters"] else ""))


def _signals(page: Page, m: dict, f: VersionFacts) -> None:
    if not f.signals:
        return
    quality = next((st for st in m["stages"] if st["name"].startswith("quality")), None)
    page.section("signals", "Signals")
    if quality:
        flagged = {k[: -len("_flagged")]: v for k, v in quality["counters"].items() if k.endswith("_flagged")}
        rules = sorted(set(flagged) | set(quality["rejected"]))
        if rules:
            rows = [(r, [("rejected", quality["rejected"].get(r, 0), svg.colour(3)),
                         ("flagged, kept", flagged.get(r, 0), svg.colour(1))]) for r in rules]
            page.plot("Quality rules", "Rows per quality rule: red, rejected under this rule (the first failing "
                      "reject rule names the reason); orange, kept but failing an annotate rule (listed in q_flags).",
                      svg.hbar_stack(rows, title="quality rules", legend_items=[("rejected", svg.colour(3)),
                                                                                ("flagged, kept", svg.colour(1))]))
    # the signals of rules that acted, and the other stages' signals, first; the rest folded
    acted = set(quality["rejected"]) | {k[: -len("_flagged")] for k in quality["counters"]} if quality else set()
    first = [c for c, h in f.signals.items()
             if not c.startswith("q_") or any(label.split()[0] in acted for _, label in h["thresholds"])]
    rest = [c for c in f.signals if c not in first]
    for col in first:
        _signal_plot(page, col, f.signals[col], f.data_sampled or f.rejects_sampled)
    if rest:
        page.html(f"<details><summary>{len(rest)} more signal columns (rules that rejected and flagged nothing)"
                  "</summary>")
        for col in rest:
            _signal_plot(page, col, f.signals[col], f.data_sampled or f.rejects_sampled)
        page.html("</details>")


def _signal_plot(page: Page, col: str, h: dict, sampled: bool) -> None:
    note = " (first rows of the files)" if sampled else ""
    page.plot(col, f"Distribution of {col} over kept rows (blue) and rejected rows that carry the column (red, "
              f"rejected by the stage that computed it or a later one){note}, stacked. Dashed lines are the "
              "configured rule bounds: rows beyond a reject bound are gone, beyond an annotate bound flagged.",
              svg.histogram([("kept", h["kept"], svg.KEPT), ("rejected", h["rejected"], svg.colour(3))],
                            h["edges"], title=col, xlabel=col, stacked=True,
                            tick_labels=[svg.fmt_count(e) if abs(e) >= 100 else f"{e:.3g}" for e in h["edges"]],
                            markers=[tuple(x) for x in h["thresholds"]]))


def _changes(page: Page, m: dict) -> None:
    rows = []
    for st in m["stages"]:
        for k, v in st.get("counters", {}).items():
            if isinstance(v, int) and not isinstance(v, bool) and v and not k.endswith("_flagged") \
                    and not k.startswith(("lang_", "rows_")):
                rows.append((f"{st['name']}: {k}", [(k, v, svg.colour(len(rows)))]))
    if not rows:
        return
    page.section("changes", "What stages counted")
    page.plot(None, "Counters the stages report besides rejections: texts changed by cleaning, PII masked, clusters "
              "found, spans cut. A row can be counted under several.",
              svg.hbar_stack(rows[:40], title="stage counters", label_width=260))


def _samples(page: Page, f: VersionFacts) -> None:
    if not f.samples:
        return
    page.section("rejects", "Rejected rows, by reason")
    page.text("A few rows per reason, the first in file order, with the stage's explanation. Every rejected row is "
              "stored in the version's rejects/ folder ('corpusmill datasets export' writes them out).")
    for s in f.samples:
        rows = [[r["id"] or r["source"] or "", r["text"] if r["text"] is not None else "(unreadable)", r["detail"] or "",
                 (r["duplicate_of"] or "") + (f" ({r['similarity']:.2f})" if r["similarity"] is not None else "")]
                for r in s["rows"]]
        page.html(f"<details><summary><b>{esc(s['stage'])}</b>: {esc(s['reason'])}, {s['count']:,} rows</summary>"
                  + table(["id (or source)", "text", "detail", "duplicate of"], rows, text=(1, 2)) + "</details>")


def _provenance(page: Page, m: dict) -> None:
    page.section("provenance", "Inputs and configuration")
    rows = []
    for inp in m["inputs"]:
        for f in inp["files"]:
            rows.append([inp["path"], f["name"], f["bytes"], f["sha256"][:16], inp.get("license") or "unknown",
                         inp.get("source") or ""])
    page.html(table(["input", "file", "bytes", "sha256 (first 16)", "license", "source"], rows, numeric=(2,)))
    page.html("<details><summary>resolved pipeline configuration</summary><pre>"
              + esc(json.dumps(m["config"], indent=2)) + "</pre></details>")
