"""Data that ships with scikit-learn, written as an image folder for the demo.

scikit-learn's bundled digits (1,797 8×8 grey images, ten classes) are upscaled
and saved as PNG files in ImageFolder layout, split into Train and Test.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

__all__ = [
    "write_digits",
    "DEMO_LAYERS",
    "DEMO_KEYS",
    "ALEXNETS",
    "demo_layers",
    "DemoResult",
    "demo_weights",
    "run_demo",
]


def write_digits(
    root: Path,
    *,
    size: int = 64,
    per_class: int | None = None,
    test_fraction: float = 0.25,
    seed: int = 0,
) -> tuple[Path, Path]:
    """Write the digits as ``root/Train/<digit>/*.png`` and ``root/Test/...``.

    ``per_class`` keeps at most that many images of each digit (before the
    split). Returns the Train and Test folders. Existing files are kept, so a
    second call writes nothing new.
    """
    digits = load_digits()
    images, labels = digits.images, digits.target
    index = np.arange(len(labels))
    if per_class is not None:
        rng = np.random.default_rng(seed)
        index = np.concatenate(
            [
                rng.permutation(np.flatnonzero(labels == c))[:per_class]
                for c in np.unique(labels)
            ]
        )
    train, test = train_test_split(
        index, test_size=test_fraction, stratify=labels[index], random_state=seed
    )
    root = Path(root)
    for split, rows in (("Train", train), ("Test", test)):
        for i in sorted(rows):
            folder = root / split / str(labels[i])
            folder.mkdir(parents=True, exist_ok=True)
            target = folder / f"digit{i:04d}.png"
            if not target.exists():
                pixels = (images[i] * (255.0 / 16.0)).astype(np.uint8)
                Image.fromarray(pixels, mode="L").resize(
                    (size, size), Image.Resampling.BICUBIC
                ).save(target)
    return root / "Train", root / "Test"


#: What the demo extracts of AlexNet (either), in one run per folder (conv5
#: pooled to 256 values per image; fc6 and fc7, 4,096 each), and the cache keys
#: it reports on.
DEMO_LAYERS = ("conv5", "fc6", "fc7")
DEMO_KEYS = ["conv5_avg", "fc6", "fc7"]
#: The networks whose demo layers are :data:`DEMO_LAYERS`.
ALEXNETS = ("alexnet", "caffe-alexnet")


def demo_layers(model: str) -> tuple[str, ...]:
    """The layers the demo extracts of ``model``: :data:`DEMO_LAYERS` of an
    AlexNet; of another network, the (at most three) short-named layers before
    its output (resnet: ``layer3``, ``layer4``, ``avgpool``), or where it has
    no short names, the layer before its output (what its classifier reads).
    Maps and token sequences are average-pooled."""
    if model in ALEXNETS:
        return DEMO_LAYERS
    from featx.model import friendly_layers, layer_table

    names = list(friendly_layers(model))
    if len(names) > 1:
        return tuple(names[-4:-1])
    table = layer_table(model)
    return (table[-2 if len(table) > 1 else -1].name,)


@dataclass
class DemoResult:
    report: object
    train: Path
    test: Path
    weights_note: str = ""


def demo_weights(weights="imagenet", *, model: str = "alexnet"):
    """``(loaded weights, note)``: ``model``'s pretrained weights when they can
    be had, else random ones and a note that says why."""
    from featx.errors import WeightsError
    from featx.model import LoadedWeights, load_weights

    if isinstance(weights, LoadedWeights):
        return weights, ""
    try:
        return load_weights(weights, model=model), ""
    except WeightsError as exc:
        note = f"{exc} Continuing with random weights: the report carries a banner."
        return load_weights("random", model=model), note


# Long: the demo's steps in order, each a library call; code 56 lines.
def run_demo(
    out: Path,
    *,
    per_class: int | None = None,
    cv: int = 5,
    device: str = "auto",
    batch_size: int = 64,
    num_workers: int | None = None,
    progress=None,
    weights="imagenet",
    models: list[str] | tuple[str, ...] = ("alexnet",),
) -> DemoResult:
    """The whole pipeline on scikit-learn's digits: images → cache → report.

    ``weights`` is a name for :func:`featx.model.load_weights` or weights already
    loaded (see :func:`demo_weights`), or a mapping of each of ``models`` to
    one of those. With a name, it uses the pretrained weights when they are
    cached or downloadable, else random weights, and says why in
    ``weights_note``. With several ``models``, each one's features are
    extracted (:func:`demo_layers`) and the report ranks them all in one table.
    """
    from featx.extraction import extract
    from featx.report import make_report

    out = Path(out)
    models = list(dict.fromkeys(models))
    chosen = weights if isinstance(weights, dict) else dict.fromkeys(models, weights)
    train, test = write_digits(out / "data", per_class=per_class)
    cache_dir = out / "cache"
    caches, keys, notes = {}, [], []
    for model in models:
        loaded, note = demo_weights(chosen[model], model=model)
        notes += [note] if note else []
        results = [
            extract(
                folder,
                layers=demo_layers(model),
                spatial="avg",  # pools conv maps; fc6 and fc7 are vectors already
                device=device,
                batch_size=batch_size,
                num_workers=num_workers,
                cache_dir=cache_dir,
                progress=progress,
                weights=loaded,
            )
            for folder in (train, test)
        ]  # one run per folder: each image is decoded once, for every layer
        caches[model] = [r.cache_path for r in results]
        keys += [k for k in results[0].layers if k not in keys]
    first = caches[models[0]]
    report = make_report(
        cache=first[0],
        test=first[1],
        cache_dir=cache_dir,
        # several models: each one's own layers, every one its cache holds
        layers=keys if len(models) == 1 else None,
        models=models if len(models) > 1 else None,
        clfs=["svm", "logreg", "mlp"],
        cv=cv,
        out=out / "report",
        progress=progress,
    )
    return DemoResult(
        report=report, train=train, test=test, weights_note=" ".join(notes)
    )
