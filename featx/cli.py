"""The ``featx`` command line: thin click wrappers over the library.

Each command function takes one parameter per option, as click passes them; that
is why several have more than eight.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from pathlib import Path

import click

from featx.runtime import configure_openmp

configure_openmp()  # before anything imports torch

from featx.choices import CLASSIFIERS, HEAD_TRAIN_LAYERS
from featx.errors import FeatxError, NoSpaceError, printable

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class FeatxGroup(click.Group):
    """Turns featx's own errors into one-line messages and a non-zero exit."""

    #: Commands whose finished work survives an interruption and resumes.
    RESUMABLE = ("extract",)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except NoSpaceError as exc:
            # HDF5 cannot be trusted to close cleanly after a failed write (it
            # crashed at exit in tests): say it, and leave without its clean-up.
            # Temporary files were removed and the lock goes with the process.
            click.echo(f"Error: {exc}", err=True)
            sys.stderr.flush()
            os._exit(1)
        except FeatxError as exc:
            raise click.ClickException(str(exc)) from exc
        except OSError as exc:
            # A fault of the machine (permissions, disk, a vanished file) that no
            # check above foresaw: one line, never a traceback.
            where = f" {printable(str(exc.filename))}" if exc.filename else ""
            raise click.ClickException(
                f"{exc.strerror or exc}:{where}" if where else str(exc)
            ) from exc
        except KeyboardInterrupt:
            if ctx.invoked_subcommand in self.RESUMABLE:
                message = (
                    "Interrupted. Every finished batch is kept in the cache; run the "
                    "same command again to resume."
                )
            else:
                message = "Interrupted; nothing was written."
            click.echo("\n" + message, err=True)
            sys.exit(130)


class DeviceType(click.ParamType):
    """``auto``, ``cpu``, ``cuda`` or ``cuda:N``."""

    name = "auto|cpu|cuda|cuda:N"

    def convert(self, value, param, ctx):
        head, _, index = str(value).partition(":")
        if value in ("auto", "cpu", "cuda") or (head == "cuda" and index.isdigit()):
            return value
        self.fail(f"{value!r} is not one of auto, cpu, cuda, cuda:N", param, ctx)


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


def tuning_options(func):
    """--C, --alpha, --no-tune: fix the regularisation instead of tuning it."""
    options = [
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
    ]
    return functools.reduce(lambda f, opt: opt(f), reversed(options), func)


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


def cv_option(func):
    return click.option(
        "--cv",
        type=click.IntRange(min=2),
        default=5,
        show_default=True,
        help="Number of stratified folds.",
    )(func)


def device_options(func):
    """Where the network runs and how images are decoded: the options of every
    command that runs AlexNet."""
    options = [
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
        click.option("-q", "--quiet", is_flag=True, help="No progress bars."),
    ]
    return functools.reduce(lambda f, opt: opt(f), reversed(options), func)


@click.group(cls=FeatxGroup, context_settings=CONTEXT)
@click.version_option(package_name="featx")
def main() -> None:
    """Pretrained AlexNet features from any layer, cached in HDF5, and classical
    classifiers trained and compared on them.

    \b
    Typical session:
      featx extract --layer conv5 --layer fc7 data/Train
      featx fit --clf svm
      featx report
    """


def cache_dir_option(func):
    return click.option(
        "--cache-dir",
        type=click.Path(file_okay=False, path_type=Path),
        envvar="FEATX_CACHE_DIR",
        default="cache",
        show_default=True,
        help="Where caches live (env FEATX_CACHE_DIR).",
    )(func)


