"""Comparisons of classifiers that hold on every CPU.

Two fits of one model that differ only in floating-point order (another BLAS
kernel, another thread count, the row space instead of the columns) give
decision values that are close, not equal. A row whose decision sits within
that difference of a tie may then be predicted either way, and a fold's accuracy
may move by one row in its hundreds. These helpers assert what is promised:
decision values close, and predictions and accuracies equal except for the rows
that lie within a stated margin of the boundary.
"""

from __future__ import annotations

import numpy as np


def margins(decision) -> np.ndarray:
    """How far each row's decision is from a tie: ``|d|`` for a binary decision
    (n_samples,), or the gap between a row's two largest scores
    (n_samples, n_classes)."""
    d = np.asarray(decision, dtype=np.float64)
    if d.ndim == 1:
        return np.abs(d)
    top = np.sort(d, axis=1)[:, -2:]
    return top[:, 1] - top[:, 0]


def near_boundary(decision, margin: float) -> np.ndarray:
    """A mask of the rows whose decision lies within ``margin`` of a tie."""
    return margins(decision) <= margin


def assert_same_predictions(a, b, decision, margin: float) -> None:
    """``a`` and ``b`` agree on every row whose ``decision`` is more than
    ``margin`` away from a tie."""
    differ = np.asarray(a) != np.asarray(b)
    bad = differ & ~near_boundary(decision, margin)
    assert not bad.any(), (
        f"{int(bad.sum())} of {len(bad)} predictions differ on rows more than "
        f"{margin:.3g} from the boundary: rows {np.flatnonzero(bad)[:10].tolist()}"
    )


def assert_scores_match(got, want, allowed) -> None:
    """Accuracies ``got`` equal ``want`` up to ``allowed``, the share of each
    score's rows that lie near the boundary (same shapes, or scalars)."""
    got, want = np.asarray(got, float), np.asarray(want, float)
    allowed = np.broadcast_to(np.asarray(allowed, float), want.shape)
    off = np.abs(got - want) > allowed + 1e-12
    assert not off.any(), (
        f"scores {got.tolist()} differ from {want.tolist()} by more than the rows "
        f"near the boundary allow ({allowed.tolist()})"
    )


def decision_margin(decision, rtol: float) -> float:
    """The margin that a relative tolerance ``rtol`` on decision values allows:
    two decisions within ``rtol * max|d|`` of each other can only order two
    classes differently when their gap is below twice that."""
    return 2 * rtol * float(np.abs(np.asarray(decision)).max())


def scores_of(model):
    """The continuous score a classifier predicts from: its decision function,
    else its probabilities."""
    if hasattr(model, "decision_function"):
        return model.decision_function
    return model.predict_proba


def rel_l2(a, b) -> float:
    """``‖a − b‖ / ‖b‖``, in float64: how far two arrays of features are apart."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))
