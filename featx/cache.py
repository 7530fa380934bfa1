"""The HDF5 feature cache: layout, crash-safe writes, locking and reading.

Layout of one cache file (format version :data:`FORMAT_VERSION`)::

    /paths            (N,)   UTF-8, relative to the data root, '/'-separated
    /labels           (N,)   int64, -1 when the folder is unlabelled
    /sha256           (N,)   ASCII hex digest of each image file
    /size, /mtime_ns  (N,)   int64, to skip re-hashing files that did not change
    /scanned_at_ns    (1,)   int64, when the folder was last scanned (a dataset, so
                             that an in-place run updates it without new metadata)
    /features/<name>  (N, D) float32 or float16, chunked; attrs layer, module_path,
                             shape, spatial
    /features/<name>@<view>  the same for another view of the image than the
                             centre crop (``fc7@flip``, ``fc7@tl``; see
                             featx.views); attr ``view``
    /done/<name>      (N,)   uint8, 1 where the row of that layer is computed
    /done/<name>@<view>      the same for that view
    /failed/paths, /failed/reasons, /failed/sha256, /failed/size, /failed/mtime_ns
                      (M,)   images that could not be decoded, and why
    root attrs        featx_format and the fields of :class:`CacheMeta`

How writes stay safe under Ctrl-C or ``kill -9``: a change of structure (images
added or removed, a new layer, failures to record) writes a complete new file
beside the old one and renames it over the old one. Otherwise the file is only
*filled*: every feature chunk was allocated when the file was made, so filling
writes raw data and never HDF5 metadata, and a row's ``done`` flag is set only
after its features were flushed. An interrupted fill leaves a valid file whose
``done`` flags say exactly what is left to do.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import json
import os
import queue
import re
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from featx.errors import (
    CacheBusyError,
    CacheDamagedError,
    CacheError,
    NoSpaceError,
    ReadOnlyError,
    printable,
)
from featx.views import ALL_VIEWS, CENTER, dataset_key

#: What a process that finds a cache being written is told.
BUSY_MESSAGE = (
    "another featx process is writing {path}; wait for it to finish (nothing was "
    "changed)"
)
#: What a writer that finds a cache held open by a foreign HDF5 reader is told.
#: (featx's own readers take no HDF5 lock: they never block a writer, see
#: :func:`_open`.)
READER_MESSAGE = (
    "{path} is open in another program that holds HDF5's file lock (h5py, "
    "HDFView...); close it, or open it there with locking=False, and run again "
    "(nothing was changed)"
)
#: What a reader of a damaged cache is told.
DAMAGED_MESSAGE = (
    "cache {path} is damaged ({detail}); run `featx extract {data} --rebuild` to "
    "recompute it, or delete it"
)

FORMAT_VERSION = 1
COPY_BLOCK_BYTES = 64 << 20
READ_BLOCK_BYTES = 4 << 20
#: Chunk cache of a dataset being filled: room for the partly written chunk at a
#: batch boundary (chunks are at most 1 MiB), small enough to keep memory flat.
FILL_CACHE_BYTES = 4 << 20
STR = h5py.string_dtype("utf-8")
#: No AlexNet activation comes near this (pretrained fc6 peaks in the hundreds);
#: a stored value beyond it is damage. Squares of values below it fit float32.
MAX_ABS = 1e15


@dataclass(frozen=True)
class LayerDef:
    """One stored feature dataset: a layer with its spatial reduction and dtype."""

    layer: str
    module_path: str
    shape: tuple[int, ...]
    spatial: str
    dtype: str
    #: The crop of the image (:mod:`featx.views`); every layer has ``center``.
    view: str = CENTER

    @property
    def base(self) -> str:
        """The layer's name in featx: the layer, plus ``_avg``/``_max`` for
        pooled maps; the same for every view."""
        return self.layer if self.spatial == "none" else f"{self.layer}_{self.spatial}"

    @property
    def key(self) -> str:
        """Dataset name: :attr:`base`, plus ``@view`` for views but the centre."""
        return dataset_key(self.base, self.view)

    @property
    def dim(self) -> int:
        if self.spatial != "none":
            return self.shape[0]
        return int(np.prod(self.shape))

    @property
    def depth(self) -> tuple[int, int]:
        """Position in AlexNet's chain, for ordering (features, then classifier)."""
        block, _, index = self.module_path.partition(".")
        order = {"features": 0, "avgpool": 1, "classifier": 2}.get(block, 3)
        return order, int(index) if index.isdigit() else 0


