"""Each augmenter on real sentences: what it changes, that it is seeded per row, that nlpaug's
global random state is isolated."""

from __future__ import annotations

import random
from collections import Counter

import numpy as np
import pytest

from corpusmill.augment.augmenters import (CharSpec, EdaSpec, SentenceShuffleSpec, SynonymSpec, WordSpec, build,
                                           isolated_random, row_seed)
from corpusmill.augment.eda import Eda, STOP_WORDS, _core
from corpusmill.augment.wordnet import Synonyms
from tests.conftest import REAL_TEXTS

TEXT = "The mobile app crashes whenever I open the settings page on my old Android phone at home."


def _variants(spec, text=TEXT, seed=7):
    return [v for v, _ in build(spec).variants(text, seed)]


def test_eda_operations_do_what_the_paper_says():
    eda = Eda(Synonyms(), alpha=0.2)
    words = TEXT.split()
    rng = random.Random(1)
    sr = eda.synonym_replacement(words, 2, rng)
    changed = [(a, b) for a, b in zip(words, sr) if a != b]
    assert len(sr) == len(words) and 1 <= len(changed) <= 2
    for old, new in changed:
        assert old.lower() not in STOP_WORDS
        assert new.strip(".").lower() in Synonyms().of(_core(old)[1])
    ri = eda.random_insertion(words, 3, rng)
    assert len(ri) == len(words) + 3 and not (Counter(words) - Counter(ri))
    rs = eda.random_swap(words, 2, rng)
    assert Counter(rs) == Counter(words) and rs != words
    rd = eda.random_deletion(words, 0.3, rng)
    assert len(rd) < len(words) and all(w in words for w in rd)
    assert eda.random_deletion(["alone"], 0.99, rng) == ["alone"]


def test_eda_recipe_makes_n_variants_with_a_mix_of_operations():
    made = build(EdaSpec(kind="eda", n=9)).variants(TEXT, 3)
    assert len(made) == 9
    ops = Counter(extra["op"] for _, extra in made)
    assert set(ops) <= {"sr", "ri", "rs", "rd"} and len(ops) >= 3
    assert sum(v != TEXT for v, _ in made) >= 7
    only = build(EdaSpec(kind="eda", n=4, operations=("rd",))).variants(TEXT, 3)
    assert {e["op"] for _, e in only} == {"rd"} and all(len(v.split()) <= len(TEXT.split()) for v, _ in only)
    assert sum(len(v.split()) < len(TEXT.split()) for v, _ in only) >= 2  # p = 0.1 per word: most lose one


def test_synonym_replacement_keeps_the_length_and_changes_words():
    out = _variants(SynonymSpec(kind="synonym", aug_p=0.2, n=3))
    assert len(out) == 3
    for v in out:
        assert len(v.split()) >= len(TEXT.split()) and v != TEXT


def test_sentence_shuffle_reorders_whole_sentences():
    text = "The disk was full. The backup job failed! Nobody noticed until noon? Then we fixed it."
    out = _variants(SentenceShuffleSpec(kind="sentence_shuffle", n=5), text)
    parts = ["The disk was full.", "The backup job failed!", "Nobody noticed until noon?", "Then we fixed it."]
    for v in out:
        assert sorted(p for p in parts if p in v) == sorted(parts) and len(v) == len(text)
    assert any(v != text for v in out)


@pytest.mark.parametrize("kind", ["char_keyboard", "char_ocr", "char_random"])
def test_character_noise_keeps_the_words_apart_from_a_few(kind):
    out = _variants(CharSpec(kind=kind, aug_word_p=0.2, aug_char_p=0.3, n=3))
    assert len(out) == 3 and all(v != TEXT for v in out)
    for v in out:
        same = sum(a == b for a, b in zip(v.split(), TEXT.split()))
        assert same >= len(TEXT.split()) - 5


@pytest.mark.parametrize("action", ["swap", "delete", "crop"])
def test_random_word_edits(action):
    out = _variants(WordSpec(kind="word_random", action=action, aug_p=0.2, n=2))
    for v in out:
        assert v != TEXT
        if action == "swap":
            # nlpaug moves the capital with the first position
            assert sorted(v.lower().split()) == sorted(TEXT.lower().split())
        else:
            assert len(v.split()) < len(TEXT.split())


def test_word_split_and_spelling_with_a_local_dictionary(tmp_path):
    split = _variants(WordSpec(kind="word_split", aug_p=0.2, n=2))
    assert all(len(v.split()) > len(TEXT.split()) and v.replace(" ", "") == TEXT.replace(" ", "") for v in split)
    spelling = tmp_path / "spelling.txt"
    spelling.write_text("mobile mobil moblie\nsettings setings settigns\nphone phon fone\nopen opne\n")
    out = _variants(WordSpec(kind="word_spelling", aug_p=0.5, dict_path=str(spelling), n=3))
    typos = {"mobil", "moblie", "setings", "settigns", "phon", "fone", "opne"}
    assert all(v != TEXT and typos & set(v.replace(".", "").split()) for v in out)
    with pytest.raises(Exception, match="dict_path"):
        build(WordSpec(kind="word_spelling"))


def test_variants_depend_on_the_row_seed_only():
    spec = CharSpec(kind="char_keyboard", aug_word_p=0.3, n=2)
    a = build(spec).variants(TEXT, row_seed(0, "r1", "char_keyboard"))
    random.random(), np.random.rand(5)  # other users of the global state in between
    b = build(spec).variants(TEXT, row_seed(0, "r1", "char_keyboard"))
    c = build(spec).variants(TEXT, row_seed(0, "r2", "char_keyboard"))
    assert a == b and a != c
    # a row's variants do not depend on the rows batched with it
    seeds = [row_seed(0, f"r{i}", "char_keyboard") for i in range(1, 4)]
    batch = build(spec).variants_batch([TEXT, REAL_TEXTS[0], REAL_TEXTS[1]], seeds)
    assert batch[0] == a and batch[2] == build(spec).variants(REAL_TEXTS[1], seeds[2])
    eda = EdaSpec(kind="eda", n=4)
    assert build(eda).variants(REAL_TEXTS[3], 11) == build(eda).variants(REAL_TEXTS[3], 11)


def test_isolated_random_restores_the_global_state():
    random.seed(5)
    np.random.seed(5)
    expected = (random.random(), np.random.rand())
    random.seed(5)
    np.random.seed(5)
    with isolated_random(123):
        inside = (random.random(), np.random.rand())
    assert (random.random(), np.random.rand()) == expected
    with isolated_random(123):
        assert (random.random(), np.random.rand()) == inside
