"""``corpusmill refresh``: a new version from a parent, new files and removed ids, without
recomputing the parent's rows.

1. The parent's recorded pipeline (its manifest's resolved config) is run on the added files
   only, with three changes: a first ``unseen_ids`` step (an id the parent holds is a
   ``duplicate_id``), ``dedup`` compares with the parent's stored index (``against``: a new row
   like an old one is rejected, the old row stays) and ``split`` inherits the parent's splits
   (``inherit``: a new row in the same cluster or ``group_by`` group as an old row, or its near
   twin, takes that row's split; one linked to rows of two splits is rejected as
   ``split_conflict``).
2. That run sees "the parent minus ``--remove``": a private copy in a scratch store whose data
   and indexes are the parent's, linked, with the removed rows filtered out. A removed row's
   fingerprints therefore do not block a corrected copy of it, and its id can be reused.
3. The new version links the parent's data, rejects and index files (rewriting only the data
   files that held removed rows) and adds the new run's files. Its manifest records the parent,
   what was added (inputs, rows kept and rejected by stage and reason), what was removed, and
   merged counts for which input = kept + rejected still holds across the lineage.

The version id is a fingerprint of the parent, the new run's version id (the added files'
content and the resolved config) and the removed ids: refreshing the same parent with the same
files gives the same version.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from corpusmill import __version__
from corpusmill import fs as fsio
from corpusmill import schema as S
from corpusmill.errors import CorpusmillError, reports_full_disk
from corpusmill.hashing import file_sha256, fingerprint, remember_sha256
from corpusmill.report import publish_docs
from corpusmill.store import (IDS_FILE, Store, Version, atomic_write_text, link_file, parse_ref, published_codecs,
                              text_compression_of)

#: the stage that records removed rows in the merged manifest and rejects
REMOVE_STAGE = "refresh"


@dataclass
class RefreshResult:
    version: Version
    created: bool  # False when the same refresh was already published
    manifest: dict
    seconds: float = 0.0


def read_ids(path: str | Path) -> list[str]:
    """Ids one per line (blank lines and surrounding whitespace ignored), sorted, unique."""
    p = Path(path)
    if not p.is_file():
        raise CorpusmillError(f"--remove {path}: no such file (one id per line)")
    return sorted({line.strip() for line in p.read_text(encoding="utf-8").splitlines() if line.strip()})


def refresh_pipeline(parent: Version, add: list[str | Path], input_index: int = 0) -> dict:
    """The parent's pipeline as a mapping, reading ``add`` and set up to extend ``parent``."""
    cfg = parent.manifest["config"]
    if not 0 <= input_index < len(cfg["inputs"]):
        raise CorpusmillError(f"--input {input_index}: {parent.ref} has inputs 0..{len(cfg['inputs']) - 1}")
    mapping = {k: v for k, v in cfg["inputs"][input_index].items() if k != "path"}
    missing = [str(f) for f in add if not _exists(str(f))]
    if missing:
        raise CorpusmillError(f"--add: not found: {', '.join(missing)}")
    steps: list[dict] = [{"unseen_ids": {"version": parent.ref}}]
    against_set = False
    for step in cfg["steps"]:
        (kind, opts), = step.items()
        opts = dict(opts or {})
        if kind == "dedup" and not against_set:
            opts["against"] = parent.ref
            against_set = True
        elif kind == "split":
            opts["inherit"] = parent.ref
        steps.append({kind: opts})
    raw = {k: v for k, v in cfg.items() if k not in ("inputs", "steps")}
    raw["inputs"] = [{**mapping, "path": str(f) if fsio.is_remote(str(f)) else str(Path(fsio.local_path(f)).resolve())}
                     for f in add]
    raw["steps"] = steps
    return raw


def _exists(path: str) -> bool:
    """A local path, or a remote file, folder or glob that matches something."""
    if not fsio.is_remote(path):
        return Path(fsio.local_path(path)).exists()
    return bool(fsio.expand_remote(path))


