"""Extraction: image folder → AlexNet activations → HDF5 cache, resumably.

One run: list the images, hash the new or changed ones, reconcile with the cache
(rewrite its structure when images or layers changed), then run every pending
row through one forward pass per batch that stops at the deepest layer still
needed, writing batches from a background thread.
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torchvision

from featx import __version__
from featx.cache import (
    CacheFiller,
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
from featx.errors import CacheError, DataError
from featx.images import ImageDataset, ImageSet, Preprocess, list_images
from featx.model import WEIGHTS, FeatureNet, LoadedWeights, load_weights, resolve_layers
from featx.runtime import release_free_memory

SPATIAL_CHOICES = ("none", "avg", "max")
DTYPE_CHOICES = ("float32", "float16")
#: A file modified this close to the last scan is re-hashed even if its size and
#: mtime look unchanged (the "racy" case of git's index).
RACY_NS = 2_000_000_000
#: Batches between two returns of freed heap memory to the OS (runtime.py).
TRIM_EVERY = 4


class Progress:
    """Receives progress; the default does nothing. The CLI draws tqdm bars."""

    def start(self, stage: str, total: int) -> None:
        """A stage (``hashing``, ``copying``, ``extracting``) of ``total`` units."""

    def advance(self, n: int) -> None:
        """``n`` more units of the current stage are done."""

    def finish(self) -> None:
        """The current stage ended."""


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


def resolve_device(device: str) -> torch.device:
    """``auto`` picks CUDA when present; ``cuda:N`` must exist."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise DataError(
            f"--device must be auto, cpu, cuda or cuda:N; got {device!r}"
        ) from exc
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise DataError(f"--device {device}: CUDA is not available on this machine")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise DataError(
                f"--device {device}: only {torch.cuda.device_count()} CUDA device(s)"
            )
    elif dev.type != "cpu":
        raise DataError(f"--device must be auto, cpu, cuda or cuda:N; got {device!r}")
    return dev


def default_workers(device: torch.device) -> int:
    """Decode workers: every core on a GPU machine; on a CPU all cores too,
    since the forward pass and decoding take turns on them."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
    return max(1, cores if device.type == "cuda" else min(cores, 8))


def cache_identity(
    data_root: Path, weights: LoadedWeights, preprocess: Preprocess
) -> str:
    blob = json.dumps(
        {
            "data_root": str(data_root),
            "weights_sha256": weights.sha256,
            "transform": preprocess.describe(),
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:10]


def cache_path_for(
    cache_dir: Path, data_root: Path, weights: LoadedWeights, preprocess: Preprocess
) -> Path:
    """One file per (data folder, weights, preprocessing)."""
    tag = (
        "imagenet"
        if weights.weights_id.startswith("torchvision:")
        else "random"
        if not weights.pretrained
        else "file"
    )
    stem = "".join(c if c.isalnum() or c in "-_" else "_" for c in data_root.name)
    ident = cache_identity(data_root, weights, preprocess)
    return Path(cache_dir) / f"{stem or 'data'}-{tag}-{ident}.h5"


def _stat_rows(images: ImageSet) -> tuple[np.ndarray, np.ndarray]:
    sizes, mtimes = [], []
    for rel in images.paths:
        st = (images.root / rel).stat()
        sizes.append(st.st_size)
        mtimes.append(st.st_mtime_ns)
    return np.array(sizes, np.int64), np.array(mtimes, np.int64)


def _hash_rows(
    images: ImageSet, old: CacheState | None, sizes, mtimes, progress: Progress
) -> list[str]:
    """sha256 of each image, reusing the cache's when size and mtime match."""
    known: dict[str, tuple[str, int, int]] = {}
    scanned = 0
    if old is not None:
        scanned = int(old.attrs.get("scanned_at_ns", 0))
        for p, s, z, m in zip(
            old.rows.paths,
            old.rows.sha256,
            old.rows.size,
            old.rows.mtime_ns,
            strict=True,
        ):
            known[p] = (s, int(z), int(m))
        for fail in old.failed:
            known[fail.path] = (fail.sha256, fail.size, fail.mtime_ns)
    hashes: list[str | None] = []
    todo = []
    for i, rel in enumerate(images.paths):
        entry = known.get(rel)
        fresh = (
            entry is not None
            and entry[0]
            and entry[1] == sizes[i]
            and entry[2] == mtimes[i]
            and mtimes[i] < scanned - RACY_NS
        )
        hashes.append(entry[0] if fresh else None)
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
    return hashes  # type: ignore[return-value]


