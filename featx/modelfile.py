"""Saving and loading fitted models: joblib plus a sha256 sidecar.

A joblib file runs code when it is loaded, so a model is loaded only when the
sidecar ``<file>.sha256`` (``sha256sum`` format) exists and matches the file.
"""

from __future__ import annotations

import os
from pathlib import Path

import joblib

from featx.digest import file_sha256
from featx.errors import FeatxError

MODEL_FORMAT = 1


class ModelFileError(FeatxError, ValueError):
    """A model file that is missing, untrusted, tampered with or too new."""


def sidecar_path(path: Path | str) -> Path:
    path = Path(path)
    return path.with_name(path.name + ".sha256")


def save_model(path: Path, pipeline, meta: dict) -> Path:
    """Write ``pipeline`` and ``meta`` to ``path`` and its sha256 sidecar."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        joblib.dump({"format": MODEL_FORMAT, "meta": meta, "pipeline": pipeline}, tmp)
        digest = file_sha256(tmp)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    sidecar_path(path).write_text(f"{digest}  {path.name}\n")
    return path


def load_model(path: Path) -> tuple[object, dict]:
    """Load a model written by :func:`save_model` after checking its sidecar.

    Returns
    -------
    pipeline, meta
        The fitted scikit-learn pipeline and its metadata.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"model file {path} does not exist")
    sidecar = sidecar_path(path)
    trust = (
        "joblib files run code when loaded, so featx loads only files whose sha256 "
        "matches their .sha256 sidecar; load only models you trust"
    )
    if not sidecar.is_file():
        raise ModelFileError(
            f"refusing to load {path}: no {sidecar.name} beside it ({trust})"
        )
    expected = sidecar.read_text().split()[0] if sidecar.read_text().strip() else ""
    if file_sha256(path) != expected:
        raise ModelFileError(
            f"refusing to load {path}: its sha256 does not match {sidecar.name} "
            f"({trust})"
        )
    blob = joblib.load(path)
    if not isinstance(blob, dict) or "pipeline" not in blob:
        raise ModelFileError(f"{path} is not a featx model file")
    if int(blob.get("format", 0)) > MODEL_FORMAT:
        raise ModelFileError(
            f"{path} was written by a newer featx (model format {blob['format']}); "
            "upgrade featx"
        )
    return blob["pipeline"], blob["meta"]
