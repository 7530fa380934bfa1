"""Reading caches: their structure (:func:`read_state`) and their features
(:class:`FeatureCache`, :func:`read_layer`)."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from featx.cache.format import (
    _check_format,
    _check_layout,
    _decode,
    _open,
    damaged,
    reading,
)
from featx.cache.schema import (
    MAX_ABS,
    CacheMeta,
    CacheState,
    Failure,
    LayerDef,
    NotImage,
    Rows,
    Warnings,
)
from featx.errors import CacheDamagedError, CacheError
from featx.images.views import ALL_VIEWS, CENTER, dataset_key

__all__ = [
    "FeatureCache",
    "LayerData",
    "READ_BLOCK_BYTES",
    "read_done",
    "read_layer",
    "read_state",
    "read_warnings",
]

READ_BLOCK_BYTES = 4 << 20


def _layer_from_attrs(ds: h5py.Dataset) -> LayerDef:
    a = ds.attrs
    return LayerDef(
        layer=str(a["layer"]),
        module_path=str(a["module_path"]),
        shape=tuple(int(s) for s in a["shape"]),
        spatial=str(a["spatial"]),
        dtype=str(ds.dtype),
        view=str(a.get("view", CENTER)),
        kind=str(a.get("kind", "")),
        order=int(a.get("order", -1)),
        same_as=str(a.get("same_as", "")),
    )


def _not_images(f: h5py.File) -> list[NotImage]:
    """``/not_images``, empty where the cache has none (written before it)."""
    if "not_images" not in f:
        return []
    g = f["not_images"]
    return [
        NotImage(p, r)
        for p, r in zip(_decode(g["paths"][:]), _decode(g["reasons"][:]), strict=True)
    ]


def _warnings(f: h5py.File) -> Warnings:
    """``/warnings`` as ``{path: lines}``, empty where the cache has none."""
    if "warnings" not in f:
        return {}
    g = f["warnings"]
    paths, messages = _decode(g["paths"][:]), _decode(g["messages"][:])
    return {p: m.split("\n") for p, m in zip(paths, messages, strict=True)}


def read_state(path: Path, data: str = "") -> CacheState:
    """Read everything of a cache but its features (paths, flags, attrs)."""
    try:
        f = _open(path)
    except CacheDamagedError as exc:
        raise damaged(path, exc.__cause__ or exc, data) from exc
    with f, reading(path, data):
        _check_format(f, path)
        _check_layout(f, path)
        rows = Rows(
            paths=_decode(f["paths"][:]),
            labels=f["labels"][:],
            sha256=_decode(f["sha256"][:]),
            size=f["size"][:],
            mtime_ns=f["mtime_ns"][:],
        )
        layers = {k: _layer_from_attrs(ds) for k, ds in f["features"].items()}
        done = {k: f["done"][k][:].astype(bool) for k in layers}
        g = f["failed"]
        failed = [
            Failure(p, r, s, int(z), int(m))
            for p, r, s, z, m in zip(
                _decode(g["paths"][:]),
                _decode(g["reasons"][:]),
                _decode(g["sha256"][:]),
                g["size"][:],
                g["mtime_ns"][:],
                strict=True,
            )
        ]
        return CacheState(
            path,
            dict(f.attrs),
            rows,
            layers,
            done,
            failed,
            scanned_at_ns=int(f["scanned_at_ns"][0]),
            not_images=_not_images(f),
            warnings=_warnings(f),
        )


def read_warnings(path: Path) -> Warnings:
    """The warnings a cache recorded, ``{path: lines}``."""
    with _open(path) as f, reading(path):
        _check_format(f, path)
        return _warnings(f)


def read_done(path: Path, keys) -> dict[str, np.ndarray]:
    """The ``done`` flags of the layers ``keys``, as booleans."""
    with _open(path) as f, reading(path):
        _check_format(f, path)
        return {k: f["done"][k][:].astype(bool) for k in keys}


@dataclass
class LayerData:
    """What :func:`read_layer` returns; unpacks as a 4-tuple."""

    features: np.ndarray
    labels: np.ndarray
    paths: list[str]
    classes: list[str]

    def __iter__(self):
        return iter((self.features, self.labels, self.paths, self.classes))


class FeatureCache:
    """Read-only access to a cache file, open for the life of the object.

    Parameters
    ----------
    path
        A cache file written by ``featx extract``.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.file = _open(self.path, "r")
        try:
            with reading(self.path):
                _check_format(self.file, self.path)
                self.attrs = dict(self.file.attrs)
                self.meta = CacheMeta.from_attrs(self.attrs)
                _check_layout(self.file, self.path)
        except CacheError:
            self.file.close()
            raise

    def __enter__(self) -> FeatureCache:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.file.close()

    @property
    def n_rows(self) -> int:
        return int(self.file["paths"].shape[0])

    @property
    def classes(self) -> list[str]:
        return self.meta.classes

    @functools.cached_property
    def labels(self) -> np.ndarray:
        with reading(self.path, self.meta.data_root):
            labels = self.file["labels"][:]
            if len(labels) and (
                labels.min() < -1 or labels.max() >= max(1, len(self.classes))
            ):
                raise ValueError("/labels holds class numbers out of range")
            return labels

    @functools.cached_property
    def sha256(self) -> np.ndarray:
        """The content hash of every row, as stored (bytes)."""
        with reading(self.path, self.meta.data_root):
            return self.file["sha256"][:]

    def done(self, layer: str) -> np.ndarray:
        """Which rows of ``layer`` are computed (booleans)."""
        with reading(self.path, self.meta.data_root):
            return self.file["done"][layer][:].astype(bool)

    def complete_layers(self) -> list[str]:
        """The layers whose every row is computed (centre view), in storage order."""
        return [key for key in self.layers if self.done(key).all()]

    def views(self, layer: str, *, complete: bool = True) -> tuple[str, ...]:
        """The views stored of ``layer`` (a :attr:`layers` key), in the order of
        :data:`featx.images.views.ALL_VIEWS`; only the complete ones unless told."""
        have = {d.view for d in self.all_layers.values() if d.base == layer}
        return tuple(
            v
            for v in ALL_VIEWS
            if v in have and (not complete or self.done(dataset_key(layer, v)).all())
        )

    @functools.cached_property
    def paths(self) -> list[str]:
        with reading(self.path, self.meta.data_root):
            return _decode(self.file["paths"][:])

    @functools.cached_property
    def all_layers(self) -> dict[str, LayerDef]:
        """Every feature dataset, every view, by dataset name."""
        with reading(self.path, self.meta.data_root):
            return {k: _layer_from_attrs(ds) for k, ds in self.file["features"].items()}

    @property
    def layers(self) -> dict[str, LayerDef]:
        """The layers, by name (their centre view's dataset)."""
        return {k: d for k, d in self.all_layers.items() if d.view == CENTER}

    @functools.cached_property
    def failed(self) -> list[Failure]:
        g = self.file["failed"]
        with reading(self.path, self.meta.data_root):
            return [
                Failure(p, r)
                for p, r in zip(
                    _decode(g["paths"][:]), _decode(g["reasons"][:]), strict=True
                )
            ]

    @functools.cached_property
    def not_images(self) -> list[NotImage]:
        """The folder's files that are no image, as its last extract listed them
        (none for caches written before featx recorded them)."""
        with reading(self.path, self.meta.data_root):
            return _not_images(self.file)

    @functools.cached_property
    def warnings(self) -> Warnings:
        """What the decoders said of each image, by path (``{path: lines}``)."""
        with reading(self.path, self.meta.data_root):
            return _warnings(self.file)

    def dataset(self, layer: str) -> h5py.Dataset:
        """The feature dataset of ``layer``, checked to be complete."""
        if layer not in self.file["features"]:
            have = ", ".join(self.file["features"]) or "none"
            raise CacheError(
                f"layer {layer!r} is not in {self.path.name} (it has: {have}); run "
                f"`featx extract {self.meta.data_root or 'DATA_DIR'} --layer {layer}"
                f"{self.meta.extract_flags()}`"
            )
        done = self.done(layer)
        if not done.all():
            raise CacheError(
                f"layer {layer!r} in {self.path.name} is incomplete "
                f"({int(done.sum())}/{len(done)} rows); re-run `featx extract` to "
                "finish it"
            )
        return self.file["features"][layer]

    def iter_chunks(
        self,
        layer: str,
        *,
        rows: np.ndarray | None = None,
        chunk_rows: int = 4096,
        dtype=np.float32,
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield ``(row_indices, features)`` blocks, converted to ``dtype``.

        A block holds at most ``chunk_rows`` rows and about :data:`READ_BLOCK_BYTES`
        of stored data; only one block is in memory at a time.
        """
        ds = self.dataset(layer)
        rows = np.arange(ds.shape[0]) if rows is None else np.asarray(rows)
        step = _block_rows(ds, chunk_rows)
        for start in range(0, len(rows), step):
            idx = rows[start : start + step]
            with reading(self.path, self.meta.data_root):
                block = _read_rows(ds, idx)
            self._check_finite(layer, block)
            yield idx, block.astype(dtype, copy=False)

    def read(self, layer: str, *, rows: np.ndarray | None = None, dtype=np.float32):
        """All features of ``layer`` (or of ``rows``) as one ``dtype`` array.

        Stored data is converted block by block into the single output array,
        so a float16 layer never exists twice in memory.
        """
        ds = self.dataset(layer)
        n = ds.shape[0] if rows is None else len(rows)
        out = np.empty((n, ds.shape[1]), dtype=dtype)
        if rows is None:
            step = _block_rows(ds, n)
            for start in range(0, n, step):
                sel = np.s_[start : min(n, start + step)]
                with reading(self.path, self.meta.data_root):
                    ds.read_direct(out, sel, sel)  # HDF5 converts into ``out``
                self._check_finite(layer, out[sel])
            return out
        pos = 0
        for _, block in self.iter_chunks(layer, rows=rows, dtype=dtype):
            out[pos : pos + len(block)] = block
            pos += len(block)
        return out

    def read_views(
        self, layer: str, views: tuple[str, ...], *, dtype=np.float32
    ) -> np.ndarray:
        """``views`` of ``layer`` side by side: an (N, V x D) array whose block
        ``v`` holds view ``views[v]`` (what :class:`pipelines.views.ViewEnsemble`
        takes)."""
        keys = [dataset_key(layer, v) for v in views]
        if len(keys) == 1:  # one view: read straight into the result
            return self.read(keys[0], dtype=dtype)
        n, dim = self.dataset(keys[0]).shape
        out = np.empty((n, dim * len(keys)), dtype=dtype)
        for v, key in enumerate(keys):  # read checks each view is complete
            out[:, v * dim : (v + 1) * dim] = self.read(key, dtype=dtype)
        return out

    def _check_finite(self, layer: str, block: np.ndarray) -> None:
        """Refuse NaN, Inf and magnitudes beyond :data:`MAX_ABS`: AlexNet computes
        none of them, so they mean damage (and no classifier may see them)."""
        if not len(block) or -MAX_ABS <= block.min() <= block.max() <= MAX_ABS:
            return  # min and max allocate nothing; a NaN makes them NaN
        with np.errstate(invalid="ignore"):
            ok = np.abs(block) <= MAX_ABS  # False for NaN too
        bad = int((~ok).any(axis=1).sum())
        raise damaged(
            self.path,
            ValueError(
                f"{bad} row(s) of layer {layer} hold NaN, Inf or values beyond "
                f"±{MAX_ABS:.0e}"
            ),
            self.meta.data_root,
        )


def _block_rows(ds: h5py.Dataset, most: int) -> int:
    row_bytes = max(1, ds.shape[1] * ds.dtype.itemsize)
    return max(1, min(most, READ_BLOCK_BYTES // row_bytes))


def _read_rows(ds: h5py.Dataset, idx: np.ndarray) -> np.ndarray:
    if len(idx) and np.all(np.diff(idx) == 1):
        return ds[int(idx[0]) : int(idx[-1]) + 1]
    order = np.argsort(idx)
    block = ds[np.sort(idx)] if len(idx) else ds[0:0]
    out = np.empty_like(block)
    out[order] = block
    return out


def read_layer(path: Path, layer: str) -> LayerData:
    """Read one layer of a cache: ``features, labels, paths, classes``.

    Returns
    -------
    LayerData
        ``features`` of shape (n_images, dim) as float32, ``labels`` of shape
        (n_images,) (-1 where unlabelled), relative ``paths`` and class names.
    """
    with FeatureCache(path) as cache:
        return LayerData(cache.read(layer), cache.labels, cache.paths, cache.classes)
