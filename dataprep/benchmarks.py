"""Benchmark files for ``decontaminate`` and ``audit``: which rows, which of their fields, named how.

A benchmark is given as a plain string (a file, folder or glob in any reader format, or
``NAME@REF[:split]``; its text is the stage's ``text_field``) or as a mapping::

    {path: HumanEval.jsonl.gz, fields: [prompt, canonical_solution], id_field: task_id, name: humaneval}

Every listed field of every benchmark row becomes one indexed string (an *entry*), so a training
response that repeats a canonical solution is an exact match, and evidence names the benchmark row
by its own id and field (``humaneval:HumanEval/12``, ``canonical_solution``), not by a generated
one. Rows without an ``id_field`` are named ``<file>:<row number>``.

JSON files are read whole here (benchmarks are small): JSON Lines, a JSON array of objects, or an
object holding the list under one key, plain or gzip/zstd-compressed; CSV, TSV and Parquet through
pyarrow; text files and Hugging Face folders through the input readers (one field, ``text``).
Non-string values are indexed as their JSON (a list of strings, such as multiple-choice options,
one per line). A field that no row of a file has, an ``id_field`` a row lacks, or a broken JSON
line stops with an error naming the file, the row and the fix.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from corpusmill import schema as S
from corpusmill.dataprep.audit import Side
from corpusmill.dataprep.leakage import ROWS_META, field_strings, table_rows
from corpusmill.errors import CorpusmillError
from corpusmill.safeyaml import short_repr

#: benchmark strings of fewer words are not indexed by default (see ``min_words``)
MIN_WORDS = 4
#: formats read here, every field at hand ("json": a .json file, which may hold JSON Lines too)
_OWN_FORMATS = ("jsonl", "json", "csv", "tsv", "parquet")


class BenchmarkSpec(BaseModel):
    """One benchmark: where it is, which of its fields hold text to look for, what names its rows."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str = Field(description="file, folder or glob (relative to the pipeline file), or NAME@REF[:split] "
                      "(the split defaults to test)")
    fields: list[str] | None = Field(
        None, min_length=1, description="fields of the benchmark rows whose text is looked for, each on its own "
        "(question and answer, prompt and canonical_solution); default: the stage's text_field, or for a "
        "dataset version its trained fields")
    id_field: str | None = Field(None, description="field naming each row in evidence (task_id gives "
                                 "'HumanEval/12'); default: '<file>:<row number>', or a version's row id")
    name: str | None = Field(None, description="the benchmark's name in evidence and counts; default: the path")

    @field_validator("path")
    @classmethod
    def _path_not_empty(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("benchmark paths must not be empty")
        return v

    @property
    def label(self) -> str:
        return self.name or self.path


def parse_benchmark(value: str | dict | BenchmarkSpec) -> BenchmarkSpec:
    """A benchmark given as a path, a mapping, or (on the command line) a YAML mapping string
    such as ``'{path: h.jsonl, id_field: task_id}'``."""
    if isinstance(value, BenchmarkSpec):
        return value
    if isinstance(value, str) and value.lstrip().startswith("{"):
        import yaml

        from corpusmill.safeyaml import safe_load, shorten

        try:
            value = safe_load(value)
        except yaml.YAMLError as err:
            raise CorpusmillError(f"benchmark {shorten(repr(value))} is not a YAML mapping: {shorten(str(err))}") from None
    if isinstance(value, str):
        return BenchmarkSpec(path=value)
    try:
        return BenchmarkSpec.model_validate(value)
    except ValidationError as err:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'benchmark'}: {e['msg']}" for e in err.errors())
        raise CorpusmillError(f"benchmark {short_repr(value)}: {problems} (keys: path, fields, id_field, name)") from None


@dataclass
class Benchmark:
    """A benchmark read: one entry per (row, field) with text."""

    name: str
    #: id (the row's), text, field, row (the row's position in the benchmark), label (when asked)
    entries: pa.Table
    rows: int
    #: entries left out for having fewer than ``min_words`` words
    short: int = 0

    def side(self, name: str | None = None) -> Side:
        """This benchmark as the evaluation side of an audit pair."""
        entries = self.entries

        class _Entries(Side):
            def table(self) -> pa.Table:
                return entries

        return _Entries(name or self.name, lambda: iter([entries]))


