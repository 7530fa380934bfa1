"""What the commands print: progress bars, summaries and tables.

The library returns values and never prints; these functions turn them into
the lines a user reads. Warnings and notes go to stderr where a command's
stdout may be machine-read (``--json``, ``--csv``).
"""

from __future__ import annotations

import csv
import json
import sys

import click

from featx.cli.flags import as_flags
from featx.errors import printable

__all__ = [
    "TqdmProgress",
    "random_weights_banner",
    "print_notes",
    "announce",
    "print_layers",
    "print_extraction",
    "parity_line",
    "SKIP_GROUPS_SHOWN",
    "skipped_line",
    "warnings_line",
    "print_info",
    "print_skipped",
    "print_warnings",
    "prediction_line",
    "prediction_rows",
    "print_predictions",
]


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
        click.echo(f"note: {as_flags(note)}")


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
    if result.parity:
        click.echo(parity_line(result.parity))
    if result.ignored:
        click.echo(
            f"ignored: {len(result.ignored)} image(s) directly in DATA_DIR, outside "
            "any class folder (e.g. " + printable(result.ignored[0]) + ")"
        )
    for note in result.notes:
        click.echo(f"note:    {as_flags(note)}")
    for label, items in (("skipped", result.skipped), ("failed", result.failures)):
        for item in items[:20]:
            click.echo(
                f"{label + ':':<9}{printable(item.path)}: {as_flags(item.reason)}"
            )
        if len(items) > 20:
            click.echo(f"{label + ':':<9}... and {len(items) - 20} more (`featx info`)")
    if result.not_images:
        click.echo(skipped_line(result.not_images))
    if result.warnings:
        click.echo(warnings_line(len(result.warnings)))
    if result.n_images == 0:
        raise click.ClickException("no image could be decoded; nothing to extract")


def parity_line(parity: dict[str, float]) -> str:
    """Another runtime's (or int8's) difference from float32 torch, one line:
    ``parity:  vs fp32 torch (‖a−b‖/‖b‖, 32 images): fc7 1.2e-06, …``."""
    diffs = ", ".join(f"{key} {value:.2g}" for key, value in parity.items())
    return f"parity:  vs fp32 torch (‖a−b‖/‖b‖, on a sample): {diffs}"


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
    from featx.images.views import setting_of

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
    click.echo(f"runtime:  {data['runtime']} (extract --runtime)")
    if "calibration" in data:
        c = data["calibration"]
        click.echo(
            f"calibration: {c['images']} images of {c['root']} (seed {c['seed']}, "
            f"sha256 {c['sha256']})"
        )
    v = data["versions"]
    click.echo(
        f"versions: featx {v['featx']}, torch {v['torch']}, "
        f"torchvision {v['torchvision']}"
    )
    click.echo("layers:")
    for key, layer in data["layers"].items():
        state = _layer_state(layer, data["n_images"])
        if "runtime_parity" in layer:
            state += f"  vs fp32 torch {layer['runtime_parity']:.2g}"
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
