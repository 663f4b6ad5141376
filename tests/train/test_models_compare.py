"""``corpusmill models compare`` on tiny models built from configs (no download): two BERT-like
encoders of different sizes (the larger with an apache-2.0 model card, the smaller with a
non-commercial one), a tiny Llama for perplexity; the store's tickets (labels) and notes (text)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from corpusmill.cli import main
from corpusmill.evaluate.models import detect_licence
from tests.train.conftest import all_texts, word_tokenizer


def _bert(folder: Path, hidden: int, layers: int, card: str | None) -> Path:
    import torch
    from transformers import BertConfig, BertModel

    tok = word_tokenizer(all_texts(), specials=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"],
                         post=("[CLS] $A [SEP]", ["[CLS]", "[SEP]"]), pad_token="[PAD]", cls_token="[CLS]",
                         sep_token="[SEP]", mask_token="[MASK]")
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=len(tok), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2,
                     intermediate_size=2 * hidden, max_position_embeddings=12, pad_token_id=tok.pad_token_id)
    BertModel(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)
    if card:
        (folder / "README.md").write_text(card)
    return folder


@pytest.fixture(scope="module")
def encoders(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("encoders")
    return {"big": _bert(root / "bert-big", 64, 2, "---\nlicense: apache-2.0\nlanguage: en\n---\n# big\n"),
            "small": _bert(root / "bert-small", 16, 1, "---\nlicense: cc-by-nc-4.0\n---\n# small\n")}


def _compare(store, tmp_path, *models, extra=()) -> tuple[int, dict | None]:
    out = tmp_path / "cmp.json"
    argv = ["models", "compare", "--store", str(store), "--report", str(out), "--bootstrap", "200", *extra]
    for m in models:
        argv += ["--model", str(m)]
    rc = main(argv)
    return rc, json.loads(out.read_text()) if out.exists() else None


def test_encoders_ranked_by_probe_with_licences(store, encoders, tmp_path, capsys):
    rc, report = _compare(store, tmp_path, encoders["small"], encoders["big"], extra=["--dataset", "tickets@latest"])
    assert rc == 0
    out = capsys.readouterr()
    assert report["task"] == "classification" and report["split"] == "validation"
    assert report["labels"] == ["account", "app", "billing"]
    by = {c["name"]: c for c in report["candidates"]}
    big, small = by["bert-big"], by["bert-small"]
    # shape from the config, parameters counted on the weights
    assert (big["layers"], big["hidden_size"], big["heads"], big["context_length"]) == (2, 64, 2, 12)
    assert (small["layers"], small["hidden_size"]) == (1, 16)
    assert big["parameters"] > small["parameters"] > 0
    # the tokenizer was trained on these texts: no unknown tokens; 12 positions cut the longer tickets
    for c in (big, small):
        fit = c["tokenizer_fit"]
        assert fit["unknown_token_rate"] == 0.0
        assert 0.9 < fit["tokens_per_word"] < 1.3
        assert 0 < fit["truncated_share"] < 1 and fit["max_length"] == 12
    # the probe: three separable ticket topics, well above the 1/3 of a guess, with intervals around it
    for c in (big, small):
        q = c["quality"]
        assert q["rows"] > 10 and q["probe_train_rows"] > 40
        assert q["macro_f1"] > 0.5 and q["accuracy"] > 0.5
        lo, hi = q["macro_f1_ci"]
        assert lo <= q["macro_f1"] <= hi
        assert c["speed"]["rows_per_second"] > 0 and c["speed"]["latency_ms_per_row"] > 0
    # ranking: the task's metric first, then speed
    ranked = report["candidates"]
    assert [c["rank"] for c in ranked] == [1, 2]
    f1 = [float(f"{c['quality']['macro_f1']:.3g}") for c in ranked]
    assert f1[0] > f1[1] or (f1[0] == f1[1] and ranked[0]["speed"]["rows_per_second"] >=
                             ranked[1]["speed"]["rows_per_second"])
    # licences from the model cards, the non-commercial one warned
    assert big["licence"] == {"licence": "apache-2.0", "source": "model card (README.md)", "warning": None}
    assert small["licence"]["licence"] == "cc-by-nc-4.0" and "non-commercial" in small["licence"]["warning"]
    assert any(w.startswith("bert-small: licence cc-by-nc-4.0") for w in report["warnings"])
    rec = report["recommendation"]
    assert rec["name"] == ranked[0]["name"] and "probe macro-F1" in rec["text"]
    # what the user sees: the table on stdout, the recommendation and the warning
    assert "bert-big" in out.out and "bert-small" in out.out and "recommended:" in out.out
    assert "warning: bert-small: licence cc-by-nc-4.0" in out.out
    html = (tmp_path / "cmp.html").read_text()
    assert "<script" not in html and "Recommendation" in html and "cc-by-nc-4.0" in html and "<svg" in html


def test_llama_perplexity(store, tiny, tmp_path):
    rc, report = _compare(store, tmp_path, tiny["llama"], extra=["--dataset", "notes@latest", "--split", "test"])
    assert rc == 0
    assert report["task"] == "causal-lm"
    c = report["candidates"][0]
    q = c["quality"]
    vocab = 60  # a random-weight model predicts about uniformly over its small word vocabulary
    assert math.isclose(q["perplexity"], math.exp(q["loss"]), rel_tol=1e-6)
    assert 5 < q["perplexity"] < 3 * vocab and q["perplexity_ci"][0] <= q["perplexity"] <= q["perplexity_ci"][1]
    assert q["target_tokens"] > q["rows"] > 0 and q["format"] == "text"
    assert c["architecture"] == "LlamaForCausalLM" and c["kv_heads"] == 2
    assert c["licence"]["licence"] is None and "no licence found" in c["licence"]["warning"]
    assert "perplexity" in report["recommendation"]["text"]


def test_licence_sources(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "LICENSE").write_text("                                 Apache License\n"
                                            "                           Version 2.0, January 2004\n")
    assert detect_licence(tmp_path / "a") == {"licence": "apache-2.0", "source": "LICENSE", "warning": None}
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "README.md").write_text("---\nlicense: other\nlicense_name: llama3\n---\n")
    got = detect_licence(tmp_path / "b")
    assert got["licence"] == "other (llama3)" and "restricts use" in got["warning"]
    (tmp_path / "c").mkdir()
    got = detect_licence(tmp_path / "c", {"license": "MIT"})
    assert got == {"licence": "mit", "source": "config.json", "warning": None}
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "LICENSE").write_text("LLAMA 2 COMMUNITY LICENSE AGREEMENT\n")
    assert detect_licence(tmp_path / "d")["warning"]


def test_bad_inputs_exit_2(store, encoders, tmp_path, capsys):
    rc, _ = _compare(store, tmp_path, encoders["big"], tmp_path / "no-such-model", extra=["--dataset", "tickets@latest"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "no-such-model' does not exist" in err and "Traceback" not in err
    rc, _ = _compare(store, tmp_path, encoders["big"], extra=["--dataset", "notes@latest", "--task", "classification"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "has no column 'label' for classification" in err and "--task causal-lm" in err
    rc, _ = _compare(store, tmp_path, encoders["big"], extra=["--dataset", "tickets@latest", "--split", "dev"])
    assert rc == 2 and "no split 'dev'" in capsys.readouterr().err
    assert not (tmp_path / "cmp.json").exists()
