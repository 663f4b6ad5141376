"""``corpusmill audit``: leakage between splits (or files, or public benchmarks), with evidence.

Sides are files (any reader format) or ``NAME@REF[:split]``. The evaluation side of each pair is
indexed in memory; the training side is streamed in batches.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from corpusmill import schema as S
from corpusmill.dataprep.leakage import LeakIndex, PairReport, audit_pair, label_conflicts_within
from corpusmill.errors import CorpusmillError
from corpusmill.store import Store, Version

SPLIT_ORDER = ("train", "validation", "dev", "test")


@dataclass
class Side:
    """One side of an audit: a name for the report and a way to read its rows in batches."""

    name: str
    batches: callable  # () -> Iterator[pa.Table] with id, text and (optionally) label
    version: Version | None = None
    split: str | None = None

    def table(self) -> pa.Table:
        parts = [b.select([c for c in (S.ID, S.TEXT, S.LABEL) if c in b.column_names]) for b in self.batches()]
        if not parts:
            return pa.table({S.ID: pa.array([], pa.string()), S.TEXT: pa.array([], pa.string())})
        return pa.concat_tables(parts, promote_options="permissive")


def _file_side(name: str, path: str, text_field: str, label_field: str | None, id_field: str | None) -> Side:
    from corpusmill.dataprep import readers
    from corpusmill.pipelines.config import InputSpec

    spec = InputSpec(path=path, text_field=text_field, label_field=label_field, id_field=id_field, max_text_bytes=0)
    base = Path.cwd()
    problems = readers.check_input_paths([spec], base)
    if problems:
        raise CorpusmillError(f"{name}: " + "; ".join(p.split(": ", 1)[1] for p in problems))
    files = readers.resolve_files([spec], base)
    shards, _ = readers.plan_shards(files, [spec], 1 << 40)
    schema = readers.record_schema_for([spec])

    def batches() -> Iterator[pa.Table]:
        for shard in shards:
            for table, _rejects in readers.read_shard(shard, spec, schema, 8192):
                if table is not None and table.num_rows:
                    yield table
    return Side(name, batches)


def _version_side(name: str, version: Version, split: str) -> Side:
    if split not in version.splits():
        raise CorpusmillError(f"{version.ref} has no split '{split}'; splits: {', '.join(version.splits())}")
    cols = [c for c in (S.ID, S.TEXT, S.LABEL) if c in version.schema().names]

    def batches() -> Iterator[pa.Table]:
        for rb in version.iter_batches(split, columns=cols):
            yield pa.Table.from_batches([rb])
    return Side(name, batches, version, split)


def resolve_side(spec: str, store: Store, *, default_split: str, text_field: str, label_field: str | None,
                 id_field: str | None = None) -> Side:
    """A file/glob, or NAME@REF[:split] (the split defaults to ``default_split``)."""
    if "@" in spec and not os.path.exists(spec):
        ref, _, split = spec.partition(":")
        return _version_side(f"{split or default_split}", store.resolve(ref), split or default_split)
    return _file_side(spec, spec, text_field, label_field, id_field)


def order_splits(splits: list[str]) -> list[str]:
    known = [s for s in SPLIT_ORDER if s in splits]
    return known + sorted(s for s in splits if s not in known)


@dataclass
class AuditResult:
    report: dict
    pairs: list[PairReport]


def run_audit(pairs: list[tuple[Side, Side]], *, ngram: int = 13, threshold: float = 0.8,
              checks: tuple[str, ...] = ("exact", "near", "ngram"), within: list[Side] = ()) -> AuditResult:
    """Audit each (evaluation side, training side) pair; report label conflicts within ``within`` too."""
    reports = []
    available = tuple(c for c in checks if c in LeakIndex.available_checks())
    indexes: dict[str, LeakIndex] = {}
    for eval_side, train_side in pairs:
        if eval_side.name not in indexes:
            indexes[eval_side.name] = LeakIndex.build(eval_side.table(), ngram=ngram, threshold=threshold, checks=available)
        reports.append(audit_pair(indexes[eval_side.name], eval_side.name, train_side.name, train_side.batches()))
    conflicts = [c for r in reports for c in r.label_conflicts]
    for side in within:
        conflicts += label_conflicts_within(side.name, side.table())
    hits: dict[str, list] = {"exact": [], "near": [], "ngram": []}
    for r in reports:
        for check, items in r.hits.items():
            hits[check] += [{k: v for k, v in h.items() if k != "_row"} for h in items]
    summaries = {f"{r.eval_name} vs {r.train_name}": r.summary() for r in reports}
    report = {
        "checks": list(available), "ngram_length": ngram, "threshold": threshold,
        **hits, "label_conflicts": conflicts,
        "summary": {"pairs": summaries, "label_conflicts": len(conflicts),
                    "max_contamination_rate": max((x["contamination_rate"] for x in summaries.values()), default=0.0)},
    }
    return AuditResult(report, reports)


def markdown_summary(report: dict) -> str:
    lines = ["| test split | train split | test rows | exact | near | ngram | any | contamination | label conflicts |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for s in report["summary"]["pairs"].values():
        lines.append(f"| {s['test_split']} | {s['train_split']} | {s['test_rows']:,} | {s['exact']:,} | {s['near']:,} | "
                     f"{s['ngram']:,} | {s['any']:,} | {100 * s['contamination_rate']:.2f}% | {s['label_conflicts']:,} |")
    lines.append(f"\nlabel conflicts in all: {report['summary']['label_conflicts']:,} "
                 f"(checks: {', '.join(report['checks'])}; n-gram length {report['ngram_length']})")
    for check in ("exact", "near", "ngram"):
        for h in report[check][:3]:
            lines.append(f"- {check}: test {h['test_id']} ~ train {h['train_id']}: {h['why']}\n"
                         f"    test:  {h['test_text']!r}\n    train: {h['train_text']!r}")
    for c in report["label_conflicts"][:3]:
        lines.append(f"- label conflict ({c['scope']}, {c['match']}): {c['split_a']}/{c['id_a']}={c['label_a']!r} vs "
                     f"{c['split_b']}/{c['id_b']}={c['label_b']!r}: {c['text_a']!r}")
    return "\n".join(lines)
