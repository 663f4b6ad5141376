"""The quality stage: every rule fails the text it is meant to catch and passes a good one, its
signal column is stored, annotate keeps rows, and the signals match a plain Python reading of
the published definitions."""

from __future__ import annotations

import re
from collections import Counter

import numpy as np
import pyarrow as pa
import pytest

from corpusmill.dataprep.quality import PRESETS, RULES, Quality, QualityConfig, QualityRule, RuleConfig, _max
from corpusmill.dataprep.text_stats import TextStats, ratio
from corpusmill.errors import ConfigError
from corpusmill.stage import BatchInfo, RunInfo
from tests.conftest import REAL_TEXTS, write_jsonl

GOOD = (
    "The library in our town opened a new reading room last spring, and it has become a quiet place for students.\n"
    "Volunteers keep the shelves in order, answer questions about local history and help older visitors with computers.\n"
    "On Saturday mornings a retired teacher reads stories to children, while their parents browse the newspapers.\n"
    "The council has promised to extend the opening hours if more people use the room during the week.\n"
    "Anyone who wants to help can sign up at the front desk or leave a note in the box by the door."
)
GOOD_LINES = GOOD.split("\n")
MENU = "\n".join(["Home", "Products", "About us", "Contact", "Careers", "Press", "Blog", "Shop", "Help"])
REPEATED_SENTENCE = "Our support team answers every message within two working days, including weekends."

#: rule -> (a text that fails it, options for the rule). Each text is judged by its rule alone.
FAILING = {
    "gopher_word_count": ("Back in five minutes, the keys are with the porter.", {}),
    "gopher_mean_word_length": ("I am so up to it. We go on as we do. He is in by me. It is my ox. So be it, as we go.", {}),
    "gopher_symbol_word_ratio": (GOOD + " #news #library #town #reading #students #volunteers #history #kids "
                                 "#council #help #books #weekend", {}),
    "gopher_bullet_lines": ("\n".join(f"• {w} for the trip" for w in ["tent", "stove", "map", "boots", "rope"]), {}),
    "gopher_ellipsis_lines": ("\n".join(line[:40] + "..." for line in GOOD_LINES), {}),
    "gopher_alpha_words": ("Order 1182 2231 4410 9921 3310 22 17 5531 paid 12.50 on 4410 99 31 1 2 3", {}),
    "gopher_stop_words": ("Quarterly revenue grew strongly. Costs fell sharply. Margins improved considerably "
                          "across regions. Investors welcomed results.", {}),
    "gopher_dup_lines": (GOOD_LINES[0] + "\nCall us today!\nCall us today!\nCall us today!", {}),
    "gopher_dup_paragraphs": ("Closed on Monday.\n\nOpen on Tuesday.\n\nClosed on Monday.\n\nClosed on Monday.", {}),
    "gopher_dup_line_chars": ("\n".join(GOOD_LINES[:3] + GOOD_LINES[:2]), {}),
    "gopher_dup_paragraph_chars": (GOOD + "\n\nShort one.\n\n" + GOOD, {}),
    "gopher_top_2gram": ("Buy cheap shoes now. Buy cheap boots here. Buy cheap socks today. Buy cheap hats online.", {}),
    "gopher_top_3gram": ("Buy cheap shoes now. Buy cheap shoes here. Buy cheap shoes today. Visit us.", {}),
    "gopher_top_4gram": ("Buy cheap shoes now please. Buy cheap shoes now or later, buy cheap shoes now!", {}),
    "gopher_dup_5gram": (GOOD_LINES[0] + " " + REPEATED_SENTENCE + " " + REPEATED_SENTENCE, {}),
    "gopher_dup_6gram": (GOOD_LINES[0] + " " + REPEATED_SENTENCE + " " + REPEATED_SENTENCE, {}),
    "gopher_dup_7gram": (GOOD_LINES[0] + " " + REPEATED_SENTENCE + " " + REPEATED_SENTENCE, {}),
    "gopher_dup_8gram": (GOOD_LINES[0] + " " + REPEATED_SENTENCE + " " + REPEATED_SENTENCE, {}),
    "gopher_dup_9gram": (GOOD_LINES[0] + " " + REPEATED_SENTENCE + " " + REPEATED_SENTENCE, {}),
    "gopher_dup_10gram": (GOOD_LINES[0] + " " + REPEATED_SENTENCE + " " + REPEATED_SENTENCE, {}),
    "c4_terminal_punctuation": ("Town library news\n" + GOOD, {}),
    "c4_min_sentences": ("The meeting is at noon. Bring the report.", {}),
    "c4_lorem_ipsum": (GOOD + " Lorem ipsum dolor sit amet.", {}),
    "c4_curly_bracket": (GOOD + " Use {name} as the placeholder.", {}),
    "c4_javascript": (GOOD + "\nPlease enable JavaScript to see the comments.", {}),
    "c4_policy": (GOOD + "\nThis site uses cookies to improve your experience.", {}),
    "c4_long_word": (GOOD + " " + "A" * 1001, {}),
    "fineweb_line_punctuation": (MENU, {}),
    "fineweb_short_lines": (MENU, {}),
    "fineweb_dup_line_chars": (GOOD + "\n" + GOOD_LINES[3], {}),
    "fineweb_newline_ratio": ("Shopping list:\n" + "\n".join(["apples", "pears", "bread", "milk", "eggs", "rice"]), {}),
}


