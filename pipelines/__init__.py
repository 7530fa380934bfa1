"""scikit-learn pipelines for classifying cached features. Knows nothing of torch,
but for :mod:`pipelines.head` (AlexNet's own head, fine-tuned in torch), which is
imported only when it is asked for.

Each factory returns an unfitted :class:`~sklearn.pipeline.Pipeline` of a
preprocessing step (standardisation by default, L2 normalisation, or none), an
optional PCA, and the classifier. By default the classifier tunes its own
regularisation over :data:`GRIDS` by an inner cross-validation
(:class:`~pipelines.tuned.TunedClassifier`, fast on wide features); a fixed value
(``C=`` or ``alpha=``) gives the plain estimator. Choices that depend on the
data's shape (LogisticRegression's solver, whether the MLP can early-stop) are made from
``n_samples`` and ``n_features``; LinearSVC picks its formulation itself
(``dual="auto"``).
"""

from __future__ import annotations

from collections.abc import Callable

from sklearn.base import clone
from sklearn.decomposition import PCA, IncrementalPCA
from sklearn.linear_model import LogisticRegression, RidgeClassifier, SGDClassifier
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import Normalizer, StandardScaler
from sklearn.svm import LinearSVC

from pipelines.tuned import TunedClassifier

__all__ = [
    "SCALES",
    "SAGA_ROWS",
    "DUAL_ROWS",
    "SVM_TUNED_TOL",
    "MLP_EARLY_STOP_ROWS",
    "preprocessing_steps",
    "svm",
    "logreg",
    "ridge",
    "mlp",
    "sgd",
    "CLASSIFIERS",
    "INNER_CV",
    "INNER_SPLITS",
    "ONE_SPLIT_ROWS",
    "SEARCH",
    "PATIENCE",
    "TUNED",
    "GRIDS",
    "in_row_space",
    "make_pipeline",
]

SCALES = ("standard", "l2", "none")
#: Rows above which LogisticRegression switches from lbfgs to saga.
SAGA_ROWS = 50_000
#: Rows above which a tuned LinearSVC may solve the primal (when it is tall).
DUAL_ROWS = 20_000
#: Stopping tolerance of a tuned LinearSVC (a fixed C keeps scikit-learn's 1e-4).
SVM_TUNED_TOL = 1e-3
#: Rows from which the MLP holds out 10% to stop early.
MLP_EARLY_STOP_ROWS = 200


def _check(name: str, value, allowed) -> None:
    if value not in allowed:
        options = ", ".join(repr(a) for a in allowed)
        raise ValueError(f"`{name}` must be one of {options}. Got {value!r}.")


def preprocessing_steps(
    *,
    scale: str = "standard",
    pca: int | None = None,
    seed: int = 0,
    incremental: bool = False,
) -> list[tuple[str, object]]:
    """The steps before the classifier: scaling, then PCA to ``pca`` components."""
    _check("scale", scale, SCALES)
    steps: list[tuple[str, object]] = []
    if scale == "standard":
        steps.append(("scale", StandardScaler()))
    elif scale == "l2":
        steps.append(("scale", Normalizer(norm="l2")))
    if pca:
        if pca < 1:
            raise ValueError(
                f"`pca` must be a positive number of components. Got {pca}."
            )
        reducer = (
            IncrementalPCA(n_components=pca)
            if incremental
            else PCA(n_components=pca, random_state=seed)
        )
        steps.append(("pca", reducer))
    return steps


def _pipeline(clf, *, scale: str, pca: int | None, seed: int) -> Pipeline:
    """Preprocessing steps followed by ``clf``."""
    return Pipeline(
        [*preprocessing_steps(scale=scale, pca=pca, seed=seed), ("clf", clf)]
    )


def _tuned_or_fixed(name: str, clf, value, *, seed: int, n_samples: int):
    """``clf`` with its regularisation set to ``value``, or tuned when it is None
    (on one inner split from :data:`ONE_SPLIT_ROWS` rows, on every inner fold
    below)."""
    param = next(iter(GRIDS[name]))
    if value is not None:
        return clf.set_params(**{param: value})
    return TunedClassifier(
        clf,
        param=param,
        grid=GRIDS[name][param],
        inner_cv=INNER_CV,
        inner_splits=INNER_SPLITS if n_samples >= ONE_SPLIT_ROWS else None,
        patience=PATIENCE,
        warm_start=name == "logreg",  # a C path: each fit starts near the next
        random_state=seed,
    )


