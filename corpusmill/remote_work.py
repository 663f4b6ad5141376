"""A run's work folder on the store's object store, for executors whose tasks run on machines
that share no filesystem (the Ray executor on a cluster).

With a local store the work folder (``<store>/<dataset>/.work/<id>/``) is a local folder that
every process of the run reads and writes. With a remote store and the Ray executor it lives on
the store's filesystem instead, at ``<store-url>/<dataset>/.work/<id>/``, and every process
works on a *local folder with the same layout* that holds only what it needs:

* a map task (one shard through one segment) fetches what it reads (the previous segment's
  rows of its shard, its shard's decision), runs the unchanged runner code against a scratch
  folder on its own node (:meth:`RemoteWork.shard_scratch`), uploads every file it wrote, and
  removes the scratch folder;
* the driver writes the shards' markers on the remote side (a marker is written after the
  files it vouches for, so on resume a marker on the remote means a finished shard), opens the
  facts and rows files a reduce stage reads as :class:`WorkFile` (fetched the first time the
  stage opens one), uploads the decisions and the index it wrote, and at the end fetches the
  ``final/`` folder for the manifest and the report.

Nothing here is used when the store is local: the runner's files are plain paths then.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from corpusmill import fs as fsio


class RemoteWork:
    """The work folder at ``url`` and its local counterpart ``local`` (same layout, relative
    paths with ``/``). Picklable: a task gets the URL and opens the filesystem on its node."""

    def __init__(self, url: str, local: Path) -> None:
        self.url = fsio.normalize_url(url)
        self.local = Path(local)
        self._fs = None

    def __getstate__(self) -> dict:
        return {"url": self.url, "local": self.local, "_fs": None}

    def __repr__(self) -> str:
        return f"RemoteWork({self.url!r}, local={str(self.local)!r})"

    @property
    def fs(self):
        """This folder's own filesystem object, without a listings cache: other machines write
        here, and fsspec's cache of a folder's listing would hide their files (a cached listing
        of a parent outlives an invalidation of the folder)."""
        if self._fs is None:
            from fsspec.core import url_to_fs

            with fsio.remote_errors(self.url, "cannot open the filesystem"):
                try:
                    self._fs, base = url_to_fs(self.url, use_listings_cache=False, skip_instance_cache=True)
                except ImportError as err:
                    raise fsio.missing_backend(self.url, err) from None
            self._base = base.rstrip("/")
        return self._fs

    def path(self, rel: str) -> str:
        """The filesystem path (no protocol) of ``rel`` inside the remote work folder."""
        self.fs  # noqa: B018 - opens the filesystem, which sets the base path
        return f"{self._base}/{rel}" if rel else self._base

    def url_of(self, rel: str) -> str:
        return f"{self.url}/{rel}"

    def rel(self, local_path: Path) -> str:
        """The relative name of a file under the local folder."""
        return Path(local_path).relative_to(self.local).as_posix()

    # -- single files
    def exists(self, rel: str) -> bool:
        with fsio.remote_errors(self.url_of(rel)):
            return bool(self.fs.exists(self.path(rel)))

    def read_text(self, rel: str) -> str:
        with fsio.remote_errors(self.url_of(rel)):
            return self.fs.cat_file(self.path(rel)).decode("utf-8")

    def write_text(self, rel: str, text: str) -> None:
        """One object written whole (an object store has no half-written object to see)."""
        with fsio.remote_errors(self.url_of(rel), "cannot write"):
            self.fs.pipe_file(self.path(rel), text.encode("utf-8"))

    def fetch(self, rel: str, into: Path | None = None) -> bool:
        """Download ``rel`` to the same place under ``into`` (default: the local folder),
        replacing what is there; False when the remote has no such file."""
        dest = (into or self.local) / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.part-{os.getpid()}-{threading.get_ident()}")
        try:
            with fsio.remote_errors(self.url_of(rel), passthrough=(FileNotFoundError,)):
                self.fs.get_file(self.path(rel), str(tmp))
        except FileNotFoundError:
            tmp.unlink(missing_ok=True)
            return False
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        os.replace(tmp, dest)
        return True

    def push(self, rel: str, source: Path | None = None) -> None:
        """Upload the local file ``rel`` (or ``source``) to ``rel`` on the remote."""
        src = source if source is not None else self.local / rel
        with fsio.remote_errors(self.url_of(rel), "cannot upload"):
            self.fs.put_file(str(src), self.path(rel))

    def copy(self, src_rel: str, dst_rel: str) -> None:
        """A remote file copied on the remote side (S3 ``CopyObject``): no bytes through here."""
        with fsio.remote_errors(self.url_of(dst_rel), "cannot copy"):
            self.fs.copy(self.path(src_rel), self.path(dst_rel))

    def num_rows(self, rel: str) -> int:
        """Rows of a remote Parquet file, from its footer (a ranged read, not the file)."""
        import pyarrow.parquet as pq

        with fsio.remote_errors(self.url_of(rel)):
            with self.fs.open(self.path(rel), "rb") as f:
                return pq.read_metadata(f).num_rows

    # -- folders
    def listing(self, folder: str) -> list[str]:
        """Relative names of every file under ``folder`` (recursively), sorted; [] when none.
        Always a fresh listing: other machines write here."""
        return sorted(self._sizes(folder))

    def _sizes(self, folder: str) -> dict[str, int]:
        root = self.path(folder)
        with fsio.remote_errors(self.url_of(folder), "cannot list"):
            try:
                found = self.fs.find(root, detail=True)
            except FileNotFoundError:
                return {}
        base = self.path("")
        return {p[len(base) + 1:]: int(info.get("size") or 0) for p, info in found.items()
                if info.get("type", "file") == "file"}

    def fetch_tree(self, folder: str, keep_present: bool = False) -> list[str]:
        """Download every file under ``folder`` into the local folder; returns their names.
        ``keep_present``: a local file of the same size is taken to be the same file (one this
        process uploaded) and is not downloaded again."""
        sizes = self._sizes(folder)
        for rel, size in sorted(sizes.items()):
            local = self.local / rel
            if keep_present and local.is_file() and local.stat().st_size == size:
                continue
            self.fetch(rel)
        return sorted(sizes)

    def push_tree(self, folder: str) -> list[str]:
        """Upload every file under the local ``folder``; returns their names."""
        root = self.local / folder
        names = sorted(self.rel(p) for p in root.rglob("*") if p.is_file()) if root.is_dir() else []
        for rel in names:
            self.push(rel)
        return names

    def remove(self, folder: str = "") -> None:
        """Delete ``folder`` (default: the whole work folder) on the remote."""
        root = self.path(folder)
        with fsio.remote_errors(self.url_of(folder), "cannot delete"):
            if self.fs.exists(root):
                self.fs.rm(root, recursive=True)

    # -- a task's scratch folder
    @contextmanager
    def shard_scratch(self, reads: list[str]) -> Iterator[Path]:
        """A fresh node-local folder with the work folder's layout, holding the files ``reads``
        that exist on the remote. When the block ends normally, every file written into it
        (not the ones fetched) is uploaded, then the folder is removed; on an error nothing is
        uploaded (the shard has no marker, so a rerun runs it again)."""
        from corpusmill.remote_store import cache_base

        base = cache_base() / "scratch"
        base.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix="work-", dir=base))
        try:
            fetched = {rel for rel in reads if self.fetch(rel, into=scratch)}
            yield scratch
            written = sorted(p.relative_to(scratch).as_posix() for p in scratch.rglob("*") if p.is_file())
            for rel in written:
                if rel not in fetched:
                    self.push(rel, scratch / rel)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)


class WorkFile(os.PathLike):
    """A file of the remote work folder that the driver opens like a local path: the first
    ``os.fspath`` (what ``pyarrow.parquet`` and ``open`` call) downloads it into the local
    folder. A reduce stage therefore fetches only the files it really opens (dedup's
    verification reads the rows files of shards with candidate pairs only), and a grouping
    engine that runs elsewhere reads :attr:`url` instead."""

    def __init__(self, work: RemoteWork, rel: str) -> None:
        self.work, self.rel = work, rel
        self._lock = threading.Lock()
        self._fetched = False

    @property
    def url(self) -> str:
        return self.work.url_of(self.rel)

    @property
    def name(self) -> str:
        return self.rel.rsplit("/", 1)[-1]

    def __fspath__(self) -> str:
        with self._lock:
            if not self._fetched:
                if not self.work.fetch(self.rel):
                    raise FileNotFoundError(f"{self.url}: the work folder has no such file")
                self._fetched = True
        return str(self.work.local / self.rel)

    def __str__(self) -> str:
        return self.url

    def __repr__(self) -> str:
        return f"WorkFile({self.url!r})"

    def __reduce__(self):
        return (WorkFile, (self.work, self.rel))
