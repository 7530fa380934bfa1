"""The result of a fit (:class:`FitResult`: ``featx fit --json``, a stored
result, a row of a report and of ``results.json``; one record) and what one
cross-validation gives (:class:`CVOutcome`)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import KW_ONLY, MISSING, dataclass, field, fields

import numpy as np

from featx.fit.intervals import ci95
from featx.images.views import CENTER
from featx.records import Record, RecordError, check_format

__all__ = ["BULKY", "RESULT_FORMAT", "CVOutcome", "FitResult"]

#: 2: out-of-fold predictions and per-class scores.
RESULT_FORMAT = 2
#: What results.json and results.csv leave out of each result: per-image arrays
#: (a report's predictions.csv has them).
BULKY = ("oof_pred", "oof_score")
#: The summary statistics, in the order fit --json prints them (last).
_SUMMARY = (
    "cv_accuracy_mean",
    "cv_accuracy_std",
    "cv_f1_macro_mean",
    "cv_f1_macro_std",
    "fit_time_mean",
    "cv_accuracy_ci95",
    "test_accuracy",
    "test_f1_macro",
    "classifier",
)
#: Keys the record leaves out of its dict while they are unset.
_OPTIONAL = (
    "test_accuracy",
    "test_f1_macro",
    "tied_with_best",
    "p_vs_best",
    "model_scores",
)


@dataclass(eq=True)
class FitResult(Record, Mapping):
    """One (model, layer, classifier) result: cross-validation scores, optional
    held-out scores and the saved model; in a report, also the row's label and
    its comparison with the best.

    The same record is what :func:`featx.fit.fit` returns, what ``featx fit
    --json`` prints, what the report's result store keeps and a row of
    ``results.json`` (its spelling: the field names are the keys). The summary
    statistics (``cv_accuracy_mean`` … ``test_f1_macro``) are derived from the
    scores when they are not given. It can be read by key (``row["clf"]``), as
    the dicts it replaced were.
    """

    ERROR = RecordError
    KIND = "a featx result"

    cache: str
    layer: str
    #: The classifier; in a report, the row's label (``clf+views``, see
    #: :attr:`classifier`).
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
    _: KW_ONLY  # the rest by name: the record grew, and will again
    #: Derived from ``cv_scores`` and ``fit_times`` (given values are kept only
    #: where those are absent).
    cv_accuracy_mean: float | None = None
    cv_accuracy_std: float | None = None
    cv_f1_macro_mean: float | None = None
    cv_f1_macro_std: float | None = None
    fit_time_mean: float | None = None
    cv_accuracy_ci95: list[float] | None = None
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
    #: compared); results stored before featx recorded it read as ``alexnet``.
    model: str = "alexnet"
    #: With caches of several models compared: every (model, layer)'s score
    #: (``model``, ``layer``, ``cache``, ``cv_accuracy_mean``,
    #: ``cv_accuracy_std``). Empty, and left out of the dict, otherwise.
    model_scores: list[dict] = field(default_factory=list)
    #: The classifier alone (``svm`` of ``svm+ten``).
    classifier: str = ""
    #: Derived from ``test`` (kept as given only where it is absent).
    test_accuracy: float | None = None
    test_f1_macro: float | None = None
    #: Set by :func:`featx.fit.compare.choose_best`.
    tied_with_best: bool | None = None
    p_vs_best: float | None = None
    #: Keys of a later featx, kept and written back unchanged.
    extra: dict = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        self._derive()

    def _derive(self) -> None:
        """Each summary statistic, from what it summarises wherever that is
        here, whenever those sources were set anew since the last time (so a
        held-out score set after the fit, or new scores, are never shown
        stale); a stored value stands where its source is absent, and a value
        set by hand stands until its source is set again."""
        sources = (id(self.cv_scores), id(self.fit_times), self.cv, id(self.test))
        if self.__dict__.get("_derived_from") == sources:
            return
        self.__dict__["_derived_from"] = sources
        self.classifier = self.classifier or self.clf.partition("+")[0]
        scores = self.cv_scores
        for metric in ("accuracy", "f1_macro"):
            if scores.get(metric):
                setattr(self, f"cv_{metric}_mean", float(np.mean(scores[metric])))
                setattr(self, f"cv_{metric}_std", float(np.std(scores[metric])))
        if self.fit_times:
            self.fit_time_mean = float(np.mean(self.fit_times))
        if scores.get("accuracy"):
            self.cv_accuracy_ci95 = ci95(scores["accuracy"], self.cv)
        if self.test is not None:
            self.test_accuracy = self.test.get("accuracy")
            self.test_f1_macro = self.test.get("f1_macro")

    def __setstate__(self, state: dict) -> None:
        """A result pickled by an older featx: fields it lacked get their
        defaults."""
        for f in fields(self):
            if f.name not in state and f.default_factory is not MISSING:
                state[f.name] = f.default_factory()
            elif f.name not in state and f.default is not MISSING:
                state[f.name] = f.default
        self.__dict__.update(state)
        self._derive()

    def mean(self, metric: str) -> float:
        return float(np.mean(self.cv_scores[metric]))

    def std(self, metric: str) -> float:
        return float(np.std(self.cv_scores[metric]))

    # ------------------------------------------------- the stored spelling

    def to_dict(self) -> dict:
        self._derive()  # a held-out score set after the fit
        data = super().to_dict()
        for key in _OPTIONAL:
            if data[key] is None or data[key] == []:
                del data[key]
        return data

    def to_json(self) -> dict:
        """:meth:`to_dict` in the order ``featx fit --json`` has always printed
        it: the summary statistics after the fit's own fields."""
        data = self.to_dict()
        last = [k for k in _SUMMARY if k in data]
        return {
            **{k: v for k, v in data.items() if k not in last},
            **{k: data[k] for k in last},
        }

    def summary(self) -> dict:
        """The result as results.json holds it: no per-image arrays."""
        data = {k: v for k, v in self.to_dict().items() if k not in BULKY}
        if self.test:
            data["test"] = {
                k: v for k, v in self.test.items() if k not in ("true", "pred", "score")
            }
        return data

    @classmethod
    def from_dict(cls, data: dict, *, where: str = "a stored result") -> FitResult:
        """Read a result; raises :class:`~featx.records.RecordError` for one that
        is not a featx result or comes from a newer format."""
        if isinstance(data, dict):
            check_format(
                data.get("result_format"),
                RESULT_FORMAT,
                what=where,
                writer=data.get("featx_version"),
                error=RecordError,
                absent=RESULT_FORMAT,
            )
        return super().from_dict(data, where=where)

    @classmethod
    def from_fit(cls, fit_json: dict, *, classifier: str, label: str) -> FitResult:
        """A report's row of one fit (:meth:`to_json`), labelled ``label``."""
        return cls.from_dict({**fit_json, "classifier": classifier, "clf": label})

    # ------------------------------------------ read access by key (Mapping)

    def __getitem__(self, key: str):
        self._derive()
        if key in _FIELDS and not (
            key in _OPTIONAL and getattr(self, key) in (None, [])
        ):
            return getattr(self, key)
        return self.extra[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.to_dict())

    def __len__(self) -> int:
        return len(self.to_dict())

    __hash__ = None  # mutable, compared by value


_FIELDS = frozenset(f.name for f in fields(FitResult)) - {"extra"}


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
