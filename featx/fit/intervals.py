"""The intervals and paired tests of cross-validated scores.

Fold scores of repeated k-fold CV are not independent (training sets overlap),
so the naive standard error is too small. Intervals and paired tests use the
corrected resampled t statistic of Nadeau & Bengio (2003, "Inference for the
generalization error"): the variance of the mean of J = k·r fold scores is
``(1/J + n_test/n_train) · s²``, with J - 1 degrees of freedom.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

__all__ = ["ci95", "paired_p"]


def _ratio(cv: int) -> float:
    """n_test / n_train of one k-fold split."""
    return 1.0 / (cv - 1)


def ci95(scores, cv: int) -> list[float]:
    """The corrected 95% interval of the mean of ``scores`` (k folds × r
    repeats), clipped to [0, 1]."""
    scores = np.asarray(scores, float)
    mean = float(scores.mean())
    if len(scores) < 2 or scores.std() == 0:
        return [mean, mean]
    var = (1 / len(scores) + _ratio(cv)) * scores.var(ddof=1)
    half = float(stats.t.ppf(0.975, len(scores) - 1) * np.sqrt(var))
    return [max(0.0, mean - half), min(1.0, mean + half)]


def paired_p(a, b, cv: int) -> float:
    """Two-sided p of the corrected resampled t-test of ``a`` against ``b``,
    fold scores on the same folds."""
    d = np.asarray(a, float) - np.asarray(b, float)
    if len(d) < 2:
        return 1.0
    if np.all(d == d[0]):
        return 1.0 if d[0] == 0 else 0.0
    var = (1 / len(d) + _ratio(cv)) * d.var(ddof=1)
    t = d.mean() / np.sqrt(var)
    return float(2 * stats.t.sf(abs(t), len(d) - 1))
