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


def _tiny_seq2seq(folder, seed: int):
    """A one-layer BART with a word-level tokenizer, built here (random weights): enough for
    nlpaug's back-translation to run both directions offline."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import BartConfig, BartForConditionalGeneration, PreTrainedTokenizerFast

    folder.mkdir()
    specials = ["<pad>", "<s>", "</s>", "<unk>"]
    vocab = {t: i for i, t in enumerate(specials + sorted(set(WORDS)))}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>",
                                   unk_token="<unk>", model_input_names=["input_ids", "attention_mask"])
    fast.save_pretrained(folder)
    torch.manual_seed(seed)
    model = BartForConditionalGeneration(BartConfig(
        vocab_size=len(vocab), d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, max_position_embeddings=64,
        pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=2, forced_eos_token_id=2))
    # a random model may end at once: make it say a few plain words, as a real translator would
    model.generation_config.max_length = 12
    model.generation_config.min_new_tokens = 4
    model.generation_config.suppress_tokens = [vocab["<pad>"], vocab["<s>"], vocab["<unk>"]]
    model.save_pretrained(folder)
    return folder


@pytest.mark.slow
def test_back_translation_through_two_local_seq2seq_models(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    there = _tiny_seq2seq(tmp_path / "to-pivot", seed=1)
    back = _tiny_seq2seq(tmp_path / "from-pivot", seed=2)
    text = "the backup job failed again last night and the disk was full"
    aug = build(BackTranslationSpec(kind="back_translation", from_model_path=str(there), to_model_path=str(back),
                                    max_length=12, n=1))
    a = aug.variants(text, 5)
    assert a == aug.variants(text, 5)
    (variant, _), = a
    # random weights translate into nonsense, but every word comes from the second model's vocabulary
    assert variant is not None and variant != text
    assert set(variant.split()) <= set(WORDS)
