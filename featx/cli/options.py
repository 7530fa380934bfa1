"""Options and parameter types that several commands share.

Every ``click.Choice`` takes its values from the library's vocabulary
(:mod:`featx.choices`, :mod:`featx.images.views`), never from a list typed here.
"""

from __future__ import annotations

import functools
from pathlib import Path

import click

from featx.choices import DEVICES, ENGINES, MODELS, RUNTIMES
from featx.cli.flags import as_flags

__all__ = [
    "CONTEXT",
    "examples",
    "bundle",
    "DeviceType",
    "JobsType",
    "deprecated_alias",
    "tuning_options",
    "regularisation",
    "jobs_option",
    "cv_option",
    "quiet_option",
    "device_options",
    "cache_dir_option",
    "model_option",
    "runtime_option",
    "calibration_option",
    "models_option",
    "split_models",
    "engine_option",
    "fold_engine_options",
    "weights_options",
    "extraction_options",
    "split_list",
    "pick_cache",
]

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def examples(*commands: str) -> str:
    """A command's epilog: ``commands`` as an Examples block that click prints
    as written (``\\b``) after the options. Each one runs offline."""
    return "\b\nExamples:\n" + "\n".join(f"  {line}" for line in commands)


def bundle(*options):
    """One decorator that applies ``options`` in the order given (as --help
    lists them)."""

    def apply(func):
        return functools.reduce(lambda f, opt: opt(f), reversed(options), func)

    return apply


class DeviceType(click.ParamType):
    """``auto``, ``cpu``, ``cuda`` or ``cuda:N`` (:data:`featx.choices.DEVICES`)."""

    name = "|".join(DEVICES)

    def convert(self, value, param, ctx):
        head, _, index = str(value).partition(":")
        if value in DEVICES[:-1] or (head == "cuda" and index.isdigit()):
            return value
        self.fail(f"{value!r} is not one of {', '.join(DEVICES)}", param, ctx)


