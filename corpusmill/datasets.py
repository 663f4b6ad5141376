"""Operations on published versions: summaries, diffs and exports (``corpusmill datasets ...``).

The prompt text of prompt/response rows as the trainer writes it (:func:`written_prompts`) lives
here too: ``corpusmill train`` and ``datasets export --format trl`` both call it, so an export
matches a training run."""

from __future__ import annotations

import base64
import os
import secrets
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import xxhash

from corpusmill import schema as S
from corpusmill.errors import CorpusmillError
from corpusmill.sft import plain_messages
from corpusmill.store import Store, Version

CONTENT_COLUMNS = (S.TEXT, S.LABEL, S.PROMPT, S.RESPONSE, S.MESSAGES)


def summary(version: Version) -> dict:
    """What ``datasets show --json`` prints: the manifest plus the tags pointing at the version."""
    m = dict(version.manifest)
    m["ref"] = version.ref
    m["path"] = str(version.path)
    m["run"] = version.stats
    return m


def _row_digests(version: Version, split: str) -> dict[str, int]:
    """id -> hash of the row's content (text, label, prompt/response, messages)."""
    cols = [c for c in (S.ID, *CONTENT_COLUMNS) if c in version.schema().names]
    out: dict[str, int] = {}
    for batch in version.iter_batches(split, columns=cols):
        rows = batch.to_pydict()
        ids = rows.pop(S.ID)
        content = list(zip(*rows.values()))
        for rid, c in zip(ids, content):
            out[rid] = xxhash.xxh3_64_intdigest(orjson.dumps(c))
    return out


def diff(a: Version, b: Version, examples: int = 5) -> dict:
    """Rows added, removed, changed (same id, other content) and unchanged per split, a -> b."""
    result: dict = {"from": a.ref, "to": b.ref, "splits": {}}
    splits_a, splits_b = set(a.splits()), set(b.splits())
    where_a: dict[str, str] = {}
    where_b: dict[str, str] = {}
    for split in sorted(splits_a | splits_b):
        da = _row_digests(a, split) if split in splits_a else {}
        db = _row_digests(b, split) if split in splits_b else {}
        where_a.update(dict.fromkeys(da, split))
        where_b.update(dict.fromkeys(db, split))
        added = [i for i in db if i not in da]
        removed = [i for i in da if i not in db]
        changed = [i for i in db if i in da and da[i] != db[i]]
        result["splits"][split] = {
            "added": len(added), "removed": len(removed), "changed": len(changed),
            "unchanged": len(db) - len(added) - len(changed), "rows_from": len(da), "rows_to": len(db),
            "examples": {"added": sorted(added)[:examples], "removed": sorted(removed)[:examples],
                         "changed": sorted(changed)[:examples]},
        }
    result["moved_between_splits"] = sum(1 for i, s in where_b.items() if i in where_a and where_a[i] != s)
    result["refresh"] = refresh_record(a, b)
    return result


def refresh_record(a: Version, b: Version) -> dict | None:
    """What the refreshes from ``a`` to ``b`` added, rejected and removed, from the manifests
    of ``b`` and its ancestors up to ``a`` (None when ``a`` is not an ancestor reached by
    refreshes)."""
    steps = []
    current = b
    store = Store(b.path.parents[2])
    while current.ref != a.ref:
        m = current.manifest
        if not m.get("refresh") or not m.get("parent"):
            return None
        steps.append(m["refresh"])
        current = store.resolve(m["parent"])
    out = {"refreshes": len(steps), "added_rows_in": 0, "added_kept": 0, "added_rejected": {}, "removed": 0,
           "added_splits": {}}
    for r in steps:
        out["added_rows_in"] += r["added"]["rows_in"]
        out["added_kept"] += r["added"]["kept"]
        out["removed"] += r["removed"]["rows"]
        for stage, reasons in r["added"]["rejected"].items():
            for reason, n in reasons.items():
                key = f"{stage}:{reason}"
                out["added_rejected"][key] = out["added_rejected"].get(key, 0) + n
        for split, n in r["added"]["splits"].items():
            out["added_splits"][split] = out["added_splits"].get(split, 0) + n
    out["added_rejected"] = dict(sorted(out["added_rejected"].items()))
    return out


