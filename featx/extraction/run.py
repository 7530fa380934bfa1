"""One locked update of a cache: scan, reconcile, fill, record."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from featx.cache import (
    BackgroundWriter,
    CacheFiller,
    CacheMeta,
    CacheState,
    Failure,
    FeatureCache,
    LayerDef,
    NotImage,
    Rows,
    Warnings,
    read_done,
    read_state,
    read_warnings,
    remove_stale_temporaries,
    write_cache,
)
from featx.cache.reconcile import (
    check_dtypes,
    kept_warnings,
    reconcile_cache,
    scan_rows,
    split_known,
    up_to_date,
)
from featx.compute.forward import (
    Batch,
    compute_batches,
)
from featx.errors import ReadOnlyError, param
from featx.extraction.records import Compute, ExtractResult, RayEngine
from featx.images import ImageSet, Preprocess
from featx.model import (
    LoadedWeights,
)
from featx.progress import Progress

__all__ = ["Run", "update", "make_folder", "unchanged", "ray_log", "fill_rows"]


def _pending(
    path: Path, wanted: list[LayerDef]
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    done = read_done(path, [layer.key for layer in wanted])
    if not done:
        return np.zeros(0, np.int64), done
    all_done = np.logical_and.reduce(list(done.values()))
    return np.flatnonzero(~all_done), done


@dataclass
class Run:
    """What one extraction works on, with what, and how."""

    path: Path
    images: ImageSet
    wanted: list[LayerDef]
    meta: CacheMeta
    loaded: LoadedWeights
    preprocess: Preprocess
    compute: Compute
    progress: Progress

    @property
    def not_images(self) -> list[NotImage]:
        return [NotImage(x.path, x.reason) for x in self.images.not_images]

    def result(
        self, rows: Rows, failures, skipped, n_new, new_failures, seconds, warnings
    ):
        """The :class:`ExtractResult` of this run. (Eight parameters: the
        counts of the run.)"""
        n_images = len(rows) - len(new_failures)
        return ExtractResult(
            cache_path=self.path,
            n_images=n_images,
            n_new=n_new,
            n_reused=n_images - n_new,
            failures=failures,
            layers=list(dict.fromkeys(w.base for w in self.wanted)),
            views=list(dict.fromkeys(w.view for w in self.wanted)),
            seconds=seconds,
            images_per_s=(n_new + len(new_failures)) / seconds if seconds else 0.0,
            weights_id=self.loaded.weights_id,
            pretrained=self.loaded.pretrained,
            device=str(self.compute.device),
            ignored=self.images.ignored,
            skipped=skipped,
            notes=self.images.notes,
            not_images=self.not_images,
            warnings=warnings,
        )


def update(run: Run, *, rebuild: bool) -> ExtractResult:
    """Scan, reconcile, fill, record: the work of a run that holds the lock."""
    path = run.path
    remove_stale_temporaries(path)
    old = None if rebuild else _old_state(path, run.images.root)
    check_dtypes(old, run.wanted)
    scanned_at_ns = time.time_ns()
    scanned, skipped = scan_rows(run.images, old, run.progress)
    failed_known, rows = reconcile_cache(
        path,
        old,
        scanned,
        wanted=run.wanted,
        meta=run.meta,
        scanned_at_ns=scanned_at_ns,
        progress=run.progress,
        skipped=skipped,
        not_images=run.not_images,
    )
    pending, done = _pending(path, run.wanted)
    stored = read_warnings(path)
    started = time.perf_counter()
    new_failures: list[Failure] = []
    said: Warnings = {}
    n_new = 0
    if len(pending):
        batches = _batches(run, rows, pending, done, said)
        n_new, new_failures = fill_rows(path, rows, pending, batches, run.progress)
    seconds = time.perf_counter() - started
    # Images decoded now replace what earlier runs recorded of them. (What a
    # run stopped by Ctrl-C heard is lost with it: its rows are kept, and are
    # not decoded again.)
    decoded = {rows.paths[r] for r in pending}
    warnings = {p: m for p, m in stored.items() if p not in decoded} | said
    warnings = dict(sorted(warnings.items()))
    if new_failures or warnings != stored:
        _record_decoding(
            path,
            rows,
            new_failures,
            failed_known + skipped,
            run,
            scanned_at_ns,
            warnings,
        )
    return run.result(
        rows,
        failed_known + new_failures,
        skipped,
        n_new,
        new_failures,
        seconds,
        warnings,
    )


def make_folder(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ReadOnlyError(f"cannot create {folder}: {exc.strerror}") from exc


def _old_state(path: Path, data_root: Path) -> CacheState | None:
    """The cache's state, None where there is none yet."""
    if not path.exists():
        return None
    return read_state(path, data=str(data_root))


