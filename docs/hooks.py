"""MkDocs hooks: pages whose content comes from the code, so that it cannot drift.

``docs/cache-format.md`` holds a block from ``<!-- featx:cache-format -->`` to
``<!-- /featx:cache-format -->`` (a note for readers of the raw file); it is
replaced by :func:`featx.cache.describe_format`, the tables of root attributes and
datasets generated from ``CacheMeta`` and the code that writes a cache.
``docs/extract.md``'s ``<!-- featx:image-formats -->`` block is replaced by the
formats featx reads, from :func:`featx.images.image_extensions` (what Pillow
and pillow-heif decode where the site is built). ``docs/cli.md``'s
``<!-- featx:cli -->`` block is replaced by :func:`cli_reference`: every
command's help, usage, options and examples, as ``featx COMMAND -h`` prints
them, with click's ``\\b`` paragraphs (printed as written) as code blocks.

``docs/architecture.md``'s ``<!-- featx:stages -->`` block is replaced by
:func:`stages_table`: each stage and the stages it imports, from the code.

The docstrings mkdocstrings renders use Sphinx roles (``:class:`X```); Markdown
leaves the role's name before the code, and :func:`on_page_content` drops it.
"""

from __future__ import annotations

import inspect
import re
import sys
from pathlib import Path

from mkdocs.exceptions import PluginError

MARKER = "<!-- featx:cache-format -->"
END_MARKER = "<!-- /featx:cache-format -->"
FORMATS_MARKER = "<!-- featx:image-formats -->"
FORMATS_END = "<!-- /featx:image-formats -->"
STAGES_MARKER = "<!-- featx:stages -->"
STAGES_END = "<!-- /featx:stages -->"
CLI_MARKER = "<!-- featx:cli -->"
CLI_END = "<!-- /featx:cli -->"
SPHINX_ROLE = re.compile(r":(?:class|func|meth|mod|attr|data|exc|obj):(?=<code>)")
ROOT = Path(__file__).resolve().parent.parent


def on_config(config):
    # Document the featx of this checkout, installed or not (the hooks
    # import it; mkdocstrings reads it through its own ``paths``).
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


def help_markdown(text: str) -> list[str]:
    """Markdown lines of a click help text or epilog: its paragraphs as text,
    and each ``\\b`` paragraph (which click prints as written) as a code block,
    after its first line when that line is a title ending in a colon
    ("Examples:", "Typical session:")."""
    text = inspect.cleandoc(text.split("\f", 1)[0])
    lines = []
    for paragraph in re.split(r"\n\s*\n", text):
        rows = paragraph.splitlines()
        if rows and rows[0].strip() == "\b":
            rows = rows[1:]
            if rows and rows[0].endswith(":") and not rows[0].startswith(" "):
                lines += [f"**{rows[0]}**", ""]
                rows = rows[1:]
            lines += ["```text", *inspect.cleandoc("\n".join(rows)).splitlines()]
            lines += ["```", ""]
        else:
            lines += [*rows, ""]
    return lines


def command_markdown(command, ctx, depth: int) -> list[str]:
    """One command's section: its help, usage, options and epilog."""
    import click

    # the full command path as heading and anchor (cli.md#featx-extract), the
    # command's own name in the table of contents (attr_list)
    path = ctx.command_path
    anchor = path.replace(" ", "-")
    heading = f"{path} {{ #{anchor} data-toc-label='{ctx.info_name}' }}"
    lines = ["#" * depth + " " + heading, ""]
    lines += help_markdown(command.help or command.short_help or "")
    formatter = ctx.make_formatter()
    formatter.write_usage(
        ctx.command_path, " ".join(command.collect_usage_pieces(ctx)), prefix=""
    )
    lines += ["**Usage:**", "", "```text", formatter.getvalue().strip(), "```", ""]
    formatter = ctx.make_formatter()
    click.Command.format_options(command, ctx, formatter)
    options = formatter.getvalue().splitlines()[1:]  # without "Options:"
    if options:
        lines += ["**Options:**", "", "```text", *options, "```", ""]
    lines += help_markdown(command.epilog or "")
    return lines


def cli_reference(prog_name: str = "featx") -> str:
    """The command-line reference page's body: the ``featx`` group, then each
    visible command in alphabetical order."""
    import click

    from featx.cli import main

    ctx = click.Context(main, info_name=prog_name, **main.context_settings)
    lines = command_markdown(main, ctx, 2)
    for name in sorted(main.list_commands(ctx)):
        command = main.get_command(ctx, name)
        if command is None or command.hidden:
            continue
        sub = click.Context(
            command, info_name=name, parent=ctx, **command.context_settings
        )
        lines += command_markdown(command, sub, 3)
    return "\n".join(lines).strip() + "\n"


def stages_table() -> str:
    """The architecture page's table: each stage, floor by floor from the top,
    with what it holds (its package docstring's first sentence) and the stages
    it imports, read from the code by the structure test's own import walk."""
    import ast

    from tests.structure import FLOORS, stage_graph

    graph = stage_graph()
    lines = ["| floor | stage | holds | imports |", "|---|---|---|---|"]
    for floor, stage in reversed(list(enumerate(FLOORS))):
        if stage in ("floor", "featx", "__main__"):
            continue
        package = ROOT / "featx" / stage
        path = package / "__init__.py" if package.is_dir() else package.with_suffix(
            ".py"
        )
        doc = ast.get_docstring(ast.parse(path.read_text())) or ""
        holds = " ".join(doc.split("\n\n")[0].split()).split(". ")[0].rstrip(".")
        below = sorted(graph.get(stage, {}), key=FLOORS.index, reverse=True)
        shown = ", ".join(f"`{b}`" for b in below if b not in ("floor", "featx"))
        lines.append(f"| {floor} | `featx.{stage}` | {holds} | {shown or '—'} |")
    return "\n".join(lines) + "\n"


def _replace(markdown: str, page, begin: str, end: str, text: str) -> str:
    before, rest = markdown.split(begin, 1)
    if end not in rest:
        raise PluginError(f"{page.file.src_path}: {begin} without {end}")
    return before + text.strip() + "\n" + rest.split(end, 1)[1]


def on_page_markdown(markdown: str, page, config, files) -> str:
    if CLI_MARKER in markdown:
        markdown = _replace(markdown, page, CLI_MARKER, CLI_END, cli_reference())
    if STAGES_MARKER in markdown:
        markdown = _replace(markdown, page, STAGES_MARKER, STAGES_END, stages_table())
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
