"""The versioned dataset store.

::

    <store>/<dataset>/
      refs.json                     tags -> version id ("latest", user tags)
      versions/<version-id>/        immutable once published (atomic rename of a finished folder)
        manifest.json  stats.json
        data/<split>-<shard>.parquet
        rejects/<stage>-<shard>.parquet
        index/<stage>/...
      .work/<version-id>/           a run in progress; never listed, never readable as a version

The store's root is a local folder or a URL of any filesystem fsspec supports (``s3://``,
``gs://``...): see :mod:`corpusmill.remote_store` for how a remote store publishes (manifest
last) and mirrors versions into a local cache, so every reader still works on local files.

A version is addressed as ``NAME@VERSION`` (an id or a unique prefix of one), ``NAME@TAG`` or
``NAME`` alone (= ``NAME@latest``).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from corpusmill import schema as S
from corpusmill.errors import StoreError

LATEST = "latest"


def atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def link_file(src: Path, dst: Path) -> None:
    """Put ``src`` at ``dst`` as a hard link (versions are immutable, so they can share files),
    or as a copy where the filesystem cannot link (another device)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists():
        dst.unlink()
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def link_index_parts(parts: list[dict], folder: Path) -> list[dict]:
    """Link an earlier version's index parts (``{"path", "rows", "origin"}``) into ``folder`` as
    ``inherited-NNNNN.parquet``; returns their entries for the new index's part list."""
    out = []
    for k, p in enumerate(parts):
        name = f"inherited-{k:05d}.parquet"
        link_file(Path(p["path"]), folder / name)
        out.append({"file": name, "rows": p["rows"], "origin": p["origin"]})
    return out


_TEXT_MEMO: dict[str, dict[str, str | None]] | None = None


@contextmanager
def remembered_texts():
    """Within the block, :meth:`Version.texts_by_id` keeps what it read (and what it did not
    find) per version, so the reduce stages of one run that check new rows against the same old
    rows (dedup's verification, split's near twins) scan the old version's data once."""
    global _TEXT_MEMO
    outer = _TEXT_MEMO
    _TEXT_MEMO = {} if outer is None else outer
    try:
        yield
    finally:
        _TEXT_MEMO = outer


def store_location(version: Version) -> str:
    """The store a version was read from, as a user names it: its URL when the store is
    remote (the version's folder is then in the store's local mirror), else its folder."""
    return Store(version.path.parents[2]).location


def parse_ref(ref: str) -> tuple[str, str]:
    """'name@version' -> (name, version); 'name' -> (name, 'latest')."""
    name, _, version = ref.partition("@")
    if not name:
        raise StoreError(f"'{ref}' is not a dataset reference; use NAME, NAME@VERSION or NAME@TAG")
    return name, version or LATEST


#: the ids of a version's rows as one Arrow IPC file, in a version folder that is not published
#: (see :meth:`Version.ids`)
IDS_FILE = "ids.arrow"


def published_codecs(schema: pa.Schema, text_compression: str) -> tuple[dict[str, str], list[str]]:
    """(codec per Parquet column, columns with a dictionary) of a published file: the text in
    ``text_compression`` (``execution.text_compression`` for data files) and without a dictionary
    (it is almost never repeated: Arrow would build one, give up past 1 MB and fall back; reading
    it back is ~15 % faster without), every other column zstd with one."""
    others = list(_dictionary_columns(schema))
    codecs = dict.fromkeys(others, "zstd")
    if S.TEXT in schema.names:
        codecs[S.TEXT] = text_compression
    return codecs, others


def text_compression_of(manifest: dict) -> str:
    """The text codec of a version's data files (zstd in versions from before the setting)."""
    return manifest.get("config", {}).get("execution", {}).get("text_compression", "zstd")


@lru_cache(maxsize=64)
def _dictionary_columns(schema: pa.Schema) -> tuple[str, ...]:
    """The Parquet leaf columns of ``schema`` (``meta.k``, ``tags.list.element``) but the text."""
    buf = pa.BufferOutputStream()
    pq.write_table(schema.empty_table(), buf)
    leaves = pq.read_metadata(pa.BufferReader(buf.getvalue())).schema
    return tuple(path for path in (leaves.column(i).path for i in range(len(leaves)))
                 if path != S.TEXT and not path.startswith(S.TEXT + "."))


