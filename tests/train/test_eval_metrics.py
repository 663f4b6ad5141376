"""Metric arithmetic against values worked out by hand or by the reference library."""

from __future__ import annotations

import numpy as np
import pytest

from corpusmill.evaluate import metrics as M


def test_classification_scores_by_hand():
    # classes 0,1,2; true 0 0 0 1 1 2, predicted 0 0 1 1 2 2
    s = M.classification_scores(np.array([0, 0, 0, 1, 1, 2]), np.array([0, 0, 1, 1, 2, 2]), 3)
    # per class: p = (1, 1/2, 1/2), r = (2/3, 1/2, 1), f1 = (0.8, 0.5, 2/3)
    assert s["accuracy"] == pytest.approx(4 / 6)
    assert s["macro_precision"] == pytest.approx((1 + 0.5 + 0.5) / 3)
    assert s["macro_recall"] == pytest.approx((2 / 3 + 0.5 + 1) / 3)
    assert s["macro_f1"] == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    assert s["micro_f1"] == pytest.approx(4 / 6)
    assert M.confusion(np.array([0, 0, 0, 1, 1, 2]), np.array([0, 0, 1, 1, 2, 2]), 3).tolist() == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]


def test_bootstrap_resamples_agree_with_the_point_formula():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 200)
    p = np.where(rng.random(200) < 0.7, y, rng.integers(0, 4, 200))
    idx = M.resamples(200, 50, seed=1)
    batch = M._bootstrap_classification(y, p, 4, idx)
    for b in (0, 17, 49):
        one = M.classification_scores(y[idx[b]], p[idx[b]], 4, present=np.unique(y))
        for k, v in one.items():
            assert batch[k][b] == pytest.approx(v), k
    ci = M.classification_set(y, p, 4).with_intervals(M.resamples(200, 500, 0))
    assert ci["accuracy_ci"][0] < ci["accuracy"] < ci["accuracy_ci"][1]


def test_paired_bootstrap_sees_a_real_difference_and_not_a_fake_one():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    weak = np.where(rng.random(400) < 0.6, y, 1 - y)
    strong = np.where(rng.random(400) < 0.9, y, 1 - y)
    idx = M.resamples(400, 1000, 0)
    real = M.paired_bootstrap(M.classification_set(y, weak, 2), M.classification_set(y, strong, 2), idx, {})
    assert real["accuracy"]["p_value"] < 0.01 and real["accuracy"]["better"] == "second"
    same = M.paired_bootstrap(M.classification_set(y, weak, 2), M.classification_set(y, weak, 2), idx, {})
    assert same["accuracy"]["p_value"] == 1.0 and same["accuracy"]["better"] is None


def test_mcnemar_exact_and_approximate():
    a = np.array([True] * 1 + [False] * 9 + [True] * 20)
    b = np.array([False] * 1 + [True] * 9 + [True] * 20)
    # 1 vs 9 discordant pairs: p = 2 * (C(10,0) + C(10,1)) / 2^10
    assert M.mcnemar(a, b)["p_value"] == pytest.approx(2 * 11 / 1024)
    big_a = np.r_[np.ones(2600, bool), np.zeros(2500, bool)]
    assert M.mcnemar(big_a, ~big_a)["p_value"] == pytest.approx(0.16, abs=0.01)  # chi2 = 99^2/5100


def test_perplexity_is_token_weighted():
    s = M.perplexity_set(np.array([2.0, 6.0]), np.array([1, 3]))
    assert s.point["loss"] == pytest.approx(2.0) and s.point["perplexity"] == pytest.approx(np.exp(2.0))


def test_generation_metrics_match_sacrebleu():
    import sacrebleu

    hyps = ["the cat sat on the mat", "a dog barked loudly", "paris is the capital of france"]
    refs = ["the cat sat on the mat", "the dog barked", "Paris is the capital of France."]
    s = M.generation_set(hyps, refs)
    assert s.point["exact_match"] == pytest.approx(1 / 3)
    assert s.point["bleu"] == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs]).score)
    assert s.point["chrf"] == pytest.approx(sacrebleu.corpus_chrf(hyps, [refs]).score)
    res = s.resampled(np.array([[0, 0, 0], [1, 2, 2]]))
    assert res["bleu"][0] == pytest.approx(100.0) and res["exact_match"].tolist() == [1.0, 0.0]
