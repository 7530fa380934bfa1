"""A JSON-able summary of one cache, for ``featx info`` and reports."""

from __future__ import annotations

from pathlib import Path

from featx.cache.read import FeatureCache
from featx.images.preprocess import computed_with
from featx.images.views import dataset_key

__all__ = ["cache_info"]


def cache_info(path: Path) -> dict:
    """A JSON-able summary of a cache: images, layers, classes, failures, files
    that are no image, decoder warnings, weights."""
    with FeatureCache(path) as cache:
        meta = cache.meta
        labels = cache.labels
        counts = {name: int((labels == i).sum()) for i, name in enumerate(meta.classes)}
        layers = {}
        for key, layer in cache.layers.items():
            done = cache.done(key)
            views = {
                view: {"rows_done": int(cache.done(dataset_key(key, view)).sum())}
                for view in cache.views(key, complete=False)
            }
            layers[key] = {
                "views": views,
                "dim": layer.dim,
                "dtype": layer.dtype,
                "layer": layer.layer,
                "module_path": layer.module_path,
                "shape": list(layer.shape),
                "spatial": layer.spatial,
                "rows_done": int(done.sum()),
                "complete": bool(done.all()),
            }
            # the dataset itself, complete or not (info describes both)
            attrs = cache.file["features"][key].attrs
            if "runtime_parity" in attrs:  # another runtime's, or int8's
                layers[key]["runtime_parity"] = float(attrs["runtime_parity"])
        failed = cache.failed
        not_images, warnings = cache.not_images, cache.warnings
        return {
            "path": str(cache.path),
            "format": int(cache.attrs["featx_format"]),
            "data_root": meta.data_root,
            "n_images": cache.n_rows,
            "layers": layers,
            "classes": counts,
            "n_failed": len(failed),
            "failed": [{"path": f.path, "reason": f.reason} for f in failed],
            "n_not_images": len(not_images),
            "not_images": [{"path": x.path, "reason": x.reason} for x in not_images],
            "n_warnings": len(warnings),
            "warnings": [
                {"path": path, "messages": lines} for path, lines in warnings.items()
            ],
            "model": meta.model,
            "weights": meta.weights.to_dict(),
            "transform": meta.transform,
            # caches made before the mode existed decoded every pixel
            **computed_with(meta.transform),
            "versions": {
                "featx": meta.featx_version,
                "torch": meta.torch_version,
                "torchvision": meta.torchvision_version,
            },
        }
