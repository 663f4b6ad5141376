"""File locks that keep runs, refreshes and tag updates on one store apart.

Two kinds of lock live in ``<store>/<dataset>/.locks/``:

- ``<version-id>.lock`` (``refresh-<key>.lock`` for a refresh) is held while a version is built
  and published. A second run of the same pipeline waits for it, then finds the version
  published and reuses it: it never resumes or shares the work folder of a run that is alive.
  A run that died (killed, crashed) holds nothing any more: the next run takes the lock and
  resumes the finished shards.
- ``refs.lock`` is held while ``refs.json`` is read, changed and replaced, so tags set by
  concurrent runs are all kept (before: the last writer won).

The locks are ``flock(2)`` locks: the kernel releases them when the process ends, however it
ends, so a stale lock file is harmless (lock files are never deleted: deleting one that another
process is waiting on would let two holders in). They hold between processes of one machine and,
on Linux, on NFS (flock is emulated with POSIX locks there). A remote (fsspec) store keeps its
lock files in its local mirror: runs on one machine are kept apart; runs on different machines
are not (see :mod:`corpusmill.remote_store`). Where ``fcntl`` does not exist (Windows) nothing is
locked.
"""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from corpusmill.errors import StoreError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no advisory locks, see the module docstring
    fcntl = None  # type: ignore[assignment]

LOCKS = ".locks"


def lock_path(dataset_dir: Path, name: str) -> Path:
    """``<dataset_dir>/.locks/<name>.lock``."""
    return dataset_dir / LOCKS / f"{name}.lock"


@contextmanager
def hold(path: Path, *, what: str, store: str, quiet: bool = False) -> Iterator[None]:
    """Hold the exclusive lock ``path`` for the block. When another process holds it, say so on
    stderr once (unless ``quiet``: tag updates take milliseconds) and wait. ``what`` names what is
    locked in that message ("the build of demo@1a2b..."); ``store``: the store as the user names
    it, for the message when the lock file cannot be created (a read-only store...)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as err:
        raise store_path_error(err, store) from None
    try:
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if not quiet:
                    holder = holder_pid(path)
                    by = f" (process {holder})" if holder else ""
                    print(f"corpusmill: waiting for another process{by} to finish {what}", file=sys.stderr, flush=True)
                fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


def is_held(path: Path) -> bool:
    """True while a live process holds the lock ``path`` (for ``datasets verify``: a work folder
    whose lock is held belongs to a run in progress, not to one that died)."""
    if fcntl is None or not path.is_file():
        return False
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def holder_pid(path: Path) -> int | None:
    """The process id the holder of ``path`` wrote into it (None when unknown)."""
    try:
        text = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() else None


#: what an OSError on a store path means, and how to fix it
_STORE_PATH_PROBLEMS = {
    errno.EROFS: "is on a read-only filesystem",
    errno.EACCES: "is not writable (permission denied)",
    errno.EPERM: "is not writable (operation not permitted)",
    errno.ENOSPC: "has no space left on its device",
    errno.EDQUOT: "is over its disk quota",
    errno.ENOTDIR: "is not a folder",
    errno.EEXIST: "is not a folder",
}


def store_path_error(err: OSError, store: str) -> StoreError:
    """One line for an OSError met while writing into the store ``store``: what is wrong with
    which path, and the fix (``--store`` elsewhere, or the permissions)."""
    where = err.filename or store
    problem = _STORE_PATH_PROBLEMS.get(err.errno)
    if err.errno in (errno.ENOTDIR, errno.EEXIST):
        blocker = file_in_the_way(Path(str(where)))
        if blocker is not None:
            return StoreError(f"store {store}: {blocker} is a file, not a folder; pass --store a folder "
                              "(or move the file away)")
    if problem is None:
        return StoreError(f"store {store}: cannot write {where}: {err.strerror or err}")
    fix = (f"free some space or pass --store a folder on another disk ({errno.errorcode[err.errno]})"
           if err.errno in (errno.ENOSPC, errno.EDQUOT)
           else "pass --store a folder you can write to" + (", or fix its permissions"
                                                            if err.errno in (errno.EACCES, errno.EPERM) else ""))
    return StoreError(f"store {store} {problem} (cannot write {where}); {fix}")


def file_in_the_way(path: Path) -> Path | None:
    """The nearest existing ancestor of ``path`` (or ``path`` itself) when it is not a folder."""
    p = path
    while True:
        if p.exists() or p.is_symlink():
            return None if p.is_dir() else p
        if p.parent == p:
            return None
        p = p.parent
