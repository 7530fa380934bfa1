"""``fit``: resolve the caches, cross-validate each layer (of each model's
cache, where several are compared), keep the best, score it on a held-out cache
and save the model."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import sklearn

from featx import __version__
from featx.cache import FORMAT_VERSION, FeatureCache, ModelCaches, resolve_caches
from featx.cache.choice import held_out_notes
from featx.cache.locate import missing_layer
from featx.errors import FeatxError, Message
from featx.fit.compare import compared_once, per_class
from featx.fit.cv import cross_validate
from featx.fit.data import (
    best_layer,
    check_compatible,
    check_head_layer,
    evaluate_test,
    head_source,
    labelled_rows,
)
from featx.fit.heldout import held_out_caches, is_data_folder
from featx.fit.heldout import held_out_notes as held_out_notes_of_folder
from featx.fit.result import CVOutcome, FitResult
from featx.fit.spec import FitError, FitSpec, renamed
from featx.images.views import CENTER
from featx.predict.modelfile import SUFFIX, ModelMeta, save_model

__all__ = ["fit", "model_meta", "record_fit", "default_model_path"]


# Long: a 25-line docstring of its options; the code is 41 lines.
def fit(
    *,
    cache: str | Path | None = None,
    cache_dir: Path | None = None,
    layer: str | None = None,
    test: str | Path | None = None,
    out: Path | None = None,
    save: bool = True,
    models: list[str] | None = None,
    announce: Callable[[bool, list[str]], None] | None = None,
    **options,
) -> FitResult:
    """Cross-validate a classifier on a cached layer, refit on all rows, save it.

    ``options`` are the fields of :class:`FitSpec` (``clf``, ``cv``, ``seed``,
    ``scale``, ``pca``, ``tune``, ``value``, ``jobs``, ``engine``, ``address``,
    ``progress``): by default the classifier tunes its regularisation inside each
    training fold; ``value`` fixes it (``C`` or ``alpha``), and ``tune=False``
    uses scikit-learn's defaults.

    With no ``cache``, the training cache is chosen (:func:`choose_caches`) and a
    held-out sibling cache becomes ``test`` unless one is given. With no
    ``layer`` and several complete layers, each is cross-validated and the best
    is kept (``layer_scores``). Where the training folder was extracted with
    several models (no ``cache``, or ``models`` given: see
    :func:`~featx.cache.resolve_caches`), each model's cache is
    cross-validated the same way on the same folds and the best (model, layer)
    is kept (``model``, ``model_scores``). Returns a :class:`FitResult`; raises
    :class:`FitError` (or another :class:`~featx.errors.FeatxError`) for data
    or options that cannot work.

    ``test`` may be a data folder: its cache, made as each compared model's
    training cache (:func:`~featx.fit.heldout.held_out_cache`), extracted
    first where rows are missing. ``announce``, if given, is called once with
    whether every training cache's weights are pretrained and the notes, when
    the caches are chosen and before the cross-validation starts.
    """
    spec = FitSpec(**renamed(options))
    spec.check()
    folder = Path(test) if is_data_folder(test) else None
    entries, notes = _chosen(cache, test, folder, cache_dir, models, layer, spec)
    if announce is not None:
        announce(_pretrained(entries), notes)
    if folder is not None:
        held_out_caches(
            entries,
            folder,
            cache_dir=cache_dir,
            layers=[layer] if layer else None,
            progress=spec.progress,
        )
    runs = [_cross_validate_model(entry, layer, spec) for entry in entries]
    notes += [f"{r.entry.model}: {n}" if len(runs) > 1 else n
              for r in runs for n in r.notes]  # fmt: skip
    # the best model by its best layer's score; an exact tie goes to the first
    run = max(runs, key=lambda r: np.mean(r.outcomes[r.layer].scores["accuracy"]))
    result, meta = _finish(run, runs, spec, notes)
    if save:
        out = (
            Path(out)
            if out
            else default_model_path(run.entry.train, run.layer, spec.clf)
        )
        meta = record_fit(meta, result)
        result.model_path = str(save_model(out, run.outcomes[run.layer].final, meta))
    return result


def _chosen(cache, test, folder, cache_dir, models, layer, spec: FitSpec):
    """The models' caches to compare (:func:`resolve_caches`) less those whose
    layer or head cannot work, and the notes that say so; a held-out data
    ``folder`` is named in the notes, extracted later."""
    choice = resolve_caches(
        cache,
        None if folder else test,
        cache_dir,
        models=models,
        find_test=folder is None,
    )
    notes = list(choice.notes)
    entries = choice.models or [ModelCaches("", choice.train, choice.test)]
    # a layer or head that cannot work: refused before the notes and the work
    kept = _comparable(entries, layer, spec.clf, notes)
    if len(kept) < len(entries) and test is None:
        # the held-out notes name the sets of the models kept alone
        found = held_out_notes(entries)
        notes = [n for n in notes if n not in found] + held_out_notes(kept)
    if folder is not None:
        notes += held_out_notes_of_folder(kept, folder)
    return kept, notes


def _finish(run: _ModelRun, runs: list[_ModelRun], spec: FitSpec, notes: list[str]):
    """The winning run's :class:`FitResult` (scored on its held-out cache, if
    any) and the metadata its model file records."""
    entry, layer, classes = run.entry, run.layer, run.classes
    outcome = run.outcomes[layer]
    with FeatureCache(entry.train) as train:
        result = _result(train, layer, run.spec, run.outcomes, run.labels, classes)
        result.notes = notes
        if len(runs) > 1:
            result.model_scores = _model_scores(runs)
        if entry.test is not None:
            with FeatureCache(entry.test) as held_out:
                check_compatible(train, held_out, layer)
                result.test = evaluate_test(
                    outcome.final,
                    held_out,
                    layer,
                    classes,
                    streaming=spec.clf == "sgd",
                    views=tuple(outcome.views),
                )
                result._derive()  # its summary, with the held-out scores
        meta = model_meta(train, layer, spec.clf, classes, views=outcome.views)
    return result, meta


def _pretrained(entries: list[ModelCaches]) -> bool:
    """Whether every training cache's weights are pretrained."""
    pretrained = True
    for entry in entries:
        with FeatureCache(entry.train) as train:
            pretrained &= bool(train.meta.weights.pretrained)
    return pretrained


