"""Readers: files, folders and globs of JSONL, CSV/TSV, Parquet, plain text (gzip or zstd
compressed or not), Hugging Face ``save_to_disk`` folders and hub datasets, as Arrow batches.

Nothing is dropped silently. A row that cannot be read (malformed JSON, invalid UTF-8, NUL bytes,
a missing or mistyped field, empty or oversized text, a truncated compressed file) becomes a
rejected row of stage ``read`` with its reason, its ``source`` (file and line) and its raw bytes.

Uncompressed line files are cut into byte-range shards at line starts, so one large file is
read by several workers; line numbers stay exact because the planner counts newlines while it
hashes the file.
"""

from __future__ import annotations

import csv
import glob
import hashlib
import io
import os
import zlib
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
from xxhash import xxh3_64_hexdigest

from corpusmill import fs as fsio
from corpusmill import schema as S
from corpusmill.errors import CorpusmillError

READ_STAGE = "read"
COMPRESSIONS = {".gz": "gzip", ".gzip": "gzip", ".zst": "zstd", ".zstd": "zstd"}
EXTENSIONS = {
    ".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl",
    ".csv": "csv", ".tsv": "tsv", ".parquet": "parquet",
    ".txt": "text", ".text": "text", ".md": "text",
}
HF_MARKERS = ("dataset_info.json", "dataset_dict.json", "state.json")
CHUNK = 4 << 20
_MISSING = object()
orjson_dumps = orjson.dumps


# ----------------------------------------------------------------------------- input planning


@dataclass(frozen=True)
class InputFile:
    input_index: int
    path: str  # absolute path, or a hub dataset name for hf_hub
    name: str  # relative to the input pattern's root: what `source` shows and the id is built from
    format: str
    compression: str | None
    size: int


@dataclass(frozen=True)
class Shard:
    index: int
    file: InputFile
    start: int = 0
    end: int = -1  # -1: to the end of the file
    first_line: int = 1

    @property
    def nbytes(self) -> int:
        return (self.end if self.end >= 0 else self.file.size) - self.start


def _has_magic(p: str) -> bool:
    return glob.has_magic(p)


def _is_hf_dir(path: Path) -> bool:
    return path.is_dir() and any((path / m).is_file() for m in HF_MARKERS)


def _detect(path: str, fmt: str) -> tuple[str | None, str | None]:
    """(format, compression) of a file; format None when it cannot be told from the name."""
    suffixes = [s.lower() for s in Path(path).suffixes]
    compression = COMPRESSIONS.get(suffixes[-1]) if suffixes else None
    if compression:
        suffixes = suffixes[:-1]
    if fmt != "auto":
        return fmt, compression
    return (EXTENSIONS.get(suffixes[-1]) if suffixes else None), compression


def expand_input(spec, base_dir: Path) -> list[tuple[str, str]]:
    """[(absolute path, name relative to the pattern root)], in a stable order."""
    if spec.format == "hf_hub":
        return [(spec.path, spec.path)]
    if fsio.is_remote(spec.path):
        return fsio.expand_remote(spec.path)
    raw = os.path.expanduser(fsio.local_path(spec.path))
    pattern = raw if os.path.isabs(raw) else str(base_dir / raw)
    if _has_magic(pattern):
        parts = Path(pattern).parts
        root = Path(*[p for p in parts[: next(i for i, p in enumerate(parts) if _has_magic(p))]])
        found = sorted(glob.glob(pattern, recursive=True))
        out = []
        for f in found:
            if os.path.isfile(f) or _is_hf_dir(Path(f)):
                out.append((os.path.abspath(f), os.path.relpath(f, root)))
        return out
    path = Path(pattern)
    if _is_hf_dir(path):
        return [(str(path.resolve()), path.name)]
    if path.is_dir():
        files = sorted(
            p for p in path.rglob("*")
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts)
        )
        return [(str(p.resolve()), str(p.relative_to(path))) for p in files]
    if path.is_file():
        return [(str(path.resolve()), path.name)]
    return []


