"""`featx.extract`: check the options, resolve the model, weights, device and
preprocessing, then update the folder's cache under its lock."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

from featx.cache import (
    FeatureCache,
    LayerDef,
    cache_lock,
    default_cache_dir,
)
from featx.cache.identity import cache_meta, cache_path_for
from featx.choices import DEFAULT_DECODE, DTYPES, ENGINES, RUNTIMES, SPATIAL
from featx.compute.forward import (
    check_runtime,
    default_decoder,
    default_precision,
    resolve_device,
)
from featx.errors import ParameterError, ReadOnlyError, check_choice, check_int, param
from featx.extraction.records import Compute, ExtractResult, RayEngine
from featx.extraction.run import Run, make_folder, unchanged, update
from featx.images import ImageSet, Labelling, Preprocess, list_images
from featx.images.views import CENTER, VIEW_SETS, views_of
from featx.model import (
    LoadedWeights,
    load_weights,
    preprocess_for,
    resolve_layers,
)
from featx.progress import Progress

__all__ = [
    "resolve_preprocess",
    "calibrate",
    "runtime_device",
    "layer_spatial",
    "layer_def",
    "wanted_layers",
    "identical_notes",
    "extract",
]

if TYPE_CHECKING:
    import torch


def _resolve_weights(
    weights: str | LoadedWeights, seed: int, model: str
) -> LoadedWeights:
    if isinstance(weights, LoadedWeights):
        return weights
    return load_weights(weights, seed=seed, model=model)


def resolve_preprocess(
    model,
    mean,
    decode,
    precision,
    decoder,
    *,
    device: torch.device,
    ray=False,
    runtime: str = "torch",
) -> Preprocess:
    """The preprocessing of ``model`` with the decode mode, the precision
    (default: the device's; fp32 for another runtime than torch), the JPEG
    decoder (default: the device's; PIL with Ray, whose workers decode on their
    own) and the runtime; the transformer resolves its cache the same way."""
    check_choice("runtime", runtime, RUNTIMES)
    check_runtime(runtime, device, ray=ray)
    precision = precision or ("fp32" if runtime != "torch" else None)
    precision = precision or default_precision(device)
    decoder = decoder or ("pil" if ray else default_decoder(device))
    if ray and decoder != "pil":
        raise ParameterError("decoder 'torchvision' runs with the local engine only")
    preprocess = preprocess_for(model, mean, decode, precision, decoder, runtime)
    if runtime != "torch":  # a missing package is named before any work
        from featx.compute.exports import require_packages

        require_packages(runtime, precision)
    return preprocess


def runtime_device(device: str, runtime: str) -> str:
    """The device ``device`` means for ``runtime``: ``auto`` is the CPU for the
    runtimes but torch, which run there only."""
    return "cpu" if runtime != "torch" and device == "auto" else device


def calibrate(
    preprocess: Preprocess, images: ImageSet, calibration: int | dict | None
) -> None:
    """Give an int8 ``preprocess`` its calibration set: ``calibration`` images
    (default :data:`featx.compute.quantize.CALIBRATION_IMAGES`) sampled from
    ``images``, or the set a training cache recorded (a dict); refuse
    ``calibration`` for any other precision."""
    if preprocess.precision != "int8":
        if isinstance(calibration, int) and not isinstance(calibration, bool):
            raise ParameterError("`calibration` is for precision 'int8' only")
        return
    from featx.compute.quantize import CALIBRATION_IMAGES, sample_calibration

    if isinstance(calibration, dict):
        preprocess.calibration = dict(calibration)
        return
    n = CALIBRATION_IMAGES if calibration is None else calibration
    described, files = sample_calibration(images.root, images.paths, n)
    preprocess.calibration, preprocess.calibration_files = described, files


def layer_spatial(spec, spatial: str) -> str:
    """The reduction ``spatial`` means for the layer ``spec``: itself where the
    layer can be pooled so, ``none`` for a vector; a ParameterError where the
    layer pools otherwise (``cls`` of a map) or not at all (patches on their way
    to tokens, maxvit's windows)."""
    if spatial == "none" or spec.kind == "vector":
        return "none"
    if not spec.poolings:
        raise ParameterError(
            f"{param('spatial', spatial)} does not apply to {spec.name}, of shape "
            f"{list(spec.shape)}: it is neither a map nor a token sequence, and is "
            f"stored whole ({param('spatial', 'none')})"
        )
    if spatial not in spec.poolings:
        raise ParameterError(
            f"{param('spatial', spatial)} does not apply to {spec.name}, a "
            f"{spec.kind} of "
            f"shape {list(spec.shape)}: use one of none, {', '.join(spec.poolings)}"
            + (" (cls is a ViT encoder's class token)" if spatial == "cls" else "")
        )
    return spatial


def layer_def(spec, spatial: str, dtype: str, view: str, model: str) -> LayerDef:
    """The dataset of layer ``spec`` reduced by ``spatial``, for one view; other
    networks' than AlexNet's record their layout and position (AlexNet's module
    paths say both, and its caches stay as they were)."""
    alexnet = model in ("alexnet", "caffe-alexnet")
    return LayerDef(
        spec.name,
        spec.module_path,
        spec.shape,
        spatial,
        dtype,
        view,
        kind="" if alexnet else spec.kind,
        order=-1 if alexnet else spec.index,
    )


def wanted_layers(
    specs, spatial: str, dtype: str, views: str, model: str = "alexnet"
) -> list[LayerDef]:
    """One dataset for each layer of ``specs`` and each view."""
    return [
        layer_def(s, layer_spatial(s, spatial), dtype, view, model)
        for s in specs
        for view in views_of(views)
    ]


def identical_notes(path: Path, wanted: list[LayerDef]) -> list[str]:
    """One note for each layer of ``wanted`` whose numbers the cache recorded as
    a shallower layer's (compared on the first batch extracted)."""
    with FeatureCache(path) as cache:
        have = cache.all_layers
    keys = {w.key for w in wanted if w.view == CENTER}
    return [
        f"{key} holds the same numbers as {have[key].same_as} (first batch); "
        "fit and report compare it once, as the shallower layer"
        for key in have
        if key in keys and have[key].same_as
    ]


def _parity(run: Run, result: ExtractResult) -> dict[str, float]:
    """Another runtime's (or int8's) difference from float32 torch: measured
    when this run computed rows, else as an earlier run recorded it."""
    from featx.extraction.parity import measured, recorded_parity, runtime_parity

    if not measured(run.preprocess):
        return {}
    if result.n_new:
        return runtime_parity(run)
    return recorded_parity(run.path, [w.key for w in run.wanted])


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
    decode: str = DEFAULT_DECODE,
    precision: str | None = None,
    decoder: str | None = None,
    runtime: str = "torch",
    calibration: int | dict | None = None,
) -> ExtractResult:
    """Extract ``layers`` for every image under ``data_dir`` into the cache.

    (Twenty-two parameters: they mirror `featx extract`'s options one to one.)

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
    runtime
        ``"torch"``, or ``"openvino"`` / ``"onnxruntime"``: the network exported
        to ONNX once (``$TORCH_HOME/featx-runtimes``) and run by that runtime on
        the CPU (the ``cpu-fast`` extra). Their precision is ``"fp32"`` or
        ``"int8"`` (quantized on a sample of the folder's own images). Part of
        the cache's identity; each stored layer's relative difference from
        float32 torch on a sample is recorded (``ExtractResult.parity``).
    calibration
        int8 only: how many of the folder's images to calibrate on (default
        300, a fixed seed), or the calibration a training cache recorded.
    views
        ``"center"`` (the centre crop), ``"flip"`` (and its mirror image) or
        ``"ten"`` (the four corners and the centre, and their mirrors), each
        stored and resumed as a dataset of its own (:mod:`featx.images.views`).
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
        from featx.compute.cluster import require_ray

        require_ray()  # before any work: say how to install it
    if isinstance(weights, LoadedWeights):
        model = weights.arch
    specs = resolve_layers(list(layers), model)  # an unknown model stops here
    compute = Compute(
        resolve_device(runtime_device(device, runtime)), batch_size, num_workers, engine
    )
    # a bad mean file, decode mode, precision or decoder stops here
    preprocess = resolve_preprocess(
        model, mean, decode, precision, decoder,
        device=compute.device, ray=isinstance(engine, RayEngine), runtime=runtime,
    )  # fmt: skip
    images = list_images(Path(data_dir), labelling)  # lists; reads no image
    images.root = images.root.resolve()
    calibrate(preprocess, images, calibration)
    loaded = _resolve_weights(weights, seed, model)  # a bad file stops here
    wanted = wanted_layers(specs, spatial, dtype, views, model)
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = cache_path_for(cache_dir, images.root, loaded, preprocess)
    meta = cache_meta(images, loaded, preprocess)
    run = Run(path, images, wanted, meta, loaded, preprocess, compute, progress)
    try:
        make_folder(cache_dir)
        with cache_lock(path):
            result = update(run, rebuild=rebuild)
            result.notes += identical_notes(path, wanted)
            started = time.perf_counter()
            result.parity = _parity(run, result)
            result.parity_seconds = time.perf_counter() - started
            return result
    except ReadOnlyError as exc:
        if rebuild:
            raise
        # Nothing may be written here: fine if there is nothing to write.
        return unchanged(run, exc)