def quality(texts: list[str], lang: list[str] | None = None, **options):
    columns = {"id": [f"r{i}" for i in range(len(texts))], "text": texts}
    if lang is not None:
        columns["lang"] = lang
    stage = Quality(QualityConfig(**options), name="quality", run=RunInfo("t", 0))
    return stage.process(pa.table(columns), BatchInfo(0, 0))


def test_every_rule_has_a_failing_example():
    assert set(FAILING) == {r.name for r in RULES}


@pytest.mark.parametrize("rule", [r.name for r in RULES])
def test_each_rule_rejects_its_case_and_keeps_a_good_text(rule):
    bad, options = FAILING[rule]
    out = quality([GOOD, bad], preset="annotate", rules={rule: {"action": "reject", **options}})
    assert out.kept.column("id").to_pylist() == ["r0"]
    rejected = out.rejected.to_pylist()
    assert [r["reason"] for r in rejected] == [rule]
    column = next(r.column for r in RULES if r.name == rule)
    assert rejected[0]["detail"].startswith(f"{column}=")
    assert rule in rejected[0]["q_flags"]
    # the good text passes every rule of the default preset
    assert quality([GOOD]).kept.column("q_flags").to_pylist() == [[]]


def test_annotate_only_keeps_every_row_and_flags_them():
    texts = [GOOD] + [bad for bad, _ in FAILING.values()]
    out = quality(texts, preset="annotate")
    assert out.rejected is None and out.kept.num_rows == len(texts)
    flags = out.kept.column("q_flags").to_pylist()
    assert flags[0] == []
    for i, rule in enumerate(FAILING, start=1):
        assert rule in flags[i], (rule, flags[i])
    assert out.counters["gopher_word_count_flagged"] >= 1


def test_every_rule_stores_its_signal_column_with_a_stable_type():
    out = quality([GOOD, MENU])
    columns = {r.column: r.dtype for r in RULES}
    schema = out.kept.schema
    for column, dtype in columns.items():
        assert schema.field(column).type == dtype
    assert schema.field("q_flags").type == pa.list_(pa.string())
    assert out.rejected.schema.names == out.kept.schema.names + ["stage", "reason", "detail", "duplicate_of",
                                                                 "similarity", "raw"]


def test_thresholds_are_configurable_and_rules_can_be_disabled():
    words = " ".join(["word"] * 30) + "."
    out = quality([words], preset="annotate", rules={"gopher_word_count": {"min": 20, "max": 25, "action": "reject"}})
    assert out.rejected.column("detail")[0].as_py().startswith("q_word_count=30 > max 25; also fails ")
    out = quality([words], preset="annotate", rules={"gopher_word_count": {"min": 20, "max": None, "action": "reject"}})
    assert out.rejected is None
    out = quality([words], rules={"gopher_word_count": False, "c4_curly_bracket": {"action": False}})
    assert "q_word_count" not in out.kept.schema.names and "q_curly_brackets" not in out.kept.schema.names
    assert "q_mean_word_length" in (out.kept.schema.names + (out.rejected.schema.names if out.rejected else []))


