"""The Ray executor: each segment runs as a Ray Data pipeline, and the big groupings of the
reduce phases run as Ray Data shuffles (``groupby``), on a local Ray instance or a cluster.

What runs where:

* **map phase**, per segment, one Ray Data dataset with one block per shard::

      from_items(shards) -> map_batches(read) -> map_batches(stage) per stage
                         -> map_batches(facts of the next reduce stage) -> map_batches(write)

  ``read`` is the shard read by its reader (segment 0) or the previous segment's rows; the first
  stage of a later segment is the previous reduce stage's ``apply``. Every operator is a Ray task
  over a whole shard (Ray fuses them into one task per shard, so the rows stay in the worker's
  memory between stages); it cuts the shard into the same ``execution.batch_rows`` batches as the
  local executor (each row carries the number of the batch it was read in), calls the same
  :class:`~corpusmill.pipelines.runner.ShardPass` methods, and writes the shard's rejects, facts
  and rows with the runner's file layout. The stages are built once per worker process.
* **reduce phase**: :class:`RayGroupBy` is the stages' grouping engine (``ReduceStage.groupby``,
  see :mod:`corpusmill.grouping`): ``unique_ids`` groups id hashes, ``dedup`` exact hashes and
  LSH band keys, ``split`` band keys, each on the workers through Ray Data's ``groupby``; the
  driver gets the small results (repeats, keepers, candidate pairs) and runs the rest of the
  reduce (connected components, keepers, split assignment, decisions, index).
* the work folder: with a local store, a plain path every Ray node must see (one machine, or a
  shared mount such as NFS). With a store on an object store it lives on the store's filesystem
  (:class:`corpusmill.remote_work.RemoteWork`): each task fetches what it reads into a scratch
  folder on its node, runs there and uploads what it wrote, and the driver reads markers,
  statistics and facts from the object store, so the nodes need no shared filesystem. The inputs
  must be readable from every node (a shared mount or a URL).

Every batch of every stage is the same as with the local executor, so the version id and the
bytes of every data, reject and index file are the same (a test runs both and compares).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa

from corpusmill.errors import CorpusmillError
from corpusmill.pipelines.executors import Executor

SHARD = "_cm_shard"  # hidden columns of the map phase's blocks: the shard of the rows
BATCH = "_cm_batch"  # and the number of the read batch they came in (stages see the same batches)

_PIPES: dict = {}  # per Ray worker process: plan version id -> Pipeline, built once

#: environment variables a task needs to reach the object store the driver reaches (endpoint,
#: credentials, fsspec options), handed to the workers of a Ray instance the run starts
REMOTE_ENV_PREFIXES = ("AWS_", "FSSPEC_", "GOOGLE_", "GCS_", "GCSFS_")


def _pipeline(plan):
    from corpusmill.pipelines.runner import Pipeline

    pipe = _PIPES.get(plan.version_id)
    if pipe is None:
        _PIPES.clear()
        pipe = _PIPES[plan.version_id] = Pipeline(plan)
    return pipe


# ----------------------------------------------------------------------------- map phase operators


def _tag(table: pa.Table, shard: int, batch: int) -> pa.Table:
    n = table.num_rows
    return table.append_column(SHARD, pa.array(np.full(n, shard, dtype=np.int32))).append_column(
        BATCH, pa.array(np.full(n, batch, dtype=np.int32)))


def _batches(block: pa.Table) -> tuple[int, list[tuple[int, pa.Table]]]:
    """The shard of a block and its rows cut back into the read batches they came in."""
    shard = block.column(SHARD).to_numpy()
    if shard[0] != shard[-1]:
        raise RuntimeError(f"Ray Data merged shards {shard[0]} and {shard[-1]} into one block")
    numbers = block.column(BATCH).to_numpy()
    bounds = np.r_[0, np.flatnonzero(np.diff(numbers)) + 1, len(numbers)]
    rows = block.drop_columns([SHARD, BATCH])
    return int(shard[0]), [(int(numbers[a]), rows.slice(a, b - a)) for a, b in zip(bounds[:-1], bounds[1:])]


def _stats_dir(work: str, k: int, shard: int) -> Path:
    from corpusmill.pipelines.runner import _paths

    return _paths(Path(work))["seg"](k) / "stats" / f"{shard:05d}"


def _stats_rel(k: int, shard: int) -> str:
    return f"seg{k}/stats/{shard:05d}"


@contextmanager
def _shard_work(work: str, remote, reads: list[str]) -> Iterator[Path]:
    """The work folder an operator of one shard runs against: the run's folder itself (a local
    store), or a scratch folder on this node holding the files ``reads`` (relative names) from
    the remote work folder, whose new files are uploaded when the operator is done."""
    if remote is None:
        yield Path(work)
        return
    with remote.shard_scratch(reads) as folder:
        yield folder


def _save_stats(sp, work: str, op: int) -> None:
    """An operator's statistics of one shard; the driver merges them into the shard's marker."""
    from corpusmill.store import atomic_write_text

    if sp.stats:
        folder = _stats_dir(work, sp.k, sp.shard)
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_text(folder / f"{op:03d}.json", json.dumps(sp.stats, sort_keys=True))


def read_op(items: pa.Table, plan, work: str, k: int, remote=None) -> pa.Table:
    """Source: the rows of each shard in ``items`` (segment 0: read, unreadable lines rejected)."""
    from corpusmill.pipelines.runner import ShardPass, shard_source

    pipe = _pipeline(plan)
    out = []
    for shard in items.column("shard").to_pylist():
        reads = [f"seg{k - 1}/{shard:05d}.parquet"] if k else []
        with _shard_work(work, remote, reads) as folder:
            sp = ShardPass(pipe, k, shard, folder)
            for number, (batch, read_rejects) in enumerate(shard_source(pipe, k, plan.shards[shard], folder)):
                if k == 0:
                    batch = sp.read(batch, read_rejects)
                if batch.num_rows:
                    out.append(_tag(batch, shard, number))
            sp.close()
            _save_stats(sp, str(folder), 0)
    return pa.concat_tables(out) if out else _tag(pipe.schema.empty_table(), 0, 0)


def stage_op(block: pa.Table, plan, work: str, k: int, op: int, remote=None) -> pa.Table:
    """The ``op``-th stage of segment ``k`` (the previous reduce stage's apply first) over a shard."""
    from corpusmill.pipelines.runner import ShardPass
    from corpusmill.stage import decision_path

    shard, batches = _batches(block)
    pipe = _pipeline(plan)
    apply = pipe.segments[k].apply
    reads = ([decision_path(f"decisions/{apply.name}", shard).as_posix()] if apply is not None and op == 0 else [])
    with _shard_work(work, remote, reads) as folder:
        sp = ShardPass(pipe, k, shard, folder)
        stage = sp.ops[op]
        out, kept = [], None
        for number, batch in batches:
            kept = sp.run_stage(stage, batch)
            if kept.num_rows:
                out.append(_tag(kept, shard, number))
        sp.close()
        _save_stats(sp, str(folder), 1 + op)
    return pa.concat_tables(out) if out else _tag(kept.slice(0, 0), shard, 0)


def facts_op(block: pa.Table, plan, work: str, k: int, remote=None) -> pa.Table:
    """The next reduce stage's facts of a shard's kept rows, written to the facts file."""
    from corpusmill.pipelines.runner import ShardPass

    shard, batches = _batches(block)
    with _shard_work(work, remote, []) as folder:
        sp = ShardPass(_pipeline(plan), k, shard, folder)
        for _, batch in batches:
            sp.facts(batch)
        sp.close()
    return block


def write_op(block: pa.Table, plan, work: str, k: int, remote=None) -> pa.Table:
    """Sink: a shard's kept rows into its work file (or its data files per split); one row out."""
    from corpusmill.pipelines.runner import ShardPass

    shard, batches = _batches(block)
    with _shard_work(work, remote, []) as folder:
        sp = ShardPass(_pipeline(plan), k, shard, folder)
        for _, batch in batches:
            sp.write_rows(batch)
        splits = sp.close()
    return pa.table({"shard": [shard], "splits": [json.dumps(splits, sort_keys=True)]})


# ----------------------------------------------------------------------------- reduce groupings


def _facts_records(items: pa.Table, columns: list[str], records) -> pa.Table:
    import pyarrow.parquet as pq

    from corpusmill import fs as fsio

    parts = []
    for shard, path in zip(items.column("shard").to_pylist(), items.column("path").to_pylist()):
        if fsio.is_remote(path):  # a facts file of a remote work folder: read the columns from it
            with fsio.remote_errors(path), fsio.open_input(path) as f:
                parts.append(records(pq.read_table(f, columns=columns), shard))
        else:
            parts.append(records(pq.read_table(path, columns=columns), shard))
    return pa.concat_tables(parts)


class RayGroupBy:
    """A :class:`corpusmill.grouping.GroupBy` on Ray Data: one read task per facts file builds
    its records, ``groupby(keys).map_groups(reduce)`` shuffles them and reduces each group on
    the workers; the driver gets only the concatenated results."""

    def __init__(self, ray) -> None:
        self.ray = ray

    def __call__(self, facts, columns, records, keys, reduce) -> pa.Table | None:
        import ray.data

        # a WorkFile (remote work folder) goes as its URL: the tasks read it, the driver does not
        items = [{"shard": k, "path": getattr(p, "url", None) or str(p)} for k, p in enumerate(facts) if p is not None]
        if not items:
            return None
        ds = ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
            _facts_records, batch_size=1, batch_format="pyarrow", fn_kwargs={"columns": columns, "records": records})
        ds = ds.materialize()  # records once, in the object store (spilled to disk when it is full)
        if ds.count() == 0:  # the sort of an empty dataset has nothing to sample
            return None
        out = ds.groupby(keys).map_groups(reduce, batch_format="pyarrow")
        tables = [t for t in self.ray.get(out.to_arrow_refs()) if t.num_rows]
        return pa.concat_tables(tables) if tables else None


