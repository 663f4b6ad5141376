"""Pipeline YAML: schema, validation that reports every problem at once, and the fingerprint."""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from corpusmill.errors import ConfigError
from corpusmill.safeyaml import short_repr

FORMATS = ("auto", "jsonl", "json", "csv", "tsv", "parquet", "text", "hf_disk", "hf_hub")
#: how a row's fields map onto the record (see :mod:`corpusmill.dataprep.readers`)
DIALECTS = ("auto", "text", "prompt_response", "messages", "alpaca", "dolly", "sharegpt", "openai")


class InputSpec(BaseModel):
    """One input: a file, folder or glob, and how its fields map onto the record."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str = Field(description="file, folder or glob; relative paths are relative to the pipeline file")
    format: Literal[FORMATS] = Field(  # type: ignore[valid-type]
        "auto", description="auto: from the file extension. json: one JSON array of row objects, or one object "
        "holding that list under a key (records_key); a .json file that holds one object per line is read as jsonl")
    records_key: str | None = Field(
        None, description="a JSON file holding one object: the key whose value is the list of rows; "
        "None = the only key whose value is a list of objects")
    dialect: Literal[DIALECTS] = Field(  # type: ignore[valid-type]
        "auto", description="how a row's fields map onto the record: text (text_field); prompt_response "
        "(prompt_field or prompt_template, response_field); messages (a list of {role, content} under messages_field); "
        "alpaca (instruction + input -> prompt, output -> response); dolly (instruction + context -> prompt, response); "
        "sharegpt (conversations of {from, value}); openai (chat fine-tuning rows: messages, extra keys kept). "
        "auto: from the *_field keys when one is set, else detected from the first rows of the files at validation "
        "(said on stderr, recorded in the version's config)")
    text_field: str = "text"
    id_field: str | None = Field(None, description="rows without one get a stable id from source name and text")
    label_field: str | None = Field(None, description="the label column, e.g. Dolly's category")
    prompt_field: str | None = None
    response_field: str | None = None
    system_field: str | None = Field(
        None, description="a system prompt: the system column of a single-turn row, or a system message put "
        "before a conversation's messages; an empty value means none")
    prompt_template: str | None = Field(
        None, description="compose the prompt from several fields, e.g. '{instruction}\n\n{input}'. An empty, "
        "null or missing field is dropped with the text between it and its neighbour, so no separator is left "
        "dangling; text before the first and after the last placeholder is always kept. alpaca default: "
        "'{instruction}\n\n{input}', dolly: '{instruction}\n\n{context}'")
    messages_field: str | None = Field(None, description="the list of messages (sharegpt default: conversations, "
                                       "messages and openai: messages)")
    role_key: str | None = Field(None, description="a message's role key (sharegpt default: from; else role)")
    content_key: str | None = Field(None, description="a message's content key (sharegpt default: value; else content)")
    role_map: dict[str, str] = Field(
        default_factory=dict, description="extra or overriding role names, onto system, user, assistant or tool, "
        "e.g. {bot: assistant}; added to the dialect's own (sharegpt: human, gpt, system, function_call, "
        "observation...; messages/openai: system, user, assistant, tool, developer, function). A role in neither "
        "is a rejected row (unknown_role)")
    allow_empty: bool = Field(
        False, description="let the run go on when the reader rejects every row of this input; by default that "
        "stops the run (exit 2) with the dominant reason and its likely fix")
    text_unit: Literal["file", "line", "block"] = Field(
        "file", description="plain text: one document per file, per line, or per block of lines"
    )
    block_separator: str = Field(
        "", description="text_unit=block: a line equal to this ends a document; '' = blank lines"
    )
    split: str | None = Field(None, description="hf_disk/hf_hub: which split to read")
    max_text_bytes: int = Field(1_000_000, ge=0, description="longer texts are rejected as too_large; 0 = no limit")
    keep_meta: bool = Field(True, description="store unmapped fields in the meta column, as one JSON object with sorted keys")
    license: str | None = None
    source: str | None = Field(None, description="where the data came from (URL, owner); recorded in the manifest")

    @field_validator("path")
    @classmethod
    def _path_not_empty(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("path must not be empty")
        return v

    @field_validator("role_map")
    @classmethod
    def _roles_known(cls, v: dict[str, str]) -> dict[str, str]:
        from corpusmill.sft import ROLES

        bad = {k: r for k, r in v.items() if r not in ROLES}
        if bad:
            raise ValueError(f"roles map onto one of {', '.join(ROLES)}; not {', '.join(map(repr, bad.values()))}")
        return v

    @field_validator("prompt_template")
    @classmethod
    def _template_fields(cls, v: str | None) -> str | None:
        if v is None:
            return v
        from corpusmill.dataprep.readers import PromptTemplate

        PromptTemplate(v)  # raises ValueError naming the problem
        return v


class ExecutionSpec(BaseModel):
    """How work is cut up. Part of the version id, because shard layout shapes the data files."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    shard_bytes: int = Field(64 << 20, ge=1024, description="uncompressed line files are cut at line starts into the fewest shards of at most about this size, all of about the same size")
    batch_rows: int = Field(8192, ge=1, description="rows per batch handed to a stage")
    row_group_rows: int = Field(65536, ge=1, description="rows per Parquet row group in data files")
    text_compression: Literal["lz4", "zstd", "snappy", "none"] = Field(
        "lz4", description="codec of the text column in the published data files (the other columns are zstd): lz4 "
        "reads back ~2x faster than zstd (training, audits and a refresh's dedup read it), zstd makes it ~30 % smaller")


class PipelineConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    dataset: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", description="dataset name in the store")
    store: str | None = Field(None, description="where versions are published: a folder (relative to the pipeline file) "
                              "or a URL such as s3://bucket/corpora; --store and $CORPUSMILL_STORE override it")
    seed: int = 0
    description: str | None = None
    license: str | None = None
    inputs: list[InputSpec] = Field(min_length=1)
    steps: list[dict[str, Any]] = Field(default_factory=list)
    execution: ExecutionSpec = ExecutionSpec()
    allow_empty_version: bool = Field(
        False, description="publish a version even when the steps reject every row; by default that stops the run "
        "(exit 2) with the stage and reason that rejected most. Not part of the version id (as an input's allow_empty)")


def _loc(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _valid_keys(model: type[BaseModel], loc: tuple) -> list[str]:
    """The keys valid at the model nested under ``loc`` (used for unknown-key messages)."""
    current: Any = model
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        fields = getattr(current, "model_fields", {})
        if part not in fields:
            return []
        ann = fields[part].annotation
        args = getattr(ann, "__args__", ())
        current = next((a for a in (ann, *args) if isinstance(a, type) and issubclass(a, BaseModel)), None)
        if current is None:
            return []
    return list(getattr(current, "model_fields", {}))


def format_errors(err: ValidationError, model: type[BaseModel], prefix: tuple = ()) -> list[str]:
    """Pydantic errors as '<key path>: <problem>' lines, with valid keys and a suggestion."""
    problems = []
    for e in err.errors():
        loc = prefix + tuple(e["loc"])
        where = _loc(loc)
        if e["type"] == "extra_forbidden":
            key = str(e["loc"][-1])
            valid = _valid_keys(model, tuple(e["loc"]))
            hint = difflib.get_close_matches(key, valid, n=1)
            msg = f"{where}: unknown key"
            if hint:
                msg += f" (did you mean '{hint[0]}'?)"
            if valid:
                msg += f"; valid keys: {', '.join(valid)}"
            problems.append(msg)
        elif e["type"] == "missing":
            problems.append(f"{where}: missing required key")
        else:
            problems.append(f"{where}: {e['msg']} (got {short_repr(e.get('input'))})")
    return problems


def resolve_steps(config: PipelineConfig, registry: dict[str, type]) -> tuple[list[tuple[str, str, Any]], list[str]]:
    """Validate each step against its stage's Config. Returns ([(name, kind, config)], problems)."""
    steps, problems, seen = [], [], {}
    for i, step in enumerate(config.steps):
        where = f"steps[{i}]"
        if not isinstance(step, dict) or len(step) != 1:
            problems.append(
                f"{where}: a step is a mapping with exactly one stage kind, e.g. '- dedup: {{exact: true}}'; "
                f"valid kinds: {', '.join(sorted(registry))}"
            )
            continue
        (kind, options), = step.items()
        if kind not in registry:
            hint = difflib.get_close_matches(str(kind), list(registry), n=1)
            problems.append(
                f"{where}: unknown stage kind '{kind}'"
                + (f" (did you mean '{hint[0]}'?)" if hint else "")
                + f"; valid kinds: {', '.join(sorted(registry))}"
            )
            continue
        stage_cls = registry[kind]
        if options is None or options is True:
            options = {}
        if not isinstance(options, dict):
            problems.append(f"{where}.{kind}: options must be a mapping (got {options!r})")
            continue
        try:
            cfg = stage_cls.Config(**options)
        except ValidationError as err:
            problems += format_errors(err, stage_cls.Config, prefix=(f"steps[{i}]", kind))
            continue
        seen[kind] = seen.get(kind, 0) + 1
        name = kind if seen[kind] == 1 else f"{kind}_{seen[kind]}"
        steps.append((name, kind, cfg))
    return steps, problems


def load_pipeline(path: str | Path, registry: dict[str, type]) -> tuple[PipelineConfig, list, Path]:
    """Read and validate a pipeline file. Raises :class:`ConfigError` listing every problem."""
    from corpusmill.safeyaml import load_file

    path = Path(path)
    raw = load_file(path, what="pipeline file")  # within limits: size, nesting, aliases expanded
    return parse_pipeline(raw, registry, base_dir=path.parent.resolve(), source=str(path))


def parse_pipeline(raw: Any, registry: dict[str, type], *, base_dir: Path, source: str = "pipeline"):
    if not isinstance(raw, dict):
        raise ConfigError(["the pipeline must be a YAML mapping with keys dataset, inputs, steps"], source=source)
    problems: list[str] = []
    try:
        config = PipelineConfig(**raw)
    except ValidationError as err:
        problems += format_errors(err, PipelineConfig)
        config = None
        # still check the steps, so every problem is reported in one go
        steps_raw = raw.get("steps") or []
        if isinstance(steps_raw, list):
            fake = PipelineConfig.model_construct(steps=steps_raw)
            problems += resolve_steps(fake, registry)[1]
        problems += _input_mapping_problems(raw.get("inputs"))
    if config is not None:
        steps, step_problems = resolve_steps(config, registry)
        problems += step_problems
        from corpusmill.dataprep.readers import check_input_paths

        problems += check_input_paths(config.inputs, base_dir)
        if not problems:
            config, more = _resolve_dialects(config, base_dir)
            problems += more
    if problems:
        raise ConfigError(problems, source=source)
    return config, steps, base_dir


def _input_mapping_problems(inputs: Any) -> list[str]:
    """Contradicting keys of the inputs that are valid on their own (when another key failed validation)."""
    from corpusmill.dataprep.readers import mapping_problems

    problems = []
    for i, item in enumerate(inputs if isinstance(inputs, list) else []):
        try:
            spec = InputSpec(**item) if isinstance(item, dict) else None
        except ValidationError:
            continue
        problems += [f"inputs[{i}]: {p}" for p in mapping_problems(spec)] if spec else []
    return problems


def _resolve_dialects(config: PipelineConfig, base_dir: Path) -> tuple[PipelineConfig, list[str]]:
    """Each input's dialect made concrete (detected from its first rows where ``dialect: auto`` and no
    field is mapped), said on stderr, so the resolved config and the version id name what was read."""
    import sys

    from corpusmill.dataprep.readers import resolve_inputs

    inputs, notes, problems = resolve_inputs(config.inputs, base_dir)
    for note in notes:
        print(f"corpusmill: {note}", file=sys.stderr)
    return config.model_copy(update={"inputs": inputs}), problems


def pipeline_step(path: str | Path, kind: str, step: int | None, registry: dict[str, type]):
    """A preview's step: the pipeline file loaded and validated, and its ``step``-th (0-based) step of
    ``kind``. Returns (config, steps, base_dir, position in steps, stage name, stage config); a
    pipeline without such a step, or a step number out of range, is a ConfigError."""
    config, steps, base = load_pipeline(path, registry)
    found = [(i, name, cfg) for i, (name, k, cfg) in enumerate(steps) if k == kind]
    if not found:
        raise ConfigError([f"{path}: no {kind} step to preview"])
    k = step or 0
    if not 0 <= k < len(found):
        raise ConfigError([f"--step {k}: the pipeline has {len(found)} {kind} step(s) (0-based)"])
    position, name, cfg = found[k]
    return config, steps, base, position, name, cfg


def store_root(cli_store: str | None, config: PipelineConfig | None, base_dir: Path | None) -> Path | str:
    """--store, then the pipeline's ``store:``, then $CORPUSMILL_STORE, then ./corpusmill-store.
    A remote URL (``s3://bucket/corpora``) is returned as a string; a local path or ``file://``
    URL as an absolute Path (a relative ``store:`` is relative to the pipeline file)."""
    from corpusmill import fs as fsio

    def local_or_url(value: str, base: Path) -> Path | str:
        if fsio.is_remote(value):
            return fsio.normalize_url(value)
        p = Path(fsio.local_path(value))
        return (p if p.is_absolute() else base / p).resolve()

    if cli_store:
        return local_or_url(cli_store, Path.cwd())
    if config is not None and config.store:
        return local_or_url(config.store, base_dir or Path.cwd())
    if os.environ.get("CORPUSMILL_STORE"):
        return local_or_url(os.environ["CORPUSMILL_STORE"], Path.cwd())
    return Path("corpusmill-store").resolve()
