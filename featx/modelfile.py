"""Saving and loading fitted models: ``skops.io`` plus a sha256 sidecar.

Loading a skops file runs no code: it rebuilds only types on an allow-list.
Besides scikit-learn's own (which skops trusts), featx's model files hold the
types in :data:`TRUSTED`; a file that holds anything else is refused before it
is loaded. The sidecar ``<file>.sha256`` (``sha256sum`` format) says whether
the file changed since it was saved.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

from featx.digest import file_sha256
from featx.errors import FeatxError

#: 2: skops.io (format 1 was joblib, whose loading runs code).
MODEL_FORMAT = 2
SUFFIX = ".skops"
#: The types beyond scikit-learn's defaults that a featx model may hold.
TRUSTED = (
    "featx.head.HeadClassifier",
    "pipelines.tuned.TunedClassifier",
    "pipelines.views.ViewEnsemble",
    "sklearn.neural_network._stochastic_optimizers.AdamOptimizer",
    "sklearn.neural_network._stochastic_optimizers.SGDOptimizer",
)


class ModelFileError(FeatxError, ValueError):
    """A model file that is missing, untrusted, tampered with or too new."""


def sidecar_path(path: Path | str) -> Path:
    path = Path(path)
    return path.with_name(path.name + ".sha256")


def save_model(path: Path, pipeline, meta: dict) -> Path:
    """Write ``pipeline`` and ``meta`` to ``path`` and its sha256 sidecar."""
    import skops.io as sio

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
        The fitted scikit-learn pipeline and its metadata.
    """
    import skops.io as sio

    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"model file {path} does not exist")
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
    if int(blob.get("format", 0)) > MODEL_FORMAT:
        raise ModelFileError(
            f"{path} was written by a newer featx (model format {blob['format']}); "
            "upgrade featx"
        )
    return blob["pipeline"], blob["meta"]
