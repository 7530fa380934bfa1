"""Scoring fitted pipelines: confusion matrices, each row's top score, the
regularisation a pipeline chose, and the BLAS thread limit folds run under."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import confusion_matrix
from threadpoolctl import threadpool_limits

from pipelines.views import ViewEnsemble

__all__ = ["confusion", "top_score", "one_blas_thread", "chosen_params"]


def confusion(y_true, y_pred, n_classes: int) -> np.ndarray:
    return confusion_matrix(y_true, y_pred, labels=range(n_classes))


def top_score(model, X: np.ndarray) -> np.ndarray:
    """The score of each row's predicted class: a probability where the model
    has one, else its decision value."""
    if hasattr(model, "predict_proba"):
        return model.predict_proba(X).max(axis=1)
    scores = model.decision_function(X)
    return np.abs(scores) if scores.ndim == 1 else scores.max(axis=1)


def one_blas_thread():
    """Classifiers fit with one BLAS thread each; the cores go to folds run in
    threads (the solvers and BLAS release the GIL, and nothing is copied to
    worker processes).

    Measured on the demo's fc6 (1,437 x 4,096, 10 classes), 5 folds: logistic
    regression 19.5 s with two BLAS threads one fold at a time, 3.0 s with one
    BLAS thread and two folds in threads; the tuned svm on 2,000 x 9,216 4.9 s
    against 2.9 s (4.7 s in loky processes). And results no longer depend on
    ``jobs``: with a fixed BLAS thread count the MLP's floating-point sums are
    the same however the folds are spread.
    """
    return threadpool_limits(1)


def chosen_params(pipeline) -> dict:
    """The regularisation a fitted pipeline's classifier chose (or was given)."""
    clf = pipeline[-1]
    if isinstance(clf, ViewEnsemble):
        clf = clf.estimator_[-1]
    if hasattr(clf, "best_params_"):
        return {k: float(v) for k, v in clf.best_params_.items()}
    params = clf.get_params()
    keys = ("C", "alpha", "weight_decay")
    return {k: float(params[k]) for k in keys if k in params}
