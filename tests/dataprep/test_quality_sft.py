"""The quality stage on instruction and chat rows: the sft preset's rules catch empty, placeholder,
refusing, echoing, looping, cut-off and over-long answers and conversations without an answer, and
leave real answers alone (code, lists, maths, tables, single words, quoted boilerplate); the preset
is the default on such rows; the run prints each rule's share and warns when one rejects too much."""

from __future__ import annotations

import json
import subprocess
import sys

import pyarrow as pa
import pytest

from corpusmill import schema as S
from corpusmill.dataprep.quality import SFT_RULES, Quality, QualityConfig, run_notes
from corpusmill.errors import ConfigError
from corpusmill.stage import BatchInfo, RunInfo
from tests.conftest import write_jsonl

GOOD = ("Use `ls -l` to list files in the long format. Each line shows the permissions, the number of links, the "
        "owner, the group, the size and the modification time, followed by the name.")
LONG = ("The tar command stores many files in one archive and restores them later. With -c it creates an archive, "
        "with -x it extracts one, and with -t it lists what an archive holds. Add -z to compress the archive with "
        "gzip, or -J for xz. The -f option names the archive file; without it tar reads standard input and writes "
        "standard output, which is useful in pipelines between two machines.")

#: rule -> (answers the rule must reject, answers it must keep). Prompts are "Question?" unless a pair.
CASES = {
    "empty_response": (["", "   \n\t "], ["Paris", "42", "No."]),
    "placeholder_response": (
        ["<nooutput>", "N/A", "...", "TODO", "-", "none", "Null.", "[insert answer here]", "<Your answer>", "  n/a  "],
        ["None of them: 4, 6 and 8 are all even, so none is prime.", "N/A stands for 'not applicable'.",
         "[1, 2, 3]", "-1", "null is JavaScript's value for 'no object'."],
    ),
    "refusal": (
        ["As an AI language model, I cannot give opinions on politics.",
         "I'm sorry, but I cannot help with that request.",
         "I cannot fulfill this request because it asks for personal data.",
         "I am unable to browse the internet, so I cannot check the price.",
         "Sure! Here is the list. However, as an AI language model, I do not have personal preferences.",
         "I’m sorry, but I can’t assist with that."],
        ['Chatbots often open with "As an AI language model, I cannot..." when they refuse; such replies are boilerplate.',
         "Filter rows containing `I'm sorry, but I cannot` before training, because they teach refusals.",
         "If ssh prints 'I am unable to connect', the server is down or a firewall blocks port 22.",
         "The daemon retries three times; when it is unable to reach the server it logs an error and exits.",
         GOOD],
    ),
    "response_equals_prompt": (
        [("What does ls do?", "What does ls do?"), ("Repeat: hello world", "repeat:   HELLO world."),
         ("Translate into German: good morning", "Translate into German: Good morning!")],
        [("What does ls do?", "It lists directory contents."), ("Say hello", "Say hello to Ann for me, she said.")],
    ),
    "repetition_loop": (
        ["I think the answer is yes. " * 6,
         "The options are:\n" + "\n".join(["- use the default"] * 6),
         GOOD + "\n" + "\n".join(["Please try again later."] * 5),
         "no no no no no no no no no no"],
        [GOOD, LONG,
         "\n".join(f"-{c}  enable option {c} of the parser" for c in "abcdefgh"),
         "int main(void) {\n  if (x) {\n    if (y) {\n      f();\n    }\n  }\n}\n}\n}",
         GOOD + "\n\n" + GOOD],  # a paragraph said twice stays under the share
    ),
    "truncated_response": (
        [LONG[:LONG.index("The -f")] + "The -f option names the archive file; without it tar reads the standard",
         "Here is how to compress the folder:",
         "The options are listed below, and the most useful one is the",
         "Here is the program:\n```python\ndef main():\n    print('hi')\n",
         "Call it as f(g(h(x, y), z"],
        ["Paris", "42", "x = (a + b) / 2", "E = mc^2", "Print the version and exit",
         "Use a long listing format. Sizes are in blocks",  # terse fragments: too short to be cut off
         "```python\nprint('hi')\n```",
         "Options:\n- -a show all\n- -l long format",
         "| option | meaning |\n|---|---|\n| -a | all |",
         "Run it like this:\n\ntar -xzf archive.tar.gz -C /tmp/out",
         "The interval [0, 1) holds 0 but not 1.",
         "Zeigt die Versionsnummer an",  # a German separable particle ends the sentence
         LONG],
    ),
}


