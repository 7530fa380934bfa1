"""Reports that compare layers × classifiers. They read caches; they never extract.

Every (layer, classifier) result is stored as JSON under ``<cache dir>/results``,
keyed by a fingerprint of the cache's rows and the fit's parameters, so a later
report on the same data reuses it (``force`` recomputes).
"""

from __future__ import annotations

import csv
import hashlib
import json
import platform
import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import sklearn
import torch
import torchvision
from sklearn.decomposition import PCA
from sklearn.preprocessing import StandardScaler

from featx import __version__, figures
from featx.cache import FeatureCache, cache_info, default_cache_dir, resolve_cache
from featx.errors import FeatxError
from featx.extraction import Progress
from featx.fit import fit
from featx.model import resolve_layers, weights_spec
from featx.render import render_html, render_markdown

DEFAULT_CLFS = ("svm", "logreg", "mlp")
PROJECTION_ROWS = 1500


class ReportError(FeatxError, ValueError):
    """A report that cannot be made as asked."""


@dataclass
class Report:
    """What :func:`make_report` wrote and found."""

    out: Path
    rows: list[dict]
    best: dict
    files: dict[str, Path] = field(default_factory=dict)
    reused: int = 0
    computed: int = 0
    pretrained: bool = True


def layer_depth(layer_name: str) -> int:
    return resolve_layers([layer_name])[0].index


def fingerprint(cache: FeatureCache, layer: str) -> str:
    """Changes whenever the rows, labels, weights or stored layer change."""
    digest = hashlib.sha256()
    digest.update(np.ascontiguousarray(cache.file["sha256"][:]).tobytes())
    digest.update(np.ascontiguousarray(cache.labels).tobytes())
    digest.update("\0".join(cache.paths).encode())
    ldef = cache.layers[layer]
    digest.update(
        json.dumps(
            [
                str(cache.attrs.get("weights_sha256")),
                str(cache.attrs.get("transform")),
                cache.attrs.get("classes"),
                layer,
                ldef.dtype,
                ldef.spatial,
                ldef.module_path,
            ]
        ).encode()
    )
    return digest.hexdigest()


def _result_key(train_fp: str, test_fp: str | None, clf: str, params: dict) -> str:
    blob = json.dumps(
        [train_fp, test_fp, clf, params, __version__, sklearn.__version__],
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def choose_layers(cache: FeatureCache, wanted: list[str] | None) -> list[str]:
    """Requested layers (checked), or every complete layer, shallow to deep."""
    have = cache.layers
    if wanted:
        missing = [w for w in wanted if w not in have]
        if missing:
            pairs = []
            for name in missing:
                base, _, pooled = name.partition("_")
                pooled_ok = pooled in ("avg", "max")
                pairs.append(
                    (base if pooled_ok else name, pooled if pooled_ok else "none")
                )
            commands = "; ".join(extract_commands(cache.attrs, pairs))
            raise ReportError(
                f"{cache.path.name} lacks {', '.join(missing)}; extract first: "
                f"{commands}"
            )
        for w in wanted:
            cache.dataset(w)
        layers = list(wanted)
    else:
        layers = [k for k in have if cache.file["done"][k][:].all()]
        if not layers:
            raise ReportError(f"{cache.path.name} has no complete layer")
    return sorted(layers, key=lambda k: (layer_depth(have[k].layer), k))


def weights_flags(attrs: dict) -> str:
    spec, seed = weights_spec(
        str(attrs.get("weights_id", "")), str(attrs.get("weights_source", ""))
    )
    if spec == "random":
        return f" --weights random --seed {seed}"
    return f" --weights {shlex.quote(spec)}"


def extract_commands(attrs: dict, layers: list[tuple[str, str]]) -> list[str]:
    """`featx extract` commands that make ``layers`` ((name, spatial) pairs) in the
    cache whose root attributes are ``attrs``: one per spatial reduction."""
    by_spatial: dict[str, list[str]] = {}
    for name, spatial in layers:
        by_spatial.setdefault(spatial, []).append(name)
    root = shlex.quote(str(attrs.get("data_root", "DATA_DIR")))
    return [
        f"featx extract {root} "
        + " ".join(f"--layer {n}" for n in names)
        + ("" if spatial == "none" else f" --spatial {spatial}")
        + weights_flags(attrs)
        for spatial, names in by_spatial.items()
    ]


def _projection(cache: FeatureCache, layer: str, seed: int):
    labels = cache.labels
    n = len(labels)
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.permutation(n)[: min(n, PROJECTION_ROWS)])
    X = cache.read(layer, rows=rows)
    X = StandardScaler().fit_transform(X)
    points = PCA(
        n_components=2, svd_solver="randomized", random_state=seed
    ).fit_transform(X)
    return points, labels[rows]


