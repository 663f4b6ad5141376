"""Publishing a version derived from another by removing rows (``audit --fix``; later ``refresh``).

The new version keeps the parent's data layout minus the removed rows, carries the parent's
rejects plus one reject per removed row (stage, reason, detail, duplicate_of), and records the
parent in its manifest, so the accounting invariant holds across the lineage.
"""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter
from datetime import datetime, timezone

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from corpusmill import __version__
from corpusmill import schema as S
from corpusmill.hashing import file_sha256, fingerprint
from corpusmill.report import publish_docs
from corpusmill.store import Store, Version, atomic_write_text, published_codecs, text_compression_of


def publish_removal(store: Store, parent: Version, dataset: str, stage: str,
                    removals: dict[str, dict[str, dict]], note: dict, tags: tuple[str, ...] = ()) -> tuple[Version, bool]:
    """Publish ``parent`` minus ``removals`` ({split: {id: {reason, detail, duplicate_of, similarity}}}).

    Returns (version, created). The id depends on the parent, the removals and the code version.
    """
    vid = fingerprint({"parent": f"{parent.dataset}@{parent.id}", "stage": stage, "code_version": __version__,
                       "removals": {s: sorted((i, r["reason"]) for i, r in rows.items()) for s, rows in sorted(removals.items())}})
    if store.has_version(dataset, vid):
        for tag in ("latest", *tags):
            store.set_ref(dataset, tag, vid)
        return store.version(dataset, vid), False
    work = store.work_dir(dataset, vid)
    final = work / "final"
    shutil.rmtree(work, ignore_errors=True)
    (final / "data").mkdir(parents=True)
    (final / "rejects").mkdir(parents=True)
    m = parent.manifest
    splits: dict[str, int] = {}
    label_counts: dict[str, Counter] = {}
    removed_by_reason: Counter = Counter()
    for split in parent.splits():
        gone = removals.get(split, {})
        for f in parent.data_files(split):
            table = pq.read_table(f)
            shard = f.stem.rsplit("-", 1)[1]
            if gone:
                mask = pc.is_in(table.column(S.ID), value_set=pa.array(list(gone), pa.string()))
                dropped = table.filter(mask)
                table = table.filter(pc.invert(mask))
                if dropped.num_rows:
                    info = [gone[i] for i in dropped.column(S.ID).to_pylist()]
                    removed_by_reason.update(x["reason"] for x in info)
                    rej = S.make_rejects(dropped.append_column(S.SPLIT, pa.array([split] * dropped.num_rows)),
                                         stage=stage, reason=[x["reason"] for x in info],
                                         detail=[x.get("detail") for x in info],
                                         duplicate_of=[x.get("duplicate_of") for x in info],
                                         similarity=[x.get("similarity") for x in info])
                    pq.write_table(rej, final / "rejects" / f"{stage}-{split}-{shard}.parquet", compression="zstd")
            if table.num_rows:
                codecs, dictionary = published_codecs(table.schema, text_compression_of(m))
                pq.write_table(table, final / "data" / f.name, compression=codecs, use_dictionary=dictionary,
                               row_group_size=65536)
            splits[split] = splits.get(split, 0) + table.num_rows
            if S.LABEL in table.column_names:
                label_counts.setdefault(split, Counter()).update(
                    "" if x is None else x for x in table.column(S.LABEL).to_pylist())
    for f in parent.reject_files():
        os.link(f, final / "rejects" / f.name)
    if (parent.path / "index").is_dir():
        shutil.copytree(parent.path / "index", final / "index", copy_function=os.link)
    kept = sum(splits.values())
    removed = sum(removed_by_reason.values())
    rejected = dict(m["counts"]["rejected"])
    if removed:
        rejected[stage] = dict(sorted(removed_by_reason.items()))
    stages = list(m["stages"]) + [{"name": stage, "in": m["counts"]["kept"], "kept": kept,
                                   "rejected": dict(sorted(removed_by_reason.items())), "counters": {}}]
    files = {}
    for folder in ("data", "rejects", "index"):
        for f in sorted((final / folder).rglob("*")) if (final / folder).is_dir() else []:
            if f.is_file():
                entry = {"bytes": f.stat().st_size, "sha256": file_sha256(f)}
                if folder != "index":
                    entry["rows"] = pq.read_metadata(f).num_rows
                files[str(f.relative_to(final))] = entry
    manifest = {**m, "dataset": dataset, "version": vid, "parent": f"{parent.dataset}@{parent.id}",
                "code_version": __version__,
                "counts": {**m["counts"], "kept": kept, "rejected": rejected},
                "stages": stages, "splits": dict(sorted(splits.items())),
                "label_counts": {s: dict(sorted(c.items())) for s, c in sorted(label_counts.items())},
                "files": files, "derived": {"stage": stage, **note}}
    if manifest["counts"]["input"] + manifest["counts"].get("added", 0) != kept + sum(sum(r.values()) for r in rejected.values()):
        raise RuntimeError("derived version breaks input = kept + rejected")
    atomic_write_text(final / "manifest.json", json.dumps(manifest, indent=2) + "\n")
    atomic_write_text(final / "stats.json", json.dumps(
        {"created_at": datetime.now(timezone.utc).isoformat(timespec="microseconds")}) + "\n")
    publish_docs(Version(dataset, vid, final))
    version = store.publish(dataset, vid, final)
    for tag in ("latest", *tags):
        store.set_ref(dataset, tag, vid)
    shutil.rmtree(work, ignore_errors=True)
    return version, True
