"""``make_report``: cross-validate every layer × classifier (reusing stored
results) and write the report's files. Reports read caches; they never extract."""

from __future__ import annotations

import tempfile
from contextlib import ExitStack
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import pipelines
from featx.cache import FeatureCache, default_cache_dir, resolve_caches
from featx.errors import ParameterError, ReadOnlyError, check_choice, param
from featx.fit import CLASSIFIERS, FitSpec
from featx.fit.compare import Verdict, best_of, decide
from featx.fit.spec import renamed
from featx.progress import Progress
from featx.report.analyses import (
    column_similarity,
    learning_curve,
    misclassified,
    write_predictions,
)
from featx.report.html import render_html
from featx.report.outputs import draw_figures, write_results
from featx.report.plan import ReportError, open_sources, plan_fits
from featx.report.provenance import provenance
from featx.report.records import ResultRow
from featx.report.render import render_markdown
from featx.report.sources import Source, columns_of
from featx.report.spec import DEFAULT_CLFS, ReportSpec
from featx.report.store import ResultStore, fingerprint

__all__ = ["Report", "check_writable", "make_report"]


@dataclass
class Report:
    """What :func:`make_report` wrote and found."""

    out: Path
    rows: list[ResultRow]
    best: ResultRow
    #: What the comparison decided (the best, the ties, the simplest of them).
    verdict: Verdict
    files: dict[str, Path] = field(default_factory=dict)
    reused: int = 0
    computed: int = 0
    pretrained: bool = True
    notes: list[str] = field(default_factory=list)
    analyses: dict = field(default_factory=dict)
    #: The models compared, one cache of each (one model: one name).
    models: list[str] = field(default_factory=list)


#: The :class:`ReportSpec` fields that are also :class:`FitSpec` fields.
_SHARED = ("cv", "repeats", "seed", "tune")
#: make_report's keyword arguments that are ReportSpec fields, as when not given.
_UNGIVEN = {"clfs": list(DEFAULT_CLFS), "center_only": False}


# Long: one pass from the caches to the report's files, each step a call.
def make_report(
    spec: ReportSpec | None = None,
    /,
    *,
    cache: str | Path | None = None,
    cache_dir: Path | None = None,
    test: str | Path | None = None,
    layers: list[str] | None = None,
    clfs: list[str] | tuple[str, ...] = DEFAULT_CLFS,
    models: list[str] | None = None,
    out: Path | None = None,
    force: bool = False,
    center_only: bool = False,
    **options,
) -> Report:
    """Cross-validate every layer × classifier and write the report files.

    On a cache with views (``featx extract --views``) each classifier but the
    head is also fitted on every view, on the same folds (see :func:`variants`),
    unless ``center_only``. Where the training folder was extracted with several
    models (no ``cache``, or ``models`` given: see
    :func:`~featx.cache.resolve_caches`), every (model, layer, classifier) is
    ranked in one table, on the same images and folds.

    ``spec``, if given, is the whole :class:`ReportSpec` (what ``featx report``
    builds from its options) in place of the keyword arguments that are its
    fields. ``options`` are the fields of :class:`featx.fit.FitSpec` but ``clf``
    (``cv``, ``seed``, ``jobs``, ``engine``, ``address``, ``progress``).
    """
    options = renamed(options)
    given = {
        "cache": cache,
        "cache_dir": cache_dir,
        "test": test,
        "layers": layers,
        "clfs": list(clfs),
        "models": models,
        "out": out,
        "center_only": center_only,
    }
    if spec is None:
        spec = ReportSpec(
            **given, **{k: options.pop(k) for k in _SHARED if k in options}
        )
    else:
        beside = [k for k, v in given.items() if v != _UNGIVEN.get(k)]
        beside += [k for k in _SHARED if k in options]
        if beside:
            raise ParameterError(
                f"give {', '.join(beside)} in the ReportSpec, not beside it"
            )
    base = _base_fit_spec(spec, options)
    cache_dir = Path(spec.cache_dir or default_cache_dir())
    layers, models = spec.layers, spec.models
    choice = resolve_caches(spec.cache, spec.test, cache_dir, models=models)
    out = Path(spec.out) if spec.out else Path("reports") / choice.train.stem
    check_writable(out, param("out"))
    store = ResultStore(cache_dir / "results", force=force)
    notes = list(choice.notes)
    with ExitStack() as stack:
        sources = open_sources(choice, layers, stack, notes)
        plan = plan_fits(sources, spec, notes)
        sources = [s for s in sources if any(plan[c] for c in s.columns)]
        first = next((s for s in sources if s.train.path == choice.train), sources[0])
        spec = replace(
            spec,
            cache=first.train.path,
            test=first.test,
            cache_dir=cache_dir,
            out=out,
            layers=list(dict.fromkeys(c[1] for c in columns_of(sources))),
            models=[s.model for s in sources] if len(sources) > 1 else models,
        )
        rows = _results(sources, plan, base, store)
        context = _write(sources, spec, base, rows)
        pretrained = all(s.train.meta.weights.pretrained for s in sources)
    return Report(
        out=out,
        rows=rows,
        best=context["best"],
        verdict=context["verdict"],
        files=context["files"],
        reused=store.reused,
        computed=store.computed,
        pretrained=pretrained,
        notes=notes + store.notes,
        analyses=context["analyses"],
        models=[s.model for s in sources],
    )


