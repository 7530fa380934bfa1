"""What int8 costs in accuracy: the cross-validated accuracy of tuned classifiers
on fp32 torch features against int8 features (OpenVINO, ONNX Runtime).

The data is scikit-learn's digits (1,347 training images, 10 classes), written
as 64x64 PNGs by ``featx.demo.write_digits``. AlexNet's weights are random
(pretrained ones cannot be downloaded here). Each runtime extracts pool5 and
fc7 into its own cache, then ``featx.fit.fit`` cross-validates ridge on both
layers and logreg on fc7 (5 folds, regularisation tuned inside each fold).

    python benchmarks/bench_int8_accuracy.py --out benchmarks/results-int8-accuracy.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from featx import extract
from featx.demo import write_digits
from featx.fit import fit

RUNS = (("torch", "fp32"), ("openvino", "int8"), ("onnxruntime", "int8"))
FITS = (("pool5", "ridge"), ("fc7", "ridge"), ("fc7", "logreg"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--cv", type=int, default=5)
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        train, _ = write_digits(Path(tmp) / "digits")
        for runtime, precision in RUNS:
            started = time.perf_counter()
            run = extract(
                train,
                layers=["pool5", "fc7"],
                weights="random",
                cache_dir=Path(tmp) / f"cache-{runtime}-{precision}",
                runtime=runtime,
                precision=None if precision == "fp32" else precision,
            )
            row = {
                "extract_seconds": round(time.perf_counter() - started, 1),
                "parity": run.parity,
            }
            for layer, clf in FITS:
                result = fit(
                    cache=run.cache_path, layer=layer, clf=clf, cv=args.cv, save=False
                )
                row[f"{layer} {clf}"] = round(result.cv_accuracy_mean, 4)
            results[f"{runtime} {precision}"] = row
            print(f"{runtime} {precision}: {row}", flush=True)
    if args.out:
        args.out.write_text(
            json.dumps({"cv": args.cv, "runs": results}, indent=1) + "\n"
        )


if __name__ == "__main__":
    main()