def load_benchmark(spec: BenchmarkSpec, *, base_dir: Path | str | None = None, store=None, text_field: str = "text",
                   label_field: str | None = None, min_words: int = MIN_WORDS) -> Benchmark:
    """Read a benchmark's entries. ``text_field`` is the field of a spec that lists none;
    ``min_words``: strings of fewer words are left out (0 or 1 keeps all)."""
    base = Path(base_dir or ".")
    path = spec.path if os.path.isabs(spec.path) else str(base / spec.path)
    if "@" in spec.path and not os.path.exists(path):
        entries, rows = _version_entries(spec, store, label_field)
    else:
        entries, rows = _file_entries(spec, path, base, spec.fields or [text_field], label_field)
    short = 0
    if min_words > 1 and entries.num_rows:
        words = pc.list_value_length(pc.utf8_split_whitespace(entries.column(S.TEXT))).to_numpy(zero_copy_only=False)
        keep = words >= min_words
        short = int((~keep).sum())
        if short:
            entries = entries.filter(pa.array(keep))
    entries = entries.replace_schema_metadata({ROWS_META: str(rows).encode()})
    return Benchmark(spec.label, entries, rows, short)


def identity(spec: BenchmarkSpec, *, base_dir: Path | str | None, store) -> list:
    """What a benchmark's content is, for a version id: a version's ref and split, or every
    file's name and sha256."""
    from corpusmill.dataprep.readers import expand_input
    from corpusmill.hashing import file_sha256
    from corpusmill.pipelines.config import InputSpec

    base = Path(base_dir or ".")
    path = spec.path if os.path.isabs(spec.path) else str(base / spec.path)
    if "@" in spec.path and not os.path.exists(path):
        ref, _, split = spec.path.partition(":")
        return [spec.label, store.resolve(ref).ref, split or "test"]
    files = expand_input(InputSpec(path=path), base)
    return [spec.label, [[name, file_sha256(p)] for p, name in files]]


# ----------------------------------------------------------------------------- files


def _file_entries(spec: BenchmarkSpec, path: str, base: Path, fields: list[str],
                  label_field: str | None) -> tuple[pa.Table, int]:
    from corpusmill.dataprep import readers
    from corpusmill.pipelines.config import InputSpec

    input_spec = InputSpec(path=path, text_field=fields[0], id_field=spec.id_field, label_field=label_field,
                           max_text_bytes=0)
    problems = readers.check_input_paths([input_spec], base)
    if problems:
        raise CorpusmillError(f"benchmark '{spec.label}': " + "; ".join(p.split(": ", 1)[-1] for p in problems))
    ids: list[str] = []
    texts: list[str] = []
    names: list[str] = []
    rows: list[int] = []
    labels: list[str | None] = []
    n = 0
    for f in readers.resolve_files([input_spec], base):
        if f.format not in _OWN_FORMATS:
            t, file_rows = _reader_entries(spec, f, input_spec, fields)
            ids += t.column(S.ID).to_pylist()
            texts += t.column(S.TEXT).to_pylist()
            names += [fields[0]] * t.num_rows
            rows += [n + r for r in range(t.num_rows)]
            labels += t.column(S.LABEL).to_pylist() if S.LABEL in t.column_names else [None] * t.num_rows
            n += file_rows
            continue
        where = f"benchmark '{spec.label}' ({f.name})"
        present = dict.fromkeys(fields, 0)
        keys: set[str] = set()
        for number, row in _file_rows(f, where):
            keys.update(row)
            if spec.id_field is not None:
                rid = row.get(spec.id_field)
                if rid is None or rid == "":
                    have = ", ".join(sorted(row)) or "none"
                    raise CorpusmillError(f"{where}: row {number} has no id_field '{spec.id_field}' (its fields: {have}); "
                                          "name a field every row has, or leave id_field out to name rows <file>:<row>")
                rid = rid if isinstance(rid, str) else _as_text(rid)
            else:
                rid = f"{f.name}:{number}"
            label = row.get(label_field) if label_field else None
            for field in fields:
                if field in row:
                    present[field] += 1
                    value = _as_text(row[field])
                    if value:
                        ids.append(rid)
                        texts.append(value)
                        names.append(field)
                        rows.append(n)
                        labels.append(None if label is None else _as_text(label))
            n += 1
        missing = [f_ for f_, c in present.items() if c == 0]
        if missing and keys:
            raise CorpusmillError(f"{where}: no row has field {', '.join(repr(m) for m in missing)}; its rows have "
                                  f"{', '.join(sorted(keys))} (set fields: [...] in the benchmark's entry)")
    if n == 0:
        raise CorpusmillError(f"benchmark '{spec.label}': {spec.path} holds no rows")
    columns = {S.ID: pa.array(ids, pa.string()), S.TEXT: pa.array(texts, pa.string()),
               "field": pa.array(names, pa.string()), "row": pa.array(rows, pa.int64())}
    if label_field:
        columns[S.LABEL] = pa.array(labels, pa.string())
    return pa.table(columns), n