def _batch(pairs, schema=None) -> pa.Table:
    pairs = [p if isinstance(p, tuple) else ("Question?", p) for p in pairs]
    n = len(pairs)
    schema = schema or S.record_schema(prompt_response=True)
    return pa.Table.from_pydict({
        S.ID: [f"r{i}" for i in range(n)], S.TEXT: ["" for _ in pairs], S.SYSTEM: [None] * n,
        S.PROMPT: [p for p, _ in pairs], S.RESPONSE: [r for _, r in pairs], S.SOURCE: ["t"] * n, S.META: [None] * n,
    }, schema=schema)


def _chats(conversations) -> pa.Table:
    n = len(conversations)
    messages = [[{"role": r, "content": c, "extra": e} for r, c, *rest in conv for e in [rest[0] if rest else None]]
                for conv in conversations]
    return pa.Table.from_pydict({
        S.ID: [f"c{i}" for i in range(n)], S.TEXT: [""] * n, S.MESSAGES: messages, S.SOURCE: ["t"] * n,
        S.META: [None] * n,
    }, schema=S.record_schema(messages=True))


def quality(batch: pa.Table, **options):
    stage = Quality(QualityConfig(**options), name="quality", run=RunInfo("t", 0))
    return stage.process(batch, BatchInfo(0, 0))


def _reasons(out) -> dict[str, str]:
    return {r["id"]: r["reason"] for r in out.rejected.to_pylist()} if out.rejected is not None else {}


def test_every_rule_but_the_tokenizer_one_has_cases():
    assert set(CASES) | {"missing_assistant_turn", "too_many_tokens"} == {r.name for r in SFT_RULES}


@pytest.mark.parametrize("rule", list(CASES))
def test_each_rule_rejects_its_cases_and_keeps_real_answers(rule):
    bad, good = CASES[rule]
    out = quality(_batch(bad + good))  # no preset: sft, as the rows are instruction rows
    reasons = _reasons(out)
    rejected_bad = {f"r{i}": reasons.get(f"r{i}") for i in range(len(bad))}
    assert rejected_bad == {k: rule for k in rejected_bad}, (rule, [(b, reasons.get(f"r{i}")) for i, b in enumerate(bad)])
    kept = set(out.kept.column("id").to_pylist())
    wrongly = [(g, reasons.get(f"r{i}")) for i, g in enumerate(good, start=len(bad)) if f"r{i}" not in kept]
    assert not wrongly
    # each rejected row names its rule, its signal and the threshold
    for r in out.rejected.to_pylist():
        assert r["stage"] == "quality" and r["detail"].startswith("q_")
        assert rule in r["q_flags"]


def test_signals_are_stored_and_thresholds_are_options():
    out = quality(_batch(["I think so. " * 4, GOOD]), rules={"repetition_loop": {"action": "annotate"}})
    assert out.rejected is None
    kept = out.kept.to_pylist()
    assert kept[0]["q_loop_ngram_share"] > 0.5 and kept[1]["q_loop_ngram_share"] == 0.0
    assert kept[0]["q_flags"] == ["repetition_loop"] and kept[1]["q_flags"] == []
    assert kept[1]["q_response_chars"] == len(GOOD) and kept[1]["q_truncation"] == 0
    assert out.counters == {"repetition_loop_flagged": 1}
    # a looser threshold keeps it; a disabled rule stores no column
    out = quality(_batch(["I think so. " * 4]), rules={"repetition_loop": {"max": 0.9}, "truncated_response": False})
    assert out.rejected is None and "q_truncation" not in out.kept.schema.names
    # the placeholder list is an option: a data set where 'None' is a real answer drops it
    values = [v for v in QualityConfig().rules.placeholder_response.values if v != "none"]
    assert quality(_batch(["None"]), rules={"placeholder_response": {"values": values}}).rejected is None


def test_first_failing_rule_is_the_reason_and_the_detail_names_the_others():
    out = quality(_batch([("Say it", "Say it")] + ["As an AI language model, I think the answer is the"]))
    rej = {r["id"]: r for r in out.rejected.to_pylist()}
    assert rej["r0"]["reason"] == "response_equals_prompt"
    assert rej["r1"]["reason"] == "refusal"
    assert "also fails truncated_response (q_truncation=2 (ends on a dangling word" in rej["r1"]["detail"]
    assert out.counters == {"response_equals_prompt_failed": 1, "refusal_failed": 1, "truncated_response_failed": 1}


