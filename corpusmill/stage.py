"""The stage protocol. A stage implements only its own logic; the executor owns the loop.

Two shapes (see DESIGN.md):

* :class:`Stage` -- map: a batch in, the kept batch and the rejected batch out.
* :class:`ReduceStage` -- map + reduce: :meth:`ReduceStage.map_facts` computes per-row facts
  (a signature, a hash) for every shard, :meth:`ReduceStage.reduce` decides globally and writes a
  decision per shard, and :meth:`ReduceStage.apply` applies it to each shard.

A filter that only needs a yes/no per row subclasses :class:`Filter` and writes ``keep``.
Every rejected row carries ``stage`` and ``reason``; the executor checks rows in = kept + rejected
(plus ``added`` on the in side for a stage that creates rows, such as ``augment``).
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict

from corpusmill.schema import make_rejects


class StageConfig(BaseModel):
    """Base of every stage's options: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass
class StageOutput:
    """What a stage returns for one batch."""

    kept: pa.Table
    rejected: pa.Table | None = None
    #: extra per-kind counts for the statistics, e.g. ``{"html_stripped": 3}``; merged over shards
    counters: dict[str, int] = field(default_factory=dict)
    #: rows this stage created (``augment``): they are among ``kept`` or ``rejected``, so the
    #: executor checks rows in + added = kept + rejected
    added: int = 0


#: cores the shard task running in this process may use (see :func:`task_cores`)
_TASK_CORES = 1


def task_cores() -> int:
    """How many cores the shard task running in this process may use: the run's ``--workers``
    when its shards run one after another in the command's process (an input of a single shard),
    else 1 (one worker process per core). Set by the executor (:func:`set_task_cores`). A stage
    may size a thread pool by it only where the thread count cannot change its output."""
    return _TASK_CORES


def set_task_cores(n: int) -> int:
    """Set :func:`task_cores` for this process; returns the value it replaces, to put back."""
    global _TASK_CORES
    previous, _TASK_CORES = _TASK_CORES, max(1, int(n))
    return previous


@dataclass(frozen=True)
class BatchInfo:
    """Where a batch sits: its shard and the position of its first row in that shard's rows
    as this stage sees them (stable across worker counts, so decisions can be keyed on it)."""

    shard: int
    row_offset: int


@dataclass(frozen=True)
class RunInfo:
    """Run-wide facts a stage may use."""

    dataset: str
    seed: int
    #: the store the version is published to; stages that read earlier versions resolve refs here
    store_root: str | None = None
    #: the pipeline file's folder: relative paths in stage options are relative to it
    base_dir: str | None = None


class Stage:
    """A map stage. Subclasses set ``kind`` and ``Config`` and implement :meth:`process`."""

    #: the key that selects this stage in a pipeline's ``steps``
    kind: ClassVar[str] = ""
    Config: ClassVar[type[StageConfig]] = StageConfig
    #: bump when the stage's output changes for the same config: it is part of the version id
    version: ClassVar[int] = 1

    def __init__(self, config: StageConfig, *, name: str, run: RunInfo) -> None:
        self.config = config
        self.name = name
        self.run = run

    def identity(self) -> dict | list | str | None:
        """The content of what the stage reads besides its rows and config (a file's hash, a
        resolved dataset version), as a JSON value; make_plan puts it in the version id, so a
        changed file gives a new version. None (the default): nothing else is read. Keep
        construction and this call cheap: heavy loading belongs in the first batch."""
        return None

    def check(self, schema: pa.Schema) -> list[str]:
        """Problems with this stage's options given the schema of the rows it will see (a ``fields``
        option naming a column the rows lack), as messages; make_plan reports every stage's at once
        before anything runs. Default: none."""
        return []

    def resolve(self, schema: pa.Schema) -> StageConfig:
        """The config as it runs on rows of ``schema``: options whose default depends on the rows
        (quality's preset: sft on instruction and chat rows, fineweb on text) filled in. make_plan
        records it in the manifest and the version id, and the workers build the stage from it.
        Default: the config unchanged."""
        return self.config

    @property
    def needs_reduce(self) -> bool:
        """True when the stage runs as map_facts/reduce/apply. A ReduceStage may return False for
        configs that need no global step (the runner then calls :meth:`process`)."""
        return False

    def output_fields(self, schema: pa.Schema) -> pa.Schema:
        """Schema of the kept rows given the input schema. Default: unchanged."""
        return schema

    def process(self, batch: pa.Table, info: BatchInfo) -> StageOutput:
        raise NotImplementedError(f"stage {self.kind!r} must implement process()")

    def reject(self, rows: pa.Table, reason, **kw) -> pa.Table:
        return make_rejects(rows, stage=self.name, reason=reason, **kw)

    def split(self, batch: pa.Table, keep: np.ndarray, reasons, details=None, counters=None) -> StageOutput:
        """Split ``batch`` by a boolean ``keep`` mask; ``reasons`` is one string or one per
        dropped row (in row order), likewise ``details``."""
        keep = np.asarray(keep, dtype=bool)
        mask = pa.array(keep)
        kept = batch.filter(mask)
        dropped = batch.filter(pc.invert(mask))
        rejected = self.reject(dropped, reasons, detail=details) if dropped.num_rows else None
        return StageOutput(kept, rejected, dict(counters or {}))


class Filter(Stage):
    """A map stage that keeps or drops rows. Implement :meth:`keep`."""

    def keep(self, batch: pa.Table) -> tuple[np.ndarray, list[str] | str]:
        """Return a boolean mask of rows to keep and, for the dropped rows in order, their reasons
        (or one reason for all)."""
        raise NotImplementedError

    def process(self, batch: pa.Table, info: BatchInfo) -> StageOutput:
        mask, reasons = self.keep(batch)
        return self.split(batch, mask, reasons)


