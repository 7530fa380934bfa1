"""Writing caches: a complete new file made atomically, or rows filled in.

A change of structure (images added or removed, a new layer, failures to record)
writes a complete new file beside the old one and renames it over the old one.
Otherwise the file is only *filled*: every feature chunk was allocated when the
file was made, so filling writes raw data and never HDF5 metadata, and a row's
``done`` flag is set only after its features were flushed. An interrupted fill
leaves a valid file whose ``done`` flags say exactly what is left to do.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np

from featx.cache.format import _open
from featx.cache.schema import (
    FORMAT_VERSION,
    STR,
    CacheMeta,
    Failure,
    LayerDef,
    NotImage,
    Rows,
    Warnings,
)
from featx.cache.space import check_free, disk_full_as_error, reserve

__all__ = [
    "BackgroundWriter",
    "COPY_BLOCK_BYTES",
    "CacheFiller",
    "FILL_CACHE_BYTES",
    "identical_layers",
    "record_parity",
    "write_cache",
]

COPY_BLOCK_BYTES = 64 << 20

#: Chunk cache of a dataset being filled: room for the partly written chunk at a
#: batch boundary (chunks are at most 1 MiB), small enough to keep memory flat.
FILL_CACHE_BYTES = 4 << 20


def _create_features(group: h5py.Group, layer: LayerDef, n: int) -> h5py.Dataset:
    dtype = np.dtype(layer.dtype)
    if n == 0:
        ds = group.create_dataset(layer.key, shape=(0, layer.dim), dtype=dtype)
    else:
        rows = int(np.clip((1 << 20) // (layer.dim * dtype.itemsize), 1, 256))
        dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
        dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
        dcpl.set_fill_time(h5py.h5d.FILL_TIME_NEVER)
        ds = group.create_dataset(
            layer.key,
            shape=(n, layer.dim),
            dtype=dtype,
            chunks=(min(rows, n), layer.dim),
            dcpl=dcpl,
        )
    ds.attrs.update(
        layer=layer.layer,
        module_path=layer.module_path,
        shape=np.array(layer.shape, np.int64),
        spatial=layer.spatial,
        view=layer.view,
    )
    if layer.kind:
        ds.attrs["kind"] = layer.kind
    if layer.order >= 0:
        ds.attrs["order"] = layer.order
    if layer.same_as:
        ds.attrs["same_as"] = layer.same_as
    return ds


def identical_layers(f: h5py.File, rows: np.ndarray, values: dict) -> dict[str, str]:
    """``{deeper key: shallower key}`` for each pair of layers of one view whose
    rows ``rows`` hold exactly the same numbers: those in ``values`` (one batch)
    compared with each other and with the layers already done on those rows."""
    from featx.cache.read import _layer_from_attrs

    features = f["features"]
    known = dict(values)
    for key, ds in features.items():
        if key not in known and ds.shape[0] and f["done"][key][rows].all():
            known[key] = None  # read only if a batch array matches its shape
    defs = {k: _layer_from_attrs(features[k]) for k in known}
    order = sorted(known, key=lambda k: (defs[k].depth, k))
    same: dict[str, str] = {}
    for i, deep in enumerate(order):
        for shallow in order[:i]:
            a, b = defs[shallow], defs[deep]
            if a.view != b.view or a.dim != b.dim or shallow in same:
                continue
            if known[shallow] is None and known[deep] is None:
                continue  # both stored before: compared when they were written
            x = _batch(features, shallow, known, rows)
            y = _batch(features, deep, known, rows)
            if np.array_equal(x, y):
                same[deep] = shallow
                break
    return same


def _batch(features, key: str, known: dict, rows: np.ndarray) -> np.ndarray:
    """The batch's rows of ``key``: from the batch, or read (``rows`` sorted)."""
    if known[key] is None:
        known[key] = features[key][rows]
    return np.asarray(known[key])


def _runs(dst: np.ndarray, src: np.ndarray) -> Iterator[tuple[int, int, int]]:
    """Yield ``(dst_start, src_start, length)`` for the runs where destination and
    source rows both rise by one."""
    start = 0
    for i in range(1, len(dst) + 1):
        if i == len(dst) or dst[i] != dst[i - 1] + 1 or src[i] != src[i - 1] + 1:
            yield int(dst[start]), int(src[start]), i - start
            start = i


