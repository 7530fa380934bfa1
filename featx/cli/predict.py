"""``featx predict``: classify images with a model file written by ``featx fit``."""

from __future__ import annotations

from pathlib import Path

import click

from featx.cli.app import main
from featx.cli.options import (
    deprecated_alias,
    device_options,
    examples,
    runtime_option,
)
from featx.cli.output import TqdmProgress, print_predictions, random_weights_banner

__all__ = [
    "MODEL_FILE",
    "say_views",
    "say_reused",
    "SCORE_MEANINGS",
    "say_scores",
    "PREDICT_EXAMPLES",
    "predict",
]

MODEL_FILE = click.Path(dir_okay=False, path_type=Path)


def say_views(meta, center_only: bool) -> None:
    """On stderr, how the views of a model fitted on several are scored."""
    views = meta.views
    if len(views) > 1:
        from featx.images.views import setting_of

        how = (
            "the centre crop only (--center-only)"
            if center_only
            else f"{setting_of(views)}: {len(views)} crops per image, scores averaged"
        )
        click.echo(f"views: {how}", err=True)


def say_reused(results, cache_dir) -> None:
    """On stderr, which caches features were read from, and how to choose."""
    caches: dict[str, int] = {}
    for r in results:
        if r.cache:
            caches[r.cache] = caches.get(r.cache, 0) + 1
    for cache, n in caches.items():
        click.echo(
            f"features of {n} image(s) read from {cache} (same weights, "
            "preprocessing and layer as the model); --no-reuse extracts them "
            "anew, --cache-dir DIR looks elsewhere",
            err=True,
        )


#: What each kind of score ``predict`` prints is.
SCORE_MEANINGS = {
    "probability": "scores: the classifier's probability of the class (0 to 1; "
    "the classes of an image sum to 1)",
    "decision": "scores: decision values, not probabilities: w·x + b of the class "
    "against the others (one-vs-rest; for two classes, the other's is its "
    "negative); > 0 favours the class, 0 is the boundary, ±1 the margin the "
    "classifier was fitted to; larger is surer",
}


def say_scores(results) -> None:
    """On stderr, once, what the score column means."""
    for kind in dict.fromkeys(r.score_kind for r in results if r.score_kind):
        click.echo(SCORE_MEANINGS.get(kind, f"scores: {kind}"), err=True)


def _model_hint(paths) -> str:
    """Where a model file was given as a PATH, the command that names it."""
    import shlex

    from featx.predict.modelfile import SUFFIX

    models = [p for p in paths if Path(p).suffix == SUFFIX]
    if not models:
        return ""
    rest = [shlex.quote(str(p)) for p in paths if p != models[0]] or ["IMAGES"]
    return (
        f" {models[0]} is a model file, not images to classify: featx predict "
        f"--model-file {shlex.quote(str(models[0]))} {' '.join(rest)}"
    )


PREDICT_EXAMPLES = examples(
    "featx predict --model-file fc7-logreg.skops data/Test",
    "featx predict --model-file fc7-logreg.skops --json --top-k 3 photo.jpg",
)


@main.command(epilog=PREDICT_EXAMPLES)
@click.option(
    "--model-file",
    "model_file",
    type=MODEL_FILE,
    default=None,
    help="A model file written by `featx fit`.  [required]",
)
@deprecated_alias("--model", "--model-file", "predict", "old_model", type=MODEL_FILE)
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
    "--cache-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="FEATX_CACHE_DIR",
    default=None,
    help="Where to look for caches of the folders given: one made with the "
    "model's weights, preprocessing and layer is read instead of extracting "
    "again (env FEATX_CACHE_DIR) [default: the folder of the model's training "
    "cache].",
)
@click.option(
    "--no-reuse",
    is_flag=True,
    help="Extract every image now, even where a matching cache holds it.",
)
@click.option(
    "--center-only",
    is_flag=True,
    help="A model fitted on several views: score the centre crop alone (one "
    "forward pass per image instead of one per view).",
)
@runtime_option(
    "Run a float32 model's network with this runtime instead of the one its "
    "features were made with (they agree within ~1e-6), e.g. --runtime openvino "
    "for a model fitted on torch features [default: the model's own; an int8 "
    "model runs only with its own]."
)
@device_options
# Long: one parameter per option, as click passes them; the code is 54 lines.
def predict(
    model_file,
    old_model,
    paths,
    as_json,
    as_csv,
    weights,
    top_k,
    center_only,
    cache_dir,
    no_reuse,
    device,
    batch_size,
    workers,
    quiet,
    runtime,
) -> None:
    """Predict the class of each image in PATHS (files or folders).

    Extracts only the layer the model needs, with the weights and preprocessing
    recorded in the model. Each bad path is reported on its own line and the
    others go on. In a labelled folder (subfolders named like the model's
    classes) the true class is shown too, and the accuracy at the end.
    """
    model_file = model_file or old_model
    if model_file is None:
        raise click.UsageError("Missing option '--model-file'." + _model_hint(paths))
    if as_json and as_csv:
        raise click.UsageError("choose one of --json and --csv")
    from featx.predict.modelfile import read_model

    model = read_model(model_file)  # a missing file is refused before torch loads
    from featx.predict import accuracy
    from featx.predict import predict as run_predict

    random_weights_banner(model[1].weights_pretrained)
    say_views(model[1], center_only)
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
        cache_dir=None if no_reuse else (cache_dir or Path(model[1].cache).parent),
        runtime=runtime,
    )
    say_reused(results, cache_dir)
    print_predictions(results, top_k=top_k, as_json=as_json, as_csv=as_csv)
    say_scores(results)
    scored = accuracy(results)
    if scored is not None:
        click.echo(
            f"accuracy: {scored[0]:.4f} on {scored[1]} labelled image(s)",
            err=as_json or as_csv,
        )
    if all(r.error for r in results):
        raise click.ClickException("no image could be read")
