"""One writer per cache: the lock file beside it, and temporaries to clear."""

from __future__ import annotations

import contextlib
import errno
import fcntl
from collections.abc import Iterator
from pathlib import Path

from featx.cache.space import no_space
from featx.errors import (
    CacheBusyError,
    ReadOnlyError,
)

#: What a process that finds a cache being written is told.
BUSY_MESSAGE = (
    "another featx process is writing {path}; wait for it to finish (nothing was "
    "changed)"
)


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
