"""``featx demo``: the whole pipeline on scikit-learn's bundled digits."""

from __future__ import annotations

from pathlib import Path

import click

from featx.cli.app import main
from featx.cli.checks import check_model
from featx.cli.options import cv_option, device_options, examples, split_models
from featx.cli.output import TqdmProgress, random_weights_banner
from featx.cli.scores import print_report

__all__ = ["DEMO_EXAMPLES", "demo"]

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
    """Run the whole pipeline on scikit-learn's bundled digits.

    Writes the digits as PNG files (Train / Test), extracts conv5 (pooled), fc6
    and fc7, fits svm, logreg and mlp, and writes a report. With --models, each
    model's features are extracted (another network than AlexNet: its
    short-named layers before its output, or the layer before it) and the
    report ranks every (model, layer, classifier) in one table.

    The digits ship with scikit-learn; the weights do not. Each model's
    pretrained weights are used when they are in the hub cache (TORCH_HOME;
    timm: HF_HOME), else downloaded (AlexNet: 233 MB); where that fails (no
    network, or FEATX_OFFLINE set, which skips the attempt) the demo goes on
    with random weights and says so.
    """
    names = split_models(models) or ["alexnet"]
    for name in names:
        check_model(name)  # before torch is imported
    if not quiet:  # the first line, before the imports that take seconds
        what = "AlexNet" if names == ["alexnet"] else ", ".join(names)
        click.echo(f"featx demo: digits → {what} features → classifiers → {out}/report")
    from featx.demo import demo_weights, run_demo

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