def test_conversations_every_assistant_turn_or_the_last_one():
    convs = [
        [("user", "Hi"), ("assistant", "Hello! How can I help?"), ("user", "What is 2+2?"), ("assistant", "4")],
        # a refusal in an earlier turn is trained on too
        [("user", "Hi"), ("assistant", "I'm sorry, but I cannot chat."), ("user", "Why?"), ("assistant", "Policy.")],
        # an earlier turn that looks unfinished is not judged; the last one is
        [("user", "List"), ("assistant", "Here are the first ones:"), ("user", "More"), ("assistant", "That is all.")],
        [("user", "Go on"), ("assistant", "Fine."), ("user", "And?"), ("assistant", "And then the")],
        [("system", "Be brief."), ("user", "Hello there")],  # no assistant turn
        [("user", "Hello"), ("assistant", "  ")],  # only an empty one
        [("user", "Hello"), ("assistant", "Hi."), ("user", "Bye"), ("assistant", "")],  # the last one empty
        [("user", "Echo me"), ("assistant", "Echo me")],
        # a last turn that only calls a tool is not empty
        [("user", "Weather in Oslo?"), ("assistant", "", '{"tool_calls": [{"name": "weather"}]}')],
    ]
    out = quality(_chats(convs))
    assert _reasons(out) == {"c1": "refusal", "c3": "truncated_response", "c4": "missing_assistant_turn",
                             "c5": "missing_assistant_turn", "c6": "empty_response", "c7": "response_equals_prompt"}
    kept = {r["id"]: r for r in out.kept.to_pylist()}
    assert set(kept) == {"c0", "c2", "c8"}
    assert kept["c0"]["q_assistant_turns"] == 2 and kept["c8"]["q_assistant_turns"] == 1
    assert kept["c8"]["q_response_chars"] is None  # a tool call: not judged
    rejected = {r["id"]: r for r in out.rejected.to_pylist()}
    assert rejected["c1"]["q_refusal_answers"] == 1 and rejected["c4"]["q_response_chars"] is None


def test_plain_rows_among_instruction_rows_are_not_judged_by_the_sft_rules():
    schema = S.record_schema(prompt_response=True)
    batch = pa.Table.from_pydict({
        S.ID: ["plain", "pr"], S.TEXT: ["...", "x"], S.SYSTEM: [None, None], S.PROMPT: [None, "Q?"],
        S.RESPONSE: [None, "..."], S.SOURCE: ["t", "t"], S.META: [None, None]}, schema=schema)
    out = quality(batch)
    assert out.kept.column("id").to_pylist() == ["plain"]
    assert out.kept.column("q_placeholder_answers").to_pylist() == [None]
    assert _reasons(out) == {"pr": "placeholder_response"}
    assert "q_assistant_turns" not in out.kept.schema.names  # no conversations in these rows


def test_the_preset_follows_the_rows():
    sft = QualityConfig().for_schema(S.record_schema(prompt_response=True))
    text = QualityConfig().for_schema(S.record_schema())
    assert sft.preset == "sft" and text.preset == "fineweb"
    assert sft.rules.refusal.action == "reject" and sft.rules.gopher_word_count.action == "disabled"
    assert text.rules.refusal.action == "disabled" and text.rules.gopher_word_count.action == "reject"
    # an explicit action survives the preset chosen later
    mine = QualityConfig(rules={"truncated_response": {"action": "annotate"}}).for_schema(S.record_schema(messages=True))
    assert mine.rules.truncated_response.action == "annotate" and mine.rules.refusal.action == "reject"
    # text batches through a stage without a preset: the web rules, no SFT columns
    out = quality(pa.table({"id": ["a"], "text": ["Too short."]}))
    assert _reasons(out) == {"a": "gopher_word_count"}
    assert "q_refusal_answers" not in out.rejected.schema.names


# ----------------------------------------------------------------------------- through the pipeline