def _estimate(rows: Rows, layers: list[LayerDef]) -> int:
    """Bytes a cache of ``rows`` and ``layers`` takes, with room for metadata."""
    features = sum(
        len(rows) * layer.dim * np.dtype(layer.dtype).itemsize for layer in layers
    )
    columns = sum(len(p.encode()) + 128 for p in rows.paths)
    return features + columns + (256 << 10)


def write_cache(
    path: Path,
    *,
    meta: CacheMeta,
    scanned_at_ns: int,
    rows: Rows,
    layers: list[LayerDef],
    failed: list[Failure],
    source: Path | None = None,
    source_rows: np.ndarray | None = None,
    on_rows=None,
    not_images: list[NotImage] = (),
    warnings: Warnings | None = None,
) -> None:
    """Write a complete cache to ``path`` atomically (temporary file + rename).

    ``source_rows[i]`` names the row of ``source`` whose computed features row
    ``i`` takes over (-1: none); features of layers missing there start undone.
    ``not_images`` and ``warnings`` fill the groups of the same names (written
    empty when there are none).
    """
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    need = _estimate(rows, layers)
    check_free(path.parent, need)
    notes = (list(not_images), dict(warnings or {}))
    try:
        with disk_full_as_error(path.parent, need):
            _write_layout(
                tmp, meta, scanned_at_ns, rows, layers, failed, source, source_rows,
                on_rows, notes,
            )  # fmt: skip
            tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def _strings(group: h5py.Group, name: str, values) -> None:
    group.create_dataset(name, data=np.array(list(values), dtype=object), dtype=STR)


def _write_notes(f: h5py.File, not_images: list[NotImage], warnings: Warnings) -> None:
    """The groups ``/not_images`` and ``/warnings``, sorted by path."""
    g = f.create_group("not_images")
    listed = sorted(not_images, key=lambda x: x.path)
    _strings(g, "paths", [x.path for x in listed])
    _strings(g, "reasons", [x.reason for x in listed])
    g = f.create_group("warnings")
    said = sorted(warnings)
    _strings(g, "paths", said)
    _strings(g, "messages", ["\n".join(warnings[p]) for p in said])


def _write_layout(
    tmp, meta, scanned_at_ns, rows, layers, failed, source, source_rows, on_rows, notes
) -> None:
    """Write the new file ``tmp`` (see :func:`write_cache`). (Ten parameters:
    those of write_cache.)"""
    n = len(rows)
    with h5py.File(tmp, "w") as f:
        f.attrs.update(meta.to_attrs())
        f.attrs["featx_format"] = FORMAT_VERSION
        # A dataset, so that an in-place run updates it without new metadata.
        f.create_dataset("scanned_at_ns", data=np.array([scanned_at_ns], np.int64))
        f.create_dataset("paths", data=np.array(rows.paths, dtype=object), dtype=STR)
        f.create_dataset("labels", data=np.asarray(rows.labels, np.int64))
        f.create_dataset("sha256", data=np.array(rows.sha256, dtype="S64"))
        f.create_dataset("size", data=np.asarray(rows.size, np.int64))
        f.create_dataset("mtime_ns", data=np.asarray(rows.mtime_ns, np.int64))
        g = f.create_group("failed")
        g.create_dataset(
            "paths",
            data=np.array([x.path for x in failed], dtype=object),
            dtype=STR,
        )
        g.create_dataset(
            "reasons",
            data=np.array([x.reason for x in failed], dtype=object),
            dtype=STR,
        )
        g.create_dataset("sha256", data=np.array([x.sha256 for x in failed], "S64"))
        g.create_dataset("size", data=np.array([x.size for x in failed], np.int64))
        g.create_dataset(
            "mtime_ns", data=np.array([x.mtime_ns for x in failed], np.int64)
        )
        _write_notes(f, *notes)
        feats, dones = f.create_group("features"), f.create_group("done")
        created = [_create_features(feats, layer, n) for layer in layers]
        f.flush()
        reserve(tmp)
        src_file = _open(source, "r") if source is not None else None
        try:
            for layer, ds in zip(layers, created, strict=True):
                done = np.zeros(n, np.uint8)
                if src_file is not None and layer.key in src_file["features"]:
                    _copy_rows(src_file, layer.key, ds, done, source_rows, on_rows)
                dones.create_dataset(layer.key, data=done)
        finally:
            if src_file is not None:
                src_file.close()


