"""Reports that compare layers × classifiers. They read caches; they never extract.

Every (layer, classifier) result is stored as JSON under ``<cache dir>/results``,
keyed by a fingerprint of the cache's rows and the fit's parameters, so a later
report on the same data reuses it (``force`` recomputes).
"""

from __future__ import annotations

import csv
import hashlib
import importlib.metadata
import json
import os
import platform
import shlex
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import sklearn
from sklearn.decomposition import PCA
from sklearn.preprocessing import StandardScaler

import pipelines
from featx import __version__, figures
from featx.analyses import (
    layer_similarity,
    learning_curve,
    misclassified,
    write_predictions,
)
from featx.cache import (
    CacheMeta,
    FeatureCache,
    cache_info,
    default_cache_dir,
    resolve_caches,
    weights_spec,
)
from featx.compare import TIE_RULE, best_of, choose_best
from featx.errors import FeatxError, ReadOnlyError, check_choice
from featx.fit import CLASSIFIERS, FitSpec, fit, is_head_layer
from featx.progress import Progress
from featx.render import render_html, render_markdown
from featx.views import CENTER, setting_of

DEFAULT_CLFS = ("svm", "logreg", "mlp")
#: Repeats of the k-fold CV in a report: 2 × 5 folds give the intervals and the
#: paired tests 10 scores while keeping `featx demo` within its time target.
REPORT_REPEATS = 2
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
    notes: list[str] = field(default_factory=list)
    analyses: dict = field(default_factory=dict)


