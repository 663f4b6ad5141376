"""The augmenters: one spec (a typed option block of the ``augment`` stage) and one builder each.

An augmenter turns one text into up to ``n`` variants. Every random choice is seeded per
(run seed, row id, augmenter name), so a variant depends on its source row alone, never on the
worker count, batch size or row order:

* our own augmenters (EDA, WordNet synonyms, sentence shuffle) draw from a ``random.Random``
  of that seed;
* nlpaug's draw from the global ``random`` and ``numpy.random`` state (and torch's, for the
  contextual ones); :func:`seed_globals` seeds it for each row inside :func:`isolated_random`,
  which puts the previous state back after the batch.

Contextual augmenters (masked-LM substitution, back-translation) load a model from a local
folder only, with the Hugging Face hub switched off: nothing is downloaded at run time.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.abc
import json
import os
import random
import re
import sys
from pathlib import Path
from typing import Annotated, Literal, Union

import numpy as np
import xxhash
from pydantic import BaseModel, ConfigDict, Field

from corpusmill.errors import CorpusmillError


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str | None = Field(
        None, pattern=r"^[A-Za-z0-9_]+$",
        description="names the augmenter in the `augmenter` column and in new row ids (`<source id>~<name>-<k>`); "
                    "default: its kind. Two augmenters of one kind need different names")
    n: int = Field(1, ge=1, le=64, description="variants made per training row (before duplicate rejection and caps)")

    @property
    def label(self) -> str:
        return self.name or self.kind  # type: ignore[attr-defined]

    def params(self) -> dict:
        """The options that shaped a variant, stored with it in `augment_params`."""
        return self.model_dump(exclude={"name", "n"}, exclude_none=True)


class EdaSpec(_Spec):
    """Wei & Zou's EDA recipe: synonym replacement, random insertion, random swap, random deletion."""

    kind: Literal["eda"]
    alpha: float = Field(
        0.1, gt=0, le=0.5,
        description="share of a text's words each operation changes (deletion: probability per word); 0.1 is "
                    "the paper's all-round value (0.05 for 500 training rows or fewer, per its Table 3)")
    n: int = Field(9, ge=1, le=64, description="variants per training row; 9 is the paper's code default "
                                                "(its Table 3: 16 for 500 rows, 8 for 2,000, 4 for 5,000+)")
    operations: tuple[Literal["sr", "ri", "rs", "rd"], ...] = Field(
        ("sr", "ri", "rs", "rd"), min_length=1,
        description="EDA operations to use: sr synonym replacement, ri random insertion, rs random swap, rd random deletion")
    wordnet_dir: str | None = Field(
        None, description="folder with WordNet 3.0's data.*/index.* files; default $CORPUSMILL_WORDNET or /usr/share/wordnet (Debian wordnet-base)")


class SynonymSpec(_Spec):
    """WordNet synonym replacement alone (EDA's sr with its own share)."""

    kind: Literal["synonym"]
    aug_p: float = Field(0.1, gt=0, le=1, description="share of the words replaced (at least one)")
    wordnet_dir: str | None = Field(None, description="as for eda")


class SentenceShuffleSpec(_Spec):
    """The sentences of a text in a random order (a plain splitter: ., ! or ? then space)."""

    kind: Literal["sentence_shuffle"]


class CharSpec(_Spec):
    """nlpaug's character-level noise: keyboard typos, OCR confusions, random edits."""

    kind: Literal["char_keyboard", "char_ocr", "char_random"]
    action: Literal["insert", "substitute", "swap", "delete"] = Field(
        "substitute", description="char_random only: the edit made")
    aug_char_p: float = Field(0.1, gt=0, le=1, description="share of the characters changed in a chosen word")
    aug_word_p: float = Field(0.1, gt=0, le=1, description="share of the words that get character changes")


class WordSpec(_Spec):
    """nlpaug's word-level edits: random swap/delete/crop, splitting words, common misspellings."""

    kind: Literal["word_random", "word_split", "word_spelling"]
    action: Literal["swap", "delete", "crop"] = Field("swap", description="word_random only: the edit made")
    aug_p: float = Field(0.1, gt=0, le=1, description="share of the words changed")
    dict_path: str | None = Field(
        None, description="word_spelling: a misspelling dictionary (lines `word misspelling ...`, as nlpaug's "
                          "spelling_en.txt); required, since none can be downloaded here")


