"""Vectorised word n-gram hashes agree with the plain-Python reference tokenisation."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from corpusmill.dataprep.ngrams import ngram_hashes, shared_span, token_hashes, tokens

TEXTS = [
    "Don't panic! The answer is 42, isn't it?",
    "",
    "   ",
    "Ünïcödé wörds, naïve café\u00a0and\u2003spaces — dashes «quotes».",
    "one",
    "Tabs\tand\nnewlines\r\nare whitespace; punctuation... is removed!!!",
    "日本語のテキスト mixed with English words",
]


def test_tokens_match_reference():
    tok, rows = token_hashes(pa.array(TEXTS))
    ref = [tokens(t) for t in TEXTS]
    assert np.bincount(rows, minlength=len(TEXTS)).tolist() == [len(r) for r in ref]
    flat = [t for r in ref for t in r]
    # equal tokens hash equal, different tokens hash differently
    by_token = {}
    for t, h in zip(flat, tok.tolist()):
        assert by_token.setdefault(t, h) == h
    assert len(set(by_token.values())) == len(by_token)
    assert ref[0] == ["dont", "panic", "the", "answer", "is", "42", "isnt", "it"]


def test_ngrams_positions_and_row_boundaries():
    texts = pa.array(["a b c d e", "x y", "c d e f"])
    ng = ngram_hashes(texts, 3)
    assert ng.doc.tolist() == [0, 0, 0, 2, 2]
    assert ng.position.tolist() == [0, 1, 2, 0, 1]
    # "c d e" appears in rows 0 and 2 with the same hash; no n-gram spans two rows
    assert ng.hashes[2] == ng.hashes[3]
    assert len(set(ng.hashes.tolist())) == 4


def test_hashes_are_stable_values():
    """Stored hashes must never change: pin a few values."""
    h = ngram_hashes(pa.array(["the quick brown fox jumps"]), 3).hashes
    assert len(h) == 3
    again = ngram_hashes(pa.array(["THE quick, brown fox... jumps!"]), 3).hashes
    assert h.tolist() == again.tolist()
    assert h.tolist() == PINNED


def test_shared_span_grows_beyond_n():
    a = "Intro text. The quick brown fox jumps over the lazy dog today. Outro."
    b = "Something else; the quick brown fox jumps over the lazy dog, said Bob."
    assert shared_span(a, b, 5) == "the quick brown fox jumps over the lazy dog"
    assert shared_span(a, "nothing in common here at all", 5) == ""


# computed once when the hash was defined; a change here invalidates every stored index
PINNED = [9534245699756737881, 622017367022719493, 9394458608575588173]
