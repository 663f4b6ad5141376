"""dedup on instruction and chat rows: what is compared (``key``), the policy for rows sharing a
prompt (``duplicates: reject | group``), key validation before anything runs, and an ``against``
index built on another key."""

from __future__ import annotations

import json
import random

import pytest

from corpusmill.errors import CorpusmillError
from tests.conftest import REAL_TEXTS, write_jsonl

TASKS = ["rename a branch", "undo the last commit", "list open ports", "find large files", "schedule a nightly job",
         "rotate the log files", "check the disk usage", "compare two folders", "limit the memory of a process",
         "export a table to CSV", "restore a deleted file", "change the default shell", "watch a file for changes",
         "count the lines of every file", "sign a release tag", "pin a package version", "mount a network share",
         "trace a slow request", "archive old mail", "merge two PDF files"]
TOOLS = ["Git", "Linux", "macOS", "Windows", "PostgreSQL", "Docker", "Python", "Bash", "Vim", "Kubernetes"]
STEPS = [
    "Open a terminal in the project folder first.", "Make a backup before you change anything.",
    "Run the command with the verbose flag to see what happens.", "Check the manual page for the exact options.",
    "Use a dry run to preview the result.", "Restart the service once the change is saved.",
    "Write the command into a small script so it can be repeated.", "Confirm the result with a second command.",
    "Ask your administrator if the permission is denied.", "Keep the old version until the new one works.",
    "Test it on a copy of the data before the real run.", "Add a comment so your colleagues know why.",
    "Look at the log file if the command fails silently.", "Quote paths that contain spaces.",
    "Run it again with the same arguments to be sure.", "Close other programs that hold the file open.",
]


def prompt_rows(n_dup: int = 100, seed: int = 7) -> tuple[list[dict], dict[str, str]]:
    """200 distinct prompt/response rows ("How do I <task> in <tool>?"), then ``n_dup`` planted
    rows repeating one of those prompts with another answer; returns the rows and, per planted
    id, the id of the row whose prompt it repeats."""
    rng = random.Random(seed)
    rows = []
    for i, (task, tool) in enumerate((t, o) for t in TASKS for o in TOOLS):
        steps = " ".join(rng.sample(STEPS, 3))
        rows.append({"id": f"q{i:03d}", "prompt": f"How do I {task} in {tool}?",
                     "response": f"To {task} in {tool}: {steps}"})
    planted = {}
    for k, i in enumerate(rng.sample(range(len(rows)), n_dup)):
        base = rows[i]
        steps = " ".join(rng.sample(STEPS, 4))
        prompt = base["prompt"] if k % 2 else "  " + base["prompt"].upper()  # case and spacing do not matter
        rows.append({"id": f"again{k:03d}", "prompt": prompt, "response": f"{steps} That is all it takes."})
        planted[f"again{k:03d}"] = base["id"]
    return rows, planted


def sft_pipeline(path: str, steps: list[dict], dataset: str = "howto") -> dict:
    return {"dataset": dataset, "seed": 1,
            "inputs": [{"path": path, "id_field": "id", "prompt_field": "prompt", "response_field": "response"}],
            "steps": steps}


def chat_pipeline(path: str, steps: list[dict], dataset: str = "chats") -> dict:
    return {"dataset": dataset, "inputs": [{"path": path, "id_field": "id", "messages_field": "messages"}],
            "steps": steps}


def rejects_by_id(result) -> dict:
    return {r["id"]: r for r in result.version.read_rejects().to_pylist()}


def kept_rows(result) -> dict:
    v = result.version
    return {r["id"]: {**r, "split": split} for split in v.splits() for r in v.read_split(split).to_pylist()}


