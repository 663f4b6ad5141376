"""Models: load a base (local folder or hub id), make the chosen weights trainable, save and load
what training produced in the standard formats.

* LoRA: a PEFT adapter folder (``adapter_config.json`` + ``adapter_model.safetensors``), loadable
  with ``PeftModel.from_pretrained(base, folder)``; the classification head trains in full
  alongside (peft's ``modules_to_save``) and is saved in the same folder.
* full and head: a Hugging Face model folder with safetensors weights.

The model folder always carries the tokenizer too, so a run folder is self-contained apart from
the base weights an adapter refers to (run.json names them).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from corpusmill.errors import CorpusmillError

# Attention (and output) projections per architecture: where adapters pay off most per parameter.
LORA_TARGETS = {
    "llama": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "mistral": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "mixtral": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "qwen2": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "qwen3": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "gemma": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "gemma2": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "phi3": ["qkv_proj", "o_proj"],
    "gpt2": ["c_attn", "c_proj"],
    "gpt_neox": ["query_key_value", "dense"],
    "gpt_bigcode": ["c_attn", "c_proj"],
    "opt": ["q_proj", "k_proj", "v_proj", "out_proj"],
    "bert": ["query", "key", "value"],
    "roberta": ["query", "key", "value"],
    "xlm-roberta": ["query", "key", "value"],
    "distilbert": ["q_lin", "k_lin", "v_lin"],
    "deberta-v2": ["query_proj", "key_proj", "value_proj"],
}


class ModelError(CorpusmillError):
    """A model that cannot be loaded or adapted as asked."""


def lora_targets(model_type: str, configured: list[str] | None) -> list[str]:
    if configured:
        return list(configured)
    if model_type in LORA_TARGETS:
        return LORA_TARGETS[model_type]
    from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as PEFT_DEFAULTS

    if model_type in PEFT_DEFAULTS:
        return list(PEFT_DEFAULTS[model_type])
    raise ModelError(f"no default LoRA target modules for architecture '{model_type}'; set lora.target_modules "
                     "(--lora-target-modules q_proj,v_proj) to the names of its attention projections")


def load_tokenizer(path: str, trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as err:
        raise ModelError(f"cannot load a tokenizer from '{path}': {err}") from None
    if tok.pad_token_id is None:
        # padding is masked out of attention and the loss by position, never by token id
        tok.pad_token = tok.eos_token
    return tok


def load_base(path: str, task: str, *, labels: list[str] | None = None, trust_remote_code: bool = False,
              dtype: torch.dtype | None = None):
    """The pre-trained model for ``task`` (a fresh, seeded head for classification)."""
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    kw = {"trust_remote_code": trust_remote_code}
    if dtype is not None:
        kw["dtype"] = dtype
    try:
        if task == "classification":
            model = AutoModelForSequenceClassification.from_pretrained(
                path, num_labels=len(labels), id2label=dict(enumerate(labels)),
                label2id={name: i for i, name in enumerate(labels)}, **kw)
        else:
            model = AutoModelForCausalLM.from_pretrained(path, **kw)
    except (OSError, ValueError) as err:
        raise ModelError(f"cannot load model '{path}' for {task}: {err}") from None
    return model


def head_modules(model) -> list[str]:
    """Names of the classification head's top-level modules (what ``method: head`` trains)."""
    names = [n for n in ("classifier", "score") if hasattr(model, n)]
    if not names:
        raise ModelError(f"{type(model).__name__} has no 'classifier' or 'score' head")
    return names


def prepare(model, cfg) -> torch.nn.Module:
    """Make the weights ``cfg.method`` trains trainable; wrap in LoRA adapters when asked."""
    if cfg.method == "lora":
        from peft import LoraConfig, get_peft_model

        lc = LoraConfig(
            task_type="SEQ_CLS" if cfg.task == "classification" else "CAUSAL_LM",
            r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout,
            target_modules=lora_targets(model.config.model_type, cfg.lora.target_modules),
            fan_in_fan_out=model.config.model_type == "gpt2",  # GPT-2 stores its projections as Conv1D (in x out)
        )
        try:
            model = get_peft_model(model, lc)
        except ValueError as err:
            raise ModelError(f"LoRA could not be applied: {err}") from None
    elif cfg.method == "head":
        heads = head_modules(model)
        for name, p in model.named_parameters():
            p.requires_grad_(name.split(".", 1)[0] in heads)
    else:
        for p in model.parameters():
            p.requires_grad_(True)
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
    return model


