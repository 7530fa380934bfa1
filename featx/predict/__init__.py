"""Predicting with a saved model: the model file (:mod:`featx.predict.modelfile`),
the features a cache already holds (:mod:`featx.predict.reuse`) and the run
(:mod:`featx.predict.run`).

The names below load their modules on first use: :mod:`featx.fit` writes model
files without importing torch, which the run needs.
"""

from __future__ import annotations

from importlib import import_module

_LAZY = {
    "Prediction": "featx.predict.run",
    "accuracy": "featx.predict.run",
    "check_preprocessing": "featx.predict.run",
    "classify": "featx.predict.run",
    "model_input": "featx.predict.run",
    "predict": "featx.predict.run",
    "wanted_layers": "featx.predict.run",
    "as_model": "featx.predict.run",
    "gather_images": "featx.predict.run",
    "true_labels": "featx.predict.run",
    "weights_for": "featx.predict.run",
    "ModelFileError": "featx.predict.modelfile",
    "ModelMeta": "featx.predict.modelfile",
    "load_model": "featx.predict.modelfile",
    "read_model": "featx.predict.modelfile",
    "save_model": "featx.predict.modelfile",
}

__all__ = [
    "Prediction",
    "accuracy",
    "check_preprocessing",
    "classify",
    "model_input",
    "predict",
    "wanted_layers",
    "as_model",
    "gather_images",
    "true_labels",
    "weights_for",
    "ModelFileError",
    "ModelMeta",
    "load_model",
    "read_model",
    "save_model",
]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    # any other name the module featx.predict held before it was a package
    run = import_module("featx.predict.run")
    if not name.startswith("__") and hasattr(run, name):
        return getattr(run, name)
    raise AttributeError(f"module 'featx.predict' has no attribute {name!r}")
