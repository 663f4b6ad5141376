"""split on instruction and chat rows: rows sharing a prompt (or a conversation's first user turn)
share a split by default, keyed by the prompt's content, so the same prompt lands in the same
split whatever the order, the ids or the rows around it; refresh (``inherit``) keeps them there."""

from __future__ import annotations

import json

import pytest

from corpusmill.errors import CorpusmillError
from corpusmill.pipelines.refresh import refresh
from corpusmill.store import Store
from tests.conftest import REAL_TEXTS, write_jsonl
from tests.dataprep.test_dedup_sft import chat_pipeline, conversation, prompt_rows, sft_pipeline


def split_of(result) -> dict[str, str]:
    v = result.version
    return {rid: s for s in v.splits() for rid in v.read_split(s, columns=["id"]).column("id").to_pylist()}


def crossing(where: dict[str, str], planted: dict[str, str]) -> int:
    """Pairs of rows asking the same thing that sit in different splits."""
    return sum(where[a] != where[b] for a, b in planted.items())


def test_answers_to_one_prompt_share_a_split_by_default(tmp_path, run):
    rows, planted = prompt_rows()
    write_jsonl(tmp_path / "d.jsonl", rows)
    result = run(sft_pipeline("d.jsonl", [{"split": {}}]), store=tmp_path / "a")
    where = split_of(result)
    assert len(where) == 300 and crossing(where, planted) == 0
    counts = result.manifest["splits"]
    assert set(counts) == {"train", "validation", "test"} and counts["train"] > counts["test"] > 0
    counters = next(s for s in result.manifest["stages"] if s["name"] == "split")["counters"]
    assert counters["rows_sharing_a_prompt"] == 200
    meta = json.loads((result.version.path / "index" / "split" / "meta.json").read_text())
    assert meta["group_by_prompt"] is True
    # turned off, the pairs are placed one row (or near-twin group) at a time: many cross
    off = run(sft_pipeline("d.jsonl", [{"split": {"group_by_prompt": False}}]), store=tmp_path / "b")
    assert crossing(split_of(off), planted) > 10
    assert "group_by_prompt" not in json.loads((off.version.path / "index" / "split" / "meta.json").read_text())


def test_the_split_follows_the_prompt_not_the_row_order_or_ids(tmp_path, run):
    rows, planted = prompt_rows()
    write_jsonl(tmp_path / "a.jsonl", rows)
    first = split_of(run(sft_pipeline("a.jsonl", [{"dedup": {}}, {"split": {}}]), store=tmp_path / "s1"))
    # another order, other ids, the answers of each prompt in a different order
    renamed = [{**r, "id": f"x-{r['id']}"} for r in reversed(rows)]
    write_jsonl(tmp_path / "b.jsonl", renamed)
    second = split_of(run(sft_pipeline("b.jsonl", [{"dedup": {}}, {"split": {}}]), store=tmp_path / "s2"))
    assert all(second[f"x-{rid}"] == s for rid, s in first.items())
    # and a later version with only half of the rows and new ones around them
    half = rows[::2] + [{"id": f"new{i}", "prompt": f"Why does {t} fail?", "response": "Because of the network."}
                        for i, t in enumerate(REAL_TEXTS)]
    write_jsonl(tmp_path / "c.jsonl", half)
    third = split_of(run(sft_pipeline("c.jsonl", [{"split": {}}]), store=tmp_path / "s3"))
    assert all(third[r["id"]] == first[r["id"]] for r in rows[::2])


def test_grouping_a_dedup_prompt_group_and_stratify(tmp_path, run):
    """A dedup group (key: prompt, duplicates: group) and stratified splits still keep pairs together."""
    rows, planted = prompt_rows()
    for r in rows:
        r["label"] = "code" if "Git" in r["prompt"] or "Python" in r["prompt"] else "ops"
    write_jsonl(tmp_path / "d.jsonl", rows)
    cfg = sft_pipeline("d.jsonl", [{"dedup": {"key": "prompt", "duplicates": "group"}}, {"split": {"stratify": "label"}}])
    where = split_of(run(cfg))
    assert crossing(where, planted) == 0 and set(where.values()) == {"train", "validation", "test"}


