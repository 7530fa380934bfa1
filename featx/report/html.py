"""A report's context as one self-contained HTML page (figures inlined).

Folder, class and file names are untrusted text: every one is HTML-escaped.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path

from featx.report.provenance_text import provenance_lines, wrap_command
from featx.report.records import several_models
from featx.report.render import (
    PER_CLASS_HEADER,
    _confidence,
    _figures,
    _table_rows,
    header,
    headline,
    how_chosen,
    per_class_rows,
    per_class_title,
    random_banner,
)

__all__ = ["CHECK_IMAGES", "CSS", "MODELS_CSS", "render_html"]

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:1000px;
margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0}
th,td{border:1px solid #ccc;padding:.3em .7em;text-align:right}
th:nth-child(-n+2),td:nth-child(-n+2){text-align:left}
tr.best{background:#e8f4e8;font-weight:600} tr.tied{background:#f4f8e8}
.banner{background:#fdd;border:2px solid #c00;color:#900;padding:1em;font-weight:700}
figure{margin:1.5em 0} img{max-width:100%} figcaption{color:#555}
pre{background:#f5f5f5;padding:1em;overflow-x:auto}
pre.reproduce{white-space:pre-wrap;overflow-wrap:anywhere}
"""

#: With a model column, the table's third column holds names too.
MODELS_CSS = ".models th:nth-child(3),.models td:nth-child(3){text-align:left}"

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


def _html_table(head, rows, e, attrs="") -> str:
    return (
        f"<table{attrs}><thead><tr>"
        + "".join(f"<th>{e(h)}</th>" for h in head)
        + "</tr></thead><tbody>"
        + "".join(
            "<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in rows
        )
        + "</tbody></table>"
    )


def _html_per_class(ctx, e) -> list[str]:
    best = ctx["best"]
    parts = [
        f"<h2>Per class: {per_class_title(ctx, best, e)}</h2>",
        _html_table(PER_CLASS_HEADER, per_class_rows(best), e, ' id="per-class"'),
        "<p>Out-of-fold predictions of every combination are in predictions.csv.</p>",
    ]
    for r in ctx["rows"]:
        if r is best:
            continue
        parts.append(
            f"<details><summary>Per class: {per_class_title(ctx, r, e)}</summary>"
            + _html_table(PER_CLASS_HEADER, per_class_rows(r), e)
            + "</details>"
        )
    return parts


def _html_gallery(gallery: dict, e) -> list[str]:
    parts = [
        f"<h2>Misclassified: {gallery['n_wrong']} image(s), best combination, "
        f"{e(gallery['where'])}</h2>",
        f"<p>Shown: {e(gallery['order'])}.</p>" if gallery.get("order") else "",
        '<div id="gallery" style="display:flex;flex-wrap:wrap;gap:8px">',
    ]
    for item in gallery["items"]:
        image = (
            f'<img alt="{e(item["path"])}" src="{item["src"]}">'
            if item["src"]
            else "<div>(unreadable)</div>"
        )
        parts.append(
            '<figure style="margin:0;width:110px;font-size:11px">'
            + image
            + f"<figcaption>{e(item['path'])}<br>true: {e(item['true'])}<br>"
            f"predicted: {e(item['predicted'])}{e(_confidence(item))}"
            "</figcaption></figure>"
        )
    if gallery["n_wrong"] > len(gallery["items"]):
        parts.append(f"<p>… and {gallery['n_wrong'] - len(gallery['items'])} more</p>")
    parts.append("</div>")
    return parts


def render_html(ctx) -> str:
    e = html.escape
    p = ctx["provenance"]
    best = ctx["best"]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        "<title>featx report</title>",
        f"<style>{CSS}{MODELS_CSS if several_models(ctx['rows']) else ''}</style>",
        f"<script>{CHECK_IMAGES}</script>",
        "</head><body>",
        "<h1>featx report</h1>",
    ]
    banner = random_banner(p)
    if banner:
        parts.append(
            f'<div class="banner" id="random-weights">WARNING: {e(banner)}</div>'
        )
    first = headline(ctx["verdict"], ctx["rows"], e)
    parts.append(f'<p id="headline"><strong>{first}</strong></p>')
    parts.append(f'<p id="how-chosen">{e(how_chosen(ctx))}</p>')
    head = header(ctx)
    models = ' class="models"' if several_models(ctx["rows"]) else ""
    parts.append(
        f'<table id="results"{models}><thead><tr>'
        + "".join(f"<th>{e(h)}</th>" for h in head)
        + "</tr></thead><tbody>"
    )
    for r, row in zip(ctx["rows"], _table_rows(ctx), strict=True):
        cls = (
            ' class="best"'
            if r is best
            else (' class="tied"' if r.tied_with_best else "")
        )
        parts.append(f"<tr{cls}>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>")
    parts.append("</tbody></table>")
    parts += _html_per_class(ctx, e)
    parts.append("<h2>Figures</h2>")
    for title, path in _figures(ctx):
        parts.append(
            f'<figure><img alt="{e(title)}" src="{_img(path)}">'
            f"<figcaption>{e(title)}</figcaption></figure>"
        )
    parts += _html_gallery(ctx["analyses"]["gallery"], e)
    parts.append("<h2>Provenance</h2><ul>")
    parts += [f"<li>{line[2:]}</li>" for line in provenance_lines(p, e)]
    parts.append(
        '</ul><p>Reproduce:</p><pre class="reproduce">'
        + e("\n".join(map(wrap_command, p["commands"])))
        + "</pre>"
    )
    parts.append("</body></html>")
    return "\n".join(parts)