# ----------------------------------------------------------------------------- the executor


class RayExecutor(Executor):
    """Runs segments on Ray Data and offers :class:`RayGroupBy` to the reduce stages (the
    :class:`~corpusmill.pipelines.executors.Executor` interface). Joins ``address`` (a cluster)
    or starts a local instance with ``workers`` CPUs, stopped at the end. ``remote``: the run's
    :class:`~corpusmill.remote_work.RemoteWork` when the work folder is on the store's object
    store (``work`` is then the driver's local copy of what it reads)."""

    def __init__(self, work: Path, workers: int, address: str | None = None, remote=None) -> None:
        super().__init__(work, workers)
        self.address = address
        self.remote = remote
        self.ray = None
        self.started = False

    def start(self, plan) -> None:
        try:
            import ray
            import ray.data
        except ImportError:
            raise CorpusmillError("--executor ray needs Ray: pip install 'corpusmill[ray]'") from None
        self.ray = ray
        self.started = not ray.is_initialized()
        if self.started:
            kw = {"address": self.address} if self.address else {"num_cpus": self.workers}
            if not self.address and remote_env():  # a started instance's workers reach the store as the driver does
                kw["runtime_env"] = {"env_vars": remote_env()}
            ray.init(include_dashboard=False, logging_level="WARNING", log_to_driver=False, **kw)
        logging.getLogger("ray.data").setLevel(logging.WARNING)
        ctx = ray.data.DataContext.get_current()
        ctx.target_max_block_size = None  # a shard stays one block: never sliced into smaller ones
        ctx.enable_progress_bars = False  # the runner shows its own, per shard
        ctx.print_on_execution_start = False
        self.groupby = RayGroupBy(ray)

    # -- the work folder: the remote one, when there is one, is the run's state
    def prepare(self) -> None:
        if self.remote is not None:  # a local copy from an earlier attempt is stale
            shutil.rmtree(self.work, ignore_errors=True)
        super().prepare()

    def finished(self, k: int, shards: list) -> dict[int, dict]:
        if self.remote is None:
            return super().finished(k, shards)
        done = remote_markers(self.remote, k)
        return {s.index: done[s.index] for s in shards if s.index in done}

    def final_sources(self) -> dict[str, str]:
        """The data, rejects and index files of a remote work folder, fetched for their checksums,
        counts and the report; the store copies them on its side."""
        if self.remote is None:
            return {}
        return {rel[len("final/"):]: self.remote.path(rel)
                for rel in self.remote.fetch_tree("final", keep_present=True)}

    def discard(self) -> None:
        super().discard()
        if self.remote is not None:
            self.remote.remove()

    def reduce(self, stage, k: int, plan) -> None:
        if self.remote is None:
            return super().reduce(stage, k, plan)
        run_remote_reduce(stage, k, plan, self.work, self.groupby, self.remote)

    def run_segment(self, pipe, k: int, todo: list) -> Iterator[dict]:
        """Segment ``k`` over the shards ``todo``; yields each shard's result (its marker) as it finishes."""
        import ray.data

        work, remote = self.work, self.remote

        from corpusmill.pipelines.runner import pass_through_shard, write_marker

        rest = []
        for shard in todo:  # a file the last segment publishes unchanged is linked (copied remotely), here
            done = (pass_through_shard(pipe, k, shard, work) if remote is None
                    else _pass_through_remote(pipe, k, shard, remote))
            if done is not None:
                yield done
            else:
                rest.append(shard)
        if not rest:
            return
        for shard in rest:  # statistics of an interrupted earlier attempt
            if remote is None:
                shutil.rmtree(_stats_dir(str(work), k, shard.index), ignore_errors=True)
            else:
                remote.remove(_stats_rel(k, shard.index))
        seg = pipe.segments[k]
        common = {"plan": pipe.plan, "work": str(work), "k": k, "remote": remote}
        ds = ray.data.from_items([{"shard": s.index} for s in rest], override_num_blocks=len(rest))
        ds = ds.map_batches(read_op, batch_size=1, batch_format="pyarrow", fn_kwargs=common)
        for op in range(len(([seg.apply] if seg.apply else []) + seg.maps)):
            ds = ds.map_batches(stage_op, batch_size=None, batch_format="pyarrow", fn_kwargs={**common, "op": op})
        if seg.reduce is not None:
            ds = ds.map_batches(facts_op, batch_size=None, batch_format="pyarrow", fn_kwargs=common)
        ds = ds.map_batches(write_op, batch_size=None, batch_format="pyarrow", fn_kwargs=common)

        def result(shard: int, splits: dict) -> dict:
            stats: dict = {}
            if remote is None:
                folder = _stats_dir(str(work), k, shard)
                for f in sorted(folder.glob("*.json")) if folder.is_dir() else []:
                    stats.update(json.loads(f.read_text()))
                return write_marker(work, k, {"shard": shard, "stages": stats, "splits": splits})
            for rel in remote.listing(_stats_rel(k, shard)):
                stats.update(json.loads(remote.read_text(rel)))
            return write_remote_marker(remote, k, {"shard": shard, "stages": stats, "splits": splits})

        written: set[int] = set()
        for row in ds.iter_rows():
            shard = int(row["shard"])
            if shard in written:
                raise RuntimeError(f"shard {shard} reached the writer in two blocks; its files would be overwritten")
            written.add(shard)
            yield result(shard, json.loads(row["splits"]))
        for shard in rest:  # every row dropped before the writer: the shard has no data file
            if shard.index not in written:
                yield result(shard.index, {})

    def close(self) -> None:
        if self.started:
            self.ray.shutdown()
            self.started = False


