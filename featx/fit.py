"""Cross-validating and fitting scikit-learn classifiers on cached features.

``svm``, ``logreg`` and ``mlp`` read one layer into memory (float16 converted block
by block into a single float32 array) and use scikit-learn's ``cross_validate``
with shuffled, seeded stratified folds. ``sgd`` never holds the feature matrix: it
streams blocks of rows from the HDF5 file into ``partial_fit``.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import sklearn
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score
from sklearn.model_selection import GridSearchCV, StratifiedKFold, cross_validate

import pipelines
from featx import __version__
from featx.cache import FORMAT_VERSION, FeatureCache, resolve_cache
from featx.errors import FeatxError, check_choice, check_int
from featx.modelfile import save_model
from featx.progress import Progress

SCORING = ("accuracy", "f1_macro")
SGD_EPOCHS = 10
SGD_BLOCK_ROWS = 1024


class FitError(FeatxError, ValueError):
    """Data or options that cannot be fitted (no labels, one class, ...)."""


@dataclass
class FitResult:
    """Cross-validation scores, optional held-out scores, and the saved model."""

    cache: str
    layer: str
    clf: str
    n_rows: int
    n_features: int
    classes: list[str]
    cv: int
    seed: int
    scale: str
    pca: int | None
    grid: bool
    cv_scores: dict[str, list[float]]
    fit_times: list[float]
    params: dict = field(default_factory=dict)
    cv_confusion: list[list[int]] = field(default_factory=list)
    weights_id: str = ""
    pretrained: bool = True
    test: dict | None = None
    model_path: str | None = None

    def mean(self, metric: str) -> float:
        return float(np.mean(self.cv_scores[metric]))

    def std(self, metric: str) -> float:
        return float(np.std(self.cv_scores[metric]))

    def to_json(self) -> dict:
        data = asdict(self)
        data.update(
            cv_accuracy_mean=self.mean("accuracy"),
            cv_accuracy_std=self.std("accuracy"),
            cv_f1_macro_mean=self.mean("f1_macro"),
            cv_f1_macro_std=self.std("f1_macro"),
            fit_time_mean=float(np.mean(self.fit_times)),
        )
        if self.test is not None:
            data["test_accuracy"] = self.test["accuracy"]
            data["test_f1_macro"] = self.test["f1_macro"]
        return data


def choose_layer(cache: FeatureCache, layer: str | None) -> str:
    """``layer``, or the cache's only complete layer; else list the choices."""
    if layer is not None:
        cache.dataset(layer)  # explains a missing or incomplete layer
        return layer
    complete = cache.complete_layers()
    if len(complete) == 1:
        return complete[0]
    have = ", ".join(cache.layers) or "none"
    raise FitError(f"{cache.path.name} has layers {have}; choose one with --layer")


def labelled_rows(cache: FeatureCache, cv: int) -> tuple[np.ndarray, list[str]]:
    """The labels of a cache, checked to suit ``cv``-fold classification."""
    labels, classes = cache.labels, cache.classes
    if not classes or (labels < 0).all():
        raise FitError(
            f"{cache.path.name} has no labels (its folder had no class subfolders); "
            "fit needs one subfolder per class"
        )
    counts = np.bincount(labels, minlength=len(classes))
    present = [c for c, n in zip(classes, counts, strict=True) if n]
    if len(present) < 2:
        raise FitError(
            f"{cache.path.name} has one class only "
            f"({present[0] if present else 'none'}); a classifier needs at least two"
        )
    smallest = int(np.argmin(np.where(counts > 0, counts, np.iinfo(np.int64).max)))
    if counts[smallest] < cv:
        raise FitError(
            f"--cv {cv} needs at least {cv} images in every class; "
            f"{classes[smallest]!r} has {counts[smallest]}"
        )
    return labels, classes


def _confusion(y_true, y_pred, n_classes: int) -> np.ndarray:
    return confusion_matrix(y_true, y_pred, labels=range(n_classes))


def folds(cv: int, seed: int) -> StratifiedKFold:
    """The shuffled, seeded stratified folds every featx CV uses."""
    return StratifiedKFold(n_splits=cv, shuffle=True, random_state=seed)


