"""TRL's ``SFTTrainer`` on ``datasets export --format trl``: it accepts both shapes, trains on the
completion / assistant turns only (token for token the masks ``corpusmill train`` builds), and
runs a step on a tiny model built from a config. Then the trainer's own messages: the
assistant-turn choice and the console warnings about truncation."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest

from corpusmill.datasets import export
from corpusmill.store import Store
from corpusmill.train import data
from corpusmill.train.data import IGNORE
from corpusmill.train.modeling import load_tokenizer

#: the conftest's chat template with TRL's {% generation %} markers around each assistant turn and
#: its end-of-turn token (TRL's assistant_only_loss reads them; they do not change the rendering)
GENERATION_TEMPLATE = ("{% for m in messages %}{% if m['role'] == 'assistant' %}<|assistant|> {% generation %}"
                       "{{ m['content'] }} </s>{% endgeneration %} {% else %}<|{{ m['role'] }}|> {{ m['content'] }} </s> "
                       "{% endif %}{% endfor %}{% if add_generation_prompt %}<|assistant|> {% endif %}")


def _sft_trainer(tiny, tmp_path, dataset, tokenizer, **config):
    trl = pytest.importorskip("trl", reason="TRL comes with the dev extra: pip install -e '.[dev]'")
    from transformers import AutoModelForCausalLM

    args = trl.SFTConfig(output_dir=str(tmp_path / "trl-run"), max_steps=1, per_device_train_batch_size=4,
                         learning_rate=1e-3, max_length=64, report_to=[], use_cpu=True, save_strategy="no",
                         logging_strategy="no", disable_tqdm=True, dataset_num_proc=None, seed=0, **config)
    model = AutoModelForCausalLM.from_pretrained(tiny["llama"])
    return trl.SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer)


def _load(folder, split="train"):
    datasets = pytest.importorskip("datasets")
    return datasets.load_dataset("json", data_files=str(folder / f"{split}.jsonl"), split="train")


def test_sft_trainer_takes_the_prompt_completion_export_and_learns_only_the_completion(tiny, store, tmp_path):
    version = Store(store).resolve("qa")
    template = "Question: {prompt}\nAnswer:"
    result = export(version, "trl", tmp_path / "qa", columns=["id"], prompt_template=template)
    assert result.shape == "prompt_completion"
    dataset = _load(tmp_path / "qa")
    assert dataset.column_names == ["prompt", "completion", "id"]
    tok = load_tokenizer(str(tiny["llama"]))
    trainer = _sft_trainer(tiny, tmp_path, dataset, tok)
    prepared = trainer.train_dataset

    # corpusmill's own examples of the same rows with the same template: identical tokens and masks
    ours = data.prompt_response_examples(tok, data.read_rows(version, "train", ["system", "prompt", "response"], 0, 0),
                                         template, max_len=64)
    assert ours.ids == dataset["id"] and len(prepared) == len(ours)
    for k in range(len(prepared)):
        ids, labels = prepared[k]["input_ids"], prepared[k]["labels"]
        assert ids == ours.input_ids[k].tolist() and labels == ours.labels[k].tolist()
        prompt_len = len(tok(dataset[k]["prompt"])["input_ids"])
        assert set(labels[:prompt_len]) == {IGNORE} and IGNORE not in labels[prompt_len:]  # the prompt is context
        assert labels[-1] == tok.eos_token_id

    out = trainer.train()
    assert out.global_step == 1 and np.isfinite(out.training_loss)


def test_sft_trainer_takes_the_messages_export_and_learns_only_assistant_turns(tiny, store, tmp_path):
    version = Store(store).resolve("chat")
    export(version, "trl", tmp_path / "chat")
    dataset = _load(tmp_path / "chat")
    assert dataset.column_names == ["messages"]
    assert any(m[0]["role"] == "system" for m in dataset["messages"]) and any(len(m) == 4 for m in dataset["messages"])
    tok = load_tokenizer(str(tiny["llama"]))
    tok.chat_template = GENERATION_TEMPLATE
    trainer = _sft_trainer(tiny, tmp_path, dataset, tok, assistant_only_loss=True)
    prepared = trainer.train_dataset

    ours = data.messages_examples(tok, data.read_rows(version, "train", ["messages"], 0, 0), max_len=64)
    assert len(prepared) == len(ours)
    assistant = tok.convert_tokens_to_ids("<|assistant|>")
    for k in range(len(prepared)):
        ids, labels = prepared[k]["input_ids"], prepared[k]["labels"]
        assert ids == ours.input_ids[k].tolist() and labels == ours.labels[k].tolist()
        # every target token follows an assistant header; user and system turns are context
        starts = [i + 1 for i, t in enumerate(ids) if t == assistant]
        assert all(labels[i] == IGNORE for i in range(starts[0]))
        assert labels[-1] == tok.eos_token_id

    out = trainer.train()
    assert out.global_step == 1 and np.isfinite(out.training_loss)


# ----------------------------------------------------------------------------- corpusmill train's messages


def test_assistant_turns_last_learns_only_the_final_answer(tiny):
    tok = load_tokenizer(str(tiny["llama"]))
    msgs = [{"role": "user", "content": "What is frozen water called?"},
            {"role": "assistant", "content": "Frozen water is called ice."},
            {"role": "user", "content": "Are you sure?"},
            {"role": "assistant", "content": "Yes, I am sure."}]
    table = pa.table({"id": ["c"], "messages": [msgs]})
    every = data.messages_examples(tok, table, max_len=128)
    last = data.messages_examples(tok, table, max_len=128, assistant_turns="last")
    assert every.input_ids[0].tolist() == last.input_ids[0].tolist()  # same tokens, other targets
    words = lambda ex: tok.convert_ids_to_tokens([t for t in ex.labels[0].tolist() if t != IGNORE])  # noqa: E731
    assert words(every) == "Frozen water is called ice . </s> Yes , I am sure . </s>".split()
    assert words(last) == "Yes , I am sure . </s>".split()


def test_assistant_turns_is_a_train_option_and_flag():
    from corpusmill.cli import build_parser
    from corpusmill.errors import ConfigError
    from corpusmill.train.config import build_config, overrides_from_args

    args = build_parser("train").parse_args(["train", "--dataset", "chat", "--model", "m", "--task", "causal-lm",
                                             "--assistant-turns", "last", "--prompt-template", r"Q: {prompt}\nA:"])
    cfg = build_config(None, overrides_from_args(args))
    assert cfg.assistant_turns == "last" and cfg.prompt_template == "Q: {prompt}\nA:"
    with pytest.raises(ConfigError, match="assistant_turns"):
        build_config(None, {"dataset": "chat", "model": "m", "task": "causal-lm", "assistant_turns": "first"})


def test_truncation_and_rows_without_target_are_warned_on_the_console(tiny, store, train_config, tmp_path, capsys):
    from corpusmill.train.run import train

    cfg = train_config(dataset="chat", model=str(tiny["llama"]), task="causal-lm", max_seq_len=12, max_steps=1,
                       eval_split="", output=str(tmp_path / "run"))
    record = train(cfg)
    err = capsys.readouterr().err
    acc = record["data_accounting"]["train"]
    assert acc["truncated"] > 0 and acc["no_target_tokens"] > 0
    assert (f"warning: train: {acc['no_target_tokens']} of {acc['rows_read']} rows have no target token left after "
            "the cut at max_seq_len 12") in err
    assert f"warning: train: {acc['truncated']} of {acc['rows_read']} rows are longer than max_seq_len 12" in err
    assert json.loads((tmp_path / "run" / "run.json").read_text())["data_warnings"] == record["data_warnings"]
    assert len(record["data_warnings"]) == 2
