"""Tiny models built from a config in the test (no download) and dataset versions with
train/validation/test splits, published through the real pipeline into a temporary store.

The splits come from a test-only map stage (``test_assign_split``): a stable hash of the row id
picks the split, which is all the trainer needs until the pipeline's own ``split`` stage lands.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import xxhash
from pydantic import Field

from corpusmill.pipelines import run_pipeline
from corpusmill.pipelines.registry import STAGES, register_stage
from corpusmill.stage import BatchInfo, Stage, StageConfig, StageOutput
from tests.conftest import write_jsonl, write_pipeline

import importlib.util

# the trainer's tests need its extra (make test installs it); without it they are not collected
if any(importlib.util.find_spec(m) is None for m in ("torch", "transformers", "peft", "sacrebleu")):
    collect_ignore_glob = ["test_*.py"]


class AssignSplitConfig(StageConfig):
    validation: int = Field(20, description="percent of rows in validation")
    test: int = Field(20, description="percent of rows in test")


class AssignSplit(Stage):
    """Test-only: split = f(xxh64(id)) so the same row always lands in the same split."""

    kind = "test_assign_split"
    Config = AssignSplitConfig

    def process(self, batch: pa.Table, info: BatchInfo) -> StageOutput:
        bucket = np.asarray([xxhash.xxh64_intdigest(i.encode()) % 100 for i in batch.column("id").to_pylist()])
        split = np.where(bucket < self.config.validation, "validation",
                         np.where(bucket < self.config.validation + self.config.test, "test", "train"))
        return StageOutput(batch.append_column("split", pa.array(split.tolist(), pa.string())))


# ----------------------------------------------------------------------------- data

ISSUES = {
    "billing": ["I was charged twice for invoice {n} this month", "please refund the payment for order {n}",
                "my credit card was billed {n} dollars by mistake", "the invoice {n} shows the wrong amount due"],
    "account": ["I cannot log in since my password was reset {n} times", "my account is locked after {n} failed logins",
                "please change the email on my account, ticket {n}", "the password reset link expired after {n} minutes"],
    "app": ["the mobile app crashes when I open settings {n} times a day", "the screen freezes after {n} seconds in the app",
            "the app shows a blank page on android version {n}", "the app drains the battery within {n} hours"],
}
FACTS = [("What is the capital of France?", "Paris is the capital of France."),
         ("How many legs does a spider have?", "A spider has eight legs."),
         ("What colour is the sky on a clear day?", "The sky is blue on a clear day."),
         ("Which planet is closest to the sun?", "Mercury is the closest planet to the sun."),
         ("What do bees make?", "Bees make honey and wax."),
         ("How many days are in a week?", "A week has seven days."),
         ("What is frozen water called?", "Frozen water is called ice."),
         ("Which animal is known as the king of the jungle?", "The lion is called the king of the jungle.")]


def ticket_rows() -> list[dict]:
    rows = []
    for label, templates in ISSUES.items():
        for n in range(1, 31):
            rows.append({"id": f"{label}-{n}", "text": templates[n % 4].format(n=n), "label": label})
    return rows


def qa_rows() -> list[dict]:
    return [{"id": f"qa-{k}-{i}", "prompt": q if k == 0 else f"{q} Answer briefly.", "answer": a}
            for k in range(4) for i, (q, a) in enumerate(FACTS)]


def chat_rows() -> list[dict]:
    rows = []
    for i, (q, a) in enumerate(FACTS * 3):
        msgs = [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
        if i % 3 == 1:
            msgs = [{"role": "system", "content": "You answer in one sentence."}] + msgs
        if i % 3 == 2:
            msgs += [{"role": "user", "content": "Are you sure?"}, {"role": "assistant", "content": "Yes, I am sure."}]
        rows.append({"id": f"chat-{i}", "messages": msgs})
    return rows


def note_rows() -> list[dict]:
    return [{"id": f"note-{i}", "text": f"{q} {a}"} for i, (q, a) in enumerate(FACTS * 4)]


def all_texts() -> list[str]:
    texts = [r["text"] for r in ticket_rows()]
    for q, a in FACTS:
        texts += [q, a, "Answer briefly.", "You answer in one sentence.", "Are you sure?", "Yes, I am sure."]
    return texts


# ----------------------------------------------------------------------------- tiny models

CHAT_TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }} </s> {% endfor %}"
                 "{% if add_generation_prompt %}<|assistant|> {% endif %}")


def word_tokenizer(texts, *, specials, post=None, **named):
    """A word-level tokenizer trained on ``texts``, wrapped for transformers."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(texts, trainers.WordLevelTrainer(special_tokens=specials))
    if post:
        single, pairs = post
        tok.post_processor = processors.TemplateProcessing(single=single, special_tokens=[(t, tok.token_to_id(t)) for t in pairs])
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", **named)


