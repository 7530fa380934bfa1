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
