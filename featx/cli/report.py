"""``featx report``: every layer × classifier, compared, into a report."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import click

from featx.cli.app import main
from featx.cli.checks import check_caches
from featx.cli.options import (
    cache_dir_option,
    cv_option,
    examples,
    fold_engine_options,
    jobs_option,
    models_option,
)
from featx.cli.output import TqdmProgress, announce
from featx.cli.scores import print_report

__all__ = ["REPORT_EXAMPLES", "report"]

REPORT_EXAMPLES = examples(
    "featx report",
    "featx report --layers conv5_avg,fc7 --clfs logreg,ridge --test data/Test",
    "featx report --models alexnet,caffe-alexnet --layers fc6,fc7",
)


@main.command(epilog=REPORT_EXAMPLES)
@click.option(
    "--cache",
    default=None,
    help="Training cache or data folder [default: as for `featx fit`: the only "
    "folder not named Test/Val/..., or the only one with a held-out sibling].",
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
    progress = TqdmProgress(quiet)
    # the caches, the warning and the notes first, then the work
    pretrained, said, folder, entries = _prepare(spec, cache_dir)
    announce(pretrained, said)
    if folder is not None:
        spec = _held_out(spec, folder, entries, cache_dir, progress)
    result = make_report(
        spec,
        jobs=jobs,
        force=force,
        progress=progress,
        engine=backend or engine,
        address=address,
    )
    print_report(result, said=said)


def _prepare(spec, cache_dir):
    """What the report says before its work: whether its training caches are
    pretrained and the notes on the caches chosen; and for ``--test
    DATA_FOLDER``, that folder and the models' caches to make its cache as
    (after the layers are checked as the report checks them: one line)."""
    from contextlib import ExitStack

    from featx.cache import ModelCaches, resolve_caches
    from featx.fit.heldout import held_out_notes, is_data_folder
    from featx.report.plan import open_sources

    folder = Path(spec.test) if is_data_folder(spec.test) else None
    choice = resolve_caches(
        spec.cache,
        None if folder else spec.test,
        cache_dir,
        models=spec.models,
        find_test=folder is None,
    )
    notes = list(choice.notes)
    entries = choice.models or [ModelCaches("", choice.train, choice.test)]
    with ExitStack() as stack:
        # a layer no cache has: the report's own one-line error, before any work
        sources = open_sources(choice, spec.layers, stack, notes)
        kept = {s.train.path for s in sources}
        pretrained = all(s.train.meta.weights.pretrained for s in sources)
    entries = [e for e in entries if e.train in kept]
    if folder is not None:
        notes += held_out_notes(entries, folder)
    return pretrained, notes, folder, (entries, choice)


def _held_out(spec, folder, entries, cache_dir, progress):
    """``spec`` scoring on ``folder``'s cache made as each model's training
    cache, extracted now where rows are missing."""
    from featx.fit.heldout import held_out_caches

    entries, choice = entries
    held_out_caches(
        entries, folder, cache_dir=cache_dir, layers=spec.layers, progress=progress
    )
    # the chosen training cache's: the library finds the other models' by it
    test = next((e.test for e in entries if e.train == choice.train), entries[0].test)
    # the caches chosen, named: the new held-out cache must not change them;
    # the models left out have no cache of the folder to score on
    models = [e.model for e in entries] if choice.models else spec.models
    return replace(spec, cache=choice.train, test=test, models=models)
