"""Readers: files, folders and globs of JSONL, CSV/TSV, Parquet, plain text (gzip or zstd
compressed or not), Hugging Face ``save_to_disk`` folders and hub datasets, as Arrow batches.

Nothing is dropped silently. A row that cannot be read (malformed JSON, invalid UTF-8, NUL bytes,
a missing or mistyped field, empty or oversized text, a truncated compressed file) becomes a
rejected row of stage ``read`` with its reason, its ``source`` (file and line) and its raw bytes.

Uncompressed line files are cut into byte-range shards at line starts, so one large file is
read by several workers; line numbers stay exact because the planner counts newlines while it
hashes the file. A ``.json`` file holding one JSON array of rows (or one object holding that list
under a key) is read whole, element by element (``source`` = file and element number); a ``.json``
file holding one object per line is JSONL.

A row's fields map onto the record by a **dialect** (:data:`DIALECT_MODES`): plain text, a single
turn (prompt/response, optional system; Alpaca and Dolly compose the prompt from several fields by
a :class:`PromptTemplate`), or a conversation (role/content messages, ShareGPT's from/value, OpenAI
chat fine-tuning rows, with roles mapped onto system/user/assistant/tool and a message's other
keys kept in its ``extra``). ``dialect: auto`` is made concrete before anything runs
(:func:`resolve_inputs`), by the mapped fields or from the first rows of the files.
"""

from __future__ import annotations

import csv
import glob
import hashlib
import io
import json
import os
import re
import string
import zlib
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
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
from corpusmill.sft import PR_SEPARATOR

READ_STAGE = "read"
COMPRESSIONS = {".gz": "gzip", ".gzip": "gzip", ".zst": "zstd", ".zstd": "zstd"}
EXTENSIONS = {
    ".jsonl": "jsonl", ".json": "json", ".ndjson": "jsonl",
    ".csv": "csv", ".tsv": "tsv", ".parquet": "parquet",
    ".txt": "text", ".text": "text", ".md": "text",
}
HF_MARKERS = ("dataset_info.json", "dataset_dict.json", "state.json")
CHUNK = 4 << 20
_MISSING = object()
_BOM = b"\xef\xbb\xbf"
orjson_dumps = orjson.dumps


# ----------------------------------------------------------------------------- dialects

#: what each dialect reads a row as: text, a single turn (prompt_response) or a conversation (messages)
DIALECT_MODES = {
    "text": "text", "prompt_response": "prompt_response", "alpaca": "prompt_response", "dolly": "prompt_response",
    "messages": "messages", "openai": "messages", "sharegpt": "messages",
}
ALPACA_TEMPLATE = "{instruction}\n\n{input}"
DOLLY_TEMPLATE = "{instruction}\n\n{context}"
#: the keys a dialect fills in when the input leaves them unset
DIALECT_DEFAULTS: dict[str, dict[str, str]] = {
    "prompt_response": {"prompt_field": "prompt", "response_field": "response"},
    "alpaca": {"prompt_template": ALPACA_TEMPLATE, "response_field": "output"},
    "dolly": {"prompt_template": DOLLY_TEMPLATE, "response_field": "response"},
    "messages": {"messages_field": "messages", "role_key": "role", "content_key": "content"},
    "openai": {"messages_field": "messages", "role_key": "role", "content_key": "content"},
    "sharegpt": {"messages_field": "conversations", "role_key": "from", "content_key": "value"},
}
#: role names of role/content conversations (OpenAI's developer is its system; function is the legacy tool)
CHAT_ROLES = {"system": "system", "user": "user", "assistant": "assistant", "tool": "tool",
              "developer": "system", "function": "tool"}
#: ShareGPT's role names, and those of the tool-calling variants (glaive, LLaMA-Factory)
SHAREGPT_ROLES = {
    "system": "system", "human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
    "chatgpt": "assistant", "bing": "assistant", "bard": "assistant", "model": "assistant",
    "function_call": "assistant", "tool_call": "assistant", "function": "tool", "tool": "tool", "observation": "tool",
}
#: ShareGPT roles whose name says more than the role they map onto (a tool call is an assistant turn):
#: the message keeps it in ``extra`` under the role key (``{"from": "function_call"}``), for exports
SHAREGPT_KEPT_ROLES = frozenset({"function_call", "tool_call", "function", "observation"})


def dialect_roles(dialect: str) -> dict[str, str]:
    return SHAREGPT_ROLES if dialect == "sharegpt" else CHAT_ROLES


def concrete_spec(spec):
    """``spec`` with its dialect made concrete without looking at any file (``auto``: by the mapped
    fields, else text) and the dialect's defaults filled in; idempotent."""
    dialect = spec.dialect
    if dialect == "auto":
        if spec.messages_field:
            dialect = "messages"
        elif spec.prompt_field or spec.prompt_template or spec.response_field:
            dialect = "prompt_response"
        else:
            dialect = "text"
    update: dict = {} if dialect == spec.dialect else {"dialect": dialect}
    for key, value in DIALECT_DEFAULTS.get(dialect, {}).items():
        if getattr(spec, key) is None and not (key == "prompt_field" and spec.prompt_template):
            update[key] = value
    if DIALECT_MODES[dialect] == "messages":
        roles = {**dialect_roles(dialect), **spec.role_map}
        if roles != spec.role_map:
            update["role_map"] = roles
    return spec.model_copy(update=update) if update else spec


