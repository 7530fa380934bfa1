"""The report's analyses beyond the results table: out-of-fold predictions,
the misclassified gallery, learning curves and layer similarity."""

from __future__ import annotations

import base64
import csv
import io
from dataclasses import replace
from pathlib import Path

import numpy as np
from joblib import Parallel, delayed

import pipelines
from featx.cache import FeatureCache
from featx.errors import printable
from featx.fit import FitSpec, consensus, one_blas_thread
from featx.fit.compare import ci95, linear_cka
from featx.images import ImageDecodeError, decode_image
from featx.report.records import ResultRow, several_models

__all__ = [
    "CKA_ROWS",
    "CURVE_SIZES",
    "GALLERY_MAX",
    "SCORE_MEANING",
    "THUMB_PX",
    "column_similarity",
    "gallery_order",
    "layer_similarity",
    "learning_curve",
    "misclassified",
    "score_kind",
    "write_predictions",
]

#: Training images per class of the learning curve (and "all" the folds hold).
CURVE_SIZES = (5, 10, 25, 50, 100)
#: Rows on which layers are compared (CKA costs n² per pair).
CKA_ROWS = 1000
GALLERY_MAX = 48
THUMB_PX = 96


def write_predictions(path: Path, rows: list[ResultRow], cache: FeatureCache) -> Path:
    """``predictions.csv``: each image's out-of-fold prediction and its score,
    for every combination (with a ``model`` column first where the rows are of
    several models, whose caches hold the same images as ``cache``)."""
    paths, labels, classes = cache.paths, cache.labels, cache.classes
    several = several_models(rows)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(
            ["model"] * several + ["layer", "clf", "path", "true", "predicted", "score"]
        )
        for r in rows:
            for i, (pred, score) in enumerate(
                zip(r.oof_pred, r.oof_score, strict=True)
            ):
                writer.writerow(
                    [r.model] * several
                    + [r.layer, r.clf, paths[i], classes[labels[i]],
                       classes[pred], f"{score:.6g}"]
                )  # fmt: skip
    return path


def misclassified(best: ResultRow, cache: FeatureCache, test: FeatureCache | None):
    """The best combination's misclassified images (the test set's when the
    result has one, out-of-fold otherwise), the most confidently wrong first:
    dicts of ``path``, ``true``, ``predicted``, ``confidence`` (the classifier's
    score of the wrong class it chose) and an inline JPEG thumbnail ``src``
    (None if unreadable). At most :data:`GALLERY_MAX`, shared fairly between
    the true classes (:func:`gallery_order`)."""
    if test is not None and best.test and "pred" in best.test:
        source, true, pred = test, best.test["true"], best.test["pred"]
        score = best.test.get("score") or [0.0] * len(pred)
        where = "held-out test set"
    else:
        source, true, pred = cache, cache.labels.tolist(), best.oof_pred
        score = best.oof_score or [0.0] * len(pred)
        where = "out-of-fold predictions"
    classes = cache.classes
    kind = score_kind(best.classifier or best.clf)
    root = Path(source.meta.data_root)
    wrong = [i for i, (t, p) in enumerate(zip(true, pred, strict=True)) if t != p]
    items = []
    for i in gallery_order(wrong, [true[i] for i in wrong], [score[i] for i in wrong]):
        rel = source.paths[i]
        items.append(
            {
                "path": printable(rel),
                "true": classes[true[i]],
                "predicted": classes[pred[i]],
                "confidence": float(score[i]),
                "score_kind": kind,
                "src": _thumbnail(root / rel),
            }
        )
    return {
        "where": where,
        "n_wrong": len(wrong),
        "items": items,
        "score_kind": kind,
        "order": f"the {best.clf} {kind} of the predicted class beside each image, "
        f"highest first ({SCORE_MEANING[kind]}), at most {GALLERY_MAX}, shared "
        "between the true classes",
    }


#: What each kind of score says (:func:`featx.fit.scoring.top_score`).
SCORE_MEANING = {
    "probability": "the classifier's probability of the class it chose",
    "decision value": "a signed distance from the decision boundary, not a "
    "probability; higher is more confident",
}


def score_kind(clf: str) -> str:
    """What the scores of classifier ``clf`` (``svm``, ``svm+ten``, ``head``)
    are: ``probability`` where its pipeline has ``predict_proba``, else
    ``decision value``, as :func:`featx.fit.scoring.top_score` chooses."""
    name = clf.partition("+")[0]
    if name not in pipelines.CLASSIFIERS:
        return "probability"  # the head: a softmax
    pipeline = pipelines.make_pipeline(name, n_samples=2, n_features=2)
    return "probability" if hasattr(pipeline, "predict_proba") else "decision value"


