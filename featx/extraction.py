"""Extraction: image folder → AlexNet activations → HDF5 cache, resumably.

One run: list the images, hash the new or changed ones (:func:`scan_rows`),
bring the cache's structure in line with them (:func:`reconcile_cache`), then
compute every pending row with the compute core (:mod:`featx.forward`, or the
Ray engine), writing batches from a background thread, and finally move images
that could not be decoded into ``/failed``.
"""

from __future__ import annotations

import time
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
    NotImage,
    Rows,
    Warnings,
    cache_lock,
    default_cache_dir,
    read_done,
    read_state,
    read_warnings,
    remove_stale_temporaries,
    write_cache,
)
from featx.cache.identity import cache_meta, cache_path_for
from featx.cache.reconcile import (
    check_dtypes,
    kept_warnings,
    reconcile_cache,
    scan_rows,
    split_known,
    up_to_date,
)
from featx.choices import DTYPES, ENGINES, SPATIAL
from featx.errors import ParameterError, ReadOnlyError, check_choice, check_int
from featx.forward import (
    Batch,
    compute_batches,
    default_decoder,
    default_precision,
    resolve_device,
)
from featx.images import ImageSet, Labelling, Preprocess, list_images
from featx.model import (
    LoadedWeights,
    load_weights,
    preprocess_for,
    resolve_layers,
)
from featx.progress import Progress
from featx.views import VIEW_SETS, views_of


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
    skipped: list[Failure] = field(default_factory=list)
    #: The views of each layer this run made sure of (:mod:`featx.views`).
    views: list[str] = field(default_factory=lambda: ["center"])
    notes: list[str] = field(default_factory=list)
    #: The folder's files that are no image, hidden files and hidden folders:
    #: with the rows and failures, every entry of the folder.
    not_images: list[NotImage] = field(default_factory=list)
    #: What the decoders said of each image, ``{path: lines}``: those decoded
    #: in this run and those recorded by earlier ones.
    warnings: Warnings = field(default_factory=dict)

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


