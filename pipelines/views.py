"""Several views (crops) of each image in one classifier: augmentation and
test-time averaging.

A row of ``X`` is one image: its ``n_views`` feature vectors side by side (view
``v`` in columns ``v*d … (v+1)*d``, the centre first). Because the row is the
image, any split of ``X`` into folds keeps every view of an image on one side:
no view of a test image is ever trained on.
"""

from __future__ import annotations

import inspect

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import check_is_fitted

from pipelines.tuned import _estimator_has

__all__ = ["TRAIN_VIEWS", "TEST_VIEWS", "ViewEnsemble"]

TRAIN_VIEWS = ("all", "center")
TEST_VIEWS = ("all", "center")


class ViewEnsemble(ClassifierMixin, BaseEstimator):
    """Train ``estimator`` on every view of the training images, and classify an
    image by the mean of its views' scores.

    Parameters
    ----------
    estimator
        An unfitted classifier (a pipeline) working on one view's features.
    n_views
        How many views each row of ``X`` holds.
    train_views
        ``"all"``: each view of a training image is a training row of its own
        (augmentation), with the image's label; ``"center"``: the first view only.
    test_views
        ``"all"``: an image's score is the mean of its views' decision values (or
        probabilities, for a classifier that has no decision function);
        ``"center"``: the first view's.

    Notes
    -----
    ``X`` may also hold one view only (``d`` columns): it is then the centre,
    and is classified on its own (a held-out cache extracted without views).

    Attributes
    ----------
    estimator_
        The fitted ``estimator``.
    classes_
        The classes, as ``estimator_`` has them.
    """

    def __init__(
        self, estimator, n_views: int, train_views: str = "all", test_views="all"
    ) -> None:
        self.estimator = estimator
        self.n_views = n_views
        self.train_views = train_views
        self.test_views = test_views

    def _check(self) -> None:
        if not (isinstance(self.n_views, int | np.integer) and self.n_views >= 1):
            raise ValueError(f"`n_views` must be a positive int. Got {self.n_views!r}")
        for name, allowed in (
            ("train_views", TRAIN_VIEWS),
            ("test_views", TEST_VIEWS),
        ):
            if getattr(self, name) not in allowed:
                raise ValueError(
                    f"`{name}` must be one of {allowed}. Got {getattr(self, name)!r}"
                )

    def _split(self, X, views: str) -> tuple[np.ndarray, int]:
        """``X`` as one row per view (image ``i``'s view ``v`` at row
        ``i * n + v``, no copy), and ``n`` the views per image used."""
        X = np.asarray(X)
        if X.ndim == 2 and X.shape[1] == getattr(self, "view_width_", -1):
            return X, 1  # one view only: the centre
        if X.ndim != 2 or X.shape[1] % self.n_views:
            raise ValueError(
                f"X has {X.shape[1] if X.ndim == 2 else X.shape} columns: "
                f"not {self.n_views} views of equal width"
            )
        width = X.shape[1] // self.n_views
        per_view = X.reshape(len(X), self.n_views, width)
        if views == "center":
            return per_view[:, 0], 1
        return per_view.reshape(len(X) * self.n_views, width), self.n_views

    def fit(self, X, y):
        self._check()
        y = np.asarray(y)
        rows, n = self._split(X, self.train_views)
        self.view_width_ = rows.shape[1]
        self.estimator_ = clone(self.estimator)
        params = {}
        if n > 1 and _accepts_groups(self.estimator_):
            # inner tuning splits by image too: the views of one image are alike
            params = _groups_param(self.estimator_, np.repeat(np.arange(len(y)), n))
        self.estimator_.fit(rows, np.repeat(y, n), **params)
        self.classes_ = self.estimator_.classes_
        return self

    def _scores(self, X, method: str) -> np.ndarray:
        check_is_fitted(self, "estimator_")
        rows, n = self._split(X, self.test_views)
        scores = getattr(self.estimator_, method)(rows)
        return scores.reshape(len(scores) // n, n, *scores.shape[1:]).mean(axis=1)

    @available_if(_estimator_has("decision_function"))
    def decision_function(self, X) -> np.ndarray:
        """The mean over an image's views of their decision values."""
        return self._scores(X, "decision_function")

    @available_if(_estimator_has("predict_proba"))
    def predict_proba(self, X) -> np.ndarray:
        """The mean over an image's views of their class probabilities."""
        return self._scores(X, "predict_proba")

    def predict(self, X) -> np.ndarray:
        """The class of highest mean score over an image's views."""
        if hasattr(self.estimator_, "decision_function"):
            scores = self.decision_function(X)
        else:
            scores = self.predict_proba(X)
        if scores.ndim == 1:
            return self.classes_[(scores > 0).astype(int)]
        return self.classes_[np.argmax(scores, axis=1)]


def _final(estimator):
    return estimator.steps[-1][1] if hasattr(estimator, "steps") else estimator


def _accepts_groups(estimator) -> bool:
    return "groups" in inspect.signature(_final(estimator).fit).parameters


def _groups_param(estimator, groups: np.ndarray) -> dict:
    if hasattr(estimator, "steps"):
        return {f"{estimator.steps[-1][0]}__groups": groups}
    return {"groups": groups}
