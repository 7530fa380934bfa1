"""Cross-validating and fitting scikit-learn classifiers on cached features.

``svm``, ``logreg`` and ``mlp`` read one layer into memory (float16 converted block
by block into a single float32 array) and use scikit-learn's ``cross_validate``
with shuffled, seeded stratified folds. ``sgd`` never holds the feature matrix: it
streams blocks of rows from the HDF5 file into ``partial_fit``.
"""

from __future__ import annotations

import contextlib
import json
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
from featx.errors import FeatxError
from featx.modelfile import save_model

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
    layers = cache.layers
    if layer is not None:
        cache.dataset(layer)  # explains a missing or incomplete layer
        return layer
    complete = [k for k in layers if cache.file["done"][k][:].all()]
    if len(complete) == 1:
        return complete[0]
    have = ", ".join(layers) or "none"
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
    if cv < 2:
        raise FitError(f"--cv must be at least 2; got {cv}")
    smallest = int(np.argmin(np.where(counts > 0, counts, np.iinfo(np.int64).max)))
    if counts[smallest] < cv:
        raise FitError(
            f"--cv {cv} needs at least {cv} images in every class; "
            f"{classes[smallest]!r} has {counts[smallest]}"
        )
    return labels, classes


def _confusion(y_true, y_pred, n_classes: int) -> np.ndarray:
    return confusion_matrix(y_true, y_pred, labels=range(n_classes))


def folds(labels: np.ndarray, cv: int, seed: int) -> StratifiedKFold:
    return StratifiedKFold(n_splits=cv, shuffle=True, random_state=seed)


def build(
    clf: str, *, n_rows: int, n_features: int, scale: str, pca: int | None, seed: int
):
    if clf not in pipelines.CLASSIFIERS:
        options = ", ".join(repr(c) for c in pipelines.CLASSIFIERS)
        raise FitError(f"`clf` must be one of {options}. Got {clf!r}.")
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
    steps = [step for _, step in pipeline.steps[:-1]]
    clf = pipeline.steps[-1][1]

    def through(block, upto):
        for step in steps[:upto]:
            block = step.transform(block)
        return block

    for i, step in enumerate(steps):
        if not hasattr(step, "partial_fit"):  # stateless (Normalizer)
            step.fit(next(_blocks(cache, layer, mask, block_rows))[1])
            continue
        pending = None
        need = getattr(step, "n_components", None) or 1
        for _, block in _blocks(cache, layer, mask, block_rows):
            block = through(block, i)
            pending = block if pending is None else np.vstack([pending, block])
            if len(pending) >= need:
                step.partial_fit(pending)
                pending = None
        # a tail shorter than PCA's components is left out, unless it is all
        if pending is not None and (
            not hasattr(step, "n_samples_seen_") or len(pending) >= need
        ):
            step.partial_fit(pending)
    rng = np.random.default_rng(seed)
    classes = np.arange(n_classes)
    for _ in range(epochs):
        for rows, block in _blocks(cache, layer, mask, block_rows):
            order = rng.permutation(len(rows))
            clf.partial_fit(
                through(block, len(steps))[order], labels[rows][order], classes=classes
            )
    return pipeline


def _predict_streaming(cache, layer, pipeline, mask):
    rows_out, preds = [], []
    for rows, block in _blocks(cache, layer, mask, SGD_BLOCK_ROWS):
        rows_out.append(rows)
        preds.append(pipeline.predict(block))
    return np.concatenate(rows_out), np.concatenate(preds)


def _cv_streaming(cache, layer, labels, *, clf, cv, seed, scale, pca, n_classes):
    scores = {m: [] for m in SCORING}
    fit_times = []
    confusion = np.zeros((n_classes, n_classes), np.int64)
    n_features = cache.dataset(layer).shape[1]
    for train, _ in folds(labels, cv, seed).split(np.zeros(len(labels)), labels):
        train_mask = np.zeros(len(labels), bool)
        train_mask[train] = True
        pipe = build(
            clf,
            n_rows=len(train),
            n_features=n_features,
            scale=scale,
            pca=pca,
            seed=seed,
        )
        started = time.perf_counter()
        fit_sgd_streaming(
            cache, layer, pipe, labels, train_mask, n_classes=n_classes, seed=seed
        )
        fit_times.append(time.perf_counter() - started)
        rows, pred = _predict_streaming(cache, layer, pipe, ~train_mask)
        scores["accuracy"].append(float(accuracy_score(labels[rows], pred)))
        scores["f1_macro"].append(float(f1_score(labels[rows], pred, average="macro")))
        confusion += _confusion(labels[rows], pred, n_classes)
    return scores, fit_times, confusion


# --------------------------------------------------------------- the command


def model_meta(cache: FeatureCache, layer: str, clf: str, classes: list[str]) -> dict:
    """What a saved model records so predict can reproduce its features."""
    a = cache.attrs
    ldef = cache.layers[layer]
    return {
        "featx_version": __version__,
        "sklearn_version": sklearn.__version__,
        "cache_format": FORMAT_VERSION,
        "cache": str(cache.path),
        "data_root": str(a.get("data_root", "")),
        "layer": layer,
        "layer_name": ldef.layer,
        "module_path": ldef.module_path,
        "spatial": ldef.spatial,
        "dtype": ldef.dtype,
        "clf": clf,
        "classes": classes,
        "weights_id": str(a.get("weights_id", "")),
        "weights_sha256": str(a.get("weights_sha256", "")),
        "weights_pretrained": bool(a.get("weights_pretrained", False)),
        "weights_source": str(a.get("weights_source", "")),
        "transform": json.loads(a.get("transform", "{}")),
    }


