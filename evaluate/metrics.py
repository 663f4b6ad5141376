"""Metrics with uncertainty: point estimates, 95% bootstrap intervals, paired tests between models.

Every metric is a function of per-row statistics, so one set of bootstrap resamples (row indices
drawn with replacement) serves all metrics and, shared between two models, gives the paired test:
the same resampled rows are scored for both, and the interval of the difference says whether the
difference is more than the luck of which rows ended up in the test split.

Pure numpy (and sacrebleu for BLEU/chrF statistics); no torch.
"""

from __future__ import annotations

import math

import numpy as np

# ----------------------------------------------------------------------------- classification


def confusion(y_true: np.ndarray, y_pred: np.ndarray, k: int) -> np.ndarray:
    """k x k counts; rows are the true class, columns the predicted one."""
    return np.bincount(y_true * k + y_pred, minlength=k * k).reshape(k, k)


def _prf(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    with np.errstate(invalid="ignore", divide="ignore"):
        p = np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1), 0.0)
        r = np.where(tp + fn > 0, tp / np.maximum(tp + fn, 1), 0.0)
        f = np.where(p + r > 0, 2 * p * r / np.where(p + r > 0, p + r, 1), 0.0)
    return p, r, f


def classification_scores(y_true: np.ndarray, y_pred: np.ndarray, k: int, present: np.ndarray | None = None) -> dict[str, float]:
    """accuracy, macro and micro precision/recall/F1.

    Macro averages run over the classes present in ``y_true`` (or ``present``), as scikit-learn
    does with ``labels=`` the true classes: a class the split does not contain cannot be recalled.
    Micro precision = recall = F1 = accuracy for single-label data; they are reported anyway.
    """
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    if len(y_true) == 0:
        return {m: float("nan") for m in CLASSIFICATION_METRICS}
    cm = confusion(y_true, y_pred, k)
    tp = np.diag(cm).astype(float)
    fp = cm.sum(0) - tp
    fn = cm.sum(1) - tp
    p, r, f = _prf(tp, fp, fn)
    classes = present if present is not None else np.flatnonzero(cm.sum(1) > 0)
    mp, mr, mf = _prf(tp.sum(), fp.sum(), fn.sum())
    return {
        "accuracy": float(tp.sum() / len(y_true)),
        "macro_precision": float(p[classes].mean()), "macro_recall": float(r[classes].mean()),
        "macro_f1": float(f[classes].mean()),
        "micro_precision": float(mp), "micro_recall": float(mr), "micro_f1": float(mf),
    }


CLASSIFICATION_METRICS = ("accuracy", "macro_precision", "macro_recall", "macro_f1",
                          "micro_precision", "micro_recall", "micro_f1")


def _bootstrap_classification(y_true, y_pred, k, idx: np.ndarray) -> dict[str, np.ndarray]:
    """The metrics on every resample (rows of ``idx``), vectorised over resamples."""
    t, p = y_true[idx], y_pred[idx]  # (B, n)
    present = np.flatnonzero(np.bincount(y_true, minlength=k) > 0)
    tp = np.stack([((t == c) & (p == c)).sum(1) for c in range(k)], 1).astype(float)  # (B, k)
    fp = np.stack([((t != c) & (p == c)).sum(1) for c in range(k)], 1).astype(float)
    fn = np.stack([((t == c) & (p != c)).sum(1) for c in range(k)], 1).astype(float)
    pr, rc, f1 = _prf(tp, fp, fn)
    mp, mr, mf = _prf(tp.sum(1), fp.sum(1), fn.sum(1))
    n = idx.shape[1]
    return {"accuracy": tp.sum(1) / n, "macro_precision": pr[:, present].mean(1), "macro_recall": rc[:, present].mean(1),
            "macro_f1": f1[:, present].mean(1), "micro_precision": mp, "micro_recall": mr, "micro_f1": mf}


# ----------------------------------------------------------------------------- bootstrap


def resamples(n: int, b: int, seed: int) -> np.ndarray:
    """(b, n) row indices drawn with replacement; shared between models for paired tests."""
    return np.random.default_rng([seed, n]).integers(0, n, size=(b, n))


def interval(samples: np.ndarray, level: float = 0.95) -> list[float]:
    lo, hi = np.nanpercentile(samples, [100 * (1 - level) / 2, 100 * (1 + level) / 2])
    return [float(lo), float(hi)]


