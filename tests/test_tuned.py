"""pipelines.tuned: the inner search against GridSearchCV, and the row space."""

import warnings

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression, RidgeClassifier
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.neural_network import MLPClassifier
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC

import pipelines
from pipelines import tuned
from pipelines.tuned import TunedClassifier
from tests.numerics import (
    assert_same_predictions,
    assert_scores_match,
    decision_margin,
    near_boundary,
)


@pytest.fixture(scope="module")
def wide():
    """Three classes, 240 rows, 1,500 standardised columns (wider than tall)."""
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 80)
    centres = rng.normal(size=(3, 1500)) * 0.08
    X = rng.normal(size=(240, 1500)) + centres[y]
    X_new = rng.normal(size=(90, 1500)) + centres[np.repeat(np.arange(3), 30)]
    scaler = StandardScaler().fit(X)
    return (
        scaler.transform(X).astype(np.float32),
        y,
        scaler.transform(X_new).astype(np.float32),
    )


GRID = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)


@pytest.mark.slow
def test_inner_search_equals_grid_search_cv(wide):
    X, y, X_new = wide
    ours = TunedClassifier(
        LogisticRegression(max_iter=1000), param="C", grid=GRID, row_space=False
    ).fit(X, y)
    ref = GridSearchCV(
        LogisticRegression(max_iter=1000),
        {"C": list(GRID)},
        cv=StratifiedKFold(3, shuffle=True, random_state=0),
        scoring="accuracy",
    ).fit(X, y)
    assert ours.best_params_ == ref.best_params_
    np.testing.assert_allclose(ours.inner_scores_, ref.cv_results_["mean_test_score"])
    np.testing.assert_array_equal(ours.predict(X_new), ref.predict(X_new))


_REFERENCE: dict = {}


def reference_inner_scores(estimator, param, grid, X, y, rtol):
    key = (repr(estimator), param, grid, rtol)
    if key not in _REFERENCE:  # the same for both bases: computed once
        _REFERENCE[key] = _reference_inner_scores(estimator, param, grid, X, y, rtol)
    return _REFERENCE[key]


def _reference_inner_scores(estimator, param, grid, X, y, rtol):
    """Inner accuracy of each value of ``grid`` from scikit-learn alone (the
    inner folds TunedClassifier documents: 3, stratified, shuffled, seed 0), and
    the share of each value's validation rows whose decision lies within ``rtol``
    of the boundary: those may be predicted either way by a fit whose decisions
    differ by ``rtol``."""
    splits = list(StratifiedKFold(3, shuffle=True, random_state=0).split(X, y))
    scores, near = np.zeros(len(grid)), np.zeros(len(grid))
    for k, value in enumerate(grid):
        for train, val in splits:
            model = clone(estimator).set_params(**{param: value})
            model.fit(X[train], y[train])
            decision = model.decision_function(X[val])
            scores[k] += (model.predict(X[val]) == y[val]).mean() / len(splits)
            close = near_boundary(decision, decision_margin(decision, rtol))
            near[k] += close.mean() / len(splits)
    return scores, near


@pytest.mark.slow
@pytest.mark.parametrize("basis", ["cholesky", "eigen"])
@pytest.mark.parametrize(
    ("estimator", "param", "grid", "rtol"),
    [
        (RidgeClassifier(), "alpha", (1e4, 1e3, 1e2, 10.0), 1e-4),
        (LogisticRegression(max_iter=2000, tol=1e-8), "C", GRID, 1e-3),
    ],
)
def test_row_space_fits_the_same_model(wide, estimator, param, grid, rtol, basis):
    # The row space solves the same problem in another basis: its decisions
    # match scikit-learn's within rtol, and its inner accuracies match except for
    # rows that close to the boundary (one such row of 240 flipped on AVX2).
    X, y, X_new = wide
    fast = TunedClassifier(estimator, param=param, grid=grid, basis=basis)
    fast.set_params(row_space=True).fit(X, y)
    want, near = reference_inner_scores(estimator, param, grid, X, y, rtol)
    assert near.max() < 0.02  # a margin, not a licence: few rows are that close
    assert_scores_match(fast.inner_scores_, want, near)
    # the choice is the best value, or one tied with it within those rows
    chosen = grid.index(fast.best_params_[param])
    assert want[chosen] >= want.max() - near[chosen] - near[np.argmax(want)]
    plain = clone(estimator).set_params(**{param: grid[chosen]}).fit(X, y)
    a, b = fast.decision_function(X_new), plain.decision_function(X_new)
    np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * np.abs(b).max())
    assert fast.estimator_.coef_.shape == (3, X.shape[1])  # original features


def test_row_space_svm_is_close(wide):
    # LinearSVC penalises its intercept, which the row space does not see.
    X, y, X_new = wide
    kw = {"param": "C", "grid": GRID}
    fast = TunedClassifier(LinearSVC(dual="auto"), row_space=True, **kw).fit(X, y)
    plain = TunedClassifier(LinearSVC(dual="auto"), row_space=False, **kw).fit(X, y)
    assert (fast.predict(X_new) == plain.predict(X_new)).mean() >= 0.95