@pytest.fixture(scope="session")
def tiny(tmp_path_factory) -> dict[str, Path]:
    """Folders of a 2-layer GPT-2, a 2-layer Llama and a 2-layer BERT, each with its tokenizer."""
    import torch
    from transformers import BertConfig, BertModel, GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    root = tmp_path_factory.mktemp("tiny-models")
    texts = all_texts()
    torch.manual_seed(0)
    out = {}

    # GPT-2 style: no pad token (pad falls back to EOS, as with the real GPT-2), no BOS added
    tok = word_tokenizer(texts, specials=["[UNK]", "<|endoftext|>"], eos_token="<|endoftext|>", bos_token="<|endoftext|>")
    cfg = GPT2Config(vocab_size=len(tok), n_positions=128, n_embd=32, n_layer=2, n_head=2,
                     bos_token_id=tok.eos_token_id, eos_token_id=tok.eos_token_id)
    out["gpt2"] = root / "gpt2"
    GPT2LMHeadModel(cfg).save_pretrained(out["gpt2"])
    tok.save_pretrained(out["gpt2"])

    # Llama style: BOS added, its own pad token, a chat template with role markers
    tok = word_tokenizer(texts, specials=["[UNK]", "[PAD]", "<s>", "</s>", "<|system|>", "<|user|>", "<|assistant|>"],
                         post=("<s> $A", ["<s>"]), bos_token="<s>", eos_token="</s>", pad_token="[PAD]")
    tok.chat_template = CHAT_TEMPLATE
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    out["llama"] = root / "llama"
    LlamaForCausalLM(cfg).save_pretrained(out["llama"])
    tok.save_pretrained(out["llama"])

    # BERT style encoder: [CLS] text [SEP]
    tok = word_tokenizer(texts, specials=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"],
                         post=("[CLS] $A [SEP]", ["[CLS]", "[SEP]"]), pad_token="[PAD]", cls_token="[CLS]",
                         sep_token="[SEP]", mask_token="[MASK]")
    cfg = BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=128, pad_token_id=tok.pad_token_id)
    out["bert"] = root / "bert"
    BertModel(cfg).save_pretrained(out["bert"])
    tok.save_pretrained(out["bert"])
    return out


@pytest.fixture(scope="session")
def store(tmp_path_factory) -> Path:
    """A store with four datasets, each split into train/validation/test:
    tickets (text + label), notes (text), qa (prompt/response), chat (messages)."""
    root = tmp_path_factory.mktemp("train-store")
    registered = "test_assign_split" in STAGES
    register_stage(AssignSplit)
    specs = {
        "tickets": (ticket_rows(), {"id_field": "id", "label_field": "label"}),
        "notes": (note_rows(), {"id_field": "id"}),
        "qa": (qa_rows(), {"id_field": "id", "prompt_field": "prompt", "response_field": "answer"}),
        "chat": (chat_rows(), {"id_field": "id", "messages_field": "messages"}),
    }
    try:
        for name, (rows, mapping) in specs.items():
            write_jsonl(root / "raw" / f"{name}.jsonl", rows)
            p = write_pipeline(root / f"{name}.yaml", {
                "dataset": name, "inputs": [{"path": f"raw/{name}.jsonl", **mapping}],
                "steps": [{"test_assign_split": {"validation": 20, "test": 20}}]})
            run_pipeline(p, store=root / "store", workers=1)
    finally:
        if not registered:
            STAGES.pop("test_assign_split", None)
    return root / "store"


@pytest.fixture
def train_config(store):
    """TrainConfig with quick defaults for a tiny model; keyword arguments override."""
    from corpusmill.train.config import TrainConfig

    def make(**kw):
        base = {"store": str(store), "max_steps": 4, "batch_size": 4, "lr": 5e-3, "max_seq_len": 64,
                "log_every": 100, "warmup_ratio": 0.0}
        return TrainConfig(**{**base, **kw})

    return make