def svm(
    *,
    n_samples: int,
    n_features: int,
    C: float | None = None,
    scale: str = "standard",
    pca: int | None = None,
    seed: int = 0,
) -> Pipeline:
    """Linear SVM (LinearSVC; ``dual="auto"`` solves the dual problem when
    features outnumber samples). ``C=None`` tunes it over :data:`GRIDS`."""
    # Tuned, it runs the weakly regularised end of the grid, where liblinear's
    # dual solver stayed under 0.3 s a fit and the primal took up to 12 s (on the
    # square row-space matrix of wide features, and on 900 x 256 pooled conv5);
    # only for many rows is the primal the better choice.
    tall = n_samples > DUAL_ROWS and n_features <= n_samples
    dual = True if C is None and not tall else "auto"
    clf = LinearSVC(dual=dual, max_iter=5000, random_state=seed)
    if C is None:
        # A tuned fit solves a dozen problems; scikit-learn's tol=1e-4 made the
        # dual solver run ~40% more passes than 1e-3 for the same predictions on
        # the demo's folds (liblinear's own default for the dual is 0.1).
        clf.set_params(tol=SVM_TUNED_TOL)
    clf = _tuned_or_fixed("svm", clf, C, seed=seed, n_samples=n_samples)
    return _pipeline(clf, scale=scale, pca=pca, seed=seed)


def logreg(
    *,
    n_samples: int,
    n_features: int,
    C: float | None = None,
    scale: str = "standard",
    pca: int | None = None,
    seed: int = 0,
) -> Pipeline:
    """Logistic regression: lbfgs, or saga above :data:`SAGA_ROWS` rows.
    ``C=None`` tunes it over :data:`GRIDS`."""
    solver = "saga" if n_samples > SAGA_ROWS else "lbfgs"
    clf = LogisticRegression(solver=solver, max_iter=1000, random_state=seed)
    clf = _tuned_or_fixed("logreg", clf, C, seed=seed, n_samples=n_samples)
    return _pipeline(clf, scale=scale, pca=pca, seed=seed)


def ridge(
    *,
    n_samples: int,
    n_features: int,
    alpha: float | None = None,
    scale: str = "standard",
    pca: int | None = None,
    seed: int = 0,
) -> Pipeline:
    """Ridge regression on ±1 class targets (closed form, all classes at once).
    ``alpha=None`` tunes it over :data:`GRIDS`."""
    clf = _tuned_or_fixed(
        "ridge", RidgeClassifier(), alpha, seed=seed, n_samples=n_samples
    )
    return _pipeline(clf, scale=scale, pca=pca, seed=seed)


def mlp(
    *,
    n_samples: int,
    n_features: int,
    alpha: float | None = None,
    hidden: int = 256,
    scale: str = "standard",
    pca: int | None = None,
    seed: int = 0,
) -> Pipeline:
    """A small MLP: one hidden layer, early stopping when there are enough rows.
    ``alpha=None`` tunes its L2 penalty over :data:`GRIDS`."""
    clf = MLPClassifier(
        hidden_layer_sizes=(hidden,),
        max_iter=200,
        early_stopping=n_samples >= MLP_EARLY_STOP_ROWS,
        random_state=seed,
    )
    clf = _tuned_or_fixed("mlp", clf, alpha, seed=seed, n_samples=n_samples)
    return _pipeline(clf, scale=scale, pca=pca, seed=seed)


def sgd(
    *,
    n_samples: int,
    n_features: int,
    alpha: float | None = None,
    scale: str = "standard",
    pca: int | None = None,
    seed: int = 0,
) -> Pipeline:
    """A linear SVM trained by SGD, block by block from disk (see ``featx.fit``):
    every step supports ``partial_fit`` but the stateless L2 normalisation, which
    needs no fitting. ``alpha`` is 1e-4 unless given; it is not tuned, since each
    value would cost passes over the data on disk."""
    if scale == "l2":
        scaler = [("scale", Normalizer(norm="l2"))]
    else:
        scaler = preprocessing_steps(scale=scale, seed=seed)
    steps = scaler + preprocessing_steps(scale="none", pca=pca, incremental=True)
    clf = SGDClassifier(
        loss="hinge", alpha=1e-4 if alpha is None else alpha, random_state=seed
    )
    return Pipeline([*steps, ("clf", clf)])


