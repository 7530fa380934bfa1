"""Predicting classes of new images with a saved model.

Only the layer the model was trained on is extracted, in memory, with the
weights and preprocessing the model records; a model whose weights or
preprocessing cannot be had here is refused before any image is read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from featx.cache import LayerDef, weights_spec
from featx.compute.forward import compute_batches, resolve_device
from featx.errors import WeightsError, check_int, param, printable
from featx.extraction.api import layer_def, runtime_device
from featx.images import FolderWalker, entry_kind
from featx.images.preprocess import computed_with
from featx.images.views import CENTER
from featx.model import (
    LoadedWeights,
    load_weights,
    preprocess_for,
    resolve_layers,
)
from featx.predict.modelfile import ModelFileError, ModelMeta, read_model
from featx.progress import Progress

__all__ = [
    "Prediction",
    "true_labels",
    "accuracy",
    "gather_images",
    "weights_for",
    "as_model",
    "wanted_layers",
    "check_preprocessing",
    "predict",
    "model_input",
    "classify",
]


@dataclass
class Prediction:
    """One image's prediction, or the reason it has none."""

    path: str
    label: str | None = None
    score: float | None = None
    score_kind: str = ""
    error: str = ""
    #: The class the image's folder names, when it was found in a labelled folder.
    true_label: str | None = None
    #: The ``top_k`` best classes and their scores, best first.
    top: list[tuple[str, float]] = field(default_factory=list)
    #: The cache its features were read from (:mod:`featx.predict.reuse`); "" when
    #: they were computed now.
    cache: str = ""


def true_labels(inputs: list[Path], files: list[Path], classes: list[str]) -> list:
    """The class of each file found in a labelled folder among ``inputs``: a
    folder whose subfolders are named like the model's classes (an ImageFolder);
    None elsewhere."""
    known = set(classes)
    roots = [
        Path(item)
        for item in inputs
        if Path(item).is_dir()
        and any(d.is_dir() and d.name in known for d in Path(item).iterdir())
    ]
    out = []
    for f in files:
        label = None
        for root in roots:
            try:
                first = f.relative_to(root).parts[0]
            except ValueError:
                continue
            if first in known and len(f.relative_to(root).parts) > 1:
                label = first
                break
        out.append(label)
    return out


def accuracy(results: list[Prediction]) -> tuple[float, int] | None:
    """Accuracy over the predictions whose true class is known, and their count."""
    scored = [r for r in results if r.true_label is not None and r.label is not None]
    if not scored:
        return None
    return sum(r.label == r.true_label for r in scored) / len(scored), len(scored)


def gather_images(inputs: list[Path]) -> tuple[list[Path], list[Prediction]]:
    """Image files given directly, and every image under given folders.

    Returns the files to read and, one per bad path (missing, not a regular
    file, an empty folder, an entry skipped inside a folder), a
    :class:`Prediction` that says why; one bad path never stops the others.
    """
    files: list[Path] = []
    bad: list[Prediction] = []
    for item in inputs:
        item = Path(item)
        shown = printable(str(item))
        kind = entry_kind(item, missing="does not exist")
        if kind == "dir":
            walker = FolderWalker(item)
            found = walker.files(item)
            for skip in walker.skipped:
                bad.append(Prediction(path=f"{shown}/{skip.path}", error=skip.reason))
            if not found and not walker.skipped:
                bad.append(Prediction(path=shown, error="no images in this folder"))
            files.extend(found)
        elif kind == "file":
            files.append(item)
        else:
            bad.append(Prediction(path=shown, error=kind))
    return files, bad


def weights_for(meta: ModelMeta, weights: str | None) -> LoadedWeights:
    """The weights a model's features came from, checked by sha256."""
    wid = meta.weights_id
    arch = meta.model
    spec, seed = weights_spec(wid, meta.weights_source)
    if weights is not None:
        loaded = load_weights(weights, model=arch)
    elif spec in ("random", "imagenet"):
        loaded = load_weights(spec, seed=seed, model=arch)
    else:
        source = Path(spec)
        if not source.is_file():
            raise WeightsError(
                f"the model's features came from the weights file {wid[5:]} "
                f"(sha256 {meta.weights_sha256[:16]}…), which is not at {source}; "
                f"pass {param('weights', 'PATH')} to that file"
            )
        loaded = load_weights(str(source), model=arch)
    if loaded.sha256 != meta.weights_sha256:
        raise WeightsError(
            f"these weights ({loaded.weights_id}, sha256 {loaded.sha256[:16]}…) are "
            f"not the ones the model was trained on ({wid}, sha256 "
            f"{meta.weights_sha256[:16]}…)"
        )
    return loaded


