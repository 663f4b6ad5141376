"""Contextual augmenters load a local model folder only; nothing is downloaded."""

from __future__ import annotations

import pytest

from corpusmill.augment.augmenters import ContextualSpec, BackTranslationSpec, build
from corpusmill.errors import CorpusmillError

WORDS = ("the disk was full and backup job failed again last night please reset my password link "
         "in email has expired invoice charged twice on credit card this month mobile app crashes").split()


def _tiny_masked_lm(folder):
    """A one-layer BERT masked LM with a word-level vocabulary, built here (random weights)."""
    import torch
    from transformers import BertConfig, BertForMaskedLM, BertTokenizer

    folder.mkdir()
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", ","] + sorted(set(WORDS))
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    torch.manual_seed(0)
    model = BertForMaskedLM(BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=1,
                                       num_attention_heads=2, intermediate_size=64, max_position_embeddings=64))
    model.save_pretrained(folder)
    BertTokenizer(str(folder / "vocab.txt")).save_pretrained(folder)
    return folder


@pytest.mark.slow
def test_masked_lm_substitution_from_a_local_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    folder = _tiny_masked_lm(tmp_path / "tiny-mlm")
    text = "the backup job failed again last night and the disk was full"
    aug = build(ContextualSpec(kind="contextual", model_path=str(folder), aug_p=0.3, n=2))
    a = aug.variants(text, 5)
    assert a == aug.variants(text, 5)  # seeded per row
    for variant, _ in a:
        assert variant != text and len(variant.split()) == len(text.split())
        assert set(variant.split()) <= set(WORDS) | {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", ","}


def test_model_augmenters_refuse_anything_but_a_local_folder(tmp_path):
    with pytest.raises(CorpusmillError, match="not a local model folder"):
        build(ContextualSpec(kind="contextual", model_path="bert-base-uncased"))
    with pytest.raises(CorpusmillError, match="not a local model folder"):
        build(BackTranslationSpec(kind="back_translation", from_model_path=str(tmp_path), to_model_path=str(tmp_path)))