def test_key_prompt_removes_the_repeated_prompts_and_says_why(tmp_path, run):
    rows, planted = prompt_rows()
    write_jsonl(tmp_path / "d.jsonl", rows)
    # the default key, the text derived from prompt and response, sees 300 different rows
    by_text = run(sft_pipeline("d.jsonl", [{"dedup": {}}]), store=tmp_path / "a")
    assert by_text.manifest["counts"]["kept"] == 300
    result = run(sft_pipeline("d.jsonl", [{"dedup": {"key": "prompt"}}]), store=tmp_path / "b")
    rej = rejects_by_id(result)
    assert {k: r["duplicate_of"] for k, r in rej.items()} == planted
    assert {r["reason"] for r in rej.values()} == {"exact_duplicate"}
    assert all(r["detail"] == "same prompt as duplicate_of after normalisation" for r in rej.values())
    kept = kept_rows(result)
    assert len(kept) == 200 and all(k.startswith("q") for k in kept)
    assert result.manifest["stages"][-1]["rejected"] == {"exact_duplicate": 100}
    meta = json.loads((result.version.path / "index" / "dedup" / "meta.json").read_text())
    assert meta["key"] == "prompt" and meta["rows"] == 200


def test_keep_longest_answer_per_prompt(tmp_path, run):
    rows, planted = prompt_rows(n_dup=20)
    write_jsonl(tmp_path / "d.jsonl", rows)
    result = run(sft_pipeline("d.jsonl", [{"dedup": {"key": "prompt", "keep": "longest"}}]))
    kept, rej = kept_rows(result), rejects_by_id(result)
    assert len(rej) == 20 and len(kept) == 200
    for gone in rej.values():
        pair = {gone["id"], gone["duplicate_of"]}
        assert len(pair & set(planted)) == 1 and pair - set(planted) <= set(planted.values())
        assert len(kept[gone["duplicate_of"]]["text"]) >= len(gone["text"])  # the whole row's length
    assert sum(k in kept for k in planted) > 0 and sum(k in rej for k in planted) > 0


def test_group_keeps_every_answer_and_split_keeps_them_together(tmp_path, run):
    rows, planted = prompt_rows()
    write_jsonl(tmp_path / "d.jsonl", rows)
    result = run(sft_pipeline("d.jsonl", [{"dedup": {"key": "prompt", "duplicates": "group"}}, {"split": {}}]))
    assert result.manifest["counts"]["kept"] == 300 and not result.manifest["counts"]["rejected"]
    kept = kept_rows(result)
    for again, first in planted.items():
        assert kept[again]["cluster_id"] == first == kept[first]["cluster_id"]
        assert kept[again]["split"] == kept[first]["split"]
    alone = [r for k, r in kept.items() if k.startswith("q") and k not in planted.values()]
    assert all(r["cluster_id"] == r["id"] for r in alone)
    counters = next(s for s in result.manifest["stages"] if s["name"] == "dedup")["counters"]
    assert counters["grouped_rows"] == 100 and counters["groups"] == 100
    assert {r["split"] for r in kept.values()} == {"train", "validation", "test"}


def test_drop_exact_repeats_then_group_the_answers(tmp_path, run):
    """Two steps: whole rows repeated are dropped, different answers to one prompt stay together."""
    rows, planted = prompt_rows(n_dup=10)
    copies = [{**r, "id": f"copy-{r['id']}", "response": r["response"].lower()} for r in rows[:5]]
    write_jsonl(tmp_path / "d.jsonl", rows + copies)
    result = run(sft_pipeline("d.jsonl", [{"dedup": {}}, {"dedup": {"key": "prompt", "duplicates": "group"}}]))
    assert {k: r["duplicate_of"] for k, r in rejects_by_id(result).items()} == {f"copy-{r['id']}": r["id"] for r in rows[:5]}
    kept = kept_rows(result)
    assert len(kept) == 210 and all(kept[a]["cluster_id"] == f for a, f in planted.items())


def conversation(first: str, answer: str, follow: str, answer2: str, system: str | None = None) -> list[dict]:
    msgs = [{"role": "system", "content": system}] if system else []
    return msgs + [{"role": "user", "content": first}, {"role": "assistant", "content": answer},
                   {"role": "user", "content": follow}, {"role": "assistant", "content": answer2}]


