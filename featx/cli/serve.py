"""``featx serve``: a layer's features, and a fitted model's predictions, over HTTP."""

from __future__ import annotations

import os
from pathlib import Path

import click

from featx.choices import DECODE_MODES, ENGINES, PRECISIONS, SPATIAL
from featx.cli.app import main
from featx.cli.options import examples, model_option, runtime_option
from featx.cli.output import random_weights_banner
from featx.serve.spec import DECODE_POOLS

__all__ = ["SERVE_EXAMPLES", "classifier_line", "serve"]

SERVE_EXAMPLES = examples(
    "featx serve --model-file models/fc7-logreg.skops --port 9000",
    "featx serve --layer fc7 --weights random",
    "featx serve --model resnet18 --layer layer4 --spatial avg --weights random "
    "--host 0.0.0.0 --token s3cret",
)


def _missing_extra(exc: ImportError) -> click.ClickException:
    extras = "serve,ray" if (exc.name or "").startswith("ray") else "serve"
    return click.ClickException(
        f"featx serve needs the {extras} extra ({exc.name} is not installed): "
        f"pip install 'featx[{extras}]'"
    )


def classifier_line(model_file: Path, info: dict) -> str:
    """What a model file's server predicts, for the start-up lines."""
    classes = info["classes"]
    shown = ", ".join(classes[:5]) + (", …" if len(classes) > 5 else "")
    line = f"classifier: {info['clf']} from {model_file}, "
    line += f"{len(classes)} classes ({shown})"
    if "cv_accuracy" in info:
        low, high = info["cv_accuracy_ci95"]
        line += (
            f", cross-validated accuracy {info['cv_accuracy']:.3f} "
            f"(95% CI {low:.3f}-{high:.3f})"
        )
    return line