def _base_fit_spec(spec: ReportSpec, options: dict) -> FitSpec:
    """The :class:`FitSpec` every row of the report shares, checked."""
    if not spec.clfs:
        raise ReportError(
            f"no classifier given; e.g. {param('clfs', 'svm,logreg,mlp')}"
        )
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
    sources: list[Source], plan: dict, base: FitSpec, store: ResultStore
) -> list[ResultRow]:
    """Every row of the report, stored or fitted, model by model, layer by
    layer."""
    progress = base.progress
    progress.start("fitting", sum(len(v) for v in plan.values()))
    try:
        rows = []
        for source in sources:
            train, test = source.train, source.test
            for column in source.columns:
                layer = column[1]
                # fingerprints hash every row: once per layer
                prints = (fingerprint(train, layer), _test_fingerprint(test, layer))
                for clf, views in plan[column]:
                    fit_spec = replace(base, clf=clf, center_only=views is None)
                    row = store.result(train, test, layer, fit_spec, prints, views)
                    row.model = source.model  # the cache's, stored before or not
                    rows.append(row)
    finally:
        progress.finish()
    return rows


def _write(
    sources: list[Source], spec: ReportSpec, base: FitSpec, rows: list[ResultRow]
) -> dict:
    """Compare the rows, run the analyses and write every file of the report;
    returns what the report's text was rendered from."""
    out = spec.out
    shown = list(dict.fromkeys(r.clf for r in rows))  # with +views rows
    place = _places(sources)
    verdict = decide(rows, place)
    best = verdict.best
    columns = columns_of(sources)
    train = sources[0].train  # every source holds the same images
    progress = base.progress
    # the last stage (a minute on the demo) shows its steps like the others
    progress.start("analysing", 4 + (len(columns) > 1))
    try:
        analyses = _analyses(sources, spec, base, rows, best, place)
        progress.describe("figures")
        files = write_results(out, rows, best, analyses)
        files["predictions"] = write_predictions(out / "predictions.csv", rows, train)
        files.update(draw_figures(sources, rows, best, shown, out, analyses))
        progress.advance(1)
        progress.describe("report pages")
        context = {
            "provenance": provenance(spec, sources),
            "rows": rows,
            "best": best,
            "verdict": verdict,
            "analyses": analyses,
            "layers": spec.layers,
            "columns": columns,
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


def _test_fingerprint(test_path: Path | None, layer: str) -> str | None:
    """The held-out cache's fingerprint of ``layer``; None without one."""
    if test_path is None:
        return None
    with FeatureCache(test_path) as held_out:
        return fingerprint(held_out, layer) if layer in held_out.layers else None


def _places(sources: list[Source]):
    """A tie-breaker: a row's model (the one listed first), then its layer's
    place in that model's network (shallow first)."""
    order = {}
    for i, source in enumerate(sources):
        for key, ldef in source.train.layers.items():
            order.setdefault((source.model, key), (i, ldef.depth))
    return lambda row: order.get((row.model, row.layer), (len(sources), (9, 0)))


def _analyses(sources, spec: ReportSpec, base: FitSpec, rows, best, place) -> dict:
    """Learning curve, layer similarity and the misclassified gallery."""
    progress = base.progress
    curve_spec = replace(base, progress=Progress())
    several = len(sources) > 1
    progress.describe("learning curve")
    curve = []
    for source in sources:
        # the curve refits many times: of the classifiers on the centre crop
        plain = [
            r
            for r in rows
            if r.clf in pipelines.CLASSIFIERS and r.model == source.model
        ]
        per_layer = [
            best_of([r for r in plain if r.layer == layer], place)
            for layer in source.layers
            if any(r.layer == layer for r in plain)
        ]
        points = learning_curve(source.train, per_layer, curve_spec)
        curve += [{"model": source.model, **p} if several else p for p in points]
    progress.advance(1)
    similarity = None
    columns = [(s.train, layer) for s in sources for layer in s.layers]
    if len(columns) > 1:
        progress.describe("layer similarity")
        similarity = column_similarity(columns, spec.seed).round(4).tolist()
        progress.advance(1)
    progress.describe("misclassified images")
    source = next(s for s in sources if s.model == best.model)
    if source.test is not None:
        with FeatureCache(source.test) as held_out:
            gallery = misclassified(best, source.train, held_out)
    else:
        gallery = misclassified(best, source.train, None)
    progress.advance(1)
    return {"learning_curve": curve, "layer_similarity": similarity, "gallery": gallery}