def test_conversations_sharing_a_first_user_turn_share_a_split(tmp_path, run):
    rows, planted = [], {}
    for i in range(60):
        question = f"{REAL_TEXTS[i % 10]} This is about order {i}."
        rows.append({"id": f"c{i}", "messages": conversation(question, f"Sorry about order {i}.", "When?", "Today.")})
        if i % 2 == 0:  # the same opening, the rest of the chat elsewhere
            rows.append({"id": f"d{i}", "messages": conversation(question.lower(), "Please send a screenshot.",
                                                                 f"Here it is, number {i * 3}.", "Thank you, fixed.")})
            planted[f"d{i}"] = f"c{i}"
    write_jsonl(tmp_path / "chats.jsonl", rows)
    where = split_of(run(chat_pipeline("chats.jsonl", [{"split": {"near": False}}]), store=tmp_path / "a"))
    assert crossing(where, planted) == 0 and len(set(where.values())) == 3
    off = split_of(run(chat_pipeline("chats.jsonl", [{"split": {"near": False, "group_by_prompt": False}}]),
                       store=tmp_path / "b"))
    assert crossing(off, planted) > 0


def test_group_by_prompt_on_plain_text_is_a_configuration_error(tmp_path, run):
    write_jsonl(tmp_path / "plain.jsonl", [{"id": "a", "text": REAL_TEXTS[0]}])
    with pytest.raises(CorpusmillError, match="steps.split: group_by_prompt: true groups rows by their prompt, "
                                              "but these rows are plain text"):
        run({"dataset": "plain", "inputs": [{"path": "plain.jsonl", "id_field": "id"}],
             "steps": [{"split": {"group_by_prompt": True}}]})


def test_refresh_puts_a_new_answer_where_its_prompt_is(tmp_path, run):
    rows, _ = prompt_rows(n_dup=0)
    write_jsonl(tmp_path / "raw" / "base.jsonl", rows)
    parent = run(sft_pipeline("raw/base.jsonl", [{"dedup": {}}, {"split": {"ratios": {"train": 0.5, "test": 0.5}}}]))
    before = split_of(parent)
    new = [{"id": f"n-{r['id']}", "prompt": r["prompt"].upper(), "response": f"Another way: {r['response'][::-1]}"}
           for r in rows[:40]]
    new.append({"id": "n-fresh", "prompt": "How do I bake bread?", "response": "Mix, knead, wait, bake."})
    write_jsonl(tmp_path / "raw" / "new.jsonl", new)
    result = refresh(Store(tmp_path / "store"), "howto", [tmp_path / "raw" / "new.jsonl"])
    after = split_of(result)
    assert all(after[i] == s for i, s in before.items())
    assert all(after[f"n-{r['id']}"] == before[r["id"]] for r in rows[:40])
    assert {before[r["id"]] for r in rows[:40]} == {"train", "test"} and "n-fresh" in after


def test_inheriting_an_index_without_prompt_groups_is_refused(tmp_path, run):
    rows, _ = prompt_rows(n_dup=0)
    store = tmp_path / "store"
    write_jsonl(tmp_path / "v1.jsonl", rows[:50])
    run(sft_pipeline("v1.jsonl", [{"split": {"group_by_prompt": False}}]), store=store, name="v1.yaml")
    write_jsonl(tmp_path / "v2.jsonl", [{"id": "n", "prompt": rows[3]["prompt"], "response": "Another answer."}])
    with pytest.raises(CorpusmillError, match="was built without prompt groups"):
        run(sft_pipeline("v2.jsonl", [{"split": {"inherit": "howto"}}], dataset="v2"), store=store, name="v2.yaml")
    with pytest.raises(CorpusmillError, match="was built with group_by_prompt False but this step has True"):
        run(sft_pipeline("v2.jsonl", [{"split": {"inherit": "howto", "group_by_prompt": True}}], dataset="v2"),
            store=store, name="v2.yaml")
    ok = run(sft_pipeline("v2.jsonl", [{"split": {"inherit": "howto", "group_by_prompt": False}}], dataset="v2"),
             store=store, name="v2.yaml")
    assert ok.manifest["counts"]["kept"] == 1


def test_refresh_with_a_prompt_keyed_dedup_rejects_new_answers_to_old_prompts(tmp_path, run):
    rows, _ = prompt_rows(n_dup=0)
    write_jsonl(tmp_path / "raw" / "base.jsonl", rows[:100])
    run(sft_pipeline("raw/base.jsonl", [{"dedup": {"key": "prompt"}}, {"split": {}}]))
    new = [{"id": "n-old-prompt", "prompt": rows[5]["prompt"], "response": "A newer answer."},
           {"id": "n-new-prompt", "prompt": rows[150]["prompt"], "response": rows[150]["response"]}]
    write_jsonl(tmp_path / "raw" / "new.jsonl", new)
    result = refresh(Store(tmp_path / "store"), "howto", [tmp_path / "raw" / "new.jsonl"])
    rejects = {r["id"]: r for r in result.version.read_rejects().to_pylist()}
    assert rejects["n-old-prompt"]["duplicate_of"] == "q005" and "same prompt" in rejects["n-old-prompt"]["detail"]
    assert "n-new-prompt" in split_of(result)