class ContextualSpec(_Spec):
    """Masked-LM word substitution or insertion with a local model (nlpaug ContextualWordEmbsAug)."""

    kind: Literal["contextual"]
    model_path: str = Field(description="local folder of a Hugging Face masked LM (config, weights, tokenizer); never downloaded")
    action: Literal["substitute", "insert"] = "substitute"
    aug_p: float = Field(0.1, gt=0, le=1, description="share of the words changed")
    top_k: int = Field(20, ge=1, description="sample the replacement among the model's k most likely tokens")


class BackTranslationSpec(_Spec):
    """Translate to a pivot language and back with two local seq2seq models (nlpaug BackTranslationAug)."""

    kind: Literal["back_translation"]
    from_model_path: str = Field(description="local folder of the source -> pivot translation model")
    to_model_path: str = Field(description="local folder of the pivot -> source translation model")
    max_length: int = Field(256, ge=8, description="tokens generated at most per translation")


AugmenterSpec = Annotated[
    Union[EdaSpec, SynonymSpec, SentenceShuffleSpec, CharSpec, WordSpec, ContextualSpec, BackTranslationSpec],
    Field(discriminator="kind"),
]

#: kinds whose variants come from a local model (they import torch when used)
MODEL_KINDS = frozenset({"contextual", "back_translation"})


def row_seed(seed: int, row_id: str, augmenter: str) -> int:
    """The 64-bit seed of one row under one augmenter: a stable hash, never Python's ``hash()``."""
    return xxhash.xxh3_64_intdigest(f"{augmenter}\x00{row_id}".encode("utf-8", "surrogatepass"), seed=seed & (2**64 - 1))


def seed_globals(seed: int, torch: bool = False) -> None:
    """Seed Python's and numpy's global random state, and torch's for a model augmenter (which
    samples with it; seeding torch costs far more than the others, so only where it is used)."""
    random.seed(seed)
    np.random.seed(seed & 0xFFFFFFFF)
    if torch:
        sys.modules["torch"].manual_seed(seed & 0x7FFFFFFFFFFFFFFF)


@contextlib.contextmanager
def isolated_random(seed: int | None = None, torch: bool = False):
    """Keep a library that uses the global random state (nlpaug) from touching anyone else's:
    the state is saved on entry and restored on exit; inside, :func:`seed_globals` seeds it per
    row, so a row's result does not depend on what ran before it. Saving numpy's state costs
    about 0.6 ms, so a batch of rows shares one save and restore."""
    py_state, np_state = random.getstate(), np.random.get_state()
    torch_state = sys.modules["torch"].random.get_rng_state() if torch else None
    if seed is not None:
        seed_globals(seed, torch)
    try:
        yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
        if torch:
            sys.modules["torch"].random.set_rng_state(torch_state)


class Augmenter:
    """Makes variants of texts. ``variants(text, seed)`` -> [(variant, extra params)]."""

    def __init__(self, spec, base_dir: str | None = None) -> None:
        self.spec = spec
        self.base_dir = base_dir
        self.name = spec.label
        self.params = json.dumps(spec.params(), sort_keys=True, separators=(",", ":"))

    def path(self, value: str) -> str:
        p = Path(value).expanduser()
        return str(p if p.is_absolute() or self.base_dir is None else Path(self.base_dir) / p)

    def variants(self, text: str, seed: int) -> list[tuple[str, dict | None]]:
        """Up to ``n`` (variant, extra params or None) of ``text``, drawn from ``seed`` alone."""
        raise NotImplementedError

    def variants_batch(self, texts: list[str], seeds: list[int]) -> list[list[tuple[str, dict | None]]]:
        """:meth:`variants` of many rows; the same result as one call per row."""
        return [self.variants(t, s) for t, s in zip(texts, seeds)]