def _comparable(
    entries: list[ModelCaches], layer: str | None, clf: str, notes: list[str]
) -> list[ModelCaches]:
    """The models of a comparison whose cache can be fitted as asked (the head
    needs an AlexNet's pool5; ``layer`` must be there and complete); the others
    are left out with a note, and when none is left, the first one's reason is
    the error."""
    kept, reasons = [], []
    for entry in entries:
        with FeatureCache(entry.train) as train:
            try:
                if clf == "head":
                    check_head_layer(train, layer)
                elif layer is not None and layer not in train.layers:
                    raise missing_layer(train, layer)  # with a hint that runs
                elif layer is not None:
                    train.dataset(layer)
            except FeatxError as exc:
                reasons.append(exc)
                # its extract hint may name a layer the network lacks: the
                # error, if it comes to one, says it; the note names the layers
                why = (
                    f"{train.path.name} has no {layer} (it has: "
                    f"{', '.join(train.layers) or 'none'})"
                    if clf != "head" and layer not in train.layers
                    else exc.message.raw
                )
                notes.append(Message(f"left out {entry.model}: {why}"))
                continue
        kept.append(entry)
    if not kept:
        raise reasons[0]
    return kept


@dataclass
class _ModelRun:
    """One model's cross-validation: every layer's outcome and the best."""

    entry: ModelCaches
    #: The spec it ran with (the head's carries the cache's weights).
    spec: FitSpec
    labels: np.ndarray
    classes: list[str]
    outcomes: dict[str, CVOutcome]
    layer: str
    #: Layers compared once (:func:`featx.fit.compare.compared_once`).
    notes: list[str]


def _cross_validate_model(
    entry: ModelCaches, layer: str | None, spec: FitSpec
) -> _ModelRun:
    with FeatureCache(entry.train) as train:
        if spec.clf == "head":
            layer = check_head_layer(train, layer)
            spec = replace(spec, source=head_source(train.meta))
        labels, classes, outcomes, notes = _cross_validate_layers(train, layer, spec)
        best = best_layer(train, outcomes)
    return _ModelRun(entry, spec, labels, classes, outcomes, best, notes)


