"""featx's tuned classifiers against scikit-learn references, on the same folds.

For each data set (the extraction benchmark's photos and scikit-learn's digits),
layer (pool5, fc7) and classifier (svm, logreg, ridge, mlp), it runs:

- **featx**: ``featx.fit`` with its defaults, 5-fold stratified CV whose training
  folds tune the regularisation by an inner search (each value fitted on one half
  of the rows and scored on the other; featx's fast row-space path on wide
  features);
- **reference**: scikit-learn's ``cross_validate`` over ``GridSearchCV`` of the
  plain pipeline (StandardScaler + LinearSVC / LogisticRegression /
  RidgeClassifier / MLPClassifier) over the same grid, with the same outer folds
  and the full inner 2-fold search (both halves);
- **untuned**: plain ``LinearSVC(C=1)``, 5 folds, featx's old default.

featx runs its outer folds one at a time here (``--jobs 1``), like the
references, so the times compare the algorithms, not the parallelism; it is also
timed as ``featx fit`` runs by default (every core: folds in threads).

It prints a Markdown table (accuracy and wall time side by side) and writes JSON.
Weights are random here (no pretrained weights can be had on this machine), so
accuracies compare the classifiers, not what AlexNet knows.

    python benchmarks/bench_fit.py [--photos 2000] [--digits-per-class 180]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from featx.compute.process import configure_openmp

configure_openmp()  # as the featx command does, before torch is imported

import numpy as np
from sklearn.model_selection import GridSearchCV, StratifiedKFold, cross_validate

import pipelines
from featx import FeatureCache, extract
from featx.demo import write_digits
from featx.fit import fit

sys.path.insert(0, str(Path(__file__).parent))
from bench_extract import make_photos  # noqa: E402

CLFS = ("svm", "logreg", "ridge", "mlp")
LAYERS = ("pool5", "fc7")


def timed_cv(estimator, X, y, seed: int) -> dict:
    """Mean accuracy and wall time of a shuffled, seeded 5-fold CV."""
    started = time.perf_counter()
    out = cross_validate(
        estimator, X, y, cv=StratifiedKFold(5, shuffle=True, random_state=seed)
    )
    return {
        "accuracy": float(np.mean(out["test_score"])),
        "seconds": time.perf_counter() - started,
    }


def reference(X, y, clf: str, seed: int) -> dict:
    """GridSearchCV over the plain pipeline, on featx's outer folds, scoring both
    halves of featx's inner 2-fold split."""
    param, grid = next(iter(pipelines.GRIDS[clf].items()))
    plain = pipelines.make_pipeline(
        clf, n_samples=len(y), n_features=X.shape[1], seed=seed, value=grid[0]
    )
    search = GridSearchCV(
        plain,
        {f"clf__{param}": list(grid)},
        cv=StratifiedKFold(pipelines.INNER_CV, shuffle=True, random_state=seed),
        scoring="accuracy",
    )
    return timed_cv(search, X, y, seed)


def untuned_svm(X, y, seed: int) -> dict:
    plain = pipelines.make_pipeline(
        "svm", n_samples=len(y), n_features=X.shape[1], seed=seed, value=1.0
    )
    return timed_cv(plain, X, y, seed)


def compare(name: str, cache: Path, args) -> list[dict]:
    rows = []
    for layer in args.layers.split(","):
        with FeatureCache(cache) as fc:
            X, y = fc.read(layer), fc.labels
        base = untuned_svm(X, y, args.seed)
        for clf in args.clfs.split(","):
            started = time.perf_counter()
            ours = fit(
                cache=cache,
                layer=layer,
                clf=clf,
                seed=args.seed,
                jobs=args.jobs,
                save=False,
            )
            seconds = time.perf_counter() - started
            started = time.perf_counter()
            fit(cache=cache, layer=layer, clf=clf, seed=args.seed, jobs=-1, save=False)
            row = {
                "data": name,
                "shape": list(X.shape),
                "layer": layer,
                "clf": clf,
                "featx_accuracy": ours.mean("accuracy"),
                "featx_seconds": seconds,
                "featx_seconds_all_cores": time.perf_counter() - started,
                "featx_chosen": ours.cv_params,
                "untuned_svm_accuracy": base["accuracy"],
                "untuned_svm_seconds": base["seconds"],
            }
            if not args.skip_reference:
                ref = reference(X, y, clf, args.seed)
                row["reference_accuracy"] = ref["accuracy"]
                row["reference_seconds"] = ref["seconds"]
            rows.append(row)
            print(json.dumps(row), file=sys.stderr)
    return rows


def table(rows: list[dict]) -> str:
    head = (
        "| data | layer (rows × columns) | clf | featx tuned acc | featx s | "
        "featx s, all cores | GridSearchCV acc | GridSearchCV s | LinearSVC C=1 s |"
    )
    lines = [head, "|" + "---|" * 9]
    for r in rows:
        ref_acc = r.get("reference_accuracy")
        ref_s = r.get("reference_seconds")
        lines.append(
            f"| {r['data']} | {r['layer']} ({r['shape'][0]} × {r['shape'][1]}) "
            f"| {r['clf']} | {r['featx_accuracy']:.4f} | {r['featx_seconds']:.1f} | "
            f"{r['featx_seconds_all_cores']:.1f} | "
            + (f"{ref_acc:.4f} | {ref_s:.1f} | " if ref_acc is not None else "– | – | ")
            + f"{r['untuned_svm_seconds']:.1f} |"
        )
    return "\n".join(lines)


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=int, default=2000)
    parser.add_argument("--digits-per-class", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-reference", action="store_true")
    parser.add_argument("--clfs", default=",".join(CLFS))
    parser.add_argument("--layers", default=",".join(LAYERS))
    parser.add_argument(
        "--data", default="digits,photos", help="digits, photos or both"
    )
    parser.add_argument(
        "--jobs", type=int, default=1, help="featx's outer folds in parallel"
    )
    parser.add_argument("--out", type=Path, default=Path("benchmarks/fit.json"))
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="featx-bench-fit-"))
    folders = {}
    if "digits" in args.data:
        folders["digits"] = write_digits(
            work / "digits", per_class=args.digits_per_class
        )[0]
    if "photos" in args.data:
        make_photos(work / "photos", args.photos)
        folders["photos"] = work / "photos"
    rows = []
    for name, folder in folders.items():
        cache = extract(
            folder,
            layers=args.layers.split(","),
            weights="random",
            cache_dir=work / "cache",
        ).cache_path
        rows += compare(name, cache, args)
    print(table(rows))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=2))
    return rows


if __name__ == "__main__":
    main()
