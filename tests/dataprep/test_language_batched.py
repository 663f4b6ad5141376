"""The fastText backend's one pass over a batch gives exactly what fastText's public per-text call
gives, the stage's vectorised preparation counts what the regular expressions count, and the
abstention rule's three bounds (short, middle, long text) on small written-in examples."""

from __future__ import annotations

import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from corpusmill.dataprep.language import Language, LanguageConfig
from corpusmill.dataprep.language_backends import FastTextBackend, fasttext_model
from corpusmill.stage import BatchInfo, RunInfo

#: empty, short, long, several lines, odd whitespace, scripts other than Latin, digits and symbols
MIXED = [
    "",
    "a",
    "Tak.",
    "Hi!",
    "Das ist gut.",
    "The backup job failed again last night because the disk was full.",
    "Première ligne du message.\nDeuxième ligne, après un saut de ligne.\n\nEt un paragraphe.",
    "tabs\tand\r\nwindows line ends\fand a form feed",
    "  leading and trailing spaces and   runs   of   them  ",
    "Программа читает файлы один за другим и пишет результат на стандартный вывод.",
    "Програма читає файли один за одним і записує результат у стандартний вивід.",
    "このプログラムはファイルを順番に読み込み、結果を標準出力に書き出します。",
    "该程序逐个读取文件，并将结果写入标准输出。",
    "البرنامج يقرأ الملفات واحدا تلو الآخر ويكتب النتيجة.",
    "Το πρόγραμμα διαβάζει τα αρχεία ένα προς ένα.",
    "12345 67890 !!! ??? ...",
    "😀 emoji 🎉 and 𝔸𝔹ℂ letters",
    "ÉCRIT EN MAJUSCULES, AVEC DES ACCENTS ÀÉÎÕÜ",
    "Vi har lagt inn en ny versjon av programmet, og den fungerer godt på de fleste maskiner.",
    "word " * 600,  # longer than max_chars once prepared
    "non\u00a0breaking\u2003spaces and a\u2028line separator",
]


def stage(**options) -> Language:
    return Language(LanguageConfig(keep_und=True, **options), name="language", run=RunInfo("test", 0))


def per_text(lines: list[str], candidates: tuple[str, ...] = ()) -> tuple[list[str], np.ndarray]:
    """The reference: fastText's public ``model.predict`` called on each text on its own."""
    model = fasttext_model()
    langs, scores = [], np.zeros(len(lines), dtype=np.float32)
    for i, line in enumerate(lines):
        if not candidates:
            labels, probs = model.predict(line, k=1)
            langs.append(labels[0][9:] if labels else "und")
            scores[i] = min(float(probs[0]), 1.0) if labels else 0.0
            continue
        labels, probs = model.predict(line, k=-1)
        wanted = [(float(p), label[9:]) for label, p in zip(labels, probs) if label[9:] in candidates]
        total = sum(p for p, _ in wanted)
        best = max(wanted, key=lambda w: w[0], default=(0.0, "und"))  # the first of equals, in fastText's order
        langs.append(best[1])
        scores[i] = best[0] / total if total > 0 else 0.0
    return langs, scores


@pytest.mark.parametrize("candidates", [(), ("de", "en", "fr", "ru", "uk")])
def test_batch_gives_the_per_text_labels_and_scores(candidates):
    lines = [" ".join(t.split()).lower() for t in MIXED]  # one line each, as the stage sends them
    langs, scores = FastTextBackend(candidates).detect(lines)
    ref_langs, ref_scores = per_text(lines, candidates)
    assert langs == ref_langs
    assert scores.dtype == np.float32 and scores.tobytes() == ref_scores.tobytes()  # bit for bit


def test_the_stage_gives_the_per_text_answer_on_mixed_texts():
    st = stage(min_chars=0, min_score=0.0, short_chars=0)
    _, score, guess, letters = st.detect(pa.array(MIXED))
    lines, _ = st.prepare(pa.array(MIXED))
    lines = lines.to_pylist()
    asked = [i for i, n in enumerate(letters) if n >= 1]
    ref_langs, ref_scores = per_text([lines[i] for i in asked])
    assert guess[asked].tolist() == ref_langs
    assert score[asked].tobytes() == ref_scores.tobytes()
    assert all(guess[i] == "und" and score[i] == 0.0 for i in range(len(MIXED)) if i not in asked)
    assert (guess[9], guess[10], guess[11], guess[12]) == ("ru", "uk", "ja", "zh")
    # the same answers whatever the batch: one text at a time, or the batch reversed
    one_by_one = [st.detect(pa.array([t]))[2][0] for t in MIXED]
    assert one_by_one == guess.tolist()
    reversed_guess = st.detect(pa.array(MIXED[::-1]))[2]
    assert reversed_guess[::-1].tolist() == guess.tolist()