class JobsType(click.ParamType):
    """A number of parallel jobs: a positive integer, or -1 for every core."""

    name = "N"

    def convert(self, value, param, ctx):
        try:
            jobs = int(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not an integer", param, ctx)
        if jobs == 0 or jobs < -1:
            self.fail(f"{jobs} is not a positive number of jobs or -1", param, ctx)
        return jobs


def deprecated_alias(old: str, new: str, command: str, dest: str, **attrs):
    """``old``, the name ``new`` had before: hidden from --help and kept for one
    release. Using it prints one line on stderr; the command reads its value
    as ``dest`` and prefers it over ``new``'s default."""

    def warn(ctx, param, value):
        if value is not None:
            click.echo(f"note: {old} is deprecated for {command}; use {new}", err=True)
        return value

    return click.option(old, dest, hidden=True, default=None, callback=warn, **attrs)


#: --C, --alpha, --no-tune: fix the regularisation instead of tuning it.
tuning_options = bundle(
    click.option(
        "--C",
        "C",
        type=click.FloatRange(min=0, min_open=True),
        default=None,
        help="Fix C (svm, logreg) instead of tuning it.",
    ),
    click.option(
        "--alpha",
        type=click.FloatRange(min=0, min_open=True),
        default=None,
        help="Fix alpha (ridge, mlp, sgd; head: its weight decay, 5e-4 "
        "unless given) instead of tuning it.",
    ),
    click.option(
        "--no-tune",
        is_flag=True,
        help="Use the default C = 1 / alpha instead of tuning it.",
    ),
    click.option(
        "--grid", is_flag=True, hidden=True, help="Tuning is the default now."
    ),
)


def regularisation(clf: str, C: float | None, alpha: float | None) -> float | None:
    """The fixed value the options give for ``clf``, refusing the wrong one."""
    if C is not None and clf in ("ridge", "mlp", "sgd", "head"):
        raise click.UsageError(f"--clf {clf} is regularised by --alpha, not --C")
    if alpha is not None and clf in ("svm", "logreg"):
        raise click.UsageError(f"--clf {clf} is regularised by --C, not --alpha")
    return C if C is not None else alpha


def jobs_option(help_text: str):
    return click.option(
        "--jobs", type=JobsType(), default=-1, show_default=True, help=help_text
    )


cv_option = click.option(
    "--cv",
    type=click.IntRange(min=2),
    default=5,
    show_default=True,
    help="Number of stratified folds.",
)

quiet_option = click.option("-q", "--quiet", is_flag=True, help="No progress bars.")

#: Where the network runs and how images are decoded: the options of every
#: command that runs AlexNet.
device_options = bundle(
    click.option(
        "--device",
        type=DeviceType(),
        default="auto",
        show_default=True,
        help="Where the network runs.",
    ),
    click.option(
        "--batch-size",
        type=click.IntRange(min=1),
        default=64,
        show_default=True,
        help="Images per forward pass.",
    ),
    click.option(
        "--workers",
        type=click.IntRange(min=0),
        default=None,
        help="Decode worker processes [default: one per core, at most 8 "
        "without a GPU].",
    ),
    quiet_option,
)

cache_dir_option = click.option(
    "--cache-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="FEATX_CACHE_DIR",
    default="cache",
    show_default=True,
    help="Where caches live (env FEATX_CACHE_DIR).",
)

#: --model: which network.
model_option = click.option(
    "--model",
    metavar="NAME",
    default=MODELS[0],
    show_default=True,
    help="The network: alexnet (torchvision's); caffe-alexnet (the original "
    "BVLC network: 227 input, LRN, grouped convolutions; weights from "
    "bvlc_alexnet.npy, alexnet_weights.h5 or bvlc_alexnet.caffemodel); any "
    "torchvision classification model (resnet50, vgg16, vit_b_16, "
    "convnext_tiny, ...); or timm:NAME with the timm extra "
    "(timm:resnet50.a1_in1k).",
)


def runtime_option(help_text: str):
    """--runtime: what runs the forward pass (:data:`featx.choices.RUNTIMES`)."""
    return click.option(
        "--runtime",
        type=click.Choice(RUNTIMES),
        default=None,
        help=help_text,
    )


#: --calibration: the images an int8 network is calibrated on.
calibration_option = click.option(
    "--calibration",
    type=click.IntRange(min=1),
    default=None,
    metavar="N",
    help="With --precision int8: calibrate on N of the folder's images, sampled "
    "with a fixed seed [default: 300]; the sample is part of the cache's identity.",
)


#: ``--models``, which fit and report share: a comma-separated list, as --clfs.
models_option = click.option(
    "--models",
    default=None,
    help="Comma-separated models to compare (e.g. alexnet,resnet18): the most "
    "recent cache of each made of the training folder's images, on the same folds "
    "[default: every model of that folder in --cache-dir; with --cache, that "
    "cache alone].",
)


def split_models(text: str | None) -> list[str] | None:
    """``--models a,b`` as a list; None when not given."""
    names = [m.strip() for m in (text or "").split(",") if m.strip()]
    return names or None


def engine_option(help_text: str):
    """--engine local|ray."""
    return click.option(
        "--engine",
        type=click.Choice(ENGINES),
        default=ENGINES[0],
        show_default=True,
        help=help_text,
    )


def fold_engine_options(command: str):
    """Where cross-validation folds run: here (joblib) or on a Ray cluster;
    ``--backend`` is the old name of ``--engine``."""
    return bundle(
        engine_option(
            "Run folds through joblib here, or on Ray (pip install -e '.[ray]')."
        ),
        deprecated_alias(
            "--backend", "--engine", command, "backend", type=click.Choice(ENGINES)
        ),
        click.option(
            "--address",
            default=None,
            help="Ray cluster for --engine ray [default: start a local one].",
        ),
    )


#: Which weights, and where their caches go: what a user of ``extract`` sets
#: most often after the layers (so --help lists them first).
weights_options = bundle(
    click.option(
        "--weights",
        default="imagenet",
        show_default=True,
        help="'imagenet' (the model's pretrained weights: torchvision's DEFAULT "
        "via TORCH_HOME, timm's hub via HF_HOME), 'random' (seeded, NOT "
        "pretrained) or a file: a state dict (.pth, .safetensors), or for "
        "caffe-alexnet bvlc_alexnet.npy, alexnet_weights.h5 or "
        "bvlc_alexnet.caffemodel.",
    ),
    click.option(
        "--seed",
        type=int,
        default=0,
        show_default=True,
        help="Seed for --weights random.",
    ),
    cache_dir_option,
)

#: Options shared by every command that extracts.
extraction_options = bundle(weights_options, device_options)


def split_list(value: str | None) -> list[str] | None:
    """A comma-separated option as a list; None when it was not given."""
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


def pick_cache(cache, cache_dir, *, say: bool = True, model=None, layer=None) -> Path:
    """The cache a command that takes one CACHE argument reads: the one named
    (a data folder: its cache made with ``model``, when given), or the one
    :func:`featx.cache.choose_caches` chooses among the caches made with
    ``model`` and holding ``layer`` (when given), said on stderr with how to
    choose another (unless not ``say``: output a program reads)."""
    from featx.cache import choose_caches, resolve_cache

    if cache is not None:
        path = resolve_cache(cache, cache_dir, model=model, layer=layer)
        if say and model is None and Path(cache).is_dir():
            _say_folder_choice(path, Path(cache), cache_dir, layer)
        return path
    choice = choose_caches(
        cache_dir,
        find_test=False,
        how="naming a CACHE",
        verb="reading",
        models=[model] if model else None,
        layer=layer,
    )
    for note in choice.notes if say else ():
        click.echo(f"note: {as_flags(note)}", err=True)
    return choice.train


def _say_folder_choice(path: Path, folder: Path, cache_dir, layer) -> None:
    """On stderr, which of a data folder's several caches (holding ``layer``)
    was read, and the --model that reads another."""
    from featx.cache.locate import default_cache_dir, folder_caches

    caches = folder_caches(folder, cache_dir or default_cache_dir(), layer)
    if len({*caches.values()}) > 1:
        others = sorted({m for p, m in caches.items() if m != caches[path]})
        click.echo(
            f"note: reading {path.name} ({caches[path]}), the most recent of the "
            f"{len(caches)} caches of {folder}"
            + (f" holding {layer}" if layer else "")
            + f"; {' / '.join(f'--model {m}' for m in others)} reads another",
            err=True,
        )
