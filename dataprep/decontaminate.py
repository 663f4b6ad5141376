"""The ``decontaminate`` stage: remove training rows that overlap public benchmark files.

Benchmarks (:mod:`corpusmill.dataprep.benchmarks`) are files in any reader format, or
``NAME@REF[:split]``, each with the fields whose text is looked for and the field that names its
rows; several in one step. They are indexed once per worker
(:class:`corpusmill.dataprep.leakage.LeakIndex`); training rows are matched batch by batch, field
by field (``fields``: by default the trained fields of instruction and chat rows, ``text`` of plain
rows), so a prompt that repeats a benchmark question is an exact match even though the row's
derived text also holds the answer.

``mode: drop`` rejects a matching row as ``contaminated_<check>``, with the benchmark row as
``duplicate_of`` (``humaneval:HumanEval/12``) and the evidence (which of our fields, which of the
benchmark's, the similarity or the shared span) as ``detail``.

``mode: cut`` follows the GPT-3 procedure for n-gram matches in long documents: the matched span
and ``cut_chars`` characters on each side are removed, fragments shorter than
``min_fragment_chars`` are dropped, and a string that falls into more than ``max_fragments`` pieces
rejects its row (``contaminated_too_many_fragments``). The surviving fragments stay, joined by a
blank line, so one input row remains one row. On instruction and chat rows the cut is made in the
trained field that matched (the prompt, a user turn...) and ``text`` is derived again; a match
inside a response or an assistant turn rejects the row by default (``response_hit``). Exact and
near matches are always dropped whole.
"""

from __future__ import annotations

import re
import string
from functools import cached_property
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field

from corpusmill import schema as S
from corpusmill.dataprep.benchmarks import MIN_WORDS, Benchmark, BenchmarkSpec, identity, load_benchmark, parse_benchmark
from corpusmill.dataprep.leakage import LeakIndex, field_labels, field_strings, response_strings, truncate
from corpusmill.dataprep.ngrams import HashSet, ngram_hashes, shared_span
from corpusmill.errors import CorpusmillError
from corpusmill.sft import FieldSelection, check_fields, default_fields, is_sft
from corpusmill.stage import BatchInfo, Stage, StageConfig, StageOutput

_PUNCT = str.maketrans("", "", string.punctuation)
_CHUNK = re.compile(r"\S+")
_PRIORITY = {"exact": 0, "near": 1, "ngram": 2}


class DecontaminateConfig(StageConfig):
    benchmarks: list[str | BenchmarkSpec] = Field(
        min_length=1, description="benchmarks: a file/glob (relative to the pipeline file) or NAME@REF[:split], or "
        "{path, fields, id_field, name} to choose the benchmark's text fields and the field naming its rows "
        "(evidence then reads 'humaneval:HumanEval/12')")
    text_field: str = Field("text", description="text field of the benchmarks that list no fields")
    fields: list[str] | None = Field(
        None, min_length=1, description="fields of the training rows that are checked, each on its own: text, prompt, "
        "response, system, messages, messages.<role>, trained; default: trained on instruction and chat rows "
        "(every field the trainer reads), text on plain rows")
    checks: list[Literal["exact", "near", "ngram"]] = Field(
        default_factory=lambda: ["exact", "ngram"], description="which overlaps count as contamination")
    ngram: int = Field(13, ge=1, description="n-gram length in words (13: GPT-3, lm-evaluation-harness)")
    threshold: float = Field(0.8, gt=0, le=1, description="Jaccard threshold of the near check")
    min_words: int = Field(
        MIN_WORDS, ge=0, description="benchmark strings of fewer words are not indexed: a short answer ('B', '42', "
        "'Paris, France') would otherwise reject every training string that says the same; 0 indexes all")
    mode: Literal["drop", "cut"] = Field("drop", description="drop the row, or cut the matched n-gram spans out of it")
    response_hit: Literal["reject", "cut"] = Field(
        "reject", description="mode=cut: an n-gram match inside a response or an assistant turn rejects the row "
        "(reject: an answer with a hole cut in it no longer answers its prompt, and a benchmark's text in an answer "
        "is usually its solution), or is cut like any other field (cut)")
    cut_chars: int = Field(200, ge=0, description="mode=cut: characters removed on each side of a matched span")
    min_fragment_chars: int = Field(200, ge=0, description="mode=cut: shorter fragments are discarded")
    max_fragments: int = Field(10, ge=1, description="mode=cut: a string split into more pieces rejects its row")


