"""Every command's --help ends with examples that parse as written."""

import shlex

import click
import pytest
from click.testing import CliRunner

from featx.cli import main


def examples_of(command: click.Command) -> list[str]:
    """The command lines of a command's Examples block."""
    lines = (command.epilog or "").splitlines()
    assert "Examples:" in lines, f"{command.name} has no Examples section"
    return [line.strip() for line in lines[lines.index("Examples:") + 1 :]]


@pytest.mark.parametrize("name", sorted(main.commands))
def test_help_ends_with_examples(name):
    help_text = CliRunner().invoke(main, [name, "--help"]).output
    assert "\n  Examples:\n" in help_text
    assert help_text.index("Examples:") > help_text.index("Options:")
    found = examples_of(main.commands[name])
    assert 1 <= len(found) <= 3
    tail = [line.strip() for line in help_text.rstrip().splitlines()[-len(found) :]]
    assert tail == found  # printed as written, not rewrapped, at the very end


@pytest.mark.parametrize("name", sorted(main.commands))
def test_examples_parse(name):
    command = main.commands[name]
    for line in examples_of(command):
        program, used, *args = shlex.split(line)
        assert (program, used) == ("featx", name)
        with command.make_context(name, args):  # options, types, choices
            pass


def test_examples_that_load_weights_say_which():
    # a fresh machine has no pretrained weights: the examples run offline
    for line in examples_of(main.commands["extract"]):
        assert "--weights random" in line


def docs_hooks():
    """docs/hooks.py, which builds the command-line reference page."""
    import importlib.util
    from pathlib import Path

    pytest.importorskip("mkdocs")
    path = Path(__file__).resolve().parents[1] / "docs" / "hooks.py"
    spec = importlib.util.spec_from_file_location("featx_docs_hooks", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def code_blocks(markdown: str) -> list[list[str]]:
    """The lines of each fenced code block of ``markdown``."""
    blocks, current = [], None
    for line in markdown.splitlines():
        if line.startswith("```"):
            if current is None:
                current = []
            else:
                blocks.append(current)
                current = None
        elif current is not None:
            current.append(line)
    return blocks


@pytest.mark.parametrize("name", sorted(main.commands))
def test_reference_page_shows_each_commands_examples(name):
    page = docs_hooks().cli_reference()
    section = page.split(f"### featx {name} ", 1)[1].split("\n### ", 1)[0]
    assert "**Examples:**" in section
    # one command a line, in a block of their own, as --help prints them
    assert examples_of(main.commands[name]) in code_blocks(section)


def test_reference_page_keeps_the_typical_session_lines_apart():
    page = docs_hooks().cli_reference()
    session = [
        "featx extract --layer conv5 --layer fc7 --weights random data/Train data/Test",
        "featx fit --clf svm",
        "featx report",
    ]
    assert session in code_blocks(page)
    assert "\b" not in page
