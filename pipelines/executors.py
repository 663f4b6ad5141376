"""Executors: where and how a run's segments and reductions are carried out.

The runner's loop (:func:`corpusmill.pipelines.runner.execute`) is the same for every executor.
It asks an :class:`Executor` for three things:

* :meth:`~Executor.finished`: the shards of a segment an earlier attempt finished (their markers),
  so a rerun skips them;
* :meth:`~Executor.run_segment`: run a segment over the other shards and yield each shard's
  result (statistics, data files per split) as it finishes, in any order;
* :meth:`~Executor.reduce`: a reduce stage's global step, with the executor's grouping engine
  (``groupby``, see :mod:`corpusmill.grouping`) for the big groupings.

and leaves to it the life of the run's work folder (:meth:`~Executor.prepare`,
:meth:`~Executor.final_sources`, :meth:`~Executor.discard`) and of its processes
(:meth:`~Executor.start`, :meth:`~Executor.close`). Every guarantee of the loop (resume from
markers, accounting, one atomic publish) is then implemented once, for all of them.

=============  ============================================================================
serial         one shard after another in this process (``--workers 1``, or a single shard)
pool           a process pool of workers forked from one server process (:mod:`.workers`);
               the server and the workers die with the command, however it ends
ray            Ray Data (:mod:`corpusmill.pipelines.ray_executor`); with a store on an object
               store, its work folder lives there too
=============  ============================================================================

Every executor gives a stage the same batches in the same order, so the version id and every
file's bytes are the same whichever runs.
"""

from __future__ import annotations

import json
import shutil
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Iterator

from corpusmill.store import Store


class Executor:
    """The local work folder and the in-process reduce; subclasses say how a segment runs."""

    #: the reduce stages' grouping engine (:class:`corpusmill.grouping.GroupBy`); None = in process
    groupby = None

    def __init__(self, work: Path, workers: int = 1) -> None:
        self.work = work  # the run's work folder on this machine (.work/<version id> of the store)
        self.workers = workers

    # -- the work folder
    def prepare(self) -> None:
        """Make the work folder ready; what an earlier attempt finished in it stays (it is resumed)."""
        self.work.mkdir(parents=True, exist_ok=True)

    def finished(self, k: int, shards: list) -> dict[int, dict]:
        """{shard index: result} of the ``shards`` whose segment ``k`` an earlier attempt finished."""
        from corpusmill.pipelines.runner import _paths

        seg = _paths(self.work)["seg"](k)
        done = {}
        for shard in shards:
            marker = seg / f"{shard.index:05d}.done.json"
            if marker.is_file():
                done[shard.index] = json.loads(marker.read_text())
        return done

    def final_sources(self) -> dict[str, str]:
        """{file of the final folder: the same file on the store's filesystem}, for files the
        executor wrote there directly (:meth:`corpusmill.store.Store.publish` copies them on that
        side instead of uploading). Empty for a work folder on this machine."""
        return {}

    def discard(self) -> None:
        """Remove the work folder (after publishing, or when the version was already published)."""
        shutil.rmtree(self.work, ignore_errors=True)

    # -- the processes
    def start(self, plan) -> None:
        """Start what runs the shards (processes, a cluster connection); ``plan`` is final."""

    def close(self) -> None:
        """Stop what :meth:`start` started; pending shards are cancelled."""

    # -- the work
    def run_segment(self, pipe, k: int, todo: list) -> Iterator[dict]:
        """Segment ``k`` over the shards ``todo``; yields each shard's result (also written as
        its marker) as it finishes."""
        raise NotImplementedError

    def reduce(self, stage, k: int, plan) -> None:
        """``stage``'s global step over segment ``k``'s facts (skipped when an earlier attempt finished it)."""
        from corpusmill.pipelines.runner import _run_reduce

        _run_reduce(stage, k, plan, self.work, self.groupby)


class SerialExecutor(Executor):
    """Every shard in this process, one after another. With ``workers`` > 1 (a run of a single
    shard) the task may use that many cores (:func:`corpusmill.stage.task_cores`)."""

    def __init__(self, work: Path, workers: int = 1) -> None:
        super().__init__(work, workers)
        self._cores_before: int | None = None

    def start(self, plan) -> None:
        from corpusmill.stage import set_task_cores

        self._cores_before = set_task_cores(self.workers)

    def close(self) -> None:
        from corpusmill.stage import set_task_cores

        if self._cores_before is not None:
            set_task_cores(self._cores_before)
            self._cores_before = None

    def run_segment(self, pipe, k: int, todo: list) -> Iterator[dict]:
        from corpusmill.pipelines import runner

        for shard in todo:
            yield runner.run_segment_shard(pipe, k, shard, self.work)


class PoolExecutor(Executor):
    """Shards on a pool of ``workers`` processes forked from the workers' server
    (:mod:`corpusmill.pipelines.workers`); each builds the pipeline once. The server and each
    worker end when their parent ends, SIGKILL included."""

    def __init__(self, work: Path, workers: int) -> None:
        super().__init__(work, workers)
        self.pool: ProcessPoolExecutor | None = None

    def start(self, plan) -> None:
        from corpusmill.pipelines.workers import context, server_pid, start_early

        start_early(self.workers)  # running already when the command started it
        self.pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=context(), initializer=_init_worker,
                                        initargs=(plan, server_pid()))

    def run_segment(self, pipe, k: int, todo: list) -> Iterator[dict]:
        futures = [self.pool.submit(_worker_task, k, s.index, str(self.work)) for s in todo]
        for fut in as_completed(futures):
            yield fut.result()

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(cancel_futures=True)
            self.pool = None


def make_executor(kind: str, store: Store, name: str, version_id: str, *, workers: int, shards: int,
                  ray_address: str | None = None) -> Executor:
    """The executor of a run of version ``version_id`` of ``name`` into ``store``: ``kind`` "ray"
    (Ray Data) or "local" (a process pool when there are ``workers`` > 1 and ``shards`` > 1, else
    serial). Cheap: nothing starts before :meth:`Executor.start`."""
    work = store.work_dir(name, version_id)
    if kind == "ray":
        from corpusmill.pipelines.ray_executor import RayExecutor

        return RayExecutor(work, workers, ray_address, remote=_remote_work(store, name, version_id))
    if workers > 1 and shards > 1:
        return PoolExecutor(work, workers)
    return SerialExecutor(work, workers)


def _remote_work(store: Store, name: str, version_id: str):
    """The run's work folder on the store's filesystem (a RemoteWork), or None for a local store:
    a Ray run's tasks may run on machines that share no filesystem (:mod:`corpusmill.remote_work`)."""
    if store.remote is None:
        return None
    from corpusmill.remote_work import RemoteWork

    return RemoteWork(f"{store.location}/{name}/.work/{version_id}", store.work_dir(name, version_id))


# ----------------------------------------------------------------------------- in the pool's workers

_WORKER_PIPE = None  # the worker's Pipeline, built once by _init_worker


def _init_worker(plan, server: int | None = None) -> None:
    """A pool worker's set-up: tied to its parent (the workers' server ``server``), then the
    pipeline built once."""
    global _WORKER_PIPE
    from corpusmill.pipelines.runner import Pipeline
    from corpusmill.pipelines.workers import die_with_parent

    die_with_parent(server)
    _WORKER_PIPE = Pipeline(plan)


def _worker_task(k: int, shard_index: int, work: str) -> dict:
    from corpusmill.pipelines.runner import run_segment_shard

    pipe = _WORKER_PIPE
    return run_segment_shard(pipe, k, pipe.plan.shards[shard_index], Path(work))
