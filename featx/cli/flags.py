"""How the command line spells the library's parameters in messages
(:func:`featx.errors.param`): each error and note the library writes names a
parameter (``spatial='avg'``); the command line shows its flag (``--spatial
avg``)."""

from __future__ import annotations

from featx.errors import Message

__all__ = ["FLAGS", "as_flags"]

#: The flag of each library parameter whose flag is not ``--`` and its name
#: with dashes (what :func:`featx.errors.render` assumes otherwise).
FLAGS = {
    "layer_names": "--layer",
    "num_workers": "--workers",
    "cache_dir": "--cache-dir",
    "label_from_name": "--label-from-name",
}


def as_flags(text: str) -> str:
    """``text`` (a note or a message) with its parameters spelled as flags."""
    return text.for_cli(FLAGS) if isinstance(text, Message) else text
