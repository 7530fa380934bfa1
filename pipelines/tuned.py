"""Classifiers that choose their own regularisation, fast on wide features.

:class:`TunedClassifier` wraps a scikit-learn classifier whose regularisation is
one parameter (``C`` or ``alpha``). ``fit`` chooses that parameter by an inner
stratified cross-validation on the training rows alone (so a surrounding
cross-validation stays honest), then refits on every row.

CNN features are wide: a few thousand rows, 4,096–43,264 columns. When the
columns outnumber the rows, fitting happens in the *row space*: the Gram matrix
``K = X Xᵀ`` (n × n) is computed once, and a factor ``Z`` with ``Z Zᵀ = K`` (its
Cholesky factor, or its principal axes for the MLP) stands in for ``X``. For a
model that is linear in ``X`` with an L2 penalty on its weights, ``Z`` gives the
same problem — the weights lie in the span of the rows, and ``‖w‖`` and every
``w·x`` are kept — but with n columns instead of d. Every inner fold reads its
block of the same ``K``, so the features are multiplied once per fit, not once
per fold and value. The fitted weights are mapped back to the d original
columns, so ``estimator_`` is an ordinary fitted scikit-learn estimator on the
original features.

The mapping is exact for ridge and logistic regression (unpenalised intercept).
LinearSVC penalises its intercept, which the row space does not see, so there it
is a close approximation (tested). The MLP's objective is the same, but its
optimiser (Adam, per-coordinate steps) is not rotation-invariant, so the basis
changes its path: on principal axes it matched or beat the original columns in
the benchmark, on Cholesky coordinates it lost about a point.
"""

from __future__ import annotations

import numpy as np
from scipy import linalg
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.linear_model import RidgeClassifier
from sklearn.metrics import accuracy_score
from sklearn.model_selection import StratifiedKFold
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import check_is_fitted, validate_data

__all__ = ["JITTERS", "EIGEN_RTOL", "TunedClassifier"]

#: Relative jitters tried in turn on the Gram matrix's diagonal so that its
#: Cholesky factor exists when the rows are linearly dependent (standardised rows
#: always are) and float32 rounding makes the smallest eigenvalues negative. Even
#: the largest is a ridge of 1e-3 of the mean squared row norm: far below any
#: value the grids try.
JITTERS = (1e-6, 1e-5, 1e-4, 1e-3)
#: Eigenvalues of a Gram block below this fraction of the largest are null
#: directions (standardised rows always have one) and are dropped.
EIGEN_RTOL = 1e-9


def _estimator_has(name: str):
    def check(self) -> bool:
        if hasattr(self, "estimator_"):
            return hasattr(self.estimator_, name)
        return hasattr(self.estimator, name)

    return check