def _model_scores(runs: list[_ModelRun]) -> list[dict]:
    """Every (model, layer)'s mean CV accuracy, in the order compared."""
    return [
        {
            "model": run.entry.model,
            "layer": name,
            "cache": run.entry.train.name,
            "cv_accuracy_mean": float(np.mean(o.scores["accuracy"])),
            "cv_accuracy_std": float(np.std(o.scores["accuracy"])),
        }
        for run in runs
        for name, o in run.outcomes.items()
    ]


def _cross_validate_layers(
    train: FeatureCache, layer: str | None, spec: FitSpec
) -> tuple[np.ndarray, list[str], dict[str, CVOutcome], list[str]]:
    """The labels, classes and the CV of ``layer``, or of every complete layer
    (each compared once), and the notes of the layers left out."""
    layers = [layer] if layer is not None else train.complete_layers()
    if not layers:
        raise FitError(
            f"{train.path.name} has no complete layer; finish `featx extract`"
        )
    for name in layers:
        train.dataset(name)  # explains a missing or incomplete layer
    layers, notes = compared_once(train, layers)
    labels, classes = labelled_rows(train, spec.cv)
    outcomes = {}
    for name in layers:
        spec.progress.describe(name)
        outcomes[name] = cross_validate(train, name, labels, spec)
    return labels, classes, outcomes, notes


def _result(
    train: FeatureCache,
    layer: str,
    spec: FitSpec,
    outcomes: dict[str, CVOutcome],
    labels: np.ndarray,
    classes: list[str],
) -> FitResult:
    """The :class:`FitResult` of the chosen ``layer`` (and every layer's score)."""
    outcome = outcomes[layer]
    n_rows, n_features = train.dataset(layer).shape
    result = FitResult(
        cache=str(train.path),
        layer=layer,
        clf=spec.clf,
        n_rows=int(n_rows),
        n_features=int(n_features),
        classes=classes,
        cv=spec.cv,
        seed=spec.seed,
        scale=spec.scale,
        pca=spec.pca,
        tuned=spec.tuned,
        cv_scores=outcome.scores,
        fit_times=outcome.fit_times,
        cv_confusion=outcome.confusion.tolist(),
        params=outcome.params,
        cv_params=outcome.fold_params,
        weights_id=train.meta.weights.id,
        pretrained=train.meta.weights.pretrained,
        repeats=spec.repeats,
        oof_pred=outcome.oof_pred.tolist(),
        oof_score=[round(float(v), 6) for v in outcome.oof_score],
        per_class=per_class(labels, outcome.oof_pred, classes),
        views=outcome.views,
        train_views=spec.train_views,
        model=train.meta.model,
    )
    if len(outcomes) > 1:
        result.layer_scores = [
            {
                "layer": name,
                "cv_accuracy_mean": float(np.mean(o.scores["accuracy"])),
                "cv_accuracy_std": float(np.std(o.scores["accuracy"])),
            }
            for name, o in outcomes.items()
        ]
    return result


def model_meta(
    cache: FeatureCache,
    layer: str,
    clf: str,
    classes: list[str],
    *,
    views: list[str] | None = None,
) -> ModelMeta:
    """What a saved model records so predict can reproduce its features (the
    ``views`` of each image it averages over: default the centre alone)."""
    meta = cache.meta
    ldef = cache.layers[layer]
    return ModelMeta(
        featx_version=__version__,
        sklearn_version=sklearn.__version__,
        cache_format=FORMAT_VERSION,
        cache=str(cache.path),
        data_root=meta.data_root,
        layer=layer,
        layer_name=ldef.layer,
        module_path=ldef.module_path,
        spatial=ldef.spatial,
        dtype=ldef.dtype,
        clf=clf,
        classes=classes,
        model=meta.model,
        **{f"weights_{k}": v for k, v in meta.weights.to_dict().items()},
        transform=meta.transform,
        views=list(views or [CENTER]),
    )


def record_fit(meta: ModelMeta, result: FitResult) -> ModelMeta:
    """``meta`` with the fit's settings and scores."""
    return replace(
        meta,
        cv=result.cv,
        seed=result.seed,
        scale=result.scale,
        pca=result.pca,
        tuned=result.tuned,
        params=result.params,
        cv_scores=result.cv_scores,
    )


def default_model_path(cache_path: Path, layer: str, clf: str) -> Path:
    return Path("models") / f"{cache_path.stem}-{layer}-{clf}{SUFFIX}"
