"""The caches a fit reads: their labels, the head's layer and weights, a
held-out cache's compatibility and score, and the best of several layers."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

from featx.cache import FeatureCache, weights_spec
from featx.choices import CLASSIFIERS, HEAD_MODELS
from featx.errors import param
from featx.fit.result import CVOutcome
from featx.fit.scoring import top_score
from featx.fit.spec import FitError
from featx.fit.streaming import predict_streaming
from featx.images.views import CENTER

__all__ = [
    "labelled_rows",
    "check_compatible",
    "evaluate_test",
    "head_source",
    "has_head",
    "is_head_layer",
    "check_head_layer",
    "best_layer",
    "HEAD_MODELS",
]


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
            f"{param('cv', cv)} needs at least {cv} images in every class; "
            f"{classes[smallest]!r} has {counts[smallest]}"
        )
    return labels, classes


def check_compatible(train: FeatureCache, test: FeatureCache, layer: str) -> None:
    """Refuse a test cache whose rows another network or preprocessing made."""
    if not train.meta.same_source(test.meta):
        raise FitError(
            f"the {param('test')} cache {test.path.name} was made with other "
            f"weights or preprocessing than {train.path.name}; extract both with "
            f"the same {param('weights')}"
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
        raise FitError(f"the {param('test')} cache {test.path.name} has {what}")
    mapping = np.array([classes.index(c) for c in test.classes], np.int64)
    y_true = mapping[test.labels]
    if streaming:
        rows, y_pred, y_score = predict_streaming(
            test, layer, pipeline, np.ones(len(y_true), bool)
        )
        y_true = y_true[rows]
    else:
        if not set(views) <= set(test.views(layer)):
            views = (CENTER,)
        X = test.read_views(layer, views)
        y_pred, y_score = pipeline.predict(X), top_score(pipeline, X)
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
        #: the score of each predicted class (the report's gallery ranks by it)
        "score": [round(float(v), 6) for v in y_score],
    }


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


def has_head(model: str) -> bool:
    """Whether the head (:class:`~pipelines.head.HeadClassifier`) can fine-tune on
    caches of ``model``: AlexNet's, either of them."""
    return model in HEAD_MODELS


def is_head_layer(ldef) -> bool:
    """Whether a stored layer (a :class:`~featx.cache.LayerDef`) is what the
    head fine-tunes on: pool5, unpooled."""
    return ldef.layer == "pool5" and ldef.spatial == "none"


def check_head_layer(cache: FeatureCache, layer: str | None) -> str:
    """The layer the head fine-tunes on: pool5, unpooled, of an AlexNet."""
    model = cache.meta.model
    if not has_head(model):
        others = ", ".join(c for c in CLASSIFIERS if c != "head")
        raise FitError(
            f"{param('clf', 'head')} fine-tunes AlexNet's fc6-fc8 on pool5; this "
            f"cache is of {model} ({cache.path.name}), which has no such head; "
            f"choose another {param('clf')} ({others})"
        )
    layer = layer or "pool5"
    ldef = cache.layers.get(layer)
    if ldef is None or not is_head_layer(ldef):
        raise FitError(
            f"{param('clf', 'head')} fine-tunes fc6-fc8 on pool5 rows, and "
            f"{cache.path.name} "
            f"{'has no pool5' if ldef is None else f'was asked for {layer}'}; run "
            f"`featx extract {cache.meta.data_root or 'DATA_DIR'} --layer pool5`"
        )
    return layer


def best_layer(train: FeatureCache, outcomes: dict[str, CVOutcome]) -> str:
    """The layer of highest mean CV accuracy; ties go to the shallower layer."""
    layers = train.layers

    def rank(name: str):
        order, index = layers[name].depth
        return np.mean(outcomes[name].scores["accuracy"]), -order, -index

    return max(outcomes, key=rank)
