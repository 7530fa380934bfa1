"""What a fit returns (:class:`FitResult`) and what one cross-validation gives
(:class:`CVOutcome`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from featx.fit.compare import ci95
from featx.images.views import CENTER

__all__ = ["FitResult", "CVOutcome"]


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
    #: The network of the cache (``cache``'s, the winner where several were
    #: compared).
    model: str = "alexnet"
    #: With caches of several models compared: every (model, layer)'s score
    #: (``model``, ``layer``, ``cache``, ``cv_accuracy_mean``,
    #: ``cv_accuracy_std``). Empty, and left out of JSON, with one model.
    model_scores: list[dict] = field(default_factory=list)

    def mean(self, metric: str) -> float:
        return float(np.mean(self.cv_scores[metric]))

    def std(self, metric: str) -> float:
        return float(np.std(self.cv_scores[metric]))

    def to_json(self) -> dict:
        data = asdict(self)
        if not self.model_scores:
            del data["model_scores"]
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
    #: The views of each image it used (:mod:`featx.images.views`).
    views: list[str] = field(default_factory=lambda: [CENTER])