# ----------------------------------------------------------------------------- the trainer's prompt text

#: how ``corpusmill train`` writes the prompt before the response unless told otherwise (train option
#: ``prompt_template``, ``datasets export --prompt-template``): the prompt, then a newline
DEFAULT_PROMPT_TEMPLATE = "{prompt}\n"
#: the fields a prompt template may name
TEMPLATE_FIELDS = (S.PROMPT, S.SYSTEM)


def parse_prompt_template(template: str) -> list[tuple[str, str | None]]:
    """A prompt template as (literal text, field or None) pieces; a :class:`CorpusmillError` that says
    what is wrong when it is not one.

    ``{prompt}`` is required and ``{system}`` optional; nothing else is filled in, so a literal
    brace is written ``{{`` or ``}}`` (Python's ``str.format`` rules, without conversions or specs)."""
    import string

    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as err:
        raise CorpusmillError(f"prompt template {template!r}: {err}; write a literal brace as '{{{{' or '}}}}'") from None
    pieces: list[tuple[str, str | None]] = []
    for literal, field, spec, conversion in parsed:
        if field is not None and field not in TEMPLATE_FIELDS:
            raise CorpusmillError(f"prompt template {template!r}: '{{{field}}}' is not filled in; the template may use "
                                  "{prompt} (required) and {system}; write a literal brace as '{{' or '}}'")
        if spec or conversion:
            raise CorpusmillError(f"prompt template {template!r}: write '{{{field}}}' without a conversion or format spec")
        pieces.append((literal, field))
    if not any(field == S.PROMPT for _, field in pieces):
        raise CorpusmillError(f"prompt template {template!r} must contain '{{prompt}}'")
    return pieces


def written_prompts(table: pa.Table, template: str = DEFAULT_PROMPT_TEMPLATE) -> pa.Array:
    """Per row, the prompt side of a prompt/response row exactly as ``corpusmill train`` writes it
    before the response, and as ``datasets export --format trl`` writes ``prompt``: the one function
    both use, so an export matches a training run.

    ``{prompt}`` is the row's prompt ("" when null). A row's system prompt (column ``system``, when
    non-empty) goes where the template says ``{system}`` (""  for rows without one); a template
    without ``{system}`` gets it in front, followed by a blank line, as the derived ``text`` joins them.
    """
    from corpusmill.sft import PR_SEPARATOR

    pieces = parse_prompt_template(template)
    names = table.column_names
    prompt = pc.fill_null(_array(table, S.PROMPT).cast(pa.string()), "")
    system = _array(table, S.SYSTEM).cast(pa.string()) if S.SYSTEM in names else pa.nulls(table.num_rows, pa.string())
    system_text = pc.fill_null(system, "")
    parts: list = []
    for literal, field in pieces:
        if literal:
            parts.append(literal)
        if field is not None:
            parts.append(prompt if field == S.PROMPT else system_text)
    out = pc.binary_join_element_wise(*parts, "") if len(parts) > 1 else parts[0]
    if not any(field == S.SYSTEM for _, field in pieces):
        has_system = pc.greater(pc.utf8_length(system_text), 0)
        out = pc.if_else(has_system, pc.binary_join_element_wise(system_text, out, PR_SEPARATOR), out)
    return out


def template_from_flag(text: str) -> str:
    """A prompt template typed on a command line: ``\\n`` and ``\\t`` read as newline and tab (``\\\\``
    as one backslash), so ``--prompt-template 'Q: {prompt}\\nA: '`` means what it says."""
    import re

    return re.sub(r"\\([nt\\])", lambda m: {"n": "\n", "t": "\t", "\\": "\\"}[m.group(1)], text)


