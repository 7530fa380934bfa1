"""What one classifier fit is: :class:`FitSpec`, its checks, folds and pipeline.

Each field of :class:`FitSpec` declares in its metadata whether it changes
results (``results``): the result store keys a stored result by exactly those
(:func:`featx.report.store.result_key`), and a test refuses a field that does
not say.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import Pipeline

import pipelines
from featx.choices import CLASSIFIERS, ENGINES, HEAD_TRAIN_LAYERS
from featx.errors import FeatxError, ParameterError, check_choice, check_int
from featx.progress import Progress
from pipelines.views import ViewEnsemble

__all__ = [
    "SCORING",
    "DEFAULT_VALUES",
    "FitError",
    "folds",
    "consensus",
    "FitSpec",
    "renamed",
]

SCORING = ("accuracy", "f1_macro")
#: The regularisation of an untuned run (``tune=False``): scikit-learn's defaults.
DEFAULT_VALUES = {
    "svm": 1.0,
    "logreg": 1.0,
    "ridge": 1.0,
    "mlp": 1e-4,
    "sgd": 1e-4,
    "head": 5e-4,  # weight decay, AlexNet's
}


class FitError(FeatxError, ValueError):
    """Data or options that cannot be fitted (no labels, one class, ...)."""


def folds(cv: int, seed: int) -> StratifiedKFold:
    """The shuffled, seeded stratified folds every featx CV uses."""
    return StratifiedKFold(n_splits=cv, shuffle=True, random_state=seed)


def consensus(clf: str, fold_params: list[dict]) -> float:
    """The value most folds chose; a tie goes to the earlier (stronger) value of
    the classifier's grid."""
    param, grid = next(iter(pipelines.GRIDS[clf].items()))
    votes = [p[param] for p in fold_params]
    return max(grid, key=lambda v: (votes.count(v), -grid.index(v)))


#: Keyword arguments of fit() and make_report() that were renamed: old -> new.
RENAMED = {"backend": "engine"}


def renamed(options: dict, *, stacklevel: int = 3) -> dict:
    """``options`` with each old keyword (:data:`RENAMED`) under its new name;
    the old one still works, with a DeprecationWarning (``stacklevel`` points it
    at the caller's line). Both names at once are refused."""
    out = dict(options)
    for old, new in RENAMED.items():
        if old in out:
            if new in out:
                raise ParameterError(f"give {new}= only ({old}= is its old name)")
            warnings.warn(
                f"{old}= is now {new}= (the word extraction uses too)",
                DeprecationWarning,
                stacklevel=stacklevel,
            )
            out[new] = out.pop(old)
    return out


def _option(default=None, *, results: bool, factory=None, key: str = "always"):
    """A :class:`FitSpec` field that says whether it changes results, and how a
    stored result's key records it (``always``; ``changed``: only when not the
    default, so that keys of results stored before the field existed stay valid;
    ``label``: the result's label, ``clf`` or ``clf+views``; ``views``: whether
    the views are used, also in the label; ``cache``: set from the training
    cache, whose fingerprint the key holds)."""
    meta = {"results": results, "key": key if results else None}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class FitSpec:
    """One classifier configuration and how its cross-validation runs."""

    clf: str = _option("svm", results=True, key="label")
    cv: int = _option(5, results=True)
    seed: int = _option(0, results=True)
    scale: str = _option("standard", results=True)
    pca: int | None = _option(None, results=True)
    tune: bool = _option(True, results=True)
    value: float | None = _option(None, results=True, key="changed")
    jobs: int | None = _option(-1, results=False)
    #: Where folds run: ``local`` (joblib) or ``ray`` (the word extraction uses).
    engine: str = _option("local", results=False)
    address: str | None = _option(None, results=False)
    progress: Progress = _option(results=False, factory=Progress)
    repeats: int = _option(1, results=True)
    #: Use only the centre view of a cache that holds more (:mod:`featx.images.views`).
    center_only: bool = _option(False, results=True, key="views")
    #: With views: train on each view as a row of its own (augmentation);
    #: False trains on the centre only. Prediction averages every view's scores.
    train_views: bool = _option(True, results=True, key="changed")
    #: ``head``: the layers fine-tuned (:data:`HEAD_TRAIN_LAYERS`).
    head_train: str = _option("fc6-fc8", results=True, key="changed")
    #: ``head``: the weights the pool5 rows came from (:func:`head_source`);
    #: set from the cache.
    source: dict = _option(results=True, factory=dict, key="cache")

    def check(self) -> None:
        """Refuse options that cannot work, before any data is read."""
        check_choice("clf", self.clf, CLASSIFIERS)
        check_choice("head_train", self.head_train, HEAD_TRAIN_LAYERS)
        check_choice("scale", self.scale, pipelines.SCALES)
        check_choice("engine", self.engine, ENGINES)
        check_int("cv", self.cv, low=2)
        check_int("repeats", self.repeats, low=1)
        if self.pca is not None:
            check_int("pca", self.pca, low=1)
        if self.jobs is not None:
            check_int("jobs", self.jobs, low=1, allow=(-1,))
        if self.value is not None and not self.value > 0:
            raise FitError(f"the regularisation must be positive; got {self.value}")

    def splits(self, labels: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """The folds of every repeat: repeat ``r`` shuffles with ``seed + r``, so
        the first repeat is the single-run CV."""
        return [
            split
            for r in range(self.repeats)
            for split in folds(self.cv, self.seed + r).split(
                np.zeros(len(labels)), labels
            )
        ]

    @property
    def tuned(self) -> bool:
        """Whether the classifier chooses its own regularisation."""
        return self.tune and self.value is None and self.clf in pipelines.TUNED

    def estimator(
        self, n_rows: int, n_features: int, n_views: int = 1, *, row_space=False
    ):
        """The unfitted pipeline for ``n_rows`` images whose rows hold
        ``n_views`` views side by side (``n_features`` columns in all); a
        fixed-value classifier fitted in the row space with ``row_space``."""
        width = n_features // n_views
        pipe = self.pipeline(n_rows * (n_views if self.train_views else 1), width)
        if row_space:
            pipe = pipelines.in_row_space(pipe, self.clf, seed=self.seed)
        if n_views == 1:
            return pipe
        train = "all" if self.train_views else "center"
        return Pipeline([("views", ViewEnsemble(pipe, n_views, train_views=train))])

    def pipeline(self, n_rows: int, n_features: int):
        """The unfitted pipeline for data of this shape."""
        value = self.value
        if value is None and not self.tuned:
            value = DEFAULT_VALUES[self.clf]
        if self.clf == "head":
            from pipelines.head import HeadClassifier  # torch: only for the head

            head = HeadClassifier(
                **self.source,
                train_layers=self.head_train,
                weight_decay=value,
                random_state=self.seed,
            )
            return Pipeline([("clf", head)])  # raw pool5: fc6 was trained on it
        return pipelines.make_pipeline(
            self.clf,
            n_samples=n_rows,
            n_features=n_features,
            scale=self.scale,
            pca=self.pca,
            seed=self.seed,
            value=value,
        )
