"""The pipeline runner and its local executor.

The run is cut into *segments* at every reduce stage. A segment streams each shard through

    [apply of the previous reduce stage] + map stages + [map_facts of the next reduce stage]

and writes the shard's kept rows, its rejects per stage, its facts and its statistics. Between
segments the reduce stage decides globally in the main process. Each shard's output is written
under a temporary name and renamed, and a marker is written last, so a rerun after a kill skips
finished shards. The version folder is assembled under ``.work/<id>/final`` and published with
one rename: no half-written version is ever listed.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from corpusmill import __version__
from corpusmill import schema as S
from corpusmill.errors import AccountingError, ConfigError, reports_full_disk
from corpusmill.hashing import file_sha256, fingerprint
from corpusmill.stage import BatchInfo, ReduceStage, RunInfo, Stage, StageOutput, decision_path
from corpusmill.store import Store, Version, atomic_write_text, published_codecs, remembered_texts
from corpusmill.dataprep import readers
from corpusmill.dataprep.ids import UniqueIds
from corpusmill.pipelines.config import PipelineConfig
from corpusmill.report import publish_docs

MANIFEST_FORMAT = 1


# ----------------------------------------------------------------------------- the plan


@dataclass
class Plan:
    """Everything a worker needs, picklable: config, resolved steps, shards."""

    config: PipelineConfig
    steps: list  # [(name, kind, stage config)]
    files: list[readers.InputFile]
    shards: list[readers.Shard]
    digests: list[str]
    version_id: str = ""
    resolved: dict = field(default_factory=dict)
    store_root: str | None = None  # set by execute(); not part of the version id
    base_dir: str | None = None  # the pipeline file's folder; not part of the version id


def resolved_config(config: PipelineConfig, steps) -> dict:
    """The config as run: defaults filled in, the store location left out."""
    out = config.model_dump(mode="json", exclude={"store"})
    out["steps"] = [{kind: cfg.model_dump(mode="json")} for _, kind, cfg in steps]
    return out


def make_plan(config: PipelineConfig, steps, base_dir: Path, store_root: str | Path | None = None) -> Plan:
    from corpusmill.pipelines.registry import stage_class

    files = readers.resolve_files(config.inputs, base_dir)
    shards, digests = readers.plan_shards(files, config.inputs, config.execution.shard_bytes)
    # each stage checks its options against the rows it will see and fills in the defaults that
    # depend on them (quality's preset): the config as run, recorded and part of the id
    run = RunInfo(config.dataset, config.seed, str(store_root) if store_root else None, str(base_dir))
    stages = [stage_class(kind)(cfg, name=name, run=run) for name, kind, cfg in steps]
    schema, problems, steps = readers.record_schema_for(config.inputs), [], list(steps)
    for i, ((name, kind, _), stage) in enumerate(zip(steps, stages)):
        problems += [f"steps.{name}: {p}" for p in stage.check(schema)]
        steps[i] = (name, kind, stage.resolve(schema))
        schema = stage.output_fields(schema)
    if problems:
        raise ConfigError(problems, source="pipeline")
    resolved = resolved_config(config, steps)
    # The id depends on content, file names relative to their pattern (they are in the data),
    # options, code and seed; never on absolute paths, the store or the worker count.
    identity = {
        "code_version": __version__,
        "config": {**{k: v for k, v in resolved.items() if k != "allow_empty_version"}, "inputs": [
            {k: v for k, v in spec.items() if k not in ("path", "allow_empty")} for spec in resolved["inputs"]
        ]},
        "files": [[f.input_index, f.name, d] for f, d in zip(files, digests)],
        "stage_versions": [stage_class(kind).version for _, kind, _ in steps],
    }
    # what stages read besides their rows (a target file, a dataset version): by content
    stage_inputs = {name: fp for (name, _, _), stage in zip(steps, stages) if (fp := stage.identity()) is not None}
    if stage_inputs:
        identity["stage_inputs"] = stage_inputs
    return Plan(config, steps, files, shards, digests, fingerprint(identity), resolved,
                store_root=run.store_root, base_dir=run.base_dir)


# ----------------------------------------------------------------------------- the pipeline


@dataclass
class Segment:
    apply: ReduceStage | None
    maps: list[Stage]
    reduce: ReduceStage | None


class Pipeline:
    """The stages of a plan, cut into segments. Built once per process."""

    def __init__(self, plan: Plan) -> None:
        from corpusmill.pipelines.registry import stage_class

        self.plan = plan
        run = RunInfo(plan.config.dataset, plan.config.seed, plan.store_root, plan.base_dir)
        generated = frozenset(
            s.index for s in plan.shards if plan.config.inputs[s.file.input_index].id_field is None
        )
        self.stages: list[Stage] = [UniqueIds(None, name="unique_ids", run=run, generated_id_shards=generated)]
        for name, kind, cfg in plan.steps:
            self.stages.append(stage_class(kind)(cfg, name=name, run=run))
        self.segments: list[Segment] = []
        current = Segment(None, [], None)
        for st in self.stages:
            if st.needs_reduce:
                current.reduce = st
                self.segments.append(current)
                current = Segment(st, [], None)
            else:
                current.maps.append(st)
        self.segments.append(current)
        self.schema = readers.record_schema_for(plan.config.inputs)

    def passes_through(self, k: int) -> bool:
        """Segment ``k`` is the last one and only applies a decision that leaves untouched rows
        as :meth:`ReduceStage.undecided` makes them: a shard the decision does not touch can be
        published as the previous segment wrote it (through ``undecided``)."""
        if k <= 0 or k != len(self.segments) - 1:
            return False
        seg = self.segments[k]
        return (seg.apply is not None and not seg.maps and seg.reduce is None and S.SPLIT not in self.schema.names
                and seg.apply.undecided(self.schema.empty_table()) is not None)

    @property
    def stage_names(self) -> list[str]:
        return [readers.READ_STAGE] + [s.name for s in self.stages]


class _Sink:
    """A Parquet file written in row groups of a fixed size, under a temporary name until closed.
    ``compression``: lz4 for work files (read once), zstd for published ones; ``text_compression``:
    the text column's codec in a published data file (:func:`corpusmill.store.published_codecs`)."""

    def __init__(self, path: Path, row_group_rows: int, compression: str = "zstd",
                 text_compression: str | None = None) -> None:
        self.path = path
        self.compression = compression
        self.text_compression = text_compression
        self.rows = row_group_rows
        self.pending: list[pa.Table] = []
        self.npending = 0
        self.writer: pq.ParquetWriter | None = None
        self.tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")

    def write(self, table: pa.Table) -> None:
        if table.num_rows == 0:
            return
        if self.writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if self.compression == "zstd":
                codecs, dictionary = published_codecs(table.schema, self.text_compression or "zstd")
            else:
                codecs, dictionary = self.compression, True
            self.writer = pq.ParquetWriter(self.tmp, table.schema, compression=codecs, use_dictionary=dictionary)
        elif table.schema != self.writer.schema:
            table = table.cast(self.writer.schema)
        self.pending.append(table)
        self.npending += table.num_rows
        if self.npending >= self.rows:
            self._drain(final=False)

    def _drain(self, final: bool) -> None:
        if not self.pending:
            return
        t = pa.concat_tables(self.pending)
        cut = t.num_rows if final else (t.num_rows // self.rows) * self.rows
        self.writer.write_table(t.slice(0, cut), row_group_size=self.rows)
        rest = t.slice(cut)
        self.pending = [rest] if rest.num_rows else []
        self.npending = rest.num_rows

    def close(self) -> int:
        if self.writer is None:
            return 0
        self._drain(final=True)
        self.writer.close()
        os.replace(self.tmp, self.path)
        return 1


def _stage_stats() -> dict:
    return {"in": 0, "kept": 0, "rejected": {}, "counters": {}}


def _account(stats: dict, name: str, rows_in: int, out: StageOutput) -> None:
    """Enforce rows in = kept + rejected, and that every rejected row has this stage and a reason."""
    nrej = out.rejected.num_rows if out.rejected is not None else 0
    if out.kept.num_rows + nrej != rows_in + out.added:
        raise AccountingError(
            f"stage '{name}' took {rows_in} rows and added {out.added} but returned {out.kept.num_rows} kept + {nrej} rejected"
        )
    st = stats.setdefault(name, _stage_stats())
    st["in"] += rows_in
    if out.added:  # only stages that create rows carry the key, so other manifests are unchanged
        st["added"] = st.get("added", 0) + out.added
    st["kept"] += out.kept.num_rows
    if nrej:
        stages = set(out.rejected.column(S.STAGE).to_pylist())
        if stages != {name} or out.rejected.column(S.REASON).null_count:
            raise AccountingError(f"stage '{name}' rejected rows without its name and a reason: {stages}")
        for reason, n in Counter(out.rejected.column(S.REASON).to_pylist()).items():
            st["rejected"][reason] = st["rejected"].get(reason, 0) + n
    for k, v in out.counters.items():
        st["counters"][k] = st["counters"].get(k, 0) + v


def _paths(work: Path):
    final = work / "final"
    return {
        "final": final,
        "data": final / "data",
        "rejects": final / "rejects",
        "index": final / "index",
        "seg": lambda k: work / f"seg{k}",
        "facts": lambda name: work / "facts" / name,
        "decisions": lambda name: work / "decisions" / name,
    }


def shard_source(pipe: Pipeline, k: int, shard: readers.Shard, work: Path):
    """The input of segment ``k`` for one shard, as (batch, read rejects) pairs of at most
    ``execution.batch_rows`` rows: the shard read by its reader (segment 0; the rejects are
    unreadable lines) or the previous segment's rows (rejects always None)."""
    plan = pipe.plan
    if k == 0:
        spec = plan.config.inputs[shard.file.input_index]
        yield from readers.read_shard(shard, spec, pipe.schema, plan.config.execution.batch_rows)
        return
    prev = _paths(work)["seg"](k - 1) / f"{shard.index:05d}.parquet"
    if prev.is_file():
        for rb in pq.ParquetFile(prev).iter_batches(batch_size=plan.config.execution.batch_rows):
            yield pa.Table.from_batches([rb]), None


class ShardPass:
    """One shard's pass through segment ``k``: the statistics of the stages it ran and the
    files it writes (rejects per stage, the next reduce stage's facts, the kept rows).

    The local executor drives one of these per shard, batch by batch through all stages; the Ray
    executor drives one per (operator, shard), each operator running its part over every batch
    of the shard. Either way a stage sees the same batches in the same order, so the files come
    out byte for byte the same."""

    def __init__(self, pipe: Pipeline, k: int, shard_index: int, work: Path) -> None:
        self.pipe, self.k, self.shard = pipe, k, shard_index
        self.seg = pipe.segments[k]
        self.last = k == len(pipe.segments) - 1
        #: the next segment may publish this pass's file as it is (:meth:`Pipeline.passes_through`)
        self.next_passes = not self.last and pipe.passes_through(k + 1)
        self.paths = _paths(work)
        self.rg = pipe.plan.config.execution.row_group_rows
        self.sid = f"{shard_index:05d}"
        self.stats: dict = {}
        self.offsets: dict[str, int] = {}  # per stage: rows of this shard it has seen so far
        self.reject_sinks: dict[str, _Sink] = {}
        self.out_sinks: dict[str, _Sink] = {}
        self.facts_sink: _Sink | None = None
        self._decision: tuple | None = None

    @property
    def ops(self) -> list[Stage]:
        """The stages every batch goes through: the previous reduce stage's apply, the map stages."""
        return ([self.seg.apply] if self.seg.apply else []) + self.seg.maps

    @property
    def decision(self) -> pa.Table | None:
        if self._decision is None:
            dp = decision_path(self.paths["decisions"](self.seg.apply.name), self.shard) if self.seg.apply else None
            self._decision = (pq.read_table(dp) if dp is not None and dp.is_file() else None,)
        return self._decision[0]

    def read(self, batch: pa.Table | None, read_rejects: pa.Table | None) -> pa.Table:
        """Account a batch the reader produced (segment 0); returns the readable rows."""
        nrej = read_rejects.num_rows if read_rejects is not None else 0
        kept = batch if batch is not None else self.pipe.schema.empty_table()
        _account(self.stats, readers.READ_STAGE, kept.num_rows + nrej, StageOutput(kept, read_rejects))
        self.write_rejects(readers.READ_STAGE, read_rejects)
        return kept

    def run_stage(self, st: Stage, batch: pa.Table) -> pa.Table:
        """One stage over one (non-empty) batch: accounted, rejects written; returns the kept rows."""
        info = BatchInfo(self.shard, self.offsets.get(st.name, 0))
        self.offsets[st.name] = info.row_offset + batch.num_rows
        out = st.apply(batch, info, self.decision) if st is self.seg.apply else st.process(batch, info)
        _account(self.stats, st.name, batch.num_rows, out)
        self.write_rejects(st.name, out.rejected)
        return out.kept

    def facts(self, batch: pa.Table) -> None:
        """The next reduce stage's facts of a batch of kept rows."""
        info = BatchInfo(self.shard, self.offsets.get("__facts__", 0))
        self.offsets["__facts__"] = info.row_offset + batch.num_rows
        facts = self.seg.reduce.map_facts(batch, info)
        if facts is not None:
            if self.facts_sink is None:
                self.facts_sink = _Sink(self.paths["facts"](self.seg.reduce.name) / f"{self.sid}.parquet", self.rg, "lz4")
            self.facts_sink.write(facts)

    def write_rejects(self, name: str, table: pa.Table | None) -> None:
        if table is not None and table.num_rows:
            sink = self.reject_sinks.get(name)
            if sink is None:
                sink = self.reject_sinks[name] = _Sink(self.paths["rejects"] / f"{name}-{self.sid}.parquet", self.rg)
            sink.write(table)

    def write_rows(self, table: pa.Table) -> None:
        """Kept rows: the segment's work file, or (last segment) the data file of each split."""
        if self.last and S.SPLIT in table.column_names:
            col = table.column(S.SPLIT)
            for split in sorted(set(col.to_pylist())):
                self._sink(split).write(table.filter(pc.equal(col, split)).drop_columns([S.SPLIT]))
        else:
            if self.next_passes:  # written as the next segment's apply leaves untouched rows
                table = self.pipe.segments[self.k + 1].apply.undecided(table)
            self._sink("all" if self.last else "").write(table)

    def _sink(self, split: str) -> _Sink:
        if split not in self.out_sinks:
            path = self.paths["data"] / f"{split}-{self.sid}.parquet" if self.last else self.paths["seg"](self.k) / f"{self.sid}.parquet"
            # work files between segments are read once: lz4 throughout; published files: zstd,
            # but the text in execution.text_compression. A file the next segment may pass
            # through unchanged is written as published.
            final_like = self.last or self.next_passes
            self.out_sinks[split] = _Sink(path, self.rg, "zstd" if final_like else "lz4",
                                          self.pipe.plan.config.execution.text_compression)
        return self.out_sinks[split]

    def close(self) -> dict[str, str]:
        """Finish every file this pass opened; returns the data files written per split (last segment)."""
        sinks = [*self.reject_sinks.values(), *self.out_sinks.values()] + ([self.facts_sink] if self.facts_sink else [])
        for sink in sinks:
            sink.close()
        return {s: sink.path.name for s, sink in self.out_sinks.items()} if self.last else {}


def write_marker(work: Path, k: int, result: dict) -> dict:
    """Segment ``k``'s marker of one shard, written last: a rerun skips the shard."""
    marker = _paths(work)["seg"](k) / f"{result['shard']:05d}.done.json"
    marker.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(marker, json.dumps(result, sort_keys=True))
    return result


def pass_through_shard(pipe: Pipeline, k: int, shard: readers.Shard, work: Path) -> dict | None:
    """Segment ``k`` over a shard whose previous file it may publish unchanged (see
    :meth:`Pipeline.passes_through`): done with a hard link. None when the shard has a decision
    to apply (it runs through the stages then)."""
    p = _paths(work)
    seg = pipe.segments[k]
    sid = f"{shard.index:05d}"
    if not pipe.passes_through(k) or decision_path(p["decisions"](seg.apply.name), shard.index).is_file():
        return None
    prev = p["seg"](k - 1) / f"{sid}.parquet"
    stats, splits = {}, {}
    if prev.is_file():
        target = p["data"] / f"all-{sid}.parquet"
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            target.unlink()
        os.link(prev, target)
        n = pq.read_metadata(target).num_rows
        stats[seg.apply.name] = {"in": n, "kept": n, "rejected": {}, "counters": {}}
        splits = {"all": target.name}
    return write_marker(work, k, {"shard": shard.index, "stages": stats, "splits": splits})


def run_segment_shard(pipe: Pipeline, k: int, shard: readers.Shard, work: Path) -> dict:
    """Run segment ``k`` over one shard, batch by batch. Returns its statistics (also written as its marker)."""
    done = pass_through_shard(pipe, k, shard, work)
    if done is not None:
        return done
    sp = ShardPass(pipe, k, shard.index, work)
    for batch, read_rejects in shard_source(pipe, k, shard, work):
        if k == 0:
            batch = sp.read(batch, read_rejects)
        for st in sp.ops:
            if batch.num_rows == 0:
                break
            batch = sp.run_stage(st, batch)
        if batch.num_rows == 0:
            continue
        if sp.seg.reduce is not None:
            sp.facts(batch)
        sp.write_rows(batch)
    splits = sp.close()
    return write_marker(work, k, {"shard": shard.index, "stages": sp.stats, "splits": splits})


# ----------------------------------------------------------------------------- the run


@dataclass
class RunResult:
    version: Version
    created: bool  # False when an identical version already existed
    manifest: dict
    seconds: float = 0.0


def _progress():
    from rich.console import Console
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn)

    console = Console(stderr=True, soft_wrap=True)
    if not console.is_terminal:
        console = Console(stderr=True, soft_wrap=True, width=160)
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[rows]} rows"), TimeElapsedColumn(),
                    console=console, transient=False, disable=not console.is_terminal), console


