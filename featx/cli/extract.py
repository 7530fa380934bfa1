"""``featx extract``: a network's activations of a folder's images into its cache."""

from __future__ import annotations

from pathlib import Path

import click

from featx.choices import (
    DECODE_MODES,
    DECODERS,
    DTYPES,
    EXTRACT_PRECISIONS,
    SPATIAL,
)
from featx.cli.app import main
from featx.cli.checks import check_extract_arguments
from featx.cli.options import (
    calibration_option,
    deprecated_alias,
    device_options,
    engine_option,
    examples,
    model_option,
    runtime_option,
    weights_options,
)
from featx.cli.output import TqdmProgress, print_extraction, random_weights_banner
from featx.images.views import VIEW_SETS

__all__ = ["check_before_work", "EXTRACT_EXAMPLES", "extract"]


def check_before_work(
    model, mean_file, engine, layers=(), spatial="none", runtime=None, precision=None
) -> None:
    """Refuse an unknown model, a layer it lacks, a pooling that does not apply,
    a bad mean file, a missing Ray or runtime, or a precision the runtime lacks,
    before any image is read or any weights are loaded (the torch-free checks of
    :mod:`featx.cli.checks` ran before)."""
    from featx.extraction.api import layer_spatial
    from featx.model import preprocess_for, resolve_layers

    for spec in resolve_layers(list(layers), model) if layers else ():
        layer_spatial(spec, spatial)
    preprocess_for(model, mean_file)
    if engine == "ray":
        from featx.compute.cluster import require_ray

        require_ray()  # says how to install it
    if precision == "int8" and runtime in (None, "torch"):
        from featx.errors import ParameterError

        raise ParameterError(
            "--precision int8 runs with --runtime openvino or onnxruntime"
        )
    if runtime not in (None, "torch"):
        from featx.compute.exports import require_packages

        preprocess_for(model, mean_file, precision=precision or "fp32", runtime=runtime)
        require_packages(runtime, precision)  # says how to install them


EXTRACT_EXAMPLES = examples(
    "featx extract --weights random --layer fc7 data/Train data/Test",
    "featx extract --model resnet50 --weights random -l layer4 --spatial avg "
    "--views flip data/Train data/Test",
    "featx extract --weights random -l pool5 --label-from-name '^(cat|dog)\\.' train",
)