def _check_compatible(train: FeatureCache, test: FeatureCache, layer: str) -> None:
    for key, what in (("weights_sha256", "weights"), ("transform", "preprocessing")):
        if train.attrs.get(key) != test.attrs.get(key):
            raise FitError(
                f"--test cache {test.path.name} was made with other {what} than "
                f"{train.path.name}; extract both with the same --weights"
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


def fit(
    *,
    cache: str | Path | None = None,
    cache_dir: Path | None = None,
    layer: str | None = None,
    clf: str = "svm",
    cv: int = 5,
    test: str | Path | None = None,
    grid: bool = False,
    jobs: int | None = 1,
    seed: int = 0,
    scale: str = "standard",
    pca: int | None = None,
    out: Path | None = None,
    save: bool = True,
    backend: str = "local",
    address: str | None = None,
) -> FitResult:
    """Cross-validate ``clf`` on one cached layer, refit on all rows, save it.

    Returns a :class:`FitResult`; raises :class:`FitError` (or another
    :class:`~featx.errors.FeatxError`) for data or options that cannot work.
    """
    if clf not in pipelines.CLASSIFIERS:
        build(clf, n_rows=0, n_features=0, scale=scale, pca=pca, seed=seed)
    if backend not in ("local", "ray"):
        raise FitError(f"backend must be 'local' or 'ray'; got {backend!r}")
    if grid and clf == "sgd":
        raise FitError(
            "--grid is not available with --clf sgd; pick alpha with svm/logreg"
        )
    path = resolve_cache(cache, cache_dir)
    with FeatureCache(path) as fc:
        layer = choose_layer(fc, layer)
        labels, classes = labelled_rows(fc, cv)
        ds = fc.dataset(layer)
        n_rows, n_features = ds.shape
        if pca and pca > min(n_rows, n_features):
            raise FitError(
                f"--pca {pca} exceeds the data's size ({n_rows}x{n_features})"
            )
        pipe = build(
            clf, n_rows=n_rows, n_features=n_features, scale=scale, pca=pca, seed=seed
        )
        params: dict = {}
        if clf == "sgd":
            scores, fit_times, confusion = _cv_streaming(
                fc,
                layer,
                labels,
                clf=clf,
                cv=cv,
                seed=seed,
                scale=scale,
                pca=pca,
                n_classes=len(classes),
            )
            fit_sgd_streaming(
                fc,
                layer,
                pipe,
                labels,
                np.ones(n_rows, bool),
                n_classes=len(classes),
                seed=seed,
            )
            final = pipe
        else:
            X = fc.read(layer)
            estimator = pipe
            if grid:
                estimator = GridSearchCV(
                    pipe,
                    pipelines.GRIDS[clf],
                    cv=folds(labels, 3, seed),
                    scoring="accuracy",
                )
            parallel = contextlib.nullcontext()
            if backend == "ray":
                from featx.ray_engine import joblib_backend

                parallel = joblib_backend(address)
            with parallel:
                cv_out = cross_validate(
                    estimator,
                    X,
                    labels,
                    cv=folds(labels, cv, seed),
                    scoring=SCORING,
                    n_jobs=jobs,
                    return_estimator=True,
                    return_indices=True,
                )
            scores = {m: [float(s) for s in cv_out[f"test_{m}"]] for m in SCORING}
            fit_times = [float(t) for t in cv_out["fit_time"]]
            confusion = np.zeros((len(classes), len(classes)), np.int64)
            for est, test_idx in zip(
                cv_out["estimator"], cv_out["indices"]["test"], strict=True
            ):
                confusion += _confusion(
                    labels[test_idx], est.predict(X[test_idx]), len(classes)
                )
            estimator.fit(X, labels)
            del X
            final = estimator.best_estimator_ if grid else estimator
            params = dict(estimator.best_params_) if grid else {}
        result = FitResult(
            cache=str(path),
            layer=layer,
            clf=clf,
            n_rows=int(n_rows),
            n_features=int(n_features),
            classes=classes,
            cv=cv,
            seed=seed,
            scale=scale,
            pca=pca,
            grid=grid,
            cv_scores=scores,
            fit_times=fit_times,
            cv_confusion=confusion.tolist(),
            params=params,
            weights_id=str(fc.attrs.get("weights_id", "")),
            pretrained=bool(fc.attrs.get("weights_pretrained", False)),
        )
        if test is not None:
            with FeatureCache(resolve_cache(test, cache_dir)) as tc:
                _check_compatible(fc, tc, layer)
                result.test = evaluate_test(
                    final, tc, layer, classes, streaming=clf == "sgd"
                )
        meta = model_meta(fc, layer, clf, classes)
    if save:
        out = Path(out) if out else Path("models") / f"{path.stem}-{layer}-{clf}.joblib"
        meta.update(
            cv=cv, seed=seed, scale=scale, pca=pca, params=params, cv_scores=scores
        )
        result.model_path = str(save_model(out, final, meta))
    return result