@reports_full_disk
def execute(plan: Plan, store: Store, **options) -> RunResult:
    """Run ``plan`` into ``store`` and publish the version (or find it already published).
    ``executor="ray"`` runs the segments on Ray Data and the reduce groupings as Ray shuffles
    (see :mod:`corpusmill.pipelines.ray_executor`). ``docs=False`` publishes without report.html
    and card.md (a refresh's intermediate run, whose version is merged into the one that gets them).
    ``profile``: a started :class:`corpusmill.profiling.ProcessTreeProfile`, whose figures go into
    stats.json under ``profile``.
    The version's lock is held throughout (:meth:`Store.building`): a second run of the same
    plan waits, then finds the version published; it never shares this run's work folder."""
    with store.building(plan.config.dataset, plan.version_id, quiet=options.get("quiet", False)):
        return _execute(plan, store, **options)


def _execute(plan: Plan, store: Store, *, workers: int = 1, tags: tuple[str, ...] = (), quiet: bool = False,
             executor: str = "local", ray_address: str | None = None, docs: bool = True,
             allow_empty: bool = False, profile=None) -> RunResult:
    from corpusmill.pipelines.executors import make_executor

    name, vid = plan.config.dataset, plan.version_id
    t0 = time.perf_counter()
    # serial, a process pool or Ray, with the work folder here or on the store's object store:
    # the loop below is the same for all (corpusmill.pipelines.executors)
    engine = make_executor(executor, store, name, vid, workers=workers, shards=len(plan.shards), ray_address=ray_address)
    if store.has_version(name, vid):
        version = store.version(name, vid)
        for tag in ("latest", *tags):
            store.set_ref(name, tag, vid)
        engine.discard()
        return RunResult(version, False, version.manifest)

    engine.prepare()
    work = engine.work
    plan.store_root = store.location  # a URL for a remote store: what a stage on any machine can open
    pipe = Pipeline(plan)
    p = _paths(work)
    timings: dict[str, float] = {}
    progress, console = _progress()
    engine.start(plan)
    all_stats: list[dict] = []
    try:
        with progress, remembered_texts():
            for k, seg in enumerate(pipe.segments):
                ts = time.perf_counter()
                label = _segment_label(pipe, k)
                task = progress.add_task(label, total=len(plan.shards), rows=0)
                results = engine.finished(k, plan.shards)  # by an earlier attempt: not redone
                todo = [shard for shard in plan.shards if shard.index not in results]
                progress.update(task, advance=len(results))
                rows = 0
                # the reduce's own loading (an earlier version's index) overlaps the map phase
                # (not when an earlier attempt finished this reduce: nothing would read what it loads)
                prepared = None
                if seg.reduce is not None and not (work / f"reduce-{seg.reduce.name}.done.json").is_file():
                    prepared = Background(seg.reduce.prepare)
                for r in engine.run_segment(pipe, k, todo) if todo else ():
                    results[r["shard"]] = r
                    rows += _rows_in(r)
                    progress.update(task, advance=1, rows=f"{rows:,}")
                all_stats.extend(results[i] for i in sorted(results))
                if k == 0:  # an input whose every row the reader rejected stops the run before publishing
                    readers.check_inputs_read(plan, results, p["rejects"])
                if prepared is not None:
                    prepared.wait()
                if seg.reduce is not None:
                    engine.reduce(seg.reduce, k, plan)
                timings[label] = round(time.perf_counter() - ts, 3)
                if not quiet and not console.is_terminal:  # logs: one line per segment instead of bars
                    total = sum(_rows_in(r) for r in results.values())
                    console.print(f"{label}: {len(plan.shards)} shards ({len(todo)} run, "
                                  f"{len(plan.shards) - len(todo)} resumed), {total:,} rows in, {timings[label]:.1f}s")
    finally:
        engine.close()

    # files the executor wrote on the store's filesystem (a remote work folder) are copied there, not uploaded
    remote_final = engine.final_sources()
    manifest = _finish(plan, pipe, work, all_stats)
    if not (allow_empty or plan.config.allow_empty_version):  # 0 kept rows: stop before publishing
        check_kept_rows(manifest, p["rejects"])
    seconds = time.perf_counter() - t0
    created = datetime.now(timezone.utc).isoformat(timespec="microseconds")
    stats = {"created_at": created, "seconds": round(seconds, 3),
             "workers": workers, "segments": timings,
             "rows_per_second": round(manifest["counts"]["input"] / seconds, 1) if seconds else None}
    if docs:
        publish_docs(Version(name, vid, p["final"]))
    if profile is not None:  # corpusmill run --profile: the whole process tree, up to publishing (corpusmill.profiling)
        stats["profile"] = profile.snapshot()
    atomic_write_text(p["final"] / "stats.json", json.dumps(stats, indent=2) + "\n")
    version = store.publish(name, vid, p["final"], remote_sources=remote_final)
    for tag in ("latest", *tags):
        store.set_ref(name, tag, vid)
    engine.discard()
    return RunResult(version, True, manifest, seconds)