def _maps_fields(spec) -> bool:
    """The input says how its rows map (a dialect or a field), so nothing is detected."""
    return (spec.dialect != "auto" or "text_field" in spec.model_fields_set
            or any((spec.prompt_field, spec.response_field, spec.prompt_template, spec.messages_field)))


class PromptTemplate:
    """A prompt composed from several fields of a row, e.g. ``"{instruction}\\n\\n{input}"``.

    An empty field (missing, null, empty or only whitespace) is dropped together with the text
    between it and the field before it, so ``"{instruction}\\n\\n{input}"`` with an empty input is
    the instruction alone, no trailing blank line. Text before the first placeholder and after the
    last is always kept. ``{{`` and ``}}`` are literal braces.
    """

    def __init__(self, template: str) -> None:
        try:
            parsed = list(string.Formatter().parse(template))
        except ValueError as err:
            raise ValueError(f"not a valid template ({err}); placeholders are field names in braces, "
                             "e.g. '{instruction}\\n\\n{input}', literal braces are doubled") from None
        self.fields: list[str] = []
        self.literals: list[str] = []  # literals[i] comes before fields[i]; the last one ends the prompt
        for literal, field, spec, conversion in parsed:
            self.literals.append(literal)
            if field is None:
                continue
            if not field or any(c in field for c in ".[]") or spec or conversion:
                raise ValueError(f"placeholder {{{field}{'!' + conversion if conversion else ''}"
                                 f"{':' + spec if spec else ''}}} must be a plain field name, e.g. {{input}}")
            self.fields.append(field)
        if not self.fields:
            raise ValueError(f"{template!r} has no placeholder; name the fields in braces, e.g. '{{instruction}}'")
        if len(self.literals) == len(self.fields):
            self.literals.append("")

    def render(self, obj: dict) -> str:
        """The prompt of one row; raises :class:`RowProblem` when a field has the wrong type or all are empty."""
        parts = [self.literals[0]]
        present = False
        for i, field in enumerate(self.fields):
            value = obj.get(field)
            if value is None:
                continue
            if type(value) is not str:
                raise RowProblem("invalid_field_type", f"field '{field}' is {_json_type(value)}, expected a string")
            if not value or value.isspace():
                continue
            if present:
                parts.append(self.literals[i])
            parts.append(value)
            present = True
        if not present:
            raise RowProblem("missing_field", f"the prompt template's fields ({', '.join(dict.fromkeys(self.fields))}) "
                                              f"are all missing or empty (fields: {_fields(obj)})")
        parts.append(self.literals[-1])
        return "".join(parts)


