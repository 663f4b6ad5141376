"""The ``decontaminate`` stage: remove training rows that overlap public benchmark files.

Each benchmark (a file in any reader format, or ``NAME@REF[:split]``) is indexed once per worker
(:class:`corpusmill.dataprep.leakage.LeakIndex`); training rows are matched batch by batch.

``mode: drop`` rejects a matching row as ``contaminated_<check>``, with the benchmark and the
matched row as ``duplicate_of`` and the evidence (similarity or shared span) as ``detail``.

``mode: cut`` follows the GPT-3 procedure for n-gram matches in long documents: the matched span
and ``cut_chars`` characters on each side are removed, fragments shorter than
``min_fragment_chars`` are dropped, and a row that falls into more than ``max_fragments`` pieces
is rejected (``contaminated_too_many_fragments``). The surviving fragments stay in the row,
joined by a blank line, so one input row remains one row. Exact and near matches are always
dropped whole.
"""

from __future__ import annotations

import os
import re
import string
from functools import cached_property
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
from pydantic import Field, field_validator

from corpusmill import schema as S
from corpusmill.dataprep.leakage import LeakIndex, truncate
from corpusmill.dataprep.ngrams import HashSet, ngram_hashes
from corpusmill.hashing import file_sha256
from corpusmill.stage import BatchInfo, Stage, StageConfig, StageOutput

_PUNCT = str.maketrans("", "", string.punctuation)
_CHUNK = re.compile(r"\S+")


class DecontaminateConfig(StageConfig):
    benchmarks: list[str] = Field(min_length=1, description="benchmark files/globs (relative to the pipeline file) or NAME@REF[:split]")
    text_field: str = Field("text", description="text field of the benchmark files")
    checks: list[Literal["exact", "near", "ngram"]] = Field(
        default_factory=lambda: ["exact", "ngram"], description="which overlaps count as contamination")
    ngram: int = Field(13, ge=1, description="n-gram length in words (13: GPT-3, lm-evaluation-harness)")
    threshold: float = Field(0.8, gt=0, le=1, description="Jaccard threshold of the near check")
    mode: Literal["drop", "cut"] = Field("drop", description="drop the row, or cut the matched n-gram spans out of it")
    cut_chars: int = Field(200, ge=0, description="mode=cut: characters removed on each side of a matched span")
    min_fragment_chars: int = Field(200, ge=0, description="mode=cut: shorter fragments are discarded")
    max_fragments: int = Field(10, ge=1, description="mode=cut: a row split into more pieces is rejected")

    @field_validator("benchmarks")
    @classmethod
    def _nonempty(cls, v):
        if any(not b.strip() for b in v):
            raise ValueError("benchmark paths must not be empty")
        return v