class Background:
    """``fn()`` on a thread; :meth:`wait` joins it and raises what it raised."""

    def __init__(self, fn) -> None:
        self.error: BaseException | None = None

        def run() -> None:
            try:
                fn()
            except BaseException as err:  # noqa: BLE001 - handed to the waiting thread
                self.error = err

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def wait(self) -> None:
        self.thread.join()
        if self.error is not None:
            raise self.error


def _rows_in(result: dict) -> int:
    st = result["stages"]
    first = st.get(readers.READ_STAGE) or next(iter(st.values()), None)
    return first["in"] if first else 0


def _segment_label(pipe: Pipeline, k: int) -> str:
    seg = pipe.segments[k]
    names = ([readers.READ_STAGE] if k == 0 else []) + ([seg.apply.name] if seg.apply else [])
    names += [s.name for s in seg.maps] + ([f"{seg.reduce.name} (map)"] if seg.reduce else [])
    return f"[{k + 1}/{len(pipe.segments)}] " + " > ".join(names)


def _run_reduce(stage: ReduceStage, k: int, plan: Plan, work: Path, groupby=None) -> None:
    """The global step of ``stage`` over segment ``k``'s facts in the work folder ``work``;
    ``groupby``: the executor's grouping engine for the stages that use one
    (:mod:`corpusmill.grouping`), None = in process. (A work folder on an object store has its
    own: :func:`~corpusmill.pipelines.ray_executor.run_remote_reduce`.)"""
    p = _paths(work)
    marker = work / f"reduce-{stage.name}.done.json"
    if marker.is_file():
        return
    decisions = p["decisions"](stage.name)
    index = p["index"] / stage.name
    shutil.rmtree(decisions, ignore_errors=True)
    shutil.rmtree(index, ignore_errors=True)
    decisions.mkdir(parents=True)
    facts_dir = p["facts"](stage.name)
    facts = [(facts_dir / f"{s.index:05d}.parquet") for s in plan.shards]
    rows = [p["seg"](k) / f"{s.index:05d}.parquet" for s in plan.shards]
    stage.rows_files = [r if r.is_file() else None for r in rows]
    stage.groupby = groupby
    counters = stage.reduce([f if f.is_file() else None for f in facts], decisions, index)
    atomic_write_text(marker, json.dumps(counters or {}, sort_keys=True))