def _array(table: pa.Table, name: str) -> pa.Array:
    col = table.column(name)
    return col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col


# ----------------------------------------------------------------------------- export

#: ``--format`` values. jsonl, parquet and hf write the stored columns; trl and openai write what a
#: trainer reads (JSONL, one file per split)
EXPORT_FORMATS = ("jsonl", "parquet", "hf", "trl", "openai")
#: columns every exported reject keeps, whatever ``columns`` says: which row, and why it was rejected
REJECT_KEEP = (S.ID, *S.REJECT_COLUMNS)
#: the columns of each trainer shape (trl, openai)
SHAPE_COLUMNS = {"prompt_completion": ["prompt", "completion"], "messages": [S.MESSAGES], "text": [S.TEXT]}


@dataclass
class ExportResult:
    """What :func:`export` wrote."""

    #: file name under the output folder (for hf: split name) -> rows written
    files: dict[str, int]
    #: ``rows`` (stored columns: jsonl, parquet, hf), or the trainer shape: ``prompt_completion``,
    #: ``messages`` or ``text``
    shape: str
    #: the columns of every exported row, in order
    columns: list[str]
    #: split -> rows in no file: rows without the fields of the shape (a plain-text row in a chat export)
    skipped: dict[str, int] = field(default_factory=dict)
    #: things the user should know about the export (printed by the CLI)
    notes: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        files = ", ".join(f"{name} {n:,} rows" for name, n in self.files.items() if name != "README.md")
        skipped = sum(self.skipped.values())
        return files + (f"; as {self.shape}" if self.shape != "rows" else "") + (
            f"; {skipped:,} rows without {self.shape} fields left out" if skipped else "")


def _jsonable_row(row: dict) -> dict:
    meta = row.get(S.META)
    if isinstance(meta, str):
        row[S.META] = orjson.loads(meta)
    raw = row.pop(S.RAW, None)
    if raw is not None:
        row["raw_base64"] = base64.b64encode(raw).decode()
    messages = row.get(S.MESSAGES)
    if messages is not None and messages and "extra" in messages[0]:
        row[S.MESSAGES] = plain_messages(messages)
    return row


def _write_jsonl(path: Path, rows) -> int:
    n = 0
    with open(path, "wb") as f:
        for row in rows:
            f.write(orjson.dumps(row) + b"\n")
            n += 1
    return n


def _stored_rows(tables, columns: list[str]):
    """Rows of ``tables`` as JSON-ready dicts of ``columns`` (those each table has): meta as an
    object, raw bytes as base64, messages with their extra keys merged back."""
    for t in tables:
        yield from map(_jsonable_row, t.select([c for c in columns if c in t.column_names]).to_pylist())


def _trainer_rows(table: pa.Table, shape: str, template: str) -> list[dict | None]:
    """Per row, the columns of ``shape`` as a trainer reads them, or None for a row without them.

    prompt_completion: the prompt written as the trainer writes it (:func:`written_prompts`) and the
    response as ``completion``. messages: the conversation, extra keys merged back; a prompt/response
    row becomes system?/user/assistant messages. text: the text."""
    n = table.num_rows
    names = table.column_names
    if shape == "text":
        return [None if t is None else {S.TEXT: t} for t in (table.column(S.TEXT).to_pylist() if S.TEXT in names else [None] * n)]
    prompts = table.column(S.PROMPT).to_pylist() if S.PROMPT in names else [None] * n
    if shape == "prompt_completion":
        written = written_prompts(table, template).to_pylist()
        responses = table.column(S.RESPONSE).to_pylist() if S.RESPONSE in names else [None] * n
        return [None if p is None else {"prompt": w, "completion": r or ""} for p, w, r in zip(prompts, written, responses)]
    conversations = table.column(S.MESSAGES).to_pylist() if S.MESSAGES in names else [None] * n
    systems = table.column(S.SYSTEM).to_pylist() if S.SYSTEM in names else [None] * n
    responses = table.column(S.RESPONSE).to_pylist() if S.RESPONSE in names else [None] * n
    out: list[dict | None] = []
    for msgs, p, s, r in zip(conversations, prompts, systems, responses):
        if msgs is not None:
            out.append({S.MESSAGES: plain_messages(msgs)})
        elif p is not None:
            turns = [{"role": "system", "content": s}] if s else []
            out.append({S.MESSAGES: turns + [{"role": "user", "content": p}, {"role": "assistant", "content": r or ""}]})
        else:
            out.append(None)
    return out