def _mean_file(meta: ModelMeta) -> Path | None:
    """The mean image a caffe-alexnet model's features were centred with."""
    mean = (meta.transform or {}).get("mean_image")
    if not mean:
        return None
    path = Path(mean["file"])
    if not path.is_file():
        raise WeightsError(
            f"the model's features were centred with the mean image {path} "
            f"(sha256 {mean['sha256'][:16]}…), which is no longer there"
        )
    return path


def as_model(model: Path | tuple) -> tuple[object, ModelMeta]:
    """``(pipeline, meta)`` from a model file or from what
    :func:`featx.predict.modelfile.load_model` returned for one."""
    if not isinstance(model, tuple):
        return read_model(Path(model))
    pipeline, meta = model
    return pipeline, meta if isinstance(meta, ModelMeta) else ModelMeta.from_dict(meta)


def wanted_layers(meta: ModelMeta, center_only: bool) -> list[LayerDef]:
    """The layer, one entry per view, that the model's features come from."""
    spec = resolve_layers([meta.layer_name], meta.model)[0]
    views = (CENTER,) if center_only else tuple(meta.views)
    return [layer_def(spec, meta.spatial, "float32", v, meta.model) for v in views]


def check_preprocessing(meta: ModelMeta, runtime: str | None = None):
    """This featx's preprocessing for the model, refused unless it is the one
    its features were made with. ``runtime`` runs a float32 model's network
    with another float32 runtime (their features agree within ~1e-6; an int8
    model runs only as it was made)."""
    # decoded, and computed, as its features were
    settings = computed_with(meta.transform)
    transform = dict(meta.transform)
    if runtime is not None and runtime != settings["runtime"]:
        if settings["precision"] != "fp32":
            raise ModelFileError(
                f"the model's features were computed in {settings['precision']} "
                f"by {settings['runtime']}; it runs with that runtime only "
                f"(omit {param('runtime')})"
            )
        settings["runtime"] = runtime
        transform.pop("runtime", None)
        if runtime != "torch":
            transform["runtime"] = runtime
    preprocess = preprocess_for(meta.model, _mean_file(meta), **settings)
    if transform != preprocess.describe():
        raise ModelFileError(
            "the model was trained on features with other preprocessing than this "
            f"featx uses ({meta.transform}); re-extract and re-fit"
        )
    return preprocess


# Long: a docstring of every parameter; the code is 48 lines.
def predict(
    model: Path | tuple,
    inputs: list[Path],
    *,
    weights: str | None = None,
    device: str = "auto",
    batch_size: int = 64,
    num_workers: int | None = None,
    progress: Progress | None = None,
    top_k: int = 1,
    center_only: bool = False,
    cache_dir: Path | None = None,
    runtime: str | None = None,
) -> list[Prediction]:
    """Predict the class of every image in ``inputs`` (files or folders).

    ``model`` is a model file, or the ``(pipeline, meta)`` that
    :func:`featx.predict.modelfile.load_model` returned for one. A model fitted on
    several views of each image (``featx extract --views``) scores the same
    views of each new image and averages them, unless ``center_only``. A folder
    with a matching cache in ``cache_dir`` is read from it instead of being
    extracted again (:mod:`featx.predict.reuse` says what matches); each such
    prediction names its ``cache``. The network runs with the runtime (and
    precision) the model's features were made with; ``runtime`` runs a float32
    model with another float32 runtime (``"openvino"``, ``"onnxruntime"``,
    ``"torch"``).
    """
    progress = progress or Progress()
    check_int("top_k", top_k, low=1)
    pipeline, meta = as_model(model)
    preprocess = check_preprocessing(meta, runtime)
    wanted = wanted_layers(meta, center_only)
    loaded = weights_for(meta, weights)
    reused, inputs_left = _reuse_caches(
        inputs, cache_dir, meta, wanted, loaded, preprocess
    )
    done = [
        p for found in reused for p in _classify_cached(found, pipeline, meta, top_k)
    ]
    inputs = inputs_left
    files, bad = gather_images(inputs)
    dev = resolve_device(runtime_device(device, preprocess.runtime))
    truth = true_labels(inputs, files, meta.classes)
    results = [
        Prediction(path=printable(str(f)), true_label=t)
        for f, t in zip(files, truth, strict=True)
    ]
    batches = compute_batches(
        files=files,
        rows=list(range(len(files))),
        wanted=wanted,
        loaded=loaded,
        preprocess=preprocess,
        device=dev,
        batch_size=batch_size,
        num_workers=num_workers,
    )
    if not files:
        return done + bad
    _predict_batches(batches, results, pipeline, meta, wanted, top_k, progress)
    return done + results + bad