def chat_rows() -> list[dict]:
    rows = [{"id": f"c{i}", "messages": conversation(REAL_TEXTS[i], f"Sorry to hear that, case {i} is open now.",
                                                    "How long will it take?", f"About {i + 2} days.")}
            for i in range(10)]
    rows += [
        # same first user turn, another answer and another follow-up
        {"id": "same-first", "messages": conversation(REAL_TEXTS[0], "We are looking into it.", "Thanks!", "You're welcome.")},
        # same user turns, other assistant answers
        {"id": "same-user-turns", "messages": conversation(REAL_TEXTS[1].upper(), "Done.", "How long will it take?", "A day.")},
        # the same conversation with a system prompt: same user turns? no (the system turn counts as the user side)
        {"id": "with-system", "messages": conversation(REAL_TEXTS[2], "Sorry to hear that, case 2 is open now.",
                                                       "How long will it take?", "About 4 days.", system="Be kind.")},
        # the same contents under swapped roles: same text, another conversation
        {"id": "swapped", "messages": [{"role": "assistant", "content": m["content"]} if m["role"] == "user" else
                                       {"role": "user", "content": m["content"]} for m in
                                       conversation(REAL_TEXTS[3], "Sorry to hear that, case 3 is open now.",
                                                    "How long will it take?", "About 5 days.")]},
        {"id": "copy", "messages": conversation(REAL_TEXTS[4], "Sorry to hear that, case 4 is open now.",
                                                "How long  will it take?", "About 6 days.")},
    ]
    return rows


@pytest.mark.parametrize("key, gone", [
    ("text", {"swapped": "c3", "copy": "c4"}),
    ("messages", {"copy": "c4"}),
    ("user_turns", {"same-user-turns": "c1", "copy": "c4"}),
    ("prompt", {"same-first": "c0", "same-user-turns": "c1", "with-system": "c2", "copy": "c4"}),
    ("response", {"with-system": "c2", "copy": "c4"}),
])
def test_keys_on_conversations(tmp_path, run, key, gone):
    write_jsonl(tmp_path / "chats.jsonl", chat_rows())
    result = run(chat_pipeline("chats.jsonl", [{"dedup": {"key": key}}]))
    assert {k: r["duplicate_of"] for k, r in rejects_by_id(result).items()} == gone


def test_near_duplicates_by_response(tmp_path, run):
    """near works on the key too: one answer lightly edited under another prompt."""
    rows, _ = prompt_rows(n_dup=0)
    rows = rows[:30]
    rows.append({"id": "reworded", "prompt": "Tell me something different entirely.",
                 "response": rows[3]["response"] + " Good luck."})
    write_jsonl(tmp_path / "d.jsonl", rows)
    result = run(sft_pipeline("d.jsonl", [{"dedup": {"key": "response", "exact": False, "near": {"threshold": 0.7}}}]))
    rej = rejects_by_id(result)
    assert rej["reworded"]["duplicate_of"] == "q003" and rej["reworded"]["reason"] == "near_duplicate"
    assert rej["reworded"]["detail"].startswith("near duplicate by response of duplicate_of: Jaccard")


def test_a_key_the_rows_lack_is_a_configuration_error(tmp_path, run):
    write_jsonl(tmp_path / "plain.jsonl", [{"id": "a", "text": REAL_TEXTS[0]}])
    write_jsonl(tmp_path / "d.jsonl", prompt_rows(n_dup=0)[0][:5])
    plain = {"dataset": "plain", "inputs": [{"path": "plain.jsonl", "id_field": "id"}],
             "steps": [{"dedup": {"key": "prompt"}}, {"dedup": {"key": "user_turns"}}]}
    with pytest.raises(CorpusmillError) as err:
        run(plain)
    text = str(err.value)
    assert "steps.dedup: key: 'prompt' compares the prompt of each row, but these rows are plain text" in text
    assert "steps.dedup_2: key: 'user_turns'" in text and "valid here: text;" in text
    with pytest.raises(CorpusmillError, match="key: 'messages' compares the conversation .* instruction rows "
                                              "without a conversation; valid here: text, prompt, response"):
        run(sft_pipeline("d.jsonl", [{"dedup": {"key": "messages"}}]))
    with pytest.raises(CorpusmillError, match="key"):
        run(sft_pipeline("d.jsonl", [{"dedup": {"key": "answer"}}]))
    assert not (tmp_path / "store" / "plain").exists()


