"""Rendering a report's context as Markdown and as self-contained HTML.

Folder, class and file names are untrusted text: HTML escapes them, Markdown
backslash-escapes every ASCII punctuation character in them.
"""

from __future__ import annotations

from pathlib import Path

from featx.fit.compare import SIMPLEST_RULE, TIE_RULE, Verdict
from featx.report.figures import accuracy_title
from featx.report.provenance_text import (  # noqa: F401 (re-exported)
    MODEL_NAMES,
    describe_model,
    provenance_lines,
    wrap_command,
)
from featx.report.records import ResultRow, several_models
from featx.report.sources import column_names, file_key

__all__ = [
    "MD_SPECIAL",
    "MODEL_NAMES",
    "PER_CLASS_HEADER",
    "RANDOM_BANNER",
    "describe_best",
    "describe_model",
    "header",
    "headline",
    "how_chosen",
    "md",
    "models_note",
    "per_class_rows",
    "per_class_title",
    "provenance_lines",
    "random_banner",
    "render_markdown",
    "variants_note",
    "wrap_command",
]

RANDOM_BANNER = (
    "These features come from RANDOM weights, not a pretrained network: the "
    "numbers below say nothing about what AlexNet knows."
)


def random_banner(p: dict) -> str | None:
    """The warning atop a report whose features (some of them, with several
    models) come from random weights; None when every model's are trained."""
    if "models" not in p:
        return None if p["weights"]["pretrained"] else RANDOM_BANNER
    random = [m["model"] for m in p["models"] if not m["weights"]["pretrained"]]
    if not random:
        return None
    return (
        f"The features of {', '.join(random)} come from RANDOM weights, not a "
        "pretrained network: their numbers below say nothing about what the "
        "network knows."
    )


def _where(row: ResultRow, esc, several: bool) -> str:
    """A row's layer, after its model when ``several`` are compared."""
    return f"{esc(row.model)} {esc(row.layer)}" if several else esc(row.layer)


def describe_best(best: ResultRow, esc=str, several: bool = False) -> str:
    """``fc7 + svm, CV accuracy 0.9800 (95% CI 0.9712–0.9888), test accuracy
    0.9867``, with the layer and classifier names passed through ``esc`` (and
    the model's before the layer, ``alexnet fc7 + svm``, with ``several``)."""
    text = f"{_where(best, esc, several)} + {esc(best.clf)}, CV accuracy " + (
        _acc(best)
        if "cv_accuracy_ci95" in best
        else f"{best.cv_accuracy_mean:.4f} ± {best.cv_accuracy_std:.4f}"
    )
    if best.test_accuracy is not None:
        text += f", test accuracy {best.test_accuracy:.4f}"
    return text


def headline(verdict: Verdict, rows: list[ResultRow], esc=str) -> str:
    """The report's first line, from the comparison's one :class:`Verdict`
    (which also marks the table): ``Best: …`` only when the best combination
    beats every other; otherwise how many are tied with it, and the simplest of
    them (:data:`featx.fit.compare.SIMPLEST_RULE`), which the table marks
    ``simplest``."""
    several = several_models(rows)
    best, simplest = verdict.best, verdict.simplest
    if not verdict.ties:
        return f"Best: {describe_best(best, esc, several)}"
    return (
        f"No clear winner: {len(verdict.tied)} of {len(rows)} combinations are "
        "statistically tied with the best; the simplest of them is "
        f"{describe_best(simplest, esc, several)}"
        + (
            ""
            if simplest is best
            else f" (highest mean: {_where(best, esc, several)} + "
            f"{esc(best.clf)}, {best.cv_accuracy_mean:.4f})"
        )  # fmt: skip
    )


#: The characters that mean something to Markdown (and HTML inside it).
MD_SPECIAL = set("\\`*_{}[]<>()#+!|~$&")