def test_first_failing_rule_is_the_reason_and_the_detail_names_the_others():
    out = quality(["Too short."])
    rej = out.rejected.to_pylist()[0]
    assert rej["reason"] == "gopher_word_count"
    assert rej["detail"].startswith("q_word_count=2 < min 50; also fails ")
    assert "gopher_stop_words (q_stop_word_count=0 < min 2)" in rej["detail"]


def test_stop_word_rule_judges_only_its_languages():
    german = "Der Hund läuft schnell über die Wiese, und die Kinder lachen laut im Garten hinter dem Haus."
    out = quality([german, german], lang=["de", "en"], preset="annotate",
                  rules={"gopher_stop_words": {"action": "reject"}})
    assert out.kept.column("id").to_pylist() == ["r0"]  # 'de' is not judged by the English list
    assert out.kept.column("q_stop_word_count").to_pylist() == [0]  # but its signal is stored
    assert out.rejected.column("reason").to_pylist() == ["gopher_stop_words"]
    custom = quality([german], lang=["de"], preset="annotate", rules={"gopher_stop_words": {
        "action": "reject", "words": ["der", "die", "und", "das"], "languages": ["de"]}})
    assert custom.rejected is None and custom.kept.column("q_stop_word_count").to_pylist() == [3]  # der, die, und


def test_stop_words_are_counted_once_each():
    text = "To err is human, to forgive divine, to persist is what we do."  # 'to' three times, nothing else
    out = quality([text, text + " The end."], preset="annotate", rules={"gopher_stop_words": {"action": "reject"}})
    assert out.rejected.column("q_stop_word_count").to_pylist() == [1]
    assert out.kept.column("q_stop_word_count").to_pylist() == [2]


# ----------------------------------------------------------------------------- signal values


def test_signals_on_hand_computed_examples():
    st = TextStats(pa.array([
        "Hello, world! -- 42 #tag",
        "a\nb\na\n\na",
        "one two one two three",
        "a b c d e a b c d e x",
        "la la la la",
    ]))
    assert st.word_count.tolist() == [4, 4, 5, 11, 4]
    assert st.words.to_pylist()[:4] == ["Hello", "world", "42", "tag"]
    assert st.word_chars[0] == 15 and st.alpha_words[0] == 3
    assert st.line_repetition[0][1] == pytest.approx(0.5) and st.line_repetition[1][1] == pytest.approx(0.5)
    assert st.paragraph_repetition[0][1] == 0.0  # "a\nb\na" and "a" differ
    assert st.top_ngram_char_fraction(2)[2] == pytest.approx(2 * 6 / 17)
    assert st.top_ngram_char_fraction(2)[0] == 0.0  # no 2-gram occurs twice
    assert st.duplicate_ngram_char_fraction(5)[3] == pytest.approx(10 / 11)
    assert st.top_ngram_char_fraction(2)[4] == 1.0  # "la la" x3 overlaps: capped


# a plain Python reading of the definitions in text_stats, one row at a time


def _words(text):
    out = []
    for token in text.split():
        word = re.sub(r"^[^\w]+|[^\w]+$", "", token).strip("_")
        if word:
            out.append(word)
    return out


def _repetition(pieces):
    seen, repeats, chars = set(), 0, 0
    for p in pieces:
        if p in seen:
            repeats, chars = repeats + 1, chars + len(p)
        seen.add(p)
    total = sum(map(len, pieces))
    return (repeats / len(pieces) if pieces else 0.0), (chars / total if total else 0.0)


def _top_ngram(words, n):
    grams = [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]
    counts = Counter(grams)
    total = sum(map(len, words))
    repeated = [(c, sum(map(len, g))) for g, c in counts.items() if c >= 2]
    if not repeated or not total:
        return 0.0
    c, chars = max(repeated)
    return min(1.0, c * chars / total)


def _dup_ngram(words, n):
    grams = [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]
    counts = Counter(grams)
    covered = [False] * len(words)
    for i, g in enumerate(grams):
        if counts[g] >= 2:
            covered[i:i + n] = [True] * n
    total = sum(map(len, words))
    return sum(len(w) for w, c in zip(words, covered) if c) / total if total else 0.0


