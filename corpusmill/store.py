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
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from corpusmill import schema as S
from corpusmill.errors import StoreError
from corpusmill.locks import file_in_the_way

LATEST = "latest"


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``path`` whole or not at all: a temporary file beside it, then a rename (a failed
    write, such as a full disk, removes the temporary file and leaves ``path`` as it was)."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


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


MANIFEST = "manifest.json"
#: the keys every reader of a manifest relies on
MANIFEST_KEYS = ("version", "splits", "schema", "counts", "stages")

#: parsed manifests by (path, inode, size, mtime): every read of a version consults its manifest
_MANIFESTS: dict[tuple, dict] = {}
#: files found as their manifest entry says, by (path, inode, size, mtime, entry, sha256 checked)
_CHECKED: set[tuple] = set()


def read_manifest(folder: Path, ref: str) -> dict:
    """The parsed ``manifest.json`` of the version folder ``folder``; a missing, truncated, empty
    or invalid one raises :class:`CorruptVersion` naming it (``ref``: the version as the user
    names it)."""
    path = folder / MANIFEST
    try:
        st = path.stat()
    except OSError:
        raise CorruptVersion(f"{ref}: {MANIFEST} is missing; {_damaged_fix(ref, folder)}") from None
    key = (str(path), st.st_ino, st.st_size, st.st_mtime_ns)
    cached = _MANIFESTS.get(key)
    if cached is not None:
        return cached
    try:
        manifest = json.loads(path.read_bytes())
    except (UnicodeDecodeError, ValueError) as err:
        what = "empty" if st.st_size == 0 else f"not valid JSON ({err})"
        raise CorruptVersion(f"{ref}: {MANIFEST} is {what}; {_damaged_fix(ref, folder)}") from None
    if not isinstance(manifest, dict) or any(k not in manifest for k in MANIFEST_KEYS):
        lacking = [k for k in MANIFEST_KEYS if not isinstance(manifest, dict) or k not in manifest]
        raise CorruptVersion(f"{ref}: {MANIFEST} lacks {', '.join(lacking)}; {_damaged_fix(ref, folder)}")
    if len(_MANIFESTS) > 256:
        _MANIFESTS.clear()
    _MANIFESTS[key] = manifest
    return manifest


def _damaged_fix(ref: str, folder: Path) -> str:
    return (f"the version is damaged ('corpusmill datasets verify {ref}' lists every problem); rebuild it: "
            f"delete {folder} and rerun the command that made it")


class CorruptVersion(StoreError):
    """A published version whose manifest or files are not what was published."""


def file_problem(folder: Path, rel: str, entry: dict, *, checksum: bool) -> str | None:
    """What differs between the file ``rel`` of the version folder ``folder`` and its manifest
    ``entry`` (``{"bytes", "rows", "sha256"}``; ``rows`` for Parquet data and rejects), or None
    when they agree: present, size, row count (the Parquet footer: cheap) and, with
    ``checksum``, the sha256 (reads the whole file). A file found right is remembered until it
    changes (inode, size, mtime), so repeated reads cost one ``stat``."""
    path = folder / rel
    try:
        st = path.stat()
    except OSError:
        rows = f"{entry['rows']:,} rows, " if "rows" in entry else ""
        return f"{rel}: missing (manifest: {rows}{entry.get('bytes', 0):,} bytes)"
    key = (str(path), st.st_ino, st.st_size, st.st_mtime_ns, entry.get("bytes"), entry.get("rows"),
           entry.get("sha256") if checksum else None)
    if key in _CHECKED:
        return None
    if "bytes" in entry and st.st_size != entry["bytes"]:
        return (f"{rel}: {st.st_size:,} bytes, the manifest says {entry['bytes']:,} "
                f"({'truncated' if st.st_size < entry['bytes'] else 'grown'} or replaced after publishing)")
    if "rows" in entry:
        try:
            rows = pq.read_metadata(path).num_rows
        except (pa.ArrowException, OSError) as err:
            return f"{rel}: not a readable Parquet file ({err})"
        if rows != entry["rows"]:
            return f"{rel}: {rows:,} rows, the manifest says {entry['rows']:,} (replaced after publishing)"
    if checksum and entry.get("sha256"):
        from corpusmill.hashing import file_sha256

        digest = file_sha256(path)
        if digest != entry["sha256"]:
            return (f"{rel}: sha256 {digest[:12]}..., the manifest says {entry['sha256'][:12]}... "
                    "(changed after publishing)")
    if len(_CHECKED) > 100_000:
        _CHECKED.clear()
    _CHECKED.add(key)
    return None


