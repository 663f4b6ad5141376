"""Shared benchmark helpers: real text from Debian's fortunes, peak memory of a process tree,
and one JSON result file per benchmark under bench/results/ (what the README tables quote)."""

from __future__ import annotations

import json
import os
import platform
import threading
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
DATA_DIR = BENCH_DIR / "data"
RESULTS_DIR = BENCH_DIR / "results"


def fortunes() -> list[dict]:
    """Every fortune as {text, category, lang, file}; needs the Debian packages (make bench installs them)."""
    import orjson

    from corpusmill.demo import build_fortunes_corpus

    out_dir = DATA_DIR / "fortunes"
    if not out_dir.is_dir() or not any(out_dir.glob("*.jsonl")):
        build_fortunes_corpus(out_dir)
    rows = []
    for p in sorted(out_dir.glob("*.jsonl")):
        rows += [orjson.loads(line) for line in p.read_bytes().splitlines()]
    return [r for r in rows if r["text"].strip()]


class TreeMonitor:
    """Samples this process and its descendants every ``interval`` seconds: the peak of their
    summed RSS, and the CPU seconds (user + system) of the descendants (the pool workers are
    the forkserver's children, which getrusage does not see)."""

    def __init__(self, interval: float = 0.05) -> None:
        import psutil

        self.proc = psutil.Process()
        self.interval = interval
        self.peak = 0
        self.cpu: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _sample(self) -> int:
        import psutil

        total = 0
        for p in [self.proc, *self.proc.children(recursive=True)]:
            try:
                total += p.memory_info().rss
                if p.pid != self.proc.pid:
                    t = p.cpu_times()
                    self.cpu[p.pid] = t.user + t.system
            except psutil.Error:
                pass
        return total

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._sample())
            time.sleep(self.interval)

    def __enter__(self) -> "TreeMonitor":
        self.peak = self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def peak_mb(self) -> float:
        return round(self.peak / 2**20, 1)

    @property
    def child_cpu_seconds(self) -> float:
        return sum(self.cpu.values())


def timed_cli(cmd: list[str], env: dict[str, str] | None = None) -> tuple[dict, str]:
    """Run a command as a user types it: ({seconds, cpu_seconds, peak_rss_mb} of its process
    tree, its stdout). ``env``: variables set for it on top of this process's. A failure ends
    the benchmark with the command's stderr."""
    import subprocess

    with TreeMonitor() as mon:
        t0 = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **(env or {})})
        seconds = time.perf_counter() - t0
    if done.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
    return {"seconds": round(seconds, 2), "cpu_seconds": round(mon.child_cpu_seconds, 1),
            "peak_rss_mb": mon.peak_mb}, done.stdout


def machine() -> dict:
    return {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}


def save_result(name: str, result: dict) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    result = {"benchmark": name, "date": time.strftime("%Y-%m-%d"), "machine": machine(), **result}
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"-> {path.relative_to(BENCH_DIR.parent)}")
    return path