class MetricSet:
    """Per-row statistics of one model on one split, and how to turn any subset of rows into metrics."""

    def __init__(self, point: dict[str, float], on_resamples) -> None:
        self.point = point
        self._on_resamples = on_resamples

    def resampled(self, idx: np.ndarray) -> dict[str, np.ndarray]:
        return self._on_resamples(idx)

    def with_intervals(self, idx: np.ndarray) -> dict[str, float | list[float]]:
        res = self.resampled(idx)
        out: dict[str, float | list[float]] = {}
        for name, value in self.point.items():
            out[name] = value
            out[f"{name}_ci"] = interval(res[name])
        return out


def classification_set(y_true: np.ndarray, y_pred: np.ndarray, k: int) -> MetricSet:
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    return MetricSet(classification_scores(y_true, y_pred, k), lambda idx: _bootstrap_classification(y_true, y_pred, k, idx))


def perplexity_set(nll_sum: np.ndarray, n_tokens: np.ndarray) -> MetricSet:
    """Token-weighted: exp(sum of NLL / sum of target tokens), resampled by row."""
    nll_sum = np.asarray(nll_sum, dtype=float)
    n_tokens = np.asarray(n_tokens, dtype=float)

    def point(s, n):
        return {"perplexity": math.exp(s / n) if n else float("nan"), "loss": s / n if n else float("nan")}

    def res(idx):
        s, n = nll_sum[idx].sum(1), n_tokens[idx].sum(1)
        loss = s / np.maximum(n, 1)
        return {"perplexity": np.exp(loss), "loss": loss}

    return MetricSet(point(nll_sum.sum(), n_tokens.sum()), res)


def generation_set(hypotheses: list[str], references: list[str]) -> MetricSet:
    """Exact match (after stripping whitespace), corpus BLEU and chrF (sacrebleu), resampled by row
    through their per-sentence sufficient statistics (as sacrebleu's own paired bootstrap does)."""
    from sacrebleu.metrics import BLEU, CHRF

    bleu, chrf = BLEU(), CHRF()
    refs = [references]
    b_stats = np.asarray(bleu._extract_corpus_statistics(hypotheses, refs), dtype=float)
    c_stats = np.asarray(chrf._extract_corpus_statistics(hypotheses, refs), dtype=float)
    em = np.asarray([h.strip() == r.strip() for h, r in zip(hypotheses, references)], dtype=float)

    def score(metric, stats):
        return float(metric._compute_score_from_stats(list(stats)).score)

    point = {"exact_match": float(em.mean()) if len(em) else float("nan"),
             "bleu": score(bleu, b_stats.sum(0)), "chrf": score(chrf, c_stats.sum(0))}

    def res(idx):
        return {"exact_match": em[idx].mean(1),
                "bleu": np.asarray([score(bleu, b_stats[i].sum(0)) for i in idx]),
                "chrf": np.asarray([score(chrf, c_stats[i].sum(0)) for i in idx])}

    return MetricSet(point, res)


# ----------------------------------------------------------------------------- comparisons


def paired_bootstrap(a: MetricSet, b: MetricSet, idx: np.ndarray, higher_is_better: dict[str, bool]) -> dict:
    """b - a on every metric: the difference, its 95% interval over shared resamples, and a
    two-sided p-value (twice the share of resamples on the far side of zero)."""
    ra, rb = a.resampled(idx), b.resampled(idx)
    out = {}
    for name in a.point:
        if name not in b.point:
            continue
        d = rb[name] - ra[name]
        d = d[~np.isnan(d)]
        p = min(1.0, 2 * min((d <= 0).mean(), (d >= 0).mean())) if len(d) else float("nan")
        diff = b.point[name] - a.point[name]
        out[name] = {"difference": diff, "difference_ci": interval(d) if len(d) else [float("nan")] * 2,
                     "p_value": float(p),
                     "better": None if p > 0.05 else ("second" if (diff > 0) == higher_is_better.get(name, True) else "first")}
    return out


def mcnemar(correct_a: np.ndarray, correct_b: np.ndarray) -> dict:
    """McNemar's test on paired correctness: exact binomial on the discordant pairs (n <= 5000),
    else the chi-square approximation with continuity correction."""
    a, b = np.asarray(correct_a, bool), np.asarray(correct_b, bool)
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    n = only_a + only_b
    if n == 0:
        p = 1.0
    elif n <= 5000:
        k = min(only_a, only_b)
        tail = sum(math.comb(n, i) for i in range(k + 1))
        p = min(1.0, 2 * tail / 2**n)
    else:
        chi2 = (abs(only_a - only_b) - 1) ** 2 / n
        p = math.erfc(math.sqrt(chi2 / 2))
    return {"only_first_correct": only_a, "only_second_correct": only_b, "p_value": float(p)}