def gallery_order(index, true, confidence, cap: int = GALLERY_MAX) -> list:
    """Which of ``index`` the gallery shows, in order: each true class's images
    ranked by ``confidence`` (highest first), taken in turns, one per class per
    round, until ``cap``; then all of them ranked by confidence. A class with
    many mistakes cannot crowd out another's."""
    by_class: dict = {}
    for i, t, c in sorted(
        zip(index, true, confidence, strict=True), key=lambda x: (-x[2], x[0])
    ):
        by_class.setdefault(t, []).append((i, c))
    chosen: list = []
    queues = list(by_class.values())
    while len(chosen) < cap and any(queues):
        for queue in queues:
            if queue and len(chosen) < cap:
                chosen.append(queue.pop(0))
    return [i for i, _ in sorted(chosen, key=lambda x: (-x[1], x[0]))]


def _thumbnail(path: Path) -> str | None:
    try:
        img = decode_image(path)
    except ImageDecodeError:
        return None
    img.thumbnail((THUMB_PX, THUMB_PX))
    buffer = io.BytesIO()
    img.save(buffer, format="JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()


def learning_curve(
    cache: FeatureCache, best_rows: list[ResultRow], spec: FitSpec
) -> list:
    """For each layer with its best classifier: accuracy and its interval against
    training images per class, on the report's first-repeat folds (the training
    part subsampled per class, the same subsets for every layer; the held-out fold
    whole), with the regularisation the full CV chose by consensus."""
    labels = cache.labels
    splits = spec.splits(labels)[: spec.cv]
    smallest = min(int(np.sum(labels[train] == c))
                   for train, _ in splits for c in np.unique(labels))  # fmt: skip
    sizes = [n for n in CURVE_SIZES if n < smallest] + [smallest]
    jobs, points = [], []
    for row in best_rows:
        rng = np.random.default_rng(spec.seed)  # every layer sees the same subsets
        X = cache.read(row.layer)
        run = replace(spec, clf=row.clf, value=_value(row), tune=False)
        for n in sizes:
            picks = [
                np.concatenate(
                    [
                        rng.permutation(train[labels[train] == c])[:n]
                        for c in np.unique(labels)
                    ]
                )  # fmt: skip
                for train, _ in splits
            ]
            jobs += [
                (run, X, pick, test)
                for pick, (_, test) in zip(picks, splits, strict=True)
            ]
            points.append({"layer": row.layer, "clf": row.clf, "n_per_class": int(n)})
    # every point of every layer in one pool, the largest fits first, so that
    # no core waits at the end of each size
    order = sorted(range(len(jobs)), key=lambda i: -len(jobs[i][2]))
    with one_blas_thread():  # folds in threads, as fit runs them
        done = Parallel(n_jobs=spec.jobs, prefer="threads")(
            delayed(_curve_point)(*jobs[i][:2], labels, *jobs[i][2:], spec.seed)
            for i in order
        )
    scores = [0.0] * len(jobs)
    for i, score in zip(order, done, strict=True):
        scores[i] = score
    for k, point in enumerate(points):
        fold_scores = scores[k * len(splits) : (k + 1) * len(splits)]
        point["accuracy_mean"] = float(np.mean(fold_scores))
        point["accuracy_ci95"] = ci95(fold_scores, spec.cv)
    return points


def _curve_point(run: FitSpec, X, labels, pick, test, seed: int) -> float:
    """Accuracy on ``test`` of ``run``'s classifier fitted on the ``pick`` rows."""
    model = pipelines.in_row_space(
        run.pipeline(len(pick), X.shape[1]), run.clf, seed=seed
    )
    model.fit(X[pick], labels[pick])
    return float(np.mean(model.predict(X[test]) == labels[test]))


def _value(row: ResultRow) -> float | None:
    """The regularisation most folds chose, or the fixed one."""
    if row.cv_params and row.tuned:
        return consensus(row.clf, row.cv_params)
    params = row.params or {}
    return next(iter(params.values()), None)


def layer_similarity(cache: FeatureCache, layers: list[str], seed: int) -> np.ndarray:
    """Linear CKA between every pair of ``layers`` on the same (at most
    :data:`CKA_ROWS`) rows."""
    return column_similarity([(cache, layer) for layer in layers], seed)


def column_similarity(columns: list[tuple[FeatureCache, str]], seed: int) -> np.ndarray:
    """Linear CKA between every pair of ``columns`` (a cache and one of its
    layers; caches of one folder made with several models hold the same rows)
    on the same (at most :data:`CKA_ROWS`) rows."""
    n = columns[0][0].n_rows
    rows = np.sort(np.random.default_rng(seed).permutation(n)[: min(n, CKA_ROWS)])
    feats = [cache.read(layer, rows=rows) for cache, layer in columns]
    out = np.eye(len(columns))
    for i in range(len(columns)):
        for j in range(i + 1, len(columns)):
            out[i, j] = out[j, i] = linear_cka(feats[i], feats[j])
    return out
