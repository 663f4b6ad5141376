"""Stable hashes: the same bytes give the same value on every platform and library version.

Never Python's ``hash`` (salted per process) or a dataframe library's hash (may change between
releases): these values end up in version ids and in stored indexes that later versions reuse.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import orjson
import xxhash


def canonical_json(value: Any) -> bytes:
    """JSON with sorted keys and no whitespace: the input of every fingerprint."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def fingerprint(value: Any, length: int = 16) -> str:
    """Hex digest of a JSON-serialisable value, ``length`` hex characters long."""
    return hashlib.sha256(canonical_json(value)).hexdigest()[:length]


def text_hash64(text: str) -> int:
    """64-bit xxh3 of the UTF-8 bytes of ``text``."""
    return xxhash.xxh3_64_intdigest(text.encode("utf-8"))


def text_hash128(data: bytes | str) -> str:
    """128-bit xxh3 as 32 hex characters."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    return xxhash.xxh3_128_hexdigest(data)


#: sha256 of files already known in this process, by (device, inode, size, mtime): a file
#: hard-linked from a published version (a refresh links the parent's index parts) is not re-read
_KNOWN_SHA256: dict[tuple, str] = {}


def _file_key(path: str | Path) -> tuple:
    st = Path(path).stat()
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


def remember_sha256(path: str | Path, sha256: str) -> None:
    """Record a file's checksum (from a manifest) so :func:`file_sha256` of it, or of a hard link
    to it, needs no reading while the file is unchanged."""
    _KNOWN_SHA256[_file_key(path)] = sha256


def file_sha256(path: str | Path, chunk: int = 1 << 22) -> str:
    known = _KNOWN_SHA256.get(_file_key(path)) if _KNOWN_SHA256 else None
    if known is not None:
        return known
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
