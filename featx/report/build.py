"""``make_report``: cross-validate every layer × classifier (reusing stored
results) and write the report's files. Reports read caches; they never extract."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import pipelines
from featx.cache import FeatureCache, default_cache_dir, resolve_caches
from featx.compare import best_of, choose_best
from featx.errors import FeatxError, ReadOnlyError, check_choice
from featx.fit import CLASSIFIERS, FitSpec, is_head_layer
from featx.progress import Progress
from featx.report.analyses import (
    layer_similarity,
    learning_curve,
    misclassified,
    write_predictions,
)
from featx.report.html import render_html
from featx.report.outputs import draw_figures, write_results
from featx.report.provenance import extract_commands, provenance
from featx.report.records import ResultRow
from featx.report.render import render_markdown
from featx.report.spec import DEFAULT_CLFS, ReportSpec
from featx.report.store import ResultStore, fingerprint
from featx.views import CENTER, setting_of


class ReportError(FeatxError, ValueError):
    """A report that cannot be made as asked."""


@dataclass
class Report:
    """What :func:`make_report` wrote and found."""

    out: Path
    rows: list[ResultRow]
    best: ResultRow
    files: dict[str, Path] = field(default_factory=dict)
    reused: int = 0
    computed: int = 0
    pretrained: bool = True
    notes: list[str] = field(default_factory=list)
    analyses: dict = field(default_factory=dict)


#: The :class:`ReportSpec` fields that are also :class:`FitSpec` fields.
_SHARED = ("cv", "repeats", "seed", "tune")


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
    spec = ReportSpec(
        cache=cache,
        test=test,
        layers=layers,
        clfs=list(clfs),
        center_only=center_only,
        cache_dir=cache_dir,
        out=out,
        **{k: options.pop(k) for k in _SHARED if k in options},
    )
    base = _base_fit_spec(spec, options)
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    choice = resolve_caches(cache, test, cache_dir)
    out = Path(out) if out else Path("reports") / choice.train.stem
    check_writable(out, "--out")
    spec = replace(spec, cache=choice.train, test=choice.test, cache_dir=cache_dir)
    spec = replace(spec, out=out)
    store = ResultStore(cache_dir / "results", force=force)
    with FeatureCache(choice.train) as train:
        spec = replace(spec, layers=choose_layers(train, layers))
        rows = _results(train, spec, base, store)
        context = _write(train, spec, base, rows)
    return Report(
        out=out,
        rows=rows,
        best=context["best"],
        files=context["files"],
        reused=store.reused,
        computed=store.computed,
        pretrained=context["provenance"]["weights"]["pretrained"],
        notes=choice.notes + store.notes,
        analyses=context["analyses"],
    )


def _base_fit_spec(spec: ReportSpec, options: dict) -> FitSpec:
    """The :class:`FitSpec` every row of the report shares, checked."""
    if not spec.clfs:
        raise ReportError("no classifier given; e.g. --clfs svm,logreg,mlp")
    for clf in spec.clfs:
        check_choice("clfs", clf, CLASSIFIERS)
    unknown = set(options) - {f.name for f in fields(FitSpec)} - {"clf"}
    if unknown:
        raise TypeError(f"make_report() got unexpected options {sorted(unknown)}")
    shared = {k: getattr(spec, k) for k in _SHARED}
    base = FitSpec(clf=spec.clfs[0], **shared, **options)
    base.check()
    return base


def _results(
    train: FeatureCache, spec: ReportSpec, base: FitSpec, store: ResultStore
) -> list[ResultRow]:
    """Every row of the report, stored or fitted, layer by layer."""
    plan = {
        layer: variants(train, layer, spec.clfs, spec.center_only)
        for layer in spec.layers
    }
    if not any(plan.values()):
        raise ReportError(
            "--clfs head fine-tunes on pool5 alone, and no layer of the report "
            "is pool5; add --layers pool5 or another classifier"
        )
    progress = base.progress
    progress.start("fitting", sum(len(v) for v in plan.values()))
    try:
        rows = []
        for layer in spec.layers:  # fingerprints hash every row: once per layer
            prints = (fingerprint(train, layer), _test_fingerprint(spec.test, layer))
            for clf, views in plan[layer]:
                fit_spec = replace(base, clf=clf, center_only=views is None)
                rows.append(
                    store.result(train, spec.test, layer, fit_spec, prints, views)
                )
    finally:
        progress.finish()
    return rows


def _write(
    train: FeatureCache, spec: ReportSpec, base: FitSpec, rows: list[ResultRow]
) -> dict:
    """Compare the rows, run the analyses and write every file of the report;
    returns what the report's text was rendered from."""
    out = spec.out
    shown = list(dict.fromkeys(r.clf for r in rows))  # with +views rows
    depth = {k: v.depth for k, v in train.layers.items()}
    best = choose_best(rows, depth.__getitem__)
    progress = base.progress
    # the last stage (a minute on the demo) shows its steps like the others
    progress.start("analysing", 4 + (len(spec.layers) > 1))
    try:
        analyses = _analyses(train, spec, base, rows, best, depth)
        progress.describe("figures")
        files = write_results(out, rows, best, analyses)
        files["predictions"] = write_predictions(out / "predictions.csv", rows, train)
        files.update(draw_figures(train, rows, best, spec.layers, shown, out, analyses))
        progress.advance(1)
        progress.describe("report pages")
        context = {
            "provenance": provenance(spec),
            "rows": rows,
            "best": best,
            "analyses": analyses,
            "layers": spec.layers,
            "clfs": shown,
            "classes": train.classes,
            "files": files,
            "out": out,
        }
        files["md"] = out / "report.md"
        files["md"].write_text(render_markdown(context), encoding="utf-8")
        files["html"] = out / "report.html"
        files["html"].write_text(render_html(context), encoding="utf-8")
        progress.advance(1)
    finally:
        progress.finish()
    return context


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


def _analyses(train, spec: ReportSpec, base: FitSpec, rows, best, depth) -> dict:
    """Learning curve, layer similarity and the misclassified gallery."""
    progress = base.progress
    curve_spec = replace(base, progress=Progress())
    # the curve refits many times: of the classifiers on the centre crop
    plain = [r for r in rows if r.clf in pipelines.CLASSIFIERS]
    per_layer = [
        best_of([r for r in plain if r.layer == layer], depth.__getitem__)
        for layer in spec.layers
        if any(r.layer == layer for r in plain)
    ]
    progress.describe("learning curve")
    curve = learning_curve(train, per_layer, curve_spec)
    progress.advance(1)
    similarity = None
    if len(spec.layers) > 1:
        progress.describe("layer similarity")
        similarity = layer_similarity(train, spec.layers, spec.seed).round(4).tolist()
        progress.advance(1)
    progress.describe("misclassified images")
    if spec.test is not None:
        with FeatureCache(spec.test) as held_out:
            gallery = misclassified(best, train, held_out)
    else:
        gallery = misclassified(best, train, None)
    progress.advance(1)
    return {"learning_curve": curve, "layer_similarity": similarity, "gallery": gallery}
