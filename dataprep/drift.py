"""Drift between two dataset versions: is the new data different enough to warrant a retrain?

Compared are the rows of the old version and the rows the new version *added* (ids the old one
does not have), on four views:

* ``label``: the label distribution (the ``label`` column), when the rows have labels;
* ``language``: the ``lang`` column written by the language stage, when there is one;
* ``length``: characters per text, as quantiles and as a histogram over power-of-two bins;
* ``ngrams``: the share of the added rows' word n-gram occurrences whose n-gram never occurs
  in the old version (n = 1: new vocabulary; n = 2: new phrasing), next to the same share
  measured inside the old version (its rows in odd positions of a stable hash order against
  the others), the level of novelty that is normal for this corpus.

Each categorical view reports the total variation distance between the two distributions
(0 = identical, 1 = disjoint): half the sum of absolute differences of shares.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import xxhash

from corpusmill import schema as S

LANG = "lang"
QUANTILES = (0.1, 0.5, 0.9)


def total_variation(a: Counter, b: Counter) -> float | None:
    """Half the L1 distance between the normalised counts; None when a side is empty."""
    na, nb = sum(a.values()), sum(b.values())
    if not na or not nb:
        return None
    return round(0.5 * sum(abs(a.get(k, 0) / na - b.get(k, 0) / nb) for k in set(a) | set(b)), 4)


def _shares(c: Counter) -> dict:
    n = sum(c.values())
    return {str(k): round(v / n, 4) for k, v in sorted(c.items(), key=lambda kv: (-kv[1], str(kv[0])))} if n else {}


def _categorical(old: pa.Table, new: pa.Table, column: str) -> dict | None:
    if column not in old.column_names or column not in new.column_names:
        return None
    a = Counter("" if x is None else x for x in old.column(column).to_pylist())
    b = Counter("" if x is None else x for x in new.column(column).to_pylist())
    return {"old": _shares(a), "added": _shares(b), "total_variation": total_variation(a, b),
            "unseen_values": sorted(str(k) for k in set(b) - set(a))}


def _lengths(texts) -> np.ndarray:
    return pc.utf8_length(texts).to_numpy(zero_copy_only=False).astype(np.int64) if len(texts) else np.zeros(0, np.int64)


def _length(old: pa.Table, new: pa.Table) -> dict:
    la, lb = _lengths(old.column(S.TEXT)), _lengths(new.column(S.TEXT))

    def summary(x):
        if not len(x):
            return None
        return {**{f"p{int(q * 100)}": int(np.quantile(x, q)) for q in QUANTILES}, "mean": round(float(x.mean()), 1)}

    def bins(x):  # power-of-two bins: 0, 1, 2-3, 4-7, ...
        return Counter(np.floor(np.log2(np.maximum(x, 1))).astype(int).tolist()) if len(x) else Counter()

    return {"chars_old": summary(la), "chars_added": summary(lb), "total_variation": total_variation(bins(la), bins(lb))}


def _ngram_sets(texts, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(hashes of every word n-gram occurrence, document of each) of ``texts``."""
    from corpusmill.dataprep.minhash import token_hashes, word_shingles
    from corpusmill.dataprep.textnorm import NormalForm, tokenize_forms

    tokens = tokenize_forms(texts, [NormalForm.words()])[0]
    if n == 1:
        h, counts = token_hashes(tokens), tokens.counts
    else:
        sh = word_shingles(tokens, n)
        h, counts = sh.hashes, sh.counts
    return h, np.repeat(np.arange(len(counts)), counts)


def new_ngram_share(old_texts, new_texts, n: int) -> float | None:
    """Share of the n-gram occurrences of ``new_texts`` whose n-gram is absent from ``old_texts``."""
    if not len(new_texts):
        return None
    seen = np.unique(_ngram_sets(old_texts, n)[0])
    h = _ngram_sets(new_texts, n)[0]
    if not len(h):
        return None
    return round(float(1.0 - np.isin(h, seen, assume_unique=False).mean()), 4)


def _ngrams(old: pa.Table, new: pa.Table, ns=(1, 2)) -> dict:
    # the corpus's own novelty: half of the old rows (by a stable hash of the id) against the other half
    ids = old.column(S.ID).to_pylist()
    half = np.array([xxhash.xxh3_64_intdigest(i.encode()) & 1 for i in ids], dtype=bool)
    text = old.column(S.TEXT)
    out = {}
    for n in ns:
        out[f"{n}gram"] = {
            "new_share_added": new_ngram_share(text, new.column(S.TEXT), n),
            "new_share_within_old": new_ngram_share(text.filter(pa.array(~half)), text.filter(pa.array(half)), n),
        }
    return out


def drift(old_version, new_version, added_ids: set[str] | None = None) -> dict:
    """The drift report between ``old_version`` (all its rows) and the rows of
    ``new_version`` that are not in it (``added_ids``, default: ids absent from the old one)."""
    def read(version):
        names = version.schema().names
        cols = [c for c in (S.ID, S.TEXT, S.LABEL, LANG) if c in names]
        parts = [version.read_split(s, columns=cols) for s in version.splits()]
        return pa.concat_tables(parts) if parts else version.schema().empty_table().select(cols)

    old, new = read(old_version), read(new_version)
    if added_ids is None:
        mask = pc.invert(pc.is_in(new.column(S.ID), value_set=old.column(S.ID).combine_chunks()))
    else:
        mask = pc.is_in(new.column(S.ID), value_set=pa.array(sorted(added_ids), pa.string()))
    added = new.filter(mask)
    return {
        "rows_old": old.num_rows, "rows_added": added.num_rows,
        "label": _categorical(old, added, S.LABEL),
        "language": _categorical(old, added, LANG),
        "length": _length(old, added),
        "ngrams": _ngrams(old, added),
    }


def describe_drift(d: dict) -> str:
    """The drift report as a few readable lines."""
    lines = [f"drift of the {d['rows_added']:,} added rows against the {d['rows_old']:,} old rows "
             "(total variation: 0 = same distribution, 1 = disjoint):"]
    for view in ("label", "language"):
        v = d.get(view)
        if v:
            top = ", ".join(f"{k} {s:.1%}" for k, s in list(v["added"].items())[:6])
            unseen = f"; values not in the old rows: {', '.join(v['unseen_values'][:6])}" if v["unseen_values"] else ""
            lines.append(f"  {view}: total variation {v['total_variation']}; added: {top}{unseen}")
    ln = d["length"]
    if ln["chars_added"]:
        o, a = ln["chars_old"] or {}, ln["chars_added"]
        lines.append(f"  length (chars) p10/p50/p90: old {o.get('p10')}/{o.get('p50')}/{o.get('p90')}, "
                     f"added {a['p10']}/{a['p50']}/{a['p90']}; total variation {ln['total_variation']}")
    for n, g in d["ngrams"].items():
        if g["new_share_added"] is not None:
            lines.append(f"  new word {n}s: {g['new_share_added']:.1%} of the added rows' occurrences "
                         f"(within the old rows, half against half: {g['new_share_within_old'] or 0:.1%})")
    return "\n".join(lines)