class RowProblem(Exception):
    """Why one row cannot be read: a reject's reason and detail."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def _json_type(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _fields(obj: dict) -> str:
    keys = list(obj)
    return ", ".join(map(str, keys[:8])) + (", ..." if len(keys) > 8 else "")


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
        return [(str(p.resolve()), str(p.relative_to(path))) for p in _folder_files(path)]
    if path.is_file():
        return [(str(path.resolve()), path.name)]
    return []


def _folder_files(folder: Path) -> list[Path]:
    """The files under ``folder``, hidden files and folders left out, sorted. A subfolder that
    cannot be listed is a :class:`CorpusmillError` naming it: ``Path.rglob`` would skip it
    silently, and its files with it."""

    def unlistable(err: OSError) -> None:
        raise CorpusmillError(f"cannot list the folder {err.filename or folder}: {os_error(err)}; fix its permissions, "
                              "or move it out of the input folder")

    files = []
    for top, dirs, names in os.walk(folder, onerror=unlistable):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        files += [p for n in names if not n.startswith(".") and (p := Path(top) / n).is_file()]
    return sorted(files)


def os_error(err: OSError) -> str:
    """An OS error as a reject detail or message shows it: 'Permission denied (EACCES)'."""
    import errno

    name = errno.errorcode.get(err.errno or 0)
    return f"{err.strerror or err}" + (f" ({name})" if name else "")


def unreadable(path: str) -> str | None:
    """Why the local file ``path`` cannot be read (open and first byte), or None when it can."""
    try:
        with open(fsio.local_path(path), "rb") as fh:
            fh.read(1)
    except OSError as err:
        return f"cannot be read: {os_error(err)} ({path})"
    return None


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
            if not remote and (problem := unreadable(path)) is not None:
                problems.append(f"{where}: {name}: {problem}; fix its permissions or the disk, or leave it out")
                continue
            fmt, _ = _detect(path, spec.format)
            if fmt is None:
                problems.append(
                    f"{where}: cannot tell the format of '{name}' from its extension; "
                    f"set format: to one of jsonl, json, csv, tsv, parquet, text"
                )
        problems += [f"inputs[{i}]: {p}" for p in mapping_problems(spec)]
    return problems


def mapping_problems(spec) -> list[str]:
    """Keys of one input that contradict each other or its dialect."""
    out = []
    single = [k for k in ("prompt_field", "prompt_template", "response_field", "system_field") if getattr(spec, k)]
    chat = [k for k in ("messages_field", "role_key", "content_key") if getattr(spec, k)] + (["role_map"] if spec.role_map else [])
    mode = DIALECT_MODES.get(spec.dialect)
    if spec.prompt_field and spec.prompt_template:
        out.append("set prompt_field or prompt_template, not both (the template composes the prompt)")
    if spec.dialect == "auto":
        if (spec.prompt_field or spec.prompt_template) and not spec.response_field:
            out.append("prompt_field (or prompt_template) and response_field go together; set both or neither")
        elif spec.response_field and not (spec.prompt_field or spec.prompt_template):
            out.append("prompt_field and response_field go together; set both or neither")
        if spec.messages_field and (spec.prompt_field or spec.prompt_template or spec.response_field):
            out.append("set messages_field or prompt_field/response_field, not both")
    elif mode == "text" and (single or chat):
        out.append(f"dialect: text reads text_field only; {', '.join(single + chat)} need a dialect that uses them "
                   "(prompt_response, alpaca, dolly, messages, sharegpt, openai) or dialect: auto")
    elif mode == "prompt_response" and chat:
        out.append(f"dialect: {spec.dialect} reads a prompt and a response; {', '.join(chat)} belong to "
                   "conversations (dialect: messages, sharegpt or openai)")
    elif mode == "messages" and [k for k in single if k != "system_field"]:
        out.append(f"dialect: {spec.dialect} reads conversations; {', '.join(k for k in single if k != 'system_field')} "
                   "belong to single turns (dialect: prompt_response, alpaca or dolly)")
    if spec.dialect in ("alpaca", "dolly") and spec.prompt_field:
        out.append(f"dialect: {spec.dialect} composes the prompt with prompt_template; drop prompt_field "
                   "or use dialect: prompt_response")
    return out


def resolve_files(inputs, base_dir: Path) -> list[InputFile]:
    files = []
    for i, spec in enumerate(inputs):
        for path, name in expand_input(spec, base_dir):
            with _planning(i, name, path):
                files.append(_input_file(i, spec, path, name))
    return files


@contextmanager
def _planning(index: int, name: str, path: str) -> Iterator[None]:
    """OS errors while sizing or hashing input file ``name`` (one that vanished, lost its
    permissions or hit a disk error after validation) as a :class:`CorpusmillError` naming it:
    nothing has run yet, and a file that cannot be hashed cannot be part of a version."""
    try:
        yield
    except OSError as err:
        if fsio.is_remote(path):
            raise
        raise CorpusmillError(f"inputs[{index}]: {name}: cannot be read: {os_error(err)} ({path}); it changed since "
                              "the pipeline was checked: fix it and rerun") from None


def _input_file(i: int, spec, path: str, name: str) -> InputFile:
    if spec.format == "hf_hub":
        return InputFile(i, path, name, "hf_hub", None, 0)
    if not fsio.is_remote(path) and _is_hf_dir(Path(path)):
        size = sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())
        return InputFile(i, path, name, "hf_disk", None, size)
    fmt, comp = _detect(path, spec.format)
    if fmt == "json" and json_layout(path, comp, spec) == "lines":
        fmt = "jsonl"  # one object per line in a .json file
    return InputFile(i, path, name, fmt, comp, fsio.size(path))


# ----------------------------------------------------------------------------- JSON documents

_SNIFF_BYTES = 1 << 20


def _head(path: str, compression: str | None, limit: int = _SNIFF_BYTES) -> bytes:
    """The first ``limit`` (decompressed) bytes of a file, less if it is shorter or its stream breaks."""
    out, n = [], 0
    try:
        for chunk in iter_chunks(Shard(0, InputFile(0, path, path, "", compression, fsio.size(path)))):
            out.append(chunk)
            n += len(chunk)
            if n >= limit:
                break
    except StreamBroken:
        pass
    data = b"".join(out)[:limit]
    return data[3:] if data.startswith(_BOM) else data


def _parses_alone(line: bytes):
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError:
        return _MISSING


def json_layout(path: str, compression: str | None, spec) -> str:
    """``lines`` when a JSON file holds one value per line (JSONL), ``document`` when it holds one
    JSON value (an array of rows, or an object holding that list), told from its first bytes."""
    head = _head(path, compression)
    start = head.lstrip()[:1]
    if start not in (b"[", b"{"):
        return "lines"  # empty, or not JSON at all: the JSONL reader rejects each line with its reason
    lines = [x for x in head.split(b"\n")[:6] if x.strip()]
    first = _parses_alone(lines[0])
    if first is not _MISSING and len(lines) > 1 and any(_parses_alone(x) is not _MISSING for x in lines[1:]):
        return "lines"
    if first is _MISSING:
        # a pretty-printed document, or JSONL whose first line is broken
        return "lines" if start == b"{" and any(type(_parses_alone(x)) is dict for x in lines[1:]) else "document"
    if type(first) is dict and len(lines) == 1:  # a file of one line holding one object: a row or a holder of rows
        return "document" if _holds_rows(first, spec) else "lines"
    return "document"


def _list_of_objects(value) -> bool:
    return type(value) is list and bool(value) and type(value[0]) is dict


def _holds_rows(obj: dict, spec) -> bool:
    """Whether a one-line object is a holder of rows rather than one row (a conversation's messages
    are a list of objects too)."""
    if spec.records_key:
        return spec.records_key in obj
    conversation = {"messages", "conversations", spec.messages_field}
    keys = [k for k, v in obj.items() if _list_of_objects(v)]
    return len(keys) == 1 and keys[0] not in conversation and spec.text_field not in obj


def records_of(doc, spec) -> list:
    """The rows of a parsed JSON document: the array itself, or the list an object holds under
    ``records_key`` (by default the only key whose value is a list of objects). Raises
    :class:`RowProblem` when there is no such list."""
    if type(doc) is list:
        return doc
    if type(doc) is not dict:
        raise RowProblem("not_an_array", f"the file holds {_json_type(doc)}, expected an array of row objects")
    if spec.records_key:
        rows = doc.get(spec.records_key, _MISSING)
        if rows is _MISSING:
            raise RowProblem("no_records", f"records_key '{spec.records_key}' is not a key of the file's object "
                                           f"(keys: {_fields(doc)})")
        if type(rows) is not list:
            raise RowProblem("no_records", f"records_key '{spec.records_key}' holds {_json_type(rows)}, expected a list of rows")
        return rows
    keys = [k for k, v in doc.items() if _list_of_objects(v)]
    if len(keys) == 1:
        return doc[keys[0]]
    if not keys:
        raise RowProblem("no_records", f"the file holds one object with no list of row objects (keys: {_fields(doc)}); "
                                       "a JSON file holds an array of rows, or an object with the rows under one key")
    raise RowProblem("no_records", f"the file's object holds several lists of objects ({', '.join(keys)}); "
                                   "set records_key: to the one holding the rows")


def _salvage_array(text: str, limit: int = 0) -> tuple[list, tuple[int, int, int, str] | None]:
    """The elements of a JSON array that parse, in order, up to the first break (or the first
    ``limit``; 0 = all), and the break: (number of the element where it broke, offset where that
    element starts, offset of the error, message), or None."""
    decoder = json.JSONDecoder()
    space = re.compile(r"[ \t\n\r]*")
    i = space.match(text).end() + 1  # after '['
    out: list = []
    while True:
        i = space.match(text, i).end()
        if not out and text.startswith("]", i):
            i += 1
            break
        try:
            obj, end = decoder.raw_decode(text, i)
        except json.JSONDecodeError as err:
            return out, (len(out) + 1, i, err.pos, err.msg)
        i = end
        out.append(obj)
        if len(out) == limit:
            return out, None
        i = space.match(text, i).end()
        if text.startswith(",", i):
            i += 1
            continue
        if text.startswith("]", i):
            i += 1
            break
        return out, (len(out) + 1, i, i, f"expected ',' or ']' after element {len(out)}")
    i = space.match(text, i).end()
    if i < len(text):
        return out, (len(out) + 1, i, i, "extra data after the array's closing ']'")
    return out, None


def _position(text: str, pos: int) -> str:
    line = text.count("\n", 0, pos) + 1
    return f"line {line}, column {pos - (text.rfind(chr(10), 0, pos) + 1) + 1}"


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
        with _planning(f.input_index, f.name, f.path), guard, fsio.open_input(f.path) as fh:
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
        spec = self.spec = concrete_spec(spec)
        self.mode = DIALECT_MODES[spec.dialect]
        self.template = PromptTemplate(spec.prompt_template) if spec.prompt_template else None
        if self.mode == "text":
            row_fields = [spec.text_field]
        elif self.mode == "prompt_response":
            row_fields = [spec.prompt_field, spec.response_field, spec.system_field, *(self.template.fields if self.template else ())]
        else:
            row_fields = [spec.messages_field, spec.system_field]
        self.mapped = {k for k in (*row_fields, spec.id_field, spec.label_field) if k}
        self.roles = spec.role_map
        self.kept_roles = SHAREGPT_KEPT_ROLES if spec.dialect == "sharegpt" else frozenset()
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
        system = prompt = response = messages = None
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
            try:
                system, prompt, response = self._single_turn(obj)
            except RowProblem as bad:
                return self.reject(line, bad.reason, bad.detail, raw)
            # as corpusmill.sft.derive_text joins them
            text = PR_SEPARATOR.join((prompt, response) if system is None else (system, prompt, response))
        else:
            try:
                messages = self._conversation(obj)
            except RowProblem as bad:
                return self.reject(line, bad.reason, bad.detail, raw)
            text = "\n".join(m["content"] or "" for m in messages)

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
            cols[S.SYSTEM].append(system)
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

    # -- instruction and chat rows
    def _single_turn(self, obj: dict) -> tuple[str | None, str, str]:
        """(system, prompt, response) of a row; raises :class:`RowProblem`."""
        spec = self.spec
        prompt = self.template.render(obj) if self.template is not None else _string(obj, spec.prompt_field)
        return _optional(obj, spec.system_field), prompt, _string(obj, spec.response_field)

    def _conversation(self, obj: dict) -> list[dict]:
        """The row's messages as ``{role, content, extra}``, roles mapped; raises :class:`RowProblem`."""
        spec = self.spec
        field, rk, ck = spec.messages_field, spec.role_key, spec.content_key
        messages = obj.get(field)
        if type(messages) is not list:
            if messages is None:
                raise RowProblem("missing_field", f"no field '{field}' (fields: {_fields(obj)}); set messages_field, "
                                                  "or the dialect (sharegpt: conversations, openai: messages)")
            raise RowProblem("invalid_messages", f"field '{field}' is {_json_type(messages)}, expected a list of messages")
        if not messages:
            raise RowProblem("invalid_messages", f"field '{field}' is an empty conversation")
        out = []
        system = _optional(obj, spec.system_field)
        if system is not None:
            out.append({"role": "system", "content": system, "extra": None})
        roles = self.roles
        for k, m in enumerate(messages, 1):
            if type(m) is not dict:
                raise RowProblem("invalid_messages", f"message {k} is {_json_type(m)}, expected an object with '{rk}' and '{ck}'")
            role = m.get(rk)
            if type(role) is not str:
                if role is None:
                    raise RowProblem("invalid_messages", f"message {k} has no '{rk}' (its keys: {_fields(m)}); "
                                                         "set role_key and content_key to the keys it uses")
                raise RowProblem("invalid_messages", f"message {k}: '{rk}' is {_json_type(role)}, expected a string")
            mapped = roles.get(role) or roles.get(role.lower())
            if mapped is None:
                raise RowProblem("unknown_role", f"message {k} has role '{role}', which {spec.dialect} does not know "
                                                 f"(known: {', '.join(roles)}); map it in the input, e.g. "
                                                 f"role_map: {{{role}: assistant}} (onto system, user, assistant or tool)")
            content = m.get(ck)
            extra = {key: v for key, v in m.items() if key != rk and key != ck} if len(m) > 2 or ck not in m else None
            if type(content) is not str:
                if content is not None:
                    raise RowProblem("invalid_messages", f"message {k} ({role}): '{ck}' is {_json_type(content)}, expected a string")
                # an assistant turn that only calls tools has no content (OpenAI writes null)
                if not (mapped == "assistant" and extra and (extra.get("tool_calls") or extra.get("function_call"))):
                    raise RowProblem("invalid_messages", f"message {k} ({role}) has no '{ck}'"
                                     + (f" (its keys: {_fields(m)}); set content_key" if ck not in m else ""))
            if role in self.kept_roles:
                extra = {**(extra or {}), rk: role}
            out.append({"role": mapped, "content": content,
                        "extra": orjson_dumps(extra, option=orjson.OPT_SORT_KEYS).decode() if extra else None})
        return out

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