def remote_env() -> dict[str, str]:
    """The variables of :data:`REMOTE_ENV_PREFIXES` set in this process. (Not
    ``CORPUSMILL_CACHE``: it names a folder of the node a worker runs on.)"""
    return {k: v for k, v in os.environ.items() if k.startswith(REMOTE_ENV_PREFIXES)}


# ----------------------------------------------------------------------------- remote work folder


def marker_rel(k: int, shard: int) -> str:
    return f"seg{k}/{shard:05d}.done.json"


def write_remote_marker(remote, k: int, result: dict) -> dict:
    """Segment ``k``'s marker of one shard on the remote work folder, written after every file
    of the shard was uploaded (the tasks upload before they return): a rerun skips the shard."""
    remote.write_text(marker_rel(k, result["shard"]), json.dumps(result, sort_keys=True))
    return result


def remote_markers(remote, k: int) -> dict[int, dict]:
    """{shard: result} of the shards segment ``k`` finished, from the remote work folder."""
    done = {}
    for rel in remote.listing(f"seg{k}"):
        name = rel.rsplit("/", 1)[-1]
        if rel.count("/") == 1 and name.endswith(".done.json"):
            result = json.loads(remote.read_text(rel))
            done[result["shard"]] = result
    return done


def _pass_through_remote(pipe, k: int, shard, remote) -> dict | None:
    """:func:`~corpusmill.pipelines.runner.pass_through_shard` on a remote work folder: the
    previous segment's file is copied on the object store's side into the data folder."""
    from corpusmill.stage import decision_path

    seg = pipe.segments[k]
    sid = f"{shard.index:05d}"
    if not pipe.passes_through(k) or remote.exists(decision_path(f"decisions/{seg.apply.name}", shard.index).as_posix()):
        return None
    prev = f"seg{k - 1}/{sid}.parquet"
    stats, splits = {}, {}
    if remote.exists(prev):
        target = f"final/data/all-{sid}.parquet"
        remote.copy(prev, target)
        n = remote.num_rows(target)
        stats[seg.apply.name] = {"in": n, "kept": n, "rejected": {}, "counters": {}}
        splits = {"all": f"all-{sid}.parquet"}
    return write_remote_marker(remote, k, {"shard": shard.index, "stages": stats, "splits": splits})