@main.command(epilog=EXTRACT_EXAMPLES)
@click.argument("data_dirs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "-l",
    "--layer",
    "layer_names",
    multiple=True,
    required=True,
    help="Layer to extract; repeat for several (AlexNet: conv1..conv5, pool5, "
    "fc6, fc7, fc8, or a module path such as features.10; other networks: "
    "`featx layers --model NAME` lists them).",
)
@weights_options
@click.option(
    "--spatial",
    type=click.Choice(SPATIAL),
    default="none",
    show_default=True,
    help="Maps: keep C*H*W (none) or pool globally to C (avg/max); token "
    "sequences (ViT): keep T*D, pool to D (avg/max), or take the class token "
    "(cls). Vectors are kept whole.",
)
@click.option(
    "--views",
    type=click.Choice(tuple(VIEW_SETS)),
    default="center",
    show_default=True,
    help="Crops of each image to store: the centre; the centre and its mirror "
    "(flip); or the four corners, the centre and their mirrors (ten). Each view "
    "is stored and resumed on its own; fit, report and predict use them.",
)
@click.option(
    "--dtype",
    type=click.Choice(DTYPES),
    default="float32",
    show_default=True,
    help="Storage type of the features.",
)
@click.option(
    "--labels",
    "labels_csv",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Labels from a CSV with columns path,label (paths relative to DATA_DIR) "
    "instead of class subfolders.",
)
@click.option(
    "--label-from-name",
    "name_regex",
    default=None,
    metavar="REGEX",
    help="Labels from file names: the first group of REGEX, searched in each "
    "name, is the class (e.g. '^(cat|dog)\\.' for cat.0.jpg).",
)
@click.option(
    "--rebuild",
    is_flag=True,
    help="Recompute the cache from nothing, replacing the file there (for a "
    "damaged cache).",
)
@device_options
@click.option(
    "--decode",
    type=click.Choice(DECODE_MODES),
    default="fast",
    show_default=True,
    help="JPEGs: decode at the smallest DCT scale (1/2, 1/4, 1/8) that still "
    "covers the model's resize target (fast), or every pixel (exact). Images "
    "under twice the target decode in full either way; a cache holds one mode.",
)
@click.option(
    "--precision",
    type=click.Choice(EXTRACT_PRECISIONS),
    default=None,
    help="Arithmetic of the forward pass [default: fp32 on a CPU, bf16 on CUDA]; "
    "a cache holds one precision. int8 (quantized on the folder's own images) "
    "is for --runtime openvino or onnxruntime.",
)
@runtime_option(
    "What runs the forward pass: torch, or the network exported to ONNX once "
    "and run by OpenVINO or ONNX Runtime on the CPU (pip install -e "
    "'.[cpu-fast]'); e.g. --runtime openvino --precision int8 [default: torch]. "
    "A cache holds one runtime; the difference from fp32 torch is printed."
)
@calibration_option
@click.option(
    "--decoder",
    type=click.Choice(DECODERS),
    default=None,
    help="Who decodes JPEGs: PIL in the decode workers, or torchvision's "
    "decode_jpeg in batches on the network's device (nvJPEG on a GPU) "
    "[default: torchvision on CUDA, pil on a CPU].",
)
@model_option
@click.option(
    "--mean",
    "mean_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="caffe-alexnet: subtract this mean image (ilsvrc_2012_mean.npy, BGR "
    "3x256x256, its centre 227x227) instead of the per-channel ImageNet mean.",
)
@engine_option("Run here, or on a Ray cluster (pip install -e '.[ray]').")
@click.option(
    "--address",
    default=None,
    help="Ray cluster: auto, ray://HOST:PORT [default: start a local one].",
)
@click.option(
    "--ray-actors",
    type=click.IntRange(min=1),
    default=None,
    help="With --engine ray: model actors [default: one per GPU, or half the CPUs].",
)
@deprecated_alias(
    "--num-workers",
    "--ray-actors (decode workers are --workers)",
    "extract",
    "old_ray_actors",
    type=click.IntRange(min=1),
)
# Long: one parameter per option, as click passes them, and one call per folder.
def extract(
    data_dirs,
    layer_names,
    spatial,
    dtype,
    weights,
    seed,
    device,
    batch_size,
    workers,
    cache_dir,
    quiet,
    engine,
    address,
    ray_actors,
    old_ray_actors,
    labels_csv,
    name_regex,
    rebuild,
    views,
    model,
    mean_file,
    decode,
    precision,
    runtime,
    calibration,
    decoder,
) -> None:
    """Extract a network's activations (AlexNet's by default; --model NAME) for
    every image under each DATA_DIR into the cache (one cache per folder, one
    model load for all).

    A DATA_DIR is an ImageFolder (one subfolder per class) or a flat folder of
    unlabelled images; --labels FILE.csv or --label-from-name REGEX label images
    at any depth instead (a Kaggle-style train/cat.0.jpg folder).

    Re-running computes only what is missing: new images, changed images and new
    layers. An interrupted run resumes where it stopped.
    """
    if old_ray_actors is not None and ray_actors is not None:
        raise click.UsageError("give --ray-actors only (--num-workers is its old name)")
    ray_actors = old_ray_actors or ray_actors
    check_extract_arguments(
        data_dirs=data_dirs,
        layer_names=layer_names,
        model=model,
        weights=weights,
        mean_file=mean_file,
        labels_csv=labels_csv,
        name_regex=name_regex,
        engine=engine,
        address=address,
        ray_actors=ray_actors,
    )  # before torch is imported: a typo is answered at once
    from featx.extraction import RayEngine
    from featx.extraction import extract as run_extract
    from featx.model import load_weights

    check_before_work(
        model, mean_file, engine, layer_names, spatial, runtime, precision
    )
    labelling = None
    if labels_csv is not None or name_regex is not None:
        from featx.images import Labelling

        labelling = Labelling(labels_csv, name_regex)
    loaded = load_weights(weights, seed=seed, model=model)
    random_weights_banner(loaded.pretrained)  # said before the work, not after
    for data_dir in data_dirs:
        result = run_extract(
            data_dir,
            layers=layer_names,
            spatial=spatial,
            weights=loaded,
            device=device,
            batch_size=batch_size,
            num_workers=workers,
            dtype=dtype,
            cache_dir=cache_dir,
            progress=TqdmProgress(quiet),
            engine=RayEngine(address, ray_actors) if engine == "ray" else "local",
            rebuild=rebuild,
            labelling=labelling,
            mean=mean_file,
            views=views,
            decode=decode,
            precision=precision,
            decoder=decoder,
            runtime=runtime or "torch",
            calibration=calibration,
        )
        print_extraction(result)