def check_input_paths(inputs, base_dir: Path) -> list[str]:
    """Problems with the inputs, found before anything runs."""
    problems = []
    for i, spec in enumerate(inputs):
        where = f"inputs[{i}].path"
        if spec.format in ("hf_disk", "hf_hub"):
            try:
                import datasets  # noqa: F401
            except ImportError:
                problems.append(f"inputs[{i}].format: {spec.format} needs Hugging Face datasets: pip install 'corpusmill[hf]'")
        if spec.format == "hf_hub":
            continue
        remote = fsio.is_remote(spec.path)
        if remote and spec.format == "hf_disk":
            problems.append(f"{where}: {spec.path}: hf_disk folders are read from local paths only; "
                            "copy the folder locally or export it as Parquet/JSONL")
            continue
        try:
            files = expand_input(spec, base_dir)
        except CorpusmillError as err:
            problems.append(f"{where}: {err}")
            continue
        if not files:
            if remote:
                shown = spec.path
            else:
                local = fsio.local_path(spec.path)
                shown = spec.path if os.path.isabs(local) else f"{spec.path} (resolved to {base_dir / local})"
            hint = "" if remote else "; relative paths are relative to the pipeline file"
            problems.append(f"{where}: no file matches {shown}{hint}")
            continue
        for path, name in files:
            if not remote and _is_hf_dir(Path(path)):
                continue
            fmt, _ = _detect(path, spec.format)
            if fmt is None:
                problems.append(
                    f"{where}: cannot tell the format of '{name}' from its extension; "
                    f"set format: to one of jsonl, csv, tsv, parquet, text"
                )
        if (spec.prompt_field is None) != (spec.response_field is None):
            problems.append(f"inputs[{i}]: prompt_field and response_field go together; set both or neither")
        if spec.messages_field and spec.prompt_field:
            problems.append(f"inputs[{i}]: set messages_field or prompt_field/response_field, not both")
    return problems


def resolve_files(inputs, base_dir: Path) -> list[InputFile]:
    files = []
    for i, spec in enumerate(inputs):
        for path, name in expand_input(spec, base_dir):
            if spec.format == "hf_hub":
                files.append(InputFile(i, path, name, "hf_hub", None, 0))
            elif not fsio.is_remote(path) and _is_hf_dir(Path(path)):
                size = sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())
                files.append(InputFile(i, path, name, "hf_disk", None, size))
            else:
                fmt, comp = _detect(path, spec.format)
                files.append(InputFile(i, path, name, fmt, comp, fsio.size(path)))
    return files


def _splittable(f: InputFile, spec) -> bool:
    if f.compression is not None:
        return False
    return f.format == "jsonl" or (f.format == "text" and spec.text_unit == "line")