def _prompt_rows(version: Version) -> tuple[int, int]:
    """(rows with a prompt, rows) over every split, reading only the prompt column."""
    with_prompt = total = 0
    for split in version.splits():
        for f in version.data_files(split):
            col = _read_table(version, f, [S.PROMPT]).column(S.PROMPT)
            total += len(col)
            with_prompt += len(col) - col.null_count
    return with_prompt, total


def trainer_shape(version: Version, fmt: str) -> str:
    """The shape a trl or openai export of ``version`` takes.

    trl: ``prompt_completion`` when every row is a prompt/response row, ``messages`` when the version
    holds conversations (prompt/response rows among them become messages: one file holds one format),
    ``text`` for a plain-text version (TRL's language-modelling format). openai: always ``messages``."""
    names = version.schema().names
    has_prompt, has_messages = S.PROMPT in names, S.MESSAGES in names
    if fmt == "openai":
        if not (has_prompt or has_messages):
            raise CorpusmillError(f"--format openai writes chat messages; {version.ref} has neither prompt/response "
                                  f"nor messages rows (columns: {', '.join(names)}). Use --format trl (a 'text' "
                                  "column, TRL's language-modelling format) or jsonl")
        return "messages"
    if not has_messages:
        return "prompt_completion" if has_prompt else "text"
    if not has_prompt:
        return "messages"
    with_prompt, total = _prompt_rows(version)
    return "prompt_completion" if total and with_prompt == total else "messages"


def _choose_columns(version: Version, fmt: str, shape: str, columns: Sequence[str] | None,
                    drop_columns: Sequence[str] | None) -> tuple[list[str], list[str]]:
    """(columns of the shape, stored columns carried along) after checking ``columns`` and
    ``drop_columns`` against the version; a clear error for a name it lacks."""
    stored = version.schema().names
    if columns is not None and drop_columns is not None:
        raise CorpusmillError("give --columns (what to keep) or --drop-columns (what to leave out), not both")
    if shape == "rows":
        named = columns if columns is not None else drop_columns or []
        bad = [c for c in named if c not in stored]
        if bad:
            raise CorpusmillError(f"{'--columns' if columns is not None else '--drop-columns'}: {version.ref} has no "
                                  f"column {', '.join(repr(c) for c in bad)}; its columns: {', '.join(stored)}")
        if columns is not None:
            return [], list(dict.fromkeys(columns))
        return [], [c for c in stored if c not in set(drop_columns or ())]
    own = SHAPE_COLUMNS[shape]
    if drop_columns is not None:
        raise CorpusmillError(f"--drop-columns: --format {fmt} writes only {', '.join(own)} unless --columns adds "
                              f"stored columns (such as id); there is nothing to drop")
    named = list(dict.fromkeys(columns or ()))
    bad = [c for c in named if c not in stored and c not in own]
    if bad:
        raise CorpusmillError(f"--columns: {version.ref} has no column {', '.join(repr(c) for c in bad)}; --format {fmt} "
                              f"writes {', '.join(own)} and can add stored columns: {', '.join(stored)}")
    return own, [c for c in named if c not in own]