def check_kept_rows(manifest: dict, rejects_dir: Path) -> None:
    """Stop a run whose stages rejected every row (exit 2) before it publishes an empty version
    with exit 0, which hides a mistake (a filter too strict, a mapping wrong): the message names
    the stage and reason that rejected most, with an example. ``allow_empty_version: true`` in
    the pipeline publishes anyway (it is not part of the version id, so the rerun resumes this
    run's finished work, which is left in place for it and for inspecting the rejects).

    Not stopped: a run whose rows all reached a dedup step with ``against`` and were all
    duplicates of that earlier version. Nothing new came in, which is an answer, not a mistake
    (a refresh's run on its new rows is never stopped either)."""
    from corpusmill.errors import CorpusmillError

    counts = manifest["counts"]
    if counts["kept"] or not counts["input"] + counts.get("added", 0):
        return
    if any(st["in"] and st.get("counters", {}).get("duplicates_of_against") == st["in"] for st in manifest["stages"]):
        return
    by_stage = {st["name"]: st["rejected"] for st in manifest["stages"] if st["rejected"]}
    if not by_stage:  # (no rows rejected and none kept cannot pass the accounting check)
        return
    (stage, reason), count = max((((s, r), n) for s, rs in by_stage.items() for r, n in rs.items()), key=lambda x: x[1])
    example = None
    for f in sorted(rejects_dir.glob(f"{stage}-*.parquet")):
        rows = pq.read_table(f, columns=[S.SOURCE, S.REASON, S.DETAIL]).to_pylist()
        example = next((r for r in rows if r[S.REASON] == reason), None)
        if example:
            break
    detail = example[S.DETAIL] if example else None
    shown = f", e.g. {example[S.SOURCE]}: {detail if len(detail) <= 300 else detail[:300] + '...'}" if detail else ""
    per_stage = "; ".join(f"{s} rejected {sum(rs.values()):,}" for s, rs in by_stage.items())
    fix = readers.reason_fix(reason) if stage == readers.READ_STAGE else \
        f"check the options of the step '{stage}' against the rejected rows in {rejects_dir}"
    raise CorpusmillError(
        f"every row was rejected ({counts['input']:,} rows in, 0 kept: {per_stage}), so there is nothing to publish. "
        f"Most by stage '{stage}': {reason} ({count:,} rows){shown}. Likely fix: {fix}. Nothing was published. "
        "(To publish the empty version anyway, set allow_empty_version: true at the top level of the pipeline; "
        "the rerun resumes this run's finished work.)")