@dataclass(frozen=True)
class Version:
    """A published, immutable dataset version."""

    dataset: str
    id: str
    path: Path

    @property
    def ref(self) -> str:
        return f"{self.dataset}@{self.id}"

    @property
    def manifest(self) -> dict:
        return json.loads((self.path / "manifest.json").read_text(encoding="utf-8"))

    @property
    def stats(self) -> dict:
        p = self.path / "stats.json"
        return json.loads(p.read_text(encoding="utf-8")) if p.is_file() else {}

    def splits(self) -> list[str]:
        return list(self.manifest["splits"])

    def data_files(self, split: str) -> list[Path]:
        return sorted((self.path / "data").glob(f"{split}-*.parquet"))

    def reject_files(self) -> list[Path]:
        return sorted((self.path / "rejects").glob("*.parquet"))

    def read_split(self, split: str, columns: list[str] | None = None) -> pa.Table:
        if split not in self.manifest["splits"]:
            raise StoreError(f"{self.ref} has no split '{split}'; splits: {', '.join(self.splits())}")
        files = self.data_files(split)
        if not files:
            return self.schema().empty_table().select(columns) if columns else self.schema().empty_table()
        return pa.concat_tables([pq.read_table(f, columns=columns) for f in files])

    def iter_batches(self, split: str, batch_size: int = 8192, columns: list[str] | None = None) -> Iterator[pa.RecordBatch]:
        for f in self.data_files(split):
            yield from pq.ParquetFile(f).iter_batches(batch_size=batch_size, columns=columns)

    def index_folder(self, kind: str, *, unlabelled: str | None = None) -> Path | None:
        """The first ``index/<stage>/`` folder whose ``meta.json`` names this ``kind`` (a folder
        whose meta.json names none counts as ``unlabelled``: indexes written before kinds were
        recorded); None when there is none."""
        base = self.path / "index"
        if not base.is_dir():
            return None
        for folder in sorted(p for p in base.iterdir() if p.is_dir()):
            meta = folder / "meta.json"
            if meta.is_file() and json.loads(meta.read_text(encoding="utf-8")).get("kind", unlabelled) == kind:
                return folder
        return None

    def ids(self) -> pa.Array:
        """The ids of every row, in split then file order, as one string array. A folder holding
        :data:`IDS_FILE` (refresh writes one into its private copy of the parent, which every
        worker reads) is answered from that file, memory-mapped."""
        from corpusmill.stage import per_shard, read_parquet

        cached = self.path / IDS_FILE
        if cached.is_file():
            return pa.ipc.open_file(pa.memory_map(str(cached))).read_all().column("id").combine_chunks()

        files = [f for split in self.splits() for f in self.data_files(split)]
        columns = per_shard(lambda _, f: read_parquet(f, ["id"]).column("id"), files)
        chunks = [c for col in columns for c in col.chunks]
        # from the chunks: pa.chunked_array() over ChunkedArrays converts row by row (~1 s per 1M ids)
        return pa.chunked_array(chunks, pa.string()).combine_chunks() if chunks else pa.array([], pa.string())

    def texts_by_id(self, ids: list[str]) -> dict[str, str]:
        """{id: text} of the rows among ``ids`` that this version's data files hold. Reads the
        small id column of every file and the text column only of files holding a wanted row.
        Inside :func:`remembered_texts`, ids asked before are answered without reading."""
        key = str(self.path.resolve())
        memo = _TEXT_MEMO.get(key) if _TEXT_MEMO is not None else None
        if memo is not None:
            new = [i for i in dict.fromkeys(ids) if i not in memo]
            if new:
                found = self._read_texts(new)
                memo.update((i, found.get(i)) for i in new)
            return {i: memo[i] for i in ids if memo[i] is not None}
        found = self._read_texts(ids)
        if _TEXT_MEMO is not None:
            _TEXT_MEMO[key] = {**dict.fromkeys(ids), **found}
        return found

    def _read_texts(self, ids: list[str]) -> dict[str, str]:
        import numpy as np
        import pyarrow.compute as pc

        from corpusmill.stage import per_shard, read_parquet

        wanted = pa.array(ids, pa.string())

        def read(_, f: Path):
            ids_here = read_parquet(f, ["id"]).column("id")
            at = np.flatnonzero(pc.is_in(ids_here, value_set=wanted).to_numpy(zero_copy_only=False))
            if not at.size:
                return None
            texts = read_parquet(f, ["text"]).column("text").take(pa.array(at))
            return ids_here.take(pa.array(at)), texts

        found: dict[str, str] = {}
        for got in per_shard(read, [f for split in self.splits() for f in self.data_files(split)]):
            if got is not None:
                found.update(zip(got[0].to_pylist(), got[1].to_pylist()))
        return found

    def read_rejects(self) -> pa.Table | None:
        tables = [pq.read_table(f) for f in self.reject_files()]
        if not tables:
            return None
        return pa.concat_tables(tables, promote_options="permissive")

    def schema(self) -> pa.Schema:
        return pa.schema([pa.field(c["name"], _type_from_str(c["type"])) for c in self.manifest["schema"]])


def _type_from_str(t: str) -> pa.DataType:
    simple = {"string": pa.string(), "large_string": pa.large_string(), "int64": pa.int64(), "int32": pa.int32(),
              "float": pa.float32(), "double": pa.float64(), "bool": pa.bool_(), "binary": pa.binary()}
    if t in simple:
        return simple[t]
    from corpusmill.schema import MESSAGE_TYPE, MESSAGE_TYPE_V1

    for known in (MESSAGE_TYPE, MESSAGE_TYPE_V1):
        if t == str(known):
            return known
    return pa.string()


