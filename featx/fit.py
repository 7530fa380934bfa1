"""Cross-validating and fitting scikit-learn classifiers on cached features.

``svm``, ``logreg`` and ``mlp`` read one layer into memory (float16 converted block
by block into a single float32 array) and use scikit-learn's ``cross_validate``
with shuffled, seeded stratified folds. ``sgd`` never holds the feature matrix: it
streams blocks of rows from the HDF5 file into ``partial_fit``.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import sklearn
from joblib import Parallel, delayed, effective_n_jobs
from sklearn.base import clone
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import Pipeline
from threadpoolctl import threadpool_limits

import pipelines
from featx import __version__
from featx.cache import FORMAT_VERSION, FeatureCache, resolve_caches, weights_spec
from featx.choices import CLASSIFIERS, HEAD_TRAIN_LAYERS
from featx.compare import ci95, per_class
from featx.errors import FeatxError, check_choice, check_int
from featx.modelfile import SUFFIX, save_model
from featx.progress import Progress
from featx.views import CENTER
from pipelines.views import ViewEnsemble

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
    tuned: bool
    cv_scores: dict[str, list[float]]
    fit_times: list[float]
    params: dict = field(default_factory=dict)
    cv_params: list[dict] = field(default_factory=list)
    layer_scores: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    cv_confusion: list[list[int]] = field(default_factory=list)
    weights_id: str = ""
    pretrained: bool = True
    test: dict | None = None
    model_path: str | None = None
    repeats: int = 1
    oof_pred: list[int] = field(default_factory=list)
    oof_score: list[float] = field(default_factory=list)
    per_class: dict = field(default_factory=dict)
    #: The views of each image used: scores averaged over them.
    views: list[str] = field(default_factory=lambda: [CENTER])
    #: Whether every view was a training row (else the centre alone was).
    train_views: bool = True

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
            cv_accuracy_ci95=ci95(self.cv_scores["accuracy"], self.cv),
        )
        if self.test is not None:
            data["test_accuracy"] = self.test["accuracy"]
            data["test_f1_macro"] = self.test["f1_macro"]
        return data


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


@dataclass
class CVOutcome:
    """What one cross-validation gives, in memory or streamed."""

    scores: dict[str, list[float]]
    fit_times: list[float]
    confusion: np.ndarray
    final: object
    params: dict = field(default_factory=dict)
    fold_params: list[dict] = field(default_factory=list)
    #: Out-of-fold prediction and its score for every row (first repeat).
    oof_pred: np.ndarray | None = None
    oof_score: np.ndarray | None = None
    #: The views of each image it used (:mod:`featx.views`).
    views: list[str] = field(default_factory=lambda: [CENTER])


# ----------------------------------------------------------- streaming SGD


def _blocks(cache: FeatureCache, layer: str, mask: np.ndarray, block_rows: int):
    """Yield ``(rows, features)`` for the rows in ``mask``, one block at a time."""
    for rows, block in cache.iter_chunks(layer, chunk_rows=block_rows):
        keep = mask[rows]
        if keep.any():
            yield rows[keep], block[keep]


# Nine parameters: the cache, the rows to use and the pipeline's own settings.
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
    rows_out, preds, scores = [], [], []
    for rows, block in _blocks(cache, layer, mask, SGD_BLOCK_ROWS):
        rows_out.append(rows)
        preds.append(pipeline.predict(block))
        scores.append(top_score(pipeline, block))
    return np.concatenate(rows_out), np.concatenate(preds), np.concatenate(scores)


def cv_streaming(
    cache: FeatureCache, layer: str, labels: np.ndarray, spec: FitSpec
) -> CVOutcome:
    """Cross-validate and refit ``spec`` block by block from the cache (sgd)."""
    n_classes = int(labels.max()) + 1
    scores: dict[str, list[float]] = {m: [] for m in SCORING}
    fit_times = []
    confusion = np.zeros((n_classes, n_classes), np.int64)
    n_features = cache.dataset(layer).shape[1]
    oof_pred = np.full(len(labels), -1, np.int64)
    oof_score = np.zeros(len(labels))
    splits = spec.splits(labels)
    for k, (train, _) in enumerate(splits, 1):
        spec.progress.describe(f"fold {k}/{len(splits)}")
        train_mask = np.zeros(len(labels), bool)
        train_mask[train] = True
        pipe = spec.pipeline(len(train), n_features)
        started = time.perf_counter()
        fit_sgd_streaming(
            cache, layer, pipe, labels, train_mask, n_classes=n_classes, seed=spec.seed
        )
        fit_times.append(time.perf_counter() - started)
        rows, pred, score = _predict_streaming(cache, layer, pipe, ~train_mask)
        scores["accuracy"].append(float(accuracy_score(labels[rows], pred)))
        scores["f1_macro"].append(float(f1_score(labels[rows], pred, average="macro")))
        if k <= spec.cv:
            confusion += _confusion(labels[rows], pred, n_classes)
            oof_pred[rows], oof_score[rows] = pred, score
        spec.progress.advance(1)
    final = spec.pipeline(len(labels), n_features)
    everything = np.ones(len(labels), bool)
    fit_sgd_streaming(
        cache, layer, final, labels, everything, n_classes=n_classes, seed=spec.seed
    )
    return CVOutcome(
        scores, fit_times, confusion, final, oof_pred=oof_pred, oof_score=oof_score
    )


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
        _confusion(labels[test], pred, n_classes),
        chosen_params(model),
        pred,
        top_score(model, X[test]),
    )


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
    if spec.backend == "ray":
        from featx.ray_engine import joblib_backend

        parallel = joblib_backend(spec.address)
    splits = spec.splits(labels)
    outcome = CVOutcome({m: [] for m in SCORING}, [], None, None)
    outcome.confusion = np.zeros((n_classes, n_classes), np.int64)
    outcome.oof_pred = np.full(len(labels), -1, np.int64)
    outcome.oof_score = np.zeros(len(labels))
    local = spec.backend != "ray"
    with parallel, one_blas_thread():
        # Ray's joblib backend cannot stream results: folds then report at the end
        stream = "generator" if local else "list"
        results = Parallel(
            n_jobs=min(effective_n_jobs(spec.jobs), len(splits))
            if local
            else spec.jobs,
            return_as=stream,
            prefer="threads" if local else None,
        )(
            delayed(_fold)(estimator, X, labels, train, test, n_classes)
            for train, test in splits
        )
        for k, (fold, (_, test)) in enumerate(zip(results, splits, strict=True), 1):
            acc, f1, fit_time, confusion, params, pred, score = fold
            outcome.scores["accuracy"].append(acc)
            outcome.scores["f1_macro"].append(f1)
            outcome.fit_times.append(fit_time)
            outcome.fold_params.append(params)
            if k <= spec.cv:  # the first repeat: one prediction per row
                outcome.confusion += confusion
                outcome.oof_pred[test], outcome.oof_score[test] = pred, score
            spec.progress.describe(f"fold {k}/{len(splits)}: accuracy {acc:.4f}")
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


def consensus(clf: str, fold_params: list[dict]) -> float:
    """The value most folds chose; a tie goes to the earlier (stronger) value of
    the classifier's grid."""
    param, grid = next(iter(pipelines.GRIDS[clf].items()))
    votes = [p[param] for p in fold_params]
    return max(grid, key=lambda v: (votes.count(v), -grid.index(v)))


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
        "model": meta.model,
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
    pipeline,
    test: FeatureCache,
    layer: str,
    classes: list[str],
    *,
    streaming: bool,
    views: tuple[str, ...] = (CENTER,),
) -> dict:
    """Score a fitted pipeline on a second cache, mapping classes by name; a
    model of several ``views`` averages over them where that cache holds them
    all, and classifies the centre alone where it does not (``views`` of the
    result says which)."""
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
        rows, y_pred, _ = _predict_streaming(
            test, layer, pipeline, np.ones(len(y_true), bool)
        )
        y_true = y_true[rows]
    else:
        if not set(views) <= set(test.views(layer)):
            views = (CENTER,)
        y_pred = pipeline.predict(test.read_views(layer, views))
    return {
        "views": list(views),
        "cache": str(test.path),
        "n_images": int(len(y_true)),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "f1_macro": float(f1_score(y_true, y_pred, average="macro")),
        "confusion": confusion_matrix(
            y_true, y_pred, labels=range(len(classes))
        ).tolist(),
        "true": [int(v) for v in y_true],
        "pred": [int(v) for v in y_pred],
    }


