"""The band plan, candidate pairs, clusters and exact set similarity."""

from __future__ import annotations

import random

import numpy as np
import pyarrow as pa
import pytest

from corpusmill.dataprep import lsh
from corpusmill.dataprep.minhash import Shingling


@pytest.mark.parametrize("threshold,num_perm,fp,fn", [(0.8, 128, 0.5, 0.5), (0.7, 128, 0.5, 0.5),
                                                      (0.9, 256, 0.3, 0.7), (0.5, 64, 0.5, 0.5)])
def test_band_plan_matches_datasketch(threshold, num_perm, fp, fn):
    from datasketch.lsh import _optimal_param

    plan = lsh.BandPlan.choose(threshold, num_perm, fp, fn)
    assert (plan.bands, plan.rows) == _optimal_param(threshold, num_perm, fp, fn)


def test_s_curve_is_what_the_plan_promises():
    plan = lsh.BandPlan.choose(0.8, 128, 0.05, 0.95)
    curve = plan.s_curve()
    probs = list(curve.values())
    assert probs == sorted(probs) and curve["1.00"] == 1.0
    assert curve["0.85"] >= 0.95  # the default favours recall: pairs above the threshold are found
    assert plan.miss_rate == pytest.approx((1 - 0.8 ** plan.rows) ** plan.bands)
    assert f"{plan.bands} bands x {plan.rows} rows" in plan.describe()
    given = lsh.BandPlan.choose(0.8, 128, 0.5, 0.5, bands=32)
    assert (given.bands, given.rows, given.chosen) == (32, 4, "given")


def test_components_match_union_find():
    rng = random.Random(0)
    n = 500
    edges = np.array(sorted({tuple(sorted(rng.sample(range(n), 2))) for _ in range(400)}))
    label = lsh.components(n, edges)
    parent = list(range(n))

    def find(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in edges.tolist():
        parent[find(a)] = find(b)
    groups: dict[int, list[int]] = {}
    for x in range(n):
        groups.setdefault(find(x), []).append(x)
    for members in groups.values():
        assert set(label[members].tolist()) == {min(members)}  # one label: the smallest member


def test_bucket_pairs_links_every_bucket():
    keys = np.array([7, 3, 7, 9, 3, 7] + [5] * 40, dtype=np.uint64)
    who = np.arange(len(keys)) * 10
    pairs = lsh.bucket_pairs(keys, who)
    as_set = {tuple(p) for p in pairs.tolist()}
    assert {(0, 20), (0, 50), (20, 50), (10, 40)} <= as_set  # small buckets: every pair
    big = [p for p in as_set if p[0] >= 60]
    assert len(big) < 2 * 40  # a large bucket: linear, not 780 pairs
    label = lsh.components(len(keys) * 10, pairs)
    assert len(set(label[60::10].tolist())) == 1  # ... but still one cluster
    assert (3 * 10, 3 * 10) not in as_set


def test_set_jaccard_is_exact():
    texts = ["a b c d e f", "a b c d x y", "q r s", "", "a b c d e f"]
    sh = Shingling("word", 1).shingles(pa.array(texts))
    sets = lsh.unique_sets(sh)
    pairs = np.array([[0, 1], [0, 2], [0, 3], [0, 4], [1, 1]])
    np.testing.assert_allclose(lsh.set_jaccard(sets, pairs), [4 / 8, 0.0, 0.0, 1.0, 1.0])


def test_matching_keys_finds_every_equal_pair_and_caps():
    from corpusmill.dataprep.lsh import matching_keys

    rng = np.random.default_rng(4)
    keys = rng.integers(1, 2**63, 3000, dtype=np.uint64)
    keys[:5] = keys[0]  # one key held by five new rows
    keys[7] = 0  # no key
    query = rng.integers(1, 2**63, 50_000, dtype=np.uint64)
    query[::500] = keys[rng.integers(0, 3000, 100)]
    query[3] = keys[0]
    query[4] = 0
    i, j = matching_keys(query, keys)
    holders: dict[int, list[int]] = {}
    for b, k in enumerate(keys.tolist()):
        holders.setdefault(k, []).append(b)
    want = {(a, b) for a, q in enumerate(query.tolist()) if q for b in holders.get(q, [])}
    assert set(zip(i.tolist(), j.tolist())) == want and len(i) == len(want) > 100
    i, _ = matching_keys(query, keys, max_per_query=2)
    assert np.bincount(i).max() == 2 and set(i.tolist()) == {a for a, _ in want}


def test_band_plan_choice_matches_the_pair_by_pair_search():
    """The vectorised search picks the pair a plain loop over (bands, rows) picks: a different
    plan would change every index written from then on."""
    import numpy as np

    from corpusmill.dataprep.lsh import BandPlan

    def loop(threshold, num_perm, wfp, wfn):
        x0, x1 = np.linspace(0.0, threshold, 201), np.linspace(threshold, 1.0, 201)
        best = None
        for b in range(1, num_perm + 1):
            for r in range(1, num_perm // b + 1):
                y0, y1 = 1 - (1 - x0 ** r) ** b, (1 - x1 ** r) ** b
                fp = float(((y0[1:] + y0[:-1]) * 0.5 * np.diff(x0)).sum())
                fn = float(((y1[1:] + y1[:-1]) * 0.5 * np.diff(x1)).sum())
                err = wfp * fp + wfn * fn
                if best is None or err < best[0] - 1e-12:
                    best = (err, b, r)
        return best[1], best[2]

    for threshold, num_perm, fp, fn in [(0.8, 128, 0.5, 0.5), (0.7, 64, 0.05, 0.95), (0.9, 100, 0.9, 0.1), (0.5, 32, 1, 1)]:
        plan = BandPlan.choose(threshold, num_perm, fp, fn)
        assert (plan.bands, plan.rows) == loop(threshold, num_perm, fp / (fp + fn), fn / (fp + fn))
        assert plan.chosen == "optimised" and plan.bands * plan.rows <= num_perm