def build(
    clf: str, *, n_rows: int, n_features: int, scale: str, pca: int | None, seed: int
):
    """The pipeline of ``clf`` for data of this shape (``clf`` already checked)."""
    try:
        return pipelines.make_pipeline(
            clf,
            n_samples=n_rows,
            n_features=n_features,
            scale=scale,
            pca=pca,
            seed=seed,
        )
    except ValueError as exc:
        raise FitError(str(exc)) from exc


@dataclass
class CVOutcome:
    """What one cross-validation gives, in memory or streamed."""

    scores: dict[str, list[float]]
    fit_times: list[float]
    confusion: np.ndarray
    final: object
    params: dict = field(default_factory=dict)


# ----------------------------------------------------------- streaming SGD


def _blocks(cache: FeatureCache, layer: str, mask: np.ndarray, block_rows: int):
    """Yield ``(rows, features)`` for the rows in ``mask``, one block at a time."""
    for rows, block in cache.iter_chunks(layer, chunk_rows=block_rows):
        keep = mask[rows]
        if keep.any():
            yield rows[keep], block[keep]


def fit_sgd_streaming(
    cache: FeatureCache,
    layer: str,
    pipeline,
    labels: np.ndarray,
    mask: np.ndarray,
    *,
    n_classes: int,
    seed: int,
    epochs: int = SGD_EPOCHS,
    block_rows: int | None = None,
):
    """Fit a partial_fit pipeline on the ``mask`` rows, streaming from the cache.

    At most ``block_rows`` rows (default :data:`SGD_BLOCK_ROWS`) are in memory.
    """
    block_rows = block_rows or SGD_BLOCK_ROWS
    n_steps = len(pipeline.steps) - 1
    for i in range(n_steps):
        step = pipeline[i]
        if not hasattr(step, "partial_fit"):  # stateless (Normalizer)
            step.fit(next(_blocks(cache, layer, mask, block_rows))[1])
            continue
        pending = None
        need = getattr(step, "n_components", None) or 1
        for _, block in _blocks(cache, layer, mask, block_rows):
            block = pipeline[:i].transform(block) if i else block
            pending = block if pending is None else np.vstack([pending, block])
            if len(pending) >= need:
                step.partial_fit(pending)
                pending = None
        # a tail shorter than PCA's components is left out, unless it is all
        if pending is not None and not hasattr(step, "n_samples_seen_"):
            step.partial_fit(pending)
    rng = np.random.default_rng(seed)
    classes = np.arange(n_classes)
    head = pipeline[:n_steps]
    for _ in range(epochs):
        for rows, block in _blocks(cache, layer, mask, block_rows):
            order = rng.permutation(len(rows))
            pipeline[-1].partial_fit(
                head.transform(block)[order] if n_steps else block[order],
                labels[rows][order],
                classes=classes,
            )
    return pipeline


def _predict_streaming(cache, layer, pipeline, mask):
    rows_out, preds = [], []
    for rows, block in _blocks(cache, layer, mask, SGD_BLOCK_ROWS):
        rows_out.append(rows)
        preds.append(pipeline.predict(block))
    return np.concatenate(rows_out), np.concatenate(preds)


def cv_streaming(
    cache: FeatureCache, layer: str, labels: np.ndarray, spec: FitSpec
) -> CVOutcome:
    """Cross-validate and refit ``spec`` block by block from the cache (sgd)."""
    n_classes = int(labels.max()) + 1
    scores: dict[str, list[float]] = {m: [] for m in SCORING}
    fit_times = []
    confusion = np.zeros((n_classes, n_classes), np.int64)
    n_features = cache.dataset(layer).shape[1]
    splits = list(folds(spec.cv, spec.seed).split(np.zeros(len(labels)), labels))
    for k, (train, _) in enumerate(splits, 1):
        spec.progress.describe(f"{layer} {spec.clf} fold {k}/{spec.cv}")
        train_mask = np.zeros(len(labels), bool)
        train_mask[train] = True
        pipe = spec.pipeline(len(train), n_features)
        started = time.perf_counter()
        fit_sgd_streaming(
            cache, layer, pipe, labels, train_mask, n_classes=n_classes, seed=spec.seed
        )
        fit_times.append(time.perf_counter() - started)
        rows, pred = _predict_streaming(cache, layer, pipe, ~train_mask)
        scores["accuracy"].append(float(accuracy_score(labels[rows], pred)))
        scores["f1_macro"].append(float(f1_score(labels[rows], pred, average="macro")))
        confusion += _confusion(labels[rows], pred, n_classes)
        spec.progress.advance(1)
    final = spec.pipeline(len(labels), n_features)
    everything = np.ones(len(labels), bool)
    fit_sgd_streaming(
        cache, layer, final, labels, everything, n_classes=n_classes, seed=spec.seed
    )
    return CVOutcome(scores, fit_times, confusion, final)


