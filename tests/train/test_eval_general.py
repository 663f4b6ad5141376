"""eval --general: perplexity of base and fine-tuned on a general-domain text (the forgetting
check), checked against transformers' own loss on the same windows."""

from __future__ import annotations

import json
import math

import pytest

from corpusmill.cli import main
from corpusmill.evaluate.compare import EvalError, evaluate_run
from corpusmill.train.run import train
from tests.train.conftest import ticket_rows


def _general_file(tmp_path):
    # ticket texts: a domain the notes run never sees, in words the tiny tokenizer knows
    texts = [r["text"] for r in ticket_rows()[::9]]
    paragraphs = [" ".join(texts[i : i + 2]) for i in range(0, len(texts), 2)]
    paragraphs.append(" ".join(texts * 3))  # longer than max_seq_len: scored in windows
    path = tmp_path / "general.txt"
    path.write_text("\n\n".join(p.replace(" ", "\n", 3) for p in paragraphs) + "\n")  # line breaks inside paragraphs
    return path, paragraphs


def test_general_perplexity_for_base_and_fine_tuned(tiny, train_config, tmp_path, capsys):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    run = tmp_path / "run"
    train(train_config(dataset="notes", model=str(tiny["gpt2"]), task="causal-lm", output=str(run), method="full",
                       max_steps=6, lr=1e-2, max_seq_len=32))
    general, paragraphs = _general_file(tmp_path)
    report_path = tmp_path / "eval.json"
    assert main(["eval", str(run), "--report", str(report_path), "--general", str(general), "--bootstrap", "200"]) == 0
    table = capsys.readouterr().out
    g = json.loads(report_path.read_text())["general"]
    tok = AutoTokenizer.from_pretrained(tiny["gpt2"])
    lengths = [len(tok(p)["input_ids"]) for p in paragraphs]
    assert g["paragraphs"] == len(paragraphs) and max(lengths) > 32
    assert g["windows"] == sum(math.ceil(n / 32) for n in lengths)
    assert g["tokens_scored"] == sum(n - math.ceil(n / 32) for n in lengths)  # each window's first token is context
    # the same number from transformers' loss on the same windows, token-weighted
    for name, folder in (("base", tiny["gpt2"]), ("fine_tuned", run / "model")):
        model = AutoModelForCausalLM.from_pretrained(folder).eval()
        nll = 0.0
        with torch.no_grad():
            for p in paragraphs:
                ids = tok(p, return_tensors="pt")["input_ids"]
                for start in range(0, ids.shape[1], 32):
                    w = ids[:, start : start + 32]
                    nll += float(model(w, labels=w).loss) * (w.shape[1] - 1)
        assert g["models"][name]["perplexity"] == pytest.approx(math.exp(nll / g["tokens_scored"]), rel=1e-4)
        lo, hi = g["models"][name]["perplexity_ci"]
        assert lo <= g["models"][name]["perplexity"] <= hi
    assert g["models"]["fine_tuned"]["perplexity"] != pytest.approx(g["models"]["base"]["perplexity"])
    assert g["perplexity_ratio"] == pytest.approx(g["models"]["fine_tuned"]["perplexity"] / g["models"]["base"]["perplexity"])
    diff = g["comparison"]["fine_tuned_vs_base"]["perplexity"]
    assert diff["difference"] == pytest.approx(g["models"]["fine_tuned"]["perplexity"] - g["models"]["base"]["perplexity"])
    assert "General-domain perplexity" in table and f"{g['models']['base']['perplexity']:.3f}" in table


def test_general_needs_a_causal_run_and_a_readable_file(tiny, train_config, tmp_path):
    run = tmp_path / "cls"
    train(train_config(dataset="tickets", model=str(tiny["bert"]), task="classification", output=str(run), max_steps=1))
    general, _ = _general_file(tmp_path)
    with pytest.raises(EvalError, match="--general measures language-model perplexity"):
        evaluate_run(run, report=tmp_path / "r.json", general=general)
    bad = tmp_path / "general.jsonl"
    bad.write_text('{"text": "fine"}\n{"body": "no text field"}\n')
    from corpusmill.evaluate.forgetting import read_general_text

    with pytest.raises(Exception, match="general.jsonl:2: not a JSON object with a 'text' field"):
        read_general_text(bad)
