"""MkDocs hooks: pages whose content comes from the code, so that it cannot drift.

``docs/cache-format.md`` holds a block from ``<!-- featx:cache-format -->`` to
``<!-- /featx:cache-format -->`` (a note for readers of the raw file); it is
replaced by :func:`featx.cache.describe_format`, the tables of root attributes and
datasets generated from ``CacheMeta`` and the code that writes a cache.

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
SPHINX_ROLE = re.compile(r":(?:class|func|meth|mod|attr|data|exc|obj):(?=<code>)")
ROOT = Path(__file__).resolve().parent.parent


def on_config(config):
    # Document the featx of this checkout, installed or not (mkdocs-click and the
    # hook import it; mkdocstrings reads it through its own ``paths``).
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    return config


def on_page_markdown(markdown: str, page, config, files) -> str:
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
