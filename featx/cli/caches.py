"""Commands that read caches or describe the network: ``info``, ``export`` and
``layers``."""

from __future__ import annotations

import json
from pathlib import Path

import click

from featx.choices import EXPORT_FORMATS
from featx.cli.app import main
from featx.cli.checks import check_model
from featx.cli.options import cache_dir_option, examples, model_option, pick_cache
from featx.cli.output import (
    print_info,
    print_layers,
    print_skipped,
    print_warnings,
)

__all__ = [
    "LAYERS_EXAMPLES",
    "INFO_EXAMPLES",
    "cache_model_option",
    "EXPORT_EXAMPLES",
    "layers",
    "info",
    "export",
]

LAYERS_EXAMPLES = examples(
    "featx layers",
    "featx layers --model resnet50",
    "featx layers --model timm:efficientnet_lite0 --json",
)
INFO_EXAMPLES = examples(
    "featx info",
    "featx info data/Test --json",
    "featx info data/Train --skipped",
)
#: --model for commands that read one cache: which network's cache of a folder.
cache_model_option = click.option(
    "--model",
    metavar="NAME",
    default=None,
    help="Read the cache made with this network (alexnet, resnet18, ...) of the "
    "data folder given, or of the folder chosen [default: any].",
)

EXPORT_EXAMPLES = examples(
    "featx export --layer fc7 data/Train",
    "featx export --layer fc7 --format csv --out train-fc7.csv data/Train",
    "featx export --layer avgpool --model resnet18 data/Train",
)


@main.command(epilog=LAYERS_EXAMPLES)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@model_option
def layers(as_json: bool, model: str) -> None:
    """List every layer name with its activation shape, flattened size and the
    --spatial reductions it takes.

    Friendly names come first (AlexNet: conv1..conv5 after ReLU, pool5, fc6 and
    fc7 after ReLU, fc8 logits; caffe-alexnet adds norm1 and norm2, after LRN;
    ResNets layer1..layer4, avgpool, fc; VGGs conv1_1..conv5_3, pool1..pool5,
    fc6..fc8), then every module path (AlexNet) or graph node (torchvision;
    a module's name also stands for its last node) or feature tap (timm).
    """
    check_model(model)  # an unknown network is refused before torch is imported
    from featx.model import layer_table

    print_layers(layer_table(model), as_json)


@main.command(epilog=INFO_EXAMPLES)
@click.argument("cache", required=False)
@cache_dir_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option(
    "--skipped",
    is_flag=True,
    help="List the folder's files that are no image (path: reason), and nothing else.",
)
@click.option(
    "--warnings",
    "show_warnings",
    is_flag=True,
    help="List each image the decoders warned about, with what they said.",
)
@cache_model_option
def info(cache, cache_dir, as_json, skipped, show_warnings, model) -> None:
    """Describe a cache: images, layers, classes, failures, files that are no
    image, decoder warnings, model, weights, versions.

    CACHE is a path, a name in the cache directory or a data folder; it may be
    left out as for `featx fit`. Of a folder extracted with several networks,
    the most recent cache is described unless --model names one.
    """
    from featx.cache import cache_info

    data = cache_info(pick_cache(cache, cache_dir, say=not as_json, model=model))
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    if skipped:
        print_skipped(data)
    if show_warnings:
        print_warnings(data)
    if not (skipped or show_warnings):
        print_info(data)


@main.command(epilog=EXPORT_EXAMPLES)
@click.argument("cache", required=False)
@click.option("-l", "--layer", required=True, help="The layer to export.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(EXPORT_FORMATS),
    default="npz",
    show_default=True,
    help="npz (numpy), csv (one row per image), parquet (pip install -e '.[parquet]').",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Output file [default: <cache>-<layer>.<format> here].",
)
@cache_model_option
@cache_dir_option
def export(cache, layer, fmt, out, model, cache_dir) -> None:
    """Write one layer of a cache, with paths, labels and class names, for
    tools that do not read HDF5.

    CACHE is a path, a name in the cache directory, or a data folder; it may be
    left out as for `featx fit`. Of a folder extracted with several networks,
    the most recent cache holding --layer is read unless --model names one.
    """
    from featx.cache.export import export as run_export

    chosen = pick_cache(cache, cache_dir, model=model, layer=layer)
    path = run_export(chosen, layer, fmt, out)
    click.echo(f"wrote {path}")
