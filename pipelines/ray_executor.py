"""The Ray executor: each segment's shards run as Ray tasks, on a local Ray instance or a cluster.

What runs where:

* a **task per shard and segment** runs the same code as a local worker process
  (:func:`corpusmill.pipelines.runner.run_segment_shard`: read or previous segment's rows, the
  apply of a decision, the map stages, the facts of the next reduce stage) and writes that
  shard's files into the run's work folder; Ray schedules the tasks over the cluster's CPUs;
* the **reduce phases** (unique ids, dedup clusters, split assignment) run in the driver, exactly
  as with the local executor, reading the facts the tasks wrote;
* the work folder and the store are plain paths: every Ray node must see them (one machine, or a
  shared mount such as NFS); so must the inputs.

Because every shard goes through the same functions with the same plan, the version id and the
bytes of every data, reject and index file are the same as the local executor's (a test runs
both on one corpus and compares the checksums).
"""

from __future__ import annotations

from concurrent.futures import Future

from corpusmill.errors import CorpusmillError

_PIPES: dict = {}  # per Ray worker process: plan version id -> Pipeline, built once


def _shard_task(plan, k: int, shard_index: int, work: str) -> dict:
    from pathlib import Path

    from corpusmill.pipelines.runner import Pipeline, run_segment_shard

    pipe = _PIPES.get(plan.version_id)
    if pipe is None:
        _PIPES.clear()
        pipe = _PIPES[plan.version_id] = Pipeline(plan)
    return run_segment_shard(pipe, k, pipe.plan.shards[shard_index], Path(work))


class RayShardPool:
    """The executor's pool interface (``submit`` returning futures, ``shutdown``) over Ray tasks."""

    def __init__(self, plan, address: str | None, workers: int) -> None:
        try:
            import ray
        except ImportError:
            raise CorpusmillError("--executor ray needs Ray: pip install 'corpusmill[ray]'") from None
        self.ray = ray
        self.started = not ray.is_initialized()
        if self.started:
            kw = {"address": address} if address else {"num_cpus": workers}
            ray.init(include_dashboard=False, logging_level="WARNING", log_to_driver=False, **kw)
        self.remote = ray.remote(num_cpus=1, max_retries=2)(_shard_task)
        self.plan_ref = ray.put(plan)

    def submit(self, fn, k: int, shard_index: int, work: str) -> Future:
        return self.remote.remote(self.plan_ref, k, shard_index, work).future()

    def shutdown(self, cancel_futures: bool = False) -> None:
        if self.started:
            self.ray.shutdown()
