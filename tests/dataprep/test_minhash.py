"""Shingles and signatures: stable values, independence from batching, agreement with
datasketch's MinHash (the reference) within sampling error, and the same values from the
compiled (numba) kernels as from the numpy fallback."""

from __future__ import annotations

import importlib.util
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from corpusmill.dataprep import minhash
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


def numba_available() -> bool:
    """numba is installed (its kernels are then expected to load: a failure is a test failure)."""
    return importlib.util.find_spec("numba") is not None


#: every backend, the compiled one skipped where numba is not installed
BACKENDS = ["numpy", pytest.param("numba", marks=pytest.mark.skipif("not numba_available()",
                                                                    reason="numba is not installed"))]


@pytest.mark.parametrize("backend", BACKENDS)
def test_hash_values_are_pinned(backend):
    """Signatures and exact hashes are stored in indexes that later versions reuse: a change
    to any of these values breaks every stored index, so it must be deliberate (bump the
    scheme names in dedup.py and update these numbers). Both backends give these values."""
    texts = pa.array(["The quick brown fox jumps over the lazy dog", "ok"])
    sh = Shingling("word", 3).shingles(texts, backend=backend)
    assert sh.counts.tolist() == [7, 1]
    assert hex(int(sh.hashes[0])) == "0xdac25fa12ed39e86"
    sig = MinHasher(128, 0, backend=backend).signatures(sh)
    assert sig[0, :4].tolist() == [379447830, 466581767, 79114667, 24481002]
    assert sig[1, :2].tolist() == [2741516818, 308584594]
    hi, lo = sequence_hash(tokenize(texts, NormalForm.words()))
    assert (hex(int(hi[0])), hex(int(lo[0]))) == ("0xe551b99062a56c59", "0x3030a28d5ea909c7")