def _finish(plan: Plan, pipe: Pipeline, work: Path, shard_stats: list[dict]) -> dict:
    """Merge statistics, check the accounting, write the manifest into the final folder."""
    p = _paths(work)
    stages = {n: _stage_stats() for n in pipe.stage_names}
    for r in shard_stats:
        for n, st in r["stages"].items():
            agg = stages[n]
            agg["in"] += st["in"]
            agg["kept"] += st["kept"]
            if st.get("added"):
                agg["added"] = agg.get("added", 0) + st["added"]
            for key in ("rejected", "counters"):
                for reason, v in st[key].items():
                    agg[key][reason] = agg[key].get(reason, 0) + v
    for stage in pipe.stages:
        if stage.needs_reduce:
            marker = work / f"reduce-{stage.name}.done.json"
            for key, v in json.loads(marker.read_text()).items():
                stages[stage.name]["counters"][key] = v
    # rows in = kept + rejected for every stage, and each stage gets what the one before kept
    names = pipe.stage_names
    for i, n in enumerate(names):
        st = stages[n]
        if st["in"] + st.get("added", 0) != st["kept"] + sum(st["rejected"].values()):
            raise AccountingError(f"stage '{n}': {st}")
        if i and st["in"] != stages[names[i - 1]]["kept"]:
            raise AccountingError(f"stage '{n}' received {st['in']} rows, '{names[i-1]}' kept {stages[names[i-1]]['kept']}")
    splits: dict[str, int] = {}
    label_counts: dict[str, Counter] = {}
    files: dict[str, dict] = {}
    schema = None
    for folder in ("data", "rejects", "index"):
        for f in sorted(p[folder].rglob("*")) if p[folder].is_dir() else []:
            if not f.is_file():
                continue
            rel = str(f.relative_to(p["final"]))
            entry = {"bytes": f.stat().st_size, "sha256": file_sha256(f)}
            if folder in ("data", "rejects"):
                meta = pq.read_metadata(f)
                entry["rows"] = meta.num_rows
                if folder == "data":
                    split = f.name.rsplit("-", 1)[0]
                    splits[split] = splits.get(split, 0) + meta.num_rows
                    schema = schema or pq.read_schema(f)
                    if S.LABEL in schema.names:
                        labels = pq.read_table(f, columns=[S.LABEL]).column(S.LABEL).to_pylist()
                        label_counts.setdefault(split, Counter()).update("" if x is None else x for x in labels)
            files[rel] = entry
    kept = stages[names[-1]]["kept"]
    if sum(splits.values()) != kept:
        raise AccountingError(f"data files hold {sum(splits.values())} rows, the last stage kept {kept}")
    if not splits:
        splits = {"all": 0}
    if schema is None:
        schema = pipe.schema
    total_in = stages[readers.READ_STAGE]["in"]
    rejected = {n: dict(sorted(st["rejected"].items())) for n, st in stages.items() if st["rejected"]}
    added = sum(st.get("added", 0) for st in stages.values())
    if total_in + added != kept + sum(sum(r.values()) for r in rejected.values()):
        raise AccountingError("input rows + added rows != kept + rejected")
    inputs = []
    for i, spec in enumerate(plan.config.inputs):
        inputs.append({
            "path": spec.path, "format": spec.format, "license": spec.license, "source": spec.source,
            "files": [{"name": f.name, "format": f.format, "compression": f.compression, "bytes": f.size, "sha256": d}
                      for f, d in zip(plan.files, plan.digests) if f.input_index == i],
        })
    manifest = {
        "format": MANIFEST_FORMAT,
        "dataset": plan.config.dataset,
        "version": plan.version_id,
        "parent": None,
        "code_version": __version__,
        "seed": plan.config.seed,
        "inputs": inputs,
        "config": plan.resolved,
        "counts": {"input": total_in, "kept": kept, "rejected": rejected, **({"added": added} if added else {})},
        "stages": [{"name": n, **stages[n]} for n in names],
        "splits": dict(sorted(splits.items())),
        # rows per label in each split ("" = no label); present when the rows have labels
        "label_counts": {s: dict(sorted(c.items())) for s, c in sorted(label_counts.items())},
        "schema": [{"name": f.name, "type": str(f.type)} for f in schema if f.name != S.SPLIT],
        "shards": len(plan.shards),
        "files": files,
    }
    p["final"].mkdir(parents=True, exist_ok=True)
    atomic_write_text(p["final"] / "manifest.json", json.dumps(manifest, indent=2, sort_keys=False) + "\n")
    return manifest
