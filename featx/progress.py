"""Progress reporting: the library calls a :class:`Progress`; the CLI draws bars."""

from __future__ import annotations

__all__ = ["Progress", "Within"]


class Progress:
    """Receives progress; the default does nothing. The CLI draws tqdm bars."""

    def start(self, stage: str, total: int) -> None:
        """A stage (``hashing``, ``copying``, ``extracting``, ...) of ``total``
        units."""

    def advance(self, n: int) -> None:
        """``n`` more units of the current stage are done."""

    def describe(self, text: str) -> None:
        """What the current unit of work is (a layer and a classifier, say)."""

    def finish(self) -> None:
        """The current stage ended."""


class Within(Progress):
    """The progress of work done inside one unit of ``outer``'s stage (a fit of
    the report's, say): what it describes shows on ``outer`` after ``what``
    (``fc6 + mlp: fold 3/5``); its own stages draw no bar and move none."""

    def __init__(self, outer: Progress, what: str) -> None:
        self.outer = outer
        self.what = what

    def describe(self, text: str) -> None:
        self.outer.describe(f"{self.what}: {text}")
