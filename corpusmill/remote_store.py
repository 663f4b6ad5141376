"""The dataset store on an object store or any other fsspec filesystem (``s3://``, ``gs://``...).

Object stores have no atomic rename, so a version is published by uploading every file of its
finished folder and ``manifest.json`` last: **a version exists iff its manifest exists**.
Listing and resolving look for the manifest and ignore a folder without one (a publish that is
running or was killed). ``refs.json`` is rewritten after the upload. The locks of
:mod:`corpusmill.locks` (a version being built, refs.json being rewritten) live in the local
mirror: they keep apart the processes of one machine only. Two machines building the same
version at once both build and upload it (the same data files: a version's id and bytes follow
from its inputs and config; stats.json is the last upload's), and of two machines setting tags
of the same dataset at the same moment, the last writer wins.

Everything that reads a version (stages, audit, export, the trainer) works on local files: the
store keeps a read-through mirror in a local cache (:func:`cache_root`), laid out like a local
store. A version's files are downloaded on first use and checked against the sha256 its
manifest records; versions are immutable, so the mirror never goes stale. Refs are always read
from the remote. The mirror also holds the runs' work folders (``<dataset>/.work/<id>``), so a
local run writes locally and uploads once, and the version it publishes is moved into the
mirror rather than downloaded again. (A Ray run's work folder is on the remote instead, whose
tasks may run on other machines: :mod:`corpusmill.remote_work`.)
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

from corpusmill import fs as fsio
from corpusmill.errors import StoreError
from corpusmill.hashing import file_sha256

#: file at the root of a mirror naming the remote store it mirrors; a dataset name cannot start
#: with a dot, so it never collides with a dataset folder
MARKER = ".corpusmill-remote.json"
MANIFEST = "manifest.json"


def cache_base() -> Path:
    """``$CORPUSMILL_CACHE``, else ``$XDG_CACHE_HOME/corpusmill``, else ``~/.cache/corpusmill``."""
    if os.environ.get("CORPUSMILL_CACHE"):
        return Path(os.environ["CORPUSMILL_CACHE"]).expanduser().resolve()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache").expanduser().resolve() / "corpusmill"


def cache_root(url: str) -> Path:
    """The mirror of the store at ``url``: ``<cache base>/stores/<16 hex of sha256(url)>``."""
    return cache_base() / "stores" / hashlib.sha256(fsio.normalize_url(url).encode()).hexdigest()[:16]


def mirrored_url(folder: Path) -> str | None:
    """The URL of the remote store whose mirror ``folder`` is, or None for an ordinary folder."""
    marker = folder / MARKER
    if not marker.is_file():
        return None
    return json.loads(marker.read_text(encoding="utf-8"))["url"]


class RemoteStore:
    """The remote side of a :class:`~corpusmill.store.Store` whose root is a URL."""

    def __init__(self, url: str) -> None:
        self.url = fsio.normalize_url(url)
        self.fs, self.base = fsio.filesystem(self.url)
        self.base = self.base.rstrip("/")
        self.cache = cache_root(self.url)
        marker = self.cache / MARKER
        if not marker.is_file():
            self.cache.mkdir(parents=True, exist_ok=True)
            tmp = marker.with_name(f"{MARKER}.tmp-{os.getpid()}")
            tmp.write_text(json.dumps({"url": self.url}) + "\n", encoding="utf-8")
            os.replace(tmp, marker)

    def __repr__(self) -> str:
        return f"RemoteStore({self.url!r}, cache={str(self.cache)!r})"

    # -- addresses
    def _path(self, *parts: str) -> str:
        return "/".join([self.base, *parts])

    def _url(self, *parts: str) -> str:
        return "/".join([self.url, *parts])

    def _cached(self, name: str, vid: str) -> Path:
        return self.cache / name / "versions" / vid

    def _fetched_marker(self, name: str, vid: str) -> Path:
        return self.cache / name / ".fetched" / vid

    def _listdirs(self, path: str, url: str) -> list[str]:
        """Names of the folders directly under ``path`` (fresh: never a cached listing)."""
        with fsio.remote_errors(url, "cannot list"):
            self.fs.invalidate_cache(path)
            try:
                entries = self.fs.ls(path, detail=True)
            except FileNotFoundError:
                return []
        return sorted(e["name"].rstrip("/").rsplit("/", 1)[-1] for e in entries if e.get("type") == "directory")

    # -- listing
    def datasets(self) -> list[str]:
        return [n for n in self._listdirs(self.base, self.url) if not n.startswith(".") and self.published_ids(n)]

    def published_ids(self, name: str) -> list[str]:
        """Ids of the versions of ``name`` whose manifest exists; their manifest and stats.json
        are put into the mirror (a few KB each; data files wait until a version is used)."""
        ids = []
        for vid in self._listdirs(self._path(name, "versions"), self._url(name, "versions")):
            if self._fetch_head(name, vid):
                ids.append(vid)
        return ids

    def has_version(self, name: str, vid: str) -> bool:
        if (self._cached(name, vid) / MANIFEST).is_file():
            return True
        with fsio.remote_errors(self._url(name, "versions", vid, MANIFEST)):
            return bool(self.fs.exists(self._path(name, "versions", vid, MANIFEST)))

    def _fetch_head(self, name: str, vid: str) -> bool:
        """Mirror a version's manifest.json and stats.json; False when it has no manifest."""
        dest = self._cached(name, vid)
        if (dest / MANIFEST).is_file():
            return True
        try:
            self._download(name, vid, "stats.json", None)
        except FileNotFoundError:
            pass
        try:
            self._download(name, vid, MANIFEST, None)  # last: a mirrored manifest means "head complete"
        except FileNotFoundError:
            return False
        return True

    # -- refs
    def refs(self, name: str) -> dict[str, str]:
        url = self._url(name, "refs.json")
        with fsio.remote_errors(url):
            try:
                return json.loads(self.fs.cat_file(self._path(name, "refs.json")))
            except FileNotFoundError:
                return {}

    def write_refs(self, name: str, refs: dict[str, str]) -> None:
        """Rewrite refs.json whole; concurrent writers: the last one wins."""
        data = (json.dumps(refs, indent=2, sort_keys=True) + "\n").encode()
        with fsio.remote_errors(self._url(name, "refs.json"), "cannot write"):
            self.fs.pipe_file(self._path(name, "refs.json"), data)

    # -- reading a version
    def fetch(self, name: str, vid: str) -> Path:
        """Mirror every file of a published version (once) and return its local folder. Files
        the manifest lists are checked against their sha256 and size before they are used."""
        dest = self._cached(name, vid)
        done = self._fetched_marker(name, vid)
        if done.is_file():
            return dest
        if not self._fetch_head(name, vid):
            raise StoreError(f"{self._url(name, 'versions', vid)}: no such version (no manifest.json)")
        manifest = json.loads((dest / MANIFEST).read_text(encoding="utf-8"))
        expected = manifest.get("files", {})
        root = self._path(name, "versions", vid)
        with fsio.remote_errors(self._url(name, "versions", vid), "cannot list"):
            self.fs.invalidate_cache(root)
            listed = [p[len(root) + 1:] for p in self.fs.find(root)]
        missing = sorted(set(expected) - set(listed))
        if missing:
            raise StoreError(f"{self._url(name, 'versions', vid)}: its manifest lists files the store does not hold: "
                             f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")
        for rel in sorted(listed):
            if rel == MANIFEST or (dest / rel).is_file():
                continue  # mirrored files were checked when they arrived
            self._download(name, vid, rel, expected.get(rel))
        done.parent.mkdir(parents=True, exist_ok=True)
        done.write_text(vid + "\n", encoding="utf-8")
        return dest

    def _download(self, name: str, vid: str, rel: str, entry: dict | None) -> None:
        """One file into the mirror, under a temporary name until its checksum is right.
        Raises FileNotFoundError when the remote file does not exist."""
        dest = self._cached(name, vid) / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.part-{os.getpid()}")
        url = self._url(name, "versions", vid, rel)
        try:
            with fsio.remote_errors(url, passthrough=(FileNotFoundError,)):
                self.fs.get_file(self._path(name, "versions", vid, rel), str(tmp))
            if entry is not None:
                size, digest = tmp.stat().st_size, file_sha256(tmp)
                if size != entry["bytes"] or digest != entry["sha256"]:
                    raise StoreError(f"{url}: {size} bytes with sha256 {digest[:12]}..., the manifest says "
                                     f"{entry['bytes']} bytes and {entry['sha256'][:12]}...; the remote file was "
                                     "changed after publishing or the download is corrupt")
            os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)

    # -- publishing
    def publish(self, name: str, vid: str, staging: Path, sources: dict[str, str] | None = None) -> Path:
        """Upload a finished version folder, manifest.json last, then move the folder into the
        mirror (it is what was uploaded: nothing to download again). Returns the mirror folder.
        ``sources``: {relative path: path on this filesystem} of staged files that are copies of
        remote files (a Ray run's remote work folder): copied on the remote side, not uploaded."""
        dest = self._cached(name, vid)
        if self.has_version(name, vid):
            shutil.rmtree(staging, ignore_errors=True)
            return self.fetch(name, vid)
        files = sorted(str(p.relative_to(staging)) for p in staging.rglob("*") if p.is_file())
        if MANIFEST not in files:
            raise StoreError(f"{staging}: no {MANIFEST}; refusing to publish an unfinished version")
        files.remove(MANIFEST)
        copies = self._remote_twins(name, staging, files)
        copies.update({rel: src for rel, src in (sources or {}).items() if rel in files})
        for rel in [*files, MANIFEST]:
            target = self._path(name, "versions", vid, rel)
            with fsio.remote_errors(self._url(name, "versions", vid, rel), "cannot upload"):
                if rel in copies:
                    self.fs.copy(copies[rel], target)  # server-side where the filesystem offers it
                else:
                    self.fs.put_file(str(staging / rel), target)
        if dest.exists():
            shutil.rmtree(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.rename(staging, dest)
        marker = self._fetched_marker(name, vid)
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(vid + "\n", encoding="utf-8")
        return dest

    def _remote_twins(self, name: str, staging: Path, files: list[str]) -> dict[str, str]:
        """{relative path: remote path} of staged files that are hard links to a mirrored file
        of an earlier version (a refresh links its parent's files): those are copied on the
        remote side instead of uploaded again."""
        linked = {}
        for rel in files:
            st = (staging / rel).stat()
            if st.st_nlink > 1:
                linked[(st.st_dev, st.st_ino)] = rel
        if not linked:
            return {}
        twins: dict[str, str] = {}
        versions = self.cache / name / "versions"
        for folder in sorted(versions.iterdir()) if versions.is_dir() else []:
            if not self._fetched_marker(name, folder.name).is_file():
                continue
            for p in folder.rglob("*"):
                if p.is_file():
                    st = p.stat()
                    rel = linked.get((st.st_dev, st.st_ino))
                    if rel is not None and rel not in twins:
                        twins[rel] = self._path(name, "versions", folder.name, str(p.relative_to(folder)))
        return twins