def md(text) -> str:
    """Escape untrusted text for Markdown: a backslash before each character
    that could start markup, and nothing else (paths stay readable)."""
    return "".join("\\" + c if c in MD_SPECIAL else c for c in str(text))


def _acc(r: ResultRow) -> str:
    low, high = r.cv_accuracy_ci95
    return f"{r.cv_accuracy_mean:.4f} (95% CI {low:.4f}–{high:.4f})"


def how_chosen(ctx) -> str:
    """One sentence: how the best was chosen, and what is tied with it."""
    verdict = ctx["verdict"]
    tied = [r for r in verdict.tied if r is not verdict.best]
    n_folds = len(ctx["best"]["cv_scores"]["accuracy"])
    return (
        f"How the best was chosen: {TIE_RULE}, over {n_folds} folds "
        f"({ctx['best']['cv']}-fold CV × {ctx['best'].get('repeats', 1)} repeat(s)). "
        + (
            f"{len(tied)} other combination(s) are tied with it; of the tied ones, "
            f"{SIMPLEST_RULE}."
            if tied
            else "No other combination is tied with it."
        )
        + variants_note(ctx["rows"])
        + models_note(ctx["rows"])
    )


def models_note(rows: list[ResultRow]) -> str:
    """How models are compared, where the rows are of several."""
    models = list(dict.fromkeys(r.model for r in rows))
    if len(models) < 2:
        return ""
    return (
        f" The {len(models)} models ({', '.join(models)}) are compared on the "
        "same images and the same folds, so their scores pair like those of "
        "layers; an exact tie between models goes to the one listed first."
    )


def variants_note(rows: list[ResultRow]) -> str:
    """What the rows beyond plain classifiers on the centre crop are."""
    labels = {r.clf for r in rows}
    note = ""
    views = sorted({r.clf.partition("+")[2] for r in rows if "+" in r.clf})
    if views:
        note += (
            f" Rows named like svm+{views[0]} train on every view of each image "
            "(augmentation; all views of an image in the same fold) and average "
            "their scores over an image's views; the others use the centre crop."
        )
    if "head" in labels:
        note += (
            " head is AlexNet's fc6-fc8 fine-tuned on pool5 (fc6 and fc7 from the "
            "weights, a new fc8)."
        )
        fine_tuned = {r.model for r in rows if r.clf == "head"}
        models = dict.fromkeys(r.model for r in rows)
        headless = [m for m in models if m not in fine_tuned]
        if headless:
            note += f" {', '.join(headless)} have no head rows: the head is AlexNet's."
    if note:
        note += " Every row is scored on the same folds."
    return note


def _fmt(value, digits=4) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def _has_test(ctx) -> bool:
    return any(r.test_accuracy is not None for r in ctx["rows"])


def _table_rows(ctx) -> list[list[str]]:
    """Cells of the results table; names are left for the renderer to escape."""
    out = []
    several = several_models(ctx["rows"])
    for r in ctx["rows"]:
        mark = ctx["verdict"].mark(r)
        cells = [r.model] if several else []
        cells += [
            r.layer,
            r.clf,
            _acc(r),
            mark,
            f"{r.p_vs_best:.3f}" if r is not ctx["best"] else "",
            f"{r.cv_f1_macro_mean:.4f} ± {r.cv_f1_macro_std:.4f}",
            f"{r.fit_time_mean:.2f}",
        ]
        if _has_test(ctx):
            cells.append(_fmt(r.test_accuracy))
        out.append(cells)
    return out


def header(ctx) -> list[str]:
    cols = ["model"] if several_models(ctx["rows"]) else []
    cols += ["layer", "classifier", "CV accuracy (Fig. 1)", "vs best", "p vs best"]
    cols += ["CV macro-F1", "fit s (Fig. 4)"]
    return cols + (["test accuracy (Fig. 1)"] if _has_test(ctx) else [])


def per_class_rows(r: ResultRow) -> list[list[str]]:
    return [
        [name, f"{v['precision']:.3f}", f"{v['recall']:.3f}", f"{v['f1']:.3f}",
         str(v["support"])]
        for name, v in (r.per_class or {}).items()
    ]  # fmt: skip


