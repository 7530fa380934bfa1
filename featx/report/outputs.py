"""The files of a report beside its text: results.json, results.csv and the
figures."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
from sklearn.decomposition import PCA
from sklearn.preprocessing import StandardScaler

from featx.cache import FeatureCache
from featx.fit.compare import TIE_RULE
from featx.report import figures
from featx.report.records import ResultRow, ResultsDocument, several_models
from featx.report.sources import (
    Source,
    column_names,
    columns_of,
    combination,
    file_key,
)

__all__ = ["COLUMNS", "PROJECTION_ROWS", "draw_figures", "projection", "write_results"]

PROJECTION_ROWS = 1500
COLUMNS = (
    "layer",
    "clf",
    "cv_accuracy_mean",
    "cv_accuracy_std",
    "cv_accuracy_ci95",
    "tied_with_best",
    "p_vs_best",
    "cv_f1_macro_mean",
    "cv_f1_macro_std",
    "fit_time_mean",
    "test_accuracy",
    "test_f1_macro",
)


def write_results(
    out: Path, rows: list[ResultRow], best: ResultRow, analyses: dict
) -> dict[str, Path]:
    """``results.json`` (:class:`ResultsDocument`) and ``results.csv`` (with a
    ``model`` column first where the rows are of several models)."""
    document = ResultsDocument.of_report(rows, best, TIE_RULE, analyses)
    (out / "results.json").write_text(json.dumps(document.to_dict(), indent=2))
    columns = ("model", *COLUMNS) if several_models(rows) else COLUMNS
    with (out / "results.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        for r in rows:
            writer.writerow(["" if r.get(c) is None else r.get(c) for c in columns])
    return {"json": out / "results.json", "csv": out / "results.csv"}


def projection(cache: FeatureCache, layer: str, seed: int):
    """Two principal components of (at most :data:`PROJECTION_ROWS`) rows."""
    labels = cache.labels
    n = len(labels)
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.permutation(n)[: min(n, PROJECTION_ROWS)])
    X = cache.read(layer, rows=rows)
    X = StandardScaler().fit_transform(X)
    pca = PCA(n_components=2, svd_solver="randomized", random_state=seed)
    points = pca.fit_transform(X)
    return points, labels[rows], tuple(float(v) for v in pca.explained_variance_ratio_)


def draw_figures(
    sources: list[Source], rows, best: ResultRow, clfs, out: Path, analyses
) -> dict[str, Path]:
    """The report's PNG figures, drawn from the results and the training
    caches (one per model: ``sources``)."""
    columns = columns_of(sources)
    several = len(sources) > 1
    classes = sources[0].train.classes
    files = {
        "accuracy": figures.accuracy_by_layer(
            rows, columns, clfs, out / "accuracy_by_layer.png"
        )
    }
    if best.test:
        matrix, where = best.test["confusion"], "held-out test set"
    else:
        matrix, where = best.cv_confusion, "cross-validation folds"
    files["confusion"] = figures.confusion(
        matrix,
        classes,
        f"{combination(best, several)} ({where})",
        out / "confusion_best.png",
    )
    files["confusions"] = figures.confusions(rows, classes, out / "confusion_all.png")
    files["fit_time"] = figures.fit_times(rows, columns, clfs, out / "fit_time.png")
    files["learning_curve"] = figures.learning_curve(
        analyses["learning_curve"], out / "learning_curve.png"
    )
    if analyses["layer_similarity"] is not None:
        files["similarity"] = figures.similarity(
            np.asarray(analyses["layer_similarity"]),
            column_names(columns),
            out / "layer_similarity.png",
        )
    names = dict(zip(columns, column_names(columns), strict=True))
    for source in sources:
        for column in source.columns:
            points, labels, explained = projection(source.train, column[1], best.seed)
            key = file_key(column, several)
            files[f"pca_{key}"] = figures.projection(
                points,
                labels,
                classes,
                f"PCA of {names[column]}",
                out / f"pca_{key}.png",
                explained,
            )
    return files