@dataclass(frozen=True)
class Version:
    """A published, immutable dataset version.

    Every file a read goes through (:meth:`data_files`, :meth:`reject_files` and what reads
    them) is checked against the manifest first: present, size and row count, and the sha256
    too when ``verify`` is set (or ``$CORPUSMILL_VERIFY=1``). A file that differs raises
    :class:`CorruptVersion` naming it: a damaged version is refused, never half-read."""

    dataset: str
    id: str
    path: Path
    #: also check every file's sha256 before reading it (reads each file once more)
    verify: bool = field(default=False, compare=False)

    @property
    def ref(self) -> str:
        return f"{self.dataset}@{self.id}"

    @property
    def manifest(self) -> dict:
        """The manifest, parsed afresh (callers may change their copy)."""
        read_manifest(self.path, self.ref)  # a clear error for a missing or corrupt one
        return json.loads((self.path / MANIFEST).read_text(encoding="utf-8"))

    @property
    def stats(self) -> dict:
        """stats.json (timings, workers, created_at); {} when absent or unreadable, since nothing
        in a version depends on it (``datasets verify`` reports an unreadable one)."""
        p = self.path / "stats.json"
        try:
            stats = json.loads(p.read_text(encoding="utf-8")) if p.is_file() else {}
        except (OSError, ValueError):
            return {}
        return stats if isinstance(stats, dict) else {}

    def splits(self) -> list[str]:
        return list(read_manifest(self.path, self.ref)["splits"])

    def data_files(self, split: str) -> list[Path]:
        """The Parquet files of ``split`` as the manifest lists them, each checked."""
        return self._checked_files("data/", lambda name: name.rsplit("-", 1)[0] == split,
                                   lambda: (self.path / "data").glob(f"{split}-*.parquet"))

    def reject_files(self) -> list[Path]:
        """The rejects' Parquet files as the manifest lists them, each checked."""
        return self._checked_files("rejects/", lambda name: name.endswith(".parquet"),
                                   lambda: (self.path / "rejects").glob("*.parquet"))

    def check(self) -> None:
        """Check every data and rejects file now (raises :class:`CorruptVersion` on the first
        that differs): for a command that must not start writing from a version it cannot
        finish reading."""
        for split in self.splits():
            self.data_files(split)
        self.reject_files()

    def _checked_files(self, folder: str, wanted, unlisted) -> list[Path]:
        manifest = read_manifest(self.path, self.ref)
        files = manifest.get("files")
        if files is None:  # a version from before manifests listed files: nothing to check against
            return sorted(unlisted())
        checksum = self.verify or os.environ.get("CORPUSMILL_VERIFY") == "1"
        out = []
        for rel in sorted(files):
            if rel.startswith(folder) and "/" not in rel[len(folder):] and wanted(rel[len(folder):]):
                problem = file_problem(self.path, rel, files[rel], checksum=checksum)
                if problem is not None:
                    raise CorruptVersion(f"{self.ref}: {problem}; {_damaged_fix(self.ref, self.path)}")
                out.append(self.path / rel)
        return out

    @contextmanager
    def _reading(self, path: Path) -> Iterator[None]:
        """A Parquet error while reading a file that passed its checks (damage inside a file of
        the right size) is a :class:`CorruptVersion` naming the file, not a traceback."""
        try:
            yield
        except (pa.ArrowException, OSError) as err:
            rel = path.relative_to(self.path) if path.is_relative_to(self.path) else path
            raise CorruptVersion(f"{self.ref}: {rel}: cannot be read ({err}); "
                                 f"{_damaged_fix(self.ref, self.path)}") from None

    def read_split(self, split: str, columns: list[str] | None = None) -> pa.Table:
        if split not in self.splits():
            raise StoreError(f"{self.ref} has no split '{split}'; splits: {', '.join(self.splits())}")
        files = self.data_files(split)
        if not files:
            return self.schema().empty_table().select(columns) if columns else self.schema().empty_table()
        tables = []
        for f in files:
            with self._reading(f):
                tables.append(pq.read_table(f, columns=columns))
        return pa.concat_tables(tables)

    def iter_batches(self, split: str, batch_size: int = 8192, columns: list[str] | None = None) -> Iterator[pa.RecordBatch]:
        for f in self.data_files(split):
            with self._reading(f):
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
        tables = []
        for f in self.reject_files():
            with self._reading(f):
                tables.append(pq.read_table(f))
        if not tables:
            return None
        return pa.concat_tables(tables, promote_options="permissive")

    def schema(self) -> pa.Schema:
        columns = read_manifest(self.path, self.ref)["schema"]
        return pa.schema([pa.field(c["name"], _type_from_str(c["type"])) for c in columns])


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
            blocker = file_in_the_way(self.root)
            if blocker is not None:
                raise StoreError(f"store {self.root}: {blocker} is a file, not a folder; pass --store a folder "
                                 "(or move the file away)")
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
        """{tag: version id} from refs.json; a corrupt refs.json is a StoreError naming it."""
        if self.remote is not None:
            return self.remote.refs(name)
        p = self.root / name / "refs.json"
        if not p.is_file():
            return {}
        try:
            refs = json.loads(p.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, ValueError) as err:
            refs = err
        if not isinstance(refs, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in refs.items()):
            why = f"not valid JSON ({refs})" if isinstance(refs, Exception) else "not a mapping of tag -> version id"
            raise StoreError(f"{p}: {why}; 'corpusmill datasets verify --all' checks the store; fix or delete the "
                             f"file (a run sets 'latest' again, 'corpusmill run --tag' the other tags)")
        return refs

    def set_ref(self, name: str, tag: str, version_id: str) -> None:
        """Point ``tag`` at a version: refs.json is read, changed and replaced (write a temporary
        file, then rename) under ``.locks/refs.lock``, so tags set by concurrent runs on this
        machine are all kept. On a remote store refs.json is rewritten whole: of two machines
        tagging the same dataset at the same moment, the last writer wins."""
        from corpusmill import locks

        if "@" in tag or "/" in tag or not tag:
            raise StoreError(f"'{tag}' is not a valid tag: use letters, digits, '.', '_' or '-'")
        with locks.hold(locks.lock_path(self.dataset_dir(name), "refs"), what=f"updating {name}'s tags",
                        store=self.location, quiet=True):
            refs = self.refs(name)
            refs[tag] = version_id
            if self.remote is not None:
                self.remote.write_refs(name, refs)
                return
            try:
                atomic_write_text(self.root / name / "refs.json", json.dumps(refs, indent=2, sort_keys=True) + "\n")
            except OSError as err:
                raise locks.store_path_error(err, self.location) from None

    @contextmanager
    def building(self, name: str, lock_name: str, *, quiet: bool = False) -> Iterator[None]:
        """Hold the lock of the version ``lock_name`` of ``name`` (a version id, or
        ``refresh-<key>``) while it is built and published: a second process building the same
        version waits here, then finds it published (see :mod:`corpusmill.locks`). Also where a
        store that cannot be written (read-only, a file in the way, no space) is found: before
        any work."""
        from corpusmill import locks

        with locks.hold(locks.lock_path(self.dataset_dir(name), lock_name), what=f"building {name}@{lock_name}",
                        store=self.location, quiet=quiet):
            yield

    def has_version(self, name: str, version_id: str) -> bool:
        if self.remote is not None:
            return self.remote.has_version(name, version_id)
        return (self.version_dir(name, version_id) / "manifest.json").is_file()

    def version(self, name: str, version_id: str, *, verify: bool = False) -> Version:
        """A published version by its exact id, its files ready to read (mirrored first when
        the store is remote); ``verify``: its reads check sha256s too (see :class:`Version`)."""
        if self.remote is not None:
            return Version(name, version_id, self.remote.fetch(name, version_id), verify)
        return Version(name, version_id, self.version_dir(name, version_id), verify)

    # -- addressing
    def resolve(self, ref: str, *, verify: bool = False) -> Version:
        """The version ``ref`` names (``NAME``, ``NAME@TAG``, ``NAME@ID`` or a unique prefix of an
        id); ``verify``: its reads check every file's sha256 too."""
        name, version = parse_ref(ref)
        exists = bool(self.remote.published_ids(name)) if self.remote is not None else name in self.datasets()
        if not exists:
            known = ", ".join(self.datasets()) or "none"
            raise StoreError(f"no dataset '{name}' in store {self.location} (datasets: {known}); "
                             "pass --store or set CORPUSMILL_STORE to use another store")
        refs = self.refs(name)
        vid = refs.get(version, version)
        if self.has_version(name, vid):
            return self.version(name, vid, verify=verify)
        matches = [v for v in self.versions(name) if v.id.startswith(vid)]
        if len(matches) == 1:
            return self.version(name, matches[0].id, verify=verify)
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
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            if final.exists():
                shutil.rmtree(staging, ignore_errors=True)
            else:
                os.rename(staging, final)
        except OSError as err:
            if final.is_dir() and (final / MANIFEST).is_file():  # published meanwhile by a process that held no lock
                shutil.rmtree(staging, ignore_errors=True)
            else:
                from corpusmill.locks import store_path_error

                raise store_path_error(err, self.location) from None
        return Version(name, version_id, final)


