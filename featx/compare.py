"""The statistics of a layer comparison: intervals, ties, the winner, per-class
scores and layer similarity.

Fold scores of repeated k-fold CV are not independent (training sets overlap),
so the naive standard error is too small. Intervals and paired tests use the
corrected resampled t statistic of Nadeau & Bengio (2003, "Inference for the
generalization error"): the variance of the mean of J = k·r fold scores is
``(1/J + n_test/n_train) · s²``, with J - 1 degrees of freedom.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from scipy import stats
from sklearn.metrics import precision_recall_fscore_support

if TYPE_CHECKING:  # the report's rows; featx.report imports this module
    from featx.report.records import ResultRow

#: Exact ties of mean accuracy go to the simpler classifier, in this order.
SIMPLICITY = ("ridge", "logreg", "svm", "sgd", "mlp")
ALPHA = 0.05
TIE_RULE = (
    "the best has the highest mean CV accuracy; an exact tie goes to the simpler "
    "classifier (ridge, logreg, svm, sgd, mlp), then the shallower layer. "
    "Combinations marked tied are not distinguishable from it: a corrected "
    "resampled t-test (Nadeau & Bengio 2003) on the same folds gives p >= 0.05"
)


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


def _rank(row: ResultRow, depth) -> tuple:
    clf = row.clf
    simple = SIMPLICITY.index(clf) if clf in SIMPLICITY else len(SIMPLICITY)
    return (-row.cv_accuracy_mean, simple, depth(row.layer), row.layer)


def best_of(rows: list[ResultRow], depth) -> ResultRow:
    """The winner among ``rows`` by :data:`TIE_RULE` (``depth(layer)`` orders
    layers)."""
    return min(rows, key=lambda r: _rank(r, depth))


def choose_best(rows: list[ResultRow], depth) -> ResultRow:
    """The winner (:func:`best_of`); marks every row's ``tied_with_best`` and
    ``p_vs_best`` against it."""
    best = best_of(rows, depth)
    for row in rows:
        cv = row.cv
        if row is best:
            row.p_vs_best, row.tied_with_best = 1.0, True
            continue
        p = paired_p(best.cv_scores["accuracy"], row.cv_scores["accuracy"], cv)
        row.p_vs_best = p
        row.tied_with_best = bool(p >= ALPHA)
    return best


#: How the report picks "the simplest" of several tied combinations.
SIMPLEST_RULE = (
    "the simplest is the one with the fewest features, then the simplest "
    "classifier (ridge, logreg, svm, sgd, mlp), then the shallower layer"
)


def simplest_of(rows: list[ResultRow], depth=None) -> ResultRow:
    """The simplest of ``rows`` by :data:`SIMPLEST_RULE` (``depth(layer)``
    orders layers; by name without it)."""

    def key(row):
        clf = row.classifier or row.clf
        simple = SIMPLICITY.index(clf) if clf in SIMPLICITY else len(SIMPLICITY)
        return (row.n_features, simple, "+" in row.clf,
                depth(row.layer) if depth else 0, row.layer)  # fmt: skip

    return min(rows, key=key)


def per_class(y_true, y_pred, classes: list[str]) -> dict:
    """Precision, recall, F1 and support of every class."""
    p, r, f, s = precision_recall_fscore_support(
        y_true, y_pred, labels=range(len(classes)), zero_division=0
    )
    return {
        name: {
            "precision": float(p[i]),
            "recall": float(r[i]),
            "f1": float(f[i]),
            "support": int(s[i]),
        }
        for i, name in enumerate(classes)
    }


def linear_cka(X: np.ndarray, Y: np.ndarray) -> float:
    """Linear CKA of two representations of the same rows (Kornblith et al.
    2019), through the rows' Gram matrices, so wide layers cost n² not d²."""
    X = X - X.mean(axis=0)
    Y = Y - Y.mean(axis=0)
    K = X.astype(np.float64) @ X.T.astype(np.float64)
    L = Y.astype(np.float64) @ Y.T.astype(np.float64)
    hsic = float((K * L).sum())
    norm = float(np.sqrt((K * K).sum() * (L * L).sum()))
    return hsic / norm if norm > 0 else 0.0
