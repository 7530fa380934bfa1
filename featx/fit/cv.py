"""In-memory cross-validation: folds run in threads, then a refit on every row."""

from __future__ import annotations

import contextlib
import time
from dataclasses import replace

import numpy as np
from joblib import Parallel, delayed, effective_n_jobs
from sklearn.base import clone
from sklearn.metrics import accuracy_score, f1_score

from featx.cache import FeatureCache
from featx.errors import param
from featx.fit.result import CVOutcome
from featx.fit.scoring import chosen_params, confusion, one_blas_thread, top_score
from featx.fit.spec import SCORING, FitError, FitSpec, consensus
from featx.fit.streaming import cv_streaming
from featx.images.views import CENTER

__all__ = ["cv_in_memory", "cross_validate", "used_views"]


def _fold(estimator, X, labels, train, test, n_classes):
    """Fit one fold and score it as ``cross_validate`` does (same scorers)."""
    model = clone(estimator)
    started = time.perf_counter()
    model.fit(X[train], labels[train])
    fit_time = time.perf_counter() - started
    pred = model.predict(X[test])
    return (
        float(accuracy_score(labels[test], pred)),
        float(f1_score(labels[test], pred, average="macro")),
        fit_time,
        confusion(labels[test], pred, n_classes),
        chosen_params(model),
        pred,
        top_score(model, X[test]),
    )


def _run_folds(estimator, X, labels, spec: FitSpec, splits, n_classes: int):
    """Each fold's result, in order, as the folds finish: in threads locally,
    through Ray's joblib backend with ``engine="ray"``."""
    local = spec.engine != "ray"
    # Ray's joblib backend cannot stream results: folds then report at the end
    return Parallel(
        n_jobs=min(effective_n_jobs(spec.jobs), len(splits)) if local else spec.jobs,
        return_as="generator" if local else "list",
        prefer="threads" if local else None,
    )(
        delayed(_fold)(estimator, X, labels, train, test, n_classes)
        for train, test in splits
    )


def cv_in_memory(
    X: np.ndarray, labels: np.ndarray, spec: FitSpec, n_views: int = 1
) -> CVOutcome:
    """Cross-validate ``spec`` on ``X`` fold by fold (the numbers equal
    scikit-learn's ``cross_validate``), then refit it on every row.

    With ``n_views`` > 1 a row of ``X`` holds that many views of one image
    (:class:`pipelines.views.ViewEnsemble`): folds split images, never views."""
    n_classes = int(labels.max()) + 1
    estimator = spec.estimator(len(labels), X.shape[1], n_views)
    parallel = contextlib.nullcontext()
    if spec.engine == "ray":
        from featx.fit.ray_backend import joblib_backend

        parallel = joblib_backend(spec.address)
    splits = spec.splits(labels)
    outcome = CVOutcome({m: [] for m in SCORING}, [], None, None)
    outcome.confusion = np.zeros((n_classes, n_classes), np.int64)
    outcome.oof_pred = np.full(len(labels), -1, np.int64)
    outcome.oof_score = np.zeros(len(labels))
    spec.progress.describe(f"fold 1/{len(splits)}")
    with parallel, one_blas_thread():
        results = _run_folds(estimator, X, labels, spec, splits, n_classes)
        for k, (fold, (_, test)) in enumerate(zip(results, splits, strict=True), 1):
            acc, f1, fit_time, matrix, params, pred, score = fold
            outcome.scores["accuracy"].append(acc)
            outcome.scores["f1_macro"].append(f1)
            outcome.fit_times.append(fit_time)
            outcome.fold_params.append(params)
            if k <= spec.cv:  # the first repeat: one prediction per row
                outcome.confusion += matrix
                outcome.oof_pred[test], outcome.oof_score[test] = pred, score
            spec.progress.describe(f"fold {k}/{len(splits)} done: accuracy {acc:.4f}")
            spec.progress.advance(1)
    spec.progress.describe("refitting on every row")
    if spec.tuned and outcome.fold_params:
        # the value most folds chose (ties: the stronger regularisation), rather
        # than a sixth inner search on every row, fitted in the row space as the
        # folds' were
        estimator = replace(
            spec, value=consensus(spec.clf, outcome.fold_params)
        ).estimator(len(labels), X.shape[1], n_views, row_space=True)
    with one_blas_thread():
        outcome.final = estimator.fit(X, labels)
    outcome.params = chosen_params(outcome.final)
    return outcome


def cross_validate(
    train: FeatureCache, layer: str, labels: np.ndarray, spec: FitSpec
) -> CVOutcome:
    """Cross-validate ``spec`` on one layer of ``train`` and refit it."""
    n_rows, n_features = train.dataset(layer).shape
    smallest_fold = n_rows - -(-n_rows // spec.cv)
    if spec.pca and spec.pca > min(smallest_fold, n_features):
        raise FitError(
            f"{param('pca', spec.pca)} exceeds what a training fold holds "
            f"({smallest_fold} rows x {n_features} features)"
        )
    views = used_views(train, layer, spec)
    spec.progress.start(f"folds {layer}", spec.cv * spec.repeats)
    try:
        if spec.clf == "sgd":
            outcome = cv_streaming(train, layer, labels, spec)
        else:
            X = train.read_views(layer, views)
            outcome = cv_in_memory(X, labels, spec, len(views))
    finally:
        spec.progress.finish()
    outcome.views = list(views)
    return outcome


def used_views(cache: FeatureCache, layer: str, spec: FitSpec) -> tuple[str, ...]:
    """The views of ``layer`` a fit uses: every complete one the cache holds,
    unless ``center_only`` (sgd streams the centre only)."""
    if spec.center_only or spec.clf == "sgd":
        return (CENTER,)
    return cache.views(layer)