def _sft_rows(n_good: int = 12):
    good = [{"id": f"g{i}", "prompt": f"What does option -{c} do?", "response": f"{GOOD} Option -{c} is one of them."}
            for i, c in enumerate("abcdefghijklmnop"[:n_good])]
    bad = [{"id": "empty", "prompt": "Q1?", "response": " "},
           {"id": "nooutput", "prompt": "Q2?", "response": "<nooutput>"},
           {"id": "refusal", "prompt": "Q3?", "response": "As an AI language model, I cannot answer."},
           {"id": "echo", "prompt": "Tell me a joke.", "response": "Tell me a joke."},
           {"id": "loop", "prompt": "Q5?", "response": "It works. " * 8},
           {"id": "cut", "prompt": "Q6?", "response": "Here is the command you need:"}]
    return good, bad


def test_sft_is_the_default_preset_on_instruction_rows(tmp_path, run):
    good, bad = _sft_rows()
    write_jsonl(tmp_path / "sft.jsonl", good + bad)
    result = run({"dataset": "s", "inputs": [{"path": "sft.jsonl", "id_field": "id", "prompt_field": "prompt",
                                               "response_field": "response"}], "steps": [{"quality": {}}]})
    assert {r["id"] for r in result.version.read_split("all").to_pylist()} == {g["id"] for g in good}
    reasons = {r["id"]: r["reason"] for r in result.version.read_rejects().to_pylist()}
    assert reasons == {"empty": "empty_response", "nooutput": "placeholder_response", "refusal": "refusal",
                       "echo": "response_equals_prompt", "loop": "repetition_loop", "cut": "truncated_response"}
    resolved = result.manifest["config"]["steps"][0]["quality"]
    assert resolved["preset"] == "sft"  # the manifest says what ran
    assert resolved["rules"]["refusal"]["action"] == "reject"
    assert resolved["rules"]["gopher_word_count"]["action"] == "disabled"
    stage = next(s for s in result.manifest["stages"] if s["name"] == "quality")
    assert stage["counters"]["refusal_failed"] == 1
    lines, warnings = run_notes(result.manifest)
    assert lines == [f"quality (preset sft): share of its {len(good + bad)} rows each rule rejected: "
                     + ", ".join(f"{r} {1 / 18:.1%}" for r in ["empty_response", "placeholder_response", "refusal",
                                                                  "response_equals_prompt", "repetition_loop",
                                                                  "truncated_response"])]
    assert warnings == []


def test_a_web_preset_on_instruction_rows_warns_in_the_run_summary(tmp_path, capsys):
    from corpusmill.cli import main
    from tests.conftest import write_pipeline

    good, bad = _sft_rows()
    write_jsonl(tmp_path / "sft.jsonl", good + bad)
    p = write_pipeline(tmp_path / "p.yaml", {
        "dataset": "s", "inputs": [{"path": "sft.jsonl", "id_field": "id", "prompt_field": "prompt",
                                    "response_field": "response"}],
        "steps": [{"quality": {"preset": "fineweb"}}], "allow_empty_version": True})  # fineweb rejects them all
    assert main(["run", str(p), "--store", str(tmp_path / "store"), "--workers", "1"]) == 0
    err = capsys.readouterr().err
    # 18 short rows: Gopher's 50-word minimum fails every one
    assert "warning: quality rule 'gopher_word_count' rejected 18 of 18 rows (100.0%, more than warn_share 0.1)" in err
    assert "on instruction and chat rows use preset: sft" in err
    assert "quality (preset fineweb): share of its 18 rows each rule rejected: gopher_word_count 100.0%" in err

    # warn_share: null silences it; the sft preset on the same rows rejects 6 of 18 (33%) and warns per rule only
    # when a rule passes the share
    write_pipeline(p, {"dataset": "s", "inputs": [{"path": "sft.jsonl", "id_field": "id", "prompt_field": "prompt",
                                                    "response_field": "response"}],
                       "steps": [{"quality": {"preset": "fineweb", "warn_share": None}}], "allow_empty_version": True})
    assert main(["run", str(p), "--store", str(tmp_path / "store"), "--workers", "1"]) == 0
    assert "warning:" not in capsys.readouterr().err