@pytest.mark.parametrize("backend", BACKENDS)
def test_signature_of_a_document_does_not_depend_on_its_batch(backend):
    rng = random.Random(1)
    texts = long_texts(300, rng) + ["one", "two words", "", "!!!"]
    sh = Shingling("word", 3).shingles(pa.array(texts), backend=backend)
    whole = MinHasher(128, 7, backend=backend).signatures(sh)
    small_chunks = MinHasher(128, 7, chunk_shingles=100, chunk_docs=3, backend=backend).signatures(sh)
    np.testing.assert_array_equal(whole, small_chunks)
    one_by_one = np.concatenate([
        MinHasher(128, 7, backend=backend).signatures(Shingling("word", 3).shingles(pa.array([t]), backend=backend))
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


def mixed_texts(rng: random.Random) -> list[str]:
    """Documents of every length from empty to a few hundred words, in several scripts, with
    tokens longer than eight bytes, and the very short ones that take the fallback rounds."""
    pieces = REAL_TEXTS + ["Größenwahn und Straßenbahn", "Привет, как дела у вас сегодня", "東京都 の 天気 は 晴れ",
                           "emoji 🎉🎉 party", "internationalisation-of-supercalifragilistic words", "a", "b c"]
    texts = [" ".join(rng.choice(pieces) for _ in range(rng.randrange(0, 40)))[: rng.randrange(0, 2000)]
             for _ in range(400)]
    return texts + ["", "!!! ???", "one", "one two", "x" * 100]


@pytest.mark.skipif("not numba_available()", reason="numba is not installed")
@pytest.mark.parametrize("kind,n", [("word", 1), ("word", 2), ("word", 3), ("word", 5), ("char", 5)])
def test_compiled_kernels_give_the_numpy_values(kind, n):
    """The numba kernels are a faster route to the same numbers: shingle hashes and signatures
    equal the numpy fallback's bit for bit, for every slot count (powers of two or not) and seed,
    so stored indexes and version ids do not depend on whether numba is installed."""
    texts = pa.array(mixed_texts(random.Random(n)))
    fast = Shingling(kind, n).shingles(texts, backend="numba")
    slow = Shingling(kind, n).shingles(texts, backend="numpy")
    np.testing.assert_array_equal(fast.offsets, slow.offsets)
    np.testing.assert_array_equal(fast.hashes, slow.hashes)
    for num_perm, seed in [(1, 0), (7, 3), (100, 1), (128, 0), (256, 9)]:
        np.testing.assert_array_equal(MinHasher(num_perm, seed, backend="numba").signatures(fast),
                                      MinHasher(num_perm, seed, backend="numpy").signatures(slow))
    tokens = tokenize(texts, NormalForm.words())  # token hashes also make the exact-duplicate hash
    np.testing.assert_array_equal(minhash.token_hashes(tokens, backend="numba"),
                                  minhash.token_hashes(tokens, backend="numpy"))


@pytest.mark.skipif("not numba_available()", reason="numba is not installed")
def test_kernels_take_read_only_buffers():
    """Arrow hands out its buffers read-only; the kernels accept them as numpy does."""
    data = np.frombuffer("hello wörld, a longer token: internationalisation".encode(), dtype=np.uint8)
    starts, ends = np.array([0, 6, 29]), np.array([5, 13, 49])
    np.testing.assert_array_equal(minhash.span_hashes(data, starts, ends, backend="numba"),
                                  minhash.span_hashes(data, starts, ends, backend="numpy"))
    hashes = np.frombuffer(np.arange(1, 40, dtype=np.uint64).tobytes() * 7, dtype=np.uint64)
    sh = minhash.Shingles(hashes, np.array([0, 100, 100, len(hashes)]))
    np.testing.assert_array_equal(MinHasher(64, 2, backend="numba").signatures(sh),
                                  MinHasher(64, 2, backend="numpy").signatures(sh))


def test_backend_names_are_checked(monkeypatch):
    with pytest.raises(ValueError, match="expected one of auto, numba, numpy"):
        MinHasher(128, 0, backend="rust")
    monkeypatch.setenv(minhash.BACKEND_ENV, "fast")
    with pytest.raises(ValueError, match=r"\$CORPUSMILL_MINHASH_BACKEND is 'fast'"):
        MinHasher(128, 0).signatures(Shingling().shingles(pa.array(["a b c"])))


def run_python(code: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, **env},
                          timeout=300)


def test_without_numba_the_numpy_path_gives_the_pinned_values():
    """Where numba is not installed, ``auto`` falls back to numpy (same values) and asking for
    numba says what to install."""
    done = run_python(
        "import sys; sys.modules['numba'] = None\n"
        "import pyarrow as pa, pytest\n"
        "from corpusmill.dataprep import minhash as m\n"
        "m.AUTO_AFTER_DOCS = 0\n"
        "sh = m.Shingling('word', 3).shingles(pa.array(['The quick brown fox jumps over the lazy dog']))\n"
        "assert m.MinHasher(128, 0).signatures(sh)[0, :4].tolist() == [379447830, 466581767, 79114667, 24481002]\n"
        "assert m.load_kernels().module is None\n"
        "with pytest.raises(RuntimeError, match='pip install numba'):\n"
        "    m.MinHasher(128, 0, backend='numba').signatures(sh)\n")
    assert done.returncode == 0, done.stderr


def test_importing_the_dedup_stage_does_not_import_numba():
    """numba costs a few tenths of a second to import: only a process that signs documents
    with the kernels pays it, never one that merely imports the stages."""
    done = run_python("import sys, corpusmill.dataprep.dedup, corpusmill.pipelines.runner\n"
                      "assert 'numba' not in sys.modules, 'numba was imported'")
    assert done.returncode == 0, done.stderr


def test_auto_loads_the_kernels_only_after_many_documents(monkeypatch):
    """``auto`` keeps a process that signs few documents on numpy (no numba import), and loads
    the kernels once it has signed :data:`AUTO_AFTER_DOCS`; the values do not change."""
    done = run_python(
        "import sys, numpy as np, pyarrow as pa\n"
        "from corpusmill.dataprep import minhash as m\n"
        "m.AUTO_AFTER_DOCS = 250\n"
        "sh = m.Shingling('word', 3).shingles(pa.array(['doc %d has a few words in it' % i for i in range(100)]))\n"
        "h = m.MinHasher(128, 4)\n"
        "first = [h.signatures(sh) for _ in range(2)]\n"
        "assert 'numba' not in sys.modules\n"
        "later = [h.signatures(sh) for _ in range(2)]\n"
        "assert ('numba' in sys.modules) == (m.load_kernels().module is not None)\n"
        "assert all((s == first[0]).all() for s in first + later)\n")
    assert done.returncode == 0, done.stderr


@pytest.mark.skipif("not numba_available()", reason="numba is not installed")
def test_kernels_are_cached_under_the_user_cache():
    """The compiled kernels go to ``$CORPUSMILL_CACHE/numba`` (here the test session's), not
    next to the installed code, which may be read-only; a new process loads them from there."""
    cache = Path(os.environ["CORPUSMILL_CACHE"]) / "numba"
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    done = subprocess.run([sys.executable, "-c", "from corpusmill.dataprep import minhash as m\n"
                           "load = m.load_kernels(); assert load.module is not None, load.reason\n"
                           "print(load.cache_dir)"], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(cache)
    cached = sorted(p.name.split(".")[1].split("-")[0] for p in cache.rglob("_minhash_kernels.*.nbi"))
    assert cached == ["signatures", "span_hashes", "word_shingles"]