@dataclass
class Failure:
    path: str
    reason: str
    sha256: str = ""
    size: int = -1
    mtime_ns: int = -1


@dataclass
class Rows:
    """The per-image columns of a cache."""

    paths: list[str]
    labels: np.ndarray
    sha256: list[str]
    size: np.ndarray
    mtime_ns: np.ndarray

    def __len__(self) -> int:
        return len(self.paths)

    def take(self, index) -> Rows:
        """The rows at ``index`` (a sequence of row numbers), in that order."""
        index = np.asarray(index, np.int64)
        return Rows(
            paths=[self.paths[i] for i in index],
            labels=np.asarray(self.labels)[index],
            sha256=[self.sha256[i] for i in index],
            size=np.asarray(self.size)[index],
            mtime_ns=np.asarray(self.mtime_ns)[index],
        )

    def failure(self, row: int, reason: str) -> Failure:
        """Row ``row`` as a :class:`Failure` with ``reason``."""
        return Failure(
            self.paths[row],
            reason,
            self.sha256[row],
            int(self.size[row]),
            int(self.mtime_ns[row]),
        )


@dataclass(frozen=True)
class WeightsInfo:
    """Which weights computed a cache's features."""

    id: str
    sha256: str
    pretrained: bool
    source: str
    url: str = ""

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "sha256": self.sha256,
            "pretrained": self.pretrained,
            "source": self.source,
        }


def weights_spec(weights_id: str, source: str = "") -> tuple[str, int]:
    """The ``(weights, seed)`` for :func:`featx.model.load_weights` that
    rebuilds the weights recorded as ``weights_id`` (``source`` is the file of a
    ``file:`` id)."""
    if weights_id.startswith("random(seed="):
        return "random", int(weights_id[len("random(seed=") : -1])
    if weights_id.startswith("torchvision:"):
        return "imagenet", 0
    return source, 0


@dataclass(frozen=True)
class CacheMeta:
    """The root attributes of a cache, typed: what made its rows and how.

    :meth:`to_attrs` and :meth:`from_attrs` are the only code that knows how
    they are spelled in the file.
    """

    data_root: str
    classes: list[str]
    weights: WeightsInfo
    transform: dict
    transform_repr: str = ""
    featx_version: str = ""
    torch_version: str = ""
    torchvision_version: str = ""
    updated: str = ""
    #: "folders" (class subfolders), "none", "csv <file> sha256 <hex>" or
    #: "name <regex>": how the labels were made.
    labelling: str = "folders"
    #: The architecture (``featx.model.MODELS``); caches from before featx knew
    #: two have none and are torchvision's.
    model: str = "alexnet"

    @property
    def mean_file(self) -> str | None:
        """The mean image caffe-alexnet's input was centred with, if one was."""
        return (self.transform.get("mean_image") or {}).get("file")

    def to_attrs(self) -> dict:
        return {
            "model": self.model,
            "featx_version": self.featx_version,
            "torch_version": self.torch_version,
            "torchvision_version": self.torchvision_version,
            "classes": json.dumps(self.classes),
            "weights_id": self.weights.id,
            "weights_sha256": self.weights.sha256,
            "weights_pretrained": self.weights.pretrained,
            "weights_source": self.weights.source,
            "weights_url": self.weights.url,
            "transform": json.dumps(self.transform),
            "transform_repr": self.transform_repr,
            "data_root": self.data_root,
            "updated": self.updated,
            "labelling": self.labelling,
        }

    @classmethod
    def from_attrs(cls, attrs) -> CacheMeta:
        def text(key: str) -> str:
            value = attrs.get(key, "")
            return value.decode() if isinstance(value, bytes) else str(value)

        return cls(
            data_root=text("data_root"),
            classes=json.loads(text("classes") or "[]"),
            weights=WeightsInfo(
                id=text("weights_id"),
                sha256=text("weights_sha256"),
                pretrained=bool(attrs.get("weights_pretrained", False)),
                source=text("weights_source"),
                url=text("weights_url"),
            ),
            transform=json.loads(text("transform") or "{}"),
            transform_repr=text("transform_repr"),
            featx_version=text("featx_version"),
            torch_version=text("torch_version"),
            torchvision_version=text("torchvision_version"),
            updated=text("updated"),
            labelling=text("labelling") or "folders",
            model=text("model") or "alexnet",
        )

    def same_source(self, other: CacheMeta) -> bool:
        """Whether rows of both caches come from the same weights and preprocessing."""
        return (
            self.model == other.model
            and self.weights.sha256 == other.weights.sha256
            and self.transform == other.transform
        )