class TqdmProgress:
    """Draws one tqdm bar per stage on stderr."""

    UNITS = {
        "hashing": "file",
        "copying": "row",
        "extracting": "img",
        "predicting": "img",
        "fitting": "fit",
    }

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.bar = None

    def start(self, stage: str, total: int) -> None:
        from tqdm import tqdm

        self.bar = tqdm(
            total=total,
            desc=stage,
            unit=self.UNITS.get(stage, "it"),
            disable=self.quiet,
            file=sys.stderr,
            dynamic_ncols=True,
        )

    def advance(self, n: int) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def describe(self, text: str) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(text, refresh=True)

    def finish(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def random_weights_banner(pretrained: bool) -> None:
    if not pretrained:
        click.secho(
            "WARNING: random weights, NOT pretrained: these features are for testing "
            "only.",
            fg="yellow",
            bold=True,
            err=True,
        )


def model_option(func):
    """--model: which AlexNet."""
    return click.option(
        "--model",
        "model_name",
        type=click.Choice(["alexnet", "caffe-alexnet"]),
        default="alexnet",
        show_default=True,
        help="torchvision's AlexNet, or the original BVLC/Caffe network (227 "
        "input, LRN, grouped convolutions; weights from bvlc_alexnet.npy, "
        "alexnet_weights.h5 or bvlc_alexnet.caffemodel).",
    )(func)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@model_option
def layers(as_json: bool, model_name: str) -> None:
    """List every layer name with its activation shape and flattened size.

    Friendly names come first (conv1..conv5 after ReLU, pool5, fc6 and fc7 after
    ReLU, fc8 logits; caffe-alexnet adds norm1 and norm2, after LRN), then every
    module path.
    """
    from featx.model import layer_table

    table = layer_table(model_name)
    if as_json:
        click.echo(
            json.dumps(
                [
                    {
                        "name": s.name,
                        "module_path": s.module_path,
                        "shape": list(s.shape),
                        "dim": s.dim,
                    }
                    for s in table
                ],
                indent=2,
            )
        )
        return
    click.echo(f"{'name':<14}{'module':<15}{'shape':<16}{'dim':>8}")
    for s in table:
        shape = "x".join(map(str, s.shape))
        click.echo(f"{s.name:<14}{s.module_path:<15}{shape:<16}{s.dim:>8}")


def backend_options(func):
    """Where cross-validation folds run: here (joblib) or on a Ray cluster."""
    options = [
        click.option(
            "--backend",
            type=click.Choice(["local", "ray"]),
            default="local",
            show_default=True,
            help="Run folds through joblib here, or on Ray (pip install -e '.[ray]').",
        ),
        click.option(
            "--address",
            default=None,
            help="Ray cluster for --backend ray [default: start a local one].",
        ),
    ]
    return functools.reduce(lambda f, opt: opt(f), reversed(options), func)


def extraction_options(func):
    """Options shared by every command that runs AlexNet."""
    options = [
        click.option(
            "--weights",
            default="imagenet",
            show_default=True,
            help="'imagenet' (torchvision IMAGENET1K_V1 via TORCH_HOME), "
            "'random' (seeded, NOT pretrained) or a file: a state dict, or for "
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
        device_options,
    ]
    return functools.reduce(lambda f, opt: opt(f), reversed(options), func)


@main.command()
@click.argument("data_dirs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "-l",
    "--layer",
    "layer_names",
    multiple=True,
    required=True,
    help="Layer to extract; repeat for several (conv1..conv5, pool5, fc6, "
    "fc7, fc8, or a module path such as features.10).",
)
@click.option(
    "--spatial",
    type=click.Choice(["none", "avg", "max"]),
    default="none",
    show_default=True,
    help="Conv maps: keep C*H*W (none) or pool globally to C (avg/max).",
)
@click.option(
    "--dtype",
    type=click.Choice(["float32", "float16"]),
    default="float32",
    show_default=True,
    help="Storage type of the features.",
)
@click.option(
    "--engine",
    type=click.Choice(["local", "ray"]),
    default="local",
    show_default=True,
    help="Run here, or on a Ray cluster (pip install -e '.[ray]').",
)
@click.option(
    "--address",
    default=None,
    help="Ray cluster: auto, ray://HOST:PORT [default: start a local one].",
)
@click.option(
    "--ray-actors",
    "--num-workers",
    "ray_actors",
    type=click.IntRange(min=1),
    default=None,
    help="With --engine ray: model actors [default: one per GPU, or half the "
    "CPUs]. (--num-workers is the old name.)",
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
@click.option(
    "--views",
    type=click.Choice(["center", "flip", "ten"]),
    default="center",
    show_default=True,
    help="Crops of each image to store: the centre; the centre and its mirror "
    "(flip); or the four corners, the centre and their mirrors (ten). Each view "
    "is stored and resumed on its own; fit, report and predict use them.",
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
@extraction_options
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
    labels_csv,
    name_regex,
    rebuild,
    views,
    model_name,
    mean_file,
) -> None:
    """Extract AlexNet activations for every image under each DATA_DIR into the
    cache (one cache per folder, one model load for all).

    A DATA_DIR is an ImageFolder (one subfolder per class) or a flat folder of
    unlabelled images; --labels FILE.csv or --label-from-name REGEX label images
    at any depth instead (a Kaggle-style train/cat.0.jpg folder).

    Re-running computes only what is missing: new images, changed images and new
    layers. An interrupted run resumes where it stopped.
    """
    from featx.extraction import RayEngine
    from featx.extraction import extract as run_extract
    from featx.model import load_weights, preprocess_for, resolve_layers

    resolve_layers(list(layer_names), model_name)  # refuse a typo before any work
    preprocess_for(model_name, mean_file)  # and a bad mean file
    labelling = None
    if labels_csv is not None or name_regex is not None:
        from featx.images import Labelling

        labelling = Labelling(labels_csv, name_regex)
    if engine == "ray":
        from featx.ray_engine import require_ray

        require_ray()  # before any work: say how to install it
    loaded = load_weights(weights, seed=seed, arch=model_name)
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
        )
        print_extraction(result)


def print_extraction(result) -> None:
    """The summary of one `featx extract` folder."""
    click.echo(f"cache:   {result.cache_path}")
    click.echo(f"layers:  {', '.join(result.layers)}")
    if result.views != ["center"]:
        click.echo(f"views:   {', '.join(result.views)}")
    click.echo(
        f"images:  {result.n_images} ({result.n_new} new, {result.n_reused} reused, "
        f"{result.n_failed} failed)"
    )
    if result.n_new:
        click.echo(
            f"speed:   {result.images_per_s:.1f} img/s on {result.device} "
            f"({result.seconds:.1f} s)"
        )
    if result.ignored:
        click.echo(
            f"ignored: {len(result.ignored)} image(s) directly in DATA_DIR, outside "
            "any class folder (e.g. " + printable(result.ignored[0]) + ")"
        )
    for note in result.notes:
        click.echo(f"note:    {note}")
    for label, items in (("skipped", result.skipped), ("failed", result.failures)):
        for item in items[:20]:
            click.echo(f"{label + ':':<9}{printable(item.path)}: {item.reason}")
        if len(items) > 20:
            click.echo(f"{label + ':':<9}... and {len(items) - 20} more (`featx info`)")
    if result.n_images == 0:
        raise click.ClickException("no image could be decoded; nothing to extract")


@main.command()
@click.argument("cache", required=False)
@cache_dir_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def info(cache, cache_dir, as_json) -> None:
    """Describe a cache: images, layers, classes, failures, model, weights,
    versions.

    CACHE is a path or a name in the cache directory; it may be left out when
    there is only one cache.
    """
    from featx.cache import cache_info, resolve_cache
    from featx.views import setting_of

    data = cache_info(resolve_cache(cache, cache_dir))
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    w = data["weights"]
    random_weights_banner(w["pretrained"])
    click.echo(f"cache:    {data['path']}  (format {data['format']})")
    click.echo(f"data:     {data['data_root']}")
    click.echo(f"images:   {data['n_images']}   failed: {data['n_failed']}")
    click.echo(f"model:    {data['model']}")
    click.echo(f"weights:  {w['id']}  sha256 {w['sha256'][:16]}…")
    v = data["versions"]
    click.echo(
        f"versions: featx {v['featx']}, torch {v['torch']}, "
        f"torchvision {v['torchvision']}"
    )
    click.echo("layers:")
    for key, layer in data["layers"].items():
        state = (
            ""
            if layer["complete"]
            else f"  INCOMPLETE {layer['rows_done']}/{data['n_images']}"
        )
        views = layer.get("views", {})
        if set(views) - {"center"}:
            whole = [v for v, d in views.items() if d["rows_done"] == data["n_images"]]
            part = [
                f"{v} {d['rows_done']}/{data['n_images']}"
                for v, d in views.items()
                if d["rows_done"] != data["n_images"]
            ]
            state += f"  views: {setting_of(whole)} ({len(whole)})"
            state += f"  INCOMPLETE {', '.join(part)}" if part else ""
        click.echo(f"  {key:<14}{layer['dim']:>8}  {layer['dtype']}{state}")
    if data["classes"]:
        click.echo("classes:")
        for name, count in data["classes"].items():
            click.echo(f"  {name:<20}{count:>7}")
    for f in data["failed"]:
        click.echo(f"failed:   {printable(f['path'])}: {f['reason']}")


@main.command()
@click.argument("cache", required=False)
@click.option("-l", "--layer", required=True, help="The layer to export.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["npz", "csv", "parquet"]),
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
@cache_dir_option
def export(cache, layer, fmt, out, cache_dir) -> None:
    """Write one layer of a cache, with paths, labels and class names, for
    tools that do not read HDF5.

    CACHE is a path, a name in the cache directory, or a data folder; it may be
    left out as for `featx fit`.
    """
    from featx.cache import resolve_cache
    from featx.cache.export import export as run_export

    path = run_export(resolve_cache(cache, cache_dir), layer, fmt, out)
    click.echo(f"wrote {path}")


def held_out_for(test, cache, cache_dir, quiet, layers=None):
    """``--test`` as given, or, for a data folder, its cache with the training
    cache's layers (extracted now if missing, with the same weights)."""
    if test is None or not Path(test).is_dir():
        return test
    from featx.cache import choose_caches, resolve_cache
    from featx.workflow import held_out_cache

    train = resolve_cache(cache, cache_dir) if cache else choose_caches(cache_dir).train
    return held_out_cache(
        Path(test),
        train=train,
        cache_dir=cache_dir,
        layers=layers,
        progress=TqdmProgress(quiet),
    )


def print_notes(notes: list[str]) -> None:
    """Choices a command made on the user's behalf, said before its results."""
    for note in notes:
        click.echo(f"note: {note}")


def describe_views(views: list[str], augmented: bool = True) -> str:
    """How a fit used the views of each image, in words."""
    from featx.views import setting_of

    train = "each a training row" if augmented else "trained on the centre"
    return (
        f"{setting_of(views)} ({len(views)} per image: {train}, scores averaged "
        "over them)"
    )


def print_fit(result) -> None:
    """The short table `featx fit` prints."""
    random_weights_banner(result.pretrained)
    print_notes(result.notes)
    if result.layer_scores:
        click.echo(f"layers compared ({result.cv}-fold CV accuracy), best kept:")
        for row in result.layer_scores:
            mark = "  <- best" if row["layer"] == result.layer else ""
            click.echo(
                f"  {row['layer']:<14}{row['cv_accuracy_mean']:.4f} ± "
                f"{row['cv_accuracy_std']:.4f}{mark}"
            )
    click.echo(
        f"cache: {Path(result.cache).name}   layer: {result.layer} "
        f"({result.n_features})   clf: {result.clf}   rows: {result.n_rows}, "
        f"{len(result.classes)} classes"
    )
    if result.views != ["center"]:
        click.echo(f"views: {describe_views(result.views, result.train_views)}")
    how = "tuned inside each training fold" if result.tuned else "fixed"
    param = ", ".join(f"{k} {v:g}" for k, v in result.params.items())
    click.echo(
        f"{result.cv}-fold stratified CV, shuffled, seed {result.seed}; "
        f"scale {result.scale}" + (f", PCA {result.pca}" if result.pca else "")
    )
    if param:
        click.echo(f"regularisation {how}; final model: {param}")
    click.echo(f"  {'fold':<6}{'accuracy':>10}{'f1_macro':>10}{'fit s':>8}  chosen")
    scores = result.cv_scores
    chosen = result.cv_params or [{}] * len(result.fit_times)
    for i, (acc, f1, t, p) in enumerate(
        zip(
            scores["accuracy"],
            scores["f1_macro"],
            result.fit_times,
            chosen,
            strict=True,
        ),
        1,
    ):
        value = ", ".join(f"{k} {v:g}" for k, v in p.items())
        click.echo(f"  {i:<6}{acc:>10.4f}{f1:>10.4f}{t:>8.2f}  {value}")
    click.echo(
        f"  {'mean':<6}{result.mean('accuracy'):>10.4f}{result.mean('f1_macro'):>10.4f}"
        f"{sum(result.fit_times) / len(result.fit_times):>8.2f}"
    )
    click.echo(
        f"  {'± std':<6}{result.std('accuracy'):>10.4f}{result.std('f1_macro'):>10.4f}"
    )
    if result.test:
        t = result.test
        click.echo(
            f"test: {Path(t['cache']).name}, {t['n_images']} images: accuracy "
            f"{t['accuracy']:.4f}, f1_macro {t['f1_macro']:.4f}"
        )
        width = max(len(c) for c in result.classes) + 2
        click.echo("confusion (rows: true, columns: predicted):")
        click.echo(" " * width + "".join(f"{c[:8]:>9}" for c in result.classes))
        for name, row in zip(result.classes, t["confusion"], strict=True):
            click.echo(f"{name:<{width}}" + "".join(f"{v:>9}" for v in row))
    if result.model_path:
        click.echo(f"model: {result.model_path} (sha256 in {result.model_path}.sha256)")


@main.command()
@click.option(
    "--clf",
    type=click.Choice(CLASSIFIERS),
    default="svm",
    show_default=True,
    help="Classifier (sgd streams from disk and is not tuned; head fine-tunes "
    "AlexNet's own fc6-fc8 on cached pool5, see --head-train).",
)
@click.option(
    "--head-train",
    type=click.Choice(HEAD_TRAIN_LAYERS),
    default="fc6-fc8",
    show_default=True,
    help="--clf head: the layers that learn; the others keep the weights' "
    "values (fc8 alone is a new last layer on AlexNet's frozen fc7).",
)
@click.option(
    "--layer",
    default=None,
    help="Layer of the cache [default: cross-validate each complete layer and keep "
    "the best].",
)
@click.option(
    "--cache",
    default=None,
    help="Cache path, name or data folder [default: the most recent cache in "
    "--cache-dir whose folder is not named Test/Val/...].",
)
@cache_dir_option
@cv_option
@click.option(
    "--repeats",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Repeats of the k-fold CV, reshuffled with seed+1, seed+2, ...",
)
@click.option(
    "--test",
    default=None,
    help="A held-out cache or data folder (e.g. data/Test), scored by the model "
    "refit on all training rows [default: a sibling folder named Test/Val/... "
    "extracted with the same weights].",
)
@tuning_options
@jobs_option("Folds run in parallel through joblib (-1: every core).")
@click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    help="Seed for the folds and the classifier.",
)
@click.option(
    "--scale",
    type=click.Choice(["standard", "l2", "none"]),
    default="standard",
    show_default=True,
    help="Preprocessing of features.",
)
@click.option(
    "--pca",
    type=click.IntRange(min=1),
    default=None,
    help="Reduce to this many PCA components first.",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Model file [default: models/<cache>-<layer>-<clf>.skops].",
)
@click.option(
    "--center-only",
    is_flag=True,
    help="Use only the centre crop of a cache extracted with --views flip/ten "
    "[default: train on every view and average each image's scores over them].",
)
@click.option(
    "--no-augment",
    is_flag=True,
    help="With views: train on the centre crop only, still averaging the scores "
    "of every view at prediction (test-time augmentation alone).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@backend_options
def fit(
    clf,
    head_train,
    layer,
    cache,
    cache_dir,
    cv,
    repeats,
    test,
    C,
    alpha,
    no_tune,
    grid,
    jobs,
    seed,
    scale,
    pca,
    out,
    center_only,
    no_augment,
    as_json,
    quiet,
    backend,
    address,
) -> None:
    """Cross-validate a classifier on cached features, refit it on every row and
    save it (with a sha256 sidecar) for `featx predict`.

    The classifier's regularisation (C for svm and logreg, alpha for ridge and mlp)
    is tuned inside each training fold (each value fitted on one half of the
    fold's training rows and scored on the other; on both halves below 1,000
    rows), so the CV numbers stay honest; --C / --alpha fix it, --no-tune uses
    the defaults.

    With one cache in the cache directory holding one layer, `featx fit --clf svm`
    needs nothing else.
    """
    from featx.fit import fit as run_fit

    test = held_out_for(test, cache, cache_dir, quiet or as_json)
    result = run_fit(
        cache=cache,
        cache_dir=cache_dir,
        layer=layer,
        clf=clf,
        cv=cv,
        repeats=repeats,
        test=test,
        tune=not no_tune,
        value=regularisation(clf, C, alpha),
        jobs=jobs,
        seed=seed,
        scale=scale,
        pca=pca,
        out=out,
        backend=backend,
        address=address,
        progress=TqdmProgress(quiet or as_json),
        center_only=center_only,
        train_views=not no_augment,
        head_train=head_train,
    )
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=2))
    else:
        print_fit(result)


@main.command()
@click.option(
    "--model",
    "model_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="A model file written by `featx fit`.",
)
@click.argument(
    "paths", nargs=-1, required=True, type=click.Path(path_type=Path, readable=False)
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
@click.option("--csv", "as_csv", is_flag=True, help="Print CSV.")
@click.option(
    "--weights",
    default=None,
    help="Where the model's weights file is, if it moved (checked by sha256).",
)
@click.option(
    "--top-k",
    "top_k",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Also list the K best classes with their scores.",
)
@click.option(
    "--center-only",
    is_flag=True,
    help="A model fitted on several views: score the centre crop alone (one "
    "forward pass per image instead of one per view).",
)
@device_options
def predict(
    model_path,
    paths,
    as_json,
    as_csv,
    weights,
    top_k,
    center_only,
    device,
    batch_size,
    workers,
    quiet,
) -> None:
    """Predict the class of each image in PATHS (files or folders).

    Extracts only the layer the model needs, with the weights and preprocessing
    recorded in the model. Each bad path is reported on its own line and the
    others go on. In a labelled folder (subfolders named like the model's
    classes) the true class is shown too, and the accuracy at the end.
    """
    import csv

    from featx.predict import accuracy
    from featx.predict import predict as run_predict

    if as_json and as_csv:
        raise click.UsageError("choose one of --json and --csv")
    from featx.modelfile import load_model

    model = load_model(model_path)
    random_weights_banner(bool(model[1].get("weights_pretrained", False)))
    views = model[1].get("views", ["center"])
    if len(views) > 1:
        from featx.views import setting_of

        how = (
            "the centre crop only (--center-only)"
            if center_only
            else f"{setting_of(views)}: {len(views)} crops per image, scores averaged"
        )
        click.echo(f"views: {how}", err=True)
    results = run_predict(
        model,
        list(paths),
        weights=weights,
        device=device,
        batch_size=batch_size,
        num_workers=workers,
        progress=TqdmProgress(quiet),
        top_k=top_k,
        center_only=center_only,
    )
    labelled = any(r.true_label is not None for r in results)
    rows = [
        {
            "path": r.path,
            "label": r.label,
            "score": r.score,
            "score_kind": r.score_kind,
            "error": r.error,
            **({"true_label": r.true_label} if labelled else {}),
            **({"top": [list(t) for t in r.top]} if top_k > 1 else {}),
        }
        for r in results
    ]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
    elif as_csv:
        writer = csv.DictWriter(sys.stdout, fieldnames=list(rows[0]))
        writer.writeheader()
        for row in rows:
            if "top" in row:
                row["top"] = ";".join(f"{c}:{v:.4f}" for c, v in row["top"])
            writer.writerow(row)
    else:
        for r in results:
            click.echo(prediction_line(r, labelled, top_k))
    scored = accuracy(results)
    if scored is not None:
        click.echo(
            f"accuracy: {scored[0]:.4f} on {scored[1]} labelled image(s)",
            err=as_json or as_csv,
        )
    if all(r.error for r in results):
        raise click.ClickException("no image could be read")


def prediction_line(r, labelled: bool, top_k: int) -> str:
    """One image of `featx predict`'s table, tab-separated."""
    if r.error:
        return f"{r.path}\tERROR: {r.error}"
    line = f"{r.path}\t{r.label}\t{r.score:.4f} ({r.score_kind})"
    if labelled:
        mark = (
            ""
            if r.true_label is None
            else ("ok" if r.true_label == r.label else "WRONG")
        )
        line += f"\ttrue: {r.true_label or '?'} {mark}".rstrip()
    if top_k > 1:
        line += "\ttop: " + ", ".join(f"{c} {v:.4f}" for c, v in r.top)
    return line


def _split(value: str | None) -> list[str] | None:
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


def print_report(report) -> None:
    from featx.render import describe_best

    random_weights_banner(report.pretrained)
    print_notes(report.notes)
    click.echo(
        f"{len(report.rows)} results ({report.computed} computed, {report.reused} "
        f"reused). Best: {describe_best(report.best)}"
    )
    width = max([8, *(len(r["clf"]) + 2 for r in report.rows)])
    for r in report.rows:
        test = r.get("test_accuracy")
        low, high = r["cv_accuracy_ci95"]
        mark = "best" if r is report.best else ("tied" if r["tied_with_best"] else "")
        click.echo(
            f"  {r['layer']:<12}{r['clf']:<{width}}{r['cv_accuracy_mean']:.4f} "
            f"[{low:.4f}, {high:.4f}]"
            + (f"   test {test:.4f}" if test is not None else "")
            + (f"   {mark}" if mark else "")
        )
    click.echo(f"report: {report.files['html']}")
    click.echo(f"        {report.files['md']}, results.json, results.csv, figures")


@main.command()
@click.option(
    "--cache",
    default=None,
    help="Training cache or data folder [default: the most recent cache whose "
    "folder is not named Test/Val/...].",
)
@click.option(
    "--test",
    default=None,
    help="A held-out cache or data folder to score every model on [default: a "
    "sibling folder named Test/Val/... extracted with the same weights].",
)
@click.option(
    "--layers",
    default=None,
    help="Comma-separated layers, e.g. conv5_avg,pool5,fc6,fc7 "
    "[default: every layer in the cache].",
)
@click.option(
    "--clfs",
    default="svm,logreg,mlp",
    show_default=True,
    help="Comma-separated classifiers: svm, logreg, ridge, mlp, sgd, head (AlexNet's "
    "fc6-fc8 fine-tuned on pool5). On a cache with --views flip/ten, each but "
    "head is also fitted on every view (rows named like svm+ten).",
)
@click.option(
    "--center-only",
    is_flag=True,
    help="Fit on the centre crop alone, even where the cache holds more views.",
)
@cv_option
@click.option(
    "--repeats",
    type=click.IntRange(min=1),
    default=2,
    show_default=True,
    help="Repeats of the k-fold CV (reshuffled): the intervals and tests use "
    "every fold of every repeat.",
)
@click.option(
    "--seed", type=int, default=0, show_default=True, help="Seed of the folds."
)
@jobs_option("Folds run in parallel through joblib (-1: every core).")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Output folder [default: reports/<cache name>].",
)
@click.option(
    "--no-tune",
    is_flag=True,
    help="Fixed default regularisation instead of tuning it in each fold.",
)
@click.option("--force", is_flag=True, help="Recompute results already stored.")
@cache_dir_option
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@backend_options
def report(
    cache,
    test,
    layers,
    clfs,
    cv,
    repeats,
    seed,
    jobs,
    out,
    no_tune,
    force,
    cache_dir,
    quiet,
    backend,
    address,
    center_only,
) -> None:
    """Compare layers × classifiers: cross-validate each (and score it on --test),
    then write report.html, report.md, results.json, results.csv and figures.

    Results already computed for the same data and settings are reused.
    """
    from featx.report import make_report

    test = held_out_for(test, cache, cache_dir, quiet, layers=_split(layers))
    result = make_report(
        cache=cache,
        cache_dir=cache_dir,
        test=test,
        layers=_split(layers),
        clfs=_split(clfs) or [],
        cv=cv,
        repeats=repeats,
        seed=seed,
        jobs=jobs,
        out=out,
        force=force,
        tune=not no_tune,
        progress=TqdmProgress(quiet),
        backend=backend,
        address=address,
        center_only=center_only,
    )
    print_report(result)


@main.command()
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default="featx-demo",
    show_default=True,
    help="Where everything goes.",
)
@click.option(
    "--per-class",
    type=click.IntRange(min=5),
    default=None,
    help="Use at most this many digits per class [default: all 1,797].",
)
@cv_option
@device_options
def demo(out, per_class, cv, device, batch_size, workers, quiet) -> None:
    """Run the whole pipeline on scikit-learn's bundled digits, offline.

    Writes the digits as PNG files (Train / Test), extracts conv5 (pooled), fc6
    and fc7, fits svm, logreg and mlp, and writes a report. Uses the pretrained
    weights when they are cached or downloadable, random weights otherwise.
    """
    from featx.demo import demo_weights, run_demo

    if not quiet:
        click.echo(
            f"featx demo: digits → AlexNet features → classifiers → {out}/report"
        )
    loaded, note = demo_weights()
    if note:  # said before the work, not after it
        click.secho(note, fg="yellow", err=True)
    random_weights_banner(loaded.pretrained)
    result = run_demo(
        out,
        per_class=per_class,
        cv=cv,
        device=device,
        batch_size=batch_size,
        num_workers=workers,
        progress=TqdmProgress(quiet),
        weights=loaded,
    )
    click.echo(f"data:   {result.train} and {result.test}")
    print_report(result.report)
    click.echo(f"Open {result.report.files['html']} in a browser.")
