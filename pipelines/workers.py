"""The local executor's worker processes.

They are forked from one server process (multiprocessing's "forkserver": no threads of the
command are copied into them) that imports corpusmill's pipeline modules once, so a worker
starts with them imported instead of importing them itself. A command that will run workers
starts that server first thing (:func:`start_early`), and its imports overlap the command's own.

Both the server and every worker end when their parent ends, however it ends (:func:`die_with_parent`):
a command killed with SIGKILL leaves no process behind. Without it they would wait forever, each
holding the pipes the others wait on (a worker holds the server's "alive" pipe, the server holds
the workers' task queue).
"""

from __future__ import annotations

import ctypes
import multiprocessing as mp
import os
import signal
import sys
import threading

#: what every worker imports anyway: the runner and the stages of most pipelines (a stage not
#: listed is imported by the worker that builds it); ``_preload`` then warms them up
PRELOAD = [
    "corpusmill.pipelines.runner",
    "corpusmill.dataprep.ids",
    "corpusmill.dataprep.clean",
    "corpusmill.dataprep.dedup",
    "corpusmill.dataprep.split",
    "corpusmill.pipelines.executors",
    "corpusmill.pipelines._preload",
]

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def context():
    """The multiprocessing context the executor's pool uses."""
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)  # no effect once the server runs: it already has them
    return ctx


def server_pid() -> int | None:
    """The pid of the running server the workers are forked from (None: none runs yet): a worker
    checks that it is still its parent (see :func:`die_with_parent`)."""
    from multiprocessing import forkserver

    return getattr(forkserver._forkserver, "_forkserver_pid", None)


def die_with_parent(parent: int | None = None) -> None:
    """End this process with SIGKILL as soon as its parent process ends, however the parent ends.

    On Linux the kernel does it (``prctl(PR_SET_PDEATHSIG, SIGKILL)``), at once; elsewhere a
    daemon thread notices the new parent within a second. ``parent``: the pid this process was
    started by (default: the current parent); if it has already ended when this is called, this
    process ends now. Called in the workers' server (by ``_preload``: its parent is the command)
    and in each worker (its parent is the server), so killing the command ends them in a chain.

    The kernel ties the signal to the *thread* that started the process: the server is started
    by the command's main thread (:func:`start_early`, or the pool's first task); a server
    started by a thread that ends before the run would end with it and be restarted by the
    next pool."""
    parent = os.getppid() if parent is None else parent
    armed = False
    if sys.platform.startswith("linux"):
        try:
            armed = ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0
        except (OSError, AttributeError):  # no libc prctl (a static or exotic build): the thread below
            armed = False
    if os.getppid() != parent:  # the parent ended before the signal was armed
        os._exit(1)
    if not armed:
        def watch() -> None:
            while os.getppid() == parent:
                threading.Event().wait(1.0)
            os._exit(1)

        threading.Thread(target=watch, name="die-with-parent", daemon=True).start()


def start_early(workers: int | None) -> None:
    """Start the server the workers are forked from, when there will be worker processes."""
    if workers is not None and workers <= 1:
        return
    from multiprocessing import forkserver

    context()
    forkserver.ensure_running()


def skip_pandas_probe() -> None:
    """Spare this process pyarrow's import of pandas (~0.3 s, the biggest import of a run).

    The first time ``pa.array()`` is given a list, pyarrow imports pandas only to ask whether the
    list is a pandas object; corpusmill's stages never pass one. This hides the module for that
    first probe, so pyarrow notes "no pandas" and moves on. Code that does use pandas is not
    affected: ``to_pandas()``, ``Table.from_pandas()`` and the like import it when called (pyarrow
    tries the import again whenever pandas is really needed). Called by ``run`` (local executor)
    and ``refresh`` and in the workers' server, never in a process that trains, evaluates or
    runs Ray."""
    import sys

    if "pandas" in sys.modules:
        return
    import pyarrow as pa

    class NoPandas:
        @staticmethod
        def find_spec(name, path=None, target=None):
            if name == "pandas":
                raise ImportError("pandas hidden for pyarrow's first probe")
            return None

    sys.meta_path.insert(0, NoPandas)
    try:
        pa.array([0])
    finally:
        sys.meta_path.remove(NoPandas)
