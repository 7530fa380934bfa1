"""The records a report writes and reads back: one result row
(:class:`ResultRow`, the fit's own record: a stored result, a line of
``results.json``) and the ``results.json`` document (:class:`ResultsDocument`).

Each class alone knows its spelling (its field names are the JSON keys) and its
format version (:mod:`featx.records` holds the rule). Rows can also be read by
key (``row["clf"]``), as the dicts they replaced were.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields, replace

from featx import __version__
from featx.fit.result import BULKY, RESULT_FORMAT, FitResult
from featx.records import RecordError, check_format

__all__ = [
    "BULKY",
    "RESULTS_FORMAT",
    "RESULT_FORMAT",
    "RecordError",
    "ResultRow",
    "ResultsDocument",
    "several_models",
]

#: 1: the first results.json (which did not say so).
RESULTS_FORMAT = 1


#: A report's row: the fit's own record (:class:`featx.fit.result.FitResult`),
#: labelled with its views and compared with the best.
ResultRow = FitResult


def several_models(rows: Iterable[ResultRow]) -> bool:
    """Whether ``rows`` come from more than one model."""
    return len({row.model for row in rows}) > 1


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
