"""Normal forms and tokens: what exact dedup compares and what shingles are made of."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from corpusmill.dataprep.textnorm import NormalForm, normalise, tokenize

TEXTS = [
    "Hello,  World!",
    "  «Привет» — мир…  ",
    "co\u00adoperate 123 \u0663",  # soft hyphen, Arabic-Indic digit three
    "x\u200dy 😀 ok❤️",  # zero-width joiner, emoji, variation selector
    "Ünïcödé—test\n\ntab\tend.",
    "",
    "a",
]


def tokens_of(texts, form):
    t = tokenize(pa.array(texts), form)
    words = [bytes(t.data[a:b]).decode() for a, b in zip(t.starts, t.ends)]
    return [words[t.doc_offsets[i]:t.doc_offsets[i + 1]] for i in range(len(t))]


def test_word_form_keeps_letters_and_digits_of_every_script():
    assert normalise(pa.array(TEXTS), NormalForm.words()).to_arrow().to_pylist() == [
        "hello world", "привет мир", "cooperate 123 \u0663", "xy ok", "ünïcödé test tab end", "", "a",
    ]


def test_exact_forms_follow_their_options():
    default = NormalForm.exact(lowercase=True, punctuation=False, whitespace=True, digits=False)
    assert normalise(pa.array(TEXTS), default).to_arrow().to_pylist() == [
        "hello, world!", "«привет» — мир…", "cooperate 123 \u0663", "xy 😀 ok❤", "ünïcödé—test tab end.", "", "a",
    ]
    loose = NormalForm.exact(lowercase=False, punctuation=True, whitespace=True, digits=True)
    assert normalise(pa.array(TEXTS), loose).to_arrow().to_pylist() == [
        "Hello World", "Привет мир", "cooperate 000 0", "xy ok", "Ünïcödé test tab end", "", "a",
    ]


def test_tokens_are_the_normal_form_split_on_spaces():
    for form in (NormalForm.words(), NormalForm.exact(lowercase=True, punctuation=False, whitespace=True, digits=True)):
        joined = [" ".join(t) for t in tokens_of(TEXTS, form)]
        assert joined == normalise(pa.array(TEXTS), form).to_arrow().to_pylist()


def test_texts_never_merge_across_their_boundaries():
    assert tokens_of(["ab", "cd", "e f", ". g", "h .", "—i", "j—"], NormalForm.words()) == [
        ["ab"], ["cd"], ["e", "f"], ["g"], ["h"], ["i"], ["j"],
    ]


def test_tokens_of_a_text_do_not_depend_on_its_neighbours():
    """The fast path (ASCII, no vanishing characters) and the full path must agree, so a
    text's hashes never depend on which batch it landed in."""
    form = NormalForm.exact(lowercase=True, punctuation=False, whitespace=True, digits=True)
    probe = "Grüße — «Straße» 42…"
    for neighbour in ("plain ascii", "soft\u00adhyphen", "digit \u0663", "emoji 😀"):
        alone = tokens_of([probe], form)[0]
        assert tokens_of([neighbour, probe], form)[1] == alone
        assert tokens_of([probe, neighbour], form)[0] == alone


def test_sliced_and_chunked_columns_read_the_right_texts():
    arr = pa.array(["zero", "one two", "three"]).slice(1)
    assert tokens_of(arr, NormalForm.words()) == [["one", "two"], ["three"]]
    chunked = pa.chunked_array([["a b"], ["c"]])
    t = tokenize(chunked, NormalForm.words())
    assert np.diff(t.doc_offsets).tolist() == [2, 1]