def test_against_an_index_built_on_another_key(tmp_path, run):
    rows, _ = prompt_rows(n_dup=0)
    store = tmp_path / "store"
    write_jsonl(tmp_path / "v1.jsonl", rows[:100])
    run(sft_pipeline("v1.jsonl", [{"dedup": {"key": "prompt", "near": True}}]), store=store, name="v1.yaml")
    write_jsonl(tmp_path / "v2.jsonl", [
        {"id": "n-same-prompt", "prompt": rows[7]["prompt"].lower(), "response": "Something else entirely, in short."},
        {"id": "n-new", "prompt": rows[150]["prompt"], "response": rows[150]["response"]},
    ])
    with pytest.raises(CorpusmillError) as err:
        run(sft_pipeline("v2.jsonl", [{"dedup": {"near": True, "against": "howto"}}], dataset="v2"), store=store,
            name="v2.yaml")
    assert ("steps.dedup.against: the dedup index of howto@" in str(err.value)
            and "compares rows by key 'prompt' (prompt) but this step compares key 'text'" in str(err.value)
            and "set key: prompt here" in str(err.value))
    v2 = run(sft_pipeline("v2.jsonl", [{"dedup": {"key": "prompt", "near": True, "against": "howto"}}], dataset="v2"),
             store=store, name="v2.yaml")
    rej = rejects_by_id(v2)
    assert list(rej) == ["n-same-prompt"] and rej["n-same-prompt"]["duplicate_of"] == "q007"
    assert "of the earlier version" in rej["n-same-prompt"]["detail"]


def test_a_version_with_two_dedup_indexes_answers_for_the_matching_key(tmp_path, run):
    rows, _ = prompt_rows(n_dup=0)
    store = tmp_path / "store"
    write_jsonl(tmp_path / "v1.jsonl", rows[:50])
    run(sft_pipeline("v1.jsonl", [{"dedup": {}}, {"dedup": {"key": "prompt", "duplicates": "group"}}]),
        store=store, name="v1.yaml")
    write_jsonl(tmp_path / "v2.jsonl", [{"id": "n", "prompt": rows[3]["prompt"], "response": "Another answer."}])
    v2 = run(sft_pipeline("v2.jsonl", [{"dedup": {"key": "prompt", "against": "howto"}}], dataset="v2"),
             store=store, name="v2.yaml")
    assert rejects_by_id(v2)["n"]["duplicate_of"] == "q003"


def test_an_index_written_before_keys_counts_as_key_text(tmp_path, run):
    rows, _ = prompt_rows(n_dup=0)
    store = tmp_path / "store"
    write_jsonl(tmp_path / "v1.jsonl", rows[:20])
    v1 = run(sft_pipeline("v1.jsonl", [{"dedup": {}}]), store=store, name="v1.yaml")
    meta_path = v1.version.path / "index" / "dedup" / "meta.json"
    meta = json.loads(meta_path.read_text())
    del meta["key"]  # as an index of an earlier corpusmill wrote it
    meta_path.write_text(json.dumps(meta))
    write_jsonl(tmp_path / "v2.jsonl", [{"id": "n", "prompt": rows[3]["prompt"], "response": rows[3]["response"]}])
    v2 = run(sft_pipeline("v2.jsonl", [{"dedup": {"against": "howto"}}], dataset="v2"), store=store, name="v2.yaml")
    assert rejects_by_id(v2)["n"]["duplicate_of"] == "q003"
    with pytest.raises(CorpusmillError, match="compares rows by key 'text'"):
        run(sft_pipeline("v2.jsonl", [{"dedup": {"key": "prompt", "against": "howto"}}], dataset="v2"),
            store=store, name="v2.yaml")