def run_remote_reduce(stage, k: int, plan, work: Path, groupby, remote) -> None:
    """The runner's ``_run_reduce`` on a remote work folder: the stage opens the facts and rows
    files as :class:`~corpusmill.remote_work.WorkFile` (downloaded when first opened; a grouping
    engine on the cluster reads them from the object store itself) and writes its decisions and
    index into the driver's local folder; they are uploaded, then the reduce's marker."""
    from corpusmill.pipelines.runner import _paths
    from corpusmill.remote_work import WorkFile
    from corpusmill.store import atomic_write_text

    marker = f"reduce-{stage.name}.done.json"
    if remote.fetch(marker):  # finished by an earlier attempt; the tasks fetch its decisions
        return
    p = _paths(work)
    decisions, index = p["decisions"](stage.name), p["index"] / stage.name
    for folder in (decisions, index):
        shutil.rmtree(folder, ignore_errors=True)
        remote.remove(remote.rel(folder))
    decisions.mkdir(parents=True)
    facts_present = set(remote.listing(f"facts/{stage.name}"))
    rows_present = set(remote.listing(f"seg{k}"))

    def files(present: set[str], folder: str) -> list[WorkFile | None]:
        rels = [f"{folder}/{s.index:05d}.parquet" for s in plan.shards]
        return [WorkFile(remote, r) if r in present else None for r in rels]

    stage.rows_files = files(rows_present, f"seg{k}")
    stage.groupby = groupby
    counters = stage.reduce(files(facts_present, f"facts/{stage.name}"), decisions, index)
    remote.push_tree(remote.rel(decisions))
    remote.push_tree(remote.rel(index))
    atomic_write_text(work / marker, json.dumps(counters or {}, sort_keys=True))
    remote.push(marker)
    # the facts and rows this driver fetched are not needed again
    shutil.rmtree(p["facts"](stage.name), ignore_errors=True)
    shutil.rmtree(p["seg"](k), ignore_errors=True)