class EdaAugmenter(Augmenter):
    def __init__(self, spec: EdaSpec, base_dir: str | None = None) -> None:
        from corpusmill.augment.eda import Eda
        from corpusmill.augment.wordnet import Synonyms

        super().__init__(spec, base_dir)
        self.eda = Eda(Synonyms(spec.wordnet_dir and self.path(spec.wordnet_dir)), spec.alpha)

    def variants(self, text, seed):
        made = self.eda.variants(text, self.spec.n, self.spec.operations, random.Random(seed))
        return [(t, {"op": op}) for t, op in made]


class SynonymAugmenter(Augmenter):
    def __init__(self, spec: SynonymSpec, base_dir: str | None = None) -> None:
        from corpusmill.augment.eda import Eda
        from corpusmill.augment.wordnet import Synonyms

        super().__init__(spec, base_dir)
        self.eda = Eda(Synonyms(spec.wordnet_dir and self.path(spec.wordnet_dir)), spec.aug_p)

    def variants(self, text, seed):
        rng = random.Random(seed)
        words = text.split()
        count = max(1, int(self.spec.aug_p * len(words)))
        return [(" ".join(self.eda.synonym_replacement(words, count, rng)), None) for _ in range(self.spec.n)]


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def sentences(text: str) -> list[str]:
    """A plain splitter: a sentence ends at ., ! or ? followed by white space."""
    return [s for s in _SENTENCE_END.split(text.strip()) if s]


class SentenceShuffleAugmenter(Augmenter):
    def variants(self, text, seed):
        rng = random.Random(seed)
        parts = sentences(text)
        out = []
        for _ in range(self.spec.n):
            order = list(parts)
            rng.shuffle(order)
            out.append((" ".join(order), None))
        return out


class _NoTorch(importlib.abc.MetaPathFinder):
    """Makes ``import torch``/``import transformers`` fail while nlpaug is imported: nlpaug's
    utilities try to import them at module level (and cope when they are missing), which would
    otherwise load torch into every ``corpusmill run`` that uses a character or word augmenter."""

    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in ("torch", "transformers"):
            raise ImportError(f"{name} is not loaded for nlpaug's character and word augmenters")
        return None


#: whether nlpaug was imported with torch kept out (model augmenters then need a re-import)
_NLPAUG_WITHOUT_TORCH = False


def _nlpaug(module: str, *, models: bool = False):
    """``nlpaug.augmenter.<module>``; without torch unless ``models`` (contextual augmenters)."""
    global _NLPAUG_WITHOUT_TORCH
    if models and _NLPAUG_WITHOUT_TORCH:
        for name in [m for m in sys.modules if m == "nlpaug" or m.startswith("nlpaug.")]:
            del sys.modules[name]
        _NLPAUG_WITHOUT_TORCH = False
    fresh = "nlpaug" not in sys.modules
    block = None
    if fresh and not models and "torch" not in sys.modules:
        block = _NoTorch()
        sys.meta_path.insert(0, block)
    try:
        mod = importlib.import_module(f"nlpaug.augmenter.{module}")
    except ImportError as e:
        raise CorpusmillError("this augmenter needs nlpaug: pip install 'corpusmill[augment]'") from e
    finally:
        if block is not None:
            sys.meta_path.remove(block)
    if block is not None:
        _NLPAUG_WITHOUT_TORCH = True
    return mod