def test_a_text_with_a_newline_is_refused_by_the_backend():
    # fastText would read only the first line; the stage replaces newlines before asking
    with pytest.raises(ValueError, match="replace newlines by spaces"):
        FastTextBackend().detect(["first line\nsecond line"])


def test_preparation_counts_letters_and_folds_whitespace_as_the_regexes_do():
    st = stage()
    arr = pa.array(MIXED + [None])
    lines, letters = st.prepare(arr)
    collapsed = pc.utf8_trim_whitespace(pc.replace_substring_regex(arr, r"\s+", " "))
    expected = pc.utf8_lower(pc.utf8_slice_codeunits(collapsed, 0, st.config.max_chars))
    assert lines.to_pylist() == expected.to_pylist()
    counted = pc.count_substring_regex(lines, r"\p{L}").to_numpy(zero_copy_only=False)
    assert letters.tolist()[:-1] == counted.tolist()[:-1]
    assert letters.tolist()[:-1] == [sum(ch.isalpha() for ch in t) for t in lines.to_pylist()[:-1]]
    assert "\n" not in "".join(lines.to_pylist()[:-1])


# ----------------------------------------------------------------------------- abstention

def test_three_bounds_by_length():
    st = stage()
    letters = np.array([3, 10, 15, 16, 29, 30, 200])
    assert st.required_score(letters).tolist() == [0.9, 0.9, 0.9, 0.5, 0.5, 0.2, 0.2]
    assert stage(long_chars=0).required_score(letters).tolist() == [0.9, 0.9, 0.9, 0.5, 0.5, 0.5, 0.5]
    assert stage(long_chars=60, long_min_score=0.3).required_score(np.array([59, 60])).tolist() == [0.5, 0.3]
    # a long bound never loosens short text: short_chars decides first
    assert stage(long_chars=10).required_score(np.array([12, 16])).tolist() == [0.9, 0.2]


def test_a_min_score_you_set_covers_long_text_unless_long_min_score_is_set():
    assert LanguageConfig().long_min_score == 0.2
    assert LanguageConfig(min_score=0.8).long_min_score == 0.8
    assert LanguageConfig(min_score=0.8, long_min_score=0.3).long_min_score == 0.3
    # the resolved config reads back as itself (what a version records is what runs again)
    for cfg in (LanguageConfig(), LanguageConfig(min_score=0.8)):
        assert LanguageConfig(**cfg.model_dump()) == cfg


def test_an_unsure_sentence_is_answered_and_an_unsure_word_is_not():
    # a Norwegian sentence fastText hesitates on between Bokmål, Nynorsk and Danish (about 0.47)
    sentence = "Vi har lagt inn en ny versjon av programmet, og den fungerer godt på de fleste maskiner."
    word = "programmet"
    lang, score, guess, letters = stage().detect(pa.array([sentence, word]))
    assert letters[0] >= 30 and 0.2 <= score[0] < 0.5
    assert lang[0] == guess[0] != "und"  # the old single bound (0.5) abstained here
    assert stage(long_chars=0).detect(pa.array([sentence]))[0][0] == "und"
    assert letters[1] < 16 and (lang[1] == "und") == (score[1] < 0.9)


def test_the_reject_detail_names_the_bound_that_applied():
    sentence = "Vi har lagt inn en ny versjon av programmet, og den fungerer godt på de fleste maskiner."
    batch = pa.table({"id": ["s", "w", "t"], "text": [sentence, "Sardinen", "Hi!"]})
    st = Language(LanguageConfig(long_min_score=0.9), name="language", run=RunInfo("test", 0))
    out = st.process(batch, BatchInfo(0, 0))
    details = dict(zip(out.rejected.column("id").to_pylist(), out.rejected.column("detail").to_pylist()))
    assert re.fullmatch(r"best guess [a-z]{2,3} at 0\.\d\d, under long_min_score=0\.9 for texts of "
                        r"long_chars=30 letters or more", details["s"])
    assert details["t"] == "2 letters, under min_chars=4: too short to tell the language"
    assert re.fullmatch(r"best guess [a-z]{2,3} at 0\.\d\d, under short_min_score=0\.9 for texts under "
                        r"short_chars=16 letters", details["w"])  # a single word: the short bound
