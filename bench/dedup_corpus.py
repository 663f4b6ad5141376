"""A deduplication corpus with known truth: real text from Debian's fortunes, documents of about
400 bytes, and planted copies at 0-20 % word edits.

Each base document is a run of whole fortunes joined by newlines. A planted copy is a base
document with a share of its words substituted, deleted or inserted (words drawn from the
fortunes' vocabulary), so the truth is known: a copy and its base belong to one *family*.
Everything is drawn from ``random.Random(seed)``: the same arguments give the same corpus.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import orjson


@dataclass
class Doc:
    id: str
    text: str
    family: int  # index of the base document this row is (a copy of)
    edit_rate: float  # share of words edited; -1 for a base document


def fortune_pool() -> list[str]:
    """Fortunes without exact repeats (same words after lower-casing), in a fixed order."""
    from bench.common import fortunes

    seen, pool = set(), []
    for row in fortunes():
        key = " ".join(row["text"].lower().split())
        if len(key) >= 20 and key not in seen:
            seen.add(key)
            pool.append(row["text"].strip())
    return pool


def edit_words(text: str, rate: float, vocab: list[str], rng: random.Random) -> str:
    """``text`` with round(rate * words) random word edits (substitute, delete or insert)."""
    words = text.split()
    for _ in range(round(rate * len(words))):
        op = rng.random()
        i = rng.randrange(len(words))
        if op < 0.5:
            words[i] = rng.choice(vocab)
        elif op < 0.75 and len(words) > 1:
            del words[i]
        else:
            words.insert(i, rng.choice(vocab))
    return " ".join(words)


def build(n_docs: int, *, copy_share: float = 0.2, max_rate: float = 0.2, reuse: bool = True,
          mean_bytes: int = 400, seed: int = 0) -> list[Doc]:
    """``n_docs`` documents of which about ``copy_share`` are planted copies.

    ``reuse=False`` joins whole fortunes, each used at most once, so base documents share no
    text and every near-duplicate pair is a planted one (at most ~35k base documents).
    ``reuse=True`` makes corpora of any size: each base document joins 3 to 6 passages of
    8 to 40 consecutive words taken from random fortunes, so two base documents rarely share
    more than one passage (Jaccard well under 0.5) and the duplicate structure does not
    change with the corpus size.
    """
    rng = random.Random(seed)
    pool = fortune_pool()
    order = list(range(len(pool)))
    rng.shuffle(order)
    vocab = sorted({w for t in pool[:5000] for w in t.split()})
    n_copies = int(n_docs * copy_share)
    n_base = n_docs - n_copies
    bases: list[str] = []
    cursor = 0
    pool_words = [t.split() for t in pool] if reuse else []
    while len(bases) < n_base:
        target = rng.randint(mean_bytes // 2, mean_bytes * 3 // 2)
        parts, size = [], 0
        while size < target:
            if reuse:
                words = pool_words[rng.randrange(len(pool_words))]
                k = min(len(words), rng.randint(8, 40))
                start = rng.randrange(len(words) - k + 1)
                t = " ".join(words[start:start + k])
            else:
                if cursor >= len(order):
                    raise ValueError(f"the fortunes make only {len(bases)} unshared base documents; ask for fewer")
                t = pool[order[cursor]]
                cursor += 1
            n = len(t.encode()) + 1
            if parts and size + n > target * 1.25:  # keep documents near the target size
                break
            parts.append(t)
            size += n
        bases.append("\n".join(parts))
    docs = [Doc(f"b{i:07d}", t, i, -1.0) for i, t in enumerate(bases)]
    for j in range(n_copies):
        fam = rng.randrange(n_base)
        rate = round(rng.uniform(0.0, max_rate), 3) if rng.random() > 0.1 else 0.0
        docs.append(Doc(f"c{j:07d}", edit_words(bases[fam], rate, vocab, rng), fam, rate))
    rng.shuffle(docs)
    return docs


def write_jsonl(docs: list[Doc], path) -> int:
    """Write {id, text, family, edit_rate} lines; returns the bytes of text written."""
    total = 0
    with open(path, "wb") as f:
        for d in docs:
            total += len(d.text.encode())
            f.write(orjson.dumps({"id": d.id, "text": d.text, "family": d.family, "edit_rate": d.edit_rate}) + b"\n")
    return total