class Decontaminate(Stage):
    kind = "decontaminate"
    Config = DecontaminateConfig

    def _sides(self):
        from corpusmill.dataprep.audit import resolve_side
        from corpusmill.store import Store

        store = Store(self.run.store_root or "corpusmill-store")
        sides = []
        for spec in self.config.benchmarks:
            is_ref = "@" in spec and not os.path.exists(self._path(spec))
            path = spec if is_ref else self._path(spec)
            side = resolve_side(path, store, default_split="test", text_field=self.config.text_field, label_field=None)
            side.name = spec
            sides.append(side)
        return sides

    def _path(self, spec: str) -> str:
        return spec if os.path.isabs(spec) or not self.run.base_dir else str(Path(self.run.base_dir) / spec)

    def identity(self) -> object:
        """The content of every benchmark: a changed benchmark file gives a new version."""
        out = []
        for side in self._sides():
            if side.version is not None:
                out.append([side.name, side.version.ref, side.split])
            else:
                from corpusmill.dataprep.readers import expand_input
                from corpusmill.pipelines.config import InputSpec

                files = expand_input(InputSpec(path=self._path(side.name)), Path(self.run.base_dir or "."))
                out.append([side.name, [[name, file_sha256(p)] for p, name in files]])
        return out

    @cached_property
    def index(self) -> LeakIndex:
        tables = []
        for side in self._sides():
            t = side.table().select([S.ID, S.TEXT])
            ids = pa.array([f"{side.name}:{i}" for i in t.column(S.ID).to_pylist()], pa.string())
            tables.append(t.set_column(0, S.ID, ids))
        table = pa.concat_tables(tables) if tables else pa.table({S.ID: pa.array([], pa.string()), S.TEXT: pa.array([], pa.string())})
        checks = tuple(c for c in self.config.checks if c in LeakIndex.available_checks())
        if self.config.mode == "cut":
            checks = tuple(c for c in checks if c != "ngram")  # n-gram matches are cut below, not dropped
        self._ngram_index = None
        if self.config.mode == "cut" and "ngram" in self.config.checks:
            self._ngram_index = HashSet(ngram_hashes(table.column(S.TEXT), self.config.ngram).hashes)
        return LeakIndex.build(table, ngram=self.config.ngram, threshold=self.config.threshold, checks=checks,
                               max_hits_per_row=1)

    def process(self, batch: pa.Table, info: BatchInfo) -> StageOutput:
        index = self.index
        n = batch.num_rows
        reason: dict[int, str] = {}
        detail: dict[int, str] = {}
        dup_of: dict[int, str] = {}
        similarity: dict[int, float] = {}
        row_of_id = {rid: r for r, rid in enumerate(batch.column(S.ID).to_pylist())}
        priority = {"exact": 0, "near": 1, "ngram": 2}
        for hit in sorted(index.match(batch), key=lambda h: priority[h.check]):
            r = row_of_id[hit.train_id]
            if r in reason:
                continue
            reason[r] = f"contaminated_{hit.check}"
            dup_of[r] = index.ids[hit.eval_row]
            bench = dup_of[r].rsplit(":", 1)[0]
            if hit.check == "ngram":
                detail[r] = f"{bench}: shares the {self.config.ngram}-gram span '{truncate(hit.ngram, 200)}' with {dup_of[r]}"
            else:
                similarity[r] = hit.similarity
                detail[r] = f"{bench}: {hit.check} match (similarity {hit.similarity:.2f}) with {dup_of[r]}"
        texts = batch.column(S.TEXT)
        counters: dict[str, int] = {}
        if self.config.mode == "cut" and self._ngram_index is not None:
            new_texts = texts.to_pylist()
            for r, positions in self._ngram_positions(texts).items():
                if r in reason:
                    continue
                pieces, regions = self._cut(new_texts[r], positions)
                counters["rows_cut"] = counters.get("rows_cut", 0) + 1
                counters["spans_cut"] = counters.get("spans_cut", 0) + regions
                counters["ngrams_matched"] = counters.get("ngrams_matched", 0) + len(positions)
                if len(pieces) > self.config.max_fragments or not pieces:
                    reason[r] = "contaminated_too_many_fragments" if pieces else "contaminated_ngram"
                    detail[r] = (f"{len(pieces)} fragments after cutting {len(positions)} matched spans "
                                 f"(max_fragments={self.config.max_fragments})" if pieces
                                 else "nothing of at least min_fragment_chars is left after cutting the matched spans")
                else:
                    new_texts[r] = "\n\n".join(pieces)
            if counters:
                batch = batch.set_column(batch.schema.get_field_index(S.TEXT), S.TEXT, pa.array(new_texts, pa.string()))
        keep = np.ones(n, dtype=bool)
        dropped_rows = sorted(reason)
        keep[dropped_rows] = False
        kept = batch.filter(pa.array(keep))
        rejected = None
        if dropped_rows:
            rejected = self.reject(
                batch.take(pa.array(dropped_rows, pa.int64())), [reason[r] for r in dropped_rows],
                detail=[detail[r] for r in dropped_rows], duplicate_of=[dup_of.get(r) for r in dropped_rows],
                similarity=[similarity.get(r) for r in dropped_rows],
            )
        return StageOutput(kept, rejected, counters)

    def _ngram_positions(self, texts) -> dict[int, list[int]]:
        if not len(self._ngram_index):
            return {}
        ng = ngram_hashes(texts, self.config.ngram)
        found, _ = self._ngram_index.find(ng.hashes)
        out: dict[int, list[int]] = {}
        for f in found.tolist():
            out.setdefault(int(ng.doc[f]), []).append(int(ng.position[f]))
        return out

    def _cut(self, text: str, positions: list[int]) -> tuple[list[str], int]:
        """Remove each matched n-gram span plus cut_chars on each side; keep long enough fragments.
        Returns the fragments and the number of (merged) regions cut."""
        chunks = [m for m in _CHUNK.finditer(text) if m.group().lower().translate(_PUNCT)]
        n, pad = self.config.ngram, self.config.cut_chars
        cuts = sorted((max(chunks[p].start() - pad, 0), min(chunks[p + n - 1].end() + pad, len(text))) for p in positions)
        pieces, at, regions = [], 0, 0
        for a, b in cuts:
            if a > at or regions == 0:
                regions += 1
                pieces.append(text[at:a])
            at = max(at, b)
        pieces.append(text[at:])
        return [p.strip() for p in pieces if len(p.strip()) >= self.config.min_fragment_chars], regions
