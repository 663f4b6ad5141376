"""``corpusmill run --profile``: the CPU time and peak memory of a command's whole process tree.

A run's work is done by three kinds of process: the command itself, the workers' server it
starts (the forkserver) and the pool workers forked from that server. The workers are the
server's children, not the command's, so ``/usr/bin/time`` and ``getrusage(RUSAGE_CHILDREN)``
in the command never see them: they report the command's own CPU, often less than half of it.

:class:`ProcessTreeProfile` measures the tree instead, with psutil:

* **CPU seconds** (user + system), taken when :meth:`~ProcessTreeProfile.snapshot` is called:
  for every process of the tree alive then (the command, the server, workers, zombies not yet
  reaped), its own CPU time plus the CPU time of the children it has reaped (a worker that
  ended is counted in its server's). Exact up to a process that ended without a parent in the
  tree reaping it (none in a local run).
* **Peak RSS**: the largest sum of the resident set sizes of the tree's processes, sampled
  every ``interval`` seconds from a thread of the command, plus one sample at the snapshot. A
  peak shorter than the interval can be missed; pages shared between forked processes count
  once per process, as ``ps`` and the benchmarks' TreeMonitor count them.

Processes outside the tree are not counted: a Ray cluster joined with ``--ray-address``.
"""

from __future__ import annotations

import threading
import time

from corpusmill.errors import CorpusmillError

#: seconds between two memory samples; the sampling costs about 1 ms per sample
DEFAULT_INTERVAL = 0.05


class ProcessTreeProfile:
    """Samples this process's tree from :meth:`start` until :meth:`snapshot`; a context manager.

    Needs psutil (``pip install psutil``), checked when the profile is made, before the run."""

    def __init__(self, interval: float = DEFAULT_INTERVAL) -> None:
        try:
            import psutil
        except ImportError:
            raise CorpusmillError("--profile measures the process tree with psutil, which is not installed: "
                                  "pip install psutil") from None
        self._psutil = psutil
        self.proc = psutil.Process()
        self.interval = interval
        self.peak_rss = 0
        self.samples = 0
        self.pids: set[int] = set()  # every process seen in the tree
        self.most_processes = 0
        self.result: dict | None = None
        self._t0 = time.perf_counter()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="corpusmill-profile", daemon=True)

    def _tree(self) -> list:
        try:
            return [self.proc, *self.proc.children(recursive=True)]
        except self._psutil.Error:
            return [self.proc]

    def _sample(self) -> list:
        """One memory sample of the tree; returns its processes."""
        tree, total = self._tree(), 0
        for p in tree:
            try:
                total += p.memory_info().rss
            except self._psutil.Error:  # ended between the listing and the reading
                pass
        with self._lock:
            self.peak_rss = max(self.peak_rss, total)
            self.samples += 1
            self.pids.update(p.pid for p in tree)
            self.most_processes = max(self.most_processes, len(tree))
        return tree

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def start(self) -> "ProcessTreeProfile":
        self._sample()
        self._thread.start()
        return self

    def __enter__(self) -> "ProcessTreeProfile":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def snapshot(self) -> dict:
        """The figures from the command's start until now (sampling goes on); also kept as :attr:`result`.

        ``cpu_seconds``: user + system of the whole tree, ``cpu_seconds_command``: of this
        process alone (what ``time`` would report for the command without its children),
        ``peak_rss_bytes``, ``samples`` and ``interval_s`` of the memory sampling,
        ``processes``: how many distinct processes the tree had, ``seconds``: wall time."""
        tree = self._sample()
        cpu = own = 0.0
        for p in tree:
            try:
                t = p.cpu_times()
            except self._psutil.Error:
                continue
            cpu += t.user + t.system + t.children_user + t.children_system
            if p.pid == self.proc.pid:
                own = t.user + t.system
        with self._lock:
            self.result = {
                "cpu_seconds": round(cpu, 2),
                "cpu_seconds_command": round(own, 2),
                "peak_rss_bytes": int(self.peak_rss),
                "samples": self.samples,
                "interval_s": self.interval,
                "processes": len(self.pids),
                "seconds": round(time.perf_counter() - self._t0, 3),
                "method": "psutil: CPU = user+system of every live process of the tree plus the children each "
                          "reaped; RSS = sum over the tree, peak of the samples",
            }
        return dict(self.result)

    def describe(self) -> str:
        """One line for the command's summary."""
        r = self.result or self.snapshot()
        return (f"profile (whole process tree, {r['processes']} processes): CPU {r['cpu_seconds']:.1f} s user+system "
                f"({r['cpu_seconds_command']:.1f} s in the command itself), peak RSS {r['peak_rss_bytes'] / 2**20:,.0f} MiB "
                f"({r['samples']:,} samples every {r['interval_s']:g} s), {r['seconds']:.1f} s wall")