class NlpaugAugmenter(Augmenter):
    """An nlpaug augmenter, called once per variant inside :func:`isolated_random`."""

    #: draws from torch's generator too (the model augmenters)
    uses_torch = False

    def __init__(self, spec, base_dir: str | None = None) -> None:
        super().__init__(spec, base_dir)
        self.aug = self.build(spec)

    def build(self, spec):
        if spec.kind.startswith("char_"):
            nac = _nlpaug("char")
            common = dict(aug_char_p=spec.aug_char_p, aug_word_p=spec.aug_word_p)
            if spec.kind == "char_keyboard":
                return nac.KeyboardAug(**common)
            if spec.kind == "char_ocr":
                return nac.OcrAug(**common)
            return nac.RandomCharAug(action=spec.action, **common)
        naw = _nlpaug("word")
        if spec.kind == "word_random":
            return naw.RandomWordAug(action=spec.action, aug_p=spec.aug_p)
        if spec.kind == "word_split":
            return naw.SplitAug(aug_p=spec.aug_p)
        if spec.kind == "word_spelling":
            if not spec.dict_path or not Path(self.path(spec.dict_path)).is_file():
                raise CorpusmillError(
                    f"word_spelling needs dict_path, a misspelling dictionary file (got {spec.dict_path!r}); "
                    f"nlpaug's spelling_en.txt cannot be downloaded at run time: give a local copy")
            return naw.SpellingAug(dict_path=self.path(spec.dict_path), aug_p=spec.aug_p)
        raise ValueError(spec.kind)

    def one(self, text: str) -> str | None:
        out = self.aug.augment(text)
        if isinstance(out, list):
            out = out[0] if out else None
        return out

    def variants(self, text, seed):
        return self.variants_batch([text], [seed])[0]

    def variants_batch(self, texts, seeds):
        out = []
        with isolated_random(torch=self.uses_torch):
            for text, seed in zip(texts, seeds):
                made = []
                for k in range(self.spec.n):
                    seed_globals(row_seed(seed, str(k), self.name), self.uses_torch)
                    made.append((self.one(text), None))
                out.append(made)
        return out


class ModelAugmenter(NlpaugAugmenter):
    """Contextual augmenters on a local model, with the hub and telemetry switched off."""

    uses_torch = True

    def build(self, spec):
        os.environ["HF_HUB_OFFLINE"] = "1"
        os.environ["TRANSFORMERS_OFFLINE"] = "1"
        paths = [spec.model_path] if spec.kind == "contextual" else [spec.from_model_path, spec.to_model_path]
        for p in paths:
            if not (Path(self.path(p)) / "config.json").is_file():
                raise CorpusmillError(
                    f"{spec.kind}: {p!r} is not a local model folder (no config.json); contextual augmenters "
                    f"load models from local folders only, nothing is downloaded at run time")
        naw = _nlpaug("word", models=True)
        _public_token_ids()
        if spec.kind == "contextual":
            # nlpaug guesses the architecture from the folder name; a local folder says it in config.json
            model_type = json.loads((Path(self.path(spec.model_path)) / "config.json").read_text()).get("model_type", "")
            if model_type not in ("bert", "distilbert", "roberta"):
                raise CorpusmillError(f"contextual: {spec.model_path!r} is a {model_type!r} model; nlpaug's masked-LM "
                                      f"augmenter supports bert, distilbert and roberta models")
            return naw.ContextualWordEmbsAug(model_path=self.path(spec.model_path), model_type=model_type,
                                             action=spec.action, aug_p=spec.aug_p, top_k=spec.top_k, device="cpu")
        return naw.BackTranslationAug(from_model_name=self.path(spec.from_model_path),
                                      to_model_name=self.path(spec.to_model_path),
                                      max_length=spec.max_length, device="cpu")


def _public_token_ids() -> None:
    """nlpaug 1.1.11's masked-LM wrappers map tokens through the tokenizers' private
    ``_convert_token_to_id``/``_convert_id_to_token``, which transformers 5 no longer has; the
    public ``convert_tokens_to_ids``/``convert_ids_to_tokens`` do the same for one token."""
    import nlpaug.model.lang_models as nml

    for cls in (nml.Bert, nml.DistilBert, nml.Roberta):
        cls.token2id = lambda self, token: self.tokenizer.convert_tokens_to_ids(token)
        cls.id2token = lambda self, _id: self.tokenizer.convert_ids_to_tokens(_id)


def build(spec, base_dir: str | None = None) -> Augmenter:
    """The augmenter a spec describes."""
    if spec.kind == "eda":
        return EdaAugmenter(spec, base_dir)
    if spec.kind == "synonym":
        return SynonymAugmenter(spec, base_dir)
    if spec.kind == "sentence_shuffle":
        return SentenceShuffleAugmenter(spec, base_dir)
    if spec.kind in MODEL_KINDS:
        return ModelAugmenter(spec, base_dir)
    return NlpaugAugmenter(spec, base_dir)