def test_vectorised_signals_match_a_plain_per_row_reading():
    texts = REAL_TEXTS + [bad for bad, _ in FAILING.values()] + [
        GOOD, " ".join(REAL_TEXTS[:3] * 3), "to be or not to be, that is the question to be asked",
        "x y z x y z x y z x y z x y", "\n\n".join(["Alpha beta.", "Gamma delta.", "Alpha beta."] * 2),
    ]
    st = TextStats(pa.array(texts))
    for i, text in enumerate(texts):
        words = [w.lower() for w in _words(text)]
        assert st.word_count[i] == len(words), text
        lines = [line.strip() for line in text.split("\n") if line.strip()]
        paragraphs = [p.strip() for p in re.split(r"\n[ \t]*\n", text) if p.strip()]
        assert st.line_repetition[0][i] == pytest.approx(_repetition(lines)[0])
        assert st.line_repetition[1][i] == pytest.approx(_repetition(lines)[1])
        assert st.paragraph_repetition[0][i] == pytest.approx(_repetition(paragraphs)[0])
        assert st.paragraph_repetition[1][i] == pytest.approx(_repetition(paragraphs)[1])
        for n in (2, 3, 4):
            assert st.top_ngram_char_fraction(n)[i] == pytest.approx(_top_ngram(words, n)), (n, text)
        for n in range(5, 11):
            assert st.duplicate_ngram_char_fraction(n)[i] == pytest.approx(_dup_ngram(words, n)), (n, text)


def test_signals_do_not_depend_on_how_rows_are_batched():
    texts = REAL_TEXTS + [bad for bad, _ in FAILING.values()] + [GOOD]
    whole = quality(texts, preset="annotate").kept
    parts = [quality(texts[i:i + 7], preset="annotate").kept for i in range(0, len(texts), 7)]
    joined = pa.concat_tables(parts)
    for column in whole.schema.names:
        if column != "id":
            assert whole.column(column).to_pylist() == joined.column(column).to_pylist(), column


# ----------------------------------------------------------------------------- through the pipeline


def test_quality_through_the_pipeline(tmp_path, run):
    rows = [{"id": "good", "text": GOOD}] + [{"id": rule, "text": bad} for rule, (bad, _) in FAILING.items()]
    write_jsonl(tmp_path / "docs.jsonl", rows)
    base = {"dataset": "q", "inputs": [{"path": "docs.jsonl", "id_field": "id"}]}

    result = run({**base, "steps": [{"quality": {}}]})  # the fineweb preset
    kept = result.version.read_split("all").to_pylist()
    kept_ids = {r["id"] for r in kept}
    assert "good" in kept_ids
    for rule in ["c4_terminal_punctuation", "c4_javascript", "c4_policy"]:
        assert rule in kept_ids  # annotate-only in this preset
        assert rule in next(r for r in kept if r["id"] == rule)["q_flags"]
    rejects = {r["id"]: r for r in result.version.read_rejects().to_pylist()}
    # the 1001-character word is flagged, and the row goes for its mean word length (a reject rule)
    assert rejects["c4_long_word"]["reason"] == "gopher_mean_word_length"
    assert "c4_long_word (q_max_word_length=1001 > max 1000)" in rejects["c4_long_word"]["detail"]
    assert set(rejects) == {r.name for r in RULES} - kept_ids
    assert rejects["c4_min_sentences"]["reason"] == "gopher_word_count"  # 7 words: the first failing rule
    assert rejects["fineweb_newline_ratio"]["q_newline_word_ratio"] == pytest.approx(6 / 8)
    schema = {f["name"] for f in result.manifest["schema"]}
    assert {r.column for r in RULES} | {"q_flags"} <= schema
    stage = next(s for s in result.manifest["stages"] if s["name"] == "quality")
    assert sum(stage["rejected"].values()) == len(rejects)
    assert stage["counters"]["c4_terminal_punctuation_flagged"] == 1
    resolved = result.manifest["config"]["steps"][0]["quality"]
    assert resolved["preset"] == "fineweb"
    assert resolved["rules"]["c4_terminal_punctuation"]["action"] == "annotate"
    assert resolved["rules"]["gopher_word_count"] == {"action": "reject", "languages": None, "min": 50, "max": 100000}

    annotated = run({**base, "steps": [{"quality": {"preset": "annotate"}}]})
    assert annotated.manifest["counts"]["kept"] == len(rows)
    flags = {r["id"]: r["q_flags"] for r in annotated.version.read_split("all").to_pylist()}
    assert flags["good"] == []
    assert all(rule in flags[rule] for rule in FAILING)


