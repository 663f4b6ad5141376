"""The language stage on instruction and chat rows: each side detected on its own
(prompt_lang/response_lang, a conversation's user and assistant turns), keep follows the side
chosen (the prompt by default, so translations are kept), and options that need instruction rows
are configuration errors on a text corpus."""

from __future__ import annotations

import pyarrow as pa
import pytest

from corpusmill import schema as S
from corpusmill.dataprep.language import Language, LanguageConfig
from corpusmill.errors import ConfigError
from corpusmill.sft import derive_text
from corpusmill.stage import BatchInfo, RunInfo
from tests.conftest import write_jsonl

TRANSLATE = ("Translate to German: The weather is lovely today and we are going to the lake.",
             "Das Wetter ist heute herrlich und wir gehen an den See.")
ENGLISH = ("Why did the backup job fail again last night?",
           "The backup failed because the disk was full; free some space and run it again.")
GERMAN = ("Bitte setzen Sie mein Passwort zurück, der Link in der E-Mail ist abgelaufen.",
          "Ich habe Ihnen einen neuen Link geschickt, er ist vierundzwanzig Stunden gültig.")


def _msg(role, content):
    return {"role": role, "content": content, "extra": None}


def _batch(pairs=(TRANSLATE, ENGLISH, GERMAN), conversations=()):
    """prompt/response rows, then conversations, then one plain-text row."""
    schema = S.record_schema(prompt_response=True, messages=True)
    n_pr, n_conv = len(pairs), len(conversations)
    n = n_pr + n_conv + 1
    cols = {
        S.ID: [f"r{i}" for i in range(n)],
        S.TEXT: [""] * (n - 1) + ["La sauvegarde a encore échoué la nuit dernière parce que le disque était plein."],
        S.SYSTEM: [None] * n,
        S.PROMPT: [p for p, _ in pairs] + [None] * (n_conv + 1),
        S.RESPONSE: [r for _, r in pairs] + [None] * (n_conv + 1),
        S.MESSAGES: [None] * n_pr + list(conversations) + [None],
        S.SOURCE: [f"f:{i}" for i in range(n)], S.META: [None] * n,
    }
    return derive_text(pa.Table.from_pydict(cols, schema=schema))


def _run(batch, **options):
    stage = Language(LanguageConfig(**options), name="language", run=RunInfo("t", 0))
    assert stage.check(batch.schema) == []
    out = stage.process(batch, BatchInfo(0, 0))
    assert out.kept.schema == stage.output_fields(batch.schema)
    assert out.kept.num_rows + (out.rejected.num_rows if out.rejected else 0) == batch.num_rows
    kept = {r["id"]: r for r in out.kept.to_pylist()}
    rejected = {r["id"]: r for r in out.rejected.to_pylist()} if out.rejected else {}
    return kept, rejected, out


def test_a_translation_asked_in_english_is_kept_by_keep_en():
    kept, rejected, out = _run(_batch(), keep=["en"])
    row = kept["r0"]
    assert (row["prompt_lang"], row["response_lang"], row["lang"]) == ("en", "de", "en")
    assert row["lang_score"] == row["prompt_lang_score"] and row["response_lang_score"] > 0.9
    assert set(kept) == {"r0", "r1"}
    assert rejected["r2"]["reason"] == "language_not_kept"
    assert rejected["r2"]["detail"].startswith("prompt language de (score ")
    # the plain-text row in the same data is judged on its text
    assert rejected["r3"]["detail"].startswith("text language fr") and rejected["r3"]["prompt_lang"] is None
    assert out.counters["prompt_lang_en"] == 2 and out.counters["response_lang_de"] == 2
    assert out.counters["lang_en"] == 2 and out.counters["lang_fr"] == 1


def test_keep_field_chooses_the_side_that_keep_follows():
    kept, rejected, _ = _run(_batch(), keep=["en"], keep_field="response")
    assert set(kept) == {"r1"} and kept["r1"]["lang"] == "en"
    assert rejected["r0"]["detail"].startswith("response language de")
    kept, rejected, _ = _run(_batch(), keep=["de"], keep_field="response")
    assert set(kept) == {"r0", "r2"}

    kept, rejected, _ = _run(_batch(), keep=["en"], keep_field="both")  # each side must pass
    assert set(kept) == {"r1"}
    assert rejected["r0"]["detail"].startswith("response language de")
    assert rejected["r2"]["detail"].startswith("prompt language de")

    # text: the derived text, prompt and answer together
    kept, _, _ = _run(_batch(pairs=[ENGLISH]), keep=["en"], keep_field="text")
    assert kept["r0"]["lang"] == "en" and kept["r0"]["prompt_lang"] == "en"