def _pending(
    path: Path, wanted: list[LayerDef]
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    done = read_done(path, [layer.key for layer in wanted])
    if not done:
        return np.zeros(0, np.int64), done
    all_done = np.logical_and.reduce(list(done.values()))
    return np.flatnonzero(~all_done), done


def _resolve_weights(
    weights: str | LoadedWeights, seed: int, model: str
) -> LoadedWeights:
    if isinstance(weights, LoadedWeights):
        return weights
    return load_weights(weights, seed=seed, model=model)


def _check_options(*, spatial, dtype, batch_size, num_workers, engine, views) -> None:
    check_choice("spatial", spatial, SPATIAL)
    check_choice("dtype", dtype, DTYPES)
    check_choice("views", views, tuple(VIEW_SETS))
    check_int("batch_size", batch_size, low=1)
    if num_workers is not None:
        check_int("num_workers", num_workers, low=0)
    if not isinstance(engine, RayEngine):
        check_choice("engine", engine, ENGINES)


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
    rebuild: bool = False,
    labelling: Labelling | None = None,
    model: str = "alexnet",
    mean: Path | None = None,
    views: str = "center",
    decode: str = "fast",
    precision: str | None = None,
    decoder: str | None = None,
) -> ExtractResult:
    """Extract ``layers`` for every image under ``data_dir`` into the cache.

    (Twenty parameters: they mirror `featx extract`'s options one to one.)

    Parameters
    ----------
    decode
        ``"fast"``: a JPEG decodes directly at 1/2, 1/4 or 1/8 of its size
        (libjpeg's DCT scaling), the smallest that still covers the model's
        resize target; images under twice the target decode in full either way.
        ``"exact"``: every pixel is decoded. The mode is part of the cache's
        identity: rows of the two modes never share a cache.
    precision
        The forward pass's arithmetic: ``"fp32"``, or autocast to ``"bf16"`` or
        ``"fp16"``; None: fp32 on a CPU, bf16 on CUDA. Part of the cache's
        identity, like ``decode``.
    decoder
        ``"pil"`` (in the decode workers) or ``"torchvision"``: JPEGs decoded in
        batches by ``torchvision.io.decode_jpeg`` on the network's device, then
        resized and cropped there (other files, CMYK JPEGs and whatever the
        device refuses go through PIL). None: torchvision on CUDA, PIL on a CPU.
        Part of the cache's identity.
    views
        ``"center"`` (the centre crop), ``"flip"`` (and its mirror image) or
        ``"ten"`` (the four corners and the centre, and their mirrors), each
        stored and resumed as a dataset of its own (:mod:`featx.views`).
    model
        ``"alexnet"`` (torchvision's) or ``"caffe-alexnet"`` (BVLC's original;
        its weights from ``bvlc_alexnet.npy``, ``alexnet_weights.h5`` or
        ``bvlc_alexnet.caffemodel``). Weights already loaded bring their own.
    mean
        caffe-alexnet only: a ``.npy`` mean image (``ilsvrc_2012_mean.npy``)
        instead of its per-channel mean.
    weights
        ``"imagenet"``, ``"random"`` (seeded by ``seed``), a state-dict file, or
        weights already loaded with :func:`featx.model.load_weights`.
    num_workers
        Decode worker processes, as torch's DataLoader counts them (0: decode in
        this process; None: one per core).
    engine
        ``"local"``, ``"ray"`` (a local Ray), or a :class:`RayEngine`.
    labelling
        Labels from a CSV or from file names (:class:`featx.images.Labelling`)
        instead of class subfolders.
    rebuild
        Recompute the cache from nothing, ignoring (and replacing) the file
        there, for example a damaged one.

    Returns
    -------
    ExtractResult
        What the run did.

    Raises
    ------
    featx.errors.FeatxError
        A subclass of it, when the run cannot go on.
    """
    progress = progress or Progress()
    _check_options(
        spatial=spatial,
        dtype=dtype,
        batch_size=batch_size,
        num_workers=num_workers,
        engine=engine,
        views=views,
    )
    if engine == "ray":
        engine = RayEngine()
    if isinstance(engine, RayEngine):
        from featx.ray_engine import require_ray

        require_ray()  # before any work: say how to install it
    if isinstance(weights, LoadedWeights):
        model = weights.arch
    specs = resolve_layers(list(layers), model)  # an unknown model stops here
    compute = Compute(resolve_device(device), batch_size, num_workers, engine)
    precision = precision or default_precision(compute.device)
    ray = isinstance(engine, RayEngine)
    decoder = decoder or ("pil" if ray else default_decoder(compute.device))
    if ray and decoder != "pil":
        raise ParameterError("decoder 'torchvision' runs with the local engine only")
    # a bad mean file, decode mode, precision or decoder stops here
    preprocess = preprocess_for(model, mean, decode, precision, decoder)
    images = list_images(Path(data_dir), labelling)  # lists; reads no image
    images.root = images.root.resolve()
    loaded = _resolve_weights(weights, seed, model)  # a bad file stops here
    wanted = [
        LayerDef(
            s.name,
            s.module_path,
            s.shape,
            spatial if s.spatial else "none",
            dtype,
            view,
        )
        for s in specs
        for view in views_of(views)
    ]
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = cache_path_for(cache_dir, images.root, loaded, preprocess)
    meta = cache_meta(images, loaded, preprocess)
    run = Run(path, images, wanted, meta, loaded, preprocess, compute, progress)
    try:
        _make_folder(cache_dir)
        with cache_lock(path):
            return _update(run, rebuild=rebuild)
    except ReadOnlyError as exc:
        if rebuild:
            raise
        # Nothing may be written here: fine if there is nothing to write.
        return _unchanged(run, exc)


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


def _update(run: Run, *, rebuild: bool) -> ExtractResult:
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


def _make_folder(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ReadOnlyError(f"cannot create {folder}: {exc.strerror}") from exc


def _old_state(path: Path, data_root: Path) -> CacheState | None:
    """The cache's state, None where there is none yet."""
    if not path.exists():
        return None
    return read_state(path, data=str(data_root))


def _unchanged(run: Run, exc: ReadOnlyError) -> ExtractResult:
    """The result of a run that cannot write: the cache as it is, if it is
    complete and up to date; otherwise ``exc``, saying what needed writing."""
    old = _old_state(run.path, run.images.root)
    scanned, skipped = scan_rows(run.images, old, Progress())
    if not up_to_date(old, scanned, skipped, run.wanted, run.meta):
        raise ReadOnlyError(
            f"{exc}; the cache needs new rows or layers. Give a writable "
            "--cache-dir (or FEATX_CACHE_DIR)"
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
        from featx.ray_engine import ray_batches

        return ray_batches(
            files=files,
            rows=pending.tolist(),
            wanted=wanted,
            loaded=run.loaded,
            batch_size=compute.batch_size,
            engine=compute.engine,
            preprocess=run.preprocess,
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