def test_yaml_rule_switches_and_config_errors(tmp_path):
    from corpusmill.pipelines import run_pipeline

    write_jsonl(tmp_path / "d.jsonl", [{"text": GOOD}, {"text": "x {y}"}])
    (tmp_path / "p.yaml").write_text(
        "dataset: y\ninputs: [{path: d.jsonl}]\nsteps:\n"
        "  - quality:\n      preset: gopher\n      rules:\n"
        "        c4_curly_bracket: {action: reject}\n        gopher_word_count: {action: off}\n"
        "        fineweb_short_lines: false\n"
    )
    result = run_pipeline(tmp_path / "p.yaml", store=tmp_path / "store", workers=1)
    rules = result.manifest["config"]["steps"][0]["quality"]["rules"]
    assert rules["gopher_word_count"]["action"] == "disabled"
    assert rules["fineweb_short_lines"]["action"] == "disabled"
    assert rules["fineweb_newline_ratio"]["action"] == "annotate"  # not a Gopher rule
    rejected = result.version.read_rejects().to_pylist()
    assert [r["reason"] for r in rejected] == ["gopher_mean_word_length"]
    assert "c4_curly_bracket" in rejected[0]["detail"]
    names = {f["name"] for f in result.manifest["schema"]}
    assert "q_word_count" not in names and "q_short_line_fraction" not in names

    (tmp_path / "bad.yaml").write_text(
        "dataset: y\ninputs: [{path: d.jsonl}]\nsteps:\n"
        "  - quality:\n      preset: strict\n      rules:\n"
        "        gopher_word_cnt: {min: 10}\n        gopher_mean_word_length: {min: short}\n"
    )
    with pytest.raises(ConfigError) as err:
        run_pipeline(tmp_path / "bad.yaml", store=tmp_path / "store", workers=1)
    text = str(err.value)
    assert "steps[0].quality.preset" in text
    assert "steps[0].quality.rules.gopher_word_cnt: unknown key (did you mean 'gopher_word_count'?)" in text
    assert "steps[0].quality.rules.gopher_mean_word_length.min" in text


def test_presets_cover_every_rule():
    for preset, actions in PRESETS.items():
        assert set(actions) == {r.name for r in RULES}, preset
    assert set(PRESETS["annotate"].values()) == {"annotate"}
    assert PRESETS["fineweb"]["c4_terminal_punctuation"] == "annotate"
    assert PRESETS["c4"]["c4_terminal_punctuation"] == "reject"
    assert PRESETS["gopher"]["fineweb_short_lines"] == "annotate"


def test_rule_failures_agree_with_their_signal_columns():
    # filter later: re-applying a rule's threshold to its stored column gives the same decision
    texts = REAL_TEXTS + [bad for bad, _ in FAILING.values()] + [GOOD]
    out = quality(texts, preset="annotate").kept
    flags = out.column("q_flags").to_pylist()
    words = np.array(out.column("q_word_count").to_pylist())
    assert [("gopher_word_count" in f) for f in flags] == ((words < 50) | (words > 100_000)).tolist()
    punct = np.array(out.column("q_punct_line_fraction").to_pylist())
    assert [("fineweb_line_punctuation" in f) for f in flags] == (punct <= 0.12).tolist()


def test_a_new_rule_is_one_small_class():
    # the example of docs/cleaning-and-quality.md, "Adding a rule"
    class QuestionMarks(QualityRule):
        """At most 30% of sentences are questions (a FAQ page, a quiz)."""

        name, column = "question_marks", "q_question_fraction"

        class Config(RuleConfig):
            max: float | None = _max(0.3, "a larger fraction of '?' among sentence ends")

        def signal(self, stats):
            return ratio(stats.count("?"), stats.count("?") + stats.count(".") + stats.count("!"))

    rule = QuestionMarks(QuestionMarks.Config())
    values = rule.signal(TextStats(pa.array(["Why? How? What? Fine.", GOOD])))
    assert values.tolist() == [0.75, 0.0]
    assert rule.fails(values).tolist() == [True, False]
    assert rule.explain(0.75) == "q_question_fraction=0.75 > max 0.3"
