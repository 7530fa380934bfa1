"""Bringing a cache's structure in line with its folder, before any compute.

:func:`scan_rows` lists every image with its size, mtime and content hash
(reusing hashes of unchanged files); :func:`reconcile_cache` then refreshes the
cache in place when only contents changed, or writes a new file that keeps every
computed row still valid; :func:`up_to_date` says whether a run would write
anything at all (for read-only media).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from featx.cache.schema import (
    CacheMeta,
    CacheState,
    Failure,
    LayerDef,
    NotImage,
    Rows,
    Warnings,
)
from featx.cache.write import CacheFiller, write_cache
from featx.digest import file_sha256
from featx.errors import CacheError, param
from featx.images import ImageSet
from featx.progress import Progress

__all__ = [
    "RACY_NS",
    "check_dtypes",
    "kept_warnings",
    "reconcile_cache",
    "same_not_images",
    "scan_rows",
    "split_known",
    "up_to_date",
]

#: A file modified this close to the last scan is re-hashed even if its size and
#: mtime look unchanged (the "racy" case of git's index).
RACY_NS = 2_000_000_000


def _hash(path: Path) -> str | OSError:
    try:
        return file_sha256(path)
    except OSError as exc:
        return exc


def _known(
    old: CacheState | None,
) -> tuple[dict[str, tuple[str, int, int]], int]:
    """What the cache ``old`` recorded of each file, ``(sha256, size, mtime_ns)``
    by path (rows, then failures), and when it last scanned the folder."""
    if old is None:
        return {}, 0
    r = old.rows
    known = {
        rel: (r.sha256[i], int(r.size[i]), int(r.mtime_ns[i]))
        for i, rel in enumerate(r.paths)
    }
    for fail in old.failed:
        known[fail.path] = (fail.sha256, fail.size, fail.mtime_ns)
    return known, old.scanned_at_ns


def scan_rows(
    images: ImageSet, old: CacheState | None, progress: Progress
) -> tuple[Rows, list[Failure]]:
    """Every image of the folder with its size, mtime and sha256; hashes are
    reused from the cache ``old`` when size and mtime match (and the file was
    not modified too close to the last scan).

    Returns the rows and, as failures with their reason, every entry that is
    not one: those the listing skipped, then files that vanished or could not
    be read.
    """
    known, scanned = _known(old)
    unreadable = [Failure(x.path, x.reason) for x in images.skipped]
    keep, sizes, mtimes, hashes, todo = [], [], [], [], []
    for i, rel in enumerate(images.paths):
        try:
            st = (images.root / rel).stat()
        except OSError as exc:
            unreadable.append(Failure(rel, f"cannot read: {exc.strerror}"))
            continue
        entry = known.get(rel)
        fresh = (
            entry is not None
            and entry[0]
            and (entry[1], entry[2]) == (st.st_size, st.st_mtime_ns)
            and st.st_mtime_ns < scanned - RACY_NS
        )
        if not fresh:
            todo.append(len(keep))
        keep.append(i)
        sizes.append(st.st_size)
        mtimes.append(st.st_mtime_ns)
        hashes.append(entry[0] if fresh else "")
    if todo:
        progress.start("hashing", len(todo))
        with ThreadPoolExecutor(max_workers=4) as pool:
            files = [images.root / images.paths[keep[j]] for j in todo]
            for j, digest in zip(todo, pool.map(_hash, files), strict=True):
                hashes[j] = digest
                progress.advance(1)
        progress.finish()
    ok = [j for j, h in enumerate(hashes) if isinstance(h, str)]
    for j, h in enumerate(hashes):
        if not isinstance(h, str):
            rel = images.paths[keep[j]]
            unreadable.append(Failure(rel, f"cannot read file: {h.strerror or h}"))
    rows = Rows(
        paths=[images.paths[keep[j]] for j in ok],
        labels=np.asarray(images.labels)[[keep[j] for j in ok]].astype(np.int64),
        sha256=[hashes[j] for j in ok],
        size=np.array([sizes[j] for j in ok], np.int64),
        mtime_ns=np.array([mtimes[j] for j in ok], np.int64),
    )
    return rows, unreadable


def check_dtypes(old: CacheState | None, wanted: list[LayerDef]) -> None:
    if old is None:
        return
    for layer in wanted:
        have = old.layers.get(layer.key)
        if have is not None and have.dtype != layer.dtype:
            raise CacheError(
                f"layer {layer.key} is stored as {have.dtype} in {old.path.name}; "
                f"ask for {param('dtype', have.dtype)}, or use another "
                f"{param('cache_dir')}"
            )


def reconcile_cache(
    path: Path,
    old: CacheState | None,
    scanned: Rows,
    *,
    wanted: list[LayerDef],
    meta: CacheMeta,
    scanned_at_ns: int,
    progress: Progress,
    skipped: list[Failure] = (),
    not_images: list[NotImage] = (),
) -> tuple[list[Failure], Rows]:
    """Bring the cache at ``path`` in line with the folder's ``scanned`` rows.

    An unchanged structure is refreshed in place (changed files marked undone);
    anything else writes a new file that keeps every computed row still valid.
    ``skipped`` (entries never read) are recorded in ``/failed`` too, and
    ``not_images`` in ``/not_images`` (a change of them is a change of
    structure: the file is rewritten, as for a new failure). Recorded warnings
    are kept for the images still in the cache. Returns the failures already
    recorded for unchanged files, and the rows.
    """
    failed_known, rows, recorded = split_known(old, scanned, skipped)
    layers = _layers_after(old, wanted)
    if (
        old is not None
        and _same_structure(old, rows, meta, layers, recorded)
        and same_not_images(old.not_images, not_images)
    ):
        changed = np.array(
            [i for i in range(len(rows)) if old.rows.sha256[i] != rows.sha256[i]],
            np.int64,
        )
        with CacheFiller(path) as filler:
            filler.refresh(rows, changed=changed, scanned_at_ns=scanned_at_ns)
        return failed_known, rows
    source_rows = None
    if old is not None:
        old_keys = zip(old.rows.paths, old.rows.sha256, strict=True)
        index = {key: j for j, key in enumerate(old_keys)}
        new_keys = zip(rows.paths, rows.sha256, strict=True)
        source_rows = np.array([index.get(key, -1) for key in new_keys], np.int64)
        progress.start("copying", int((source_rows >= 0).sum()) * len(old.layers))
    write_cache(
        path,
        meta=meta,
        scanned_at_ns=scanned_at_ns,
        rows=rows,
        layers=list(layers.values()),
        failed=recorded,
        source=path if old else None,
        source_rows=source_rows,
        on_rows=progress.advance,
        not_images=not_images,
        warnings=kept_warnings(old, [*rows.paths, *(f.path for f in recorded)]),
    )
    if old is not None:
        progress.finish()
    return failed_known, rows


def same_not_images(old: list[NotImage], new: list[NotImage]) -> bool:
    """Whether two lists of files that are no image say the same."""
    return sorted((x.path, x.reason) for x in old) == sorted(
        (x.path, x.reason) for x in new
    )


def kept_warnings(old: CacheState | None, paths) -> Warnings:
    """The warnings ``old`` recorded for images among ``paths`` (those no longer
    in the cache go)."""
    if old is None:
        return {}
    present = set(paths)
    return {p: lines for p, lines in old.warnings.items() if p in present}


def split_known(
    old: CacheState | None, scanned: Rows, skipped: list[Failure]
) -> tuple[list[Failure], Rows, list[Failure]]:
    """Split off the rows that failed before with the same content; returns
    those failures, the other rows, and every failure to record."""
    old_failed = {f.path: f for f in (old.failed if old else [])}
    failed_known, keep = [], []
    for i, rel in enumerate(scanned.paths):
        prev = old_failed.get(rel)
        if prev is not None and prev.sha256 == scanned.sha256[i]:
            failed_known.append(prev)
        else:
            keep.append(i)
    recorded = sorted([*failed_known, *skipped], key=lambda f: f.path)
    return failed_known, scanned.take(keep), recorded


def _layers_after(old: CacheState | None, wanted: list[LayerDef]) -> dict:
    layers = dict(old.layers) if old else {}
    for layer in wanted:
        layers.setdefault(layer.key, layer)
    return layers


def up_to_date(
    old: CacheState | None,
    scanned: Rows,
    skipped: list[Failure],
    wanted: list[LayerDef],
    meta: CacheMeta,
) -> bool:
    """Whether the cache ``old`` already holds everything a run would write."""
    if old is None:
        return False
    _, rows, recorded = split_known(old, scanned, skipped)
    layers = _layers_after(old, wanted)
    return (
        _same_structure(old, rows, meta, layers, recorded)
        and old.rows.sha256 == rows.sha256
        and all(old.done[w.key].all() for w in wanted)
    )


def _same_structure(
    old: CacheState, rows: Rows, meta: CacheMeta, layers: dict, failed: list[Failure]
) -> bool:
    return (
        old.rows.paths == rows.paths
        and np.array_equal(old.rows.labels, rows.labels)
        and old.classes == meta.classes
        and CacheMeta.from_attrs(old.attrs).labelling == meta.labelling
        and set(layers) == set(old.layers)
        and [f.path for f in old.failed] == [f.path for f in failed]
    )