PER_CLASS_HEADER = ["class", "precision", "recall", "F1", "support"]


def per_class_title(ctx, row: ResultRow, esc) -> str:
    """``fc7 + svm``: whose per-class scores a table holds."""
    return f"{_where(row, esc, several_models(ctx['rows']))} + {esc(row.clf)}"


def _figures(ctx) -> list[tuple[str, Path]]:
    files = ctx["files"]
    figs = [
        (f"Fig. 1: {accuracy_title(several_models(ctx['rows']), _has_test(ctx))}",
         files["accuracy"]),
        ("Fig. 2: Confusion matrix of the best combination", files["confusion"]),
        ("Fig. 3: Out-of-fold confusion matrix of every combination",
         files["confusions"]),
        ("Fig. 4: Fit time (log scale)", files["fit_time"]),
        ("Fig. 5: Learning curve: accuracy against training images per class",
         files["learning_curve"]),
    ]  # fmt: skip
    if "similarity" in files:
        figs.append(("Fig. 6: Layer similarity (linear CKA)", files["similarity"]))
    columns = ctx["columns"]
    several = len({m for m, _ in columns}) > 1
    figs += [
        (f"PCA projection of {name}", files[f"pca_{file_key(column, several)}"])
        for column, name in zip(columns, column_names(columns), strict=True)
    ]
    return figs


def _confidence(item: dict) -> str:
    """`` (probability 0.93)`` or `` (decision value -0.975)``: how sure the
    classifier was of its wrong answer, and what kind of number says it."""
    value = item.get("confidence")
    kind = item.get("score_kind", "score")
    return "" if value is None else f" ({kind} {value:.3g})"


def render_markdown(ctx) -> str:
    p = ctx["provenance"]
    best = ctx["best"]
    lines = ["# featx report", ""]
    banner = random_banner(p)
    if banner:
        lines += [f"> **WARNING: {banner}**", ""]
    head = header(ctx)
    names = 3 if head[0] == "model" else 2  # cells of names: model, layer, clf
    lines += [
        headline(ctx["verdict"], ctx["rows"], md),
        "",
        how_chosen(ctx),
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    lines += [
        "| " + " | ".join([*map(md, row[:names]), *row[names:]]) + " |"
        for row in _table_rows(ctx)
    ]
    lines += ["", f"## Per class: {per_class_title(ctx, best, md)}", ""]
    lines += ["| " + " | ".join(PER_CLASS_HEADER) + " |", "|---|---|---|---|---|"]
    lines += [
        "| " + " | ".join([md(row[0]), *row[1:]]) + " |" for row in per_class_rows(best)
    ]
    lines += ["", "Every combination's per-class scores are in results.json; every "
              "image's out-of-fold prediction is in predictions.csv."]  # fmt: skip
    lines += ["", "## Figures", ""]
    for title, path in _figures(ctx):
        lines += [f"![{md(title)}]({Path(path).name})", ""]
    gallery = ctx["analyses"]["gallery"]
    lines += [f"## Misclassified ({gallery['n_wrong']}, {gallery['where']})", ""]
    if gallery.get("order"):
        lines += [f"Shown: {gallery['order']}.", ""]
    lines += [
        f"- {md(item['path'])}: true {md(item['true'])}, predicted "
        f"{md(item['predicted'])}" + _confidence(item)
        for item in gallery["items"]
    ]
    if gallery["n_wrong"] > len(gallery["items"]):
        lines.append(f"- … and {gallery['n_wrong'] - len(gallery['items'])} more")
    lines.append("")
    lines += ["## Provenance", ""]
    lines += provenance_lines(p, md)
    commands = [wrap_command(c) for c in p["commands"]]
    lines += ["", "Reproduce:", "", "```sh", *commands, "```", ""]
    return "\n".join(lines)
