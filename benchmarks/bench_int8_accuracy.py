"""What int8 costs in accuracy: the cross-validated and held-out accuracy of
tuned classifiers on fp32 torch features against int8 features (OpenVINO,
ONNX Runtime).

Two labelled sets, each with a held-out Test folder:

- ``digits``: scikit-learn's digits (1,347 training and 450 test images, 10
  classes), written as 64x64 PNGs by ``featx.demo.write_digits``;
- ``photos``: real photographs, the two that scikit-learn ships (a temple in
  China, a flower), each cut into three horizontal bands (sky, building, trees;
  three parts of the flower and its leaves): 6 classes of ~500x375 JPEG crops
  at random scales, flips and colour shifts. Training crops come from the left
  60% of each band and test crops from the right 40%, so no test pixel was seen
  in training.

AlexNet's weights are random (pretrained ones cannot be downloaded here). Each
runtime extracts pool5 and fc7 into its own cache (int8 calibrated on the
training folder), then ``featx.fit.fit`` cross-validates ridge on both layers
and logreg on fc7 (5 folds, regularisation tuned inside each fold), and scores
the refitted model on the Test folder, extracted through the same network.

    python benchmarks/bench_int8_accuracy.py --data digits,photos \\
        --out benchmarks/results-int8-accuracy.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.datasets import load_sample_images

from featx import extract
from featx.demo import write_digits
from featx.fit import fit

RUNS = (("torch", "fp32"), ("openvino", "int8"), ("onnxruntime", "int8"))
FITS = (("pool5", "ridge"), ("fc7", "ridge"), ("fc7", "logreg"))
BANDS = 3


def _crops(photo: Image.Image, band: int, x_range, n: int, rng) -> list:
    """``n`` ~500x375 crops from one horizontal band of ``photo``, their left
    edges within ``x_range`` (fractions of the width)."""
    w, h = photo.size
    top, bottom = h * band // BANDS, h * (band + 1) // BANDS
    left, right = int(w * x_range[0]), int(w * x_range[1])
    out = []
    for _ in range(n):
        side = int(rng.uniform(0.5, 1.0) * min(bottom - top, right - left))
        x = rng.integers(left, right - side + 1)
        y = rng.integers(top, bottom - side + 1)
        img = photo.crop((x, y, x + side, y + int(side * 0.75)))
        img = img.resize((500, 375), Image.Resampling.BILINEAR)
        if rng.random() < 0.5:
            img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        arr = np.asarray(img).astype(np.float32) * rng.uniform(0.8, 1.2, 3)
        arr += rng.uniform(-20, 20)
        out.append(Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)))
    return out


def write_photos(root: Path, train_per_class=150, test_per_class=50, seed=0):
    """The ``photos`` set: ``root/Train/<class>/*.jpg`` and ``root/Test/...``."""
    rng = np.random.default_rng(seed)
    names = ("china", "flower")
    for photo, name in zip(load_sample_images().images, names, strict=True):
        photo = Image.fromarray(photo)
        for band in range(BANDS):
            label = f"{name}-{band}"
            for split, x_range, n in (
                ("Train", (0.0, 0.6), train_per_class),
                ("Test", (0.6, 1.0), test_per_class),
            ):
                folder = root / split / label
                folder.mkdir(parents=True, exist_ok=True)
                for i, img in enumerate(_crops(photo, band, x_range, n, rng)):
                    img.save(folder / f"{i:04d}.jpg", quality=90)
    return root / "Train", root / "Test"


def measure(data: str, tmp: Path, cv: int) -> dict:
    if data == "digits":
        train, test = write_digits(tmp / "digits")
    else:
        train, test = write_photos(tmp / "photos")
    results = {}
    for runtime, precision in RUNS:
        cache_dir = tmp / f"cache-{data}-{runtime}-{precision}"
        started = time.perf_counter()
        run = extract(
            train,
            layers=["pool5", "fc7"],
            weights="random",
            cache_dir=cache_dir,
            runtime=runtime,
            precision=None if precision == "fp32" else precision,
        )
        row = {
            "images": run.n_images,
            "extract_seconds": round(time.perf_counter() - started, 1),
            "parity": run.parity,
        }
        for layer, clf in FITS:
            result = fit(
                cache=run.cache_path, cache_dir=cache_dir, layer=layer, clf=clf,
                cv=cv, test=test, save=False,
            )  # fmt: skip
            row[f"{layer} {clf}"] = round(result.cv_accuracy_mean, 4)
            row[f"{layer} {clf} test"] = round(result.test["accuracy"], 4)
            row["test_images"] = result.test["n_images"]
        results[f"{runtime} {precision}"] = row
        print(f"{data} {runtime} {precision}: {row}", flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="digits,photos", help="digits, photos")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--cv", type=int, default=5)
    args = parser.parse_args()
    out = {"cv": args.cv, "weights": "random", "sets": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for data in args.data.split(","):
            out["sets"][data] = measure(data, Path(tmp), args.cv)
    if args.out:
        args.out.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