class Decontaminate(Stage):
    kind = "decontaminate"
    Config = DecontaminateConfig
    version = 2  # 2: fields matched one by one; cut rewrites the trained fields; benchmark row ids in evidence

    @cached_property
    def specs(self) -> list[BenchmarkSpec]:
        return [parse_benchmark(b) for b in self.config.benchmarks]

    def _store(self):
        from corpusmill.store import Store

        return Store(self.run.store_root or "corpusmill-store")

    @cached_property
    def benchmarks(self) -> list[Benchmark]:
        store = self._store()
        return [load_benchmark(spec, base_dir=self.run.base_dir, store=store, text_field=self.config.text_field,
                               min_words=self.config.min_words) for spec in self.specs]

    def identity(self) -> object:
        """The content of every benchmark: a changed benchmark file gives a new version."""
        store = self._store()
        return [identity(spec, base_dir=self.run.base_dir, store=store) for spec in self.specs]

    def check(self, schema: pa.Schema) -> list[str]:
        """A ``fields`` entry the rows lack, a cut of the derived ``text`` of instruction rows, and
        every benchmark that cannot be read as asked (a field no row has, a missing id)."""
        problems = []
        fields = self.config.fields or default_fields(schema)
        try:
            check_fields(fields, schema, self.name)
        except CorpusmillError as err:
            problems.append(str(err))
        if self.config.mode == "cut" and is_sft(schema) and S.TEXT in fields:
            problems.append(f"fields lists 'text' with mode: cut, but the text of instruction and chat rows is derived "
                            f"from their trained fields and cannot be cut on its own: use fields: [trained] (or "
                            f"prompt, response, messages...), or mode: drop")
        names = [spec.label for spec in self.specs]
        if len(set(names)) < len(names):
            problems.append(f"benchmarks share a name ({', '.join(sorted({n for n in names if names.count(n) > 1}))}): "
                            f"give each a distinct name: so evidence tells them apart")
        loaded = []
        for spec in self.specs:
            try:
                loaded.append(load_benchmark(spec, base_dir=self.run.base_dir, store=self._store(),
                                             text_field=self.config.text_field, min_words=self.config.min_words))
            except CorpusmillError as err:
                problems.append(str(err))
        if not problems:
            self.__dict__["benchmarks"] = loaded  # read once: the cached_property below
        return problems

    @cached_property
    def index(self) -> LeakIndex:
        parts, bench, offset = [], [], 0
        for b in self.benchmarks:
            e = b.entries.select([S.ID, S.TEXT, "field", "row"])
            ids = pa.array([f"{b.name}:{i}" for i in e.column(S.ID).to_pylist()], pa.string())
            rows = pa.array(e.column("row").to_numpy() + offset, pa.int64())
            parts.append(e.set_column(0, S.ID, ids).set_column(3, "row", rows).replace_schema_metadata(None))
            bench += [b.name] * e.num_rows
            offset += b.rows
        table = pa.concat_tables(parts)
        self._bench_of = bench
        self._rid_of = [i for b in self.benchmarks for i in b.entries.column(S.ID).to_pylist()]
        checks = tuple(c for c in self.config.checks if c in LeakIndex.available_checks())
        if self.config.mode == "cut":
            checks = tuple(c for c in checks if c != "ngram")  # n-gram matches are cut below, not dropped
        self._ngram_index = None
        if self.config.mode == "cut" and "ngram" in self.config.checks:
            ng = ngram_hashes(table.column(S.TEXT), self.config.ngram)
            self._ngram_index = HashSet(ng.hashes, ng.doc)
        return LeakIndex.build(table, ngram=self.config.ngram, threshold=self.config.threshold, checks=checks,
                               max_hits_per_row=1)

    def _names(self, entry: int) -> tuple[str, str]:
        """(benchmark, "ROW_ID (field)") of an index entry, for details."""
        return self._bench_of[entry], f"{self._rid_of[entry]} ({self.index.fields[entry]})"

    def process(self, batch: pa.Table, info: BatchInfo) -> StageOutput:
        index = self.index
        n = batch.num_rows
        fields = self.config.fields or default_fields(batch.schema)
        selection = FieldSelection(batch, fields)
        strings = field_strings(batch, fields, selection)
        row_of = strings.column("row").to_numpy()
        reason: dict[int, str] = {}
        detail: dict[int, str] = {}
        dup_of: dict[int, str] = {}
        similarity: dict[int, float] = {}
        for hit in sorted(index.match(strings), key=lambda h: _PRIORITY[h.check]):
            r = int(row_of[hit.train_pos])
            if r in reason:
                continue
            reason[r] = f"contaminated_{hit.check}"
            dup_of[r] = index.ids[hit.eval_row]
            bench, theirs = self._names(hit.eval_row)
            if hit.check == "ngram":
                detail[r] = (f"{bench}: {hit.train_field} shares the {self.config.ngram}-gram span "
                             f"'{truncate(hit.ngram, 200)}' with {theirs}")
            else:
                similarity[r] = hit.similarity
                detail[r] = f"{bench}: {hit.train_field} matches {theirs} ({hit.check}, similarity {hit.similarity:.2f})"
        counters: dict[str, int] = {}
        kept_batch = batch
        if self.config.mode == "cut" and self._ngram_index is not None:
            kept_batch = self._cut_strings(batch, selection, strings, reason, detail, dup_of, counters)
        keep = np.ones(n, dtype=bool)
        dropped_rows = sorted(reason)
        keep[dropped_rows] = False
        kept = kept_batch.filter(pa.array(keep))
        rejected = None
        if dropped_rows:
            rejected = self.reject(  # as they came in: the evidence is in what was matched, not in a cut
                batch.take(pa.array(dropped_rows, pa.int64())), [reason[r] for r in dropped_rows],
                detail=[detail[r] for r in dropped_rows], duplicate_of=[dup_of.get(r) for r in dropped_rows],
                similarity=[similarity.get(r) for r in dropped_rows],
            )
        return StageOutput(kept, rejected, counters)

    def _cut_strings(self, batch, selection, strings, reason, detail, dup_of, counters) -> pa.Table:
        """Cut the n-gram matches out of the selected strings (or reject their rows); the batch with
        the cut strings written back and ``text`` derived again."""
        found = self._ngram_positions(strings.column(S.TEXT))
        if not found:
            return batch
        row_of = strings.column("row").to_numpy()
        in_response = response_strings(strings)
        sft_rows = is_sft(batch.schema)
        texts = strings.column(S.TEXT)
        labels = None
        changed: dict[int, str] = {}
        cut_rows: set[int] = set()
        for k, (positions, entry) in sorted(found.items()):
            r = int(row_of[k])
            if r in reason:
                continue
            if labels is None:
                labels = field_labels(strings)
            text = texts[k].as_py()
            bench, theirs = self._names(entry)
            if sft_rows and in_response[k] and self.config.response_hit == "reject":
                span = shared_span(self.index.texts[entry], text, self.config.ngram)
                reason[r], dup_of[r] = "contaminated_ngram", self.index.ids[entry]
                detail[r] = (f"{bench}: {labels[k]} shares the {self.config.ngram}-gram span '{truncate(span, 200)}' "
                             f"with {theirs} (response_hit: reject)")
                counters["response_hits"] = counters.get("response_hits", 0) + 1
                continue
            pieces, regions = self._cut(text, positions)
            cut_rows.add(r)
            counters["spans_cut"] = counters.get("spans_cut", 0) + regions
            counters["ngrams_matched"] = counters.get("ngrams_matched", 0) + len(positions)
            if len(pieces) > self.config.max_fragments or not pieces:
                reason[r] = "contaminated_too_many_fragments" if pieces else "contaminated_ngram"
                dup_of[r] = self.index.ids[entry]
                detail[r] = (f"{bench}: {labels[k]} falls into {len(pieces)} fragments after cutting {len(positions)} "
                             f"matched spans of {theirs} (max_fragments={self.config.max_fragments})" if pieces
                             else f"{bench}: nothing of at least min_fragment_chars is left of {labels[k]} after "
                                  f"cutting the spans it shares with {theirs}")
            else:
                changed[k] = "\n\n".join(pieces)
        if cut_rows:
            counters["rows_cut"] = len(cut_rows)
        changed = {k: v for k, v in changed.items() if int(row_of[k]) not in reason}
        if not changed:
            return batch
        mask = np.zeros(len(texts), dtype=bool)
        at = sorted(changed)
        mask[at] = True
        new = pc.replace_with_mask(selection.strings, pa.array(mask), pa.array([changed[k] for k in at], pa.string()))
        return selection.write(new)

    def _ngram_positions(self, texts) -> dict[int, tuple[list[int], int]]:
        """{string: (positions of its matched n-grams, the index entry of the first)}."""
        if not len(self._ngram_index):
            return {}
        ng = ngram_hashes(texts, self.config.ngram)
        found, at = self._ngram_index.find(ng.hashes)
        out: dict[int, tuple[list[int], int]] = {}
        for f, a in zip(found.tolist(), at.tolist()):
            k = int(ng.doc[f])
            if k not in out:
                out[k] = ([], int(self._ngram_index.values[a]))
            out[k][0].append(int(ng.position[f]))
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
