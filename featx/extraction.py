"""Extraction: image folder → AlexNet activations → HDF5 cache, resumably.

One run: list the images, hash the new or changed ones (:func:`scan_rows`),
bring the cache's structure in line with them (:func:`reconcile_cache`), then
compute every pending row with the compute core (:mod:`featx.forward`, or the
Ray engine), writing batches from a background thread, and finally move images
that could not be decoded into ``/failed``.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from featx.cache import (
    BackgroundWriter,
    CacheFiller,
    CacheMeta,
    CacheState,
    Failure,
    FeatureCache,
    LayerDef,
    Rows,
    cache_lock,
    default_cache_dir,
    read_done,
    read_state,
    remove_stale_temporaries,
    write_cache,
)
from featx.digest import file_sha256
from featx.errors import CacheError, check_choice, check_int
from featx.forward import Batch, compute_batches, resolve_device
from featx.identity import cache_meta, cache_path_for
from featx.images import ImageSet, Preprocess, list_images
from featx.model import WEIGHTS, LoadedWeights, load_weights, resolve_layers
from featx.progress import Progress

SPATIAL_CHOICES = ("none", "avg", "max")
DTYPE_CHOICES = ("float32", "float16")
ENGINE_CHOICES = ("local", "ray")
#: A file modified this close to the last scan is re-hashed even if its size and
#: mtime look unchanged (the "racy" case of git's index).
RACY_NS = 2_000_000_000


@dataclass(frozen=True)
class RayEngine:
    """Run extraction on a Ray cluster: ``address`` (``auto``, ``ray://host:port``,
    None to start a local one) and the number of model ``actors`` (None: one per
    GPU, or half the CPUs)."""

    address: str | None = None
    actors: int | None = None


@dataclass
class ExtractResult:
    """What one extraction did."""

    cache_path: Path
    n_images: int
    n_new: int
    n_reused: int
    failures: list[Failure]
    layers: list[str]
    seconds: float
    images_per_s: float
    weights_id: str
    pretrained: bool
    device: str
    ignored: list[str] = field(default_factory=list)

    @property
    def n_failed(self) -> int:
        return len(self.failures)


@dataclass(frozen=True)
class Compute:
    """How pending rows are computed."""

    device: torch.device
    batch_size: int
    num_workers: int | None
    engine: str | RayEngine


def scan_rows(images: ImageSet, old: CacheState | None, progress: Progress) -> Rows:
    """Every image of the folder with its size, mtime and sha256; hashes are
    reused from the cache ``old`` when size and mtime match (and the file was
    not modified too close to the last scan)."""
    sizes, mtimes = [], []
    for rel in images.paths:
        st = (images.root / rel).stat()
        sizes.append(st.st_size)
        mtimes.append(st.st_mtime_ns)
    known: dict[str, tuple[str, int, int]] = {}
    scanned = 0
    if old is not None:
        scanned = old.scanned_at_ns
        for i, rel in enumerate(old.rows.paths):
            r = old.rows
            known[rel] = (r.sha256[i], int(r.size[i]), int(r.mtime_ns[i]))
        for fail in old.failed:
            known[fail.path] = (fail.sha256, fail.size, fail.mtime_ns)
    hashes: list[str] = []
    todo = []
    for i, rel in enumerate(images.paths):
        entry = known.get(rel)
        fresh = (
            entry is not None
            and entry[0]
            and (entry[1], entry[2]) == (sizes[i], mtimes[i])
            and mtimes[i] < scanned - RACY_NS
        )
        hashes.append(entry[0] if fresh else "")
        if not fresh:
            todo.append(i)
    if todo:
        progress.start("hashing", len(todo))
        with ThreadPoolExecutor(max_workers=4) as pool:
            files = [images.root / images.paths[i] for i in todo]
            for i, digest in zip(todo, pool.map(file_sha256, files), strict=True):
                hashes[i] = digest
                progress.advance(1)
        progress.finish()
    return Rows(
        paths=list(images.paths),
        labels=images.labels,
        sha256=hashes,
        size=np.array(sizes, np.int64),
        mtime_ns=np.array(mtimes, np.int64),
    )


def _check_dtypes(old: CacheState | None, wanted: list[LayerDef]) -> None:
    if old is None:
        return
    for layer in wanted:
        have = old.layers.get(layer.key)
        if have is not None and have.dtype != layer.dtype:
            raise CacheError(
                f"layer {layer.key} is stored as {have.dtype} in {old.path.name}; "
                f"ask for --dtype {have.dtype}, or use another --cache-dir"
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
) -> tuple[list[Failure], Rows]:
    """Bring the cache at ``path`` in line with the folder's ``scanned`` rows.

    An unchanged structure is refreshed in place (changed files marked undone);
    anything else writes a new file that keeps every computed row still valid.
    Returns the failures already recorded for unchanged files, and the rows.
    """
    old_failed = {f.path: f for f in (old.failed if old else [])}
    failed_known, keep = [], []
    for i, rel in enumerate(scanned.paths):
        prev = old_failed.get(rel)
        if prev is not None and prev.sha256 == scanned.sha256[i]:
            failed_known.append(prev)
        else:
            keep.append(i)
    rows = scanned.take(keep)
    layers = dict(old.layers) if old else {}
    for layer in wanted:
        layers.setdefault(layer.key, layer)
    if old is not None and _same_structure(old, rows, meta, layers, failed_known):
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
        failed=failed_known,
        source=path if old else None,
        source_rows=source_rows,
        on_rows=progress.advance,
    )
    if old is not None:
        progress.finish()
    return failed_known, rows


def _same_structure(
    old: CacheState, rows: Rows, meta: CacheMeta, layers: dict, failed: list[Failure]
) -> bool:
    return (
        old.rows.paths == rows.paths
        and np.array_equal(old.rows.labels, rows.labels)
        and old.classes == meta.classes
        and set(layers) == set(old.layers)
        and [f.path for f in old.failed] == [f.path for f in failed]
    )


def _pending(
    path: Path, wanted: list[LayerDef]
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    done = read_done(path, [layer.key for layer in wanted])
    if not done:
        return np.zeros(0, np.int64), done
    all_done = np.logical_and.reduce(list(done.values()))
    return np.flatnonzero(~all_done), done


def _resolve_weights(weights: str | LoadedWeights, seed: int) -> LoadedWeights:
    if isinstance(weights, LoadedWeights):
        return weights
    return load_weights(weights, seed=seed)


def _check_options(*, spatial, dtype, batch_size, num_workers, engine) -> None:
    check_choice("spatial", spatial, SPATIAL_CHOICES)
    check_choice("dtype", dtype, DTYPE_CHOICES)
    check_int("batch_size", batch_size, low=1)
    if num_workers is not None:
        check_int("num_workers", num_workers, low=0)
    if not isinstance(engine, RayEngine):
        check_choice("engine", engine, ENGINE_CHOICES)


# Long: mostly its docstring and the one locked sequence scan -> reconcile ->
# fill -> record; each step is a function of its own.
def extract(
    data_dir: Path,
    *,
    layers: list[str] | tuple[str, ...] = ("fc7",),
    spatial: str = "none",
    weights: str | LoadedWeights = "imagenet",
    seed: int = 0,
    device: str = "auto",
    batch_size: int = 64,
    num_workers: int | None = None,
    dtype: str = "float32",
    cache_dir: Path | None = None,
    engine: str | RayEngine = "local",
    progress: Progress | None = None,
) -> ExtractResult:
    """Extract ``layers`` for every image under ``data_dir`` into the cache.

    (Twelve parameters: they mirror `featx extract`'s options one to one.)

    Parameters
    ----------
    weights
        ``"imagenet"``, ``"random"`` (seeded by ``seed``), a state-dict file, or
        weights already loaded with :func:`featx.model.load_weights`.
    num_workers
        Decode worker processes, as torch's DataLoader counts them (0: decode in
        this process; None: one per core).
    engine
        ``"local"``, ``"ray"`` (a local Ray), or a :class:`RayEngine`.

    Returns the :class:`ExtractResult` of the run; raises a
    :class:`~featx.errors.FeatxError` subclass when the run cannot go on.
    """
    progress = progress or Progress()
    _check_options(
        spatial=spatial,
        dtype=dtype,
        batch_size=batch_size,
        num_workers=num_workers,
        engine=engine,
    )
    if engine == "ray":
        engine = RayEngine()
    if isinstance(engine, RayEngine):
        from featx.ray_engine import require_ray

        require_ray()  # before any work: say how to install it
    specs = resolve_layers(list(layers))
    compute = Compute(resolve_device(device), batch_size, num_workers, engine)
    images = list_images(Path(data_dir))
    images.root = images.root.resolve()
    loaded = _resolve_weights(weights, seed)
    preprocess = Preprocess(WEIGHTS.transforms())
    wanted = [
        LayerDef(
            s.name, s.module_path, s.shape, spatial if s.spatial else "none", dtype
        )
        for s in specs
    ]
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_path_for(cache_dir, images.root, loaded, preprocess)
    meta = cache_meta(images, loaded, preprocess)
    with cache_lock(path):
        remove_stale_temporaries(path)
        old = read_state(path) if path.exists() else None
        _check_dtypes(old, wanted)
        scanned_at_ns = time.time_ns()
        scanned = scan_rows(images, old, progress)
        failed_known, rows = reconcile_cache(
            path,
            old,
            scanned,
            wanted=wanted,
            meta=meta,
            scanned_at_ns=scanned_at_ns,
            progress=progress,
        )
        pending, done = _pending(path, wanted)
        started = time.perf_counter()
        new_failures: list[Failure] = []
        n_new = 0
        if len(pending):
            batches = _batches(
                images.root, rows, pending, done, wanted, loaded, preprocess, compute
            )
            n_new, new_failures = fill_rows(path, rows, pending, batches, progress)
        seconds = time.perf_counter() - started
        if new_failures:
            _record_failures(
                path, rows, new_failures, failed_known, meta, scanned_at_ns
            )
    n_images = len(rows) - len(new_failures)
    return ExtractResult(
        cache_path=path,
        n_images=n_images,
        n_new=n_new,
        n_reused=n_images - n_new,
        failures=failed_known + new_failures,
        layers=[w.key for w in wanted],
        seconds=seconds,
        images_per_s=(n_new + len(new_failures)) / seconds if seconds > 0 else 0.0,
        weights_id=loaded.weights_id,
        pretrained=loaded.pretrained,
        device=str(compute.device),
        ignored=images.ignored,
    )


def _batches(
    root: Path,
    rows: Rows,
    pending: np.ndarray,
    done: dict[str, np.ndarray],
    wanted: list[LayerDef],
    loaded: LoadedWeights,
    preprocess: Preprocess,
    compute: Compute,
):
    """The stream of computed batches for the ``pending`` rows. (Eight
    parameters: what to compute, with what, and how.)"""
    files = [root / rows.paths[r] for r in pending]
    if isinstance(compute.engine, RayEngine):
        from featx.ray_engine import ray_batches

        return ray_batches(
            files=files,
            rows=pending.tolist(),
            wanted=wanted,
            loaded=loaded,
            batch_size=compute.batch_size,
            engine=compute.engine,
        )
    return compute_batches(
        files=files,
        rows=pending.tolist(),
        wanted=wanted,
        loaded=loaded,
        preprocess=preprocess,
        device=compute.device,
        batch_size=compute.batch_size,
        num_workers=compute.num_workers,
        needed=lambda idx: [w for w in wanted if not done[w.key][idx].all()],
    )


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


def _record_failures(
    path: Path,
    rows: Rows,
    new_failures: list[Failure],
    failed_known: list[Failure],
    meta: CacheMeta,
    scanned_at_ns: int,
) -> None:
    """Move images that failed to decode out of the rows and into /failed."""
    with FeatureCache(path) as cache:
        layers = list(cache.layers.values())
    bad = {f.path for f in new_failures}
    keep = np.array([i for i, p in enumerate(rows.paths) if p not in bad], np.int64)
    write_cache(
        path,
        meta=meta,
        scanned_at_ns=scanned_at_ns,
        rows=rows.take(keep),
        layers=layers,
        failed=sorted(failed_known + new_failures, key=lambda f: f.path),
        source=path,
        source_rows=keep,
    )
