"""``sgd``: cross-validation that never holds the feature matrix, streaming
blocks of rows from the HDF5 file into ``partial_fit``."""

from __future__ import annotations

import time

import numpy as np
from sklearn.metrics import accuracy_score, f1_score

from featx.cache import FeatureCache
from featx.fit.result import CVOutcome
from featx.fit.scoring import confusion, top_score
from featx.fit.spec import SCORING, FitSpec

__all__ = [
    "SGD_EPOCHS",
    "SGD_BLOCK_ROWS",
    "default_block_rows",
    "default_epochs",
    "fit_sgd_streaming",
    "predict_streaming",
    "cv_streaming",
]

SGD_EPOCHS = 10
SGD_BLOCK_ROWS = 1024


def default_block_rows() -> int:
    """The rows read at a time: ``featx.fit.SGD_BLOCK_ROWS``, looked up when
    used, so that setting it on the package (as tests do) takes effect."""
    import featx.fit

    return featx.fit.SGD_BLOCK_ROWS


def default_epochs() -> int:
    """Passes over the rows: ``featx.fit.SGD_EPOCHS``, looked up when used."""
    import featx.fit

    return featx.fit.SGD_EPOCHS


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
    epochs: int | None = None,
    block_rows: int | None = None,
):
    """Fit a partial_fit pipeline on the ``mask`` rows, streaming from the cache.

    At most ``block_rows`` rows (default :data:`SGD_BLOCK_ROWS`) are in memory.
    """
    block_rows = block_rows or default_block_rows()
    epochs = epochs or default_epochs()
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


def predict_streaming(cache, layer, pipeline, mask):
    rows_out, preds, scores = [], [], []
    for rows, block in _blocks(cache, layer, mask, default_block_rows()):
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
    matrix = np.zeros((n_classes, n_classes), np.int64)
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
        rows, pred, score = predict_streaming(cache, layer, pipe, ~train_mask)
        scores["accuracy"].append(float(accuracy_score(labels[rows], pred)))
        scores["f1_macro"].append(float(f1_score(labels[rows], pred, average="macro")))
        if k <= spec.cv:
            matrix += confusion(labels[rows], pred, n_classes)
            oof_pred[rows], oof_score[rows] = pred, score
        spec.progress.advance(1)
    final = spec.pipeline(len(labels), n_features)
    everything = np.ones(len(labels), bool)
    fit_sgd_streaming(
        cache, layer, final, labels, everything, n_classes=n_classes, seed=spec.seed
    )
    return CVOutcome(
        scores, fit_times, matrix, final, oof_pred=oof_pred, oof_score=oof_score
    )