def _string(obj: dict, field: str) -> str:
    value = obj.get(field, _MISSING)
    if type(value) is str:
        return value
    if value is _MISSING:
        raise RowProblem("missing_field", f"no field '{field}' (fields: {_fields(obj)}); map the right one in the input")
    raise RowProblem("invalid_field_type", f"field '{field}' is {_json_type(value)}, expected a string")


def _optional(obj: dict, field: str | None) -> str | None:
    """An optional string field (the system prompt): None when unmapped, missing, null or empty."""
    if not field:
        return None
    value = obj.get(field)
    if value is None or (type(value) is str and (not value or value.isspace())):
        return None
    if type(value) is not str:
        raise RowProblem("invalid_field_type", f"field '{field}' is {_json_type(value)}, expected a string")
    return value


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
            if first == 1 and block.startswith(_BOM):  # a byte order mark before the first line
                block = block[3:]
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


_RAW_LIMIT = 1 << 16  # bytes of a broken document kept in a reject's raw column


def _read_json_document(shard: Shard, b: RecordBuilder):
    """A JSON array of rows (or an object holding one), read whole; row ``k`` is element ``k``."""
    chunks, broken = [], None
    try:
        for chunk in iter_chunks(shard):
            chunks.append(chunk)
    except StreamBroken as err:
        broken = err
    data = b"".join(chunks)
    if data.startswith(_BOM):
        data = data[3:]
    rows = None
    try:
        rows = records_of(orjson.loads(data), b.spec)
    except RowProblem as bad:
        b.reject(0, bad.reason, bad.detail, data[:_RAW_LIMIT])
    except orjson.JSONDecodeError as err:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as uerr:
            b.reject(0, "invalid_utf8", f"not valid UTF-8 at byte {uerr.start}: {uerr.reason}; re-encode the file as UTF-8",
                     data[max(0, uerr.start - 100):uerr.start + 100])
            text = None
        if text is not None and text.lstrip().startswith("["):
            rows, stop = _salvage_array(text)
            if stop is not None and broken is None:
                k, start, pos, msg = stop
                b.reject(k, "malformed_json",
                         f"not valid JSON at {_position(text, pos)} (element {k} of the array): {msg}; the {k - 1} "
                         "elements before it were read, the rest of the file could not be", text[start:start + _RAW_LIMIT].encode())
        elif text is not None and broken is None:
            b.reject(0, "malformed_json", f"not valid JSON: {err}", data[:_RAW_LIMIT])
    for k, obj in enumerate(rows or (), 1):
        if type(obj) is not dict:
            b.reject(k, "not_an_object", f"element {k} of the array is {_json_type(obj)}, expected an object (a row)",
                     orjson_dumps(obj))
        else:
            n = len(b.rejects)
            b.add(obj, k, None)
            if len(b.rejects) > n:  # the element's bytes, for the reject only
                b.rejects[-1][S.RAW] = orjson_dumps(obj)
        if b.full():
            yield b.flush()
    if broken is not None:
        b.reject(len(rows or ()) + 1, broken.reason, broken.detail, None)
    yield b.flush()


