"""The local executor's worker processes.

They are forked from one server process (multiprocessing's "forkserver": no threads of the
command are copied into them) that imports corpusmill's pipeline modules once, so a worker
starts with them imported instead of importing them itself. A command that will run workers
starts that server first thing (:func:`start_early`), and its imports overlap the command's own.
"""

from __future__ import annotations

import multiprocessing as mp

#: what every worker imports anyway: the runner and the stages of most pipelines (a stage not
#: listed is imported by the worker that builds it); ``_preload`` then warms them up
PRELOAD = [
    "corpusmill.pipelines.runner",
    "corpusmill.dataprep.ids",
    "corpusmill.dataprep.clean",
    "corpusmill.dataprep.dedup",
    "corpusmill.dataprep.split",
    "corpusmill.pipelines._preload",
]


def context():
    """The multiprocessing context the executor's pool uses."""
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)  # no effect once the server runs: it already has them
    return ctx


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