def _copy_rows(src_file, key, ds, done, source_rows, on_rows) -> None:
    src = src_file["features"][key]
    src_done = src_file["done"][key][:].astype(bool)
    keep = np.flatnonzero(source_rows >= 0)
    keep = keep[src_done[source_rows[keep]]]
    block = max(1, COPY_BLOCK_BYTES // max(1, src.dtype.itemsize * src.shape[1]))
    dst_idx, src_idx = keep, source_rows[keep]
    for d0, s0, length in _runs(dst_idx, src_idx):
        for off in range(0, length, block):
            m = min(block, length - off)
            ds[d0 + off : d0 + off + m] = src[s0 + off : s0 + off + m]
            if on_rows:
                on_rows(m)
    done[keep] = 1


class CacheFiller:
    """Fills computed rows into a cache whose structure is final.

    Use as a context manager; :meth:`write` stores features and marks the rows
    done only after the features reached the file.
    """

    def __init__(self, path: Path) -> None:
        reserve(path)
        self.path = path
        self.f = _open(path, "r+", rdcc_nbytes=FILL_CACHE_BYTES, rdcc_w0=1.0)
        #: ``{key: key}`` of :func:`identical_layers` on this run's first batch.
        self.identical: dict[str, str] | None = None

    def __enter__(self) -> CacheFiller:
        return self

    def __exit__(self, *exc) -> None:
        self.f.close()

    def write(self, rows: np.ndarray, values: dict[str, np.ndarray]) -> None:
        """Store ``values[key][i]`` as row ``rows[i]`` (rows sorted) and commit."""
        with disk_full_as_error(self.path.parent, 1 << 20):
            self._write(rows, values)

    def _write(self, rows: np.ndarray, values: dict[str, np.ndarray]) -> None:
        runs = list(_runs(np.arange(len(rows)), rows))
        for key, array in values.items():
            ds = self.f["features"][key]
            for dst, src, length in runs:
                ds[src : src + length] = array[dst : dst + length]
        self.f.flush()
        for key in values:
            flags = self.f["done"][key]
            for _, src, length in runs:
                flags[src : src + length] = 1
        self.f.flush()
        if self.identical is None:  # the first batch, now safely stored
            self.identical = identical_layers(self.f, rows, values)
            for deep, shallow in self.identical.items():
                self.f["features"][deep].attrs["same_as"] = shallow
            self.f.flush()

    def refresh(self, rows: Rows, *, changed: np.ndarray, scanned_at_ns: int) -> None:
        """Record a new scan of the same images.

        Rows whose content changed are marked undone in every layer first; only
        then are their hashes, every row's size and mtime, and the scan time
        written, so an interruption can never pair a new hash with old features.
        """
        if len(changed):
            for flags in self.f["done"].values():
                for row in changed:
                    flags[row] = 0
            self.f.flush()
            for row in changed:
                self.f["sha256"][row] = rows.sha256[row].encode()
        self.f["size"][:] = np.asarray(rows.size, np.int64)
        self.f["mtime_ns"][:] = np.asarray(rows.mtime_ns, np.int64)
        self.f["scanned_at_ns"][0] = scanned_at_ns
        self.f.flush()


class BackgroundWriter(threading.Thread):
    """Writes batches through a :class:`CacheFiller` from a background thread, so
    that HDF5 writes (which release the GIL) overlap the forward pass."""

    def __init__(self, filler: CacheFiller) -> None:
        super().__init__(daemon=True, name="featx-writer")
        self.filler = filler
        self.jobs: queue.Queue = queue.Queue(maxsize=4)
        self.error: BaseException | None = None

    def run(self) -> None:
        while (job := self.jobs.get()) is not None:
            if self.error is None:
                try:
                    self.filler.write(*job)
                except BaseException as exc:  # re-raised in the main thread
                    self.error = exc

    def put(self, rows: np.ndarray, values: dict[str, np.ndarray]) -> None:
        if self.error is not None:
            raise self.error
        self.jobs.put((rows, values))

    def close(self) -> None:
        self.jobs.put(None)
        self.join()
        if self.error is not None:
            raise self.error


def record_parity(path: Path, parity: dict[str, float]) -> None:
    """Record, on each dataset of ``parity``, its relative difference from
    float32 torch on a sample (the attribute ``runtime_parity``)."""
    with h5py.File(path, "a") as f:
        for key, value in parity.items():
            f["features"][key].attrs["runtime_parity"] = float(value)