@reports_full_disk
def refresh(store: Store, ref: str, add: list[str | Path], *, remove: str | Path | None = None,
            tags: tuple[str, ...] = (), workers: int = 1, input_index: int = 0, quiet: bool = True) -> RefreshResult:
    """Publish ``ref`` + the rows of ``add`` - the ids in ``remove``; see the module docstring."""
    from corpusmill.pipelines.config import parse_pipeline
    from corpusmill.pipelines.registry import REGISTRY
    from corpusmill.pipelines.runner import Background, execute, make_plan

    t0 = time.perf_counter()
    parent = store.resolve(ref)
    if not add:
        raise CorpusmillError("refresh needs at least one file in --add")
    removed_ids = read_ids(remove) if remove else []
    raw = refresh_pipeline(parent, add, input_index)
    key = fingerprint({"parent": parent.ref, "remove": removed_ids, "add": raw["inputs"]})
    # identical refreshes share their scratch folder: the second waits, then finds the version published
    with store.building(parent.dataset, f"refresh-{key}", quiet=quiet):
        scratch_root = store.dataset_dir(parent.dataset) / ".work" / f"refresh-{key}"
        scratch = Store(scratch_root / "store")
        base, removed = _materialise_base(store, scratch, parent, set(removed_ids))
        for rel, entry in parent.manifest["files"].items():  # linked files need no re-hashing
            if (parent.path / rel).is_file():
                remember_sha256(parent.path / rel, entry["sha256"])

        config, steps, base_dir = parse_pipeline(raw, REGISTRY, base_dir=Path.cwd().resolve(), source="refresh")
        plan = make_plan(config, steps, base_dir, store_root=scratch.root)
        vid = fingerprint({"parent": parent.ref, "added": plan.version_id, "removed": removed_ids,
                           "code_version": __version__})
        name = parent.dataset
        if store.has_version(name, vid):  # the same refresh was published: nothing to run
            for tag in ("latest", *tags):
                store.set_ref(name, tag, vid)
            shutil.rmtree(scratch_root, ignore_errors=True)
            version = store.version(name, vid)
            return RefreshResult(version, False, version.manifest, time.perf_counter() - t0)

        ids = Background(lambda: _write_ids(base))  # while the workers start and read
        added = execute(plan, scratch, workers=workers, quiet=quiet, docs=False,
                        allow_empty=True)  # new rows that are all duplicates of the parent: a normal refresh
        ids.wait()
        work = store.work_dir(name, vid)
        shutil.rmtree(work, ignore_errors=True)
        final = work / "final"
        manifest = _assemble(final, parent, base, added.version, removed, removed_ids, vid, remove)
        atomic_write_text(final / "manifest.json", json.dumps(manifest, indent=2) + "\n")
        seconds = time.perf_counter() - t0
        atomic_write_text(final / "stats.json", json.dumps({
            "created_at": datetime.now(timezone.utc).isoformat(timespec="microseconds"), "seconds": round(seconds, 3),
            "workers": workers, "refresh_run_seconds": round(added.seconds, 3)}, indent=2) + "\n")
        publish_docs(Version(name, vid, final))
        version = store.publish(name, vid, final)
        for tag in ("latest", *tags):
            store.set_ref(name, tag, vid)
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(scratch_root, ignore_errors=True)
        return RefreshResult(version, True, manifest, time.perf_counter() - t0)


def _write_ids(base: Version) -> None:
    """The base's ids as one file (``IDS_FILE``), which every worker's unseen_ids step maps instead
    of reading a column of every data file. Renamed into place when complete: a worker that
    looks earlier reads the data files, with the same result."""
    ids = pa.table({"id": base.ids()})
    tmp = base.path / (IDS_FILE + ".tmp")
    with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, ids.schema) as writer:
        writer.write_table(ids)
    os.replace(tmp, base.path / IDS_FILE)


# ----------------------------------------------------------------------------- the base: parent minus removals