def _root_attrs(
    images: ImageSet, weights: LoadedWeights, preprocess: Preprocess, scanned_at: int
) -> dict:
    return {
        "featx_version": __version__,
        "torch_version": str(torch.__version__),
        "torchvision_version": str(torchvision.__version__),
        "classes": json.dumps(images.classes),
        "weights_id": weights.weights_id,
        "weights_sha256": weights.sha256,
        "weights_pretrained": weights.pretrained,
        "weights_source": weights.source,
        "weights_url": WEIGHTS.url
        if weights.weights_id.startswith("torchvision:")
        else "",
        "transform": json.dumps(preprocess.describe()),
        "transform_repr": repr(preprocess.transforms),
        "data_root": str(images.root),
        "scanned_at_ns": scanned_at,
        "updated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


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


def _plan(
    path: Path,
    old: CacheState | None,
    images: ImageSet,
    hashes: list[str],
    sizes,
    mtimes,
    wanted: list[LayerDef],
    attrs: dict,
    progress: Progress,
) -> tuple[list[Failure], Rows]:
    """Bring the cache's structure in line with the folder; return its rows and
    the failures already recorded for unchanged files."""
    old_failed = {f.path: f for f in (old.failed if old else [])}
    failed_known, keep = [], []
    for i, rel in enumerate(images.paths):
        prev = old_failed.get(rel)
        if prev is not None and prev.sha256 == hashes[i]:
            failed_known.append(prev)
        else:
            keep.append(i)
    rows = Rows(
        paths=[images.paths[i] for i in keep],
        labels=images.labels[keep],
        sha256=[hashes[i] for i in keep],
        size=sizes[keep],
        mtime_ns=mtimes[keep],
    )
    layers = dict(old.layers) if old else {}
    for layer in wanted:
        layers.setdefault(layer.key, layer)
    same_structure = (
        old is not None
        and old.rows.paths == rows.paths
        and np.array_equal(old.rows.labels, rows.labels)
        and old.classes == images.classes
        and set(layers) == set(old.layers)
        and [f.path for f in old.failed] == [f.path for f in failed_known]
    )
    if same_structure:
        changed = np.array(
            [i for i in range(len(rows)) if old.rows.sha256[i] != rows.sha256[i]],
            np.int64,
        )
        with CacheFiller(path) as filler:
            filler.refresh(rows, changed=changed, scanned_at_ns=attrs["scanned_at_ns"])
        return failed_known, rows
    source_rows = None
    if old is not None:
        index = {
            (p, s): j
            for j, (p, s) in enumerate(
                zip(old.rows.paths, old.rows.sha256, strict=True)
            )
        }
        source_rows = np.array(
            [
                index.get((p, s), -1)
                for p, s in zip(rows.paths, rows.sha256, strict=True)
            ],
            np.int64,
        )
        progress.start("copying", int((source_rows >= 0).sum()) * len(old.layers))
    write_cache(
        path,
        attrs=attrs,
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


def _collate(batch):
    rows = torch.tensor([b[0] for b in batch], dtype=torch.int64)
    images = torch.stack([b[1] for b in batch])
    errors = [b[2] for b in batch]
    return rows, images, errors


class _Writer(threading.Thread):
    """Writes batches to the cache from a background thread."""

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


def _reduce(x: torch.Tensor, spatial: str) -> torch.Tensor:
    if x.dim() == 4 and spatial == "avg":
        return x.mean(dim=(2, 3))
    if x.dim() == 4 and spatial == "max":
        return x.amax(dim=(2, 3))
    return x.reshape(x.shape[0], -1)


def run_forward(
    *,
    net: FeatureNet,
    preprocess: Preprocess,
    images: torch.Tensor,
    layers: list[LayerDef],
    device: torch.device,
) -> dict[str, np.ndarray]:
    """One batch of uint8 images → ``{layer key: (n, dim) array}``."""
    x = images.to(device, non_blocking=True).contiguous(
        memory_format=torch.channels_last
    )
    x = preprocess.normalize(x)
    names = sorted({layer.layer for layer in layers})
    with torch.inference_mode():
        if device.type == "cuda":
            with torch.autocast("cuda", dtype=torch.float16):
                outs = net(x, names)
        else:
            outs = net(x, names)
        result = {}
        for layer in layers:
            y = _reduce(outs[layer.layer].float(), layer.spatial)
            result[layer.key] = y.to(getattr(torch, layer.dtype)).cpu().numpy()
    return result


def _pending(
    path: Path, wanted: list[LayerDef]
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    done = read_done(path, [layer.key for layer in wanted])
    if not done:
        return np.zeros(0, np.int64), done
    all_done = np.logical_and.reduce(list(done.values()))
    return np.flatnonzero(~all_done), done


def extract(
    data_dir: Path,
    *,
    layers: list[str] | tuple[str, ...] = ("fc7",),
    spatial: str = "none",
    weights: str = "imagenet",
    seed: int = 0,
    device: str = "auto",
    batch_size: int = 64,
    workers: int | None = None,
    dtype: str = "float32",
    cache_dir: Path | None = None,
    progress: Progress | None = None,
    loaded: LoadedWeights | None = None,
    engine: str = "local",
    address: str | None = None,
    num_workers: int | None = None,
) -> ExtractResult:
    """Extract ``layers`` for every image under ``data_dir`` into the cache.

    Returns the :class:`ExtractResult` of the run; raises a
    :class:`~featx.errors.FeatxError` subclass when the run cannot go on.
    """
    progress = progress or Progress()
    if engine not in ("local", "ray"):
        raise DataError(f"engine must be 'local' or 'ray'; got {engine!r}")
    if engine == "ray":
        from featx.ray_engine import require_ray

        require_ray()  # before any work: say how to install it
    if spatial not in SPATIAL_CHOICES:
        raise DataError(
            f"spatial must be one of {', '.join(SPATIAL_CHOICES)}; got {spatial!r}"
        )
    if dtype not in DTYPE_CHOICES:
        raise DataError(
            f"dtype must be one of {', '.join(DTYPE_CHOICES)}; got {dtype!r}"
        )
    if batch_size < 1:
        raise DataError(f"batch size must be at least 1; got {batch_size}")
    specs = resolve_layers(list(layers))
    dev = resolve_device(device)
    images = list_images(Path(data_dir))
    images.root = images.root.resolve()
    loaded = loaded or load_weights(weights, seed=seed)
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
    with cache_lock(path):
        remove_stale_temporaries(path)
        old = read_state(path) if path.exists() else None
        _check_dtypes(old, wanted)
        scanned_at = time.time_ns()
        sizes, mtimes = _stat_rows(images)
        hashes = _hash_rows(images, old, sizes, mtimes, progress)
        attrs = _root_attrs(images, loaded, preprocess, scanned_at)
        failed_known, rows = _plan(
            path, old, images, hashes, sizes, mtimes, wanted, attrs, progress
        )
        pending, done = _pending(path, wanted)
        started = time.perf_counter()
        new_failures: list[Failure] = []
        n_new = 0
        if len(pending):
            n_new, new_failures = _run(
                path=path,
                images=images,
                rows=rows,
                pending=pending,
                done=done,
                wanted=wanted,
                loaded=loaded,
                preprocess=preprocess,
                device=dev,
                batch_size=batch_size,
                workers=workers,
                progress=progress,
                engine=engine,
                address=address,
                num_workers=num_workers,
            )
        seconds = time.perf_counter() - started
        if new_failures:
            _record_failures(path, rows, new_failures, failed_known, attrs)
    failures = failed_known + new_failures
    n_images = len(rows) - len(new_failures)
    return ExtractResult(
        cache_path=path,
        n_images=n_images,
        n_new=n_new,
        n_reused=n_images - n_new,
        failures=failures,
        layers=[w.key for w in wanted],
        seconds=seconds,
        images_per_s=(n_new + len(new_failures)) / seconds if seconds > 0 else 0.0,
        weights_id=loaded.weights_id,
        pretrained=loaded.pretrained,
        device=str(dev),
        ignored=images.ignored,
    )


def configure_threads(device: torch.device) -> None:
    """On a CPU, torch uses every core: decoding and the forward pass take turns."""
    if device.type == "cpu":
        torch.set_num_threads(max(1, len(os.sched_getaffinity(0))))


def build_net(
    loaded: LoadedWeights, wanted: list[LayerDef], device: torch.device
) -> FeatureNet:
    """The truncated, channels-last network for ``wanted`` on ``device``."""
    net = FeatureNet(loaded.model, [_spec(w) for w in wanted]).to(device).eval()
    return net.to(memory_format=torch.channels_last)


def make_loader(
    files: list[Path],
    rows: list[int],
    preprocess: Preprocess,
    *,
    device: torch.device,
    batch_size: int,
    workers: int | None,
) -> torch.utils.data.DataLoader:
    """The DataLoader that decodes and crops images into uint8 batches."""
    workers = default_workers(device) if workers is None else workers
    return torch.utils.data.DataLoader(
        ImageDataset(files, rows, preprocess),
        batch_size=batch_size,
        num_workers=workers,
        collate_fn=_collate,
        pin_memory=device.type == "cuda",
        prefetch_factor=4 if workers else None,
    )


def compute_batches(
    *,
    files: list[Path],
    rows: list[int],
    wanted: list[LayerDef],
    loaded: LoadedWeights,
    preprocess: Preprocess,
    device: torch.device,
    batch_size: int,
    workers: int | None,
    needed=None,
):
    """Start the decode workers now and return an iterator over batches.

    Each item is ``(rows, values, failures)``: the rows that decoded, ``{layer key:
    (n, dim) array}`` for them, and ``(row, reason)`` for the files that did not.
    ``needed(rows)`` may narrow the layers computed for a batch.
    """
    configure_threads(device)
    net = build_net(loaded, wanted, device)
    loader = make_loader(
        files, rows, preprocess, device=device, batch_size=batch_size, workers=workers
    )
    batches = iter(loader)  # forks the workers here, before any HDF5 file opens

    def generate():
        for count, (batch_rows, batch_images, errors) in enumerate(batches, 1):
            if count % TRIM_EVERY == 0:
                release_free_memory()
            failed = [
                (r, e) for r, e in zip(batch_rows.tolist(), errors, strict=True) if e
            ]
            ok = np.array([not e for e in errors])
            idx = batch_rows.numpy()[ok]
            values = {}
            if ok.any():
                values = run_forward(
                    net=net,
                    preprocess=preprocess,
                    images=batch_images[torch.from_numpy(ok)],
                    layers=needed(idx) if needed else wanted,
                    device=device,
                )
            yield idx, values, failed

    return generate()


def _run(
    *,
    path,
    images,
    rows,
    pending,
    done,
    wanted,
    loaded,
    preprocess,
    device,
    batch_size,
    workers,
    progress,
    engine="local",
    address=None,
    num_workers=None,
) -> tuple[int, list[Failure]]:
    files = [images.root / rows.paths[r] for r in pending]
    if engine == "ray":
        from featx.ray_engine import ray_batches

        batches = ray_batches(
            files=files,
            rows=pending.tolist(),
            wanted=wanted,
            loaded=loaded,
            batch_size=batch_size,
            address=address,
            num_workers=num_workers,
        )
    else:
        batches = compute_batches(
            files=files,
            rows=pending.tolist(),
            wanted=wanted,
            loaded=loaded,
            preprocess=preprocess,
            device=device,
            batch_size=batch_size,
            workers=workers,
            needed=lambda idx: [w for w in wanted if not done[w.key][idx].all()],
        )
    failures: list[Failure] = []
    n_new = 0
    progress.start("extracting", len(pending))
    try:
        with CacheFiller(path) as filler:
            writer = _Writer(filler)
            writer.start()
            try:
                for idx, values, failed in batches:
                    for r, reason in failed:
                        failures.append(
                            Failure(
                                rows.paths[r],
                                reason,
                                rows.sha256[r],
                                int(rows.size[r]),
                                int(rows.mtime_ns[r]),
                            )
                        )
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


def _spec(layer: LayerDef):
    return resolve_layers([layer.layer])[0]


def _record_failures(
    path: Path,
    rows: Rows,
    new_failures: list[Failure],
    failed_known: list[Failure],
    attrs: dict,
) -> None:
    """Move images that failed to decode out of the rows and into /failed."""
    with FeatureCache(path) as cache:
        layers = list(cache.layers.values())
    bad = {f.path for f in new_failures}
    keep = np.array([i for i, p in enumerate(rows.paths) if p not in bad], np.int64)
    kept = Rows(
        paths=[rows.paths[i] for i in keep],
        labels=rows.labels[keep],
        sha256=[rows.sha256[i] for i in keep],
        size=rows.size[keep],
        mtime_ns=rows.mtime_ns[keep],
    )
    failed = sorted(failed_known + new_failures, key=lambda f: f.path)
    write_cache(
        path,
        attrs=attrs,
        rows=kept,
        layers=layers,
        failed=failed,
        source=path,
        source_rows=keep,
    )