def test_conversations_are_detected_on_their_user_and_assistant_turns():
    conv = [_msg("system", "You are a helpful assistant. Answer in the language of the user."),
            _msg("user", "Wie spät ist es in Berlin, wenn es in New York Mittag ist?"),
            _msg("assistant", "It is six in the evening in Berlin when it is noon in New York."),
            _msg("user", "Und in Tokio?"),
            _msg("assistant", "In Tokyo it is already two in the morning of the next day.")]
    only_assistant = [_msg("assistant", "Hello! How can I help you today with your account?")]
    kept, rejected, _ = _run(_batch(pairs=[], conversations=[conv, only_assistant]), keep=["de"])
    row = kept["r0"]
    assert (row["prompt_lang"], row["response_lang"], row["lang"]) == ("de", "en", "de")  # the system prompt is on neither side
    # a conversation with no user turn has an empty prompt side (und): its whole text decides
    assert rejected["r1"]["prompt_lang"] == "und" and rejected["r1"]["lang"] == "en"
    assert rejected["r1"]["detail"].startswith("text (prompt und) language en (score ")
    kept, _, _ = _run(_batch(pairs=[], conversations=[conv]), keep=["en"], keep_field="response")
    assert "r0" in kept


def test_fields_limits_the_sides_detected():
    kept, _, out = _run(_batch(), fields=["prompt"])
    assert "response_lang" not in out.kept.column_names and kept["r0"]["prompt_lang"] == "en"
    assert not any(k.startswith("response_lang_") for k in out.counters)
    with pytest.raises(ValueError, match=r"keep_field: response .*needs \['response'\] in fields"):
        LanguageConfig(fields=["prompt"], keep_field="response")


def test_text_corpora_get_no_side_columns(tmp_path, run):
    write_jsonl(tmp_path / "t.jsonl", [{"id": "a", "text": ENGLISH[1]}, {"id": "b", "text": GERMAN[1]}])
    config = {"dataset": "t", "inputs": [{"path": "t.jsonl", "id_field": "id"}], "steps": [{"language": {"keep": ["en"]}}]}
    result = run(config)
    got = result.version.read_split(result.version.splits()[0])
    assert got.column("lang").to_pylist() == ["en"] and "prompt_lang" not in got.column_names
    reject = result.version.read_rejects().to_pylist()[0]
    assert reject["detail"].startswith("language de (score ")  # as before: no side named

    config["steps"] = [{"language": {"keep": ["en"], "keep_field": "prompt", "fields": ["prompt"]}}]
    with pytest.raises(ConfigError) as err:
        run(config, store=tmp_path / "s2")
    msg = str(err.value)
    assert "keep_field: prompt needs instruction or chat rows" in msg and "fields ['prompt'] names sides" in msg


def test_a_pipeline_on_prompt_response_rows(tmp_path, run):
    rows = [{"id": f"q{i}", "q": p, "a": r} for i, (p, r) in enumerate([TRANSLATE, ENGLISH, GERMAN])]
    write_jsonl(tmp_path / "qa.jsonl", rows)
    config = {"dataset": "qa", "inputs": [{"path": "qa.jsonl", "id_field": "id", "prompt_field": "q", "response_field": "a"}],
              "steps": [{"language": {"keep": ["en"]}}]}
    result = run(config)
    got = {r["id"]: r for s in result.version.splits() for r in result.version.read_split(s).to_pylist()}
    assert set(got) == {"q0", "q1"} and got["q0"]["response_lang"] == "de"
    stage = next(s for s in result.manifest["stages"] if s["name"] == "language")
    assert stage["rejected"] == {"language_not_kept": 1}


def test_code_is_not_read_and_a_prompt_too_short_to_tell_defers_to_its_row():
    pairs = [("Explain `tar -xzf`.", "It extracts a gzip-compressed archive into the current directory."),
             ("Explain `tar -xzf`.", "Es entpackt ein mit gzip komprimiertes Archiv in das aktuelle Verzeichnis."),
             ("What does `git stash --keep-index --include-untracked` do in a repository?",
              "```sh\ngit stash --keep-index --include-untracked\n```")]
    kept, rejected, _ = _run(_batch(pairs=pairs), keep=["en"])
    assert kept["r0"]["prompt_lang"] == "und" and kept["r0"]["lang"] == "en"  # "Explain ." is too short
    assert rejected["r1"]["detail"].startswith("text (prompt und) language de")
    # the prompt is English once its code is left out; the answer is only code: und
    assert kept["r2"]["prompt_lang"] == "en" and kept["r2"]["response_lang"] == "und"


def test_a_short_question_is_judged_with_its_answer():
    """fastText calls the German question (its code set aside) English; with side_min_chars the
    row's text decides, so keep: [en] rejects it, and a long English translation request stays."""
    short_german = ("Was bewirkt die Option `-A` von `ls`?",
                    "Listet alle Einträge auf, außer den impliziten Einträgen für das aktuelle und das übergeordnete Verzeichnis.")
    kept, rejected, _ = _run(_batch(pairs=(short_german, TRANSLATE)), keep=["en"])
    assert "r0" in rejected and rejected["r0"]["detail"].startswith("text (prompt short)")
    assert rejected["r0"]["lang"] == "de"
    assert "r1" in kept and kept["r1"]["lang"] == "en"
    kept, rejected, _ = _run(_batch(pairs=(short_german, TRANSLATE)), keep=["en"], side_min_chars=0)
    assert kept["r0"]["prompt_lang"] == "en"  # the misjudgement the default guards against
