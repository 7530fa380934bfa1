"""``featx demo``: the whole pipeline on scikit-learn's bundled digits."""

from __future__ import annotations

from pathlib import Path

import click

from featx.cli.app import main
from featx.cli.options import cv_option, device_options, examples, split_models
from featx.cli.output import TqdmProgress, print_report, random_weights_banner

DEMO_EXAMPLES = examples(
    "featx demo",
    "featx demo --per-class 20 --cv 3 --out /tmp/featx-demo",
    "featx demo --models alexnet,resnet18",
)


@main.command(epilog=DEMO_EXAMPLES)
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
@click.option(
    "--models",
    default="alexnet",
    show_default=True,
    help="Comma-separated models whose features the report compares, e.g. "
    "alexnet,resnet18.",
)
@cv_option
@device_options
def demo(out, per_class, models, cv, device, batch_size, workers, quiet) -> None:
    """Run the whole pipeline on scikit-learn's bundled digits, offline.

    Writes the digits as PNG files (Train / Test), extracts conv5 (pooled), fc6
    and fc7, fits svm, logreg and mlp, and writes a report. Uses the pretrained
    weights when they are cached or downloadable, random weights otherwise.
    With --models, each model's features are extracted (another network than
    AlexNet: its short-named layers before its output, or the layer before it)
    and the report ranks every (model, layer, classifier) in one table.
    """
    from featx.demo import demo_weights, run_demo

    names = split_models(models) or ["alexnet"]
    if not quiet:
        what = "AlexNet" if names == ["alexnet"] else ", ".join(names)
        click.echo(f"featx demo: digits → {what} features → classifiers → {out}/report")
    weights = {}
    for name in names:
        weights[name], note = demo_weights(model=name)
        if note:  # said before the work, not after it
            click.secho(note, fg="yellow", err=True)
    random_weights_banner(all(w.pretrained for w in weights.values()))
    result = run_demo(
        out,
        per_class=per_class,
        cv=cv,
        device=device,
        batch_size=batch_size,
        num_workers=workers,
        progress=TqdmProgress(quiet),
        weights=weights,
        models=names,
    )
    click.echo(f"data:   {result.train} and {result.test}")
    print_report(result.report)
    click.echo(f"Open {result.report.files['html']} in a browser.")