def export(version: Version, fmt: str, out: str | Path, *, columns: Sequence[str] | None = None,
           drop_columns: Sequence[str] | None = None, prompt_template: str | None = None,
           overwrite: bool = False) -> ExportResult:
    """Write one file per split and the rejects under ``out``.

    The export is written into a temporary folder beside ``out`` and renamed into place when it
    is complete, so ``out`` holds one whole export or nothing, never a mix of two: an ``out``
    that already holds files is refused unless ``overwrite`` (then the old folder is renamed
    aside, the new one renamed in, the old one deleted), and a data file that cannot be read
    ends the export with a :class:`CorpusmillError` naming it and nothing left behind.

    * ``jsonl`` / ``parquet``: ``<split>.jsonl`` / ``<split>.parquet`` with every stored column
      (``columns`` keeps only those, ``drop_columns`` leaves those out), rejects in
      ``rejects.jsonl`` / ``rejects.parquet``. JSONL writes ``meta`` as an object, raw input bytes as
      ``raw_base64`` and messages as plain dicts (extra keys such as ``tool_calls`` merged back).
    * ``hf``: a ``datasets.DatasetDict`` (``save_to_disk``), messages as plain dicts where Arrow
      can type them; rejects as a ``Dataset`` in ``out/rejects`` (``load_from_disk(out)`` does not
      list it).
    * ``trl``: ``<split>.jsonl`` in the shape TRL's ``SFTTrainer`` reads (:func:`trainer_shape`):
      ``prompt``/``completion`` with the prompt written by :func:`written_prompts` with
      ``prompt_template`` (default: train's), or ``messages``, or ``text``; ``columns`` adds stored
      columns (``id``...). A ``README.md`` dataset card names the splits, so
      ``datasets.load_dataset(out)`` loads them and leaves ``rejects.jsonl`` out (a version without
      a split step: ``all.jsonl`` is its train split).
    * ``openai``: ``<split>.jsonl`` of ``{"messages": [...]}`` (OpenAI chat fine-tuning files);
      prompt/response rows become system?/user/assistant messages.

    Every format writes the rejects (even none): each keeps ``id`` and the reject columns
    (``stage``, ``reason``, ``detail``...) whatever ``columns`` says.
    """
    if fmt not in EXPORT_FORMATS:
        raise CorpusmillError(f"unknown export format '{fmt}'; use {', '.join(EXPORT_FORMATS)}")
    template = DEFAULT_PROMPT_TEMPLATE if prompt_template is None else prompt_template
    parse_prompt_template(template)
    shape = trainer_shape(version, fmt) if fmt in ("trl", "openai") else "rows"
    own, carried = _choose_columns(version, fmt, shape, columns, drop_columns)
    out = export_target(out, version, overwrite)
    if fmt == "hf":
        try:
            import datasets  # noqa: F401
        except ImportError:
            raise CorpusmillError("--format hf needs Hugging Face datasets: pip install 'corpusmill[hf]'") from None
        if "rejects" in version.splits():
            raise CorpusmillError(f"{version.ref} has a split named 'rejects', where --format hf writes the rejects; "
                                  "export it with --format parquet or jsonl")
    result = ExportResult({}, shape, own + carried)
    if prompt_template is not None and shape != "prompt_completion":
        result.notes.append(f"--prompt-template is not used: --format {fmt} writes {shape}, which the chat template "
                            "(or nothing) formats")
    if fmt == "trl" and shape == "messages" and S.PROMPT in version.schema().names and _prompt_rows(version)[0]:
        result.notes.append("prompt/response rows are written as system/user/assistant messages: the version also "
                            "holds conversations, and a TRL file holds one format")
    reject_columns = carried + [c for c in REJECT_KEEP if c not in carried]
    with staged_folder(out) as staging:
        if shape == "rows":
            _export_rows(version, fmt, staging, carried, reject_columns, result)
        else:
            _export_for_trainer(version, fmt, staging, shape, carried, reject_columns, template, result)
    return result