@dataclass
class FitSpec:
    """One classifier configuration and how its cross-validation runs."""

    clf: str = "svm"
    cv: int = 5
    seed: int = 0
    scale: str = "standard"
    pca: int | None = None
    tune: bool = True
    value: float | None = None
    jobs: int | None = -1
    backend: str = "local"
    address: str | None = None
    progress: Progress = field(default_factory=Progress)
    repeats: int = 1
    #: Use only the centre view of a cache that holds more (:mod:`featx.views`).
    center_only: bool = False
    #: With views: train on each view as a row of its own (augmentation);
    #: False trains on the centre only. Prediction averages every view's scores.
    train_views: bool = True
    #: ``head``: the layers fine-tuned (:data:`HEAD_TRAIN_LAYERS`).
    head_train: str = "fc6-fc8"
    #: ``head``: the weights the pool5 rows came from (:func:`head_source`);
    #: set from the cache.
    source: dict = field(default_factory=dict)

    def check(self) -> None:
        """Refuse options that cannot work, before any data is read."""
        check_choice("clf", self.clf, CLASSIFIERS)
        check_choice("head_train", self.head_train, HEAD_TRAIN_LAYERS)
        check_choice("scale", self.scale, pipelines.SCALES)
        check_choice("backend", self.backend, ("local", "ray"))
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
            from featx.head import HeadClassifier  # torch: only for the head

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


