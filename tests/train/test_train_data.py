"""What the trainer feeds the model: exact response-only masks, EOS always learned, packing that
never lets attention cross examples, and a deterministic, resumable data order."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from corpusmill.store import Store
from corpusmill.train import data
from corpusmill.train.data import IGNORE
from corpusmill.train.loop import forward_logits
from corpusmill.train.modeling import load_tokenizer


def ids(tok, words: str) -> list[int]:
    return tok.convert_tokens_to_ids(words.split())


def test_prompt_response_masks_exactly_the_prompt(tiny):
    tok = load_tokenizer(str(tiny["llama"]))
    table = pa.table({"id": ["a"], "prompt": ["What do bees make?"], "response": ["Bees make honey and wax."]})
    ex = data.prompt_response_examples(tok, table, "{prompt}\n", max_len=64)
    prompt = [tok.bos_token_id] + ids(tok, "What do bees make ?")
    response = ids(tok, "Bees make honey and wax .") + [tok.eos_token_id]
    assert ex.input_ids[0].tolist() == prompt + response
    assert ex.labels[0].tolist() == [IGNORE] * len(prompt) + response
    assert ex.prompts == ["What do bees make?\n"] and ex.references == ["Bees make honey and wax."]


def test_chat_messages_learn_assistant_turns_only(tiny):
    tok = load_tokenizer(str(tiny["llama"]))
    msgs = [{"role": "system", "content": "You answer in one sentence."},
            {"role": "user", "content": "What is frozen water called?"},
            {"role": "assistant", "content": "Frozen water is called ice."},
            {"role": "user", "content": "Are you sure?"},
            {"role": "assistant", "content": "Yes, I am sure."}]
    table = pa.table({"id": ["c"], "messages": [msgs]})
    ex = data.messages_examples(tok, table, max_len=128)
    context1 = ids(tok, "<|system|> You answer in one sentence . </s> <|user|> What is frozen water called ? </s> <|assistant|>")
    answer1 = ids(tok, "Frozen water is called ice . </s>")
    context2 = ids(tok, "<|user|> Are you sure ? </s> <|assistant|>")
    answer2 = ids(tok, "Yes , I am sure . </s>")
    assert ex.input_ids[0].tolist() == context1 + answer1 + context2 + answer2
    assert ex.labels[0].tolist() == [IGNORE] * len(context1) + answer1 + [IGNORE] * len(context2) + answer2
    assert ex.labels[0][-1] == tok.eos_token_id


def test_conversation_without_assistant_turn_is_counted_not_dropped_silently(tiny):
    tok = load_tokenizer(str(tiny["llama"]))
    table = pa.table({"id": ["x"], "messages": [[{"role": "user", "content": "Are you sure?"}]]})
    ex = data.messages_examples(tok, table, max_len=64)
    assert len(ex) == 0 and ex.accounting == {"no_assistant_turn": 1}


def test_eos_is_a_target_even_when_padding_uses_the_eos_id(tiny):
    tok = load_tokenizer(str(tiny["gpt2"]))
    assert tok.pad_token_id == tok.eos_token_id  # GPT-2 style: no pad token of its own
    table = pa.table({"id": ["a", "b"], "text": ["Bees make honey.", "A week has seven days."]})
    ex = data.text_examples(tok, table, max_len=64)
    batch = data.collate(ex, [0, 1], tok.pad_token_id, causal=True)
    eos = tok.eos_token_id
    short, long_ = batch.labels[0], batch.labels[1]
    n = len(ex.input_ids[0])
    assert short[n - 1] == eos and (short[n:] == IGNORE).all()  # the real EOS learned, the padding not
    assert long_[-1] == eos and long_.tolist() == ex.input_ids[1].tolist()
    assert batch.n_targets == (len(ex.input_ids[0]) - 1) + (len(ex.input_ids[1]) - 1)


def test_truncation_is_counted(tiny):
    tok = load_tokenizer(str(tiny["gpt2"]))
    table = pa.table({"id": ["a"], "text": ["Bees make honey and wax . " * 5]})
    ex = data.text_examples(tok, table, max_len=10)
    assert len(ex.input_ids[0]) == 10 and ex.accounting["truncated"] == 1


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_packed_rows_score_each_example_as_if_alone(tiny, arch):
    import torch
    from transformers import AutoModelForCausalLM

    tok = load_tokenizer(str(tiny[arch]))
    model = AutoModelForCausalLM.from_pretrained(str(tiny[arch])).eval()
    texts = ["Bees make honey and wax.", "A week has seven days.", "Frozen water is called ice.", "What do bees make?"]
    ex = data.text_examples(tok, pa.table({"id": list("abcd"), "text": texts}), max_len=64)
    packed = data.pack(ex, max_len=40, seed=0)
    assert len(packed) < len(ex) and sum(len(x) for x in packed.input_ids) == sum(len(x) for x in ex.input_ids)
    batch = data.collate(packed, range(len(packed)), tok.pad_token_id, causal=True)
    with torch.no_grad():
        logits = forward_logits(model, batch.to_torch("cpu"))
    checked = 0
    for r, seg in enumerate(packed.segments):
        for s in np.unique(seg):
            cols = np.flatnonzero(seg == s)
            row = packed.input_ids[r][cols]
            k = next(i for i, x in enumerate(ex.input_ids) if np.array_equal(x, row))
            alone = model(input_ids=torch.from_numpy(row)[None]).logits[0]
            torch.testing.assert_close(logits[r, cols], alone, atol=1e-5, rtol=1e-4)
            # the first token of an example is never a target: it would be predicted from the previous one
            assert packed.labels[r][cols[0]] == IGNORE
            assert packed.labels[r][cols[1:]].tolist() == ex.labels[k][1:].tolist()
            checked += 1
    assert checked == len(ex)


def test_batch_order_is_deterministic_resumable_and_shards_like_distributed_sampler():
    one = data.BatchOrder(10, batch_size=4, seed=3)
    again = data.BatchOrder(10, batch_size=4, seed=3)
    epoch0 = np.concatenate([one.batch(k) for k in range(one.batches_per_epoch)])
    assert sorted(epoch0.tolist()) == list(range(10))
    assert [again.batch(k).tolist() for k in (4, 1, 5)] == [one.batch(k).tolist() for k in (4, 1, 5)]
    assert not np.array_equal(np.concatenate([one.batch(k) for k in range(3, 6)]), epoch0)  # a new order per epoch
    ranks = [data.BatchOrder(10, batch_size=2, seed=3, rank=r, world=2) for r in range(2)]
    assert ranks[0].batches_per_epoch == ranks[1].batches_per_epoch == 3
    first = np.concatenate([ranks[0].batch(0), ranks[1].batch(0)])
    assert sorted(first.tolist()) == sorted(one.batch(0).tolist())  # same rows per step as one process with 2x batch


def test_stable_sample_keeps_shared_rows_when_data_grows():
    base = [f"row-{i}" for i in range(100)]
    grown = base + [f"new-{i}" for i in range(10)]
    a = {base[i] for i in data.stable_sample(base, 30, seed=1)}
    b = {grown[i] for i in data.stable_sample(grown, 33, seed=1)}
    assert len(a) == 30 and len(a & b) >= 25


def test_label_from_meta_field(store):
    version = Store(store).resolve("tickets")
    table = pa.table({"id": ["a", "b", "c"], "meta": ['{"lang": "de"}', None, '{"other": 1}']})
    assert data.label_values(table, "meta.lang") == ["de", None, None]
    with pytest.raises(data.DataError, match="no column 'category'"):
        data.needed_columns(version, "classification", "auto", "category")
