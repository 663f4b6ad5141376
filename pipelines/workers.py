"""The local executor's worker processes.

They are forked from one server process (multiprocessing's "forkserver": no threads of the
command are copied into them) that imports corpusmill's pipeline modules once, so a worker
starts with them imported instead of importing them itself. A command that will run workers
starts that server first thing (:func:`start_early`), and its imports overlap the command's own.
"""

from __future__ import annotations

import multiprocessing as mp

#: what every worker imports anyway: the runner, the stages of most pipelines (a stage not listed
#: is imported by the worker that builds it), and pandas, which pyarrow imports on the first
#: ``pa.array()`` when it is installed (~0.2 s); a module that is not installed is skipped
PRELOAD = [
    "pandas",
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