#: what a temporary export folder beside the target is called: .<target>.corpusmill-export-<pid>-<random>
_STAGING = ".{name}.corpusmill-export-"


def export_target(out: str | Path, version: Version, overwrite: bool) -> Path:
    """``out`` as an absolute path, after refusing what an export must not write to: a file, a
    folder that already holds files (unless ``overwrite``), and, even with ``overwrite``, a
    folder holding the version itself, the current folder or one above it, or the home folder."""
    out = Path(os.path.abspath(os.path.expanduser(out)))
    if out.is_symlink() and out.is_dir():
        out = out.resolve()  # replace the folder it points to, not the link
    if out.exists() and not out.is_dir():
        raise CorpusmillError(f"--out {out} is a file; an export is a folder (one file per split and the rejects): "
                              "give a folder that does not exist yet, or an empty one")
    if not out.is_dir():
        return out
    entries = sorted(p.name for p in out.iterdir())
    if not entries:
        return out
    if not overwrite:
        shown = ", ".join(entries[:3]) + (f" and {len(entries) - 3} more" if len(entries) > 3 else "")
        raise CorpusmillError(f"--out {out} already holds files ({shown}); an export goes into a new or empty folder, "
                              "so that files of two exports never mix. Pass --overwrite to replace the folder whole, "
                              "or give another --out")
    guarded = [(Path(version.path).resolve(), "the version being exported"), (Path.cwd().resolve(), "the current folder"),
               (Path.home().resolve(), "your home folder")]
    for path, what in guarded:
        if path == out or out in path.parents:
            raise CorpusmillError(f"--overwrite {out}: that folder holds {what}; it is not replaced. Give another --out")
    return out


