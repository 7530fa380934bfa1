"""The report's figures, drawn with matplotlib (Agg) into PNG files."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")
import functools  # noqa: E402

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import PowerNorm  # noqa: E402

from featx.report.records import several_models  # noqa: E402
from featx.report.sources import (  # noqa: E402
    column_names,
    combination,
)

if TYPE_CHECKING:
    from featx.report.records import ResultRow

__all__ = [
    "accuracy_by_layer",
    "accuracy_figure",
    "accuracy_title",
    "confusion",
    "confusions",
    "fit_times",
    "learning_curve",
    "literal_text",
    "projection",
    "similarity",
]


def literal_text(draw):
    """Draw with math text off, so that a class or folder name holding ``$`` or
    ``^`` is printed as it is spelled instead of crashing the math parser."""

    @functools.wraps(draw)
    def wrapper(*args, **kwargs):
        with plt.rc_context({"text.parse_math": False, "text.usetex": False}):
            return draw(*args, **kwargs)

    return wrapper


def _save(fig, path: Path) -> Path:
    if fig.get_layout_engine() is None:  # a figure laid out as it was made keeps it
        fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _plain_log(axis) -> None:
    """Plain tick labels on a log axis: the default ones are math text, which
    :func:`literal_text` turns off."""
    from matplotlib.ticker import FuncFormatter

    plain = FuncFormatter(lambda v, _: f"{v:g}")
    axis.set_major_formatter(plain)
    axis.set_minor_formatter(plain)


def _offsets(n: int, width: float = 0.6) -> np.ndarray:
    """Dodged x offsets of ``n`` series around each tick."""
    return (np.arange(n) - (n - 1) / 2) * (width / max(1, n))


def _ticks(columns: list[tuple[str, str]]) -> list[str]:
    """Tick labels of (model, layer) columns: the layer alone with one model,
    else the model above the layer."""
    return [name.replace(" ", "\n", 1) for name in column_names(columns)]


def accuracy_title(several: bool, test: bool) -> str:
    """The title of Fig. 1, which is also its caption in the report."""
    where = "model and layer" if several else "layer"
    return f"Accuracy by {where}, 95% intervals" + (" (x: test)" if test else "")


@literal_text
def accuracy_by_layer(
    rows: list[ResultRow], columns: list[tuple[str, str]], clfs: list[str], path: Path
) -> Path:
    """``accuracy_by_layer.png``: :func:`accuracy_figure`."""
    return _save(accuracy_figure(rows, columns, clfs), path)


# Long: one matplotlib figure, drawn in the order it is read.
@literal_text
def accuracy_figure(
    rows: list[ResultRow], columns: list[tuple[str, str]], clfs: list[str]
):
    """Mean CV accuracy of each classifier across the (model, layer) columns
    with its 95% interval (dodged, so no marker hides another), and test
    accuracy where there is one. Each model gets its own panel, its layers
    shallow to deep on its own x axis, so that a line joins the layers of one
    model and never two models; the panels share a y axis that holds every
    interval and test score."""
    models = list(dict.fromkeys(m for m, _ in columns))
    several = len(models) > 1
    per_model = [[c for c in columns if c[0] == m] for m in models]
    width = max(9, 1.1 * len(columns) + 3) if several else 9
    fig, axes = plt.subplots(
        1, len(models), figsize=(width, 4.4), sharey=True, squeeze=False,
        gridspec_kw={"width_ratios": [len(c) for c in per_model]},
    )  # fmt: skip
    cmap = plt.get_cmap("tab10")
    values: list[float] = []  # every interval end and test score, for the y axis
    test_seen = False
    for ax, model, cols in zip(axes[0], models, per_model, strict=True):
        x = np.arange(len(cols))
        for k, (clf, dx) in enumerate(zip(clfs, _offsets(len(clfs)), strict=True)):
            mine = {(r.model, r.layer): r for r in rows if r.clf == clf}
            at = [i for i, c in enumerate(cols) if c in mine]
            if not at:
                continue
            held = [mine[cols[i]] for i in at]
            mean = np.array([r["cv_accuracy_mean"] for r in held])
            low = np.array([r["cv_accuracy_ci95"][0] for r in held])
            high = np.array([r["cv_accuracy_ci95"][1] for r in held])
            ax.errorbar(
                x[at] + dx, mean, yerr=[mean - low, high - mean], marker="o",
                capsize=4, linestyle="-", color=cmap(k),
                label=f"{clf} (CV, 95% interval)",
            )  # fmt: skip
            values += [*low, *high]
            test = [(x[i] + dx, r.test_accuracy) for i, r in zip(at, held, strict=True)
                    if r.test_accuracy is not None]  # fmt: skip
            if test:
                test_seen = True
                ax.scatter(*zip(*test, strict=True), marker="x", s=50, color=cmap(k),
                           label=f"{clf} (test)")  # fmt: skip
                values += [t for _, t in test]
        ax.set_xticks(x, [layer for _, layer in cols])
        ax.set_xlim(-0.5, len(cols) - 0.5)
        ax.set_xlabel(f"{model} layer" if several else "layer")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("accuracy")
    if values:
        low, high = min(values), max(values)
        pad = max(0.02, 0.06 * (high - low))
        axes[0][0].set_ylim(low - pad, high + pad)
    fig.suptitle(accuracy_title(several, test_seen))
    handles: dict = {}
    for ax in axes[0]:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, handle)
    order = [f"{clf} ({kind})" for clf in clfs for kind in ("CV, 95% interval", "test")]
    labels = [label for label in order if label in handles]
    axes[0][-1].legend(
        [handles[label] for label in labels], labels, fontsize=8, loc="center left",
        bbox_to_anchor=(1.01, 0.5),
    )  # fmt: skip
    return fig


def _draw_confusion(ax, m: np.ndarray, classes: list[str], title: str):
    image = ax.imshow(m, cmap="Blues")
    ticks = np.arange(len(classes))
    labels = [c if len(c) <= 14 else c[:13] + "…" for c in classes]
    size = 8
    ax.set_xticks(ticks, labels, rotation=45, ha="right", fontsize=size)
    ax.set_yticks(ticks, labels, fontsize=size)
    ax.set_xlabel("predicted", fontsize=size + 1)
    ax.set_ylabel("true", fontsize=size + 1)
    ax.set_title(title, fontsize=size + 2)
    if len(classes) <= 12:
        limit = m.max() / 2 if m.size else 0
        for i in range(m.shape[0]):
            for j in range(m.shape[1]):
                ax.text(
                    j,
                    i,
                    str(m[i, j]),
                    ha="center",
                    va="center",
                    fontsize=size - 1,
                    color="white" if m[i, j] > limit else "black",
                )
    return image


@literal_text
def confusion(
    matrix: list[list[int]], classes: list[str], title: str, path: Path
) -> Path:
    """A confusion matrix with counts in the cells and a colour bar."""
    m = np.asarray(matrix)
    size = max(4.5, 0.45 * len(classes) + 2.5)
    fig, ax = plt.subplots(figsize=(size + 0.8, size * 0.9))
    image = _draw_confusion(ax, m, classes, title)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="images")
    return _save(fig, path)


@literal_text
def confusions(rows: list[ResultRow], classes: list[str], path: Path) -> Path:
    """Every combination's out-of-fold confusion matrix, as small multiples:
    each row normalised to the share of its true class (so combinations and
    classes of different sizes compare), on one square-root colour scale with
    one colour bar, and no counts in the cells (the best combination's figure
    has them)."""
    n = len(rows)
    cols = min(2, n)  # two across: the page shows them at about 3/4 size
    grid = -(-n // cols)
    fig, axes = plt.subplots(
        grid, cols, figsize=(5.0 * cols + 1.2, 4.8 * grid), squeeze=False,
        layout="constrained",
    )  # fmt: skip
    for ax in axes.flat[n:]:
        ax.axis("off")
    image = None
    ticks = np.arange(len(classes))
    labels = [c if len(c) <= 14 else c[:13] + "…" for c in classes]
    several = several_models(rows)
    for ax, row in zip(axes.flat, rows, strict=False):
        m = np.asarray(row.cv_confusion, dtype=float)
        totals = m.sum(axis=1, keepdims=True)
        share = np.divide(m, totals, out=np.zeros_like(m), where=totals > 0)
        # square-root colour scale: a 2% confusion shows, the diagonal saturates
        image = ax.imshow(share, cmap="Blues", norm=PowerNorm(0.5, vmin=0, vmax=1))
        ax.set_xticks(ticks, labels, rotation=45, ha="right", fontsize=11)
        ax.set_yticks(ticks, labels, fontsize=11)
        ax.set_xlabel("predicted", fontsize=12)
        ax.set_ylabel("true", fontsize=12)
        ax.set_title(combination(row, several), fontsize=14)
    if image is not None:
        fig.colorbar(
            image, ax=axes, shrink=0.6, label="share of the true class's images"
        )
    return _save(fig, path)


@literal_text
def learning_curve(points: list[dict], path: Path) -> Path:
    """Accuracy (with its interval) against training images per class."""
    fig, ax = plt.subplots(figsize=(7.5, 4.4))
    for key in dict.fromkeys((p.get("model"), p["layer"], p["clf"]) for p in points):
        mine = [p for p in points if (p.get("model"), p["layer"], p["clf"]) == key]
        n = [p["n_per_class"] for p in mine]
        mean = np.array([p["accuracy_mean"] for p in mine])
        low = np.array([p["accuracy_ci95"][0] for p in mine])
        high = np.array([p["accuracy_ci95"][1] for p in mine])
        where = key[1] if key[0] is None else f"{key[0]} {key[1]}"
        ax.plot(n, mean, marker="o", label=f"{where} + {key[2]}")
        ax.fill_between(n, low, high, alpha=0.15)
    ax.set_xscale("log")
    _plain_log(ax.xaxis)
    ax.set_xlabel("training images per class (log scale)")
    ax.set_ylabel("accuracy on the held-out fold")
    ax.set_ylim(top=1.0)
    ax.set_title("Learning curve: each layer with its best classifier")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return _save(fig, path)


@literal_text
def similarity(matrix: np.ndarray, layers: list[str], path: Path) -> Path:
    """Linear CKA between every pair of layers (named ``layers``: of several
    models, ``model layer``), as a heat map."""
    size = max(4.5, 0.7 * len(layers) + 2.5)
    fig, ax = plt.subplots(figsize=(size + 0.8, size * 0.85))
    image = ax.imshow(matrix, cmap="viridis", vmin=0, vmax=1)
    ticks = np.arange(len(layers))
    ax.set_xticks(ticks, layers, rotation=45, ha="right")
    ax.set_yticks(ticks, layers)
    for i in range(len(layers)):
        for j in range(len(layers)):
            value = matrix[i, j]
            ax.text(
                j,
                i,
                f"{value:.2f}",
                ha="center",
                va="center",
                fontsize=8,
                color="black" if value > 0.6 else "white",
            )
    ax.set_title("Layer similarity (linear CKA)")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="CKA")
    return _save(fig, path)


@literal_text
def fit_times(
    rows: list[ResultRow], columns: list[tuple[str, str]], clfs: list[str], path: Path
) -> Path:
    """Mean fit time per fold, grouped by (model, layer), one bar per
    classifier."""
    several = len({m for m, _ in columns}) > 1
    fig, ax = plt.subplots(
        figsize=(max(7, 0.9 * len(columns) + 3) if several else 7, 4.2)
    )
    width = 0.8 / max(1, len(clfs))
    x = np.arange(len(columns))
    for k, clf in enumerate(clfs):
        mine = {(r.model, r.layer): r.fit_time_mean for r in rows if r.clf == clf}
        ax.bar(
            x + (k - (len(clfs) - 1) / 2) * width,
            [mine.get(column, np.nan) for column in columns],
            width,
            label=clf,
        )
    ax.set_xticks(x, _ticks(columns))
    ax.set_yscale("log")
    _plain_log(ax.yaxis)
    ax.set_ylabel("seconds per fit (log scale)")
    ax.set_title("Fit time by layer and classifier")
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


@literal_text
def projection(
    points: np.ndarray,
    labels: np.ndarray,
    classes: list[str],
    title: str,
    path: Path,
    explained: tuple[float, float] = (),
) -> Path:
    """A 2-D projection coloured by class; ``explained`` is the share of
    variance of each axis."""
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    cmap = plt.get_cmap("tab10" if len(classes) <= 10 else "tab20")
    for k, name in enumerate(classes):
        sel = labels == k
        if sel.any():
            ax.scatter(
                points[sel, 0],
                points[sel, 1],
                s=8,
                alpha=0.7,
                color=cmap(k % cmap.N),
                label=name[:20],
            )
    ax.set_title(title)
    ev = list(explained) + [None, None]
    ax.set_xlabel("PC 1" + (f" ({ev[0]:.1%} of variance)" if ev[0] is not None else ""))
    ax.set_ylabel("PC 2" + (f" ({ev[1]:.1%} of variance)" if ev[1] is not None else ""))
    if len(classes) <= 20:
        ax.legend(fontsize=7, markerscale=2, loc="best")
    return _save(fig, path)