@dataclass
class CacheState:
    """What an existing cache file holds, short of the features themselves."""

    path: Path
    attrs: dict
    rows: Rows
    layers: dict[str, LayerDef]
    done: dict[str, np.ndarray]
    failed: list[Failure] = field(default_factory=list)
    scanned_at_ns: int = 0

    @property
    def classes(self) -> list[str]:
        return json.loads(self.attrs.get("classes", "[]"))


def _decode(values) -> list[str]:
    return [v.decode() if isinstance(v, bytes) else str(v) for v in values]


def _check_format(f: h5py.File, path: Path) -> None:
    version = f.attrs.get("featx_format")
    if version is None:
        raise CacheError(f"{path} is not a featx cache (no featx_format attribute)")
    if int(version) > FORMAT_VERSION:
        raise CacheError(
            f"{path} was written by a newer featx (cache format {int(version)}; this "
            f"featx reads up to {FORMAT_VERSION}): upgrade featx"
        )


def _detail(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    text = re.sub(r"^Unable to (synchronously )?", "", text)
    text = re.sub(r"^open file \((.*)\)$", r"\1", text)
    return printable(text[:160])


def damaged(path: Path, exc: BaseException, data: str = "") -> CacheDamagedError:
    """The one-line error for a cache that cannot be read back."""
    return CacheDamagedError(
        DAMAGED_MESSAGE.format(path=path, detail=_detail(exc), data=data or "DATA_DIR")
    )


#: What reading a damaged HDF5 file raises, through h5py and our own parsing.
READ_ERRORS = (OSError, KeyError, ValueError, TypeError, RuntimeError, IndexError)


@contextlib.contextmanager
def reading(path: Path, data: str = "") -> Iterator[None]:
    """Turn what a damaged cache raises while being read into one line."""
    try:
        yield
    except (CacheError, NoSpaceError, ReadOnlyError):
        raise
    except READ_ERRORS as exc:
        raise damaged(path, exc, data) from exc


REQUIRED = ("paths", "labels", "sha256", "size", "mtime_ns")
FAILED = ("paths", "reasons", "sha256", "size", "mtime_ns")


def _check_layout(f: h5py.File, path: Path) -> None:
    """Refuse a file whose datasets are missing or disagree on the row count."""
    n = f["paths"].shape[0]
    for name in REQUIRED:
        if f[name].shape != (n,):
            raise ValueError(f"/{name} has {f[name].shape} rows, /paths has {n}")
    m = f["failed/paths"].shape[0]
    for name in FAILED:
        if f["failed"][name].shape != (m,):
            raise ValueError(f"/failed/{name} disagrees with /failed/paths")
    for key, ds in f["features"].items():
        if ds.shape[0] != n or f["done"][key].shape != (n,):
            raise ValueError(f"/features/{key} or /done/{key} has the wrong rows")
    if f["scanned_at_ns"].shape != (1,):
        raise ValueError("/scanned_at_ns is not one value")
    json.loads(f.attrs["classes"])
    json.loads(f.attrs["transform"])


def _open(path: Path, mode: str = "r", **kwargs) -> h5py.File:
    """Open a cache file.

    Readers (``mode="r"``) take no HDF5 file lock: a writer only fills rows
    (raw data, flags set after their features) or renames a complete new file
    over the old one, and a reader holding the old file keeps reading it, so
    readers never need to block a writer — and a cache on read-only media opens.
    Writers are serialised by :func:`cache_lock`.
    """
    if mode == "r":
        kwargs.setdefault("locking", False)
    try:
        return h5py.File(path, mode, **kwargs)
    except FileNotFoundError as exc:
        raise CacheError(f"cache {path} does not exist") from exc
    except BlockingIOError as exc:
        raise CacheBusyError(READER_MESSAGE.format(path=path)) from exc
    except PermissionError as exc:
        raise ReadOnlyError(
            f"cannot {'read' if mode == 'r' else 'write'} {path}: {exc.strerror}"
        ) from exc
    except OSError as exc:
        if "unable to lock file" in str(exc).lower():
            raise CacheBusyError(READER_MESSAGE.format(path=path)) from exc
        if "read-only" in str(exc).lower() or "permission denied" in str(exc).lower():
            raise ReadOnlyError(f"cannot write {path}: {_detail(exc)}") from exc
        raise damaged(path, exc) from exc


def _layer_from_attrs(ds: h5py.Dataset) -> LayerDef:
    a = ds.attrs
    return LayerDef(
        layer=str(a["layer"]),
        module_path=str(a["module_path"]),
        shape=tuple(int(s) for s in a["shape"]),
        spatial=str(a["spatial"]),
        dtype=str(ds.dtype),
        view=str(a.get("view", CENTER)),
    )


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
        )


