"""Disk space: refuse a write the disk cannot hold, and say so in one line."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from featx.errors import NoSpaceError, ReadOnlyError

__all__ = ["check_free", "disk_full_as_error", "is_no_space", "no_space", "reserve"]


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
