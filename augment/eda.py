"""EDA, "Easy Data Augmentation" (Wei & Zou 2019, https://arxiv.org/abs/1901.11196).

Four operations on the words of a text, each changing about ``alpha`` x (number of words):

* **sr** synonym replacement: ``n_sr`` distinct non-stop words, each replaced by a random WordNet
  synonym;
* **ri** random insertion: a random synonym of a random non-stop word, inserted at a random
  position, ``n_ri`` times;
* **rs** random swap: two random words swapped, ``n_rs`` times;
* **rd** random deletion: each word deleted with probability ``alpha`` (at least one is kept).

``n_op = max(1, int(alpha * words))`` as in the paper's code. A row gets ``n`` variants: the
paper's recipe makes ``n // 4 + 1`` of each operation, shuffles them and keeps ``n`` (here the
operations are drawn first, so the discarded variants are never made).

Differences from the reference code (``jasonwei20/eda_nlp``), on purpose: the text keeps its
case and punctuation (the reference lower-cases it and strips everything but letters, which
would also change held-out-looking rows and destroy non-English text); synonyms are looked up
on the word without surrounding punctuation and listed in sorted order; every random choice
comes from one ``random.Random`` seeded per row, never the global state.
"""

from __future__ import annotations

import random

from corpusmill.augment.wordnet import Synonyms

OPERATIONS = ("sr", "ri", "rs", "rd")

#: the stop words EDA's code skips for synonym replacement (NLTK's English list, as the paper)
STOP_WORDS = frozenset("""
i me my myself we our ours ourselves you your yours yourself yourselves he him his himself she her
hers herself it its itself they them their theirs themselves what which who whom this that these
those am is are was were be been being have has had having do does did doing a an the and but if
or because as until while of at by for with about against between into through during before after
above below to from up down in out on off over under again further then once here there when where
why how all any both each few more most other some such no nor not only own same so than too very s
t can will just don should now
""".split())

_PUNCT = "\"'“”‘’.,;:!?()[]{}«»…-–—"


def _core(word: str) -> tuple[str, str, str]:
    """``word`` split into leading punctuation, the word, trailing punctuation."""
    core = word.strip(_PUNCT)
    if not core:
        return word, "", ""
    start = word.index(core)
    return word[:start], core, word[start + len(core):]


class Eda:
    """The four EDA operations over one synonym source."""

    def __init__(self, synonyms: Synonyms, alpha: float) -> None:
        self.synonyms = synonyms
        self.alpha = alpha

    def _candidates(self, words: list[str]) -> list[int]:
        """Positions of words that may be replaced: alphabetic, not a stop word, with synonyms."""
        out = []
        for i, w in enumerate(words):
            core = _core(w)[1]
            if core.isalpha() and core.lower() not in STOP_WORDS and self.synonyms.of(core):
                out.append(i)
        return out

    def synonym_replacement(self, words: list[str], n: int, rng: random.Random) -> list[str]:
        new = list(words)
        positions = self._candidates(words)
        rng.shuffle(positions)
        for i in positions[:n]:
            lead, core, trail = _core(words[i])
            syn = rng.choice(self.synonyms.of(core))
            if core[:1].isupper():
                syn = syn[:1].upper() + syn[1:]
            new[i] = lead + syn + trail
        return new

    def random_insertion(self, words: list[str], n: int, rng: random.Random) -> list[str]:
        new = list(words)
        positions = self._candidates(words)
        if not positions:
            return new
        for _ in range(n):
            core = _core(words[rng.choice(positions)])[1]
            new.insert(rng.randint(0, len(new)), rng.choice(self.synonyms.of(core)))
        return new

    @staticmethod
    def random_swap(words: list[str], n: int, rng: random.Random) -> list[str]:
        new = list(words)
        if len(new) < 2:
            return new
        for _ in range(n):
            a, b = rng.sample(range(len(new)), 2)  # two different positions
            new[a], new[b] = new[b], new[a]
        return new

    @staticmethod
    def random_deletion(words: list[str], p: float, rng: random.Random) -> list[str]:
        if len(words) <= 1:
            return list(words)
        new = [w for w in words if rng.random() > p]
        return new or [words[rng.randrange(len(words))]]

    def variants(self, text: str, n: int, operations: tuple[str, ...], rng: random.Random) -> list[tuple[str, str]]:
        """Up to ``n`` (variant, operation) pairs of ``text``, by the paper's recipe."""
        words = text.split()
        if not words:
            return []
        count = max(1, int(self.alpha * len(words)))
        # the paper's recipe makes n // len(operations) + 1 variants per operation, shuffles them
        # and keeps n; drawing which operations survive first gives the same mix without making
        # the variants that would be thrown away
        ops = [op for op in operations for _ in range(n // len(operations) + 1)]
        rng.shuffle(ops)
        made = []
        for op in ops[:n]:
            if op == "sr":
                new = self.synonym_replacement(words, count, rng)
            elif op == "ri":
                new = self.random_insertion(words, count, rng)
            elif op == "rs":
                new = self.random_swap(words, count, rng)
            else:
                new = self.random_deletion(words, self.alpha, rng)
            made.append((" ".join(new), op))
        return made
