"""Opening a cache file and checking that it is one featx can read.

Every failure to read a damaged file becomes one line (:func:`damaged`).
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator
from pathlib import Path

import h5py

from featx.cache.schema import FORMAT_VERSION
from featx.errors import (
    CacheBusyError,
    CacheDamagedError,
    CacheError,
    NoSpaceError,
    ReadOnlyError,
    printable,
)
from featx.records import check_format

__all__ = [
    "DAMAGED_MESSAGE",
    "FAILED",
    "OPTIONAL",
    "READER_MESSAGE",
    "READ_ERRORS",
    "REQUIRED",
    "damaged",
    "reading",
]

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


def _decode(values) -> list[str]:
    return [v.decode() if isinstance(v, bytes) else str(v) for v in values]


def _check_format(f: h5py.File, path: Path) -> None:
    version = f.attrs.get("featx_format")
    if version is None:
        raise CacheError(f"{path} is not a featx cache (no featx_format attribute)")
    writer = f.attrs.get("featx_version")
    check_format(
        version,
        FORMAT_VERSION,
        what=str(path),
        writer=str(writer) if writer is not None else None,
        error=CacheError,
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
#: Optional groups, each of string datasets of one length: caches written before
#: them have none, which reads as empty.
OPTIONAL = {"not_images": ("paths", "reasons"), "warnings": ("paths", "messages")}


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
    for group, names in OPTIONAL.items():
        if group in f:
            k = f[group][names[0]].shape
            if len(k) != 1 or any(f[group][name].shape != k for name in names):
                raise ValueError(f"/{group}/{names[1]} disagrees with its paths")
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