def test_conversations_through_the_pipeline(tmp_path, run):
    rows = [{"id": "ok", "messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}]},
            {"id": "none", "messages": [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Hi"}]},
            {"id": "tool", "messages": [{"role": "user", "content": "Oslo weather?"},
                                        {"role": "assistant", "content": "", "tool_calls": [{"id": "1"}]}]}]
    write_jsonl(tmp_path / "chat.jsonl", rows)
    result = run({"dataset": "c", "inputs": [{"path": "chat.jsonl", "id_field": "id", "messages_field": "messages"}],
                  "steps": [{"quality": {}}]})
    assert {r["id"] for r in result.version.read_split("all").to_pylist()} == {"ok", "tool"}
    assert [r["reason"] for r in result.version.read_rejects().to_pylist()] == ["missing_assistant_turn"]


def test_option_problems_are_configuration_errors(tmp_path, run):
    write_jsonl(tmp_path / "t.jsonl", [{"text": GOOD}])
    write_jsonl(tmp_path / "sft.jsonl", [{"prompt": "Q?", "response": GOOD}])
    text = {"dataset": "e", "inputs": [{"path": "t.jsonl"}]}
    with pytest.raises(ConfigError) as err:
        run({**text, "steps": [{"quality": {"preset": "sft"}}]})
    assert "preset: sft judges instruction and chat rows, and these rows have only text" in str(err.value)
    with pytest.raises(ConfigError) as err:
        run({**text, "steps": [{"quality": {"rules": {"refusal": {"action": "reject"}}}}]})
    assert "rules refusal judge instruction and chat rows" in str(err.value)
    sft = {"dataset": "e", "inputs": [{"path": "sft.jsonl", "prompt_field": "prompt", "response_field": "response"}]}
    with pytest.raises(ConfigError) as err:
        run({**sft, "steps": [{"quality": {"rules": {"too_many_tokens": {"tokenizer": "no/such/folder"}}}}]})
    assert "rules.too_many_tokens.tokenizer: no folder" in str(err.value)
    with pytest.raises(ConfigError) as err:
        run({**sft, "steps": [{"quality": {"warn_share": 2, "preset": "sft2"}}]})
    assert "warn_share" in str(err.value) and "preset" in str(err.value)


# ----------------------------------------------------------------------------- too_many_tokens


def _word_tokenizer(folder):
    """A whitespace word-level tokenizer saved as a transformers tokenizer folder (no download)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"[UNK]": 0, "[PAD]": 1}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]").save_pretrained(folder)
    return folder


def test_too_many_tokens_counts_the_trained_fields_with_the_given_tokenizer(tmp_path, run):
    pytest.importorskip("transformers")
    _word_tokenizer(tmp_path / "tok")
    write_jsonl(tmp_path / "sft.jsonl", [
        {"id": "short", "prompt": "Explain ls.", "response": "It lists files."},  # 2 + 3 words
        {"id": "long", "prompt": "Explain tar.", "response": LONG},
    ])
    config = {"dataset": "t", "inputs": [{"path": "sft.jsonl", "id_field": "id", "prompt_field": "prompt",
                                          "response_field": "response"}],
              "steps": [{"quality": {"rules": {"too_many_tokens": {"tokenizer": "tok", "max": 20}}}}]}
    result = run(config)
    kept = result.version.read_split("all").to_pylist()
    assert [(r["id"], r["q_tokens"]) for r in kept] == [("short", 5)]
    rejected = result.version.read_rejects().to_pylist()
    assert [r["reason"] for r in rejected] == ["too_many_tokens"]
    assert rejected[0]["detail"] == f"q_tokens={2 + len(LONG.split())} > max 20"
    # the tokenizer's files are part of the version: another vocabulary, another version
    vocabulary = json.loads((tmp_path / "tok" / "tokenizer.json").read_text())
    vocabulary["model"]["vocab"]["ls"] = 2
    (tmp_path / "tok" / "tokenizer.json").write_text(json.dumps(vocabulary))
    assert run(config).version.ref != result.version.ref


def test_without_a_tokenizer_the_stage_imports_neither_torch_nor_transformers():
    code = (
        "import sys, pyarrow as pa\n"
        "from corpusmill import schema as S\n"
        "from corpusmill.dataprep.quality import Quality, QualityConfig\n"
        "from corpusmill.stage import BatchInfo, RunInfo\n"
        "t = pa.Table.from_pydict({'id': ['a'], 'text': [''], 'system': [None], 'prompt': ['Q?'], 'response': ['A.'],"
        " 'source': ['s'], 'meta': [None]}, schema=S.record_schema(prompt_response=True))\n"
        "out = Quality(QualityConfig(), name='q', run=RunInfo('t', 0)).process(t, BatchInfo(0, 0))\n"
        "assert out.kept.num_rows == 1\n"
        "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