def cv_in_memory(X: np.ndarray, labels: np.ndarray, spec: FitSpec) -> CVOutcome:
    """Cross-validate ``spec`` with scikit-learn's ``cross_validate`` on ``X``,
    then refit it on every row."""
    n_classes = int(labels.max()) + 1
    estimator = spec.pipeline(len(labels), X.shape[1])
    if spec.grid:
        estimator = GridSearchCV(
            estimator,
            pipelines.GRIDS[spec.clf],
            cv=folds(3, spec.seed),
            scoring="accuracy",
        )
    parallel = contextlib.nullcontext()
    if spec.backend == "ray":
        from featx.ray_engine import joblib_backend

        parallel = joblib_backend(spec.address)
    spec.progress.describe(f"{spec.clf}: {spec.cv} folds")
    with parallel:
        cv_out = cross_validate(
            estimator,
            X,
            labels,
            cv=folds(spec.cv, spec.seed),
            scoring=SCORING,
            n_jobs=spec.jobs,
            return_estimator=True,
            return_indices=True,
        )
    spec.progress.advance(spec.cv)
    confusion = np.zeros((n_classes, n_classes), np.int64)
    for est, test_idx in zip(
        cv_out["estimator"], cv_out["indices"]["test"], strict=True
    ):
        confusion += _confusion(labels[test_idx], est.predict(X[test_idx]), n_classes)
    estimator.fit(X, labels)
    return CVOutcome(
        scores={m: [float(s) for s in cv_out[f"test_{m}"]] for m in SCORING},
        fit_times=[float(t) for t in cv_out["fit_time"]],
        confusion=confusion,
        final=estimator.best_estimator_ if spec.grid else estimator,
        params=dict(estimator.best_params_) if spec.grid else {},
    )


# --------------------------------------------------------------- the command


def model_meta(cache: FeatureCache, layer: str, clf: str, classes: list[str]) -> dict:
    """What a saved model records so predict can reproduce its features."""
    meta = cache.meta
    ldef = cache.layers[layer]
    return {
        "featx_version": __version__,
        "sklearn_version": sklearn.__version__,
        "cache_format": FORMAT_VERSION,
        "cache": str(cache.path),
        "data_root": meta.data_root,
        "layer": layer,
        "layer_name": ldef.layer,
        "module_path": ldef.module_path,
        "spatial": ldef.spatial,
        "dtype": ldef.dtype,
        "clf": clf,
        "classes": classes,
        **{f"weights_{k}": v for k, v in meta.weights.to_dict().items()},
        "transform": meta.transform,
    }


def check_compatible(train: FeatureCache, test: FeatureCache, layer: str) -> None:
    """Refuse a test cache whose rows another network or preprocessing made."""
    if not train.meta.same_source(test.meta):
        raise FitError(
            f"--test cache {test.path.name} was made with other weights or "
            f"preprocessing than {train.path.name}; extract both with the same "
            "--weights"
        )
    test.dataset(layer)


def evaluate_test(
    pipeline, test: FeatureCache, layer: str, classes: list[str], *, streaming: bool
) -> dict:
    """Score a fitted pipeline on a second cache, mapping classes by name."""
    unknown = [c for c in test.classes if c not in classes]
    if unknown or not test.classes:
        what = (
            f"classes the model never saw: {', '.join(unknown)}"
            if unknown
            else "no labels"
        )
        raise FitError(f"--test cache {test.path.name} has {what}")
    mapping = np.array([classes.index(c) for c in test.classes], np.int64)
    y_true = mapping[test.labels]
    if streaming:
        rows, y_pred = _predict_streaming(
            test, layer, pipeline, np.ones(len(y_true), bool)
        )
        y_true = y_true[rows]
    else:
        y_pred = pipeline.predict(test.read(layer))
    return {
        "cache": str(test.path),
        "n_images": int(len(y_true)),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "f1_macro": float(f1_score(y_true, y_pred, average="macro")),
        "confusion": confusion_matrix(
            y_true, y_pred, labels=range(len(classes))
        ).tolist(),
    }


