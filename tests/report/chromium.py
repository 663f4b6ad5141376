"""Render a page in headless Chromium (Debian's ``chromium``, installed by ``make test``): a
screenshot and the console messages the page produced."""

from __future__ import annotations

import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import pytest

CANDIDATES = ("chromium", "chromium-browser", "google-chrome")


def chromium() -> str:
    for name in CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    pytest.fail("headless Chromium is not installed: run `make test`, which installs Debian's chromium package "
                "(or: apt-get install chromium)")


def render(page: Path, png: Path, profile: Path, width: int = 1100, height: int = 2400) -> list[str]:
    """Screenshot ``page`` into ``png``; return the console lines Chromium logged for it."""
    cmd = [chromium(), "--headless", "--disable-gpu", "--no-sandbox", "--hide-scrollbars", "--no-first-run",
           f"--user-data-dir={profile}", f"--window-size={width},{height}", f"--screenshot={png}",
           "--enable-logging=stderr", "--v=0", page.resolve().as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert png.is_file(), f"chromium wrote no screenshot (exit {proc.returncode}):\n{proc.stderr[-3000:]}"
    return [line for line in proc.stderr.splitlines() if ":CONSOLE" in line]


def png_facts(png: Path) -> tuple[int, int, int]:
    """(width, height, distinct byte values in the decoded scanlines): a blank page has very few."""
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG file"
    width, height = struct.unpack(">II", data[16:24])
    pos, idat = 8, b""
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        if kind == b"IDAT":
            idat += data[pos + 8:pos + 8 + n]
        pos += 12 + n
    return width, height, len(set(zlib.decompress(idat)))