def read_done(path: Path, keys) -> dict[str, np.ndarray]:
    """The ``done`` flags of the layers ``keys``, as booleans."""
    with _open(path) as f, reading(path):
        _check_format(f, path)
        return {k: f["done"][k][:].astype(bool) for k in keys}


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
    return ds


def _runs(dst: np.ndarray, src: np.ndarray) -> Iterator[tuple[int, int, int]]:
    """Yield ``(dst_start, src_start, length)`` for the runs where destination and
    source rows both rise by one."""
    start = 0
    for i in range(1, len(dst) + 1):
        if i == len(dst) or dst[i] != dst[i - 1] + 1 or src[i] != src[i - 1] + 1:
            yield int(dst[start]), int(src[start]), i - start
            start = i


def _mb(n: int) -> str:
    mb = max(n, 0) / 1e6
    return f"{mb:,.0f} MB" if mb >= 100 else f"{mb:.1f} MB"


def no_space(folder: Path, need: int, free: int) -> NoSpaceError:
    """The one-line error for a disk that cannot hold what must be written."""
    return NoSpaceError(
        f"no space left on {folder}: this step needs {_mb(need)}, {_mb(free)} is "
        f"free; free {_mb(need - free)} and run again (nothing computed was lost)"
    )


def is_no_space(exc: BaseException) -> bool:
    """Whether ``exc`` (an OSError, or h5py's RuntimeError) says the disk is full."""
    text = str(exc)
    return (
        getattr(exc, "errno", None) == errno.ENOSPC
        or "errno = 28" in text
        or "No space left" in text
    )


@contextlib.contextmanager
def disk_full_as_error(folder: Path, need: int) -> Iterator[None]:
    """Turn a write that failed on a full disk (h5py raises OSError or
    RuntimeError) into the one-line :class:`NoSpaceError`."""
    try:
        yield
    except (NoSpaceError, ReadOnlyError):
        raise
    except (OSError, RuntimeError) as exc:
        if is_no_space(exc):
            raise no_space(folder, need, shutil.disk_usage(folder).free) from exc
        raise


def check_free(folder: Path, need: int) -> None:
    """Refuse to start a write of ``need`` bytes that ``folder``'s disk cannot hold."""
    free = shutil.disk_usage(folder).free
    if need > free:
        raise no_space(folder, need, free)


def reserve(path: Path) -> None:
    """Allocate every block of ``path`` that is still a hole.

    Feature chunks are allocated early in HDF5's address space but not on disk;
    reserving them up front turns a disk that fills up mid-run into one clean
    error here, before any row is written (HDF5 does not survive a failed write).
    """
    size = path.stat().st_size
    try:
        fd = os.open(path, os.O_RDWR)
    except PermissionError as exc:
        raise ReadOnlyError(f"cannot write {path}: {exc.strerror}") from exc
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            st = os.fstat(fd)
            need = size - st.st_blocks * 512
            free = shutil.disk_usage(path.parent).free
            raise no_space(path.parent, need, free) from exc
        if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
            raise
    finally:
        os.close(fd)


def _estimate(rows: Rows, layers: list[LayerDef]) -> int:
    """Bytes a cache of ``rows`` and ``layers`` takes, with room for metadata."""
    features = sum(
        len(rows) * layer.dim * np.dtype(layer.dtype).itemsize for layer in layers
    )
    columns = sum(len(p.encode()) + 128 for p in rows.paths)
    return features + columns + (256 << 10)


