"""MkDocs hooks: pages whose content comes from the code, so that it cannot drift.

``docs/cache-format.md`` holds a block from ``<!-- featx:cache-format -->`` to
``<!-- /featx:cache-format -->`` (a note for readers of the raw file); it is
replaced by :func:`featx.cache.describe_format`, the tables of root attributes and
datasets generated from ``CacheMeta`` and the code that writes a cache.
``docs/extract.md``'s ``<!-- featx:image-formats -->`` block is replaced by the
formats featx reads, from :func:`featx.images.image_extensions` (what Pillow
and pillow-heif decode where the site is built).

The docstrings mkdocstrings renders use Sphinx roles (``:class:`X```); Markdown
leaves the role's name before the code, and :func:`on_page_content` drops it.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from mkdocs.exceptions import PluginError

MARKER = "<!-- featx:cache-format -->"
END_MARKER = "<!-- /featx:cache-format -->"
FORMATS_MARKER = "<!-- featx:image-formats -->"
FORMATS_END = "<!-- /featx:image-formats -->"
SPHINX_ROLE = re.compile(r":(?:class|func|meth|mod|attr|data|exc|obj):(?=<code>)")
ROOT = Path(__file__).resolve().parent.parent


def on_config(config):
    # Document the featx of this checkout, installed or not (mkdocs-click and the
    # hook import it; mkdocstrings reads it through its own ``paths``).
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    return config


def image_formats() -> str:
    """A Markdown list: each format featx reads, with its extensions."""
    from PIL import Image

    from featx.images import image_extensions

    extensions = image_extensions()  # registers pillow-heif's formats too
    by_format: dict[str, list[str]] = {}
    for ext, fmt in Image.registered_extensions().items():
        if ext.lower() in extensions:
            by_format.setdefault(fmt, []).append(ext.lower())
    lines = [
        f"- {fmt}: " + ", ".join(f"`{e}`" for e in sorted(set(exts)))
        for fmt, exts in sorted(by_format.items())
    ]
    return (
        f"{len(extensions)} extensions, in any case, of {len(by_format)} formats:\n\n"
        + "\n".join(lines)
        + "\n"
    )


def _replace(markdown: str, page, begin: str, end: str, text: str) -> str:
    before, rest = markdown.split(begin, 1)
    if end not in rest:
        raise PluginError(f"{page.file.src_path}: {begin} without {end}")
    return before + text.strip() + "\n" + rest.split(end, 1)[1]


def on_page_markdown(markdown: str, page, config, files) -> str:
    if FORMATS_MARKER in markdown:
        markdown = _replace(
            markdown, page, FORMATS_MARKER, FORMATS_END, image_formats()
        )
    if MARKER not in markdown:
        return markdown
    import featx.cache

    describe = getattr(featx.cache, "describe_format", None)
    if describe is None:
        raise PluginError(
            f"{page.file.src_path}: featx.cache has no describe_format(); "
            "the cache format page is generated from it"
        )
    before, rest = markdown.split(MARKER, 1)
    if END_MARKER not in rest:
        raise PluginError(f"{page.file.src_path}: {MARKER} without {END_MARKER}")
    after = rest.split(END_MARKER, 1)[1]
    return before + describe().strip() + "\n" + after


def on_page_content(html: str, page, config, files) -> str:
    return SPHINX_ROLE.sub("", html)