def _materialise_base(store: Store, scratch: Store, parent: Version, removed_ids: set[str]):
    """Put "parent minus removed_ids" into the scratch store under the parent's own reference,
    plus links to the versions its indexes name as the home of older rows' text. Returns the
    base version and the removed rows ({split: table of the removed rows})."""
    base_dir = scratch.version_dir(parent.dataset, parent.id)
    shutil.rmtree(base_dir, ignore_errors=True)
    (base_dir / "data").mkdir(parents=True)
    shutil.copyfile(parent.path / "manifest.json", base_dir / "manifest.json")
    wanted = pa.array(sorted(removed_ids), pa.string())
    removed: dict[str, list[pa.Table]] = {}
    for split in parent.splits():
        for f in parent.data_files(split):
            if removed_ids:
                ids = pq.read_table(f, columns=[S.ID]).column(S.ID)
                hit = pc.is_in(ids, value_set=wanted)
                if pc.any(hit).as_py():
                    table = pq.read_table(f)
                    removed.setdefault(split, []).append(table.filter(hit))
                    rest = table.filter(pc.invert(hit))
                    if rest.num_rows:
                        codecs, dictionary = published_codecs(rest.schema, text_compression_of(parent.manifest))
                        pq.write_table(rest, base_dir / "data" / f.name, compression=codecs, use_dictionary=dictionary,
                                       row_group_size=65536)
                    continue
            link_file(f, base_dir / "data" / f.name)
    _list_base_files(base_dir, parent)
    origins = set()
    for folder in sorted(p for p in (parent.path / "index").iterdir() if p.is_dir()) if (parent.path / "index").is_dir() else []:
        out = base_dir / "index" / folder.name
        meta_file = folder / "meta.json"
        meta = json.loads(meta_file.read_text()) if meta_file.is_file() else None
        for f in sorted(folder.iterdir()):
            if f.is_file() and f.name != "meta.json":
                link_file(f, out / f.name)
        if meta is None:
            continue
        for part in meta.get("parts", []):
            if part.get("origin") and part["origin"] != parent.ref:
                origins.add(part["origin"])
            if removed_ids:
                path = out / part["file"]
                ids = pq.read_table(path, columns=["id"]).column("id")
                hit = pc.is_in(ids, value_set=wanted)
                if pc.any(hit).as_py():
                    table = pq.read_table(path).filter(pc.invert(hit))
                    path.unlink()
                    pq.write_table(table, path, compression="zstd")
                    part["rows"] = table.num_rows
        meta["rows"] = sum(p["rows"] for p in meta.get("parts", []))
        (out / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    for origin in sorted(origins):
        name, vid = parse_ref(origin)
        dst = scratch.version_dir(name, vid)
        if dst.exists() or not store.has_version(name, vid):
            continue
        src = store.version(name, vid).path  # mirrored first when the store is remote
        if src.is_dir():
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(src, dst)
    base = Version(parent.dataset, parent.id, base_dir)
    return base, {s: pa.concat_tables(t) for s, t in removed.items()}


def _list_base_files(base_dir: Path, parent: Version) -> None:
    """The base's manifest lists its own data files (those rows were taken out of are rewritten,
    or gone), so that every read of the base checks them as a published version's are."""
    manifest = parent.manifest
    files = {rel: e for rel, e in manifest["files"].items() if not rel.startswith("data/")}
    for f in sorted((base_dir / "data").iterdir()):
        rel = f"data/{f.name}"
        src = parent.path / rel
        if rel in manifest["files"] and src.is_file() and os.path.samefile(f, src):
            files[rel] = manifest["files"][rel]
        else:
            files[rel] = {"bytes": f.stat().st_size, "sha256": file_sha256(f), "rows": pq.read_metadata(f).num_rows}
    atomic_write_text(base_dir / "manifest.json", json.dumps({**manifest, "files": files}, indent=2) + "\n")


# ----------------------------------------------------------------------------- the merged version


def _assemble(final: Path, parent: Version, base: Version, added: Version, removed: dict[str, pa.Table],
              removed_ids: list[str], vid: str, remove_file) -> dict:
    pm, am = parent.manifest, added.manifest
    if am["counts"]["kept"] and [c["name"] for c in pm["schema"]] != [c["name"] for c in am["schema"]]:
        raise CorpusmillError(f"the added rows have columns {[c['name'] for c in am['schema']]} but {parent.ref} has "
                              f"{[c['name'] for c in pm['schema']]}: the refresh cannot merge them")
    tag = added.id[:8]
    stage = _remove_stage_name(pm)
    known = {}
    # reuse the checksums of files that are linked, not rewritten: the parent's, and the new run's
    for folder, m in ((parent.path, pm), (added.path, am)):
        for rel, entry in m["files"].items():
            p = folder / rel
            if p.is_file():
                st = p.stat()
                known[(st.st_dev, st.st_ino)] = entry
    files: dict[str, dict] = {}

    def place(src: Path, rel: str, rows_counted: bool) -> None:
        dst = final / rel
        link_file(src, dst)
        st = dst.stat()
        entry = known.get((st.st_dev, st.st_ino))
        if entry is None:
            entry = {"bytes": st.st_size, "sha256": file_sha256(dst)}
            if rows_counted:
                entry["rows"] = pq.read_metadata(dst).num_rows
        files[rel] = entry

    for split in base.splits():
        for f in base.data_files(split):
            place(f, f"data/{f.name}", True)
    for split in added.splits():
        for f in added.data_files(split):
            place(f, f"data/{split}-{tag}_{f.stem.rsplit('-', 1)[1]}.parquet", True)
    for f in parent.reject_files():
        place(f, f"rejects/{f.name}", True)
    for f in added.reject_files():
        st_name, shard = f.stem.rsplit("-", 1)
        place(f, f"rejects/{st_name}-{tag}_{shard}.parquet", True)
    removed_by_split = {}
    for split, table in sorted(removed.items()):
        rej = S.make_rejects(table.append_column(S.SPLIT, pa.array([split] * table.num_rows, pa.string())),
                             stage=stage, reason="removed",
                             detail=f"listed in the --remove file of the refresh of {parent.ref}")
        rel = f"rejects/{stage}-{split}.parquet"
        (final / "rejects").mkdir(parents=True, exist_ok=True)
        pq.write_table(rej, final / rel, compression="zstd")
        files[rel] = {"bytes": (final / rel).stat().st_size, "sha256": file_sha256(final / rel), "rows": rej.num_rows}
        removed_by_split[split] = table.num_rows
    index_names = set()
    for root in (added.path / "index", base.path / "index"):
        if not root.is_dir():
            continue
        for folder in sorted(p for p in root.iterdir() if p.is_dir()):
            if folder.name in index_names:
                continue  # the new run's index already covers the parent's rows
            index_names.add(folder.name)
            for f in sorted(folder.iterdir()):
                if f.is_file():
                    place(f, f"index/{folder.name}/{f.name}", False)
    files = dict(sorted(files.items()))

    n_removed = sum(removed_by_split.values())
    splits: Counter = Counter()
    for rel, entry in files.items():
        if rel.startswith("data/"):
            splits[rel[5:].rsplit("-", 1)[0]] += entry["rows"]
    kept = pm["counts"]["kept"] - n_removed + am["counts"]["kept"]
    if sum(splits.values()) != kept:
        raise RuntimeError(f"refresh: data files hold {sum(splits.values())} rows, expected {kept}")
    labels = _label_counts(pm, am, removed)
    stages = _merge_stages(pm["stages"], am["stages"], stage, n_removed)
    rejected: dict[str, dict] = {}
    for st in stages:
        if st["rejected"]:
            rejected[st["name"]] = dict(sorted(st["rejected"].items()))
    total_in = pm["counts"]["input"] + am["counts"]["input"]
    if total_in != kept + sum(sum(r.values()) for r in rejected.values()):
        raise RuntimeError("refresh: merged counts break input = kept + rejected")
    not_found = len(removed_ids) - n_removed
    return {
        **{k: v for k, v in pm.items() if k not in ("derived",)},
        "version": vid,
        "parent": parent.ref,
        "code_version": __version__,
        "inputs": pm["inputs"] + [{**inp, "added_by_refresh": vid} for inp in am["inputs"]],
        "counts": {"input": total_in, "kept": kept, "rejected": rejected},
        "stages": stages,
        "splits": dict(sorted(splits.items())),
        "label_counts": labels,
        "files": files,
        "refresh": {
            "parent": parent.ref,
            "run_version": added.id,
            "added": {"inputs": am["inputs"], "rows_in": am["counts"]["input"], "kept": am["counts"]["kept"],
                      "rejected": am["counts"]["rejected"], "splits": am["splits"], "stages": am["stages"]},
            "removed": {"rows": n_removed, "by_split": removed_by_split, "ids_listed": len(removed_ids),
                        "ids_not_found": not_found,
                        "ids_file_sha256": file_sha256(remove_file) if remove_file else None},
        },
    }


def _remove_stage_name(pm: dict) -> str:
    names = {st["name"] for st in pm["stages"]}
    k, name = 1, REMOVE_STAGE
    while name in names:
        k += 1
        name = f"{REMOVE_STAGE}_{k}"
    return name


def _merge_stages(parent: list[dict], added: list[dict], stage: str, n_removed: int) -> list[dict]:
    """One chain of stages for the merged version: the added run's stages, then the parent's
    stages the added run does not have (an audit fix, an earlier refresh), then this refresh's
    removal. A side that lacks a stage passes its rows through it, so each stage still receives
    what the one before kept, summed over both sides."""
    by_name = {"parent": {s["name"]: s for s in parent}, "added": {s["name"]: s for s in added}}
    order = [s["name"] for s in added] + [s["name"] for s in parent if s["name"] not in by_name["added"]] + [stage]
    out = []
    carried = {"parent": None, "added": None}
    for name in order:
        merged = {"name": name, "in": 0, "kept": 0, "rejected": {}, "counters": {}}
        for side in ("parent", "added"):
            st = by_name[side].get(name)
            if name == stage and side == "parent":
                rows = carried[side]
                st = {"in": rows, "kept": rows - n_removed, "rejected": {"removed": n_removed} if n_removed else {}}
            elif st is None:
                rows = carried[side] if carried[side] is not None else 0
                st = {"in": rows, "kept": rows, "rejected": {}}
            merged["in"] += st["in"]
            merged["kept"] += st["kept"]
            for reason, n in st["rejected"].items():
                merged["rejected"][reason] = merged["rejected"].get(reason, 0) + n
            carried[side] = st["kept"]
            if side == "added" and "counters" in st:
                merged["counters"] = st["counters"]  # this refresh's run; the parent's are in its manifest
        merged["rejected"] = dict(sorted(merged["rejected"].items()))
        out.append(merged)
    return out


def _label_counts(pm: dict, am: dict, removed: dict[str, pa.Table]) -> dict:
    counts: dict[str, Counter] = {s: Counter(c) for s, c in pm.get("label_counts", {}).items()}
    for s, c in am.get("label_counts", {}).items():
        counts.setdefault(s, Counter()).update(c)
    for s, table in removed.items():
        if S.LABEL in table.column_names:
            counts.setdefault(s, Counter()).subtract("" if x is None else x for x in table.column(S.LABEL).to_pylist())
    return {s: {k: v for k, v in sorted(c.items()) if v} for s, c in sorted(counts.items()) if c}


def describe_refresh(r: dict) -> str:
    """The lineage part of ``datasets diff`` as a few readable lines."""
    rejected = ", ".join(f"{k} {v:,}" for k, v in sorted(r["added_rejected"].items(), key=lambda kv: -kv[1])) or "none"
    splits = ", ".join(f"{s} {n:,}" for s, n in r["added_splits"].items()) or "-"
    return (f"refreshes: {r['refreshes']}; new rows read {r['added_rows_in']:,}, kept {r['added_kept']:,} ({splits}); "
            f"rejected: {rejected}; removed by --remove: {r['removed']:,}")