def plan_shards(files: list[InputFile], inputs, shard_bytes: int) -> tuple[list[Shard], list[str]]:
    """Cut files into shards and hash their content in one pass over each file.

    Returns the shards and one content digest per file (sha256, or a folder/hub fingerprint).
    Boundaries depend only on the bytes and ``shard_bytes``, never on the worker count.
    """
    shards: list[Shard] = []
    digests: list[str] = []
    for f in files:
        spec = inputs[f.input_index]
        if f.format == "hf_hub":
            digests.append("hub:" + f.path + ":" + (spec.split or ""))
            shards.append(Shard(len(shards), f))
            continue
        if f.format == "hf_disk":
            h = hashlib.sha256()
            for p in sorted(Path(f.path).rglob("*")):
                if p.is_file():
                    h.update(str(p.relative_to(f.path)).encode() + b"\0")
                    h.update(hashlib.sha256(p.read_bytes()).digest())
            digests.append(h.hexdigest())
            shards.append(Shard(len(shards), f))
            continue
        split = _splittable(f, spec)
        h = hashlib.sha256()
        bounds = [(0, 1)]  # (byte offset of a shard's first line, its line number)
        pos = lines = 0
        # the fewest shards of at most ~shard_bytes, of equal size: a 28 MB file at 16 MB is two of
        # 14 MB, not 16 + 12 (every phase waits for its biggest shard)
        step = -(-f.size // max(1, -(-f.size // shard_bytes))) if f.size else shard_bytes
        target = step
        guard = fsio.remote_errors(f.path) if fsio.is_remote(f.path) else nullcontext()
        with guard, fsio.open_input(f.path) as fh:
            while chunk := fh.read(CHUNK):
                h.update(chunk)
                if split:
                    end = pos + len(chunk)
                    while target < end:
                        nl = chunk.find(b"\n", max(target - pos, 0))
                        if nl < 0:
                            break
                        b = pos + nl + 1
                        if b < f.size:
                            bounds.append((b, lines + chunk.count(b"\n", 0, nl + 1) + 1))
                        target = max(target + step, b)  # cut near k * step: the deviations do not add up
                    lines += chunk.count(b"\n")
                pos += len(chunk)
        digests.append(h.hexdigest())
        for k, (start, first) in enumerate(bounds):
            end = bounds[k + 1][0] if k + 1 < len(bounds) else -1
            shards.append(Shard(len(shards), f, start, end, first))
    return shards, digests


# ----------------------------------------------------------------------------- byte streams


class StreamBroken(Exception):
    """The compressed stream ended early or is corrupt."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def iter_chunks(shard: Shard) -> Iterator[bytes]:
    """Decompressed bytes of the shard. Raises StreamBroken after the last good chunk."""
    f = shard.file
    with fsio.open_input(f.path) as fh:
        if f.compression is None:
            fh.seek(shard.start)
            left = shard.nbytes
            while left > 0 and (chunk := fh.read(min(CHUNK, left))):
                left -= len(chunk)
                yield chunk
            return
        if f.compression == "gzip":
            new = lambda: zlib.decompressobj(wbits=31)  # noqa: E731
            errors: tuple = (zlib.error,)
        else:
            import zstandard

            new = zstandard.ZstdDecompressor().decompressobj
            errors = (zstandard.ZstdError,)
        d = new()
        fed = False
        try:
            while chunk := fh.read(CHUNK):
                while chunk:
                    fed = True
                    out = d.decompress(chunk)
                    if out:
                        yield out
                    chunk = b""
                    if d.eof and d.unused_data:  # a file of several concatenated members
                        chunk, d, fed = d.unused_data, new(), False
        except errors as err:
            raise StreamBroken("corrupt_file", f"{f.compression} data is corrupt: {err}") from None
        if fed and not d.eof:
            raise StreamBroken(
                "truncated_file",
                f"the {f.compression} stream ends before its end marker (file truncated or still being written); "
                "rows after this point could not be read",
            )


def iter_line_blocks(shard: Shard) -> Iterator[tuple[int, list[bytes]]]:
    """(line number of the first line, lines without their newline), chunk by chunk.

    A StreamBroken raised by the stream carries the unterminated remainder in ``.partial``
    and its line number in ``.line``.
    """
    rest = b""
    line = shard.first_line
    try:
        for chunk in iter_chunks(shard):
            buf = rest + chunk if rest else chunk
            parts = buf.split(b"\n")
            rest = parts.pop()
            if parts:
                yield line, parts
                line += len(parts)
    except StreamBroken as err:
        err.partial, err.line = rest, line  # type: ignore[attr-defined]
        raise
    if rest:
        yield line, [rest]


# ----------------------------------------------------------------------------- record building


class RecordBuilder:
    """Turns parsed rows into record batches and read rejects, per the input's field mapping."""

    def __init__(self, spec, file: InputFile, schema: pa.Schema, batch_rows: int) -> None:
        self.spec = spec
        self.file = file
        self.schema = schema
        self.reject_schema = S.reject_schema(schema)
        self.batch_rows = batch_rows
        self.batch_bytes = 64 << 20
        self.has_label = S.LABEL in schema.names
        self.has_pr = S.PROMPT in schema.names
        self.has_messages = S.MESSAGES in schema.names
        if spec.messages_field:
            self.mode = "messages"
        elif spec.prompt_field:
            self.mode = "prompt_response"
        else:
            self.mode = "text"
        self.mapped = {
            k for k in (spec.text_field, spec.id_field, spec.label_field, spec.prompt_field,
                        spec.response_field, spec.messages_field) if k
        }
        if self.mode != "text":
            self.mapped.discard(spec.text_field)
        # hot-path constants
        self.max_bytes = spec.max_text_bytes
        self.id_field = spec.id_field
        self.label_field = spec.label_field
        self.keep_meta = spec.keep_meta
        self.n_mapped_min = 1 if self.mode == "text" else 0  # a row with only its text field has no meta
        self.id_prefix = f"{file.name}\x00"
        self.source_prefix = f"{file.name}:"
        self._reset()
        self.rejects: list[dict] = []

    def _reset(self) -> None:
        self.cols: dict[str, list] = {n: [] for n in self.schema.names}
        self.pieces: list[pa.Table] = []  # tables from the Arrow fast path, and rows added before them
        self.n = 0
        self.nbytes = 0

    def _seal(self) -> None:
        """Turn the rows added one by one so far into a piece, keeping them before what follows."""
        if self.cols[S.ID]:
            # arrays first: Table.from_pydict(..., schema=) is several times slower
            self.pieces.append(pa.Table.from_arrays([pa.array(self.cols[f.name], f.type) for f in self.schema],
                                                    schema=self.schema))
            self.cols = {n: [] for n in self.schema.names}

    def add_table(self, table: pa.Table) -> Iterator[tuple[pa.Table | None, pa.Table | None]]:
        """Append rows read by the fast path, flushing at exactly the rows where adding them one
        by one would have flushed, so batches are the same whichever path read a block."""
        chars = None
        while table.num_rows:
            if chars is None:
                chars = np.cumsum(pc.utf8_length(table.column(S.TEXT)).to_numpy())
            # the first row after which the batch is full (by rows, or by characters)
            by_rows = self.batch_rows - self.n - 1
            by_chars = int(np.searchsorted(chars, self.batch_bytes - self.nbytes, side="left"))
            cut = max(0, min(by_rows, by_chars))
            if cut >= table.num_rows:
                self._seal()
                self.pieces.append(table)
                self.n += table.num_rows
                self.nbytes += int(chars[-1])
                return
            self._seal()
            self.pieces.append(table.slice(0, cut + 1))
            self.n += cut + 1
            self.nbytes += int(chars[cut])
            yield self.flush()
            table = table.slice(cut + 1)
            chars = chars[cut + 1:] - chars[cut]

    def __len__(self) -> int:
        return self.n

    def full(self) -> bool:
        return self.n >= self.batch_rows or self.nbytes >= self.batch_bytes

    # -- rejects
    def reject(self, line: int, reason: str, detail: str, raw: bytes | None, row: dict | None = None) -> None:
        rec = {n: None for n in self.reject_schema.names}
        if row:
            rec.update({k: v for k, v in row.items() if k in rec})
        rec[S.SOURCE] = f"{self.file.name}:{line}"
        rec.update(stage=READ_STAGE, reason=reason, detail=detail, raw=raw)
        self.rejects.append(rec)

    # -- the hot path: one call per input row, so lookups are kept out of it where possible
    def add(self, obj, line: int, raw: bytes) -> None:
        """Validate one parsed row and append it to the batch, or reject it with a reason."""
        if type(obj) is not dict:
            return self.reject(line, "not_an_object", f"expected a JSON object per line, got {type(obj).__name__}", raw)
        spec = self.spec
        prompt = response = messages = None
        if self.mode == "text":
            text = obj.get(spec.text_field, _MISSING)
            if type(text) is not str:
                if text is _MISSING:
                    return self.reject(
                        line, "missing_text",
                        f"no field '{spec.text_field}' (fields: {', '.join(map(str, list(obj)[:8]))}); set text_field in the input",
                        raw,
                    )
                return self.reject(
                    line, "invalid_text_type",
                    f"field '{spec.text_field}' is {type(text).__name__}, expected a string", raw,
                )
        elif self.mode == "prompt_response":
            prompt = obj.get(spec.prompt_field, _MISSING)
            response = obj.get(spec.response_field, _MISSING)
            for field, value in ((spec.prompt_field, prompt), (spec.response_field, response)):
                if value is _MISSING:
                    return self.reject(line, "missing_field", f"no field '{field}'", raw)
                if type(value) is not str:
                    return self.reject(line, "invalid_field_type", f"field '{field}' is {type(value).__name__}, expected a string", raw)
            text = prompt + "\n\n" + response
        else:
            messages = obj.get(spec.messages_field, _MISSING)
            if messages is _MISSING:
                return self.reject(line, "missing_field", f"no field '{spec.messages_field}'", raw)
            ok = isinstance(messages, list) and messages and all(
                isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
                for m in messages
            )
            if not ok:
                return self.reject(
                    line, "invalid_messages",
                    f"field '{spec.messages_field}' must be a non-empty list of {{role: str, content: str}}", raw,
                )
            messages = [{"role": m["role"], "content": m["content"], "extra": None} for m in messages]
            text = "\n".join(m["content"] for m in messages)

        if not text or text.isspace():
            return self.reject(line, "empty_text", "the text is empty or only whitespace", raw)
        if "\x00" in text:
            return self.reject(line, "nul_byte", "the text contains NUL (\\u0000) characters", raw)
        limit = self.max_bytes
        if limit and len(text) * 4 > limit:
            n = len(text.encode("utf-8", "surrogatepass"))
            if n > limit:
                return self.reject(
                    line, "too_large",
                    f"the text is {n} bytes, over max_text_bytes={limit}; raise it in the input to keep such rows",
                    raw, {S.TEXT: text},
                )

        id_field = self.id_field
        if id_field:
            rid = obj.get(id_field, _MISSING)
            if type(rid) is not str:
                if rid is _MISSING or rid is None:
                    return self.reject(line, "missing_id", f"no field '{id_field}' (id_field)", raw)
                if type(rid) is int:
                    rid = str(rid)
                else:
                    return self.reject(line, "invalid_id", f"field '{id_field}' is {type(rid).__name__}, expected a string or integer", raw)
            if not rid:
                return self.reject(line, "missing_id", f"field '{id_field}' is empty", raw)
        else:
            rid = xxh3_64_hexdigest((self.id_prefix + text).encode("utf-8", "surrogatepass"))

        cols = self.cols
        if self.has_label:
            label = obj.get(self.label_field) if self.label_field else None
            if label is not None and type(label) is not str:
                if isinstance(label, (int, float)):  # bool is an int
                    label = str(label)
                else:
                    return self.reject(
                        line, "invalid_label", f"field '{self.label_field}' is {type(label).__name__}, expected a string or number", raw
                    )
            cols[S.LABEL].append(label)
        if self.has_pr:
            cols[S.SYSTEM].append(None)
            cols[S.PROMPT].append(prompt)
            cols[S.RESPONSE].append(response)
        if self.has_messages:
            cols[S.MESSAGES].append(messages)
        meta = None
        if self.keep_meta and len(obj) > self.n_mapped_min:
            for k in self.mapped:
                obj.pop(k, None)
            if obj:
                meta = orjson_dumps(obj, option=orjson.OPT_SORT_KEYS).decode()
        cols[S.ID].append(rid)
        cols[S.TEXT].append(text)
        cols[S.SOURCE].append(f"{self.source_prefix}{line}")
        cols[S.META].append(meta)
        self.n += 1
        self.nbytes += len(text)

    def flush(self) -> tuple[pa.Table | None, pa.Table | None]:
        table = None
        if self.n:
            self._seal()
            table = self.pieces[0] if len(self.pieces) == 1 else pa.concat_tables(self.pieces).combine_chunks()
            self._reset()
        rejects = None
        if self.rejects:
            rejects = pa.Table.from_pylist(self.rejects, schema=self.reject_schema)
            self.rejects = []
        return table, rejects


# ----------------------------------------------------------------------------- format readers


def _broken(builder: RecordBuilder, err: StreamBroken) -> None:
    partial = getattr(err, "partial", b"") or None
    builder.reject(getattr(err, "line", 0), err.reason, err.detail, partial)


def iter_jsonl_blocks(shard: Shard) -> Iterator[tuple[int, bytes]]:
    """(line number of the first line, whole lines as one bytes block), chunk by chunk. Every
    block ends in a newline but the file's last one. A StreamBroken raised by the stream carries
    the unterminated remainder in ``.partial`` and its line number in ``.line``."""
    rest = b""
    line = shard.first_line
    try:
        for chunk in iter_chunks(shard):
            buf = rest + chunk if rest else chunk
            cut = buf.rfind(b"\n") + 1
            rest = buf[cut:]
            if cut:
                block = buf[:cut] if rest else buf
                yield line, block
                line += block.count(b"\n")
    except StreamBroken as err:
        err.partial, err.line = rest, line  # type: ignore[attr-defined]
        raise
    if rest:
        yield line, rest


def _read_jsonl(shard: Shard, b: RecordBuilder):
    from corpusmill.dataprep.jsonl_arrow import ArrowJsonl

    fast = ArrowJsonl(b) if ArrowJsonl.usable(b) else None
    loads = orjson.loads
    JSONDecodeError = orjson.JSONDecodeError
    batch_rows, batch_bytes = b.batch_rows, b.batch_bytes
    try:
        for first, block in iter_jsonl_blocks(shard):
            table = fast.read(block, first) if fast is not None and not fast.gave_up else None
            if table is not None:
                yield from b.add_table(table)
                continue
            lines = block.split(b"\n")
            if not lines[-1]:
                lines.pop()
            for i, raw in enumerate(lines):
                line = first + i
                try:
                    obj = loads(raw)
                except JSONDecodeError as err:
                    if not raw.strip():
                        b.reject(line, "blank_line", "an empty line in a JSONL file", raw)
                    elif b"\x00" in raw:
                        b.reject(line, "nul_byte", "the line contains raw NUL bytes", raw)
                    else:
                        try:
                            raw.decode("utf-8")
                        except UnicodeDecodeError as uerr:
                            b.reject(line, "invalid_utf8", f"not valid UTF-8: {uerr}; re-encode the file as UTF-8", raw)
                        else:
                            b.reject(line, "malformed_json", f"not valid JSON: {err}", raw)
                    continue
                b.add(obj, line, raw)
                if b.n >= batch_rows or b.nbytes >= batch_bytes:
                    yield b.flush()
    except StreamBroken as err:
        _broken(b, err)
    yield b.flush()


def _decode(raw: bytes, b: RecordBuilder, line: int) -> str | None:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        b.reject(line, "invalid_utf8", f"not valid UTF-8: {err}; re-encode the file as UTF-8", raw)
        return None


def _read_text(shard: Shard, b: RecordBuilder):
    spec = b.spec
    field = spec.text_field
    try:
        if spec.text_unit == "line":
            for first, lines in iter_line_blocks(shard):
                for i, raw in enumerate(lines):
                    line = first + i
                    text = _decode(raw.rstrip(b"\r"), b, line)
                    if text is not None:
                        b.add({field: text}, line, raw)
                        if b.full():
                            yield b.flush()
        elif spec.text_unit == "file":
            data = b"".join(iter_chunks(shard))
            text = _decode(data, b, 1)
            if text is not None:
                b.add({field: text}, 1, data)
        else:
            sep = spec.block_separator
            block: list[bytes] = []
            start = 1

            def emit(block, start):
                data = b"\n".join(block)
                text = _decode(data, b, start)
                if text is not None:
                    b.add({field: text}, start, data)

            for first, lines in iter_line_blocks(shard):
                for i, raw in enumerate(lines):
                    stripped = raw.rstrip(b"\r")
                    is_sep = (not stripped.strip()) if sep == "" else stripped == sep.encode()
                    if is_sep:
                        if block:
                            emit(block, start)
                            if b.full():
                                yield b.flush()
                        block = []
                        continue
                    if not block:
                        start = first + i
                    block.append(stripped)
            if block:
                emit(block, start)
    except StreamBroken as err:
        _broken(b, err)
    yield b.flush()


def _read_csv(shard: Shard, b: RecordBuilder, delimiter: str):
    class _Stream(io.RawIOBase):
        def __init__(self, chunks):
            self.chunks, self.buf = chunks, b""

        def readable(self):
            return True

        def readinto(self, view):
            while not self.buf:
                try:
                    self.buf = next(self.chunks)
                except StopIteration:
                    return 0
            n = min(len(view), len(self.buf))
            view[:n], self.buf = self.buf[:n], self.buf[n:]
            return n

    text = io.TextIOWrapper(io.BufferedReader(_Stream(iter_chunks(shard))), encoding="utf-8",
                            errors="surrogateescape", newline="")
    reader = csv.reader(text, delimiter=delimiter)
    try:
        try:
            header = next(reader)
        except StopIteration:
            header = []
        for row in reader:
            line = reader.line_num
            raw = delimiter.join(row).encode("utf-8", "surrogateescape")
            if not row:
                b.reject(line, "blank_line", "an empty line in a CSV file", raw)
                continue
            if len(row) != len(header):
                b.reject(line, "malformed_row", f"{len(row)} fields, the header has {len(header)}", raw)
                continue
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as err:
                b.reject(line, "invalid_utf8", f"not valid UTF-8: {err}; re-encode the file as UTF-8", raw)
                continue
            b.add(dict(zip(header, row)), line, raw)
            if b.full():
                yield b.flush()
    except StreamBroken as err:
        _broken(b, err)
    except csv.Error as err:
        b.reject(reader.line_num, "malformed_row", f"CSV error: {err}; the rest of the file was not read", None)
    yield b.flush()


def _rows_from_tables(tables, b: RecordBuilder):
    line = 0
    for table in tables:
        for obj in table.to_pylist():
            line += 1
            b.add(obj, line, orjson.dumps(obj, default=str))
            if b.full():
                yield b.flush()
    yield b.flush()


def _read_parquet(shard: Shard, b: RecordBuilder):
    import pyarrow.parquet as pq

    path = shard.file.path
    remote = fsio.is_remote(path)
    source = fsio.open_input(path) if remote else path
    try:
        try:
            pf = pq.ParquetFile(source)
        except (pa.ArrowInvalid, OSError) as err:
            b.reject(0, "corrupt_file", f"not a readable Parquet file: {err}", None)
            yield b.flush()
            return
        yield from _rows_from_tables(pf.iter_batches(batch_size=b.batch_rows), b)
    finally:
        if remote:
            source.close()


def _load_hf(shard: Shard, spec):
    import datasets

    if shard.file.format == "hf_hub":
        return datasets.load_dataset(shard.file.path, split=spec.split or "train")
    ds = datasets.load_from_disk(shard.file.path)
    if isinstance(ds, datasets.DatasetDict):
        if spec.split is None:
            if len(ds) != 1:
                from corpusmill.errors import CorpusmillError

                raise CorpusmillError(
                    f"{shard.file.name}: a DatasetDict with splits {list(ds)}; set split: in the input"
                )
            ds = next(iter(ds.values()))
        else:
            ds = ds[spec.split]
    return ds


def _read_hf(shard: Shard, b: RecordBuilder):
    ds = _load_hf(shard, b.spec)
    yield from _rows_from_tables(ds.with_format("arrow").iter(batch_size=b.batch_rows), b)


def read_shard(shard: Shard, spec, schema: pa.Schema, batch_rows: int) -> Iterator[tuple[pa.Table | None, pa.Table | None]]:
    """Yield (record batch, read rejects) pairs for one shard; either may be None."""
    b = RecordBuilder(spec, shard.file, schema, batch_rows)
    fmt = shard.file.format
    if fmt == "jsonl":
        gen = _read_jsonl(shard, b)
    elif fmt == "text":
        gen = _read_text(shard, b)
    elif fmt in ("csv", "tsv"):
        gen = _read_csv(shard, b, "," if fmt == "csv" else "\t")
    elif fmt == "parquet":
        gen = _read_parquet(shard, b)
    elif fmt in ("hf_disk", "hf_hub"):
        gen = _read_hf(shard, b)
    else:  # validated before running
        raise ValueError(f"unknown format {fmt}")
    for table, rejects in gen:
        if table is not None or rejects is not None:
            yield table, rejects


def record_schema_for(inputs) -> pa.Schema:
    return S.record_schema(
        label=any(i.label_field for i in inputs),
        prompt_response=any(i.prompt_field for i in inputs),
        messages=any(i.messages_field for i in inputs),
    )