# ----------------------------------------------------------------------------- checking a whole store


@dataclass
class Finding:
    """One thing ``datasets verify`` found: ``where`` is a dataset, a version (``NAME@ID``) or a
    path inside the store; ``error`` findings are damage (exit 1), the others are notes (a run in
    progress, the leftovers of a run that died: a rerun resumes or removes them)."""

    where: str
    problem: str
    error: bool = True


@dataclass
class StoreCheck:
    """What :func:`verify_store` checked and found."""

    store: str
    checksums: bool
    datasets: int = 0
    versions: int = 0
    files: int = 0
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(f.error for f in self.findings)

    def as_json(self) -> dict:
        return {"store": self.store, "ok": self.ok, "checksums": self.checksums,
                "checked": {"datasets": self.datasets, "versions": self.versions, "files": self.files},
                "errors": [{"where": f.where, "problem": f.problem} for f in self.findings if f.error],
                "notes": [{"where": f.where, "problem": f.problem} for f in self.findings if not f.error]}


def verify_store(store: Store, ref: str | None = None, *, checksums: bool = True) -> StoreCheck:
    """Check the version ``ref`` (with its dataset's refs.json), or with ``ref=None`` every
    dataset of the store, as ``git fsck`` checks a repository: every manifest parses and names
    its own version; every file it lists is present with its size, Parquet row count and (with
    ``checksums``) sha256; the data files hold the rows the manifest gives each split; no file
    was added to data/, rejects/ or index/ after publishing; refs.json parses and every tag
    points at a published version; no version folder lacks its manifest (a half-published
    version). Work folders of runs in progress or of runs that died are reported as notes."""
    check = StoreCheck(store.location, checksums)
    if ref is not None:
        version = store.resolve(ref)
        names = [version.dataset]
        only = version.id
    else:
        names = _dataset_names(store)
        only = None
    for name in names:
        check.datasets += 1
        _check_refs(store, name, check)
        for vid in _version_ids(store, name):
            if only is None or vid == only:
                check.versions += 1
                _check_version(store, name, vid, check)
        if only is None:
            _check_leftovers(store, name, check)
    return check