def load_adapter_weights(model, adapter_dir: Path) -> None:
    """Start a LoRA model from a previous run's adapter (and classification head): every saved
    weight must land on a trainable parameter, or the run would silently start from scratch."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    path = Path(adapter_dir) / "adapter_model.safetensors"
    if not path.is_file():
        raise ModelError(f"{adapter_dir} holds no adapter_model.safetensors; --from-run needs a lora run's model/ folder")
    before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    result = set_peft_model_state_dict(model, load_file(str(path)))
    unexpected = list(getattr(result, "unexpected_keys", []) or [])
    if unexpected:
        raise ModelError(f"the adapter in {adapter_dir} does not fit this model: unexpected {unexpected[:5]}")
    changed = sum(not torch.equal(before[n], p) for n, p in model.named_parameters() if n in before)
    if not changed:
        raise ModelError(f"loading the adapter of {adapter_dir} changed no trainable weight")


def count_parameters(model) -> tuple[int, int]:
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return total, trainable


def trainable_state(model) -> dict[str, torch.Tensor]:
    """The weights training changes (adapters + head, or everything): what a checkpoint stores."""
    return {n: p.detach().cpu().clone() for n, p in model.named_parameters() if p.requires_grad}


def load_trainable_state(model, state: dict[str, torch.Tensor]) -> None:
    params = dict(model.named_parameters())
    wanted = {n for n, p in params.items() if p.requires_grad}
    if set(state) != wanted:
        missing, extra = sorted(wanted - set(state)), sorted(set(state) - wanted)
        raise ModelError(f"checkpoint does not fit the model: missing {missing[:5]}, unexpected {extra[:5]}")
    with torch.no_grad():
        for n, t in state.items():
            params[n].copy_(t)


def save_model(model, tokenizer, out: Path, method: str) -> None:
    """Adapter folder (lora) or full model folder (full, head), safetensors, with the tokenizer."""
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    (out / "corpusmill.json").write_text(json.dumps({"method": method}) + "\n")


def save_merged(model, tokenizer, out: Path) -> None:
    """The adapter folded into a copy of the base weights: a plain model folder, no peft needed."""
    import copy

    merged = copy.deepcopy(model).merge_and_unload()
    merged.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)


def load_trained(run: dict, model_dir: Path, *, dtype=None):
    """The fine-tuned model of a run folder, through the standard loaders:
    ``PeftModel.from_pretrained(base, adapter)`` or ``from_pretrained(model_dir)``."""
    cfg = run["config"]
    method = json.loads((model_dir / "corpusmill.json").read_text())["method"] if (model_dir / "corpusmill.json").is_file() else cfg["method"]
    labels = run.get("labels")
    trust = cfg.get("trust_remote_code", False)
    if method == "lora":
        from peft import PeftModel

        base = load_base(run["model"]["base"], cfg["task"], labels=labels, trust_remote_code=trust, dtype=dtype)
        return PeftModel.from_pretrained(base, str(model_dir))
    return load_base(str(model_dir), cfg["task"], labels=labels, trust_remote_code=trust, dtype=dtype)


def check_packing(model, device) -> None:
    """Packed rows must score each example as if it were alone. Models that ignore the restart
    of position ids would let attention cross examples silently, so this is checked before
    training with two short sequences: packed logits must equal the separate ones."""
    was_training = model.training
    model.eval()
    vocab = model.get_input_embeddings().num_embeddings
    g = torch.Generator().manual_seed(0)
    a = torch.randint(3, vocab, (1, 5), generator=g).to(device)
    b = torch.randint(3, vocab, (1, 4), generator=g).to(device)
    with torch.no_grad():
        sep = torch.cat([model(input_ids=a).logits, model(input_ids=b).logits], dim=1)
        pos = torch.tensor([[0, 1, 2, 3, 4, 0, 1, 2, 3]], device=device)
        packed = model(input_ids=torch.cat([a, b], dim=1), position_ids=pos, use_cache=False).logits
    model.train(was_training)
    if not torch.allclose(sep.float(), packed.float(), atol=1e-4, rtol=1e-3):
        raise ModelError(f"packing: {type(model).__name__} lets attention cross example boundaries when "
                         "position ids restart (needs transformers with packed-sequence masks, >= 4.54); "
                         "set packing: false")
