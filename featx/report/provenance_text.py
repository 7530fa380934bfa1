"""The provenance section of a report as lines of text, and the commands that
redo the report, wrapped so that they read and copy whole.

Folder and file names are untrusted text: each line passes them through the
renderer's ``esc``.
"""

from __future__ import annotations

import shlex

__all__ = [
    "MODEL_NAMES",
    "SHELL_OPERATORS",
    "describe_model",
    "provenance_lines",
    "wrap_command",
]

#: How the report names each architecture.
MODEL_NAMES = {
    "alexnet": "alexnet (torchvision's AlexNet, 224 input)",
    "caffe-alexnet": "caffe-alexnet (the original BVLC AlexNet: 227 input, LRN, "
    "grouped convolutions)",
}


def provenance_lines(p, esc) -> list[str]:
    """The provenance section's lines (Markdown list items) of
    :func:`featx.report.provenance.provenance`'s ``p``: with several models,
    one line per model names its weights and caches."""
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
    if "models" in p:  # several: each model's weights and caches
        lines += [
            f"- Model {describe_model(m['model'], esc)}: "
            + _weights(m["weights"], esc)
            + f"; cache {esc(m['cache'])}"
            + (f"; test cache {esc(m['test'])}" if m["test"] else "")
            for m in p["models"]
        ]
    else:
        lines += [
            f"- Model: {describe_model(p.get('model', 'alexnet'), esc)}",
            f"- Weights: {_weights(w, esc)}",
        ]
    lines += [
        f"- Protocol: {esc(p['protocol'])}",
        "- Versions: "
        + ", ".join(f"{esc(k)} {esc(v)}" for k, v in p["versions"].items()),
    ]
    if "models" not in p:
        lines.append(f"- Cache: {esc(p['cache'])}")
    lines.append(f"- Generated: {esc(p['generated'])}")
    return lines


def describe_model(name: str, esc=str) -> str:
    """How the report names an architecture: :data:`MODEL_NAMES`' words, or
    the name itself for a model it has none for."""
    return MODEL_NAMES.get(name) or esc(name)


def _weights(w: dict, esc) -> str:
    return f"{esc(w['id'])} (sha256 {esc(w['sha256'])})" + (
        "" if w["pretrained"] else " — NOT pretrained"
    )


#: Tokens of a command line that must stay unquoted.
SHELL_OPERATORS = ("&&", "||", "|", ";")


def wrap_command(command: str, width: int = 78) -> str:
    """A shell command broken into lines of at most ``width`` characters with
    backslash continuations, so that it reads and copies whole, in a terminal
    as in the report. Lines break only between options: an option stays beside
    its value, the command beside its first option, ``--weights`` beside its
    ``--seed``; a word longer than a line gets a line of its own."""
    try:
        tokens = shlex.split(command)
    except ValueError:  # not shell syntax: shown as it is
        return command
    words: list[str] = []
    for token in tokens:
        word = token if token in SHELL_OPERATORS else shlex.quote(token)
        if words and _continues(words[-1], word):
            words[-1] += " " + word
        else:
            words.append(word)
    while len(words) > 1 and not words[0].split(" ")[-1].startswith("-"):
        if words[1] in SHELL_OPERATORS:
            break
        first = words.pop(1)  # the command and its words up to its first option
        words[0] += " " + first
        if first.startswith("-"):
            break
    lines, line = [], ""
    for word in words:
        if line and len(line) + 1 + len(word) > width - 2:
            lines.append(line + " \\")
            line = "    " + word
        else:
            line = f"{line} {word}" if line else word
    return "\n".join([*lines, line])


def _continues(previous: str, word: str) -> bool:
    """Whether ``word`` stays on the line of the word before it, ``previous``:
    an option's value, and ``--seed`` after ``--weights``."""
    if word in SHELL_OPERATORS or previous in SHELL_OPERATORS:
        return False
    if word.startswith("--seed") and previous.startswith("--weights"):
        return True
    return previous.split(" ")[-1].startswith("-") and not word.startswith("-")
