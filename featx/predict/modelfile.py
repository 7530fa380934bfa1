"""Saving and loading fitted models: ``skops.io`` plus a sha256 sidecar.

Loading a skops file runs no code: it rebuilds only types on an allow-list.
Besides scikit-learn's own (which skops trusts), featx's model files hold the
types in :data:`TRUSTED`; a file that holds anything else is refused before it
is loaded. The sidecar ``<file>.sha256`` (``sha256sum`` format) says whether
the file changed since it was saved.
"""

from __future__ import annotations

import os
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from featx._moved import quietly
from featx.digest import file_sha256
from featx.errors import FeatxError
from featx.records import Record
from featx.records import check_format as check_format_of

__all__ = [
    "MODEL_FORMAT",
    "SUFFIX",
    "TRUSTED",
    "ModelFileError",
    "ModelMeta",
    "sidecar_path",
    "save_model",
    "load_model",
    "read_model",
    "check_format",
]

#: 2: skops.io (format 1 was joblib, whose loading runs code).
MODEL_FORMAT = 2
SUFFIX = ".skops"
#: The types beyond scikit-learn's defaults that a featx model may hold.
TRUSTED = (
    "pipelines.head.HeadClassifier",
    "featx.head.HeadClassifier",  # its path before the stage packages (featx/_moved.py)
    "pipelines.tuned.TunedClassifier",
    "pipelines.views.ViewEnsemble",
    "sklearn.neural_network._stochastic_optimizers.AdamOptimizer",
    "sklearn.neural_network._stochastic_optimizers.SGDOptimizer",
)


class ModelFileError(FeatxError, ValueError):
    """A model file that is missing, untrusted, tampered with or too new."""


@dataclass
class ModelMeta(Record):
    """What a model file records beside its pipeline, so that predict can
    reproduce its features: the one place that knows the keys it is saved under
    (each field's name) and the format (:data:`MODEL_FORMAT`).

    Keys this featx does not know (from a later featx of the same format) are
    kept in ``extra`` and written back unchanged (:class:`featx.records.Record`).
    """

    ERROR = ModelFileError
    KIND = "a model file this featx can read"

    @classmethod
    def from_dict(cls, data: dict, *, where: str = "model file") -> ModelMeta:
        """Read the metadata a model file stores; ``where`` names it in errors."""
        return super().from_dict(data, where=where)

    MISSING_HINT = ": fit it again with this featx"

    featx_version: str
    sklearn_version: str
    cache_format: int
    cache: str
    data_root: str
    #: The cache's layer key (``conv5_avg``), the network's layer (``conv5``).
    layer: str
    layer_name: str
    module_path: str
    spatial: str
    dtype: str
    clf: str
    classes: list[str]
    model: str
    weights_id: str
    weights_sha256: str
    weights_pretrained: bool
    weights_source: str
    transform: dict
    #: The views of each image the model averages over (:mod:`featx.images.views`).
    views: list[str] = field(default_factory=lambda: ["center"])
    #: The fit's settings and scores; absent from a model saved with ``save=False``.
    cv: int | None = None
    seed: int | None = None
    scale: str | None = None
    pca: int | None = None
    tuned: bool | None = None
    params: dict = field(default_factory=dict)
    cv_scores: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)


def sidecar_path(path: Path | str) -> Path:
    path = Path(path)
    return path.with_name(path.name + ".sha256")


def _skops_io():
    """``skops.io``, imported without torch.

    skops builds its trusted types from scikit-learn's ``all_estimators()``,
    which walks every sklearn package and so imports
    ``sklearn.externals.array_api_compat.torch``, which imports torch (~2.5 s,
    on commands that otherwise never need it). That one module is kept out of
    the walk; no estimator lives in it.
    """
    name = "sklearn.externals.array_api_compat.torch"
    if name in sys.modules or "skops.io" in sys.modules:
        import skops.io as sio

        return sio
    sys.modules[name] = None  # an import of it fails; the walk skips it
    try:
        import skops.io as sio
    finally:
        del sys.modules[name]
    return sio


def save_model(path: Path, pipeline, meta: ModelMeta | dict) -> Path:
    """Write ``pipeline`` and ``meta`` to ``path`` and its sha256 sidecar."""
    sio = _skops_io()

    if isinstance(meta, ModelMeta):
        meta = meta.to_dict()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        sio.dump({"format": MODEL_FORMAT, "meta": meta, "pipeline": pipeline}, tmp)
        digest = file_sha256(tmp)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    sidecar_path(path).write_text(f"{digest}  {path.name}\n")
    return path


def _check_sidecar(path: Path) -> None:
    sidecar = sidecar_path(path)
    if not sidecar.is_file():
        raise ModelFileError(
            f"refusing to load {path}: no {sidecar.name} beside it (featx writes "
            "one with every model; it proves the file is the one that was saved)"
        )
    text = sidecar.read_text(errors="replace").split()
    if not text or file_sha256(path) != text[0]:
        raise ModelFileError(
            f"refusing to load {path}: its sha256 does not match {sidecar.name} "
            "(the file changed after it was saved)"
        )


def load_model(path: Path) -> tuple[object, dict]:
    """Load a model written by :func:`save_model`, running no code from it.

    Returns
    -------
    pipeline, meta
        The fitted scikit-learn pipeline and its metadata, as stored (a dict;
        :func:`read_model` gives a :class:`ModelMeta`).
    """
    blob = _load_blob(Path(path))
    return blob["pipeline"], blob["meta"]


def read_model(path: Path) -> tuple[object, ModelMeta]:
    """:func:`load_model` with the metadata read into a :class:`ModelMeta`."""
    pipeline, meta = load_model(path)
    return pipeline, ModelMeta.from_dict(meta, where=str(path))


def _load_blob(path: Path) -> dict:
    if not path.is_file():
        raise ModelFileError(f"model file {path} does not exist")
    sio = _skops_io()

    if not zipfile.is_zipfile(path):
        raise ModelFileError(
            f"{path} is not a featx model file (featx saves models with skops.io; "
            "a .joblib model from an older featx is not loaded, because loading "
            "joblib runs code: fit it again)"
        )
    _check_sidecar(path)
    try:
        untrusted = sio.get_untrusted_types(file=path)
        unknown = sorted(set(untrusted) - set(TRUSTED))
        if unknown:
            raise ModelFileError(
                f"refusing to load {path}: it holds types featx does not trust "
                f"({', '.join(unknown[:3])})"
            )
        with quietly():
            blob = sio.load(path, trusted=list(untrusted))
    except ModelFileError:
        raise
    except Exception as exc:  # skops raises many kinds for a damaged file
        raise ModelFileError(
            f"{path} is not a readable model file ({type(exc).__name__}: "
            f"{str(exc)[:120]})"
        ) from exc
    if not isinstance(blob, dict) or "pipeline" not in blob:
        raise ModelFileError(f"{path} is not a featx model file")
    check_format(blob, where=str(path))
    return blob


def check_format(blob: dict, *, where: str) -> None:
    """Refuse, in one line, a model file of a format this featx cannot read."""
    meta = blob.get("meta")
    check_format_of(
        blob.get("format"),
        MODEL_FORMAT,
        what=where,
        writer=meta.get("featx_version") if isinstance(meta, dict) else None,
        error=ModelFileError,
        absent=0,
    )
