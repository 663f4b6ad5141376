"""The training loop on tiny models built in the test: every task and input format, run.json,
exact resume, token-weighted accumulation, early stopping, and the all-masked-batch error."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

from corpusmill.train.loop import TrainError
from corpusmill.train.run import train


def _run_json(out):
    return json.loads((out / "run.json").read_text())


def test_gpt2_text_lora_run_folder(tiny, train_config, tmp_path, store):
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    out = tmp_path / "run"
    record = train(train_config(dataset="notes", model=str(tiny["gpt2"]), task="causal-lm", output=str(out)))
    run = _run_json(out)
    assert run == json.loads(json.dumps(record, default=str))
    assert run["status"] == "completed" and run["steps"] == 4 and len(run["train_loss"]) == 4
    from corpusmill.store import Store

    version = Store(store).resolve("notes")
    assert run["dataset"]["reference"] == version.ref and run["dataset"]["version"] == version.id
    assert run["dataset"]["requested"] == "notes"
    assert run["format_of_examples"] == "text" and run["seed"] == 0
    assert run["code_version"]["corpusmill"] and run["libraries"]["torch"] == torch.__version__
    assert run["hardware"]["device"] == "cpu" and run["hardware"]["world_size"] == 1
    assert run["summary"]["tokens_per_second"] > 0 and run["summary"]["peak_memory_mb"] > 0
    assert run["evals"][-1]["step"] == 4 and run["evals"][-1]["val_loss"] > 0
    assert run["model"]["trainable_parameters"] < run["model"]["parameters"]
    assert yaml.safe_load((out / "hyperparameters.yaml").read_text()) == run["config"]
    # a standard PEFT adapter in safetensors, loadable with PeftModel.from_pretrained
    assert (out / "model" / "adapter_config.json").is_file()
    weights = load_file(out / "model" / "adapter_model.safetensors")
    assert any("lora_B" in k and v.abs().sum() > 0 for k, v in weights.items())  # training moved the adapter
    tuned = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(str(tiny["gpt2"])), str(out / "model"))
    assert sum("lora_" in n for n, _ in tuned.named_parameters()) > 0
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-000004"]


def test_llama_prompt_response_full_finetune_with_packing_and_merge(tiny, train_config, tmp_path):
    out = tmp_path / "run"
    train(train_config(dataset="qa", model=str(tiny["llama"]), task="causal-lm", output=str(out), packing=True,
                       max_seq_len=48, method="full"))
    run = _run_json(out)
    assert run["format_of_examples"] == "prompt_response"
    acc = run["data_accounting"]["train"]
    assert acc["packed_rows"] < acc["examples"] == acc["rows_read"]
    assert (out / "model" / "model.safetensors").is_file() and not (out / "model" / "adapter_config.json").exists()
    assert run["model"]["trainable_parameters"] == run["model"]["parameters"]
    out2 = tmp_path / "lora-merged"
    train(train_config(dataset="qa", model=str(tiny["llama"]), task="causal-lm", output=str(out2), merge=True))
    from transformers import AutoModelForCausalLM

    merged = AutoModelForCausalLM.from_pretrained(str(out2 / "merged"))
    assert not any("lora" in n for n, _ in merged.named_parameters())
    assert _run_json(out2)["outputs"]["merged"] == "merged"


def test_llama_chat_messages_with_accumulation_and_checkpointing(tiny, train_config, tmp_path):
    out = tmp_path / "run"
    train(train_config(dataset="chat", model=str(tiny["llama"]), task="causal-lm", output=str(out), grad_accum=2,
                       gradient_checkpointing=True, batch_size=2))
    run = _run_json(out)
    assert run["format_of_examples"] == "messages" and run["steps"] == 4
    assert all(torch.isfinite(torch.tensor(run["train_loss"])))


def test_bert_classification_labels_from_the_data(tiny, train_config, tmp_path):
    out = tmp_path / "run"
    train(train_config(dataset="tickets", model=str(tiny["bert"]), task="classification", output=str(out),
                       max_steps=6, eval_every=3))
    run = _run_json(out)
    assert run["labels"] == ["account", "app", "billing"]
    assert [e["step"] for e in run["evals"]] == [3, 6]
    assert {"val_loss", "val_accuracy", "val_macro_f1"} <= set(run["evals"][0])
    cfg = json.loads((out / "model" / "adapter_config.json").read_text())
    assert "classifier" in cfg["modules_to_save"] and cfg["target_modules"]
    assert run["outputs"]["model_step"] == run["best"]["step"]


def test_resume_repeats_the_uninterrupted_loss_curve(tiny, train_config, tmp_path):
    # dropout on (GPT-2's 0.1 and LoRA's 0.05): the RNG state has to be restored too
    common = dict(dataset="notes", model=str(tiny["gpt2"]), task="causal-lm", max_steps=6, batch_size=3,
                  save_every=3, keep_checkpoints=0, eval_every=3, warmup_ratio=0.3)
    full = tmp_path / "full"
    train(train_config(output=str(full), **common))
    ckpt = full / "checkpoints" / "step-000003"
    assert (ckpt / "state.json").is_file()
    resumed = tmp_path / "resumed"
    train(train_config(output=str(resumed), resume=str(ckpt), **common))
    a, b = _run_json(full), _run_json(resumed)
    assert b["resumed_from"] == str(ckpt)
    assert len(a["train_loss"]) == len(b["train_loss"]) == 6
    assert b["train_loss"] == pytest.approx(a["train_loss"], abs=1e-6, rel=0)
    assert [e["val_loss"] for e in b["evals"]] == pytest.approx([e["val_loss"] for e in a["evals"]], abs=1e-6, rel=0)


def test_resume_refuses_other_settings(tiny, train_config, tmp_path):
    from corpusmill.train.checkpoint import CheckpointError

    out = tmp_path / "run"
    train(train_config(dataset="notes", model=str(tiny["gpt2"]), task="causal-lm", output=str(out), max_steps=2))
    with pytest.raises(CheckpointError, match="lr: 0.005 -> 0.1"):
        train(train_config(dataset="notes", model=str(tiny["gpt2"]), task="causal-lm", output=str(tmp_path / "o"),
                           max_steps=2, lr=0.1, resume=str(out / "checkpoints" / "step-000002")))


def test_accumulation_weights_micro_batches_by_target_tokens(tiny, store):
    """Gradients of 4 rows of different lengths in one batch == in 2 micro-batches of 2. A mean of
    per-micro-batch means (the common mistake) gives a different gradient, which the test also checks."""
    from transformers import AutoModelForCausalLM

    from corpusmill.store import Store
    from corpusmill.train.data import collate, prompt_response_examples, read_rows
    from corpusmill.train.loop import accumulate_gradients
    from corpusmill.train.modeling import load_tokenizer

    tok = load_tokenizer(str(tiny["llama"]))
    table = read_rows(Store(store).resolve("qa"), "train", ["prompt", "response"], 4, seed=0)
    ex = prompt_response_examples(tok, table, "{prompt}\n", 64)
    model = AutoModelForCausalLM.from_pretrained(str(tiny["llama"]))  # dropout 0: deterministic
    pad = tok.pad_token_id

    def grads(micro, n_targets):
        model.zero_grad()
        accumulate_gradients(model, micro, n_targets, True, torch.device("cpu"), None)
        return [p.grad.clone() for p in model.parameters()]

    whole = collate(ex, [0, 1, 2, 3], pad, True)
    halves = [collate(ex, [0, 1], pad, True), collate(ex, [2, 3], pad, True)]
    assert halves[0].n_targets != halves[1].n_targets
    one = grads([whole], whole.n_targets)
    two = grads(halves, sum(b.n_targets for b in halves))
    for a, b in zip(one, two):
        torch.testing.assert_close(a, b, atol=1e-7, rtol=1e-5)
    naive = [(g0 + g1) / 2 for g0, g1 in zip(grads(halves[:1], halves[0].n_targets), grads(halves[1:], halves[1].n_targets))]
    assert max(float((a - b).abs().max()) for a, b in zip(one, naive)) > 1e-4


def test_early_stopping_keeps_the_best_weights(tiny, train_config, tmp_path):
    out = tmp_path / "run"
    # a learning rate far too high: validation loss gets worse after the first evaluation
    train(train_config(dataset="tickets", model=str(tiny["bert"]), task="classification", output=str(out),
                       method="full", lr=3.0, max_steps=12, eval_every=1, early_stopping_patience=2))
    run = _run_json(out)
    losses = [e["val_loss"] for e in run["evals"]]
    assert run["stopped_early"] and run["steps"] < 12
    assert run["best"]["value"] == min(losses) and run["outputs"]["model_step"] == run["best"]["step"]
    assert all(v > run["best"]["value"] for v in losses[-2:])


def test_every_label_masked_is_a_clear_error(tiny, train_config, tmp_path):
    # prompts longer than max_seq_len: nothing of any response survives truncation
    with pytest.raises(TrainError, match="every label of a batch is masked .* raise max_seq_len"):
        train(train_config(dataset="qa", model=str(tiny["llama"]), task="causal-lm", output=str(tmp_path / "r"),
                           max_seq_len=8))


def test_finished_run_folder_is_not_overwritten(tiny, train_config, tmp_path):
    from corpusmill.errors import CorpusmillError

    out = tmp_path / "run"
    cfg = train_config(dataset="notes", model=str(tiny["gpt2"]), task="causal-lm", output=str(out), max_steps=1)
    train(cfg)
    with pytest.raises(CorpusmillError, match="already holds a run"):
        train(cfg)


def test_head_lr_scales_only_the_new_head(tiny, train_config):
    from corpusmill.train.loop import make_optimizer
    from corpusmill.train.modeling import load_base, prepare

    cfg = train_config(dataset="tickets", model=str(tiny["bert"]), task="classification", lr=1e-3, head_lr=3e-2)
    model = prepare(load_base(cfg.model, cfg.task, labels=["a", "b"]), cfg)
    opt = make_optimizer(model, cfg, torch.device("cpu"))
    names = {id(p): n for n, p in model.named_parameters()}
    for group in opt.param_groups:
        in_head = {"classifier" in names[id(p)] for p in group["params"]}
        assert len(in_head) == 1  # a group is all head or all adapters
        assert group["lr_scale"] == pytest.approx(30.0 if in_head.pop() else 1.0)
    trained = {names[id(p)] for g in opt.param_groups for p in g["params"]}
    assert any("lora_A" in n for n in trained) and any("classifier" in n for n in trained)