def test_mlp_first_layer_is_mapped_to_the_original_features(wide):
    X, y, X_new = wide
    mlp = MLPClassifier(hidden_layer_sizes=(16,), max_iter=300, random_state=0)
    model = TunedClassifier(mlp, param="alpha", grid=(1.0, 1e-2), inner_cv=2)
    model.fit(X, y)
    assert model.estimator_.coefs_[0].shape == (X.shape[1], 16)
    assert (model.predict(X_new) == np.repeat(np.arange(3), 30)).mean() > 0.6
    assert model.predict_proba(X_new).shape == (90, 3)


@pytest.mark.parametrize("basis", ["cholesky", "eigen"])
def test_mlp_mapped_back_predicts_as_it_did_on_coordinates(wide, basis):
    X, y, X_new = wide
    mlp = MLPClassifier(hidden_layer_sizes=(8,), max_iter=50, random_state=0)
    model = TunedClassifier(mlp, param="alpha", grid=(1.0,), basis=basis).fit(X, y)
    # the same MLP, fitted by hand on the coordinates of the same basis
    gram = (X @ X.T).astype(np.float64)
    rows = np.arange(len(X))
    Z, _, coords = tuned._row_space(gram, rows, rows[:0], basis)
    Z_new = coords.coords(X @ X_new.T.astype(np.float64))
    on_coords = clone(mlp).set_params(alpha=1.0).fit(Z, y)
    np.testing.assert_allclose(
        model.predict_proba(X_new), on_coords.predict_proba(Z_new), atol=1e-4
    )


def test_follows_scikit_learn_conventions(wide):
    X, y, _ = wide
    model = TunedClassifier(RidgeClassifier(), param="alpha", grid=(10.0, 1.0))
    twin = clone(model)
    assert twin.get_params()["grid"] == (10.0, 1.0) and not hasattr(twin, "classes_")
    assert not hasattr(model, "predict_proba")  # RidgeClassifier has none
    with pytest.raises(ValueError, match=r"`param` must be a parameter of Ridge"):
        TunedClassifier(RidgeClassifier(), param="C").fit(X, y)


def test_patience_stops_after_the_peak_with_the_same_choice(wide):
    X, y, _ = wide
    grid = (1e5, 1e4, 1e3, 1e2, 10.0, 1.0, 0.1)
    full = TunedClassifier(RidgeClassifier(), param="alpha", grid=grid).fit(X, y)
    # featx's default patience; on these rows one would stop at a local dip
    short = TunedClassifier(
        RidgeClassifier(), param="alpha", grid=grid, patience=pipelines.PATIENCE
    ).fit(X, y)
    best = int(np.nanargmax(full.inner_scores_))
    assert short.best_params_ == full.best_params_
    tried = ~np.isnan(short.inner_scores_)
    assert tried[: best + 1].all() and tried.sum() < len(grid)
    np.testing.assert_array_equal(short.inner_scores_[tried], full.inner_scores_[tried])


def test_one_inner_split_equals_grid_search_cv_on_that_split(wide):
    # featx's default: each value fitted on one half of the rows, scored on the other
    X, y, X_new = wide
    ours = TunedClassifier(
        LogisticRegression(max_iter=1000),
        param="C",
        grid=GRID,
        inner_cv=2,
        inner_splits=1,
        row_space=False,
    ).fit(X, y)
    first = next(StratifiedKFold(2, shuffle=True, random_state=0).split(X, y))
    ref = GridSearchCV(
        LogisticRegression(max_iter=1000),
        {"C": list(GRID)},
        cv=[first],
        scoring="accuracy",
    ).fit(X, y)
    assert ours.best_params_ == ref.best_params_
    np.testing.assert_allclose(ours.inner_scores_, ref.cv_results_["mean_test_score"])
    np.testing.assert_array_equal(ours.predict(X_new), ref.predict(X_new))
    with pytest.raises(ValueError, match=r"`inner_splits` must be None or at least 1"):
        clone(ours).set_params(inner_splits=0).fit(X, y)


def test_row_space_ridge_solves_in_float64_without_warnings():
    # Two dominant directions: at small alpha the n x n solve is conditioned far
    # beyond float32 (scipy's LinAlgWarning reached users mid progress bar).
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 100)
    X = rng.normal(size=(300, 2)) @ rng.normal(size=(2, 3000)) * 5
    X = X + rng.normal(size=(300, 3000)) * 0.2
    X = StandardScaler().fit_transform(X).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = TunedClassifier(RidgeClassifier(), param="alpha", grid=(1e-2,))
        model.fit(X, y)
    plain = RidgeClassifier(alpha=1e-2).fit(X.astype(np.float64), y)
    # the Cholesky jitter (1e-6 of the mean squared row norm) is itself a ridge
    # of ~3e-3 here, a third of this alpha: close, not equal
    decision = plain.decision_function(X)
    np.testing.assert_allclose(model.decision_function(X), decision, atol=1e-2)
    assert_same_predictions(model.predict(X), plain.predict(X), decision, 2e-2)
