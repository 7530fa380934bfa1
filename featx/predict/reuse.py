"""Features a cache already holds, for ``featx predict`` on a data folder.

A folder given to ``predict`` that was extracted before (``featx fit --test
data/Test`` extracts it) is read from its cache instead of through the network
again, when that cache *matches* the model: it is the cache of that folder,
made with the same network, the same weights (by sha256) and the same
preprocessing (:meth:`featx.cache.CacheMeta.same_source`), it holds the model's
layer (same pooling and storage type) complete for every view the model scores,
and its rows are the folder's images as they are now (the check ``featx
extract`` makes before it decides that there is nothing to do: same paths,
contents and labels). Anything short of that is extracted as before.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from featx.cache import FeatureCache, LayerDef, cache_of_folder, read_state
from featx.cache.identity import cache_meta
from featx.cache.reconcile import scan_rows, up_to_date
from featx.errors import CacheError, DataError
from featx.images import Preprocess, list_images
from featx.model import LoadedWeights
from featx.progress import Progress

__all__ = ["CachedFeatures", "cached_features"]


@dataclass
class CachedFeatures:
    """The features of one folder's images, read from its cache."""

    folder: Path
    cache: Path
    #: The image files, as ``folder / relative path``, one per row of ``X``.
    files: list[Path]
    X: np.ndarray
    #: Images of the folder that could not be decoded: (file, reason).
    failed: list[tuple[Path, str]]


def cached_features(
    folder: Path,
    *,
    cache_dir: Path,
    layer: str,
    wanted: list[LayerDef],
    loaded: LoadedWeights,
    preprocess: Preprocess,
) -> CachedFeatures | None:
    """The features of ``folder``'s images from a matching cache in
    ``cache_dir`` (see the module's docstring); None when there is none.

    ``layer`` is the cache key (``conv5_avg``), ``wanted`` its views as the
    model scores them.
    """
    try:
        images = list_images(Path(folder))
        images.root = images.root.resolve()
        meta = cache_meta(images, loaded, preprocess)
        path = cache_of_folder(folder, cache_dir, like=meta)
    except (CacheError, DataError, OSError):
        return None
    old = read_state(path, data=str(images.root))
    scanned, skipped = scan_rows(images, old, Progress())
    if not up_to_date(old, scanned, skipped, wanted, meta):
        return None
    views = tuple(w.view for w in wanted)
    with FeatureCache(path) as cache:
        X = cache.read_views(layer, views)
        files = [Path(folder) / rel for rel in cache.paths]
    failed = [(Path(folder) / f.path, f.reason) for f in old.failed]
    return CachedFeatures(Path(folder), path, files, X, failed)
