"""Results kept under ``<cache dir>/results``, keyed by a fingerprint of the
data and every :class:`~featx.fit.FitSpec` field that changes results, so that a
later report on the same data reuses them."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import fields
from pathlib import Path

import numpy as np
import sklearn

from featx import __version__
from featx.cache import FeatureCache
from featx.fit import FitSpec, fit
from featx.progress import Within
from featx.report.records import RESULT_FORMAT, RecordError, ResultRow

__all__ = [
    "KEY_ROLES",
    "ResultStore",
    "fingerprint",
    "key_params",
    "result_key",
    "result_label",
]

#: How a field's ``key`` metadata (:func:`featx.fit.spec._option`) puts it in a
#: result's key.
KEY_ROLES = ("always", "changed", "label", "views", "cache")


def fingerprint(cache: FeatureCache, layer: str) -> str:
    """Changes whenever the rows, labels, model, weights or stored layer change
    (the model only where it is not alexnet, so that results stored before
    caches recorded it keep their key)."""
    digest = hashlib.sha256()
    digest.update(np.ascontiguousarray(cache.sha256).tobytes())
    digest.update(np.ascontiguousarray(cache.labels).tobytes())
    digest.update("\0".join(cache.paths).encode())
    ldef = cache.layers[layer]
    meta = cache.meta
    identity = [
        meta.weights.sha256,
        json.dumps(meta.transform, sort_keys=True),
        meta.classes,
        layer,
        ldef.dtype,
        ldef.spatial,
        ldef.module_path,
    ]
    if meta.model != "alexnet":  # one weights file may fit two architectures
        identity.append(meta.model)
    digest.update(json.dumps(identity).encode())
    return digest.hexdigest()


def result_label(spec: FitSpec, views: str | None) -> str:
    """A row's label: ``clf``, or ``clf+views`` for a fit on every view."""
    return spec.clf if spec.center_only or views is None else f"{spec.clf}+{views}"


def key_params(spec: FitSpec, layer: str, views: str | None) -> dict:
    """What a result's key holds of ``spec``: every field that changes results,
    as its ``key`` metadata says (``changed`` fields only when not the default,
    so that results stored before such a field existed keep their key)."""
    defaults = FitSpec()
    params: dict = {"layer": layer, "result_format": RESULT_FORMAT}
    for f in fields(FitSpec):
        role, value = f.metadata["key"], getattr(spec, f.name)
        if role == "always" or (
            role in ("changed", "cache") and value != getattr(defaults, f.name)
        ):
            params[f.name] = value
    if not spec.center_only and views is not None:
        params["views"] = views
    return params


def result_key(
    prints: tuple[str, str | None], spec: FitSpec, layer: str, views: str | None
) -> str:
    """The stored name of a result: the train and test fingerprints, the label
    and :func:`key_params`, and the featx and scikit-learn versions."""
    blob = json.dumps(
        [
            *prints,
            result_label(spec, views),
            key_params(spec, layer, views),
            __version__,
            sklearn.__version__,
        ],
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


class ResultStore:
    """Results kept under ``<cache dir>/results``, keyed by :func:`result_key`;
    a stored one is reused unless ``force``."""

    def __init__(self, folder: Path, *, force: bool) -> None:
        self.folder = folder
        self.force = force
        self.reused = self.computed = 0
        #: What the report should say about the store (damaged or unwritable).
        self.notes: list[str] = []
        self.writable = True
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            self._unwritable(exc)

    def _unwritable(self, exc: OSError) -> None:
        if self.writable:
            self.writable = False
            self.notes.append(
                f"cannot store results in {self.folder} ({exc.strerror}); they were "
                "computed and will be computed again next time"
            )

    def _load(self, stored: Path) -> ResultRow | None:
        """A stored result, or None (with a note) when it is damaged."""
        try:
            return ResultRow.from_dict(json.loads(stored.read_text()))
        except RecordError:
            problem = "not a featx result"
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            problem = type(exc).__name__
        self.notes.append(
            f"stored result {stored.name} was damaged ({problem}); recomputed it"
        )
        return None

    def _save(self, stored: Path, row: ResultRow) -> None:
        if not self.writable:
            return
        tmp = stored.with_name(f".{stored.name}.tmp-{os.getpid()}")
        try:
            tmp.write_text(json.dumps(row.to_dict()))
            tmp.replace(stored)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            self._unwritable(exc)

    def result(
        self,
        train: FeatureCache,
        test_path: Path | None,
        layer: str,
        spec: FitSpec,
        prints: tuple[str, str | None],
        views: str | None = None,
    ) -> ResultRow:
        """The stored or freshly computed row of ``spec`` on ``layer``;
        ``prints`` are the fingerprints of the train and test caches' layer.
        With ``views`` (the cache's views, as ``--views`` names them) and not
        ``spec.center_only`` the classifier trains on every view and averages
        over them, and its row is labelled ``clf+views``."""
        label = result_label(spec, views)
        stored = self.folder / f"{result_key(prints, spec, layer, views)}.json"
        spec.progress.describe(f"{layer} + {label}")
        row = None
        if stored.is_file() and not self.force:
            row = self._load(stored)
        if row is not None:
            self.reused += 1
        else:
            row = self._fit(train, test_path, layer, spec, label)
            self._save(stored, row)
            self.computed += 1
        spec.progress.advance(1)
        return row

    @staticmethod
    def _fit(train, test_path, layer: str, spec: FitSpec, label: str) -> ResultRow:
        options = {f.name: getattr(spec, f.name) for f in fields(FitSpec)}
        options["progress"] = Within(spec.progress, f"{layer} + {label}")
        result = fit(
            cache=train.path, layer=layer, test=test_path, save=False, **options
        )
        return ResultRow.from_fit(result.to_json(), classifier=spec.clf, label=label)
