"""What a report compares: one :class:`Source` per model (its training cache,
held-out cache and layers), and how a (model, layer) is named.

With one model a report names layers alone (``fc7``), as it always did; with
caches of one folder made with several models, each (model, layer) is a column
of the comparison, named ``alexnet fc7``, and the models are compared on the
same images and the same folds (:func:`featx.cache.resolve_caches` checks the
rows are the same).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from featx.cache.identity import model_file_tag

if TYPE_CHECKING:
    from featx.cache import FeatureCache
    from featx.report.records import ResultRow

__all__ = ["Source", "column_names", "columns_of", "combination", "file_key"]


@dataclass
class Source:
    """One model's part of a report: its training cache (open), the held-out
    cache scored with it (None without one) and the layers compared."""

    model: str
    train: FeatureCache
    test: Path | None
    layers: list[str]

    @property
    def columns(self) -> list[tuple[str, str]]:
        return [(self.model, layer) for layer in self.layers]


def columns_of(sources: Iterable[Source]) -> list[tuple[str, str]]:
    """Every (model, layer) of the report, model by model, shallow to deep."""
    return [column for source in sources for column in source.columns]


def column_names(columns: list[tuple[str, str]]) -> list[str]:
    """Each (model, layer)'s name: the layer alone when every column is of one
    model, else ``model layer``."""
    several = len({model for model, _ in columns}) > 1
    return [f"{m} {layer}" if several else layer for m, layer in columns]


def combination(row: ResultRow, several: bool) -> str:
    """``fc7 + svm``, or ``alexnet fc7 + svm`` when ``several`` models are
    compared (names unescaped)."""
    where = f"{row.model} {row.layer}" if several else row.layer
    return f"{where} + {row.clf}"


def file_key(column: tuple[str, str], several: bool) -> str:
    """The part of a figure's file name that names a column: the layer, or
    ``model_layer`` with the model as cache names spell it
    (:func:`featx.cache.identity.model_file_tag`)."""
    model, layer = column
    return f"{model_file_tag(model)}_{layer}" if several else layer
