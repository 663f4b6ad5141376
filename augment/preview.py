"""``corpusmill augment preview``: source rows of a published version next to the rows the augment
stage made from them, and what the stage rejected and why. Reads the store; writes nothing."""

from __future__ import annotations

from collections import Counter

import pyarrow.compute as pc
import xxhash

from corpusmill import schema as S
from corpusmill.augment.stage import AUGMENT_PARAMS, AUGMENTED_FROM, AUGMENTER
from corpusmill.errors import CorpusmillError


def preview_augment(store, ref: str, n: int = 5, augmenter: str | None = None) -> dict:
    """``n`` source rows (a stable spread, by a hash of their id) with their new rows, plus counts.

    Returns {"dataset", "new_rows", "by_augmenter", "rejected", "examples": [{"id", "text", "label",
    "variants": [{"id", "augmenter", "params", "text"}]}]}.
    """
    version = store.resolve(ref)
    splits = version.splits()
    tables = [version.read_split(s) for s in splits]
    if not tables or AUGMENTED_FROM not in tables[0].column_names:
        raise CorpusmillError(f"{version.ref} has no augmented rows (no `{AUGMENTED_FROM}` column): "
                              f"was it built with an `augment` step?")
    rows, new = {}, []
    for t in tables:
        made = pc.is_valid(t.column(AUGMENTED_FROM))
        if augmenter:
            made = pc.and_(made, pc.equal(t.column(AUGMENTER), augmenter))
        new += t.filter(made).to_pylist()
        rows.update({r[S.ID]: r for r in t.filter(pc.invert(pc.is_valid(t.column(AUGMENTED_FROM)))).to_pylist()})
    by_source: dict[str, list] = {}
    for r in new:
        by_source.setdefault(r[AUGMENTED_FROM], []).append(r)
    chosen = sorted(by_source, key=lambda i: xxhash.xxh3_64_intdigest(i.encode("utf-8", "surrogatepass")))[:n]
    stage = next((s for s in version.manifest["stages"] if s["name"].startswith("augment")), {})
    examples = []
    for sid in chosen:
        src = rows.get(sid, {})
        examples.append({"id": sid, "text": src.get(S.TEXT), "label": src.get(S.LABEL),
                         "variants": [{"id": v[S.ID], "augmenter": v[AUGMENTER], "params": v[AUGMENT_PARAMS],
                                       "text": v[S.TEXT]} for v in sorted(by_source[sid], key=lambda v: v[S.ID])]})
    return {"dataset": version.ref, "new_rows": len(new),
            "by_augmenter": dict(sorted(Counter(r[AUGMENTER] for r in new).items())),
            "rejected": stage.get("rejected", {}), "examples": examples}


def print_preview(report: dict, console) -> None:
    from rich.table import Table

    counts = ", ".join(f"{k} {v:,}" for k, v in report["by_augmenter"].items())
    console.print(f"[bold]augment preview[/bold]: {report['dataset']}: {report['new_rows']:,} new rows ({counts})")
    if report["rejected"]:
        console.print("rejected: " + ", ".join(f"{k} {v:,}" for k, v in sorted(report["rejected"].items(), key=lambda kv: -kv[1])))
    t = Table(title=f"{len(report['examples'])} source rows and their new rows", title_justify="left", show_lines=True)
    t.add_column("before", ratio=1)
    t.add_column("augmenter", no_wrap=True)
    t.add_column("after", ratio=1)
    for ex in report["examples"]:
        head = f"[dim]{ex['id']}" + (f" ({ex['label']})" if ex.get("label") is not None else "") + f"[/dim]\n{ex['text']}"
        for i, v in enumerate(ex["variants"]):
            t.add_row(head if i == 0 else "", f"{v['augmenter']}\n[dim]{_short(v['params'])}[/dim]", v["text"])
    console.print(t)


def _short(params: str | None) -> str:
    import json

    if not params:
        return ""
    p = json.loads(params)
    p.pop("kind", None)
    p.pop("operations", None)
    return " ".join(f"{k}={v}" for k, v in p.items())
