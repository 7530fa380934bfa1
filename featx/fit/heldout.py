"""A held-out set given as a data folder: its cache, made as the training cache.

``featx fit --test data/Test``, ``featx report --test data/Test`` and
``featx.fit.fit(test="data/Test")`` name a folder rather than a cache:
:func:`held_out_cache` returns the cache of that folder holding the layers the
fit reads, made with every setting of the training cache's identity (model,
weights, mean image, decode mode, precision, JPEG decoder; each layer's spatial
reduction, dtype and views), as ``featx predict`` copies a model's; missing
rows are extracted first. :func:`held_out_caches` does it for each model a fit
or report compares.
"""

from __future__ import annotations

from pathlib import Path

from featx.cache import (
    FeatureCache,
    ModelCaches,
    cache_of_folder,
    default_cache_dir,
    weights_spec,
)
from featx.errors import CacheError, WeightsError
from featx.images.preprocess import computed_with
from featx.images.views import VIEW_SETS, setting_of
from featx.progress import Progress

__all__ = ["is_data_folder", "held_out_cache", "held_out_caches", "held_out_notes"]


def is_data_folder(test: str | Path | None) -> bool:
    """Whether ``test`` names a data folder (a held-out set to extract) rather
    than a cache."""
    return test is not None and Path(test).is_dir()


# Long: its docstring says what is copied from the training cache; code 56.
def held_out_cache(
    folder: Path,
    *,
    train: Path,
    cache_dir: Path | None = None,
    layers: list[str] | None = None,
    progress: Progress | None = None,
) -> Path:
    """The cache of ``folder`` holding ``layers`` (default: every complete layer
    of ``train``), made as ``train`` was; missing rows are extracted.

    Raises
    ------
    featx.errors.CacheError
        For a layer ``train`` lacks or has not finished (before any work).
    featx.errors.WeightsError
        When ``train``'s weights no longer have the sha256 it records.
    """
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    with FeatureCache(train) as cache:
        meta = cache.meta
        for key in layers or ():
            cache.dataset(key)  # a layer train lacks: one line, before any work
        wanted = [cache.layers[k] for k in (layers or cache.complete_layers())]
        # the views the training rows have, so that a model averaging over
        # them is scored the same way
        views = {v for layer in wanted for v in cache.views(layer.key)}
    setting = setting_of(views) if setting_of(views) in VIEW_SETS else "center"
    try:
        existing = cache_of_folder(folder, cache_dir, like=meta)
        with FeatureCache(existing) as held_out:
            have = {k: set(held_out.views(k)) for k in held_out.complete_layers()}
        if all(set(VIEW_SETS[setting]) <= have.get(w.key, set()) for w in wanted):
            return existing
    except CacheError:
        pass  # nothing extracted yet: extract below
    from featx.extraction import extract
    from featx.model import load_weights

    spec, seed = weights_spec(meta.weights.id, meta.weights.source)
    loaded = load_weights(spec, seed=seed, model=meta.model)
    if loaded.sha256 != meta.weights.sha256:
        raise WeightsError(
            f"cannot extract {folder} with the weights of {train.name}: "
            f"{meta.weights.id} now has sha256 {loaded.sha256[:16]}… instead of "
            f"{meta.weights.sha256[:16]}…"
        )
    groups: dict[tuple[str, str], list[str]] = {}
    for layer in wanted:
        groups.setdefault((layer.spatial, layer.dtype), []).append(layer.layer)
    path = None
    for (spatial, dtype), names in groups.items():
        path = extract(
            folder,
            layers=names,
            spatial=spatial,
            dtype=dtype,
            weights=loaded,
            cache_dir=cache_dir,
            progress=progress,
            mean=meta.mean_file,
            views=setting,
            # decode, precision and decoder: the training cache's identity
            **computed_with(meta.transform),
        ).cache_path
    return path


def held_out_caches(
    entries: list[ModelCaches],
    folder: Path,
    *,
    cache_dir: Path | None = None,
    layers: list[str] | None = None,
    progress: Progress | None = None,
) -> None:
    """Set each entry's ``test`` to :func:`held_out_cache` of ``folder`` for
    its training cache (``layers``: those the entry's cache holds, default
    every complete one). :func:`held_out_notes` says so beforehand."""
    for entry in entries:
        with FeatureCache(entry.train) as cache:
            mine = [k for k in layers if k in cache.layers] if layers else None
        entry.test = held_out_cache(
            Path(folder),
            train=entry.train,
            cache_dir=cache_dir,
            layers=mine or layers,
            progress=progress,
        )


def held_out_notes(entries: list[ModelCaches], folder: Path) -> list[str]:
    """What :func:`held_out_caches` will score each entry on, said before the
    work (its test line names the cache file after)."""
    return [
        f"held-out set: the cache of {folder} made as {e.train.name}"
        f"{f' ({e.model})' if len(entries) > 1 else ''}, with the rows it lacks "
        "extracted first; --test CACHE chooses another"
        for e in entries
    ]
