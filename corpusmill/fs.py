"""Local paths and URLs of any filesystem fsspec supports (``s3://``, ``gs://``, ``memory://``...).

A plain path or a ``file://`` URL is local and goes through the standard library exactly as
before; anything else goes through fsspec. Credentials and endpoints come from fsspec's own
mechanisms (environment variables such as ``AWS_PROFILE``/``AWS_ENDPOINT_URL`` or
``GOOGLE_APPLICATION_CREDENTIALS``, ``FSSPEC_<PROTOCOL>_<OPTION>`` variables, and
``~/.config/fsspec/*.json``): corpusmill adds no configuration of its own.

Every remote operation runs inside :func:`remote_errors`, which turns the filesystem's
exception (a missing object, access denied, an unreachable endpoint, a missing s3fs) into a
:class:`~corpusmill.errors.CorpusmillError` that names the URL, so the CLI prints one line
instead of a traceback.
"""

from __future__ import annotations

import glob as _glob
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO

from corpusmill.errors import CorpusmillError

#: the pip extra that brings a protocol's fsspec implementation
EXTRAS = {"s3": "s3", "s3a": "s3", "gs": "gcs", "gcs": "gcs"}
_PROTOCOL = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://")
_LOCAL_PROTOCOLS = {"file", "local"}
#: exceptions of remote client libraries that say "this location is unusable" rather than "bug"
_CLIENT_MODULES = ("botocore", "aiobotocore", "s3fs", "gcsfs", "google", "aiohttp", "fsspec")


def protocol(path: str | os.PathLike) -> str | None:
    """The URL scheme of ``path`` (``"s3"``), or None for a plain path."""
    m = _PROTOCOL.match(str(path))
    return m.group(1).lower() if m else None


def is_remote(path: str | os.PathLike) -> bool:
    """True for a URL that fsspec serves (``s3://``, ``gs://``, ``memory://``); False for a plain
    path or a ``file://`` URL, which are read as local files."""
    p = protocol(path)
    return p is not None and p not in _LOCAL_PROTOCOLS


def local_path(path: str | os.PathLike) -> str:
    """``file:///data/x`` -> ``/data/x``; a plain path unchanged."""
    s = str(path)
    p = protocol(s)
    if p in _LOCAL_PROTOCOLS:
        return s.split("://", 1)[1] or "/"
    return s


def normalize_url(url: str) -> str:
    """A remote URL without trailing slashes: the form a store is keyed by."""
    return url.rstrip("/") if not url.endswith("://") else url


class RemoteError(CorpusmillError):
    """A remote location that cannot be read or written; the message names it."""


def _is_client_error(err: BaseException) -> bool:
    return isinstance(err, (OSError, ValueError, TimeoutError)) or type(err).__module__.split(".")[0] in _CLIENT_MODULES


@contextmanager
def remote_errors(url: str, doing: str = "cannot read", passthrough: tuple = ()) -> Iterator[None]:
    """Turn a filesystem's exception into a :class:`RemoteError` naming ``url``; exceptions of
    the ``passthrough`` types are the caller's to handle."""
    try:
        yield
    except CorpusmillError:
        raise
    except passthrough:
        raise
    except ImportError as err:
        raise missing_backend(url, err) from None
    except Exception as err:  # noqa: BLE001 - only client errors are translated, see below
        if not _is_client_error(err):
            raise
        kind = type(err).__name__
        detail = str(err) or kind
        if isinstance(err, FileNotFoundError):
            detail = f"not found ({detail})"
        elif isinstance(err, PermissionError):
            detail = f"access denied ({detail}); check the credentials fsspec uses (see docs/storage.md)"
        raise RemoteError(f"{url}: {doing}: {detail}") from None


def missing_backend(url: str, err: BaseException | None = None) -> CorpusmillError:
    proto = protocol(url) or "?"
    extra = EXTRAS.get(proto)
    how = f"pip install 'corpusmill[{extra}]'" if extra else "install the fsspec implementation for it"
    why = f" ({err})" if err else ""
    return CorpusmillError(f"{url}: the {proto}:// filesystem is not installed{why}; {how}")


def filesystem(url: str):
    """(fsspec filesystem, path inside it) for a remote URL."""
    try:
        from fsspec.core import url_to_fs
    except ImportError as err:  # pragma: no cover - fsspec is a core dependency
        raise missing_backend(url, err) from None
    with remote_errors(url, "cannot open the filesystem"):
        try:
            return url_to_fs(url)
        except ValueError as err:
            if "Protocol not known" in str(err):
                raise missing_backend(url, err) from None
            raise


def unstrip(fs, path: str) -> str:
    """A filesystem path back into a URL with its protocol."""
    return fs.unstrip_protocol(path)


def has_magic(path: str) -> bool:
    return _glob.has_magic(path)


def open_input(path: str, block_size: int = 4 << 20) -> IO[bytes]:
    """A binary file object for reading a local path or a remote URL (seekable either way)."""
    if not is_remote(path):
        return open(local_path(path), "rb")
    fs, p = filesystem(path)
    with remote_errors(path):
        return fs.open(p, "rb", block_size=block_size)


def size(path: str) -> int:
    if not is_remote(path):
        return os.path.getsize(local_path(path))
    fs, p = filesystem(path)
    with remote_errors(path):
        return int(fs.size(p))


def expand_remote(url: str) -> list[tuple[str, str]]:
    """[(URL of a file, its name relative to the pattern's root)] for a remote file, folder or
    glob pattern, sorted: the same names a local file, folder or pattern gives, so a version id
    does not depend on where the files live."""
    fs, path = filesystem(url)
    with remote_errors(url, "cannot list"):
        if has_magic(path):
            parts = path.split("/")
            first = next(i for i, p in enumerate(parts) if has_magic(p))
            root = "/".join(parts[:first])
            found = fs.glob(path, detail=True)
            files = sorted(p for p, info in found.items() if info.get("type") == "file")
            out = [(unstrip(fs, f), _relative(f, root)) for f in files]
            if not any(part.startswith(".") for part in parts[first:]):
                # as Python's glob: a wildcard does not match a name that starts with a dot
                out = [(u, n) for u, n in out if not any(c.startswith(".") for c in n.split("/"))]
            return out
        if fs.isdir(path):
            root = path.rstrip("/")
            files = sorted(fs.find(root))
            return [(unstrip(fs, f), _relative(f, root)) for f in files
                    if not any(part.startswith(".") for part in _relative(f, root).split("/"))]
        if fs.isfile(path):
            return [(unstrip(fs, path), path.rstrip("/").rsplit("/", 1)[-1])]
    return []


def _relative(path: str, root: str) -> str:
    root = root.rstrip("/")
    return path[len(root) + 1:] if root and path.startswith(root + "/") else path.lstrip("/")