def _dataset_names(store: Store) -> list[str]:
    if store.remote is not None:
        return store.remote.datasets()
    if not store.root.is_dir():
        return []
    return sorted(p.name for p in store.root.iterdir()
                  if p.is_dir() and not p.name.startswith(".") and ((p / "versions").is_dir() or (p / "refs.json").exists()))


def _version_ids(store: Store, name: str) -> list[str]:
    """Every folder under versions/ (a local store), published or not; a remote store's
    published versions (a folder there without a manifest is an upload in progress or killed)."""
    if store.remote is not None:
        return store.remote.published_ids(name)
    vdir = store.root / name / "versions"
    return sorted(p.name for p in vdir.iterdir() if p.is_dir()) if vdir.is_dir() else []


def _check_refs(store: Store, name: str, check: StoreCheck) -> None:
    try:
        refs = store.refs(name)
    except StoreError as err:
        check.findings.append(Finding(name, str(err)))
        return
    for tag, vid in sorted(refs.items()):
        if not store.has_version(name, vid):
            check.findings.append(Finding(f"{name}", f"refs.json: tag '{tag}' points at '{vid}', which is not a "
                                                     f"published version; 'corpusmill run --tag {tag}' (or a rerun, "
                                                     "for latest) sets it again"))


def _check_version(store: Store, name: str, vid: str, check: StoreCheck) -> None:
    ref = f"{name}@{vid}"
    folder = store.version_dir(name, vid)
    if store.remote is not None:
        try:
            folder = store.remote.fetch(name, vid)  # downloads once, each file checked against its sha256
        except StoreError as err:
            check.findings.append(Finding(ref, str(err)))
            return
    elif not (folder / MANIFEST).exists():
        check.findings.append(Finding(ref, f"versions/{vid} has no {MANIFEST}: half-published or damaged; delete "
                                           f"{folder} and rerun the command that made it"))
        return
    try:
        manifest = read_manifest(folder, ref)
    except CorruptVersion as err:
        check.findings.append(Finding(ref, str(err).removeprefix(f"{ref}: ")))
        return
    if manifest.get("version") != vid:
        check.findings.append(Finding(ref, f"{MANIFEST} names version '{manifest.get('version')}', not '{vid}'"))
    files = manifest.get("files")
    if files is None:
        check.findings.append(Finding(ref, f"{MANIFEST} lists no files (a version from before checksums were "
                                           "recorded): its files were not checked", error=False))
        return
    rows: dict[str, int] = {}
    for rel, entry in sorted(files.items()):
        check.files += 1
        problem = file_problem(folder, rel, entry, checksum=check.checksums)
        if problem is not None:
            check.findings.append(Finding(ref, problem))
        elif rel.startswith("data/") and "rows" in entry:
            split = rel[len("data/"):].rsplit("-", 1)[0]
            rows[split] = rows.get(split, 0) + entry["rows"]
    damaged = any(f.where == ref and f.error for f in check.findings)
    for split, n in manifest["splits"].items():
        if not damaged and rows.get(split, 0) != n:
            check.findings.append(Finding(ref, f"split '{split}': its data files hold {rows.get(split, 0):,} rows, "
                                               f"the manifest says {n:,}"))
    for sub in ("data", "rejects", "index"):
        for p in sorted((folder / sub).rglob("*")) if (folder / sub).is_dir() else []:
            rel = str(p.relative_to(folder))
            if p.is_file() and rel not in files:
                leftover = p.name.startswith(".") and (".tmp" in p.name or ".part-" in p.name)
                check.findings.append(Finding(ref, f"{rel}: not in the manifest ("
                                                   + ("a temporary file a killed write left; delete it)" if leftover
                                                      else "added after publishing; reads ignore it)"),
                                              error=not leftover))
    stats = folder / "stats.json"
    if stats.is_file():
        try:
            json.loads(stats.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            check.findings.append(Finding(ref, f"stats.json: unreadable ({err}); only timings are lost", error=False))


def _check_leftovers(store: Store, name: str, check: StoreCheck) -> None:
    """Work folders under ``.work/`` (a run in progress holds its lock; one that holds none died
    or failed) and temporary files of a killed refs.json update."""
    from corpusmill import locks

    base = store.dataset_dir(name)
    work = base / ".work"
    for folder in sorted(p for p in work.iterdir() if p.is_dir()) if work.is_dir() else []:
        lock = locks.lock_path(base, folder.name)
        if locks.is_held(lock):
            pid = locks.holder_pid(lock)
            check.findings.append(Finding(f"{name}/.work/{folder.name}", "a run in progress"
                                          + (f" (process {pid})" if pid else ""), error=False))
        else:
            check.findings.append(Finding(f"{name}/.work/{folder.name}",
                                          "an unfinished run (no process holds its lock: killed or failed); rerun "
                                          "the same command to resume it, or delete the folder", error=False))
    for p in sorted(base.glob(".refs.json.tmp-*")) if base.is_dir() else []:
        check.findings.append(Finding(f"{name}/{p.name}", "a temporary file a killed tag update left; delete it",
                                      error=False))
