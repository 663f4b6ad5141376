"""datasets stats --tokenizer: token counts per split match the tokenizer on strings whose counts
are known by construction (a word-level vocabulary: one token per known word, [UNK] otherwise)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from corpusmill.cli import main
from tests.conftest import write_jsonl
from tests.train.conftest import word_tokenizer

VOCAB_TEXT = ["the cat sat on the mat", "a dog ran in the park", "birds sing at dawn"]
# (text, words, words outside the vocabulary)
ROWS = [("the cat sat", 3, 0),
        ("the zebra sat on the mat", 6, 1),
        ("a dog ran in the park and the cat sat on the mat", 13, 1),
        ("birds sing", 2, 0),
        ("quokkas and wombats sing at dawn", 6, 3)]


@pytest.fixture
def known(tmp_path, run):
    rows = [{"id": f"r{i}", "text": t, "label": "x" if i % 2 else "y"} for i, (t, _, _) in enumerate(ROWS)]
    write_jsonl(tmp_path / "raw" / "known.jsonl", rows)
    result = run({"dataset": "known", "inputs": [{"path": "raw/known.jsonl", "id_field": "id", "label_field": "label"}],
                  "steps": []})
    bert = word_tokenizer(VOCAB_TEXT, specials=["[PAD]", "[UNK]", "[CLS]", "[SEP]"],
                          post=("[CLS] $A [SEP]", ["[CLS]", "[SEP]"]), pad_token="[PAD]", cls_token="[CLS]",
                          sep_token="[SEP]")
    bert.save_pretrained(tmp_path / "bert-tok")
    gpt = word_tokenizer(VOCAB_TEXT, specials=["[UNK]", "<eos>"], eos_token="<eos>")
    gpt.save_pretrained(tmp_path / "gpt-tok")
    return result.version, tmp_path


def _stats(capsys, version, store, tok, *extra):
    assert main(["datasets", "stats", version.ref, "--store", str(store), "--tokenizer", str(tok), "--json", *extra]) == 0
    return json.loads(capsys.readouterr().out)


def test_counts_match_the_tokenizer_on_known_strings(known, capsys):
    version, root = known
    assert version.splits() and sum(version.manifest["splits"].values()) == len(ROWS)
    (split,) = version.splits()
    # classification (the version has labels): [CLS] words [SEP], no EOS
    report = _stats(capsys, version, root / "store", root / "bert-tok", "--max-length", "8")
    s = report["splits"][split]
    lengths = np.array([w + 2 for _, w, _ in ROWS])
    assert report["task"] == "classification" and s["rows"] == 5 and s["tokens"] == lengths.sum() == 40
    assert (s["min"], s["max"], s["mean"]) == (4, 15, 8.0)
    assert s["p50"] == 8 and s["p90"] == pytest.approx(np.percentile(lengths, 90))
    assert s["truncated_rows"] == 1 and s["truncated_share"] == 0.2  # only the 15-token row exceeds 8
    assert s["truncated_tokens_share"] == pytest.approx(7 / 40)
    assert s["unknown_token_rate"] == pytest.approx(5 / 40) and s["rows_with_unknown_tokens"] == 0.6
    # causal-lm on the same rows with a tokenizer that adds no specials: words + the EOS appended
    report = _stats(capsys, version, root / "store", root / "gpt-tok", "--task", "causal-lm", "--max-length", "64")
    s = report["splits"][split]
    assert s["tokens"] == sum(w + 1 for _, w, _ in ROWS) == 35 and s["truncated_rows"] == 0
    assert s["unknown_token_rate"] == pytest.approx(5 / 35)
    rec = report["recommendation"]
    # p99 of [4, 7, 14, 3, 7] is 13.7 -> 16, the smallest multiple of 16 above it
    assert rec["max_seq_len"] == 16 and rec["covers_share"] == 1.0


def test_padding_estimate_and_packing_advice(known, capsys):
    from corpusmill.train.token_stats import padding_share, recommend

    # one batch of 4 padded to 10: 16 of its 40 tokens are padding; cut at 6: 8 of 24; one row per batch: none
    assert padding_share(np.array([10, 2, 10, 2]), 64, 4, seed=0) == pytest.approx(16 / 40)
    assert padding_share(np.array([10, 2, 10, 2]), 6, 4, seed=0) == pytest.approx(8 / 24)
    assert padding_share(np.array([10, 2, 10, 2]), 64, 1, seed=0) == 0.0
    lengths = np.array([100, 10] * 50)  # short and long rows mixed: batches pad the short ones to 100
    rec = recommend(lengths, model_max=None, causal=True, batch_size=8, seed=0)
    assert rec["max_seq_len"] == 112 and rec["packing"] and rec["padding_share"] > 0.25
    assert not recommend(np.full(100, 60), model_max=None, causal=True, batch_size=8, seed=0)["packing"]
    capped = recommend(lengths, model_max=64, causal=False, batch_size=8, seed=0)
    assert capped["max_seq_len"] == 64 and capped["capped_by_model"] and not capped["packing"]
    version, root = known
    assert main(["datasets", "stats", version.ref, "--store", str(root / "store"), "--tokenizer",
                 str(root / "bert-tok")]) == 0
    out = capsys.readouterr().out
    assert "recommended max_seq_len: 16" in out and "packing: no" in out
