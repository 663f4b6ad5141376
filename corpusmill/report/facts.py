"""What the report and the card show beyond the manifest, read once from a version's files.

Everything here is a cheap, vectorised read of a few columns of the data and reject files
(text, lang and the numeric signal columns). Past :data:`MAX_ROWS` rows per side the rest is not
read and the figures say they are from the first rows, so a report never costs more than a
bounded read, whatever the corpus size.

What the data side takes from the text (each row's length and leakage key) is kept per data
file in a small cache keyed by the file's sha256 (:class:`TextFacts`): a version that shares
files with one already reported (a refresh links its parent's) does not decode and normalise
that text again. The figures are the same either way.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import xxhash

from corpusmill import schema as S

#: rows read per side (kept data, rejects) for distributions; counts come from the manifest
MAX_ROWS = 250_000
#: sample rejected rows shown per (stage, reason)
SAMPLES_PER_REASON = 3
#: characters of text shown per sample row
SAMPLE_CHARS = 400
LANG = "lang"
CLUSTER_ID = "cluster_id"
#: columns that are numbers but not signals worth a histogram
NOT_SIGNALS = {S.SIMILARITY}
#: bump when what :class:`TextFacts` holds, or how a leakage key is made, changes
TEXT_FACTS_FORMAT = 1


@dataclass
class Side:
    """Columns read from one kind of file (data or rejects), up to MAX_ROWS rows."""

    table: pa.Table | None
    rows_total: int
    rows_read: int
    #: per row read, the index of its split in the version's split list (data files only)
    split_of_row: np.ndarray | None = None
    #: per row read, its characters (-1: no text) and the 64-bit hash of its leakage key (when
    #: asked for): the data side's text facts; the text itself is then not in ``table``
    lengths: np.ndarray | None = None
    keys: np.ndarray | None = None

    @property
    def sampled(self) -> bool:
        return self.rows_read < self.rows_total


@dataclass
class VersionFacts:
    lengths: dict | None = None
    languages: dict | None = None
    clusters: dict | None = None
    near_similarities: list[float] = field(default_factory=list)
    leakage: dict | None = None
    signals: dict[str, dict] = field(default_factory=dict)
    samples: list[dict] = field(default_factory=list)
    #: one entry per mix step, as :func:`mix_steps` reads it
    mix: list[dict] = field(default_factory=list)
    data_sampled: bool = False
    rejects_sampled: bool = False


@dataclass
class TextFacts:
    """Per row of the first rows of one data file: characters of its text (-1 where it has none)
    and, when asked for, the xxh3-64 of its leakage key (:func:`key_hashes`).

    Cached under ``$CORPUSMILL_CACHE/report-facts/`` (default ``~/.cache/corpusmill``) as one
    Arrow file per data file, named by the file's sha256: the same bytes give the same facts, so
    an entry is good for every version and store holding that file. A missing, short or
    unreadable entry is computed again; one that cannot be written is simply not kept."""

    lengths: np.ndarray  # int64
    keys: np.ndarray | None  # uint64

    @staticmethod
    def folder() -> Path:
        from corpusmill.remote_store import cache_base

        return cache_base() / "report-facts" / f"v{TEXT_FACTS_FORMAT}"

    @classmethod
    def of(cls, text: pa.ChunkedArray | pa.Array, keys: bool) -> "TextFacts":
        arr = text.combine_chunks() if isinstance(text, pa.ChunkedArray) else text
        lengths = pc.fill_null(pc.utf8_length(arr), -1).to_numpy(zero_copy_only=False).astype(np.int64)
        return cls(lengths, key_hashes(_leakage_key(arr)) if keys else None)

    @classmethod
    def load(cls, sha256: str | None, rows: int, keys: bool) -> "TextFacts | None":
        if not sha256:
            return None
        try:
            with pa.memory_map(str(cls.folder() / f"{sha256}.arrow")) as src:
                t = pa.ipc.open_file(src).read_all()
        except (OSError, pa.ArrowInvalid):
            return None
        if t.num_rows < rows or (keys and "key" not in t.column_names):
            return None
        t = t.slice(0, rows)
        return cls(t.column("length").to_numpy().astype(np.int64),
                   t.column("key").to_numpy() if keys else None)

    def save(self, sha256: str | None) -> None:
        if not sha256:
            return
        cols = {"length": pa.array(self.lengths, pa.int64())}
        if self.keys is not None:
            cols["key"] = pa.array(self.keys, pa.uint64())
        table = pa.table(cols)
        folder = self.folder()
        tmp = folder / f".{sha256}.{os.getpid()}.tmp"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
                writer.write_table(table)
            os.replace(tmp, folder / f"{sha256}.arrow")
        except OSError:  # a read-only or full cache: the facts are simply not kept
            try:
                tmp.unlink(missing_ok=True)
            except OSError:
                pass


def _numeric(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_floating(t)


def _sample(files: list[tuple[Path, int | None, str | None]]) -> tuple[list[tuple], int]:
    """The files holding the first MAX_ROWS rows, as (path, split, sha256, rows taken, column
    names), and the rows of all ``files``: from the footers only."""
    todo, total = [], 0
    for path, split, sha in files:
        meta = pq.read_metadata(path)
        if total < MAX_ROWS:
            todo.append((path, split, sha, min(meta.num_rows, MAX_ROWS - total), meta.schema.to_arrow_schema().names))
        total += meta.num_rows
    return todo, total


def _read(files: list[tuple[Path, int | None, str | None]], wanted: set[str], *, text_facts: bool = False,
          keys: bool = False) -> Side:
    """Columns in ``wanted`` from ``files`` ([(path, split index or None, sha256 or None)]).

    With ``text_facts`` the text is not returned but its :class:`TextFacts` are (with ``keys``,
    the leakage key hashes too): from the cache where a file's are there, else from the text,
    on the same threads, and then kept."""
    from corpusmill.stage import per_shard, read_parquet

    todo, total = _sample(files)

    def read(_, item):
        path, _split, sha, take, names = item
        facts = TextFacts.load(sha, take, keys) if text_facts and S.TEXT in names else None
        columns = [c for c in names if c in wanted and not (text_facts and c == S.TEXT and facts is not None)]
        table = read_parquet(path, columns).slice(0, take)
        if text_facts and S.TEXT in table.column_names:
            facts = TextFacts.of(table.column(S.TEXT), keys)
            facts.save(sha)
            table = table.drop_columns([S.TEXT])
        return table, facts

    got = per_shard(read, todo)  # the files on a few threads
    parts = [t for t, _ in got]
    splits = [np.full(t.num_rows, -1 if item[1] is None else item[1], dtype=np.int32) for t, item in zip(parts, todo)]
    # (tables without columns concatenate to no rows: the row counts come from the parts)
    table = pa.concat_tables(parts, promote_options="permissive") if parts and parts[0].num_columns else None
    read_rows = sum(t.num_rows for t in parts)
    side = Side(table, total, read_rows, np.concatenate(splits) if splits else None)
    if text_facts and parts and all(f is not None for _, f in got):
        side.lengths = np.concatenate([f.lengths for _, f in got])
        if keys:
            side.keys = np.concatenate([f.keys for _, f in got])
    return side


def _data_columns(manifest: dict) -> set[str]:
    return {S.TEXT, LANG, *_signal_columns(manifest)}


def _signal_columns(manifest: dict) -> set[str]:
    schema = {c["name"]: c["type"] for c in manifest["schema"]}
    return {c for c in schema if c not in (S.ID, S.TEXT, S.LABEL) and c not in NOT_SIGNALS
            and any(t in schema[c] for t in ("int", "float", "double"))}


def _lengths(side: Side) -> np.ndarray:
    """Characters per text (unreadable rows, which have none, left out)."""
    if side.lengths is not None:
        return side.lengths[side.lengths >= 0]
    if side.table is None or S.TEXT not in side.table.column_names:
        return np.zeros(0, dtype=np.int64)
    n = pc.drop_null(pc.utf8_length(side.table.column(S.TEXT)))
    return n.to_numpy().astype(np.int64) if len(n) else np.zeros(0, dtype=np.int64)


def pow2_edges(max_value: float) -> list[float]:
    """0, 1, 2, 4, ... up past ``max_value``: bins that show short and long texts alike."""
    edges = [0.0, 1.0]
    while edges[-1] <= max_value:
        edges.append(edges[-1] * 2)
    return edges


def _bin(values: np.ndarray, edges: list[float]) -> list[int]:
    idx = np.clip(np.searchsorted(np.asarray(edges), values, side="right") - 1, 0, len(edges) - 2)
    return np.bincount(idx, minlength=len(edges) - 1).tolist()


#: bytes Arrow's utf8 whitespace functions treat as whitespace in ASCII (tab..CR, FS..US, space)
_ASCII_SPACE = np.zeros(256, dtype=bool)
_ASCII_SPACE[[9, 10, 11, 12, 13, 28, 29, 30, 31, 32]] = True


def _leakage_key(arr: pa.Array) -> pa.Array:
    """Lower case, whitespace runs as one space, trimmed (see :func:`_normalised_text`)."""
    return _collapse_spaces(pc.utf8_trim_whitespace(pc.utf8_lower(arr)))


def _normalised_text(col: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray:
    """Lower case, whitespace runs as one space, trimmed: the exact-leakage key.

    Arrow lower-cases and trims; the runs of whitespace inside are collapsed on the UTF-8 bytes
    with numpy (Arrow's split-and-join makes a list array of every word: ~4x slower). A row
    holding a non-ASCII whitespace character (no-break space, U+2000-U+200A, ...) goes through
    Arrow's split and join instead, so both paths give the same keys (a test checks it)."""
    from corpusmill.stage import per_shard

    chunks = col.chunks if isinstance(col, pa.ChunkedArray) else [col]
    # chunk by chunk on a few threads: Arrow's kernels and numpy release the GIL
    return pa.chunked_array(per_shard(lambda _, c: _leakage_key(c), chunks),
                            pa.string())


def _collapse_spaces(arr: pa.Array) -> pa.Array:
    if len(arr) == 0:
        return arr.cast(pa.string())
    arr = arr.cast(pa.large_string())  # 64-bit offsets: one layout whatever the input
    valid, offsets_buf, data_buf = arr.buffers()
    offsets = np.frombuffer(offsets_buf, dtype=np.int64)[arr.offset:arr.offset + len(arr) + 1]
    data = np.frombuffer(data_buf, dtype=np.uint8)[offsets[0]:offsets[-1]] if data_buf is not None else np.zeros(0, np.uint8)
    offsets = offsets - offsets[0]
    # comparisons, not a table lookup per byte (several times faster): a whitespace byte is
    # <= 32, and the few bytes < 32 (tabs, newlines, control characters) are looked at one by one
    space = data <= 32
    low = np.flatnonzero(data < 32)
    space[low[~_ASCII_SPACE[data[low]]]] = False
    # rows were trimmed, so a run of spaces never touches a row's ends: runs never span two rows
    drop = np.zeros(len(data), dtype=bool)
    np.logical_and(space[1:], space[:-1], out=drop[1:])
    out = data.copy()
    out[low[_ASCII_SPACE[data[low]]]] = 32
    gone = np.flatnonzero(drop)
    if len(gone):
        out = out[~drop]
    new_offsets = offsets - np.searchsorted(gone, offsets)
    fast = pa.Array.from_buffers(pa.large_string(), len(arr), [valid, pa.py_buffer(new_offsets), pa.py_buffer(out)],
                                 null_count=arr.null_count)
    slow = _has_unicode_space(data, offsets)
    if slow.any():
        mask = pa.array(slow)
        redo = pc.binary_join(pc.utf8_split_whitespace(arr.filter(mask)), pa.scalar(" ", pa.large_string()))
        fast = pc.replace_with_mask(fast, mask, redo)
    return fast.cast(pa.string())


def _has_unicode_space(data: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Per row: does it hold one of the non-ASCII characters Arrow counts as whitespace (U+0085,
    U+00A0, U+1680, U+2000-U+200A, U+2028, U+2029, U+202F, U+205F, U+3000)?"""
    n = len(offsets) - 1
    # their UTF-8 forms start with 0xC2 or 0xE1-0xE3; such lead bytes are rare: look at what follows them only
    at = np.flatnonzero((data == 0xC2) | ((data - np.uint8(0xE1)) <= 2))
    last = len(data) - 1  # a lead byte at the very end is broken UTF-8: reading itself again matches nothing
    b0, b1, b2 = data[at], data[np.minimum(at + 1, last)], data[np.minimum(at + 2, last)]
    e2 = b0 == 0xE2
    hit = (b0 == 0xC2) & ((b1 == 0x85) | (b1 == 0xA0))
    hit |= (b0 == 0xE1) & (b1 == 0x9A) & (b2 == 0x80)
    hit |= e2 & (b1 == 0x80) & (((b2 >= 0x80) & (b2 <= 0x8A)) | (b2 == 0xA8) | (b2 == 0xA9) | (b2 == 0xAF))
    hit |= e2 & (b1 == 0x81) & (b2 == 0x9F)
    hit |= (b0 == 0xE3) & (b1 == 0x80) & (b2 == 0x80)
    at = at[hit]
    rows = np.zeros(n, dtype=bool)
    rows[np.searchsorted(offsets, at, side="right") - 1] = True
    return rows


def key_hashes(keys: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """The xxh3-64 of each key's UTF-8 bytes (0 for a null): rows are compared by these. Two
    different keys get the same one with probability 2**-64 per pair."""
    chunks = keys.chunks if isinstance(keys, pa.ChunkedArray) else [keys]
    out = [np.zeros(0, dtype=np.uint64)]
    digest = xxhash.xxh3_64_intdigest
    for arr in chunks:
        if not len(arr):
            continue
        width = np.int64 if pa.types.is_large_string(arr.type) else np.int32
        _, offsets_buf, data_buf = arr.buffers()
        offsets = np.frombuffer(offsets_buf, dtype=width)[arr.offset:arr.offset + len(arr) + 1].tolist()
        data = memoryview(data_buf) if data_buf is not None else memoryview(b"")
        h = np.fromiter((digest(data[a:b]) for a, b in zip(offsets[:-1], offsets[1:])), dtype=np.uint64, count=len(arr))
        if arr.null_count:
            h[arr.is_null().to_numpy(zero_copy_only=False)] = 0
        out.append(h)
    return np.concatenate(out)


def leakage_matrix(text: pa.ChunkedArray | pa.Array | None, split_of_row: np.ndarray, splits: list[str],
                   keys: np.ndarray | None = None) -> dict:
    """Rows of split B whose normalised text also occurs in split A (off the diagonal), and rows
    that share their text with another row of the same split (on it). ``split_of_row`` holds each
    row's index into ``splits``; ``keys``: the hashes of the normalised texts (:func:`key_hashes`),
    when already at hand."""
    if keys is None:
        keys = key_hashes(_normalised_text(text))
    _, codes = np.unique(keys, return_inverse=True)
    per = [codes[split_of_row == k] for k in range(len(splits))]
    m = []
    for a in range(len(splits)):
        row = []
        for b in range(len(splits)):
            if a == b:
                _, inverse, counts = np.unique(per[a], return_inverse=True, return_counts=True)
                row.append(int((counts[inverse] > 1).sum()))
            else:
                row.append(int(np.isin(per[b], per[a]).sum()))
        m.append(row)
    return {"splits": splits, "matrix": m, "rows": {s: int(len(per[k])) for k, s in enumerate(splits)}}


def _signal_thresholds(manifest: dict) -> dict[str, list[tuple[float, str]]]:
    """Quality rule bounds by signal column, from the resolved config (for markers on histograms)."""
    steps = manifest.get("config", {}).get("steps", [])
    if not any("quality" in step for step in steps):
        return {}
    try:  # the rule -> column map lives with the rules (already imported by a run that has them)
        from corpusmill.dataprep.quality import RULES
    except ImportError:  # pragma: no cover - dataprep ships with corpusmill
        return {}
    column = {r.name: r.column for r in RULES}
    out: dict[str, list[tuple[float, str]]] = {}
    for step in steps:
        (kind, cfg), = step.items()
        if kind != "quality":
            continue
        for rule, rc in (cfg.get("rules") or {}).items():
            if not isinstance(rc, dict) or rc.get("action") == "disabled" or rule not in column:
                continue
            for bound in ("min", "max"):
                if rc.get(bound) is not None:
                    out.setdefault(column[rule], []).append(
                        (float(rc[bound]), f"{rule} {bound} {rc[bound]:g} ({rc.get('action')})"))
    return out


def round_edges(lo: float, hi: float, bins: int = 20) -> list[float]:
    """At most about ``bins`` equal bins covering [lo, hi] whose edges are round numbers (a step of
    1, 2 or 5 times a power of ten), so the axis reads 0.05, 0.1, 0.15 and not 0.0854."""
    from corpusmill.report.svg import nice_ticks

    ticks = nice_ticks(lo, hi, bins)
    step = ticks[1] - ticks[0] if len(ticks) > 1 else 1.0
    start = math.floor(lo / step + 1e-9) * step
    edges = [round(start, 10)]
    while edges[-1] <= hi:  # the last bin is [e, e + step): hi falls inside it
        edges.append(round(start + len(edges) * step, 10))
    return edges


def _signal_hist(kept: np.ndarray, rejected: np.ndarray, integer: bool) -> dict:
    both = np.concatenate([kept, rejected])
    both = both[np.isfinite(both)]
    if not len(both):
        return {}
    lo, hi = float(both.min()), float(both.max())
    p50 = float(np.median(both))
    if lo >= 0 and hi > 64 and hi > 50 * max(p50, 1):
        edges = pow2_edges(hi)
    elif integer and hi - lo < 20:  # one bin per value: [k, k + 1)
        edges = [lo + i for i in range(int(hi - lo) + 2)]
    elif hi == lo:
        edges = [lo, lo + 1.0]
    else:
        edges = round_edges(lo, hi)
    return {"edges": edges, "min": lo, "max": hi, "kept": _bin(kept[np.isfinite(kept)], edges),
            "rejected": _bin(rejected[np.isfinite(rejected)], edges)}


def gather(version) -> VersionFacts:
    """Read what the report needs from a version (a published one or one being assembled)."""
    m = version.manifest
    splits = list(m["splits"])
    facts = VersionFacts(mix=mix_steps(version))
    schema = {c["name"]: c["type"] for c in m["schema"]}
    signal_cols = _signal_columns(m)
    sha = {rel: entry.get("sha256") for rel, entry in m.get("files", {}).items()}
    data_files = [(f, k, sha.get(f"data/{f.name}")) for k, s in enumerate(splits) for f in version.data_files(s)]
    data = _read(data_files, _data_columns(m), text_facts=True, keys=len(splits) > 1)
    rejects = _read([(f, None, None) for f in version.reject_files()],
                    {S.ID, S.TEXT, S.SOURCE, LANG, S.STAGE, S.REASON, S.DETAIL, S.DUPLICATE_OF, S.SIMILARITY,
                     *signal_cols})
    facts.data_sampled, facts.rejects_sampled = data.sampled, rejects.sampled
    rej = rejects.table

    # lengths: the input is every kept row plus every rejected row
    after = _lengths(data)
    before = np.concatenate([after, _lengths(rejects)])
    if len(before):
        edges = pow2_edges(float(before.max()))
        facts.lengths = {"edges": edges, "before": _bin(before, edges), "after": _bin(after, edges),
                         "rows_before": int(len(before)), "rows_after": int(len(after)),
                         "median_before": float(np.median(before)),
                         "median_after": float(np.median(after)) if len(after) else None}

    # languages
    if data.table is not None and LANG in data.table.column_names:
        kept = _value_counts(pc.fill_null(data.table.column(LANG), "(none)"))
        rejected = _value_counts(pc.drop_null(rej.column(LANG))) if rej is not None and LANG in rej.column_names else {}
        facts.languages = {"kept": kept, "rejected": rejected}

    # duplicate clusters: a kept representative and the rows rejected as its duplicates
    dedup_stages = [st for st in m["stages"] if st["name"].startswith("dedup")]
    if dedup_stages and rej is not None:
        is_dedup = pc.starts_with(rej.column(S.STAGE), "dedup")
        dups = rej.filter(pc.and_(is_dedup, pc.is_valid(rej.column(S.DUPLICATE_OF))))
        per_rep = _value_counts(dups.column(S.DUPLICATE_OF))
        sizes = Counter(n + 1 for n in per_rep.values())
        kept_by_dedup = dedup_stages[-1]["kept"]
        sizes[1] = max(kept_by_dedup - len(per_rep), 0)
        facts.clusters = {"sizes": dict(sorted(sizes.items())), "clusters": len(per_rep),
                          "duplicates": dups.num_rows}
        near = dups.filter(pc.is_valid(dups.column(S.SIMILARITY)))
        sims = near.column(S.SIMILARITY).to_numpy(zero_copy_only=False)
        facts.near_similarities = [round(float(x), 3) for x in sims[:2000]]
    elif dedup_stages:
        facts.clusters = {"sizes": {1: dedup_stages[-1]["kept"]}, "clusters": 0, "duplicates": 0}

    # leakage between splits
    if len(splits) > 1 and data.keys is not None:
        facts.leakage = leakage_matrix(None, data.split_of_row, splits, data.keys)

    # signal columns: kept rows against rejected rows that carry the column
    thresholds = _signal_thresholds(m)
    for col in sorted(signal_cols):
        if data.table is None or col not in data.table.column_names:
            continue
        kept_v = data.table.column(col).to_numpy(zero_copy_only=False).astype(float)
        rej_v = np.zeros(0)
        if rej is not None and col in rej.column_names:
            c = rej.column(col)
            rej_v = c.filter(pc.is_valid(c)).to_numpy(zero_copy_only=False).astype(float)
        h = _signal_hist(kept_v, rej_v, "int" in schema[col])
        if h:
            h["thresholds"] = thresholds.get(col, [])
            facts.signals[col] = h

    # sample rejected rows per reason, in pipeline order
    if rej is not None:
        order = {st["name"]: i for i, st in enumerate(m["stages"])}
        counts = {(s, r): n for s, reasons in m["counts"]["rejected"].items() for r, n in reasons.items()}
        for (stage, reason), n in sorted(counts.items(), key=lambda kv: (order.get(kv[0][0], 99), -kv[1])):
            mask = pc.and_(pc.equal(rej.column(S.STAGE), stage), pc.equal(rej.column(S.REASON), reason))
            rows = rej.filter(mask).slice(0, SAMPLES_PER_REASON).to_pylist()
            facts.samples.append({"stage": stage, "reason": reason, "count": n, "rows": [{
                "id": r.get(S.ID), "source": r.get(S.SOURCE), "detail": r.get(S.DETAIL),
                "duplicate_of": r.get(S.DUPLICATE_OF), "similarity": r.get(S.SIMILARITY),
                "text": _clip(r.get(S.TEXT))} for r in rows]})
    return facts


#: a mix step's stage name: ``mix``, then ``mix_2``, ``mix_3``... for later mix steps of one pipeline
MIX_STAGE = re.compile(r"mix(_[0-9]+)?")


def mix_steps(version) -> list[dict]:
    """Each mix step of a version, in pipeline order: its groups before and after, as the stage
    wrote them to ``index/<stage>/mix.json`` (config, total, counters, and per field a list of
    {group, before, after, target}, biggest group first), plus ``stage`` and the manifest's
    ``rejected`` (over_cap, downsampled) and ``added`` (repeats) for that stage.

    A mix step that saw no rows writes no table: its entry has ``groups`` {} and says so in
    ``missing``. Reads one small JSON file per mix step, never data."""
    out = []
    for st in version.manifest["stages"]:
        if not MIX_STAGE.fullmatch(st["name"]):
            continue
        entry = {"stage": st["name"], "rejected": dict(st["rejected"]), "added": int(st.get("added", 0))}
        path = version.path / "index" / st["name"] / "mix.json"
        if path.is_file():
            entry.update(json.loads(path.read_text(encoding="utf-8")))
        else:
            entry.update({"groups": {}, "counters": dict(st["counters"]),
                          "missing": f"no index/{st['name']}/mix.json: the step mixed no rows"})
        out.append(entry)
    return out


def _value_counts(col) -> dict[str, int]:
    vc = pc.value_counts(col)
    return dict(zip(vc.field("values").to_pylist(), vc.field("counts").to_pylist()))


def _clip(text: str | None) -> str | None:
    if text is None:
        return None
    return text if len(text) <= SAMPLE_CHARS else text[:SAMPLE_CHARS] + f"… ({len(text):,} characters)"