@main.command(epilog=SERVE_EXAMPLES)
@click.option(
    "--model-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="A model file written by `featx fit`: serve its predictions "
    "(/v1/predict) and its layer's features (/v1/embeddings).",
)
@model_option
@click.option(
    "-l",
    "--layer",
    default=None,
    help="Without --model-file: the layer whose features to serve (AlexNet: "
    "conv1..conv5, pool5, fc6, fc7, fc8; `featx layers --model NAME` lists "
    "others').",
)
@click.option(
    "--spatial",
    type=click.Choice(SPATIAL),
    default="none",
    show_default=True,
    help="With --layer: keep a map whole (none) or pool it (avg/max; cls: a "
    "ViT's class token), as `featx extract --spatial`.",
)
@click.option(
    "--weights",
    default=None,
    help="'imagenet', 'random' (seeded, NOT pretrained) or a weights file, as "
    "for `featx extract` [default: imagenet; with --model-file, the model's own, "
    "checked by sha256].",
)
@click.option(
    "--seed", type=int, default=0, show_default=True, help="Seed for --weights random."
)
@click.option(
    "--decode",
    type=click.Choice(DECODE_MODES),
    default="fast",
    show_default=True,
    help="With --layer: how JPEGs decode, as `featx extract --decode` (a model "
    "file's own setting is used with --model-file).",
)
@click.option(
    "--precision",
    type=click.Choice(PRECISIONS),
    default=None,
    help="With --layer: the forward pass's arithmetic [default: fp32 on a CPU, "
    "bf16 on CUDA].",
)
@runtime_option(
    "What runs the network on the CPU: torch, openvino or onnxruntime (pip "
    "install -e '.[cpu-fast]'), e.g. --layer fc7 --runtime openvino [default: "
    "torch with --layer; a model file's own, and a float32 model may move to "
    "another float32 runtime, an int8 model runs only with its own]."
)
@click.option(
    "--device", default="auto", show_default=True, help="Where the network runs."
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@click.option(
    "--token",
    envvar="FEATX_SERVE_TOKEN",
    default=None,
    help="Require `Authorization: Bearer TOKEN` on every endpoint but /healthz "
    "(env FEATX_SERVE_TOKEN).",
)
@click.option(
    "--max-batch-size",
    type=click.IntRange(min=1),
    default=32,
    show_default=True,
    help="Images per forward pass, gathered across requests.",
)
@click.option(
    "--max-wait-ms",
    type=click.FloatRange(min=0),
    default=5.0,
    show_default=True,
    help="How long a batch waits for more images after its first.",
)
@click.option(
    "--max-queue",
    type=click.IntRange(min=1),
    default=256,
    show_default=True,
    help="Images that may wait, to be decoded or for a forward pass; past it "
    "requests get 503 with Retry-After.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=30.0,
    show_default=True,
    help="Seconds a request may wait for its answer before it gets 504.",
)
@click.option(
    "--max-request-mb",
    type=click.FloatRange(min=0, min_open=True),
    default=16.0,
    show_default=True,
    help="Largest request body; larger ones get 413.",
)
@click.option(
    "--max-images",
    type=click.IntRange(min=1),
    default=64,
    show_default=True,
    help="Most images in one request; more get 413.",
)
@click.option(
    "--decode-workers",
    type=click.IntRange(min=1),
    default=None,
    help="Decoders running beside the event loop [default: one per core].",
)
@click.option(
    "--decode-pool",
    type=click.Choice(DECODE_POOLS),
    default=DECODE_POOLS[0],
    show_default=True,
    help="Decode in threads (PIL releases the GIL; faster on few cores, less "
    "memory) or in worker processes (what decoders print is captured, as in "
    "extract).",
)
@click.option(
    "--engine",
    type=click.Choice(ENGINES),
    default=ENGINES[0],
    show_default=True,
    help="Serve here (uvicorn), or as a Ray Serve deployment "
    "(pip install 'featx[serve,ray]').",
)
@click.option(
    "--replicas",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="With --engine ray: copies of the model behind Ray Serve's router.",
)
@click.option("-q", "--quiet", is_flag=True, help="No access log.")
def serve(quiet, **options) -> None:
    """Serve a fitted model's predictions, or a layer's features, over HTTP.

    Give --model-file (from `featx fit`) to serve POST /v1/predict and the
    features of the model's layer at POST /v1/embeddings, or --layer (and
    --model, --weights) to serve features alone. The numbers are those of
    `featx predict` and `featx extract` on the same files. Also GET /healthz,
    /readyz, /metrics (Prometheus), /docs and /openapi.json.

    Requests are batched across clients (--max-batch-size, --max-wait-ms).
    SIGTERM or Ctrl-C stops taking requests, answers those in flight, and
    exits 0. Clients send images' bytes; the server never fetches URLs.
    """
    from featx.serve import ServeSpec, is_loopback

    if options["model_file"] is not None and options["layer"] is not None:
        raise click.UsageError("give --model-file or --layer, not both")
    if options["model_file"] is None and options["layer"] is None:
        raise click.UsageError("give --model-file M.skops, or --layer L for features")
    spec = ServeSpec(**options).check()
    try:
        from featx.serve.service import FeatureService

        if spec.engine == "ray":
            from featx.serve.ray_app import serve_on_ray as run
        else:
            from featx.serve.server import serve as run
    except ImportError as exc:
        raise _missing_extra(exc) from exc
    service = FeatureService(spec)
    about = service.describe()
    random_weights_banner(about["pretrained"])
    what = "predictions and features" if service.has_classifier else "features"
    click.echo(f"featx serve: {what} at {spec.url}", err=True)
    click.echo(
        f"model: {about['model']}, layer: {about['layer']} (spatial "
        f"{about['spatial']}), weights: {about['weights']} "
        f"({'pretrained' if about['pretrained'] else 'NOT pretrained'}, sha256 "
        f"{about['weights_sha256'][:16]}…), decode {about['decode']}, "
        f"{about['precision']} by {about['runtime']} on {about['device']}",
        err=True,
    )
    if service.has_classifier:
        click.echo(classifier_line(spec.model_file, service.model_info()), err=True)
    if not is_loopback(spec.host) and not spec.token:
        click.secho(
            f"WARNING: listening on {spec.host} without a token: anyone who can "
            "reach this address can use the server; pass --token (or "
            "FEATX_SERVE_TOKEN)",
            fg="yellow",
            err=True,
        )
    os.environ.pop("FEATX_SERVE_TOKEN", None)  # not inherited by the workers
    run(service, spec, log_level="warning" if quiet else "info")