def fingerprint(cache: FeatureCache, layer: str) -> str:
    """Changes whenever the rows, labels, weights or stored layer change."""
    digest = hashlib.sha256()
    digest.update(np.ascontiguousarray(cache.sha256).tobytes())
    digest.update(np.ascontiguousarray(cache.labels).tobytes())
    digest.update("\0".join(cache.paths).encode())
    ldef = cache.layers[layer]
    meta = cache.meta
    digest.update(
        json.dumps(
            [
                meta.weights.sha256,
                json.dumps(meta.transform, sort_keys=True),
                meta.classes,
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
            commands = "; ".join(extract_commands(cache.meta, pairs))
            raise ReportError(
                f"{cache.path.name} lacks {', '.join(missing)}; extract first: "
                f"{commands}"
            )
        for w in wanted:
            cache.dataset(w)
        layers = list(wanted)
    else:
        layers = cache.complete_layers()
        if not layers:
            raise ReportError(f"{cache.path.name} has no complete layer")
    return sorted(layers, key=lambda k: (have[k].depth, k))


def weights_flags(meta: CacheMeta) -> str:
    """The `featx extract` flags that rebuild ``meta``'s model and weights."""
    spec, seed = weights_spec(meta.weights.id, meta.weights.source)
    flags = "" if meta.model == "alexnet" else f" --model {meta.model}"
    if meta.mean_file:
        flags += f" --mean {shlex.quote(meta.mean_file)}"
    if spec == "random":
        return f"{flags} --weights random --seed {seed}"
    return f"{flags} --weights {shlex.quote(spec)}"


def extract_commands(
    meta: CacheMeta, layers: list[tuple[str, str]], cache_dir: Path | None = None
) -> list[str]:
    """`featx extract` commands that make ``layers`` ((name, spatial) pairs) in the
    cache described by ``meta``: one per spatial reduction."""
    by_spatial: dict[str, list[str]] = {}
    for name, spatial in layers:
        by_spatial.setdefault(spatial, []).append(name)
    root = shlex.quote(meta.data_root or "DATA_DIR")
    where = f" --cache-dir {shlex.quote(str(cache_dir))}" if cache_dir else ""
    return [
        f"featx extract {root} "
        + " ".join(f"--layer {n}" for n in names)
        + ("" if spatial == "none" else f" --spatial {spatial}")
        + weights_flags(meta)
        + where
        for spatial, names in by_spatial.items()
    ]


def _projection(cache: FeatureCache, layer: str, seed: int):
    labels = cache.labels
    n = len(labels)
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.permutation(n)[: min(n, PROJECTION_ROWS)])
    X = cache.read(layer, rows=rows)
    X = StandardScaler().fit_transform(X)
    pca = PCA(n_components=2, svd_solver="randomized", random_state=seed)
    points = pca.fit_transform(X)
    return points, labels[rows], tuple(float(v) for v in pca.explained_variance_ratio_)


# Long: validation, then reuse/fit (ResultStore), figures and rendering in turn.
def make_report(
    *,
    cache: str | Path | None = None,
    cache_dir: Path | None = None,
    test: str | Path | None = None,
    layers: list[str] | None = None,
    clfs: list[str] | tuple[str, ...] = DEFAULT_CLFS,
    out: Path | None = None,
    force: bool = False,
    center_only: bool = False,
    **options,
) -> Report:
    """Cross-validate every layer × classifier and write the report files.

    On a cache with views (``featx extract --views``) each classifier but the
    head is also fitted on every view, on the same folds (see :func:`variants`),
    unless ``center_only``.

    ``options`` are the fields of :class:`featx.fit.FitSpec` but ``clf``
    (``cv``, ``seed``, ``jobs``, ``backend``, ``address``, ``progress``).
    """
    clfs = list(clfs)
    if not clfs:
        raise ReportError("no classifier given; e.g. --clfs svm,logreg,mlp")
    for clf in clfs:
        check_choice("clfs", clf, CLASSIFIERS)
    progress = options.setdefault("progress", Progress())
    options.setdefault("repeats", REPORT_REPEATS)
    FitSpec(clf=clfs[0], **options).check()
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    choice = resolve_caches(cache, test, cache_dir)
    train_path, test_path, notes = choice.train, choice.test, choice.notes
    out = Path(out) if out else Path("reports") / train_path.stem
    check_writable(out, "--out")
    store = ResultStore(cache_dir / "results", force=force)
    with FeatureCache(train_path) as train:
        layers = choose_layers(train, layers)
        plan = {layer: variants(train, layer, clfs, center_only) for layer in layers}
        if not any(plan.values()):
            raise ReportError(
                "--clfs head fine-tunes on pool5 alone, and no layer of the report "
                "is pool5; add --layers pool5 or another classifier"
            )
        progress.start("fitting", sum(len(v) for v in plan.values()))
        try:
            rows = []
            for layer in layers:  # fingerprints hash every row: once per layer
                prints = (
                    fingerprint(train, layer),
                    _test_fingerprint(test_path, layer),
                )
                rows += [
                    store.result(
                        train, test_path, layer, clf, prints, options, views=views
                    )
                    for clf, views in plan[layer]
                ]
        finally:
            progress.finish()
        shown = list(dict.fromkeys(r["clf"] for r in rows))  # with +views rows
        depth = {k: v.depth for k, v in train.layers.items()}
        best = choose_best(rows, depth.__getitem__)
        analyses = _analyses(train, test_path, rows, best, layers, options, depth)
        files = _write_results(out, rows, best, analyses)
        files["predictions"] = write_predictions(out / "predictions.csv", rows, train)
        files.update(
            _draw_figures(train, rows, best, layers, shown, out, options, analyses)
        )
        classes = train.classes
    context = {
        "provenance": _provenance(
            train_path, test_path, layers, clfs, out, cache_dir, options, center_only
        ),
        "rows": rows,
        "best": best,
        "analyses": analyses,
        "layers": layers,
        "clfs": shown,
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
        reused=store.reused,
        computed=store.computed,
        pretrained=context["provenance"]["weights"]["pretrained"],
        notes=notes + store.notes,
        analyses=analyses,
    )


def check_writable(folder: Path, option: str) -> None:
    """Refuse, before any work, a folder that outputs cannot be written to."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise ReadOnlyError(
            f"cannot write to {folder} ({exc.strerror}); choose another {option}"
        ) from exc


class ResultStore:
    """Results kept under ``<cache dir>/results``, keyed by a fingerprint of the
    data and the fit's parameters; a stored one is reused unless ``force``."""

    def __init__(self, folder: Path, *, force: bool) -> None:
        self.folder = folder
        self.force = force
        self.reused = self.computed = 0
        #: What the report should say about the store (damaged or unwritable).
        self.notes: list[str] = []
        self.writable = True
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            self._unwritable(exc)

    def _unwritable(self, exc: OSError) -> None:
        if self.writable:
            self.writable = False
            self.notes.append(
                f"cannot store results in {self.folder} ({exc.strerror}); they were "
                "computed and will be computed again next time"
            )

    def _load(self, stored: Path) -> dict | None:
        """A stored result, or None (with a note) when it is damaged."""
        try:
            row = json.loads(stored.read_text())
            if isinstance(row, dict) and "cv_accuracy_mean" in row:
                return row
            problem = "not a featx result"
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            problem = type(exc).__name__
        self.notes.append(
            f"stored result {stored.name} was damaged ({problem}); recomputed it"
        )
        return None

    def _save(self, stored: Path, row: dict) -> None:
        if not self.writable:
            return
        tmp = stored.with_name(f".{stored.name}.tmp-{os.getpid()}")
        try:
            tmp.write_text(json.dumps(row))
            tmp.replace(stored)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            self._unwritable(exc)

    def result(
        self,
        train: FeatureCache,
        test_path: Path | None,
        layer: str,
        clf: str,
        prints: tuple[str, str | None],
        options: dict,
        views: str | None = None,
    ) -> dict:
        """The stored or freshly computed ``fit --json`` object of one pair;
        ``prints`` are the fingerprints of the train and test caches' layer.
        With ``views`` (the cache's views, as ``--views`` names them) the
        classifier trains on every view and averages over them, and its row is
        labelled ``clf+views``; without, it uses the centre crop alone."""
        params = {
            "cv": options.get("cv", 5),
            "repeats": options.get("repeats", 1),
            "seed": options.get("seed", 0),
            "scale": "standard",
            "pca": None,
            "tune": options.get("tune", True),
            "layer": layer,
            "result_format": 2,  # 2: out-of-fold predictions, per-class scores
        }
        if views is not None:
            params["views"] = views
        label = clf if views is None else f"{clf}+{views}"
        key = _result_key(*prints, label, params)
        stored = self.folder / f"{key}.json"
        progress = options["progress"]
        progress.describe(f"{layer} + {label}")
        if stored.is_file() and not self.force:
            row = self._load(stored)
            if row is not None:
                self.reused += 1
                progress.advance(1)
                return row
        row = fit(
            cache=train.path,
            layer=layer,
            clf=clf,
            test=test_path,
            save=False,
            **{**options, "progress": Progress(), "center_only": views is None},
        ).to_json()
        row["classifier"], row["clf"] = clf, label
        self._save(stored, row)
        self.computed += 1
        progress.advance(1)
        return row


def variants(
    cache: FeatureCache, layer: str, clfs: list[str], center_only: bool = False
) -> list[tuple[str, str | None]]:
    """What a report fits on ``layer``: each classifier on the centre crop,
    and where the cache holds more views of the layer, each but the head again
    on every view (the head fine-tunes on pool5 only, and on the centre: ten
    views would cost ten times its fit)."""
    views = (CENTER,) if center_only else cache.views(layer)
    ldef = cache.layers[layer]
    setting = setting_of(views) if len(views) > 1 else None
    plan: list[tuple[str, str | None]] = []
    for clf in clfs:
        if clf == "head":
            if is_head_layer(ldef):
                plan.append((clf, None))
            continue
        plan.append((clf, None))
        if setting and clf != "sgd":
            plan.append((clf, setting))
    return plan


def _test_fingerprint(test_path: Path | None, layer: str) -> str | None:
    """The held-out cache's fingerprint of ``layer``; None without one."""
    if test_path is None:
        return None
    with FeatureCache(test_path) as held_out:
        return fingerprint(held_out, layer) if layer in held_out.layers else None


def _draw_figures(
    train: FeatureCache, rows, best, layers, clfs, out: Path, options, analyses
) -> dict[str, Path]:
    """The report's PNG figures, drawn from the results and the train cache.
    (Eight parameters: what the report computed, and where it goes.)"""
    files = {
        "accuracy": figures.accuracy_by_layer(
            rows, layers, clfs, out / "accuracy_by_layer.png"
        )
    }
    if best.get("test"):
        matrix, where = best["test"]["confusion"], "held-out test set"
    else:
        matrix, where = best["cv_confusion"], "cross-validation folds"
    files["confusion"] = figures.confusion(
        matrix,
        train.classes,
        f"{best['layer']} + {best['clf']} ({where})",
        out / "confusion_best.png",
    )
    files["confusions"] = figures.confusions(
        rows, train.classes, out / "confusion_all.png"
    )
    files["fit_time"] = figures.fit_times(rows, layers, clfs, out / "fit_time.png")
    files["learning_curve"] = figures.learning_curve(
        analyses["learning_curve"], out / "learning_curve.png"
    )
    if analyses["layer_similarity"] is not None:
        files["similarity"] = figures.similarity(
            np.asarray(analyses["layer_similarity"]),
            layers,
            out / "layer_similarity.png",
        )
    for layer in layers:
        points, labels, explained = _projection(train, layer, options.get("seed", 0))
        files[f"pca_{layer}"] = figures.projection(
            points,
            labels,
            train.classes,
            f"PCA of {layer}",
            out / f"pca_{layer}.png",
            explained,
        )
    return files


COLUMNS = (
    "layer",
    "clf",
    "cv_accuracy_mean",
    "cv_accuracy_std",
    "cv_accuracy_ci95",
    "tied_with_best",
    "p_vs_best",
    "cv_f1_macro_mean",
    "cv_f1_macro_std",
    "fit_time_mean",
    "test_accuracy",
    "test_f1_macro",
)


def _analyses(train, test_path, rows, best, layers, options, depth) -> dict:
    """Learning curve, layer similarity and the misclassified gallery."""
    progress = options["progress"]
    spec = FitSpec(**{k: v for k, v in options.items() if k != "progress"})
    # the curve refits many times: of the classifiers on the centre crop
    plain = [r for r in rows if r["clf"] in pipelines.CLASSIFIERS]
    per_layer = [
        best_of([r for r in plain if r["layer"] == layer], depth.__getitem__)
        for layer in layers
        if any(r["layer"] == layer for r in plain)
    ]
    progress.describe("learning curve")
    curve = learning_curve(train, per_layer, spec)
    similarity = None
    if len(layers) > 1:
        progress.describe("layer similarity")
        similarity = layer_similarity(train, layers, spec.seed).round(4).tolist()
    if test_path is not None:
        with FeatureCache(test_path) as held_out:
            gallery = misclassified(best, train, held_out)
    else:
        gallery = misclassified(best, train, None)
    return {"learning_curve": curve, "layer_similarity": similarity, "gallery": gallery}


#: What results.json and results.csv leave out of each combination: per-image
#: arrays (predictions.csv has them).
BULKY = ("oof_pred", "oof_score")


def _write_results(out: Path, rows: list[dict], best: dict, analyses) -> dict:
    document = {
        "best": {"layer": best["layer"], "clf": best["clf"]},
        "tie_rule": TIE_RULE,
        "results": [{k: v for k, v in r.items() if k not in BULKY} for r in rows],
        "learning_curve": analyses["learning_curve"],
        "layer_similarity": analyses["layer_similarity"],
    }
    for r in document["results"]:
        if r.get("test"):
            r["test"] = {
                k: v for k, v in r["test"].items() if k not in ("true", "pred")
            }
    (out / "results.json").write_text(json.dumps(document, indent=2))
    with (out / "results.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(COLUMNS)
        for r in rows:
            writer.writerow([r.get(c) if r.get(c) is not None else "" for c in COLUMNS])
    return {"json": out / "results.json", "csv": out / "results.csv"}


# Long: one dict literal of what made the report.
def _provenance(
    train: Path,
    test: Path | None,
    layers: list[str],
    clfs: list[str],
    out: Path,
    cache_dir: Path,
    options: dict,
    center_only: bool = False,
) -> dict:
    """Where the data and weights came from, and the commands that redo it all."""
    cv, seed = options.get("cv", 5), options.get("seed", 0)
    repeats = options.get("repeats", REPORT_REPEATS)
    info = cache_info(train)
    test_info = cache_info(test) if test else None
    extract_cmds = []
    for ci in filter(None, [info, test_info]):
        pairs = [
            (ci["layers"][key]["layer"], ci["layers"][key]["spatial"])
            for key in layers
            if key in ci["layers"]
        ]
        with FeatureCache(Path(ci["path"])) as cache:
            extract_cmds += extract_commands(cache.meta, pairs, cache_dir)
    report_cmd = (
        f"featx report --cache {shlex.quote(str(train))}"
        + (f" --test {shlex.quote(str(test))}" if test else "")
        + f" --layers {','.join(layers)} --clfs {','.join(clfs)}"
        + f" --cv {cv} --repeats {repeats} --seed {seed}"
        + ("" if options.get("tune", True) else " --no-tune")
        + (" --center-only" if center_only else "")
        + f" --cache-dir {shlex.quote(str(cache_dir))}"
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
        "model": info["model"],
        "weights": info["weights"],
        "versions": {
            "featx": __version__,
            # from the installed metadata: the report need not import torch
            "torch": importlib.metadata.version("torch"),
            "torchvision": importlib.metadata.version("torchvision"),
            "scikit-learn": sklearn.__version__,
            "python": platform.python_version(),
            "cache written by featx": info["versions"]["featx"],
        },
        "protocol": (
            f"{cv}-fold stratified cross-validation, shuffled with seed {seed}"
            + (
                f", repeated {repeats} times (seeds {seed}–{seed + repeats - 1}); "
                if repeats > 1
                else "; "
            )
            + "features standardised; "
            + (
                f"each classifier's regularisation tuned by {pipelines.SEARCH}; "
                if options.get("tune", True)
                else "default regularisation; "
            )
            + "accuracy and macro-F1 on each held-out fold"
        ),
        "commands": [*extract_cmds, report_cmd],
    }
