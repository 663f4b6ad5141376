"""Operations on published versions: summaries, diffs and exports (``corpusmill datasets ...``)."""

from __future__ import annotations

import base64
from pathlib import Path

import orjson
import pyarrow.parquet as pq
import xxhash

from corpusmill import schema as S
from corpusmill.errors import CorpusmillError
from corpusmill.store import Store, Version

CONTENT_COLUMNS = (S.TEXT, S.LABEL, S.PROMPT, S.RESPONSE, S.MESSAGES)


def summary(version: Version) -> dict:
    """What ``datasets show --json`` prints: the manifest plus the tags pointing at the version."""
    m = dict(version.manifest)
    m["ref"] = version.ref
    m["path"] = str(version.path)
    m["run"] = version.stats
    return m


def _row_digests(version: Version, split: str) -> dict[str, int]:
    """id -> hash of the row's content (text, label, prompt/response, messages)."""
    cols = [c for c in (S.ID, *CONTENT_COLUMNS) if c in version.schema().names]
    out: dict[str, int] = {}
    for batch in version.iter_batches(split, columns=cols):
        rows = batch.to_pydict()
        ids = rows.pop(S.ID)
        content = list(zip(*rows.values()))
        for rid, c in zip(ids, content):
            out[rid] = xxhash.xxh3_64_intdigest(orjson.dumps(c))
    return out


def diff(a: Version, b: Version, examples: int = 5) -> dict:
    """Rows added, removed, changed (same id, other content) and unchanged per split, a -> b."""
    result: dict = {"from": a.ref, "to": b.ref, "splits": {}}
    splits_a, splits_b = set(a.splits()), set(b.splits())
    where_a: dict[str, str] = {}
    where_b: dict[str, str] = {}
    for split in sorted(splits_a | splits_b):
        da = _row_digests(a, split) if split in splits_a else {}
        db = _row_digests(b, split) if split in splits_b else {}
        where_a.update(dict.fromkeys(da, split))
        where_b.update(dict.fromkeys(db, split))
        added = [i for i in db if i not in da]
        removed = [i for i in da if i not in db]
        changed = [i for i in db if i in da and da[i] != db[i]]
        result["splits"][split] = {
            "added": len(added), "removed": len(removed), "changed": len(changed),
            "unchanged": len(db) - len(added) - len(changed), "rows_from": len(da), "rows_to": len(db),
            "examples": {"added": sorted(added)[:examples], "removed": sorted(removed)[:examples],
                         "changed": sorted(changed)[:examples]},
        }
    result["moved_between_splits"] = sum(1 for i, s in where_b.items() if i in where_a and where_a[i] != s)
    result["refresh"] = refresh_record(a, b)
    return result


def refresh_record(a: Version, b: Version) -> dict | None:
    """What the refreshes from ``a`` to ``b`` added, rejected and removed, from the manifests
    of ``b`` and its ancestors up to ``a`` (None when ``a`` is not an ancestor reached by
    refreshes)."""
    steps = []
    current = b
    store = Store(b.path.parents[2])
    while current.ref != a.ref:
        m = current.manifest
        if not m.get("refresh") or not m.get("parent"):
            return None
        steps.append(m["refresh"])
        current = store.resolve(m["parent"])
    out = {"refreshes": len(steps), "added_rows_in": 0, "added_kept": 0, "added_rejected": {}, "removed": 0,
           "added_splits": {}}
    for r in steps:
        out["added_rows_in"] += r["added"]["rows_in"]
        out["added_kept"] += r["added"]["kept"]
        out["removed"] += r["removed"]["rows"]
        for stage, reasons in r["added"]["rejected"].items():
            for reason, n in reasons.items():
                key = f"{stage}:{reason}"
                out["added_rejected"][key] = out["added_rejected"].get(key, 0) + n
        for split, n in r["added"]["splits"].items():
            out["added_splits"][split] = out["added_splits"].get(split, 0) + n
    out["added_rejected"] = dict(sorted(out["added_rejected"].items()))
    return out


def _jsonable_row(row: dict) -> dict:
    meta = row.get(S.META)
    if isinstance(meta, str):
        row[S.META] = orjson.loads(meta)
    raw = row.pop(S.RAW, None)
    if raw is not None:
        row["raw_base64"] = base64.b64encode(raw).decode()
    return row


def _write_jsonl(path: Path, tables) -> int:
    n = 0
    with open(path, "wb") as f:
        for t in tables:
            for row in t.to_pylist():
                f.write(orjson.dumps(_jsonable_row(row)) + b"\n")
                n += 1
    return n


def export(version: Version, fmt: str, out: str | Path) -> dict[str, int]:
    """Write one file per split (and the rejects) under ``out``; returns rows written per file."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, int] = {}
    if fmt == "jsonl":
        for split in version.splits():
            written[f"{split}.jsonl"] = _write_jsonl(out / f"{split}.jsonl", (pq.read_table(f) for f in version.data_files(split)))
        written["rejects.jsonl"] = _write_jsonl(out / "rejects.jsonl", (pq.read_table(f) for f in version.reject_files()))
    elif fmt == "parquet":
        for split in version.splits():
            t = version.read_split(split)
            pq.write_table(t, out / f"{split}.parquet", compression="zstd")
            written[f"{split}.parquet"] = t.num_rows
        rej = version.read_rejects()
        if rej is not None:
            pq.write_table(rej, out / "rejects.parquet", compression="zstd")
            written["rejects.parquet"] = rej.num_rows
    elif fmt == "hf":
        try:
            import datasets
        except ImportError:
            raise CorpusmillError("--format hf needs Hugging Face datasets: pip install 'corpusmill[hf]'") from None
        dd = datasets.DatasetDict({s: datasets.Dataset(version.read_split(s)) for s in version.splits()})
        dd.save_to_disk(str(out))
        written = {s: len(dd[s]) for s in dd}
    else:
        raise CorpusmillError(f"unknown export format '{fmt}'; use jsonl, parquet or hf")
    return written


def versions_table(store: Store) -> list[dict]:
    rows = []
    for name in store.datasets():
        refs = store.refs(name)
        for v in store.versions(name):
            m = v.manifest
            rows.append({
                "dataset": name, "version": v.id, "created_at": v.stats.get("created_at", ""),
                "parent": m.get("parent"), "input": m["counts"]["input"], "kept": m["counts"]["kept"],
                "splits": m["splits"], "tags": sorted(t for t, vid in refs.items() if vid == v.id),
            })
    return rows
