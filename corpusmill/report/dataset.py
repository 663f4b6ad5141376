"""``report.html``: what happened to the rows of one version, as plots with a reading guide each."""

from __future__ import annotations

import json

from corpusmill.report import svg
from corpusmill.report.facts import VersionFacts
from corpusmill.report.page import Page, esc, table

TOP_LANGUAGES = 15
#: labels drawn and listed one by one; the rest are one 'others' row (all of them in a folded table)
TOP_LABELS = 12


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
    _mix(page, facts)
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
        direct = [(x, 0.02) for x in f.near_similarities if x >= t]
        chained = [(x, 0.05) for x in f.near_similarities if x < t]
        groups = [(f"rejected near duplicates ({len(direct):,})", direct, svg.colour(1))]
        why = ("Dots on the floor are the rejected near duplicates, at their Jaccard similarity to the kept row of "
               "their cluster.")
        if chained:
            groups.append((f"joined through another row ({len(chained):,})", chained, svg.colour(4)))
            why += (f" {len(chained):,} of them sit left of the threshold, raised a little: a cluster is every row "
                    "linked by a chain of pairs verified at or above the threshold, so a row can join through a "
                    "third row (A~B and B~C put C with A) while its own similarity to the kept row is lower.")
        page.plot("MinHash S-curve", f"The chance that two texts of a given Jaccard similarity share at least one of the "
                  f"{b} LSH bands of {r} slots and so are compared at all: 1 - (1 - s^{r})^{b}. Left of the threshold "
                  f"({t:g}) the curve should be low (few wasted comparisons), right of it high (few missed duplicates; "
                  f"miss rate at the threshold {lsh.get('miss_rate_at_threshold', 0):.1%}). " + why,
                  svg.line_plot([("P(candidate)", pts, svg.KEPT)], title="MinHash S-curve", xlabel="Jaccard similarity",
                                ylabel="P(candidate pair)", markers=[(t, f"threshold {t:g}")], point_groups=groups))


def _splits(page: Page, m: dict, f: VersionFacts) -> None:
    labels = m.get("label_counts") or {}
    if not labels and not f.leakage:
        return
    page.section("splits", "Splits")
    if labels:
        _labels(page, labels)
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


def top_labels(labels: dict[str, dict], n: int = TOP_LABELS) -> tuple[list, list]:
    """Labels by rows over every split, most first (ties by name): (the first ``n``, the rest).
    With one more label than ``n`` every label is shown: an 'others' row of one label hides it."""
    total: dict = {}
    for counts in labels.values():
        for y, k in counts.items():
            total[y] = total.get(y, 0) + k
    names = sorted(total, key=lambda y: (-total[y], "" if y is None else str(y)))
    if len(names) <= n + 1:
        return names, []
    return names[:n], names[n:]


def _labels(page: Page, labels: dict[str, dict]) -> None:
    shown, rest = top_labels(labels)
    colours = {y: svg.colour(i) for i, y in enumerate(shown)}
    others = f"{len(rest)} other labels"
    rows = []
    for split, c in labels.items():
        total = sum(c.values()) or 1
        segs = [(y or "(no label)", 100 * c.get(y, 0) / total, colours[y]) for y in shown]
        if rest:
            segs.append((others, 100 * sum(c.get(y, 0) for y in rest) / total, svg.MUTED))
        rows.append((split, segs))
    notes = {s: f"{sum(c.values()):,} rows" for s, c in labels.items()}
    keys = [(y or "(no label)", colours[y]) for y in shown] + ([(others, svg.MUTED)] if rest else [])
    how = ("Share of each label within each split (each bar is 100%). With stratified splitting the bars should "
           "look alike; a label missing from a split cannot be evaluated there.")
    if rest:
        how += (f" The {len(shown)} most frequent of {len(shown) + len(rest)} labels are drawn; the other "
                f"{len(rest)} are one grey part, listed in the full table below the first.")
    page.plot("Labels per split", how, svg.hbar_stack(rows, title="labels per split", note=notes, legend_items=keys))
    head = ["label"] + list(labels) + (["share"] if rest else [])
    grand = sum(sum(c.values()) for c in labels.values()) or 1

    def row(y) -> list:
        cells = [y or "(no label)"] + [labels[s].get(y, 0) for s in labels]
        return cells + ([f"{sum(cells[1:]) / grand:.1%}"] if rest else [])

    numeric = tuple(range(1, len(head)))
    if not rest:
        page.html(table(head, [row(y) for y in shown], numeric=numeric))
        return
    folded = [others] + [sum(labels[s].get(y, 0) for y in rest) for s in labels]
    folded.append(f"{sum(folded[1:]) / grand:.1%}")
    page.html(table(head, [row(y) for y in shown] + [folded], numeric=numeric))
    page.html(f"<details><summary>all {len(shown) + len(rest):,} labels, rows per split (also in "
              "'corpusmill datasets show --json', under label_counts)</summary>"
              + table(head, [row(y) for y in shown + rest], numeric=numeric) + "</details>")


def top_groups(groups: list[dict], n: int = TOP_LABELS) -> tuple[list[dict], list[dict]]:
    """A mix field's groups (already biggest first, as mix.json holds them): (the first ``n``, the
    rest). With one more group than ``n`` every group is shown, as for labels."""
    if len(groups) <= n + 1:
        return list(groups), []
    return list(groups[:n]), list(groups[n:])