# Long: resolves the caches, runs the per-layer CV and assembles the result and
# the model file; each step is a function of its own.
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
    """Cross-validate a classifier on a cached layer, refit on all rows, save it.

    ``options`` are the fields of :class:`FitSpec` (``clf``, ``cv``, ``seed``,
    ``scale``, ``pca``, ``tune``, ``value``, ``jobs``, ``backend``, ``address``,
    ``progress``): by default the classifier tunes its regularisation inside each
    training fold; ``value`` fixes it (``C`` or ``alpha``), and ``tune=False``
    uses scikit-learn's defaults.

    With no ``cache``, the training cache is chosen (:func:`choose_caches`) and a
    held-out sibling cache becomes ``test`` unless one is given. With no
    ``layer`` and several complete layers, each is cross-validated and the best
    is kept (``layer_scores``). Returns a :class:`FitResult`; raises
    :class:`FitError` (or another :class:`~featx.errors.FeatxError`) for data or
    options that cannot work.
    """
    spec = FitSpec(**options)
    spec.check()
    choice = resolve_caches(cache, test, cache_dir)
    path = choice.train
    with FeatureCache(path) as train:
        if spec.clf == "head":
            layer = check_head_layer(train, layer)
            spec = replace(spec, source=head_source(train.meta))
        layers = [layer] if layer is not None else train.complete_layers()
        if not layers:
            raise FitError(f"{path.name} has no complete layer; finish `featx extract`")
        for name in layers:
            train.dataset(name)  # explains a missing or incomplete layer
        labels, classes = labelled_rows(train, spec.cv)
        outcomes = {}
        for name in layers:
            spec.progress.describe(name)
            outcomes[name] = _cross_validate(train, name, labels, spec)
        layer = _best_layer(train, outcomes)
        outcome = outcomes[layer]
        n_rows, n_features = train.dataset(layer).shape
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
            tuned=spec.tuned,
            cv_scores=outcome.scores,
            fit_times=outcome.fit_times,
            cv_confusion=outcome.confusion.tolist(),
            params=outcome.params,
            cv_params=outcome.fold_params,
            weights_id=train.meta.weights.id,
            pretrained=train.meta.weights.pretrained,
            notes=choice.notes,
            repeats=spec.repeats,
            oof_pred=outcome.oof_pred.tolist(),
            oof_score=[round(float(v), 6) for v in outcome.oof_score],
            per_class=per_class(labels, outcome.oof_pred, classes),
            views=outcome.views,
            train_views=spec.train_views,
        )
        if len(outcomes) > 1:
            result.layer_scores = [
                {
                    "layer": name,
                    "cv_accuracy_mean": float(np.mean(o.scores["accuracy"])),
                    "cv_accuracy_std": float(np.std(o.scores["accuracy"])),
                }
                for name, o in outcomes.items()
            ]
        if choice.test is not None:
            with FeatureCache(choice.test) as held_out:
                check_compatible(train, held_out, layer)
                result.test = evaluate_test(
                    outcome.final,
                    held_out,
                    layer,
                    classes,
                    streaming=spec.clf == "sgd",
                    views=tuple(outcome.views),
                )
        meta = model_meta(train, layer, spec.clf, classes)
        meta["views"] = outcome.views
    if save:
        out = Path(out) if out else default_model_path(path, layer, spec.clf)
        settings = ("cv", "seed", "scale", "pca", "tuned", "params", "cv_scores")
        meta.update({key: getattr(result, key) for key in settings})
        result.model_path = str(save_model(out, outcome.final, meta))
    return result


