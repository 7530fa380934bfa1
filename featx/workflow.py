"""Steps that join extraction to fitting, for commands given data folders.

``featx fit --test data/Test`` and ``featx report --test data/Test`` name a data
folder rather than a cache: :func:`held_out_cache` extracts the layers the
training cache has, with the training cache's own weights and preprocessing, and
returns the held-out cache.
"""

from __future__ import annotations

from pathlib import Path

from featx.cache import (
    FeatureCache,
    cache_of_folder,
    default_cache_dir,
    weights_spec,
)
from featx.errors import CacheError, WeightsError
from featx.extraction import extract
from featx.model import load_weights
from featx.progress import Progress
from featx.views import VIEW_SETS, setting_of


def held_out_cache(
    folder: Path,
    *,
    train: Path,
    cache_dir: Path | None = None,
    layers: list[str] | None = None,
    progress: Progress | None = None,
) -> Path:
    """The cache of ``folder`` holding ``layers`` (default: every complete layer
    of ``train``), made with ``train``'s weights; missing rows are extracted."""
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    with FeatureCache(train) as cache:
        meta = cache.meta
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
        ).cache_path
    return path
