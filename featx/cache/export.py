"""Features out of the cache, for tools that do not read HDF5.

Three formats, each holding the features of one layer with every row's path,
label (class index, -1 when unlabelled) and class name:

- ``npz``: ``features`` (N, D) in the stored dtype, ``labels``, ``paths``,
  ``classes`` (unicode arrays: ``np.load`` needs no ``allow_pickle``);
- ``csv``: one row per image, ``path,label,class,<layer>_0..<layer>_{D-1}``,
  written block by block;
- ``parquet`` (``pip install -e '.[parquet]'``): columns ``path``, ``label``,
  ``class`` and ``features``, a fixed-size list of D float32 per row.

Files are written to a temporary name and renamed into place.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np

from featx.cache.locate import missing_layer
from featx.cache.read import FeatureCache
from featx.choices import EXPORT_FORMATS
from featx.errors import FeatxError, check_choice, param

__all__ = ["ExportError", "FORMATS", "default_out", "export"]

FORMATS = EXPORT_FORMATS


class ExportError(FeatxError, ValueError):
    """An export that cannot be written (format, missing pyarrow, layer)."""


def default_out(cache_path: Path, layer: str, fmt: str) -> Path:
    return Path(f"{Path(cache_path).stem}-{layer}.{fmt}")


def export(cache_path: Path, layer: str, fmt: str, out: Path | None = None) -> Path:
    """Write ``layer`` of the cache at ``cache_path`` as ``fmt``; return the file.

    Raises
    ------
    ExportError
        For parquet without pyarrow; :class:`~featx.errors.CacheError` for a
        missing or incomplete layer.
    """
    check_choice("format", fmt, FORMATS)
    if fmt == "parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError as exc:
            raise ExportError(
                "parquet needs pyarrow: pip install -e '.[parquet]' (or choose "
                f"{param('fmt', 'npz')} or csv)"
            ) from exc
    out = Path(out) if out is not None else default_out(cache_path, layer, fmt)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    try:
        with FeatureCache(cache_path) as cache:
            if layer not in cache.layers:  # with a hint that runs
                raise missing_layer(cache, layer)
            cache.dataset(layer)  # an incomplete layer: one line
            {"npz": _npz, "csv": _csv, "parquet": _parquet}[fmt](cache, layer, tmp)
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def _columns(cache: FeatureCache) -> tuple[list[str], np.ndarray, list[str]]:
    labels = cache.labels
    names = [cache.classes[i] if i >= 0 else "" for i in labels]
    return cache.paths, labels, names


def _npz(cache: FeatureCache, layer: str, tmp: Path) -> None:
    paths, labels, _ = _columns(cache)
    stored = np.dtype(cache.layers[layer].dtype)
    with tmp.open("wb") as f:
        np.savez(
            f,
            features=cache.read(layer, dtype=stored),
            labels=labels,
            paths=np.array(paths, dtype=str),
            classes=np.array(cache.classes, dtype=str),
        )


def _csv(cache: FeatureCache, layer: str, tmp: Path) -> None:
    paths, labels, names = _columns(cache)
    dim = cache.layers[layer].dim
    with tmp.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(
            ["path", "label", "class", *(f"{layer}_{j}" for j in range(dim))]
        )
        for rows, block in cache.iter_chunks(layer, chunk_rows=256):
            for i, values in zip(rows, block, strict=True):
                writer.writerow(
                    [paths[i], int(labels[i]), names[i], *(f"{v:.9g}" for v in values)]
                )


def _parquet(cache: FeatureCache, layer: str, tmp: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    paths, labels, names = _columns(cache)
    features = cache.read(layer)
    flat = pa.array(features.reshape(-1), type=pa.float32())
    table = pa.table(
        {
            "path": pa.array(paths, type=pa.string()),
            "label": pa.array(labels, type=pa.int64()),
            "class": pa.array(names, type=pa.string()),
            "features": pa.FixedSizeListArray.from_arrays(flat, features.shape[1]),
        }
    )
    table = table.replace_schema_metadata(
        {"featx_layer": layer, "featx_classes": json.dumps(cache.classes)}
    )
    pq.write_table(table, tmp)