def head_source(meta) -> dict:
    """The weights a cache's rows came from, as :class:`HeadClassifier` takes
    them."""
    weights, seed = weights_spec(meta.weights.id, meta.weights.source)
    return {
        "weights": weights,
        "weights_seed": seed,
        "model": meta.model,
        "weights_sha256": meta.weights.sha256,
    }


def is_head_layer(ldef) -> bool:
    """Whether a stored layer (a :class:`~featx.cache.LayerDef`) is what the
    head fine-tunes on: pool5, unpooled."""
    return ldef.layer == "pool5" and ldef.spatial == "none"


def check_head_layer(cache: FeatureCache, layer: str | None) -> str:
    """The layer the head fine-tunes on: pool5, unpooled."""
    layer = layer or "pool5"
    ldef = cache.layers.get(layer)
    if ldef is None or not is_head_layer(ldef):
        raise FitError(
            f"--clf head fine-tunes fc6-fc8 on pool5 rows, and {cache.path.name} "
            f"{'has no pool5' if ldef is None else f'was asked for {layer}'}; run "
            f"`featx extract {cache.meta.data_root or 'DATA_DIR'} --layer pool5`"
        )
    return layer


def _cross_validate(
    train: FeatureCache, layer: str, labels: np.ndarray, spec: FitSpec
) -> CVOutcome:
    """Cross-validate ``spec`` on one layer of ``train`` and refit it."""
    n_rows, n_features = train.dataset(layer).shape
    smallest_fold = n_rows - -(-n_rows // spec.cv)
    if spec.pca and spec.pca > min(smallest_fold, n_features):
        raise FitError(
            f"--pca {spec.pca} exceeds what a training fold holds "
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


def _best_layer(train: FeatureCache, outcomes: dict[str, CVOutcome]) -> str:
    """The layer of highest mean CV accuracy; ties go to the shallower layer."""
    layers = train.layers

    def rank(name: str):
        order, index = layers[name].depth
        return np.mean(outcomes[name].scores["accuracy"]), -order, -index

    return max(outcomes, key=rank)


def default_model_path(cache_path: Path, layer: str, clf: str) -> Path:
    return Path("models") / f"{cache_path.stem}-{layer}-{clf}{SUFFIX}"
