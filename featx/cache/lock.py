"""One writer per cache: the lock file beside it, and temporaries to clear."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from featx.cache.space import no_space
from featx.errors import CacheBusyError, ReadOnlyError

__all__ = ["BUSY_MESSAGE", "cache_lock", "lock_path_of", "remove_stale_temporaries"]

#: What a process that finds a cache being written is told.
BUSY_MESSAGE = (
    "another featx process is writing {path}; wait for it to finish (nothing was "
    "changed)"
)


def lock_path_of(path: Path) -> Path:
    """The lock file of the cache at ``path``: ``.<name>.lock`` beside it."""
    return path.with_name(f".{path.name}.lock")


@contextlib.contextmanager
def cache_lock(path: Path) -> Iterator[None]:
    """Hold the cache's write lock, or raise :class:`CacheBusyError` at once.

    The lock is an ``flock`` on the lock file, which the kernel releases when
    its process ends, however it ends: a file left by a killed process is no
    writer, and the next run takes it over. The holder removes the file before
    it lets go, so a run that ends normally leaves none; a process that locked a
    file after it was removed finds it gone and locks the new one instead, so
    two writers never both believe they hold the lock.

    Raises :class:`ReadOnlyError` where the lock file cannot be created (a
    read-only folder or medium): the caller decides whether it must write.
    """
    lock_path = lock_path_of(path)
    with _locked(lock_path, path) as handle:
        try:
            yield
        finally:
            lock_path.unlink(missing_ok=True)  # still held: nobody can take it
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def _locked(lock_path: Path, path: Path):
    """The open lock file, locked; retried while the file locked is not the
    one at ``lock_path`` any more (its holder removed it as we locked it)."""
    while True:
        handle = _open(lock_path)
        try:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as exc:
                raise CacheBusyError(BUSY_MESSAGE.format(path=path)) from exc
            if _same_file(handle, lock_path):
                break
        except BaseException:
            handle.close()
            raise
        handle.close()  # locked a removed file: lock the one there now
    with handle:
        yield handle


def _open(lock_path: Path):
    try:
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        return lock_path.open("a")
    except OSError as exc:
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise ReadOnlyError(
                f"cannot write in {lock_path.parent}: {exc.strerror}"
            ) from exc
        if exc.errno == errno.ENOSPC:
            raise no_space(lock_path.parent, 4096, 0) from exc
        raise


def _same_file(handle, lock_path: Path) -> bool:
    try:
        return os.path.samestat(os.fstat(handle.fileno()), lock_path.stat())
    except FileNotFoundError:
        return False


def remove_stale_temporaries(path: Path) -> None:
    """Delete temporary files that an interrupted rewrite of ``path`` left."""
    for tmp in path.parent.glob(f"{path.name}.tmp-*"):
        tmp.unlink(missing_ok=True)
