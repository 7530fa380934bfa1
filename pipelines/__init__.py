"""scikit-learn pipelines for classifying cached features. Knows nothing of torch.

Each factory returns an unfitted :class:`~sklearn.pipeline.Pipeline` of a
preprocessing step (standardisation by default, L2 normalisation, or none), an
optional PCA, and the classifier. Choices that depend on the data's shape
(LogisticRegression's solver, whether the MLP can early-stop) are made from
``n_samples`` and ``n_features``; LinearSVC picks its formulation itself
(``dual="auto"``).
"""

from __future__ import annotations

from collections.abc import Callable

from sklearn.decomposition import PCA, IncrementalPCA
from sklearn.linear_model import LogisticRegression, SGDClassifier
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import Normalizer, StandardScaler
from sklearn.svm import LinearSVC

SCALES = ("standard", "l2", "none")
#: Rows above which LogisticRegression switches from lbfgs to saga.
SAGA_ROWS = 50_000
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


def svm(
    *,
    n_samples: int,
    n_features: int,
    C: float = 1.0,
    scale: str = "standard",
    pca: int | None = None,
    seed: int = 0,
) -> Pipeline:
    """Linear SVM (LinearSVC); ``dual="auto"`` solves the dual problem when
    features outnumber samples."""
    clf = LinearSVC(C=C, dual="auto", max_iter=5000, random_state=seed)
    return _pipeline(clf, scale=scale, pca=pca, seed=seed)


def logreg(
    *,
    n_samples: int,
    n_features: int,
    C: float = 1.0,
    scale: str = "standard",
    pca: int | None = None,
    seed: int = 0,
) -> Pipeline:
    """Logistic regression: lbfgs, or saga above :data:`SAGA_ROWS` rows."""
    solver = "saga" if n_samples > SAGA_ROWS else "lbfgs"
    clf = LogisticRegression(C=C, solver=solver, max_iter=1000, random_state=seed)
    return _pipeline(clf, scale=scale, pca=pca, seed=seed)


def mlp(
    *,
    n_samples: int,
    n_features: int,
    alpha: float = 1e-4,
    hidden: int = 256,
    scale: str = "standard",
    pca: int | None = None,
    seed: int = 0,
) -> Pipeline:
    """A small MLP: one hidden layer, early stopping when there are enough rows."""
    clf = MLPClassifier(
        hidden_layer_sizes=(hidden,),
        alpha=alpha,
        max_iter=200,
        early_stopping=n_samples >= MLP_EARLY_STOP_ROWS,
        random_state=seed,
    )
    return _pipeline(clf, scale=scale, pca=pca, seed=seed)


def sgd(
    *,
    n_samples: int,
    n_features: int,
    alpha: float = 1e-4,
    scale: str = "standard",
    pca: int | None = None,
    seed: int = 0,
) -> Pipeline:
    """A linear SVM trained by SGD, trainable block by block from disk (see
    ``featx.fit``): every step supports ``partial_fit`` but the stateless L2
    normalisation, which needs no fitting."""
    if scale == "l2":
        scaler = [("scale", Normalizer(norm="l2"))]
    else:
        scaler = preprocessing_steps(scale=scale, seed=seed)
    steps = scaler + preprocessing_steps(scale="none", pca=pca, incremental=True)
    clf = SGDClassifier(loss="hinge", alpha=alpha, random_state=seed)
    return Pipeline([*steps, ("clf", clf)])


CLASSIFIERS: dict[str, Callable[..., Pipeline]] = {
    "svm": svm,
    "logreg": logreg,
    "mlp": mlp,
    "sgd": sgd,
}

#: The regularisation parameter ``--grid`` tunes for each classifier.
GRIDS: dict[str, dict[str, list[float]]] = {
    "svm": {"clf__C": [0.001, 0.01, 0.1, 1.0]},
    "logreg": {"clf__C": [0.001, 0.01, 0.1, 1.0]},
    "mlp": {"clf__alpha": [1e-4, 1e-3, 1e-2]},
    "sgd": {"clf__alpha": [1e-5, 1e-4, 1e-3]},
}


def make_pipeline(
    clf: str,
    *,
    n_samples: int,
    n_features: int,
    scale: str = "standard",
    pca: int | None = None,
    seed: int = 0,
) -> Pipeline:
    """The pipeline for classifier ``clf`` (one of :data:`CLASSIFIERS`)."""
    _check("clf", clf, tuple(CLASSIFIERS))
    return CLASSIFIERS[clf](
        n_samples=n_samples, n_features=n_features, scale=scale, pca=pca, seed=seed
    )