class ReduceStage(Stage):
    """A map + reduce stage."""

    #: set by the executor before :meth:`reduce`: shard k's rows as this stage's map saw them
    #: (the rows its facts describe, same order), or None; a reduce that needs a few rows' full
    #: content (e.g. to verify candidate pairs) reads them here instead of copying them into facts
    rows_files: list[Path | None] | None = None
    #: set by the executor before :meth:`reduce`: the engine for big groupings of the facts
    #: (:mod:`corpusmill.grouping`; the Ray executor's runs them on the cluster); None: the
    #: stage groups in this process its own way
    groupby = None

    @property
    def needs_reduce(self) -> bool:
        return True

    def map_facts(self, batch: pa.Table, info: BatchInfo) -> pa.Table | None:
        """Per-row facts for the global decision, one row per input row (or None)."""
        raise NotImplementedError

    def prepare(self) -> None:
        """Load what :meth:`reduce` reads besides the facts (an earlier version's index). The
        executor calls it on a thread while the map phase runs, so loading and mapping overlap;
        it must not depend on the facts. Default: nothing."""

    def reduce(self, facts: list[Path | None], decisions: Path, index: Path) -> dict[str, int]:
        """Decide globally.

        ``facts[k]`` is shard k's facts file (None when the shard produced no rows). Write the
        decision for shard k to ``decision_path(decisions, k)`` and anything later versions or
        audits reuse under ``index``. Returns counters for the manifest.
        """
        raise NotImplementedError

    def apply(self, batch: pa.Table, info: BatchInfo, decision: pa.Table | None) -> StageOutput:
        """Apply the decision for this batch's shard (``decision`` as read from its file)."""
        raise NotImplementedError

    def undecided(self, batch: pa.Table) -> pa.Table | None:
        """What :meth:`apply` makes of rows no decision touches, where that depends on the rows
        alone (and applying it twice changes nothing); None (the default) where it does not.

        When the stage's apply is all the last segment does, the segment before writes its rows
        through this, and a shard whose decision touches no row is published as that segment
        wrote it instead of being read and written again."""
        return None

    def process(self, batch: pa.Table, info: BatchInfo) -> StageOutput:  # pragma: no cover
        raise TypeError(f"stage {self.kind!r} needs its reduce step; override process() if needs_reduce can be False")


def per_shard(fn, items: list) -> list:
    """``[fn(k, item) for k, item in enumerate(items)]`` on a few threads: reading, decompressing
    and writing Parquet release the GIL, so the shards (or files) of a global step overlap.
    Results come back in order, so nothing depends on which thread finished first."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1))) as pool:
        return list(pool.map(fn, range(len(items)), items))


def read_parquet(path, columns: list[str] | None = None, row_group: int | None = None) -> pa.Table:
    """``columns`` of one Parquet file (or of one of its row groups), decoded on the calling
    thread: the reader for the body of a :func:`per_shard` function (``pq.read_table`` would start
    Arrow's own threads on top, and goes through the dataset layer: on 2 cores that is ~1.5x
    slower for a column of text)."""
    with pq.ParquetFile(path) as f:
        if row_group is not None:
            return f.read_row_group(row_group, columns=columns, use_threads=False)
        return f.read(columns=columns, use_threads=False)


def decision_path(decisions: Path, shard: int) -> Path:
    return Path(decisions) / f"shard-{shard:05d}.parquet"


def batch_decision(decision: pa.Table | None, info: "BatchInfo", n: int) -> pa.Table | None:
    """The rows of a shard's decision (sorted by ``row``, the row's position in the shard) that
    fall in the batch of ``n`` rows starting at ``info.row_offset``; None when there are none."""
    if decision is None or decision.num_rows == 0:
        return None
    rows = decision.column("row").to_numpy()
    a, b = np.searchsorted(rows, [info.row_offset, info.row_offset + n])
    return decision.slice(a, b - a) if a < b else None


def read_facts(facts: list[Path | None], columns: list[str] | None = None) -> pa.Table | None:
    """Every shard's facts (``columns``, default all) in one table, with a ``shard`` column
    (int32); None when no shard wrote any (all shards empty)."""
    parts = []
    for shard, path in enumerate(facts):
        if path is not None:
            t = pq.read_table(path, columns=columns)
            parts.append(t.append_column("shard", pa.array(np.full(t.num_rows, shard, dtype=np.int32))))
    return pa.concat_tables(parts) if parts else None


def write_decisions(decisions: Path, per_shard: dict[int, pa.Table]) -> None:
    Path(decisions).mkdir(parents=True, exist_ok=True)
    for shard, table in per_shard.items():
        pq.write_table(table, decision_path(decisions, shard), compression="zstd")


def manifest_steps(manifest: dict):
    """(name, kind, resolved options) of each step a manifest records, named as the runner names
    stages (the kind, then ``kind_2``, ``kind_3``... for repeats)."""
    seen: dict[str, int] = {}
    for step in manifest.get("config", {}).get("steps", []):
        if not isinstance(step, dict) or len(step) != 1:
            continue
        (kind, options), = step.items()
        seen[kind] = seen.get(kind, 0) + 1
        yield (kind if seen[kind] == 1 else f"{kind}_{seen[kind]}"), kind, options or {}


def merge_counts(into: dict, other: dict) -> dict:
    """Merge nested count dicts: numbers add up, dicts merge recursively."""
    for k, v in other.items():
        if isinstance(v, dict):
            merge_counts(into.setdefault(k, {}), v)
        else:
            into[k] = into.get(k, 0) + v
    return into


def count_reasons(rejected: pa.Table | None) -> Counter:
    if rejected is None or rejected.num_rows == 0:
        return Counter()
    return Counter(rejected.column("reason").to_pylist())