def _as_text(value) -> str:
    """A benchmark value as the text to look for: strings as they are, a list of strings one per
    line (multiple-choice options), anything else as its JSON."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return "\n".join(value)
    return orjson.dumps(value).decode()


def _file_rows(f, where: str) -> Iterator[tuple[int, dict]]:
    """(row number from 1, row) of a JSON, CSV, TSV or Parquet file."""
    from corpusmill.dataprep.readers import Shard, StreamBroken, iter_chunks

    try:
        data = b"".join(iter_chunks(Shard(0, f)))
    except StreamBroken as err:
        raise CorpusmillError(f"{where}: {err.detail}") from None
    if f.format == "parquet":
        import pyarrow.parquet as pq

        yield from enumerate(pq.read_table(io.BytesIO(data)).to_pylist(), 1)
        return
    if f.format in ("csv", "tsv"):
        import pyarrow.csv as pcsv

        table = pcsv.read_csv(io.BytesIO(data), parse_options=pcsv.ParseOptions(delimiter="\t" if f.format == "tsv" else ","))
        yield from enumerate(table.to_pylist(), 1)
        return
    data = data.removeprefix(b"\xef\xbb\xbf")
    head = data.lstrip()[:1]
    if head in (b"[", b"{"):
        try:
            whole = orjson.loads(data)
        except orjson.JSONDecodeError as err:
            if head == b"[":
                raise CorpusmillError(f"{where}: not valid JSON: {err}") from None
            whole = None  # JSON Lines
        if isinstance(whole, dict):
            lists = [k for k, v in whole.items() if isinstance(v, list) and v and all(isinstance(x, dict) for x in v)]
            if len(lists) == 1:  # an object holding the rows under one key
                whole = whole[lists[0]]
            else:
                whole = [whole]  # one row of JSON Lines
        if whole is not None:
            for number, row in enumerate(whole, 1):
                if not isinstance(row, dict):
                    raise CorpusmillError(f"{where}: element {number} is {type(row).__name__}, not an object")
                yield number, row
            return
    for number, line in enumerate(data.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = orjson.loads(line)
        except orjson.JSONDecodeError as err:
            raise CorpusmillError(f"{where}: line {number} is not valid JSON: {err}") from None
        if not isinstance(row, dict):
            raise CorpusmillError(f"{where}: line {number} is {type(row).__name__}, not an object")
        yield number, row


def _reader_entries(spec: BenchmarkSpec, f, input_spec, fields: list[str]) -> tuple[pa.Table, int]:
    """A text file or Hugging Face folder through the input readers: one field."""
    from corpusmill.dataprep import readers

    if len(fields) > 1:
        raise CorpusmillError(f"benchmark '{spec.label}' ({f.name}): several fields need a JSON, CSV or Parquet "
                              f"file; a {f.format} benchmark has one text field")
    schema = readers.record_schema_for([input_spec])
    shards, _ = readers.plan_shards([f], [input_spec], 1 << 40)
    parts, rows, reasons = [], 0, {}
    for shard in shards:
        for table, rejects in readers.read_shard(shard, input_spec, schema, 8192):
            if table is not None and table.num_rows:
                parts.append(table.select([c for c in (S.ID, S.TEXT, S.LABEL) if c in table.column_names]))
                rows += table.num_rows
            if rejects is not None and rejects.num_rows:
                for r in rejects.column(S.REASON).to_pylist():
                    reasons[r] = reasons.get(r, 0) + 1
    if reasons and not rows:
        raise CorpusmillError(f"benchmark '{spec.label}' ({f.name}): no row could be read ({reasons})")
    table = pa.concat_tables(parts) if parts else pa.table({S.ID: pa.array([], pa.string()), S.TEXT: pa.array([], pa.string())})
    return table, rows


# ----------------------------------------------------------------------------- versions


def _version_entries(spec: BenchmarkSpec, store, label_field: str | None) -> tuple[pa.Table, int]:
    from corpusmill.sft import check_fields, default_fields

    if store is None:
        raise CorpusmillError(f"benchmark '{spec.label}': a dataset reference needs a store")
    ref, _, split = spec.path.partition(":")
    version = store.resolve(ref)
    split = split or "test"
    if split not in version.splits():
        raise CorpusmillError(f"benchmark '{spec.label}': {version.ref} has no split '{split}'; splits: "
                              f"{', '.join(version.splits())}")
    schema = version.schema()
    fields = spec.fields or default_fields(schema)
    check_fields(fields, schema, f"benchmark '{spec.label}'")
    id_col = spec.id_field or S.ID
    if id_col not in schema.names:
        raise CorpusmillError(f"benchmark '{spec.label}': {version.ref} has no column '{id_col}' for id_field; "
                              f"columns: {', '.join(schema.names)}")
    side = version_fields_side(spec.label, version, split, fields, id_column=id_col)
    table = side.table()
    return table, table_rows(table)


def version_fields_side(name: str, version, split: str, fields: Sequence[str], *, id_column: str = S.ID) -> Side:
    """A version's split as an audit side matched field by field (:func:`field_strings`): the
    strings of ``fields`` of each row, each carrying its row's id (or ``id_column``)."""
    names = version.schema().names
    cols = [c for c in dict.fromkeys((S.ID, id_column, S.TEXT, S.LABEL, S.SYSTEM, S.PROMPT, S.RESPONSE, S.MESSAGES))
            if c in names]

    def batches() -> Iterator[pa.Table]:
        for rb in version.iter_batches(split, columns=cols):
            batch = pa.Table.from_batches([rb])
            if id_column != S.ID:
                batch = batch.set_column(batch.column_names.index(S.ID), S.ID, pc.cast(batch.column(id_column), pa.string()))
            yield field_strings(batch, fields)

    class _Fields(Side):
        def table(self) -> pa.Table:
            parts, offset = [], 0
            for t in self.batches():
                parts.append(t.set_column(t.column_names.index("row"), "row",
                                          pa.array(t.column("row").to_numpy() + offset, pa.int64())))
                offset += table_rows(t)
            if not parts:
                return field_strings(pa.table({S.ID: pa.array([], pa.string()), S.TEXT: pa.array([], pa.string())}),
                                     [S.TEXT])
            out = pa.concat_tables([p.replace_schema_metadata(None) for p in parts])
            return out.replace_schema_metadata({ROWS_META: str(offset).encode()})

    return _Fields(name, batches, version, split)


def audit_fields_side(side: Side, fields: Sequence[str] | None) -> Side:
    """An audit side matched field by field where that applies: a version whose rows are
    instruction or chat rows (``fields`` default: their trained fields), or any version when
    ``fields`` is given; file sides are read by their text field and keep their shape."""
    from corpusmill.sft import check_fields, default_fields, is_sft

    if side.version is None:
        if fields and set(fields) - {S.TEXT, "trained"}:
            raise CorpusmillError(f"--fields {','.join(fields)} applies to dataset versions (NAME@REF); the file side "
                                  f"'{side.name}' is read by --text-field")
        return side
    schema = side.version.schema()
    if fields is None and not is_sft(schema):
        return side
    fields = list(fields or default_fields(schema))
    check_fields(fields, schema, "audit", option="--fields")
    return version_fields_side(side.name, side.version, side.split, fields)
