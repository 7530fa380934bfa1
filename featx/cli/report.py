"""``featx report``: every layer × classifier, compared, into a report."""

from __future__ import annotations

from pathlib import Path

import click

from featx.cli.app import main
from featx.cli.checks import check_caches
from featx.cli.options import (
    cache_dir_option,
    cv_option,
    examples,
    fold_engine_options,
    held_out_for,
    jobs_option,
    models_option,
)
from featx.cli.output import TqdmProgress, print_report

REPORT_EXAMPLES = examples(
    "featx report",
    "featx report --layers conv5_avg,fc7 --clfs logreg,ridge --test data/Test",
    "featx report --models alexnet,caffe-alexnet --layers fc6,fc7",
)


@main.command(epilog=REPORT_EXAMPLES)
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
@models_option
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
@fold_engine_options("report")
def report(
    cache,
    test,
    layers,
    clfs,
    models,
    cv,
    repeats,
    seed,
    jobs,
    out,
    no_tune,
    force,
    cache_dir,
    quiet,
    engine,
    backend,
    address,
    center_only,
) -> None:
    """Compare layers × classifiers: cross-validate each (and score it on --test),
    then write report.html, report.md, results.json, results.csv and figures.

    Where the training folder was extracted with several models, every (model,
    layer, classifier) is ranked in one table, on the same images and folds.
    Results already computed for the same data and settings are reused.
    """
    check_caches(cache, cache_dir)  # before scikit-learn is imported
    from featx.report import ReportSpec, make_report

    # the spec is read from the parsed options as the reproduce command is
    # written from it: one mapping, in featx.report.spec
    spec = ReportSpec.from_cli(click.get_current_context().params)
    test = held_out_for(test, cache, cache_dir, quiet, layers=spec.layers)
    result = make_report(
        **{**vars(spec), "test": test},
        jobs=jobs,
        force=force,
        progress=TqdmProgress(quiet),
        backend=backend or engine,
        address=address,
    )
    print_report(result)