# Long (~60 lines): one atomic write of every dataset of the layout, in order.
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
) -> None:
    """Write a complete cache to ``path`` atomically (temporary file + rename).

    ``source_rows[i]`` names the row of ``source`` whose computed features row
    ``i`` takes over (-1: none); features of layers missing there start undone.
    """
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    need = _estimate(rows, layers)
    check_free(path.parent, need)
    try:
        with disk_full_as_error(path.parent, need):
            _write_layout(
                tmp, meta, scanned_at_ns, rows, layers, failed, source, source_rows,
                on_rows,
            )  # fmt: skip
            tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


# Long (~55 lines): every dataset of the layout, in order.
def _write_layout(
    tmp, meta, scanned_at_ns, rows, layers, failed, source, source_rows, on_rows
) -> None:
    """Write the new file ``tmp`` (see :func:`write_cache`). (Nine parameters:
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


@contextlib.contextmanager
def cache_lock(path: Path) -> Iterator[None]:
    """Hold the cache's write lock, or raise :class:`CacheBusyError` at once.

    Raises :class:`ReadOnlyError` where the lock file cannot be created (a
    read-only folder or medium): the caller decides whether it must write.
    """
    lock_path = path.with_name(f".{path.name}.lock")
    try:
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        handle = lock_path.open("a")
    except OSError as exc:
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise ReadOnlyError(
                f"cannot write in {lock_path.parent}: {exc.strerror}"
            ) from exc
        if exc.errno == errno.ENOSPC:
            raise no_space(lock_path.parent, 4096, 0) from exc
        raise
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise CacheBusyError(BUSY_MESSAGE.format(path=path)) from exc
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def remove_stale_temporaries(path: Path) -> None:
    """Delete temporary files that an interrupted rewrite of ``path`` left."""
    for tmp in path.parent.glob(f"{path.name}.tmp-*"):
        tmp.unlink(missing_ok=True)


# ----------------------------------------------------------------- reading


def default_cache_dir() -> Path:
    return Path(os.environ.get("FEATX_CACHE_DIR") or "cache")


def list_caches(cache_dir: Path) -> list[Path]:
    cache_dir = Path(cache_dir)
    if not cache_dir.is_dir():
        return []
    return sorted(p for p in cache_dir.glob("*.h5") if p.is_file())


#: Folder names that mean a held-out split: never trained on by default.
HELD_OUT_NAME = re.compile(
    r"^(test|testing|val|valid|validation|holdout|held[-_ ]?out|eval)([-_ .]\w*)?$",
    re.IGNORECASE,
)


def is_held_out_name(folder: str) -> bool:
    """Whether a data folder's name says it is a held-out split (Test, Val, ...)."""
    return bool(HELD_OUT_NAME.match(Path(folder).name))


@dataclass
class CacheChoice:
    """The caches a command chose when none was named, and why."""

    train: Path
    test: Path | None = None
    notes: list[str] = field(default_factory=list)


def _labelled(path: Path) -> bool:
    with FeatureCache(path) as cache:
        return bool(cache.classes)


def choose_caches(cache_dir: Path | None = None, *, find_test: bool = True):
    """The training cache (and a held-out one) to use when none was named.

    Training: the only cache, or else the most recently written one whose data
    folder is not named like a held-out split (Test, Val, Valid, ...). Held out:
    a cache of a sibling folder named like a split, made with the same weights
    and preprocessing.
    """
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    caches = list_caches(cache_dir)
    if not caches:
        raise CacheError(
            f"no cache in {cache_dir}; run `featx extract DATA_DIR --layer fc7` "
            "first (or point --cache-dir / FEATX_CACHE_DIR at your caches)"
        )
    metas = {}
    for path in caches:
        with FeatureCache(path) as cache:
            metas[path] = cache.meta
    if len(caches) == 1:
        train = caches[0]
        notes = []
    else:
        candidates = [p for p in caches if not is_held_out_name(metas[p].data_root)]
        if not candidates:
            names = ", ".join(p.name for p in caches)
            raise CacheError(
                f"every cache in {cache_dir} is of a held-out folder; choose the "
                f"training cache with --cache: {names}"
            )
        train = max(candidates, key=lambda p: p.stat().st_mtime_ns)
        notes = [
            f"training on {train.name} ({metas[train].data_root}), the most recent "
            f"of {len(candidates)} training cache(s) in {cache_dir}; --cache chooses "
            "another"
        ]
    choice = CacheChoice(train, None, notes)
    if find_test:
        parent = Path(metas[train].data_root).parent
        tests = [
            p
            for p in caches
            if p != train
            and Path(metas[p].data_root).parent == parent
            and is_held_out_name(metas[p].data_root)
            and metas[p].same_source(metas[train])
            and _labelled(p)
        ]
        if tests:
            choice.test = max(tests, key=lambda p: p.stat().st_mtime_ns)
            choice.notes.append(
                f"held-out set: {choice.test.name} ({metas[choice.test].data_root}), "
                "a sibling folder extracted with the same weights; --test chooses "
                "another"
            )
    return choice