def unchanged(run: Run, exc: ReadOnlyError) -> ExtractResult:
    """The result of a run that cannot write: the cache as it is, if it is
    complete and up to date; otherwise ``exc``, saying what needed writing."""
    old = _old_state(run.path, run.images.root)
    scanned, skipped = scan_rows(run.images, old, Progress())
    if not up_to_date(old, scanned, skipped, run.wanted, run.meta):
        raise ReadOnlyError(
            f"{exc}; the cache needs new rows or layers. Give a writable "
            f"{param('cache_dir')} (or FEATX_CACHE_DIR)"
        ) from exc
    failed, rows, _ = split_known(old, scanned, skipped)
    warnings = kept_warnings(old, [*rows.paths, *(f.path for f in failed)])
    return run.result(rows, failed, skipped, 0, [], 0.0, warnings)


def _batches(
    run: Run,
    rows: Rows,
    pending: np.ndarray,
    done: dict[str, np.ndarray],
    said: Warnings,
):
    """The stream of computed batches for the ``pending`` rows; what the
    decoders say of an image goes into ``said``, by path (the Ray engine's
    workers keep it to themselves)."""
    files = [run.images.root / rows.paths[r] for r in pending]
    compute, wanted = run.compute, run.wanted
    if isinstance(compute.engine, RayEngine):
        from featx.compute.ray_engine import ray_batches

        return ray_batches(
            files=files,
            rows=pending.tolist(),
            wanted=wanted,
            loaded=run.loaded,
            batch_size=compute.batch_size,
            engine=compute.engine,
            preprocess=run.preprocess,
            log=ray_log(run.path),
            on_note=run.images.notes.append,
        )
    return compute_batches(
        files=files,
        rows=pending.tolist(),
        wanted=wanted,
        loaded=run.loaded,
        preprocess=run.preprocess,
        device=compute.device,
        batch_size=compute.batch_size,
        num_workers=compute.num_workers,
        needed=lambda idx: [w for w in wanted if not done[w.key][idx].all()],
        on_note=run.images.notes.append,
        on_said=lambda row, lines: said.__setitem__(rows.paths[row], _lines(lines)),
    )


def ray_log(cache: Path) -> Path:
    """Where a Ray run keeps Ray's own output, beside its cache: ``x.h5`` has
    ``x.ray.log``."""
    return cache.with_suffix(".ray.log")


def _lines(messages: list[str]) -> list[str]:
    """One message a line, as the cache stores them (joined by newlines)."""
    return [line for message in messages for line in message.split("\n")]


def fill_rows(path: Path, rows: Rows, pending: np.ndarray, batches, progress):
    """Write every batch of ``batches`` into the cache at ``path``; return the
    number of rows written and the images that failed to decode."""
    failures: list[Failure] = []
    n_new = 0
    progress.start("extracting", len(pending))
    try:
        with CacheFiller(path) as filler:
            writer = BackgroundWriter(filler)
            writer.start()
            try:
                batch: Batch
                for batch in batches:
                    idx, values, failed = batch
                    failures += [rows.failure(r, reason) for r, reason in failed]
                    if len(idx):
                        writer.put(idx, values)
                        n_new += len(idx)
                    progress.advance(len(idx) + len(failed))
            finally:
                writer.close()
    finally:
        progress.finish()
        del batches
    return n_new, failures


def _record_decoding(
    path: Path,
    rows: Rows,
    new_failures: list[Failure],
    failed_known: list[Failure],
    run: Run,
    scanned_at_ns: int,
    warnings: Warnings,
) -> None:
    """Move images that failed to decode out of the rows and into /failed, and
    record what the decoders said. (A rewrite, as every change of structure:
    it costs a copy of the cache at disk speed, far less than the decoding that
    caused it, and a file is never left half-changed.)"""
    with FeatureCache(path) as cache:
        layers = list(cache.all_layers.values())
    bad = {f.path for f in new_failures}
    keep = np.array([i for i, p in enumerate(rows.paths) if p not in bad], np.int64)
    write_cache(
        path,
        meta=run.meta,
        scanned_at_ns=scanned_at_ns,
        rows=rows.take(keep),
        layers=layers,
        failed=sorted(failed_known + new_failures, key=lambda f: f.path),
        source=path,
        source_rows=keep,
        not_images=run.not_images,
        warnings=warnings,
    )
