"""Comparing results: ties, the winner, the simplest, the layers compared once,
per-class scores and layer similarity. The intervals and paired tests they rest
on are in :mod:`featx.fit.intervals`."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.metrics import precision_recall_fscore_support

from featx.fit.intervals import ci95, paired_p
from featx.fit.result import FitResult as ResultRow

__all__ = [
    "SIMPLICITY",
    "ALPHA",
    "TIE_RULE",
    "SIMPLEST_RULE",
    "ci95",
    "paired_p",
    "best_of",
    "simplest_of",
    "Verdict",
    "decide",
    "choose_best",
    "SAME_ROWS",
    "compared_once",
    "per_class",
    "linear_cka",
]

#: Exact ties of mean accuracy go to the simpler classifier, in this order.
SIMPLICITY = ("ridge", "logreg", "svm", "sgd", "mlp")
ALPHA = 0.05
TIE_RULE = (
    "the best has the highest mean CV accuracy; an exact tie goes to the simpler "
    f"classifier ({', '.join(SIMPLICITY)}), then the shallower layer. "
    "Combinations marked tied are not distinguishable from it: a corrected "
    "resampled t-test (Nadeau & Bengio 2003) on the same folds gives p >= 0.05"
)
#: How the report picks "the simplest" of several tied combinations; the
#: classifier order is :data:`TIE_RULE`'s, stated there once.
SIMPLEST_RULE = (
    "the simplest is the one with the fewest features, then the simpler "
    "classifier, then the shallower layer"
)


def _simplicity(row: ResultRow) -> int:
    clf = row.classifier or row.clf
    return SIMPLICITY.index(clf) if clf in SIMPLICITY else len(SIMPLICITY)


def _by_name(row: ResultRow):
    return 0


def best_of(rows: list[ResultRow], place=_by_name) -> ResultRow:
    """The winner among ``rows`` by :data:`TIE_RULE`. ``place(row)`` orders the
    rows' layers (shallow first; with several models, the model listed first
    before the layer's depth); rows of equal place go by layer name."""
    return min(
        rows,
        key=lambda r: (
            -r.cv_accuracy_mean,
            _simplicity(r),
            "+" in r.clf,
            place(r),
            r.layer,
        ),
    )


def simplest_of(rows: list[ResultRow], place=_by_name) -> ResultRow:
    """The simplest of ``rows`` by :data:`SIMPLEST_RULE` (``place`` as for
    :func:`best_of`)."""
    return min(
        rows,
        key=lambda r: (r.n_features, _simplicity(r), "+" in r.clf, place(r), r.layer),
    )


@dataclass
class Verdict:
    """What a comparison decided: the best row, the rows tied with it (the best
    among them, in the rows' order) and the simplest of those (the best itself
    where nothing ties). The headline and the table's marks both read it."""

    best: ResultRow
    tied: list[ResultRow]
    simplest: ResultRow

    def mark(self, row: ResultRow) -> str:
        """The results table's mark of ``row``: ``best``, ``tied, simplest``,
        ``tied`` or nothing."""
        if row is self.best:
            return "best, simplest" if self.simplest is row and self.ties else "best"
        if row is self.simplest:
            return "tied, simplest"
        return "tied" if row.tied_with_best else ""

    @property
    def ties(self) -> bool:
        """Whether any row but the best is tied with it."""
        return len(self.tied) > 1


def decide(rows: list[ResultRow], place=_by_name) -> Verdict:
    """The one decision of a comparison, by :data:`TIE_RULE` and
    :data:`SIMPLEST_RULE`: marks every row's ``tied_with_best`` and
    ``p_vs_best`` against the best (:func:`best_of`) and returns the
    :class:`Verdict`."""
    best = best_of(rows, place)
    for row in rows:
        if row is best:
            row.p_vs_best, row.tied_with_best = 1.0, True
            continue
        p = paired_p(best.cv_scores["accuracy"], row.cv_scores["accuracy"], row.cv)
        row.p_vs_best = p
        row.tied_with_best = bool(p >= ALPHA)
    tied = [r for r in rows if r.tied_with_best]
    return Verdict(best=best, tied=tied, simplest=simplest_of(tied, place))


def choose_best(rows: list[ResultRow], place=_by_name) -> ResultRow:
    """The best of :func:`decide`'s verdict."""
    return decide(rows, place).best


#: Rows on which a cache without the ``same_as`` record is checked for layers
#: that repeat each other (:func:`compared_once`).
SAME_ROWS = 64


def compared_once(cache, layers: list[str]) -> tuple[list[str], list[str]]:
    """``layers`` of ``cache`` (a :class:`~featx.cache.FeatureCache`), in their
    order, without those that hold the same numbers as a shallower one of them
    (resnet18's ``avgpool_avg`` is its ``layer4_avg``), and a note for each left
    out. ``featx extract`` records such a layer (``same_as``); where it did not
    (older caches), the first :data:`SAME_ROWS` rows of layers of equal width
    are compared here."""
    defs = cache.layers
    first = np.arange(min(SAME_ROWS, cache.n_rows))
    kept: list[str] = []
    notes: list[str] = []
    rows: dict[str, np.ndarray] = {}
    for key in sorted(layers, key=lambda k: (defs[k].depth, k)):
        same = defs[key].same_as if defs[key].same_as in kept else ""
        how = "recorded by extract on its first batch"
        if not same:
            for other in kept:
                if defs[other].dim != defs[key].dim:
                    continue
                for k in (other, key):
                    if k not in rows:
                        rows[k] = cache.read(k, rows=first)
                if np.array_equal(rows[other], rows[key]):
                    same, how = other, f"its first {len(first)} rows"
                    break
        if same:
            notes.append(
                f"{key} holds the same numbers as {same} ({how}): compared once, "
                f"as {same}"
            )
        else:
            kept.append(key)
    return [k for k in layers if k in kept], notes


def per_class(y_true, y_pred, classes: list[str]) -> dict:
    """Precision, recall, F1 and support of every class."""
    p, r, f, s = precision_recall_fscore_support(
        y_true, y_pred, labels=range(len(classes)), zero_division=0
    )
    return {
        name: {
            "precision": float(p[i]),
            "recall": float(r[i]),
            "f1": float(f[i]),
            "support": int(s[i]),
        }
        for i, name in enumerate(classes)
    }


def linear_cka(X: np.ndarray, Y: np.ndarray) -> float:
    """Linear CKA of two representations of the same rows (Kornblith et al.
    2019), through the rows' Gram matrices, so wide layers cost n² not d²."""
    X = X - X.mean(axis=0)
    Y = Y - Y.mean(axis=0)
    K = X.astype(np.float64) @ X.T.astype(np.float64)
    L = Y.astype(np.float64) @ Y.T.astype(np.float64)
    hsic = float((K * L).sum())
    norm = float(np.sqrt((K * K).sum() * (L * L).sum()))
    return hsic / norm if norm > 0 else 0.0