def resolve_caches(
    cache: str | Path | None, test: str | Path | None, cache_dir: Path | None
) -> CacheChoice:
    """The training and held-out caches a command was given, or, where it was
    given none, the ones :func:`choose_caches` chooses (with its notes)."""
    if cache is not None:
        choice = CacheChoice(resolve_cache(cache, cache_dir))
    else:
        choice = choose_caches(cache_dir, find_test=test is None)
    if test is not None:
        choice.test = resolve_cache(test, cache_dir)
    return choice


def resolve_cache(name: str | Path | None, cache_dir: Path | None = None) -> Path:
    """Find a cache by path, file name, or unique prefix in the cache directory.

    With no name, :func:`choose_caches` chooses the training cache.
    """
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    caches = list_caches(cache_dir)
    if name is None:
        return choose_caches(cache_dir, find_test=False).train
    candidate = Path(name)
    if candidate.is_file():
        return candidate
    if candidate.is_dir():
        return cache_of_folder(candidate, cache_dir)
    matches = [p for p in caches if p.name == str(name) or p.stem == str(name)]
    matches = matches or [p for p in caches if p.name.startswith(str(name))]
    if len(matches) == 1:
        return matches[0]
    names = ", ".join(p.name for p in caches) or "none"
    what = "matches several caches" if matches else "is not a cache file or name"
    raise CacheError(f"{name!r} {what} in {cache_dir}; caches there: {names}")


def cache_of_folder(
    folder: Path, cache_dir: Path, like: CacheMeta | None = None
) -> Path:
    """The cache of the data folder ``folder`` (made with the same weights and
    preprocessing as ``like``, when given), the most recent if several."""
    root = str(Path(folder).resolve())
    found = []
    for path in list_caches(cache_dir):
        with FeatureCache(path) as cache:
            if cache.meta.data_root == root and (
                like is None or cache.meta.same_source(like)
            ):
                found.append(path)
    if not found:
        raise CacheError(
            f"{folder} is a folder with no cache in {cache_dir}"
            + (" made with the same weights" if like is not None else "")
            + f"; run `featx extract {folder} --layer LAYER` first"
        )
    return max(found, key=lambda p: p.stat().st_mtime_ns)


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
        :data:`featx.views.ALL_VIEWS`; only the complete ones unless told."""
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

    def dataset(self, layer: str) -> h5py.Dataset:
        """The feature dataset of ``layer``, checked to be complete."""
        if layer not in self.file["features"]:
            have = ", ".join(self.file["features"]) or "none"
            raise CacheError(
                f"layer {layer!r} is not in {self.path.name} (it has: {have}); run "
                f"`featx extract {self.meta.data_root or 'DATA_DIR'} --layer {layer}`"
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


def cache_info(path: Path) -> dict:
    """A JSON-able summary of a cache: images, layers, classes, failures, weights."""
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
        failed = cache.failed
        return {
            "path": str(cache.path),
            "format": int(cache.attrs["featx_format"]),
            "data_root": meta.data_root,
            "n_images": cache.n_rows,
            "layers": layers,
            "classes": counts,
            "n_failed": len(failed),
            "failed": [{"path": f.path, "reason": f.reason} for f in failed],
            "model": meta.model,
            "weights": meta.weights.to_dict(),
            "transform": meta.transform,
            "versions": {
                "featx": meta.featx_version,
                "torch": meta.torch_version,
                "torchvision": meta.torchvision_version,
            },
        }