CLASSIFIERS: dict[str, Callable[..., Pipeline]] = {
    "svm": svm,
    "logreg": logreg,
    "ridge": ridge,
    "mlp": mlp,
    "sgd": sgd,
}

#: Folds of the inner search: two halves, each validating on as many rows as it
#: trains on (three folds cost half as much again for the same choice in the
#: demo's measurements).
INNER_CV = 2
#: How many of the inner folds score each value (None: all), from
#: :data:`ONE_SPLIT_ROWS` rows. One: each value is fitted on one half and scored
#: on the other. On the demo's report (1,347 digits, 3 layers x 3 classifiers,
#: 2 x 5 folds) this halved the classifiers' time (96 s -> 58 s) for 0.1 point of
#: mean accuracy; the choice on a broad plateau matters little.
INNER_SPLITS = 1
#: Rows from which the search uses :data:`INNER_SPLITS`; below, every inner fold
#: (cheap there, and one split's choice is noisy: on 75 digits the one-split ridge
#: lost 16 points against the full 2-fold search).
ONE_SPLIT_ROWS = 1000
#: The inner search in words, for reports and help.
SEARCH = (
    "an inner search on the training rows of each fold: each value fitted on one "
    f"stratified half and scored on the other (from {ONE_SPLIT_ROWS:,} rows; on "
    "both halves below)"
)
#: Values in a row without a better inner score after which tuning stops.
PATIENCE = 2

#: Classifiers that tune their regularisation (sgd streams and is not tuned).
TUNED = ("svm", "logreg", "ridge", "mlp")

#: The regularisation each classifier tunes, strongest first: wide enough for
#: standardised CNN features (orders of magnitude).
GRIDS: dict[str, dict[str, tuple[float, ...]]] = {
    "svm": {"C": (1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)},
    "logreg": {"C": (1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)},
    "ridge": {"alpha": (1e6, 1e5, 1e4, 1e3, 1e2, 1e1, 1.0, 1e-1)},
    "mlp": {"alpha": (10.0, 1.0, 1e-2, 1e-4)},
    "sgd": {"alpha": (1e-4,)},
}


def in_row_space(pipe: Pipeline, clf: str, *, seed: int = 0) -> Pipeline:
    """``pipe`` (a fixed-value pipeline of a :data:`TUNED` classifier) with its
    classifier fitted in the row space of its training rows when features
    outnumber them, as tuned fits are: the same solution for these
    L2-regularised models (LinearSVC's penalised intercept aside), at the cost
    of one Gram matrix instead of a solver on every column."""
    name, estimator = pipe.steps[-1]
    if clf not in TUNED or isinstance(estimator, TunedClassifier):
        return pipe
    param = next(iter(GRIDS[clf]))
    value = estimator.get_params()[param]
    if isinstance(estimator, LinearSVC) and estimator.dual == "auto":
        # the row space is square: "auto" would pick the primal, 10x slower there
        # (fc6 of the demo: 80 s against 1 s for a 10-class refit)
        estimator = clone(estimator).set_params(dual=True)
    pipe.steps[-1] = (
        name,
        TunedClassifier(estimator, param=param, grid=[value], random_state=seed),
    )
    return pipe


def make_pipeline(
    clf: str,
    *,
    n_samples: int,
    n_features: int,
    scale: str = "standard",
    pca: int | None = None,
    seed: int = 0,
    value: float | None = None,
) -> Pipeline:
    """The pipeline for classifier ``clf`` (one of :data:`CLASSIFIERS`).

    ``value`` fixes the regularisation (``C`` for svm and logreg, ``alpha`` for
    ridge, mlp and sgd); None tunes it.
    """
    _check("clf", clf, tuple(CLASSIFIERS))
    param = next(iter(GRIDS[clf]))
    return CLASSIFIERS[clf](
        n_samples=n_samples,
        n_features=n_features,
        scale=scale,
        pca=pca,
        seed=seed,
        **{param: value},
    )