def make_report(
    *,
    cache: str | Path | None = None,
    cache_dir: Path | None = None,
    test: str | Path | None = None,
    layers: list[str] | None = None,
    clfs: list[str] | tuple[str, ...] = DEFAULT_CLFS,
    cv: int = 5,
    seed: int = 0,
    jobs: int | None = 1,
    out: Path | None = None,
    force: bool = False,
    progress: Progress | None = None,
    backend: str = "local",
    address: str | None = None,
) -> Report:
    """Cross-validate every layer × classifier and write the report files."""
    progress = progress or Progress()
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    train_path = resolve_cache(cache, cache_dir)
    test_path = resolve_cache(test, cache_dir) if test is not None else None
    out = Path(out) if out else Path("reports") / train_path.stem
    out.mkdir(parents=True, exist_ok=True)
    store = cache_dir / "results"
    store.mkdir(parents=True, exist_ok=True)
    clfs = list(clfs)
    rows: list[dict] = []
    reused = computed = 0
    with FeatureCache(train_path) as tc:
        layers = choose_layers(tc, layers)
        test_cache = FeatureCache(test_path) if test_path else None
        try:
            progress.start("fitting", len(layers) * len(clfs))
            for layer in layers:
                train_fp = fingerprint(tc, layer)
                test_fp = (
                    fingerprint(test_cache, layer)
                    if test_cache and (layer in test_cache.layers)
                    else None
                )
                for clf in clfs:
                    params = {
                        "cv": cv,
                        "seed": seed,
                        "scale": "standard",
                        "pca": None,
                        "grid": False,
                        "layer": layer,
                    }
                    stored = (
                        store / f"{_result_key(train_fp, test_fp, clf, params)}.json"
                    )
                    if stored.is_file() and not force:
                        rows.append(json.loads(stored.read_text()))
                        reused += 1
                    else:
                        result = fit(
                            cache=train_path,
                            layer=layer,
                            clf=clf,
                            cv=cv,
                            seed=seed,
                            jobs=jobs,
                            backend=backend,
                            address=address,
                            test=test_path,
                            save=False,
                            cache_dir=cache_dir,
                        )
                        row = result.to_json()
                        tmp = stored.with_suffix(".tmp")
                        tmp.write_text(json.dumps(row))
                        tmp.replace(stored)
                        rows.append(row)
                        computed += 1
                    progress.advance(1)
        finally:
            progress.finish()
            if test_cache is not None:
                test_cache.close()
        classes = tc.classes
        best = max(rows, key=lambda r: (r["cv_accuracy_mean"], -r["fit_time_mean"]))
        files = _write_results(out, rows)
        files["accuracy"] = figures.accuracy_by_layer(
            rows, layers, clfs, out / "accuracy_by_layer.png"
        )
        if best.get("test"):
            matrix, where = best["test"]["confusion"], "held-out test set"
        else:
            matrix, where = best["cv_confusion"], "cross-validation folds"
        files["confusion"] = figures.confusion(
            matrix,
            classes,
            f"{best['layer']} + {best['clf']} ({where})",
            out / "confusion_best.png",
        )
        files["fit_time"] = figures.fit_times(rows, layers, clfs, out / "fit_time.png")
        for layer in layers:
            points, labels = _projection(tc, layer, seed)
            files[f"pca_{layer}"] = figures.projection(
                points, labels, classes, f"PCA of {layer}", out / f"pca_{layer}.png"
            )
    provenance = _provenance(train_path, test_path, cv, seed, layers, clfs, out)
    context = {
        "provenance": provenance,
        "rows": rows,
        "best": best,
        "layers": layers,
        "clfs": clfs,
        "classes": classes,
        "files": files,
        "out": out,
    }
    files["md"] = out / "report.md"
    files["md"].write_text(render_markdown(context), encoding="utf-8")
    files["html"] = out / "report.html"
    files["html"].write_text(render_html(context), encoding="utf-8")
    return Report(
        out=out,
        rows=rows,
        best=best,
        files=files,
        reused=reused,
        computed=computed,
        pretrained=provenance["weights"]["pretrained"],
    )


COLUMNS = (
    "layer",
    "clf",
    "cv_accuracy_mean",
    "cv_accuracy_std",
    "cv_f1_macro_mean",
    "cv_f1_macro_std",
    "fit_time_mean",
    "test_accuracy",
    "test_f1_macro",
)


def _write_results(out: Path, rows: list[dict]) -> dict[str, Path]:
    (out / "results.json").write_text(json.dumps(rows, indent=2))
    with (out / "results.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(COLUMNS)
        for r in rows:
            writer.writerow([r.get(c) if r.get(c) is not None else "" for c in COLUMNS])
    return {"json": out / "results.json", "csv": out / "results.csv"}


def _provenance(
    train: Path, test: Path | None, cv: int, seed: int, layers, clfs, out: Path
) -> dict:
    info = cache_info(train)
    test_info = cache_info(test) if test else None
    extract_cmds = []
    for ci in filter(None, [info, test_info]):
        pairs = [
            (ci["layers"][key]["layer"], ci["layers"][key]["spatial"])
            for key in layers
            if key in ci["layers"]
        ]
        with FeatureCache(Path(ci["path"])) as fc:
            extract_cmds += extract_commands(fc.attrs, pairs)
    report_cmd = (
        f"featx report --cache {shlex.quote(str(train))}"
        + (f" --test {shlex.quote(str(test))}" if test else "")
        + f" --layers {','.join(layers)} --clfs {','.join(clfs)}"
        + f" --cv {cv} --seed {seed}"
        + f" --out {shlex.quote(str(out))}"
    )
    return {
        "generated": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "data_root": info["data_root"],
        "cache": info["path"],
        "n_images": info["n_images"],
        "classes": info["classes"],
        "n_failed": info["n_failed"],
        "failed": info["failed"][:50],
        "test": None
        if test_info is None
        else {
            "data_root": test_info["data_root"],
            "cache": test_info["path"],
            "n_images": test_info["n_images"],
            "n_failed": test_info["n_failed"],
        },
        "weights": info["weights"],
        "versions": {
            "featx": __version__,
            "torch": str(torch.__version__),
            "torchvision": str(torchvision.__version__),
            "scikit-learn": sklearn.__version__,
            "python": platform.python_version(),
            "cache written by featx": info["versions"]["featx"],
        },
        "protocol": (
            f"{cv}-fold stratified cross-validation, shuffled with seed {seed}; "
            "features standardised; accuracy and macro-F1 on each held-out fold"
        ),
        "commands": [*extract_cmds, report_cmd],
    }
