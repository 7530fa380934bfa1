"""How the command line spells the library's parameters in messages
(:func:`featx.errors.param`): each error and note the library writes names a
parameter (``spatial='avg'``); the command line shows its flag (``--spatial
avg``)."""

from __future__ import annotations

import click

from featx.errors import Message

__all__ = ["COMMAND_FLAGS", "FLAGS", "as_flags", "flags_of"]

#: The flag of each library parameter whose flag is not ``--`` and its name
#: with dashes (what :func:`featx.errors.render` assumes otherwise).
FLAGS = {
    "layer_names": "--layer",
    "num_workers": "--workers",
    "cache_dir": "--cache-dir",
    "label_from_name": "--label-from-name",
    "fmt": "--format",
}


#: Where one command spells a parameter its own way (report takes several
#: layers and classifiers).
COMMAND_FLAGS = {"report": {"layer": "--layers", "clf": "--clfs"}}


def flags_of(command: str | None) -> dict[str, str]:
    """The flags of ``command`` (a subcommand's name), for :func:`render`."""
    return {**FLAGS, **COMMAND_FLAGS.get(command or "", {})}


def as_flags(text: str) -> str:
    """``text`` (a note or a message) with its parameters spelled as the flags
    of the command that is running."""
    if not isinstance(text, Message):
        return text
    ctx = click.get_current_context(silent=True)
    return text.for_cli(flags_of(ctx.info_name if ctx else None))
