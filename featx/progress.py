"""Progress reporting: the library calls a :class:`Progress`; the CLI draws bars."""

from __future__ import annotations


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
