"""The report's figures, drawn with matplotlib (Agg) into PNG files."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import functools  # noqa: E402

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def literal_text(draw):
    """Draw with math text off, so that a class or folder name holding ``$`` or
    ``^`` is printed as it is spelled instead of crashing the math parser."""

    @functools.wraps(draw)
    def wrapper(*args, **kwargs):
        with plt.rc_context({"text.parse_math": False, "text.usetex": False}):
            return draw(*args, **kwargs)

    return wrapper


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


@literal_text
def accuracy_by_layer(
    rows: list[dict], layers: list[str], clfs: list[str], path: Path
) -> Path:
    """Mean CV accuracy of each classifier across layers, ± one std."""
    fig, ax = plt.subplots(figsize=(7, 4.2))
    x = np.arange(len(layers))
    for clf in clfs:
        mine = {r["layer"]: r for r in rows if r["clf"] == clf}
        mean = [
            mine[layer]["cv_accuracy_mean"] if layer in mine else np.nan
            for layer in layers
        ]
        std = [
            mine[layer]["cv_accuracy_std"] if layer in mine else 0 for layer in layers
        ]
        ax.errorbar(x, mean, yerr=std, marker="o", capsize=4, label=clf)
    ax.set_xticks(x, layers)
    ax.set_xlabel("layer")
    ax.set_ylabel("cross-validated accuracy")
    ax.set_title("Accuracy by layer")
    ax.grid(alpha=0.3)
    ax.legend()
    return _save(fig, path)


@literal_text
def confusion(
    matrix: list[list[int]], classes: list[str], title: str, path: Path
) -> Path:
    """A confusion matrix with counts in the cells."""
    m = np.asarray(matrix)
    size = max(4.5, 0.45 * len(classes) + 2.5)
    fig, ax = plt.subplots(figsize=(size, size * 0.9))
    ax.imshow(m, cmap="Blues")
    ticks = np.arange(len(classes))
    labels = [c if len(c) <= 14 else c[:13] + "…" for c in classes]
    ax.set_xticks(ticks, labels, rotation=45, ha="right")
    ax.set_yticks(ticks, labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    limit = m.max() / 2 if m.size else 0
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            ax.text(
                j,
                i,
                str(m[i, j]),
                ha="center",
                va="center",
                fontsize=8,
                color="white" if m[i, j] > limit else "black",
            )
    return _save(fig, path)


@literal_text
def fit_times(rows: list[dict], layers: list[str], clfs: list[str], path: Path) -> Path:
    """Mean fit time per fold, grouped by layer, one bar per classifier."""
    fig, ax = plt.subplots(figsize=(7, 4.2))
    width = 0.8 / max(1, len(clfs))
    x = np.arange(len(layers))
    for k, clf in enumerate(clfs):
        mine = {r["layer"]: r["fit_time_mean"] for r in rows if r["clf"] == clf}
        ax.bar(
            x + (k - (len(clfs) - 1) / 2) * width,
            [mine.get(layer, 0.0) for layer in layers],
            width,
            label=clf,
        )
    ax.set_xticks(x, layers)
    ax.set_ylabel("seconds per fit")
    ax.set_title("Fit time by layer and classifier")
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


@literal_text
def projection(
    points: np.ndarray, labels: np.ndarray, classes: list[str], title: str, path: Path
) -> Path:
    """A 2-D projection coloured by class."""
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
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    if len(classes) <= 20:
        ax.legend(fontsize=7, markerscale=2, loc="best")
    return _save(fig, path)