def _predict_batches(batches, results, pipeline, meta, wanted, top_k, progress):
    """Classify each computed batch into its ``results``; a failure's reason
    becomes its error. (Seven parameters: the stream, the model and its use.)"""
    progress.start("predicting", len(results))
    try:
        for idx, values, failed in batches:
            for row, reason in failed:
                results[row].error = reason
            if len(idx):
                X = model_input(values, wanted, meta)
                _classify(pipeline, X, meta.classes, top_k, [results[i] for i in idx])
            progress.advance(len(idx) + len(failed))
    finally:
        progress.finish()


def model_input(values: dict, wanted: list[LayerDef], meta: ModelMeta) -> np.ndarray:
    """The classifier's input from one batch's ``{layer key: (n, dim)}``
    values: the views side by side, rounded as the training features were
    stored. ``featx serve`` builds its input with it too."""
    X = np.hstack([values[w.key] for w in wanted]).astype(np.float32)
    if meta.dtype == "float16":  # as the training features were stored
        X = X.astype(np.float16).astype(np.float32)
    return X


def classify(pipeline, X, meta: ModelMeta, top_k: int, out: list[Prediction]):
    """Fill ``out``, one :class:`Prediction` per row of ``X``, with the
    ``top_k`` classes of ``meta``'s model and their scores."""
    _classify(pipeline, X, meta.classes, top_k, out)


def _reuse_caches(inputs, cache_dir, meta: ModelMeta, wanted, loaded, preprocess):
    """The folders of ``inputs`` whose features a cache in ``cache_dir`` holds
    (:func:`featx.predict.reuse.cached_features`), and the inputs left to extract."""
    if cache_dir is None:
        return [], list(inputs)
    from dataclasses import replace

    from featx.predict.reuse import cached_features

    stored = [replace(w, dtype=meta.dtype) for w in wanted]  # as the cache has it
    reused, left = [], []
    for item in inputs:
        found = None
        if Path(item).is_dir():
            found = cached_features(
                Path(item), cache_dir=Path(cache_dir), layer=meta.layer,
                wanted=stored, loaded=loaded, preprocess=preprocess,
            )  # fmt: skip
        if found is None:
            left.append(item)
        else:
            reused.append(found)
    return reused, left


def _classify_cached(found, pipeline, meta: ModelMeta, top_k: int) -> list:
    """The predictions of one folder's images from their cached features."""
    truth = true_labels([found.folder], found.files, meta.classes)
    results = [
        Prediction(path=printable(str(f)), true_label=t, cache=str(found.cache))
        for f, t in zip(found.files, truth, strict=True)
    ]
    if len(results):
        _classify(pipeline, found.X, meta.classes, top_k, results)
    failed = [
        Prediction(path=printable(str(f)), error=reason, cache=str(found.cache))
        for f, reason in found.failed
    ]
    return results + failed


def _classify(pipeline, X, classes: list[str], top_k: int, out: list[Prediction]):
    """Fill ``out`` (one :class:`Prediction` per row of ``X``) with the
    ``top_k`` classes and their scores."""
    clf = pipeline.steps[-1][1]
    if hasattr(clf, "predict_proba"):
        scores = pipeline.predict_proba(X)
        kind = "probability"
    else:
        scores = pipeline.decision_function(X)
        if scores.ndim == 1:  # binary: score of the positive class
            scores = np.stack([-scores, scores], axis=1)
        kind = "decision"
    order = np.argsort(-scores, axis=1, kind="stable")[:, :top_k]
    for result, ranks, s in zip(out, order, scores, strict=True):
        top = [(classes[int(clf.classes_[b])], float(s[b])) for b in ranks]
        result.label, result.score = top[0]
        result.score_kind = kind
        result.top = top
