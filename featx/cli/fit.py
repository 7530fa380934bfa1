"""``featx fit``: cross-validate one classifier on cached features and save it."""

from __future__ import annotations

import json
from pathlib import Path

import click

from featx.choices import CLASSIFIERS, HEAD_TRAIN_LAYERS, SCALES
from featx.cli.app import main
from featx.cli.checks import check_caches
from featx.cli.options import (
    cache_dir_option,
    cv_option,
    examples,
    fold_engine_options,
    jobs_option,
    models_option,
    regularisation,
    split_models,
    tuning_options,
)
from featx.cli.output import TqdmProgress, announce
from featx.cli.scores import print_fit

__all__ = ["FIT_EXAMPLES", "fit"]

FIT_EXAMPLES = examples(
    "featx fit --clf svm",
    "featx fit --clf logreg --layer fc7 --test data/Test --out fc7-logreg.skops",
    "featx fit --clf ridge --models alexnet,caffe-alexnet --repeats 3 --json",
)


@main.command(epilog=FIT_EXAMPLES)
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
    default=HEAD_TRAIN_LAYERS[0],
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
    help="Cache path, name or data folder [default: a cache of the training "
    "folder in --cache-dir: the only folder not named Test/Val/..., or the only "
    "one with a held-out sibling; several: refused, listing them].",
)
@cache_dir_option
@models_option
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
    type=click.Choice(SCALES),
    default=SCALES[0],
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
@fold_engine_options("fit")
# Long: one parameter per option, as click passes them, and one call.
def fit(
    clf,
    head_train,
    layer,
    cache,
    cache_dir,
    models,
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
    engine,
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
    needs nothing else. Where the training folder was extracted with several
    models, each model's cache is cross-validated on the same folds and the best
    (model, layer) is kept.
    """
    check_caches(cache, cache_dir)  # before scikit-learn is imported
    from featx.fit import fit as run_fit

    said: list[str] = []

    def announce_and_keep(pretrained: bool, notes: list[str]) -> None:
        announce(pretrained, notes)
        said.extend(notes)

    result = run_fit(
        cache=cache,
        cache_dir=cache_dir,
        models=split_models(models),
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
        engine=backend or engine,
        address=address,
        progress=TqdmProgress(quiet or as_json),
        center_only=center_only,
        train_views=not no_augment,
        head_train=head_train,
        # the warning and the notes before the work, as the README shows them
        announce=None if as_json else announce_and_keep,
    )
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=2))
    else:
        print_fit(result, said=said)
