"""Rendering a report's context as Markdown and as self-contained HTML.

Folder, class and file names are untrusted text: HTML escapes them, Markdown
backslash-escapes every ASCII punctuation character in them.
"""

from __future__ import annotations

import base64
import html
import string
from pathlib import Path

RANDOM_BANNER = (
    "These features come from RANDOM weights, not a pretrained network: the "
    "numbers below say nothing about what AlexNet knows."
)


def describe_best(best: dict, esc=str) -> str:
    """``fc7 + svm, CV accuracy 0.9800 ± 0.0038, test accuracy 0.9867``, with the
    layer and classifier names passed through ``esc``."""
    text = (
        f"{esc(best['layer'])} + {esc(best['clf'])}, CV accuracy "
        f"{best['cv_accuracy_mean']:.4f} ± {best['cv_accuracy_std']:.4f}"
    )
    if best.get("test_accuracy") is not None:
        text += f", test accuracy {best['test_accuracy']:.4f}"
    return text


def md(text) -> str:
    """Escape untrusted text for Markdown (CommonMark backslash escapes)."""
    return "".join("\\" + c if c in string.punctuation else c for c in str(text))


def _fmt(value, digits=4) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def _table_rows(ctx) -> list[list[str]]:
    out = []
    for r in ctx["rows"]:
        out.append(
            [
                r["layer"],
                r["clf"],
                f"{r['cv_accuracy_mean']:.4f} ± {r['cv_accuracy_std']:.4f}",
                f"{r['cv_f1_macro_mean']:.4f} ± {r['cv_f1_macro_std']:.4f}",
                f"{r['fit_time_mean']:.2f}",
                _fmt(r.get("test_accuracy")),
            ]
        )
    return out


HEADER = ["layer", "classifier", "CV accuracy", "CV macro-F1", "fit s", "test accuracy"]


def _figures(ctx) -> list[tuple[str, Path]]:
    files = ctx["files"]
    figs = [
        ("Accuracy by layer", files["accuracy"]),
        ("Confusion matrix of the best combination", files["confusion"]),
        ("Fit time", files["fit_time"]),
    ]
    figs += [
        (f"PCA projection of {layer}", files[f"pca_{layer}"]) for layer in ctx["layers"]
    ]
    return figs


def render_markdown(ctx) -> str:
    p = ctx["provenance"]
    best = ctx["best"]
    lines = ["# featx report", ""]
    if not p["weights"]["pretrained"]:
        lines += [f"> **WARNING: {RANDOM_BANNER}**", ""]
    lines += [
        f"Best: {describe_best(best, md)}",
        "",
        "| " + " | ".join(HEADER) + " |",
        "|" + "---|" * len(HEADER),
    ]
    lines += ["| " + " | ".join(md(c) for c in row) + " |" for row in _table_rows(ctx)]
    lines += ["", "## Figures", ""]
    for title, path in _figures(ctx):
        lines += [f"![{md(title)}]({Path(path).name})", ""]
    lines += ["## Provenance", ""]
    lines += _provenance_lines(p, md)
    lines += ["", "Reproduce:", "", "```sh", *p["commands"], "```", ""]
    return "\n".join(lines)


def _provenance_lines(p, esc) -> list[str]:
    classes = ", ".join(
        f"{esc(name)} ({count})" for name, count in p["classes"].items()
    )
    w = p["weights"]
    lines = [
        f"- Data: {esc(p['data_root'])}: {p['n_images']} images, "
        f"{len(p['classes'])} classes: {classes}",
        f"- Failed images: {p['n_failed']}"
        + ("".join(f"; {esc(f['path'])}: {esc(f['reason'])}" for f in p["failed"][:5])),
    ]
    if p["test"]:
        t = p["test"]
        lines.append(
            f"- Test data: {esc(t['data_root'])}: {t['n_images']} images, "
            f"{t['n_failed']} failed"
        )
    lines += [
        f"- Weights: {esc(w['id'])} (sha256 {esc(w['sha256'])})"
        + ("" if w["pretrained"] else " — NOT pretrained"),
        f"- Protocol: {esc(p['protocol'])}",
        "- Versions: "
        + ", ".join(f"{esc(k)} {esc(v)}" for k, v in p["versions"].items()),
        f"- Cache: {esc(p['cache'])}",
        f"- Generated: {esc(p['generated'])}",
    ]
    return lines


CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:1000px;
margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0}
th,td{border:1px solid #ccc;padding:.3em .7em;text-align:right}
th:nth-child(-n+2),td:nth-child(-n+2){text-align:left}
tr.best{background:#e8f4e8;font-weight:600}
.banner{background:#fdd;border:2px solid #c00;color:#900;padding:1em;font-weight:700}
figure{margin:1.5em 0} img{max-width:100%} figcaption{color:#555}
pre{background:#f5f5f5;padding:1em;overflow-x:auto}
"""

CHECK_IMAGES = """
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images);
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; });
  document.body.setAttribute('data-images-total', imgs.length);
  document.body.setAttribute('data-images-loaded', ok.length);
});
"""


def _img(path: Path) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode()
    return f"data:image/png;base64,{data}"


def render_html(ctx) -> str:
    e = html.escape
    p = ctx["provenance"]
    best = ctx["best"]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        "<title>featx report</title>",
        f"<style>{CSS}</style>",
        f"<script>{CHECK_IMAGES}</script>",
        "</head><body>",
        "<h1>featx report</h1>",
    ]
    if not p["weights"]["pretrained"]:
        parts.append(
            f'<div class="banner" id="random-weights">WARNING: {e(RANDOM_BANNER)}</div>'
        )
    parts.append(f"<p>Best: {describe_best(best, e)}</p>")
    parts.append(
        '<table id="results"><thead><tr>'
        + "".join(f"<th>{e(h)}</th>" for h in HEADER)
        + "</tr></thead><tbody>"
    )
    for r, row in zip(ctx["rows"], _table_rows(ctx), strict=True):
        cls = ' class="best"' if r is best else ""
        parts.append(f"<tr{cls}>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>")
    parts.append("</tbody></table><h2>Figures</h2>")
    for title, path in _figures(ctx):
        parts.append(
            f'<figure><img alt="{e(title)}" src="{_img(path)}">'
            f"<figcaption>{e(title)}</figcaption></figure>"
        )
    parts.append("<h2>Provenance</h2><ul>")
    parts += [f"<li>{line[2:]}</li>" for line in _provenance_lines(p, e)]
    parts.append("</ul><p>Reproduce:</p><pre>" + e("\n".join(p["commands"])) + "</pre>")
    parts.append("</body></html>")
    return "\n".join(parts)