class Store:
    """A folder of datasets and their versions: a local path, or a URL (``s3://bucket/corpora``)
    whose versions are mirrored into a local cache on first use. ``root`` is always a local
    folder (for a remote store, its mirror, which also holds the work folders of runs);
    ``location`` is what the user named (the URL for a remote store)."""

    def __init__(self, root: str | Path) -> None:
        from corpusmill import fs as fsio
        from corpusmill.remote_store import RemoteStore, mirrored_url

        self.remote: RemoteStore | None = None
        if fsio.is_remote(str(root)):
            self.remote = RemoteStore(str(root))
        else:
            self.root = Path(fsio.local_path(root)).resolve()
            url = mirrored_url(self.root)  # a mirror's path (a run.json records it) opens the remote store
            if url is not None:
                self.remote = RemoteStore(url)
        if self.remote is not None:
            self.root = self.remote.cache

    @property
    def location(self) -> str:
        """The store as a user names it: its URL, or its local folder."""
        return self.remote.url if self.remote is not None else str(self.root)

    def __repr__(self) -> str:
        return f"Store({self.location!r})"

    # -- layout
    def dataset_dir(self, name: str) -> Path:
        return self.root / name

    def version_dir(self, name: str, version_id: str) -> Path:
        return self.root / name / "versions" / version_id

    def work_dir(self, name: str, version_id: str) -> Path:
        return self.root / name / ".work" / version_id

    # -- listing
    def datasets(self) -> list[str]:
        if self.remote is not None:
            return self.remote.datasets()
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if (p / "versions").is_dir())

    def versions(self, name: str) -> list[Version]:
        """Published versions, oldest first. (For a remote store only their manifest and
        stats are mirrored here; :meth:`resolve` and :meth:`version` mirror the data.)"""
        if self.remote is not None:
            found = [Version(name, vid, self.version_dir(name, vid)) for vid in self.remote.published_ids(name)]
        else:
            vdir = self.root / name / "versions"
            if not vdir.is_dir():
                return []
            found = [Version(name, p.name, p) for p in vdir.iterdir() if (p / "manifest.json").is_file()]
        return sorted(found, key=lambda v: (v.stats.get("created_at", ""), v.id))

    def refs(self, name: str) -> dict[str, str]:
        if self.remote is not None:
            return self.remote.refs(name)
        p = self.root / name / "refs.json"
        return json.loads(p.read_text(encoding="utf-8")) if p.is_file() else {}

    def set_ref(self, name: str, tag: str, version_id: str) -> None:
        """Point ``tag`` at a version. On a remote store refs.json is rewritten whole: of two
        runs tagging the same dataset at the same moment, the last writer wins."""
        if "@" in tag or "/" in tag or not tag:
            raise StoreError(f"'{tag}' is not a valid tag: use letters, digits, '.', '_' or '-'")
        refs = self.refs(name)
        refs[tag] = version_id
        if self.remote is not None:
            self.remote.write_refs(name, refs)
            return
        atomic_write_text(self.root / name / "refs.json", json.dumps(refs, indent=2, sort_keys=True) + "\n")

    def has_version(self, name: str, version_id: str) -> bool:
        if self.remote is not None:
            return self.remote.has_version(name, version_id)
        return (self.version_dir(name, version_id) / "manifest.json").is_file()

    def version(self, name: str, version_id: str) -> Version:
        """A published version by its exact id, its files ready to read (mirrored first when
        the store is remote)."""
        if self.remote is not None:
            return Version(name, version_id, self.remote.fetch(name, version_id))
        return Version(name, version_id, self.version_dir(name, version_id))

    # -- addressing
    def resolve(self, ref: str) -> Version:
        name, version = parse_ref(ref)
        exists = bool(self.remote.published_ids(name)) if self.remote is not None else name in self.datasets()
        if not exists:
            known = ", ".join(self.datasets()) or "none"
            raise StoreError(f"no dataset '{name}' in store {self.location} (datasets: {known}); "
                             "pass --store or set CORPUSMILL_STORE to use another store")
        refs = self.refs(name)
        vid = refs.get(version, version)
        if self.has_version(name, vid):
            return self.version(name, vid)
        matches = [v for v in self.versions(name) if v.id.startswith(vid)]
        if len(matches) == 1:
            return self.version(name, matches[0].id)
        if len(matches) > 1:
            raise StoreError(f"'{ref}' is ambiguous: {', '.join(v.id for v in matches)}")
        tags = ", ".join(sorted(refs)) or "none"
        raise StoreError(f"no version or tag '{version}' in dataset '{name}' (tags: {tags}); "
                         f"'corpusmill datasets list' shows the versions")

    # -- publishing
    def publish(self, name: str, version_id: str, staging: Path, remote_sources: dict[str, str] | None = None) -> Version:
        """Move a finished folder into place with one atomic rename (on a remote store: upload
        it, manifest.json last, see :mod:`corpusmill.remote_store`; ``remote_sources``: {file of
        the folder: the same file on the store's filesystem}, copied there instead of uploaded)."""
        if self.remote is not None:
            return Version(name, version_id, self.remote.publish(name, version_id, staging, remote_sources))
        final = self.version_dir(name, version_id)
        final.parent.mkdir(parents=True, exist_ok=True)
        if final.exists():
            shutil.rmtree(staging, ignore_errors=True)
        else:
            os.rename(staging, final)
        return Version(name, version_id, final)