@dataclass
class FitSpec:
    """One classifier configuration and how its cross-validation runs."""

    clf: str = "svm"
    cv: int = 5
    seed: int = 0
    scale: str = "standard"
    pca: int | None = None
    grid: bool = False
    jobs: int | None = 1
    backend: str = "local"
    address: str | None = None
    progress: Progress = field(default_factory=Progress)

    def check(self) -> None:
        """Refuse options that cannot work, before any data is read."""
        check_choice("clf", self.clf, tuple(pipelines.CLASSIFIERS))
        check_choice("scale", self.scale, pipelines.SCALES)
        check_choice("backend", self.backend, ("local", "ray"))
        check_int("cv", self.cv, low=2)
        if self.pca is not None:
            check_int("pca", self.pca, low=1)
        if self.jobs is not None:
            check_int("jobs", self.jobs, low=1, allow=(-1,))
        if self.grid and self.clf == "sgd":
            raise FitError("--grid is not available with --clf sgd")

    def pipeline(self, n_rows: int, n_features: int):
        return build(
            self.clf,
            n_rows=n_rows,
            n_features=n_features,
            scale=self.scale,
            pca=self.pca,
            seed=self.seed,
        )


def fit(
    *,
    cache: str | Path | None = None,
    cache_dir: Path | None = None,
    layer: str | None = None,
    test: str | Path | None = None,
    out: Path | None = None,
    save: bool = True,
    **options,
) -> FitResult:
    """Cross-validate a classifier on one cached layer, refit on all rows, save it.

    ``options`` are the fields of :class:`FitSpec` (``clf``, ``cv``, ``seed``,
    ``scale``, ``pca``, ``grid``, ``jobs``, ``backend``, ``address``,
    ``progress``). Returns a :class:`FitResult`; raises :class:`FitError` (or
    another :class:`~featx.errors.FeatxError`) for data or options that cannot
    work.
    """
    spec = FitSpec(**options)
    spec.check()
    path = resolve_cache(cache, cache_dir)
    with FeatureCache(path) as train:
        layer = choose_layer(train, layer)
        labels, classes = labelled_rows(train, spec.cv)
        n_rows, n_features = train.dataset(layer).shape
        smallest_fold = n_rows - -(-n_rows // spec.cv)
        if spec.pca and spec.pca > min(smallest_fold, n_features):
            raise FitError(
                f"--pca {spec.pca} exceeds what a training fold holds "
                f"({smallest_fold} rows x {n_features} features)"
            )
        if spec.clf == "sgd":
            outcome = cv_streaming(train, layer, labels, spec)
        else:
            X = train.read(layer)
            outcome = cv_in_memory(X, labels, spec)
            del X
        result = FitResult(
            cache=str(path),
            layer=layer,
            clf=spec.clf,
            n_rows=int(n_rows),
            n_features=int(n_features),
            classes=classes,
            cv=spec.cv,
            seed=spec.seed,
            scale=spec.scale,
            pca=spec.pca,
            grid=spec.grid,
            cv_scores=outcome.scores,
            fit_times=outcome.fit_times,
            cv_confusion=outcome.confusion.tolist(),
            params=outcome.params,
            weights_id=train.meta.weights.id,
            pretrained=train.meta.weights.pretrained,
        )
        if test is not None:
            with FeatureCache(resolve_cache(test, cache_dir)) as held_out:
                check_compatible(train, held_out, layer)
                result.test = evaluate_test(
                    outcome.final,
                    held_out,
                    layer,
                    classes,
                    streaming=spec.clf == "sgd",
                )
        meta = model_meta(train, layer, spec.clf, classes)
    if save:
        out = Path(out) if out else default_model_path(path, layer, spec.clf)
        settings = ("cv", "seed", "scale", "pca", "params", "cv_scores")
        meta.update({key: getattr(result, key) for key in settings})
        result.model_path = str(save_model(out, outcome.final, meta))
    return result


def default_model_path(cache_path: Path, layer: str, clf: str) -> Path:
    return Path("models") / f"{cache_path.stem}-{layer}-{clf}.joblib"