class TunedClassifier(ClassifierMixin, BaseEstimator):
    """A classifier whose regularisation ``param`` is chosen from ``grid`` by an
    inner stratified cross-validation.

    Parameters
    ----------
    estimator
        An unfitted scikit-learn classifier (LinearSVC, LogisticRegression,
        RidgeClassifier, MLPClassifier).
    param
        The name of its regularisation parameter, ``"C"`` or ``"alpha"``.
    grid
        The values to try, from the strongest regularisation to the weakest; a
        tie in inner accuracy goes to the earlier value.
    patience
        Stop the search after this many values in a row that do not beat the
        best so far (None: try every value). Scores along a regularisation path
        rise to a peak and then fall or plateau, and the weakly regularised end is
        the slowest to fit.
    warm_start
        Fit each value from the previous value's solution (the estimator must
        have ``warm_start``): a regularisation path.
    inner_cv
        Folds of the inner cross-validation (shuffled, stratified, seeded by
        ``random_state``); fewer when a class has fewer rows, and none (the
        middle of ``grid``) when a class has a single row. A ``grid`` of one
        value is fitted without any: a fixed value in the row space.
    inner_splits
        How many of the ``inner_cv`` folds each value is scored on (None: all).
        One is a single held-out split: ``1/inner_cv`` of the rows validate a
        fit on the rest, at a fraction of the cost of every fold.
    row_space
        ``"auto"`` (when columns outnumber rows), ``True`` or ``False``.
    basis
        The row-space coordinates: ``"cholesky"`` (the cheapest), ``"eigen"``
        (principal axes), or ``"auto"``: eigen for an MLP, cholesky otherwise.
    random_state
        Seed of the inner folds.

    Attributes
    ----------
    estimator_
        The estimator refitted on every row with the chosen value, with weights
        on the original features.
    best_params_
        ``{param: chosen value}``.
    inner_scores_
        Mean inner accuracy of each value of ``grid``, in order (NaN for values
        the search stopped before).
    classes_
        The class labels.
    """

    def __init__(
        self,
        estimator,
        *,
        param: str = "C",
        grid=(1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0),
        inner_cv: int = 3,
        inner_splits: int | None = None,
        patience: int | None = None,
        warm_start: bool = False,
        row_space="auto",
        basis="auto",
        random_state=0,
    ):
        self.estimator = estimator
        self.param = param
        self.grid = grid
        self.inner_cv = inner_cv
        self.inner_splits = inner_splits
        self.patience = patience
        self.warm_start = warm_start
        self.row_space = row_space
        self.basis = basis
        self.random_state = random_state

    def _path_model(self):
        """One model per inner fold that starts each value from the last one's
        solution (``warm_start``), or None to fit each value afresh."""
        if not self.warm_start:
            return None
        return clone(self.estimator).set_params(warm_start=True)

    # Long: the inner search and the refit share one Gram matrix and its basis.
    def fit(self, X, y, groups=None):
        """Choose the regularisation by inner CV, then refit on every row.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
        groups : array-like of shape (n_samples,), optional
            Rows of one group (the views of one image) stay on one side of every
            inner split; the split is stratified by each group's first label.
        """
        X, y = validate_data(self, X, y, dtype=[np.float32, np.float64])
        if self.param not in self.estimator.get_params():
            raise ValueError(
                f"`param` must be a parameter of {type(self.estimator).__name__}. "
                f"Got {self.param!r}."
            )
        grid = list(self.grid)
        if self.inner_splits is not None and self.inner_splits < 1:
            raise ValueError(
                f"`inner_splits` must be None or at least 1. Got {self.inner_splits}."
            )
        if not grid:
            raise ValueError("`grid` must hold at least one value. Got [].")
        n, d = X.shape
        wide = d > n if self.row_space == "auto" else bool(self.row_space)
        gram = _gram(X) if wide else None
        dtype = _coords_dtype(self.estimator, X)
        basis = self.basis
        if basis == "auto":
            # a linear model's solution is the same in any basis: the cheapest;
            # the MLP's optimiser (Adam, per-coordinate steps) is not, and on
            # principal axes it matched or beat the original columns
            basis = (
                "eigen" if hasattr(self.estimator, "hidden_layer_sizes") else "cholesky"
            )
        # fewer inner folds when a class is too small for them; none below 2
        per_group = y if groups is None else y[np.unique(groups, return_index=True)[1]]
        inner_cv = min(
            self.inner_cv, int(np.unique(per_group, return_counts=True)[1].min())
        )
        splits = []
        if inner_cv >= 2 and len(grid) > 1:
            splits = _inner_splits(inner_cv, self.random_state, y, groups)
            splits = splits[: self.inner_splits]
        folds = []
        for train, val in splits:
            if wide:
                Z_train, Z_val, _ = _row_space(gram, train, val, basis)
                Z_train, Z_val = Z_train.astype(dtype), Z_val.astype(dtype)
            else:
                Z_train, Z_val = X[train], X[val]
            folds.append((Z_train, y[train], Z_val, y[val], self._path_model()))
        scores = np.full(len(grid), np.nan)
        best_k, since_best = 0, 0
        for k, value in enumerate(grid if folds else ()):
            total = 0.0
            for Z_train, y_train, Z_val, y_val, warm in folds:
                model = warm if warm is not None else clone(self.estimator)
                model.set_params(**{self.param: value}).fit(Z_train, y_train)
                total += accuracy_score(y_val, model.predict(Z_val))
            scores[k] = total / len(folds)
            if scores[k] > scores[best_k]:
                best_k, since_best = k, 0
            elif k:
                since_best += 1
                if self.patience is not None and since_best >= self.patience:
                    break
        self.inner_scores_ = scores
        # with too few rows to tune: the middle of the grid
        best = grid[best_k] if folds else grid[len(grid) // 2]
        self.best_params_ = {self.param: best}
        model = clone(self.estimator).set_params(**{self.param: best})
        if wide:
            everything = np.arange(n)
            Z, _, coords = _row_space(gram, everything, everything[:0], basis)
            Z = Z.astype(dtype)
            model.fit(Z, y)
            _to_original_features(model, X, everything, coords)
        else:
            model.fit(X, y)
        self.estimator_ = model
        self.classes_ = model.classes_
        return self

    def predict(self, X):
        """Predicted class of each row of ``X`` (n_samples, n_features)."""
        check_is_fitted(self)
        return self.estimator_.predict(X)

    @available_if(_estimator_has("decision_function"))
    def decision_function(self, X):
        check_is_fitted(self)
        return self.estimator_.decision_function(X)

    @available_if(_estimator_has("predict_proba"))
    def predict_proba(self, X):
        check_is_fitted(self)
        return self.estimator_.predict_proba(X)


def _inner_splits(inner_cv: int, seed, y: np.ndarray, groups) -> list:
    """Stratified inner folds of the rows, or of whole groups of rows."""
    cv = StratifiedKFold(inner_cv, shuffle=True, random_state=seed)
    if groups is None:
        return list(cv.split(np.zeros(len(y)), y))
    groups = np.asarray(groups)
    names, first = np.unique(groups, return_index=True)
    return [
        (
            np.flatnonzero(np.isin(groups, names[train])),
            np.flatnonzero(np.isin(groups, names[val])),
        )
        for train, val in cv.split(first, y[first])
    ]


def _coords_dtype(estimator, X: np.ndarray) -> np.dtype:
    """The precision of the row-space coordinates: the features' own (float32
    halves the MLP's and logistic regression's work; liblinear converts anyway),
    but float64 for ridge, whose closed-form solve on the n x n coordinates has a
    condition number near 1e7 at small alpha, beyond float32 (scipy warned, mid
    progress bar, on the demo's fc6); in float64 it costs one small Cholesky."""
    if isinstance(estimator, RidgeClassifier):
        return np.dtype(np.float64)
    return X.dtype


def _gram(X: np.ndarray) -> np.ndarray:
    """``X Xᵀ`` in float64, the product computed in the input's precision."""
    return (X @ X.T).astype(np.float64)


class _Basis:
    """Row-space coordinates of one set of training rows ``X_t``.

    A row ``x`` has coordinates ``z = Mᵀ X_t x`` for an n × r matrix ``M``
    chosen so that the training rows' own coordinates ``Z_t`` keep their inner
    products: ``Z_t Z_tᵀ = K_tt = X_t X_tᵀ``. Weights ``B`` on the coordinates
    are then ``X_tᵀ M B`` on ``x``.

    ``kind="cholesky"``: ``Z_t = L`` (``K_tt = L Lᵀ``, with a tiny jitter), so
    ``M = L⁻ᵀ``: the cheapest. ``kind="eigen"``: ``Z_t = U Λ^½`` over the
    eigenvectors of ``K_tt`` (null directions dropped), so ``M = U Λ^-½``: the
    principal axes of the rows, as uncorrelated coordinates.
    """

    def __init__(self, block: np.ndarray, kind: str):
        self.kind = kind
        if kind == "cholesky":
            self.L = _cholesky(block)
            self.train = self.L
        else:
            # divide and conquer: ~15% faster than scipy's default driver here
            values, vectors = linalg.eigh(block, driver="evd", check_finite=False)
            keep = values > EIGEN_RTOL * max(float(values[-1]), 1e-300)
            root = np.sqrt(values[keep])
            self.M = vectors[:, keep] / root
            self.train = vectors[:, keep] * root

    def coords(self, cross: np.ndarray) -> np.ndarray:
        """Coordinates of the rows whose products with ``X_t`` are ``cross``
        (n × m): m × r."""
        if self.kind == "cholesky":
            return linalg.solve_triangular(self.L, cross, lower=True).T
        return cross.T @ self.M

    def back(self, weights: np.ndarray) -> np.ndarray:
        """``M B`` for weights ``B`` (r × k) on the coordinates: n × k."""
        if self.kind == "cholesky":
            return linalg.solve_triangular(self.L, weights, lower=True, trans="T")
        return self.M @ weights


def _row_space(gram: np.ndarray, train: np.ndarray, other: np.ndarray, kind: str):
    """Row-space coordinates of the ``train`` rows and of the ``other`` rows,
    and the basis from which weights map back."""
    basis = _Basis(gram[np.ix_(train, train)], kind)
    return basis.train, basis.coords(gram[np.ix_(train, other)]), basis


def _cholesky(block: np.ndarray) -> np.ndarray:
    """The lower Cholesky factor of ``block`` with the smallest of
    :data:`JITTERS` on its diagonal that makes one exist."""
    scale = max(float(np.trace(block)) / max(len(block), 1), 1e-12)
    diagonal = np.diag(block).copy()
    for jitter in JITTERS:
        attempt = block.copy()
        np.fill_diagonal(attempt, diagonal + jitter * scale)
        try:
            return linalg.cholesky(
                attempt, lower=True, overwrite_a=True, check_finite=False
            )
        except linalg.LinAlgError:
            continue
    raise ValueError(
        "the Gram matrix of these features is not positive semi-definite even "
        "after jitter; are there NaN or infinite features?"
    )


def _to_original_features(model, X: np.ndarray, train, basis: _Basis) -> None:
    """Map weights fitted on the row-space coordinates of ``X[train]`` to
    ``X``'s columns."""
    X_train = X[train]

    def back(weights: np.ndarray) -> np.ndarray:  # (r, k) → (d, k)
        solved = basis.back(weights)
        return (X_train.T @ solved.astype(X_train.dtype)).astype(weights.dtype)

    if hasattr(model, "coefs_"):  # MLPClassifier: the first layer's weights
        model.coefs_[0] = back(np.asarray(model.coefs_[0], np.float64)).astype(
            model.coefs_[0].dtype
        )
    else:
        coef = np.asarray(model.coef_, np.float64)
        model.coef_ = back(coef.T).T.astype(model.coef_.dtype)
    model.n_features_in_ = X.shape[1]
