"""Shingles and signatures: stable values, independence from batching, and agreement with
datasketch's MinHash (the reference) within sampling error."""

from __future__ import annotations

import random

import numpy as np
import pyarrow as pa
import pytest

from corpusmill.dataprep.minhash import EMPTY, MinHasher, Shingling, estimate_jaccard, sequence_hash
from corpusmill.dataprep.textnorm import NormalForm, tokenize
from tests.conftest import REAL_TEXTS

WORDS = " ".join(REAL_TEXTS).lower().replace(".", "").replace(",", "").split()


def edited(text: str, k: int, rng: random.Random) -> str:
    words = text.split()
    for _ in range(k):
        words[rng.randrange(len(words))] = rng.choice(WORDS)
    return " ".join(words)


def long_texts(n: int, rng: random.Random) -> list[str]:
    return [" ".join(rng.sample(REAL_TEXTS, 4)) for _ in range(n)]


def test_hash_values_are_pinned():
    """Signatures and exact hashes are stored in indexes that later versions reuse: a change
    to any of these values breaks every stored index, so it must be deliberate (bump the
    scheme names in dedup.py and update these numbers)."""
    texts = pa.array(["The quick brown fox jumps over the lazy dog", "ok"])
    sh = Shingling("word", 3).shingles(texts)
    assert sh.counts.tolist() == [7, 1]
    assert hex(int(sh.hashes[0])) == "0xdac25fa12ed39e86"
    sig = MinHasher(128, 0).signatures(sh)
    assert sig[0, :4].tolist() == [379447830, 466581767, 79114667, 24481002]
    assert sig[1, :2].tolist() == [2741516818, 308584594]
    hi, lo = sequence_hash(tokenize(texts, NormalForm.words()))
    assert (hex(int(hi[0])), hex(int(lo[0]))) == ("0xe551b99062a56c59", "0x3030a28d5ea909c7")


def test_signature_of_a_document_does_not_depend_on_its_batch():
    rng = random.Random(1)
    texts = long_texts(300, rng) + ["one", "two words", "", "!!!"]
    sh = Shingling("word", 3).shingles(pa.array(texts))
    whole = MinHasher(128, 7).signatures(sh)
    small_chunks = MinHasher(128, 7, chunk_shingles=100, chunk_docs=3).signatures(sh)
    np.testing.assert_array_equal(whole, small_chunks)
    one_by_one = np.concatenate([MinHasher(128, 7).signatures(Shingling("word", 3).shingles(pa.array([t])))
                                 for t in texts[:20]])
    np.testing.assert_array_equal(whole[:20], one_by_one)


def test_empty_documents_and_tiny_documents():
    texts = pa.array(["", "!!! ???", "word", "word", "other"])
    sh = Shingling("word", 3).shingles(texts)
    assert sh.counts.tolist() == [0, 0, 1, 1, 1]
    sig = MinHasher(128, 0).signatures(sh)
    assert (sig[:2] == EMPTY).all()
    assert (sig[2:] != EMPTY).all()  # a single shingle still fills every slot (fallback rounds)
    np.testing.assert_array_equal(sig[2], sig[3])
    assert estimate_jaccard(sig[2], sig[4])[0] < 0.05
    assert estimate_jaccard(sig[0], sig[1])[0] == 0.0


def test_char_shingles_see_through_punctuation_and_case():
    sh = Shingling("char", 5).shingles(pa.array(["Hello, World!", "hello world", "help"]))
    assert set(sh.hashes[sh.offsets[0]:sh.offsets[1]]) == set(sh.hashes[sh.offsets[1]:sh.offsets[2]])
    assert sh.counts.tolist() == [7, 7, 1]  # "hello world" has 11 characters: 7 five-grams


def test_estimates_agree_with_datasketch_within_sampling_error():
    """Our estimate and datasketch's MinHash over the same shingle sets, on pairs spread over
    Jaccard 0.1..1: neither is biased, ours is no noisier than num_perm independent hashes."""
    datasketch = pytest.importorskip("datasketch")
    rng = random.Random(3)
    bases = long_texts(150, rng)
    pairs = [(b, edited(b, rng.randrange(0, 30), rng)) for b in bases]
    flat = [t for p in pairs for t in p]
    sh = Shingling("word", 2).shingles(pa.array(flat))
    num_perm = 128
    ours = MinHasher(num_perm, 11).signatures(sh)
    true, est_ours, est_ds = [], [], []
    for i in range(len(pairs)):
        a = set(sh.hashes[sh.offsets[2 * i]:sh.offsets[2 * i + 1]].tolist())
        b = set(sh.hashes[sh.offsets[2 * i + 1]:sh.offsets[2 * i + 2]].tolist())
        true.append(len(a & b) / len(a | b))
        est_ours.append(estimate_jaccard(ours[2 * i], ours[2 * i + 1])[0])
        ma, mb = datasketch.MinHash(num_perm=num_perm, seed=5), datasketch.MinHash(num_perm=num_perm, seed=5)
        ma.update_batch([int(h).to_bytes(8, "little") for h in a])
        mb.update_batch([int(h).to_bytes(8, "little") for h in b])
        est_ds.append(ma.jaccard(mb))
    true, est_ours, est_ds = map(np.asarray, (true, est_ours, est_ds))
    assert true.min() < 0.3 and true.max() == 1.0  # the pairs really spread over the range
    sigma = np.sqrt(true * (1 - true) / num_perm)  # sampling error of one estimate
    for est in (est_ours, est_ds):
        err = est - true
        assert abs(err.mean()) < 4 * np.sqrt((sigma ** 2).mean() / len(err))  # unbiased
        assert err.std() < 1.25 * np.sqrt((sigma ** 2).mean())  # as precise as independent hashes
    # pair by pair, the two sketches differ by no more than two independent estimates would
    assert (np.abs(est_ours - est_ds) <= 5 * np.sqrt(2) * sigma + 1e-9).all()
    np.testing.assert_array_equal(est_ours[true == 1.0], 1.0)