def mix_line(step: dict) -> str:
    """One sentence on a mix step: its fields, rows mixed -> rows out, repeats, rejects by reason (the report
    and the card both print it)."""
    c = step.get("counters", {})
    splits = step.get("config", {}).get("splits")
    scope = "every row" if splits in (None, "all") else "split " + ", ".join(splits)
    rej = step.get("rejected", {})
    fields = ", ".join(step.get("groups", {})) or "no field"
    return (f"{step['stage']} by {fields} ({scope}): {c.get('rows_mixed', 0):,} rows -> {c.get('rows_out', 0):,}, "
            f"{c.get('repeats', 0):,} repeats added; over_cap {rej.get('over_cap', 0):,}, downsampled "
            f"{rej.get('downsampled', 0):,}; {c.get('rows_passed_through', 0):,} rows of other splits passed through")


def _mix(page: Page, f: VersionFacts) -> None:
    if not f.mix:
        return
    page.section("mix", "Mix")
    for step in f.mix:
        page.text(mix_line(step) + ("." if not step.get("missing") else f" ({step['missing']})."))
        for field, groups in step.get("groups", {}).items():
            shown, rest = top_groups(groups)
            nb = sum(g["before"] for g in groups) or 1
            na = sum(g["after"] for g in groups) or 1
            others = f"{len(rest):,} other groups"
            bars = [(str(g["group"]), [("before", g["before"], svg.MUTED), ("after", g["after"], svg.KEPT)])
                    for g in shown]
            if rest:
                bars.append((others, [("before", sum(g["before"] for g in rest), svg.MUTED),
                                      ("after", sum(g["after"] for g in rest), svg.KEPT)]))
            how = (f"Rows per group of {field} in the mixed rows, before the step (grey) and after it (blue), "
                   f"biggest group first; 'after' counts repeats. A group above its target was cut (over_cap by a "
                   f"max_per cap, downsampled to its share); one below it kept every row, or repeated rows with "
                   f"upsample. {len(groups):,} groups, {nb:,} rows before, {na:,} after.")
            if rest:
                how += f" The {len(shown)} biggest are drawn; the other {len(rest):,} are one pair, listed in the full table."
            page.plot(f"{step['stage']}: {field}", how,
                      svg.paired_bars(bars, title=f"{step['stage']} {field} before and after",
                                      legend_items=[("before", svg.MUTED), ("after", svg.KEPT)]))
            head = ["group", "before", "share", "after", "share ", "target"]

            def row(name, b, a, target) -> list:
                return [name, b, f"{b / nb:.1%}", a, f"{a / na:.1%}", "" if target is None else target]

            rows = [row(str(g["group"]), g["before"], g["after"], g["target"]) for g in shown]
            if rest:
                rows.append(row(others, sum(g["before"] for g in rest), sum(g["after"] for g in rest), None))
            page.html(table(head, rows, numeric=(1, 2, 3, 4, 5)))
            if rest:
                page.html(f"<details><summary>all {len(groups):,} groups of {esc(field)} (also in "
                          "'corpusmill datasets show --json', under mix)</summary>"
                          + table(head, [row(str(g["group"]), g["before"], g["after"], g["target"]) for g in groups],
                                  numeric=(1, 2, 3, 4, 5)) + "</details>")


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
    # one small plot per signal that varies, the signals of rules that acted and of other stages first
    acted = set(quality["rejected"]) | {k[: -len("_flagged")] for k in quality["counters"]} if quality else set()
    constant = {c: h for c, h in f.signals.items() if h.get("min") == h.get("max")}
    varying = [c for c in f.signals if c not in constant]
    varying.sort(key=lambda c: (c.startswith("q_") and not any(label.split()[0] in acted
                                                              for _, label in f.signals[c]["thresholds"]), c))
    sampled = " (first rows of the files)" if f.data_sampled or f.rejects_sampled else ""
    if varying:
        page.grid("Signal distributions", f"One plot per signal column: its values over kept rows (blue) and over "
                  f"rejected rows that carry the column (red, rejected by the stage that computed it or a later "
                  f"one){sampled}, stacked. Dashed lines are the configured rule bounds: rows beyond a reject bound "
                  "are gone, beyond an annotate bound flagged. Signals of rules that rejected or flagged rows come "
                  "first.", [(col, _signal_plot(col, f.signals[col])) for col in varying])
    if constant:
        page.text(f"{len(constant)} signal column(s) hold one value on every row and are not plotted: "
                  + ", ".join(f"{c} = {svg.fmt_tick(h['min'])}" for c, h in sorted(constant.items())) + ".")


def _signal_plot(col: str, h: dict) -> str:
    return svg.histogram([("kept", h["kept"], svg.KEPT), ("rejected", h["rejected"], svg.colour(3))],
                         h["edges"], title=col, xlabel=col, stacked=True, width=310, height=150,
                         tick_labels=[svg.fmt_tick(e) for e in h["edges"]],
                         markers=[tuple(x) for x in h["thresholds"]])


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
              svg.hbar_stack(rows[:40], title="stage counters"))


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
