"""The records a report writes and reads back: one result row
(:class:`ResultRow`: a stored result, a line of ``results.json``) and the
``results.json`` document (:class:`ResultsDocument`).

Each class alone knows its spelling (its field names are the JSON keys) and its
format version. Rows can also be read by key (``row["clf"]``), as the dicts they
replaced were.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, fields, replace

from featx import __version__
from featx.errors import FeatxError
from featx.images.views import CENTER
from featx.records import Record, check_format

__all__ = [
    "BULKY",
    "RESULTS_FORMAT",
    "RESULT_FORMAT",
    "RecordError",
    "ResultRow",
    "ResultsDocument",
    "several_models",
]

#: 2: out-of-fold predictions and per-class scores.
RESULT_FORMAT = 2
#: 1: the first results.json (which did not say so).
RESULTS_FORMAT = 1
#: Keys a row leaves out of JSON while they are unset.
_OPTIONAL = (
    "test_accuracy",
    "test_f1_macro",
    "tied_with_best",
    "p_vs_best",
    "model_scores",
)
#: What results.json and results.csv leave out of each combination: per-image
#: arrays (predictions.csv has them).
BULKY = ("oof_pred", "oof_score")


class RecordError(FeatxError, ValueError):
    """A stored result or results.json that this featx cannot read."""


@dataclass(eq=True)
class ResultRow(Record, Mapping):
    """One (model, layer, classifier) result: ``featx fit --json`` plus the
    report's label and comparison."""

    ERROR = RecordError
    KIND = "a featx result"

    cache: str
    layer: str
    #: The row's label: the classifier, or ``clf+views`` (:attr:`classifier`).
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
    cv_accuracy_mean: float
    cv_accuracy_std: float
    cv_f1_macro_mean: float
    cv_f1_macro_std: float
    fit_time_mean: float
    cv_accuracy_ci95: list[float]
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
    views: list[str] = field(default_factory=lambda: [CENTER])
    train_views: bool = True
    #: The network of the cache the row was fitted on; rows stored before
    #: featx recorded it read as ``alexnet`` (a report sets it from the cache).
    model: str = "alexnet"
    #: A fit that compared models: every (model, layer)'s score
    #: (:attr:`featx.fit.FitResult.model_scores`); a report's rows have none.
    model_scores: list[dict] | None = None
    #: The classifier alone (``svm`` of ``svm+ten``).
    classifier: str = ""
    test_accuracy: float | None = None
    test_f1_macro: float | None = None
    #: Set by :func:`featx.fit.compare.choose_best`.
    tied_with_best: bool | None = None
    p_vs_best: float | None = None
    #: Keys of a later featx, kept and written back unchanged.
    extra: dict = field(default_factory=dict, compare=False)

    # ------------------------------------------------- the stored spelling

    def to_dict(self) -> dict:
        data = super().to_dict()
        for key in _OPTIONAL:
            if data[key] is None:
                del data[key]
        return data

    @classmethod
    def from_dict(cls, data: dict, *, where: str = "a stored result") -> ResultRow:
        """Read a row; raises :class:`RecordError` for one that is not a featx
        result or comes from a newer format."""
        if isinstance(data, dict):
            check_format(
                data.get("result_format"),
                RESULT_FORMAT,
                what=where,
                writer=data.get("featx_version"),
                error=RecordError,
                absent=RESULT_FORMAT,
            )
        row = super().from_dict(data, where=where)
        row.classifier = row.classifier or row.clf.partition("+")[0]
        return row

    @classmethod
    def from_fit(cls, fit_json: dict, *, classifier: str, label: str) -> ResultRow:
        """The row of one fit (:meth:`featx.fit.FitResult.to_json`)."""
        return cls.from_dict({**fit_json, "classifier": classifier, "clf": label})

    def summary(self) -> dict:
        """The row as results.json holds it: no per-image arrays."""
        data = {k: v for k, v in self.to_dict().items() if k not in BULKY}
        if self.test:
            data["test"] = {
                k: v for k, v in self.test.items() if k not in ("true", "pred", "score")
            }
        return data

    # ------------------------------------------ read access by key (Mapping)

    def __getitem__(self, key: str):
        if key in _FIELDS and not (key in _OPTIONAL and getattr(self, key) is None):
            return getattr(self, key)
        return self.extra[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.to_dict())

    def __len__(self) -> int:
        return len(self.to_dict())

    __hash__ = None  # mutable, compared by value


def several_models(rows: Iterable[ResultRow]) -> bool:
    """Whether ``rows`` come from more than one model."""
    return len({row.model for row in rows}) > 1


_FIELDS = frozenset(f.name for f in fields(ResultRow)) - {"extra"}


@dataclass
class ResultsDocument:
    """``results.json``: the best combination, the tie rule, every row (without
    per-image arrays) and the analyses."""

    best: dict
    tie_rule: str
    results: list[dict]
    learning_curve: list
    layer_similarity: list | None
    format: int = RESULTS_FORMAT
    featx_version: str = __version__

    @classmethod
    def of_report(
        cls, rows: list[ResultRow], best: ResultRow, tie_rule: str, analyses: dict
    ) -> ResultsDocument:
        return cls(
            best={"layer": best.layer, "clf": best.clf}
            | ({"model": best.model} if several_models(rows) else {}),
            tie_rule=tie_rule,
            results=[r.summary() for r in rows],
            learning_curve=analyses["learning_curve"],
            layer_similarity=analyses["layer_similarity"],
        )

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict, *, where: str = "results.json") -> ResultsDocument:
        if not isinstance(data, dict) or "results" not in data:
            raise RecordError(f"{where} is not a featx results.json")
        version = check_format(
            data.get("format"),
            RESULTS_FORMAT,
            what=where,
            writer=data.get("featx_version"),
            error=RecordError,
            absent=RESULTS_FORMAT,  # the first results.json did not say
        )
        names = {f.name for f in fields(cls)}
        document = cls(**{k: v for k, v in data.items() if k in names})
        return replace(document, format=version)

    def rows(self) -> list[ResultRow]:
        """The results as rows (their per-image arrays left out)."""
        return [
            ResultRow.from_dict(r, where="a results.json row") for r in self.results
        ]