def _decode(raw: bytes, b: RecordBuilder, line: int) -> str | None:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        b.reject(line, "invalid_utf8", f"not valid UTF-8: {err}; re-encode the file as UTF-8", raw)
        return None


def _without_bom(shard: Shard, lines: list[bytes], first: int) -> list[bytes]:
    """``lines`` without the byte order mark that may open the file (its first line only)."""
    if first == 1 and shard.start == 0 and lines and lines[0].startswith(_BOM):
        lines = [lines[0][len(_BOM):], *lines[1:]]
    return lines


def _read_text(shard: Shard, b: RecordBuilder):
    spec = b.spec
    field = spec.text_field
    try:
        if spec.text_unit == "line":
            for first, lines in iter_line_blocks(shard):
                for i, raw in enumerate(_without_bom(shard, lines, first)):
                    line = first + i
                    text = _decode(raw.rstrip(b"\r"), b, line)
                    if text is not None:
                        b.add({field: text}, line, raw)
                        if b.full():
                            yield b.flush()
        elif spec.text_unit == "file":
            data = b"".join(iter_chunks(shard))
            data = data[len(_BOM):] if data.startswith(_BOM) else data
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
                for i, raw in enumerate(_without_bom(shard, lines, first)):
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

    # utf-8-sig: a byte order mark is not part of the first column's name
    text = io.TextIOWrapper(io.BufferedReader(_Stream(iter_chunks(shard))), encoding="utf-8-sig",
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
    """Yield (record batch, read rejects) pairs for one shard; either may be None.

    A local file that cannot be opened or read (gone since the run was planned, permission
    denied, a disk error) is an ``unreadable_file`` reject with the OS error as its detail,
    after the rows read before the error: the run goes on and says so, rather than dying with
    a traceback."""
    b = RecordBuilder(spec, shard.file, schema, batch_rows)
    local = shard.file.format != "hf_hub" and not fsio.is_remote(shard.file.path)
    try:
        yield from _read_shard(shard, b)
    except OSError as err:
        if not local:
            raise
        if err.errno is None:  # Arrow's errors about the bytes (a Parquet page that does not decode) are OSErrors too
            b.reject(shard.first_line, "corrupt_file", f"{shard.file.path}: {err}; the rows before it, if any, were read",
                     None)
        else:
            b.reject(shard.first_line, "unreadable_file", f"{shard.file.path}: {os_error(err)}; the rows before it, if "
                     "any, were read", None)
        yield b.flush()


def _read_shard(shard: Shard, b: RecordBuilder) -> Iterator[tuple[pa.Table | None, pa.Table | None]]:
    fmt = shard.file.format
    if fmt == "jsonl":
        gen = _read_jsonl(shard, b)
    elif fmt == "json":
        gen = _read_json_document(shard, b)
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
    if fmt not in ("hf_disk", "hf_hub") and not fsio.is_remote(shard.file.path):
        with open(shard.file.path, "rb"):  # an unopenable file is one reject, whatever the format's reader does
            pass
    for table, rejects in gen:
        if table is not None or rejects is not None:
            yield table, rejects


def record_schema_for(inputs) -> pa.Schema:
    modes = {DIALECT_MODES[concrete_spec(i).dialect] for i in inputs}
    return S.record_schema(
        label=any(i.label_field for i in inputs),
        prompt_response="prompt_response" in modes,
        messages="messages" in modes,
    )



# ----------------------------------------------------------------------------- dialect detection

_SAMPLE_ROWS = 20
_SAMPLE_FILES = 16  # files of one input looked at


def sample_rows(f: InputFile, spec, n: int = _SAMPLE_ROWS) -> list:
    """The first ``n`` rows of a file as parsed values (dicts where the file is well formed), for
    detecting its dialect. Raises :class:`RowProblem` for a JSON object with no clear list of rows."""
    if f.format == "jsonl":
        out = []
        for line in _head(f.path, f.compression, 1 << 18).split(b"\n"):
            if len(out) >= n:
                break
            if line.strip() and (obj := _parses_alone(line)) is not _MISSING:
                out.append(obj)
        return out
    if f.format == "json":
        head = _head(f.path, f.compression)
        if head.lstrip()[:1] == b"[" and len(head) >= _SNIFF_BYTES:  # a large array: its first elements
            return _salvage_array(head.decode("utf-8", "replace"), n)[0]
        data = head if len(head) < _SNIFF_BYTES else _head(f.path, f.compression, 1 << 62)
        try:
            doc = orjson.loads(data)
        except orjson.JSONDecodeError:
            return _salvage_array(data.decode("utf-8", "replace"), n)[0] if data.lstrip()[:1] == b"[" else []
        return records_of(doc, spec)[:n]
    if f.format in ("csv", "tsv"):
        text = _head(f.path, f.compression, 1 << 18).decode("utf-8", "replace")
        reader = csv.DictReader(io.StringIO(text, newline=""), delimiter="," if f.format == "csv" else "\t")
        return [row for _, row in zip(range(n), reader)]
    if f.format == "parquet":
        import pyarrow.parquet as pq

        with fsio.open_input(f.path) as fh:
            for batch in pq.ParquetFile(fh).iter_batches(batch_size=n):
                return batch.to_pylist()
        return []
    if f.format == "hf_disk":  # save_to_disk folders hold Arrow IPC streams: no need to import datasets
        folder = Path(f.path) / spec.split if spec.split and (Path(f.path) / spec.split).is_dir() else Path(f.path)
        for arrow in sorted(folder.rglob("*.arrow")):
            with pa.OSFile(str(arrow)) as fh:
                for batch in pa.ipc.open_stream(fh):
                    return batch.slice(0, n).to_pylist()
        return []
    return []


def _row_dialect(row: dict) -> dict | None:
    """The dialect keys one row's shape points to, or None."""
    found = None
    for key in ("conversations", "messages"):
        value = row.get(key)
        if _list_of_objects(value):
            first = value[0]
            if "from" in first and "value" in first:
                found = {"dialect": "sharegpt", "messages_field": key, "role_key": "from", "content_key": "value"}
            elif "role" in first and ("content" in first or "tool_calls" in first):
                found = ({"dialect": "openai", "messages_field": "messages"} if key == "messages" else
                         {"dialect": "sharegpt", "messages_field": key, "role_key": "role", "content_key": "content"})
            if found:
                return found
    if "instruction" in row and "output" in row:
        return {"dialect": "alpaca"}
    if "instruction" in row and "response" in row:
        return {"dialect": "dolly"}
    if type(row.get("prompt")) is str:
        for answer in ("completion", "response"):
            if type(row.get(answer)) is str:
                return {"dialect": "prompt_response", "prompt_field": "prompt", "response_field": answer}
    return None


def _describe(keys: dict, rows: list) -> str:
    d = keys["dialect"]
    if d == "sharegpt":
        out = f"ShareGPT conversations ({keys['messages_field']}: {keys['role_key']}/{keys['content_key']})"
    elif d == "openai":
        out = "OpenAI chat messages (messages: role/content, the messages' other keys kept)"
    elif d == "alpaca":
        out = "Alpaca instructions (instruction + input -> prompt, output -> response)"
    elif d == "dolly":
        out = "Dolly instructions (instruction + context -> prompt, response -> response)"
        if any("category" in r for r in rows):
            out += "; category stays in meta (label_field: category makes it the label)"
    else:
        out = f"{keys['prompt_field']}/{keys['response_field']} rows ({keys['prompt_field']} -> prompt, " \
              f"{keys['response_field']} -> response)"
    if keys.get("system_field"):
        out += f", system prompt from '{keys['system_field']}'"
    return out


def resolve_inputs(inputs, base_dir: Path) -> tuple[list, list[str], list[str]]:
    """Every input with a concrete dialect: ``(inputs, notes for stderr, problems)``. An input with
    ``dialect: auto`` and no field mapped gets the dialect its files' first rows show, when they all
    show the same one and lack the text field; otherwise it stays plain text (with a note when the
    rows lack the text field)."""
    out, notes, problems = [], [], []
    for i, spec in enumerate(inputs):
        if _maps_fields(spec) or spec.format in ("text", "hf_hub"):
            out.append(concrete_spec(spec))
            continue
        seen: dict[tuple, tuple[dict, str, list[str]]] = {}  # dialect keys -> (keys, description, files)
        plain: list[str] = []
        unknown: list[tuple[str, list]] = []
        for f in resolve_files([spec], base_dir)[:_SAMPLE_FILES]:
            try:
                rows = [r for r in sample_rows(f, spec) if type(r) is dict]
            except RowProblem as bad:
                problems.append(f"inputs[{i}] {f.name}: {bad.detail}")
                continue
            except (OSError, ValueError, pa.ArrowException, csv.Error):
                continue  # unreadable here: the reader rejects it with its reason
            if not rows:
                continue
            kinds = {tuple(sorted(k.items())): k for r in rows if (k := _row_dialect(r)) is not None}
            if any(type(r.get(spec.text_field)) is str for r in rows):
                plain.append(f.name)
                # said once an input; e.g. tatsu-lab/alpaca holds instruction, input, output and a rendered text
                if len(kinds) == 1 and len(plain) == 1:
                    keys = next(iter(kinds.values()))
                    notes.append(f"inputs[{i}] {f.name}: the rows hold '{spec.text_field}', read as plain text as "
                                 f"before; they also look like {_describe(keys, rows)}: set dialect: {keys['dialect']} "
                                 "to read them that way")
                continue
            if len(kinds) == 1:
                (key, keys), = kinds.items()
                if DIALECT_MODES[keys["dialect"]] == "messages" and any(type(r.get("system")) is str for r in rows):
                    keys = {**keys, "system_field": "system"}  # a system prompt beside the conversation
                    key = tuple(sorted(keys.items()))
                seen.setdefault(key, (keys, _describe(keys, rows), []))[2].append(f.name)
            else:
                unknown.append((f.name, rows))
        if len(seen) == 1 and not plain and not unknown:
            keys, desc, names = next(iter(seen.values()))
            spec = spec.model_copy(update={k: v for k, v in keys.items() if k not in spec.model_fields_set})
            more = f" (and {len(names) - 1} more files)" if len(names) > 1 else ""
            notes.append(f"inputs[{i}] {names[0]}{more}: {desc}; set dialect: to override")
        elif seen and (plain or len(seen) > 1 or unknown):
            shapes = [f"{names[0]}: {desc}" for _, desc, names in seen.values()]
            shapes += [f"{plain[0]}: plain text ({spec.text_field})"] if plain else []
            shapes += [f"{unknown[0][0]}: no known dialect"] if unknown else []
            problems.append(f"inputs[{i}]: its files hold rows of different shapes ({'; '.join(shapes)}); "
                            "make them separate inputs, or set dialect: (and the *_field keys)")
        elif unknown and not plain:
            name, rows = unknown[0]
            notes.append(f"inputs[{i}] {name}: no known dialect in the first rows (fields: {_fields(rows[0])}) and no "
                         f"'{spec.text_field}' field; reading '{spec.text_field}' as plain text. Set text_field:, or "
                         "dialect: (prompt_response, alpaca, dolly, messages, sharegpt, openai) with its *_field keys")
        out.append(concrete_spec(spec))
    return out, notes, problems


# ----------------------------------------------------------------------------- inputs read entirely as rejects

_FIXES = {
    "missing_text": "field '{text_field}' missing: set text_field: to the field holding the text, or dialect: "
                    "(prompt_response, alpaca, dolly, messages, sharegpt, openai) for instruction or chat rows",
    "invalid_text_type": "text_field names a field that is not a string: set it to the field holding the text",
    "empty_text": "the mapped text is empty on every row: is text_field (or the dialect's fields) the right one?",
    "missing_field": "the rows lack the mapped field: check prompt_field/response_field/messages_field/"
                     "prompt_template, or the dialect",
    "invalid_field_type": "a mapped field is not a string: check prompt_field/response_field or the dialect",
    "invalid_messages": "the messages do not have the expected shape: check messages_field, role_key and content_key "
                        "(ShareGPT rows use from/value: dialect: sharegpt)",
    "unknown_role": "map the role onto system, user, assistant or tool with role_map: in the input",
    "invalid_utf8": "re-encode the file as UTF-8",
    "malformed_row": "check the delimiter and quoting (a tab-separated file named .csv? set format: tsv)",
    "malformed_json": "repair the JSON where the detail says",
    "no_records": "set records_key: to the key of the file's object that holds the list of rows",
    "not_an_array": "a JSON file holds an array of row objects (or an object holding one under records_key)",
    "too_large": "raise max_text_bytes on the input (0 = no limit)",
    "missing_id": "id_field names a field the rows lack: fix it, or leave id_field unset for generated ids",
    "invalid_id": "id_field names a field that is not a string or integer",
    "invalid_label": "label_field names a field that is not a string or number",
    "corrupt_file": "the file is damaged: fetch or export it again",
    "truncated_file": "the file is cut short: fetch it again, or wait until it is fully written",
    "unreadable_file": "the file could not be opened or read (the OS error is in the detail): fix its permissions "
                       "or the disk and rerun",
}


def reason_fix(reason: str, text_field: str = "text") -> str:
    """The usual fix of a read reject's ``reason``, as a message ends with it."""
    return _FIXES.get(reason, "see the rejected rows: corpusmill datasets show, or the version's rejects folder") \
        .format(text_field=text_field)


def _likely_fix(reason: str, spec, files: list[InputFile]) -> str:
    f = files[0]
    if f.format == "jsonl" and reason in ("malformed_json", "not_an_object", "blank_line"):
        start = _head(f.path, f.compression, 1 << 12).lstrip()[:1]
        if start == b"[":
            return (f"this file is a JSON array, read as JSON lines (one object per line): set format: json on the "
                    f"input{' or name the file .json' if not f.name.endswith('.json') else ''}")
        if start == b"{":
            return "the file looks like one JSON object spread over several lines: set format: json " \
                   "(and records_key: if it holds the rows under a key)"
    return reason_fix(reason, spec.text_field)


def check_inputs_read(plan, results: dict[int, dict], rejects_dir: Path) -> None:
    """Stop the run before anything is published when the reader rejected every row of an input
    (``allow_empty`` lets it go on): such an input is almost always a mapping mistake, and an empty
    version published with exit 0 hides it. The message names the files, the dominant reason with
    an example, and the likely fix. ``results``: segment 0's statistics per shard index."""
    per_input: dict[int, dict] = {}
    for shard in plan.shards:
        st = results.get(shard.index, {}).get("stages", {}).get(READ_STAGE)
        if st is None:
            continue
        agg = per_input.setdefault(shard.file.input_index, {"in": 0, "kept": 0, "reasons": Counter(), "shards": []})
        agg["in"] += st["in"]
        agg["kept"] += st["kept"]
        agg["reasons"].update(st["rejected"])
        agg["shards"].append(shard)
    messages = []
    for i, agg in sorted(per_input.items()):
        spec = plan.config.inputs[i]
        if not agg["in"] or agg["kept"] or spec.allow_empty:
            continue
        (reason, count), = agg["reasons"].most_common(1)
        files = list({s.file.name: s.file for s in agg["shards"]}.values())
        names = ", ".join(f.name for f in files[:3]) + (f" and {len(files) - 3} more" if len(files) > 3 else "")
        example = _example_reject(rejects_dir, agg["shards"], reason)
        messages.append(
            f"inputs[{i}] ({names}): the reader rejected all {agg['in']:,} rows, so there is nothing to publish. "
            f"Most were {reason} ({count:,} of {agg['in']:,})" + (f", e.g. {example}" if example else "") + ". "
            f"Likely fix: {_likely_fix(reason, spec, files)}. (To publish anyway, set allow_empty: true on the input.)")
    if messages:
        raise CorpusmillError("\n".join(messages))


def _example_reject(rejects_dir: Path, shards: list[Shard], reason: str) -> str | None:
    """'<source>: <detail>' of the first read reject with ``reason`` among these shards' reject files."""
    import pyarrow.parquet as pq

    for shard in shards:
        path = Path(rejects_dir) / f"{READ_STAGE}-{shard.index:05d}.parquet"
        try:
            table = pq.read_table(path, columns=[S.SOURCE, S.REASON, S.DETAIL])
        except (OSError, pa.ArrowException):
            continue
        for source, r, detail in zip(*(table.column(c).to_pylist() for c in (S.SOURCE, S.REASON, S.DETAIL))):
            if r == reason:
                return f"{source}: {detail}" if detail else source
    return None
