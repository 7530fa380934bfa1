"""Views and head fine-tuning against the best linear classifier, on the same folds.

For each data set (the extraction benchmark's photos and scikit-learn's digits):

- **extraction cost** of each view setting: ``featx extract --views center``,
  ``flip`` and ``ten`` of pool5 and fc7, each into a cache of its own (decode
  once per image, one forward pass per view);
- **accuracy** of 5-fold CV (the same seeded folds for every row) of each linear
  classifier on fc7 and pool5 with the centre crop, with flip (augmentation +
  averaging) and with ten views; and of ``--clf head`` on pool5 (centre), for
  each choice of trained layers; with the mean fit time per fold.

Weights are random here (no pretrained weights can be had on this machine), so
the accuracies compare the methods on these features, not what AlexNet knows.

    python benchmarks/bench_views.py [--photos 600] [--digits-per-class 60]
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

from featx import extract
from featx.demo import write_digits
from featx.fit import fit

sys.path.insert(0, str(Path(__file__).parent))
from bench_extract import make_photos  # noqa: E402

SETTINGS = ("center", "flip", "ten")


def extraction(folder: Path, work: Path, layers: list[str]) -> tuple[dict, Path]:
    """Seconds of a fresh extraction per view setting, and the ten-view cache."""
    seconds = {}
    path = None
    for setting in SETTINGS:
        started = time.perf_counter()
        path = extract(
            folder,
            layers=layers,
            weights="random",
            views=setting,
            cache_dir=work / f"cache-{setting}",
        ).cache_path
        seconds[setting] = time.perf_counter() - started
    return seconds, path


def one(cache: Path, layer: str, clf: str, views: str, args, **kw) -> dict:
    """One 5-fold CV on the views of ``views`` (by fitting on a cache that holds
    ten, with the centre alone or not)."""
    started = time.perf_counter()
    result = fit(
        cache=cache,
        layer=layer,
        clf=clf,
        seed=args.seed,
        save=False,
        center_only=views == "center",
        **kw,
    )
    return {
        "layer": layer,
        "clf": clf + (f" ({kw['head_train']})" if "head_train" in kw else ""),
        "views": views,
        "accuracy": result.mean("accuracy"),
        "fold_scores": result.cv_scores["accuracy"],
        "fit_seconds_per_fold": float(np.mean(result.fit_times)),
        "wall_seconds": time.perf_counter() - started,
    }


def bench(name: str, folder: Path, work: Path, args) -> dict:
    layers = args.layers.split(",")
    seconds, ten = extraction(folder, work / name, layers)
    print(f"{name}: extraction seconds {seconds}", file=sys.stderr)
    rows = []
    for layer in layers:
        for clf in args.clfs.split(","):
            for views in ("center", "ten"):
                rows.append(one(ten, layer, clf, views, args))
                print(json.dumps(rows[-1]), file=sys.stderr)
    # flip: a cache that holds the centre and its mirror only
    flip = ten.parent.parent / "cache-flip" / ten.name
    for layer in layers:
        for clf in args.clfs.split(","):
            rows.append(one(flip, layer, clf, "flip", args))
            print(json.dumps(rows[-1]), file=sys.stderr)
    for head_train in args.head.split(",") if args.head else ():
        rows.append(one(ten, "pool5", "head", "center", args, head_train=head_train))
        print(json.dumps(rows[-1]), file=sys.stderr)
    return {"data": name, "extract_seconds": seconds, "rows": rows}


def table(results: list[dict]) -> str:
    lines = [
        "| data | layer | classifier | center | flip | ten "
        "| fit s/fold (center, ten) |",
        "|---|---|---|---|---|---|---|",
    ]
    for res in results:
        by = {}
        for r in res["rows"]:
            by.setdefault((r["layer"], r["clf"]), {})[r["views"]] = r
        for (layer, clf), v in by.items():
            acc = [f"{v[s]['accuracy']:.4f}" if s in v else "" for s in SETTINGS]
            times = ", ".join(
                f"{v[s]['fit_seconds_per_fold']:.2f}"
                for s in ("center", "ten")
                if s in v
            )
            lines.append(
                f"| {res['data']} | {layer} | {clf} | {' | '.join(acc)} | {times} |"
            )
    lines += ["", "| data | extract center s | flip s | ten s |", "|---|---|---|---|"]
    for res in results:
        s = res["extract_seconds"]
        lines.append(
            f"| {res['data']} | {s['center']:.1f} | {s['flip']:.1f} | {s['ten']:.1f} |"
        )
    return "\n".join(lines)


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=int, default=600)
    parser.add_argument("--digits-per-class", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--clfs", default="ridge,logreg,svm")
    parser.add_argument("--layers", default="pool5,fc7")
    parser.add_argument(
        "--head",
        default="fc8,fc7-fc8,fc6-fc8",
        help="head variants to fit on pool5 (comma-separated; empty: none)",
    )
    parser.add_argument("--data", default="digits,photos")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/views.json"))
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="featx-bench-views-"))
    results = []
    if "digits" in args.data:
        folder = write_digits(work / "digits", per_class=args.digits_per_class)[0]
        results.append(bench("digits", folder, work, args))
    if "photos" in args.data:
        make_photos(work / "photos", args.photos)
        results.append(bench("photos", work / "photos", work, args))
    print(table(results))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