@contextmanager
def staged_folder(target: Path) -> Iterator[Path]:
    """A new folder beside ``target`` to write into; on a clean exit it replaces ``target``
    (renames, on one filesystem: the old folder aside, the new one in, the old one deleted).
    On any error it is deleted and ``target`` is as it was; read and write errors leave as a
    :class:`CorpusmillError` saying that nothing was exported. Staging folders that a killed
    export left beside ``target`` are deleted first."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise CorpusmillError(f"--out {target}: cannot create the folder {target.parent}: "
                              f"{err.strerror or err}") from None
    prefix = _STAGING.format(name=target.name)
    for stale in target.parent.glob(prefix + "*"):
        pid = stale.name[len(prefix):].split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)
    staging = target.parent / f"{prefix}{os.getpid()}-{secrets.token_hex(4)}"
    try:
        staging.mkdir()
    except OSError as err:
        raise CorpusmillError(f"--out {target}: cannot write in {target.parent}: {err.strerror or err}") from None
    try:
        try:
            yield staging
        except OSError as err:  # reads are named by _read_table; what is left is writing the export
            raise CorpusmillError(f"--out {target}: writing the export failed: {err}; nothing was exported") from None
        _replace_folder(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _replace_folder(new: Path, target: Path) -> None:
    if not target.exists():
        try:
            os.rename(new, target)
        except OSError as err:  # another export made it meanwhile
            raise CorpusmillError(f"--out {target}: appeared while exporting ({err.strerror}); nothing was replaced. "
                                  "Export again (with --overwrite to replace it)") from None
        return
    old = target.parent / f"{_STAGING.format(name=target.name)}{os.getpid()}-old-{secrets.token_hex(4)}"
    os.rename(target, old)
    try:
        os.rename(new, target)
    except BaseException:
        os.rename(old, target)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read_table(version: Version, path: Path, columns: list[str] | None = None) -> pa.Table:
    """A data or reject file of ``version``; a file Arrow cannot read (truncated, corrupt,
    gone) is a :class:`CorpusmillError` naming it."""
    try:
        return pq.read_table(path, columns=columns)
    except (pa.ArrowException, OSError) as err:
        try:
            rel = Path(path).relative_to(version.path)
        except ValueError:
            rel = path
        raise CorpusmillError(f"{version.ref}: {rel} cannot be read ({' '.join(str(err).split())}); nothing was "
                              "exported. The version is damaged: restore the file, or publish the version again "
                              "from its pipeline") from None


def _read_split(version: Version, split: str, columns: list[str]) -> pa.Table:
    files = version.data_files(split)
    if not files:
        return version.read_split(split, columns=columns)
    return pa.concat_tables([_read_table(version, f, columns) for f in files])


def _read_rejects(version: Version) -> pa.Table | None:
    tables = [_read_table(version, f) for f in version.reject_files()]
    return pa.concat_tables(tables, promote_options="permissive") if tables else None


def _export_rows(version: Version, fmt: str, out: Path, keep: list[str], reject_columns: list[str],
                 result: ExportResult) -> None:
    """jsonl, parquet, hf: the stored columns ``keep``."""
    rejects = _read_rejects(version)
    if rejects is None:
        rejects = S.reject_schema(version.schema()).empty_table()
    rejects = rejects.select([c for c in reject_columns if c in rejects.column_names])
    if fmt == "jsonl":
        for split in version.splits():
            tables = (_read_table(version, f, keep) for f in version.data_files(split))
            result.files[f"{split}.jsonl"] = _write_jsonl(out / f"{split}.jsonl", _stored_rows(tables, keep))
        result.files["rejects.jsonl"] = _write_jsonl(out / "rejects.jsonl", _stored_rows([rejects], reject_columns))
    elif fmt == "parquet":
        for split in version.splits():
            t = _read_split(version, split, keep)
            pq.write_table(t, out / f"{split}.parquet", compression="zstd")
            result.files[f"{split}.parquet"] = t.num_rows
        pq.write_table(rejects, out / "rejects.parquet", compression="zstd")
        result.files["rejects.parquet"] = rejects.num_rows
    else:
        import datasets

        dd = datasets.DatasetDict({s: datasets.Dataset(_plain_messages_table(_read_split(version, s, keep), result))
                                   for s in version.splits()})
        dd.save_to_disk(str(out))
        result.files = {s: len(dd[s]) for s in dd}
        datasets.Dataset(_plain_messages_table(rejects, result)).save_to_disk(str(out / "rejects"))
        result.files["rejects"] = rejects.num_rows


def _plain_messages_table(table: pa.Table, result: ExportResult) -> pa.Table:
    """``table`` with its messages as plain dicts (extra keys merged back) when they have extra
    keys and Arrow can give them one type; else as stored (``extra`` a JSON string), with a note."""
    if S.MESSAGES not in table.column_names or table.num_rows == 0:
        return table
    stored = table.column(S.MESSAGES)
    if pa.types.is_struct(stored.type.value_type) and "extra" in stored.type.value_type.names:
        extras = pc.list_flatten(stored).combine_chunks().field("extra") if stored.num_chunks else None
        if extras is None or extras.null_count == len(extras):
            plain = stored.cast(pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())])))
        else:
            try:
                plain = pa.array([plain_messages(m) for m in stored.to_pylist()])
            except (pa.ArrowInvalid, pa.ArrowTypeError) as err:
                note = (f"messages written as stored (extra keys as a JSON string in 'extra'): their extra keys have "
                        f"no single Arrow type ({err}); --format jsonl or trl writes them as plain dicts")
                if note not in result.notes:
                    result.notes.append(note)
                return table
        return table.set_column(table.column_names.index(S.MESSAGES), S.MESSAGES, plain)
    return table


def _export_for_trainer(version: Version, fmt: str, out: Path, shape: str, carried: list[str],
                        reject_columns: list[str], template: str, result: ExportResult) -> None:
    """trl, openai: JSONL per split in the trainer's shape, stored columns ``carried`` after it
    (after a reject's shape: ``reject_columns``)."""
    read = list(dict.fromkeys([c for c in (S.TEXT, S.SYSTEM, S.PROMPT, S.RESPONSE, S.MESSAGES) if c in version.schema().names]
                              + carried))
    own = SHAPE_COLUMNS[shape]

    def rows(tables, split: str | None, extra: list[str]):
        for t in tables:
            shaped = _trainer_rows(t, shape, template)
            stored = _stored_rows([t], extra)
            for s, row in zip(shaped, stored):
                if s is None:
                    if split is not None:  # a data row the shape cannot hold: counted, in no file
                        result.skipped[split] = result.skipped.get(split, 0) + 1
                        continue
                    s = dict.fromkeys(own)  # a reject keeps its reason even without the trained fields
                yield {**s, **row}

    for split in version.splits():
        tables = (_read_table(version, f, read) for f in version.data_files(split))
        result.files[f"{split}.jsonl"] = _write_jsonl(out / f"{split}.jsonl", rows(tables, split, carried))
    rejects = _read_rejects(version)
    tables = [rejects] if rejects is not None else []
    result.files["rejects.jsonl"] = _write_jsonl(out / "rejects.jsonl", rows(tables, None, reject_columns))
    if fmt == "trl":
        (out / "README.md").write_text(_trl_card(version, shape, template, carried), encoding="utf-8")
        result.files["README.md"] = 0


def _trl_card(version: Version, shape: str, template: str, carried: list[str]) -> str:
    """A dataset card whose ``configs`` name the split files, so ``datasets.load_dataset(DIR)``
    loads exactly the splits (not rejects.jsonl); the split ``all`` of a version without a split
    step is named train (``all`` is reserved in ``datasets``)."""
    import yaml

    splits = version.splits()
    files = [{"split": "train" if s == "all" and "train" not in splits else s, "path": f"{s}.jsonl"} for s in splits]
    front = yaml.safe_dump({"configs": [{"config_name": "default", "data_files": files}]}, sort_keys=False)
    what = {"prompt_completion": f"`prompt` / `completion` (prompt/completion format; the prompt written with the "
                                 f"template {template!r}, as `corpusmill train` writes it)",
            "messages": "`messages` (conversational format: role, content and any extra keys such as tool_calls)",
            "text": "`text` (language-modelling format)"}[shape]
    extra = f" Also: {', '.join(f'`{c}`' for c in carried)}." if carried else ""
    return (f"---\n{front}---\n\n# {version.ref}\n\nExported by `corpusmill datasets export {version.ref} --format trl`: "
            f"{what}.{extra} Load with `datasets.load_dataset(\"path/to/this/folder\")`. Rejected rows, with the stage "
            f"and reason, are in `rejects.jsonl` (not a split).\n")


def versions_table(store: Store) -> list[dict]:
    """One row per version (``datasets list``). A version whose manifest cannot be read is a row
    with ``status: corrupt`` and the ``problem``, not a failure of the whole listing; a
    dataset whose refs.json cannot be read lists its versions without tags."""
    from corpusmill.errors import StoreError
    from corpusmill.store import read_manifest

    rows = []
    for name in store.datasets():
        try:
            refs = store.refs(name)
        except StoreError:
            refs = {}  # `datasets verify` names the damage; the versions are still listed
        for v in store.versions(name):
            tags = sorted(t for t, vid in refs.items() if vid == v.id)
            try:
                m = read_manifest(v.path, v.ref)
            except StoreError as err:
                rows.append({"dataset": name, "version": v.id, "created_at": v.stats.get("created_at", ""),
                             "status": "corrupt", "problem": str(err), "tags": tags})
                continue
            rows.append({
                "dataset": name, "version": v.id, "created_at": v.stats.get("created_at", ""),
                "parent": m.get("parent"), "input": m["counts"]["input"], "kept": m["counts"]["kept"],
                "splits": m["splits"], "tags": tags, "status": "ok",
            })
    return rows
