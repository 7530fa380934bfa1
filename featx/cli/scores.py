"""What `featx fit` and `featx report` (and the demo) print: the layers compared,
the folds, the held-out score and the ranking, after their warning and notes."""

from __future__ import annotations

import re
from pathlib import Path

import click

from featx.cli.output import announce, print_notes

__all__ = ["describe_views", "protocol", "print_fit", "print_report"]


def describe_views(views: list[str], augmented: bool = True) -> str:
    """How a fit used the views of each image, in words."""
    from featx.images.views import setting_of

    train = "each a training row" if augmented else "trained on the centre"
    return (
        f"{setting_of(views)} ({len(views)} per image: {train}, scores averaged "
        "over them)"
    )


def _print_layer_scores(result) -> None:
    if result.model_scores:
        click.echo(
            f"models and layers compared ({result.cv}-fold CV accuracy), best kept:"
        )
        width = max(len(row["model"]) for row in result.model_scores) + 2
        for row in result.model_scores:
            best = (row["model"], row["layer"]) == (result.model, result.layer)
            click.echo(
                f"  {row['model']:<{width}}{row['layer']:<14}"
                f"{row['cv_accuracy_mean']:.4f} ± {row['cv_accuracy_std']:.4f}"
                + ("  <- best" if best else "")
            )
    elif result.layer_scores:
        click.echo(f"layers compared ({result.cv}-fold CV accuracy), best kept:")
        for row in result.layer_scores:
            mark = "  <- best" if row["layer"] == result.layer else ""
            click.echo(
                f"  {row['layer']:<14}{row['cv_accuracy_mean']:.4f} ± "
                f"{row['cv_accuracy_std']:.4f}{mark}"
            )


def _print_folds(result) -> None:
    """Each fold's scores and chosen regularisation, then their mean and std."""
    click.echo(f"  {'fold':<6}{'accuracy':>10}{'f1_macro':>10}{'fit s':>8}  chosen")
    scores = result.cv_scores
    chosen = result.cv_params or [{}] * len(result.fit_times)
    folds = zip(
        scores["accuracy"], scores["f1_macro"], result.fit_times, chosen, strict=True
    )
    for i, (acc, f1, t, p) in enumerate(folds, 1):
        value = ", ".join(f"{k} {v:g}" for k, v in p.items())
        click.echo(f"  {i:<6}{acc:>10.4f}{f1:>10.4f}{t:>8.2f}  {value}")
    click.echo(
        f"  {'mean':<6}{result.mean('accuracy'):>10.4f}{result.mean('f1_macro'):>10.4f}"
        f"{sum(result.fit_times) / len(result.fit_times):>8.2f}"
    )
    click.echo(
        f"  {'± std':<6}{result.std('accuracy'):>10.4f}{result.std('f1_macro'):>10.4f}"
    )


def _print_test(result) -> None:
    """The held-out score and confusion matrix of a fit, if it had a test set."""
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


def protocol(cv: int, repeats: int) -> str:
    """``5-fold CV × 2 repeats (10 folds)``: what a mean of fold scores is over;
    fit and report print it beside their numbers, since their defaults differ."""
    return (
        f"{cv}-fold CV × {repeats} repeat{'s' if repeats > 1 else ''} "
        f"({cv * repeats} folds)"
    )


def print_fit(result, *, said: list[str] | None = None) -> None:
    """The short table `featx fit` prints, after the warning and the notes; with
    ``said`` (the notes announced before the work, with the warning), only the
    notes the work added (a layer compared once, say)."""
    if said is None:
        announce(result.pretrained, result.notes)
    else:
        print_notes([n for n in result.notes if n not in said])
    _print_layer_scores(result)
    click.echo(
        f"cache: {Path(result.cache).name}   "
        + (f"model: {result.model}   " if result.model_scores else "")
        + f"layer: {result.layer} ({result.n_features})   clf: {result.clf}   "
        f"rows: {result.n_rows}, {len(result.classes)} classes"
    )
    if result.views != ["center"]:
        click.echo(f"views: {describe_views(result.views, result.train_views)}")
    how = "tuned inside each training fold" if result.tuned else "fixed"
    param = ", ".join(f"{k} {v:g}" for k, v in result.params.items())
    click.echo(
        f"protocol: {protocol(result.cv, result.repeats)}, stratified, shuffled, "
        f"seed {result.seed}; scale {result.scale}"
        + (f", PCA {result.pca}" if result.pca else "")
    )
    if param:
        click.echo(f"regularisation {how}; final model: {param}")
    _print_folds(result)
    if result.test:
        _print_test(result)
    if result.model_path:
        click.echo(f"model: {result.model_path} (sha256 in {result.model_path}.sha256)")


def print_report(report, *, said: list[str] | None = None) -> None:
    """The ranking `featx report` (and `featx demo`) prints, and its files;
    with ``said`` (the notes announced before the work, with the warning),
    only the notes the work added."""
    from featx.report.render import headline

    if said is None:
        announce(report.pretrained, report.notes)
    else:
        # a choice said before may come back reworded (the caches were named)
        heads = {re.split("[,:;]", n)[0] for n in said}
        print_notes([n for n in report.notes if re.split("[,:;]", n)[0] not in heads])
    click.echo(
        f"{len(report.rows)} results ({report.computed} computed, {report.reused} "
        f"reused). {headline(report.verdict, report.rows)}"
    )
    best = report.best
    click.echo(f"protocol: {protocol(best.cv, best.repeats)}, every combination")
    width = max([8, *(len(r["clf"]) + 2 for r in report.rows)])
    layer_width = max([12, *(len(r["layer"]) + 2 for r in report.rows)])
    several = len(report.models) > 1
    model_width = max(len(m) for m in report.models) + 2 if several else 0
    for r in report.rows:
        test = r.get("test_accuracy")
        low, high = r["cv_accuracy_ci95"]
        mark = report.verdict.mark(r)
        model = f"{r.model:<{model_width}}" if several else ""
        click.echo(
            f"  {model}{r['layer']:<{layer_width}}{r['clf']:<{width}}"
            f"{r['cv_accuracy_mean']:.4f} "
            f"[{low:.4f}, {high:.4f}]"
            + (f"   test {test:.4f}" if test is not None else "")
            + (f"   {mark}" if mark else "")
        )
    click.echo(f"report: {report.files['html']}")
    click.echo(f"        {report.files['md']}, results.json, results.csv, figures")
