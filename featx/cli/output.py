"""What the commands print: progress bars, summaries and tables.

The library returns values and never prints; these functions turn them into
the lines a user reads. Warnings and notes go to stderr where a command's
stdout may be machine-read (``--json``, ``--csv``).
"""

from __future__ import annotations

import csv
import json
import re
import sys
from pathlib import Path

import click

from featx.errors import printable


class TqdmProgress:
    """Draws one tqdm bar per stage on stderr."""

    UNITS = {
        "hashing": "file",
        "copying": "row",
        "extracting": "img",
        "predicting": "img",
        "fitting": "fit",
    }

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.bar = None

    def start(self, stage: str, total: int) -> None:
        from tqdm import tqdm

        self.bar = tqdm(
            total=total,
            desc=stage,
            unit=self.UNITS.get(stage, "it"),
            disable=self.quiet,
            file=sys.stderr,
            dynamic_ncols=True,
        )

    def advance(self, n: int) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def describe(self, text: str) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(text, refresh=True)

    def finish(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def random_weights_banner(pretrained: bool) -> None:
    if not pretrained:
        click.secho(
            "WARNING: random weights, NOT pretrained: these features are for testing "
            "only.",
            fg="yellow",
            bold=True,
            err=True,
        )


def print_notes(notes: list[str]) -> None:
    """Choices a command made on the user's behalf, said before its results."""
    for note in notes:
        click.echo(f"note: {note}")


def announce(pretrained: bool, notes: list[str]) -> None:
    """What fit and report say before their work starts (progress bars come
    after): the random-weights warning, then the choices made for the user."""
    random_weights_banner(pretrained)
    print_notes(notes)


def print_layers(table, as_json: bool) -> None:
    """`featx layers`: each layer's name, module path, shape, size and the
    ``--spatial`` reductions it takes."""
    if as_json:
        rows = [
            {
                "name": s.name,
                "module_path": s.module_path,
                "shape": list(s.shape),
                "dim": s.dim,
                "kind": s.kind,
                "spatial": ["none", *s.poolings],
            }
            for s in table
        ]
        click.echo(json.dumps(rows, indent=2))
        return
    name_w = max(14, *(len(s.name) + 2 for s in table))
    path_w = max(15, *(len(s.module_path) + 2 for s in table))
    head = f"{'name':<{name_w}}{'module':<{path_w}}{'shape':<16}{'dim':>8}"
    click.echo(f"{head}  spatial")
    for s in table:
        shape = "x".join(map(str, s.shape))
        row = f"{s.name:<{name_w}}{s.module_path:<{path_w}}{shape:<16}{s.dim:>8}"
        click.echo(f"{row}  {','.join(s.poolings) or '-'}")


def print_extraction(result) -> None:
    """The summary of one `featx extract` folder."""
    click.echo(f"cache:   {result.cache_path}")
    click.echo(f"layers:  {', '.join(result.layers)}")
    if result.views != ["center"]:
        click.echo(f"views:   {', '.join(result.views)}")
    click.echo(
        f"images:  {result.n_images} ({result.n_new} new, {result.n_reused} reused, "
        f"{result.n_failed} failed)"
    )
    if result.n_new:
        click.echo(
            f"speed:   {result.images_per_s:.1f} img/s on {result.device} "
            f"({result.seconds:.1f} s)"
        )
    if result.ignored:
        click.echo(
            f"ignored: {len(result.ignored)} image(s) directly in DATA_DIR, outside "
            "any class folder (e.g. " + printable(result.ignored[0]) + ")"
        )
    for note in result.notes:
        click.echo(f"note:    {note}")
    for label, items in (("skipped", result.skipped), ("failed", result.failures)):
        for item in items[:20]:
            click.echo(f"{label + ':':<9}{printable(item.path)}: {item.reason}")
        if len(items) > 20:
            click.echo(f"{label + ':':<9}... and {len(items) - 20} more (`featx info`)")
    if result.not_images:
        click.echo(skipped_line(result.not_images))
    if result.warnings:
        click.echo(warnings_line(len(result.warnings)))
    if result.n_images == 0:
        raise click.ClickException("no image could be decoded; nothing to extract")


#: Kinds of file the skip line names before it says ``…``.
SKIP_GROUPS_SHOWN = 6


def skipped_line(not_images) -> str:
    """One line for the files of a folder that are no image, by extension:
    ``skipped: 354 files that are not images (.txt 12, .pdf 3, …); …``."""
    from featx.images import skip_groups

    groups = skip_groups(not_images)
    shown = [f"{printable(kind)} {n}" for kind, n in groups[:SKIP_GROUPS_SHOWN]]
    if len(groups) > SKIP_GROUPS_SHOWN:
        shown.append("…")
    n = len(not_images)
    what = "file that is not an image" if n == 1 else "files that are not images"
    return f"skipped: {n} {what} ({', '.join(shown)}); featx info --skipped lists them"


def warnings_line(n: int) -> str:
    """The line that sums up the images whose decoders said something."""
    what = "image" if n == 1 else "images"
    return f"warnings: {n} {what} decoded with warnings (featx info --warnings)"


def _layer_state(layer: dict, n_images: int) -> str:
    """How complete one layer of `featx info` is, and in which views."""
    from featx.views import setting_of

    state = "" if layer["complete"] else f"  INCOMPLETE {layer['rows_done']}/{n_images}"
    views = layer.get("views", {})
    if set(views) - {"center"}:
        whole = [v for v, d in views.items() if d["rows_done"] == n_images]
        part = [
            f"{v} {d['rows_done']}/{n_images}"
            for v, d in views.items()
            if d["rows_done"] != n_images
        ]
        state += f"  views: {setting_of(whole)} ({len(whole)})"
        state += f"  INCOMPLETE {', '.join(part)}" if part else ""
    return state


def print_info(data: dict) -> None:
    """`featx info`: what :func:`featx.cache.cache_info` returned, as text."""
    w = data["weights"]
    random_weights_banner(w["pretrained"])
    click.echo(f"cache:    {data['path']}  (format {data['format']})")
    click.echo(f"data:     {data['data_root']}")
    click.echo(
        f"images:   {data['n_images']}   failed: {data['n_failed']}   "
        f"not images: {data['n_not_images']}   "
        f"with warnings: {data['n_warnings']}"
    )
    click.echo(f"model:    {data['model']}")
    click.echo(f"weights:  {w['id']}  sha256 {w['sha256'][:16]}…")
    click.echo(f"decode:   {data['decode']} (JPEGs; extract --decode)")
    click.echo(f"precision: {data['precision']} (extract --precision)")
    click.echo(f"decoder:  {data['decoder']} (extract --decoder)")
    v = data["versions"]
    click.echo(
        f"versions: featx {v['featx']}, torch {v['torch']}, "
        f"torchvision {v['torchvision']}"
    )
    click.echo("layers:")
    for key, layer in data["layers"].items():
        state = _layer_state(layer, data["n_images"])
        click.echo(f"  {key:<14}{layer['dim']:>8}  {layer['dtype']}{state}")
    if data["classes"]:
        click.echo("classes:")
        for name, count in data["classes"].items():
            click.echo(f"  {name:<20}{count:>7}")
    for f in data["failed"]:
        click.echo(f"failed:   {printable(f['path'])}: {f['reason']}")


def print_skipped(data: dict) -> None:
    """`featx info --skipped`: every file of the folder that is no image (or
    that there was none)."""
    if not data["not_images"]:
        click.echo(f"no file skipped: every file of {data['data_root']} is an image")
    for x in data["not_images"]:
        click.echo(f"{printable(x['path'])}: {x['reason']}")


def print_warnings(data: dict) -> None:
    """`featx info --warnings`: each image's path, then what its decoders said
    (or that they said nothing)."""
    if not data["warnings"]:
        click.echo(f"no decoder warning: none on the images of {data['data_root']}")
    for w in data["warnings"]:
        click.echo(f"{printable(w['path'])}:")
        for line in w["messages"]:
            click.echo(f"    {printable(line)}")


def describe_views(views: list[str], augmented: bool = True) -> str:
    """How a fit used the views of each image, in words."""
    from featx.views import setting_of

    train = "each a training row" if augmented else "trained on the centre"
    return (
        f"{setting_of(views)} ({len(views)} per image: {train}, scores averaged "
        "over them)"
    )


def _print_layer_scores(result) -> None:
    if result.model_scores:
        click.echo(
            f"models and layers compared ({result.cv}-fold CV accuracy), best kept:"
        )
        width = max(len(row["model"]) for row in result.model_scores) + 2
        for row in result.model_scores:
            best = (row["model"], row["layer"]) == (result.model, result.layer)
            click.echo(
                f"  {row['model']:<{width}}{row['layer']:<14}"
                f"{row['cv_accuracy_mean']:.4f} ± {row['cv_accuracy_std']:.4f}"
                + ("  <- best" if best else "")
            )
    elif result.layer_scores:
        click.echo(f"layers compared ({result.cv}-fold CV accuracy), best kept:")
        for row in result.layer_scores:
            mark = "  <- best" if row["layer"] == result.layer else ""
            click.echo(
                f"  {row['layer']:<14}{row['cv_accuracy_mean']:.4f} ± "
                f"{row['cv_accuracy_std']:.4f}{mark}"
            )


def _print_folds(result) -> None:
    """Each fold's scores and chosen regularisation, then their mean and std."""
    click.echo(f"  {'fold':<6}{'accuracy':>10}{'f1_macro':>10}{'fit s':>8}  chosen")
    scores = result.cv_scores
    chosen = result.cv_params or [{}] * len(result.fit_times)
    folds = zip(
        scores["accuracy"], scores["f1_macro"], result.fit_times, chosen, strict=True
    )
    for i, (acc, f1, t, p) in enumerate(folds, 1):
        value = ", ".join(f"{k} {v:g}" for k, v in p.items())
        click.echo(f"  {i:<6}{acc:>10.4f}{f1:>10.4f}{t:>8.2f}  {value}")
    click.echo(
        f"  {'mean':<6}{result.mean('accuracy'):>10.4f}{result.mean('f1_macro'):>10.4f}"
        f"{sum(result.fit_times) / len(result.fit_times):>8.2f}"
    )
    click.echo(
        f"  {'± std':<6}{result.std('accuracy'):>10.4f}{result.std('f1_macro'):>10.4f}"
    )


def _print_test(result) -> None:
    """The held-out score and confusion matrix of a fit, if it had a test set."""
    t = result.test
    click.echo(
        f"test: {Path(t['cache']).name}, {t['n_images']} images: accuracy "
        f"{t['accuracy']:.4f}, f1_macro {t['f1_macro']:.4f}"
    )
    width = max(len(c) for c in result.classes) + 2
    click.echo("confusion (rows: true, columns: predicted):")
    click.echo(" " * width + "".join(f"{c[:8]:>9}" for c in result.classes))
    for name, row in zip(result.classes, t["confusion"], strict=True):
        click.echo(f"{name:<{width}}" + "".join(f"{v:>9}" for v in row))


def protocol(cv: int, repeats: int) -> str:
    """``5-fold CV × 2 repeats (10 folds)``: what a mean of fold scores is over;
    fit and report print it beside their numbers, since their defaults differ."""
    return (
        f"{cv}-fold CV × {repeats} repeat{'s' if repeats > 1 else ''} "
        f"({cv * repeats} folds)"
    )


def print_fit(result, *, said: list[str] | None = None) -> None:
    """The short table `featx fit` prints, after the warning and the notes; with
    ``said`` (the notes announced before the work, with the warning), only the
    notes the work added (a layer compared once, say)."""
    if said is None:
        announce(result.pretrained, result.notes)
    else:
        print_notes([n for n in result.notes if n not in said])
    _print_layer_scores(result)
    click.echo(
        f"cache: {Path(result.cache).name}   "
        + (f"model: {result.model}   " if result.model_scores else "")
        + f"layer: {result.layer} ({result.n_features})   clf: {result.clf}   "
        f"rows: {result.n_rows}, {len(result.classes)} classes"
    )
    if result.views != ["center"]:
        click.echo(f"views: {describe_views(result.views, result.train_views)}")
    how = "tuned inside each training fold" if result.tuned else "fixed"
    param = ", ".join(f"{k} {v:g}" for k, v in result.params.items())
    click.echo(
        f"protocol: {protocol(result.cv, result.repeats)}, stratified, shuffled, "
        f"seed {result.seed}; scale {result.scale}"
        + (f", PCA {result.pca}" if result.pca else "")
    )
    if param:
        click.echo(f"regularisation {how}; final model: {param}")
    _print_folds(result)
    if result.test:
        _print_test(result)
    if result.model_path:
        click.echo(f"model: {result.model_path} (sha256 in {result.model_path}.sha256)")


def prediction_line(r, labelled: bool, top_k: int) -> str:
    """One image of `featx predict`'s table, tab-separated."""
    if r.error:
        return f"{r.path}\tERROR: {r.error}"
    line = f"{r.path}\t{r.label}\t{r.score:.4f} ({r.score_kind})"
    if labelled:
        mark = (
            ""
            if r.true_label is None
            else ("ok" if r.true_label == r.label else "WRONG")
        )
        line += f"\ttrue: {r.true_label or '?'} {mark}".rstrip()
    if top_k > 1:
        line += "\ttop: " + ", ".join(f"{c} {v:.4f}" for c, v in r.top)
    return line


def prediction_rows(results, top_k: int) -> list[dict]:
    """`featx predict --json`'s records, one per image."""
    labelled = any(r.true_label is not None for r in results)
    return [
        {
            "path": r.path,
            "label": r.label,
            "score": r.score,
            "score_kind": r.score_kind,
            "error": r.error,
            **({"true_label": r.true_label} if labelled else {}),
            **({"top": [list(t) for t in r.top]} if top_k > 1 else {}),
        }
        for r in results
    ]


def print_predictions(results, *, top_k: int, as_json: bool, as_csv: bool) -> None:
    """`featx predict`'s output: a table, a JSON list or CSV on stdout."""
    if as_json:
        click.echo(json.dumps(prediction_rows(results, top_k), indent=2))
    elif as_csv:
        rows = prediction_rows(results, top_k)
        writer = csv.DictWriter(sys.stdout, fieldnames=list(rows[0]))
        writer.writeheader()
        for row in rows:
            if "top" in row:
                row["top"] = ";".join(f"{c}:{v:.4f}" for c, v in row["top"])
            writer.writerow(row)
    else:
        labelled = any(r.true_label is not None for r in results)
        for r in results:
            click.echo(prediction_line(r, labelled, top_k))


def print_report(report, *, said: list[str] | None = None) -> None:
    """The ranking `featx report` (and `featx demo`) prints, and its files;
    with ``said`` (the notes announced before the work, with the warning),
    only the notes the work added."""
    from featx.report.render import headline

    if said is None:
        announce(report.pretrained, report.notes)
    else:
        # a choice said before may come back reworded (the caches were named)
        heads = {re.split("[,:;]", n)[0] for n in said}
        print_notes([n for n in report.notes if re.split("[,:;]", n)[0] not in heads])
    click.echo(
        f"{len(report.rows)} results ({report.computed} computed, {report.reused} "
        f"reused). {headline(report.verdict, report.rows)}"
    )
    best = report.best
    click.echo(f"protocol: {protocol(best.cv, best.repeats)}, every combination")
    width = max([8, *(len(r["clf"]) + 2 for r in report.rows)])
    layer_width = max([12, *(len(r["layer"]) + 2 for r in report.rows)])
    several = len(report.models) > 1
    model_width = max(len(m) for m in report.models) + 2 if several else 0
    for r in report.rows:
        test = r.get("test_accuracy")
        low, high = r["cv_accuracy_ci95"]
        mark = report.verdict.mark(r)
        model = f"{r.model:<{model_width}}" if several else ""
        click.echo(
            f"  {model}{r['layer']:<{layer_width}}{r['clf']:<{width}}"
            f"{r['cv_accuracy_mean']:.4f} "
            f"[{low:.4f}, {high:.4f}]"
            + (f"   test {test:.4f}" if test is not None else "")
            + (f"   {mark}" if mark else "")
        )
    click.echo(f"report: {report.files['html']}")
    click.echo(f"        {report.files['md']}, results.json, results.csv, figures")
