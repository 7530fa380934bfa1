"""The base of every record featx writes and reads back: a model file's metadata
(:class:`featx.predict.modelfile.ModelMeta`), a result (:class:`featx.fit.FitResult`,
a stored result and a line of ``results.json``), ``results.json`` itself, and the
cache's version check (:mod:`featx.cache.format`).

In the spirit of anndata's IO registry, the rules live here once:

- one version rule (:func:`check_format`): a record without a format is the first
  format; one whose format is not a whole number, or later than this featx reads,
  is refused;
- one message for a record made by a newer featx (:func:`newer_message`), ending
  ``upgrade featx to read it``;
- one place that keeps the keys this featx does not know
  (:meth:`Record.from_dict`): they land in ``extra`` and are written back
  unchanged (:meth:`Record.to_dict`), so a file that a later featx wrote survives
  a round trip through this one.
"""

from __future__ import annotations

import numbers
from dataclasses import MISSING, asdict, fields
from typing import Any

from featx import __version__
from featx.errors import FeatxError

__all__ = [
    "Record",
    "RecordError",
    "check_format",
    "newer_message",
    "required_fields",
]


class RecordError(FeatxError, ValueError):
    """A stored result or results.json that this featx cannot read."""


def newer_message(what: str, found: Any, ours: int, writer: str | None) -> str:
    """The one line that refuses a record written by a newer featx."""
    if isinstance(found, numbers.Integral):  # numpy's too: an HDF5 attribute
        found = int(found)
    return (
        f"{what} was written by a newer featx (featx {writer or '(version unknown)'} "
        f"wrote format {found!r}); this featx {__version__} reads formats up to "
        f"{ours}: upgrade featx to read it"
    )


def check_format(
    found: Any,
    ours: int,
    *,
    what: str,
    writer: str | None = None,
    error: type[Exception] = FeatxError,
    absent: int = 1,
) -> int:
    """The format of a record, checked by the one rule: ``None`` (no format
    recorded) reads as ``absent``; a format above ``ours`` raises ``error`` with
    :func:`newer_message`; one that is not a whole number from ``absent`` on (a
    string, a bool, 2.5, infinity, -3) is refused as unreadable."""
    if found is None:
        return absent
    version = None
    if isinstance(found, numbers.Real) and not isinstance(found, bool):
        try:
            version = int(found)
        except (OverflowError, ValueError):  # infinity, NaN
            version = None
        if version is not None and (version != found or version < absent):
            version = None
    if version is None:
        integral = isinstance(found, numbers.Integral) and not isinstance(found, bool)
        shown = int(found) if integral else repr(found)
        raise error(
            f"{what} is not a record this featx can read: its format {shown} is "
            f"not a format featx writes (whole numbers from {absent})"
        )
    if version > ours:
        raise error(newer_message(what, found, ours, writer))
    return version


def required_fields(cls) -> list[str]:
    """The fields of dataclass ``cls`` that have no default."""
    return [
        f.name
        for f in fields(cls)
        if f.default is MISSING and f.default_factory is MISSING
    ]


class Record:
    """A dataclass record spelled as a dict whose keys are its field names, with
    an ``extra`` field (a dict) for keys this featx does not know.

    Subclasses are dataclasses that declare ``extra: dict``; they set
    :attr:`ERROR` (what :meth:`from_dict` raises) and :attr:`KIND` (what a
    record that is not one is called in that error).
    """

    ERROR: type[Exception] = FeatxError
    KIND = "a featx record"
    #: What :meth:`from_dict` adds to its refusal of a record missing a key.
    MISSING_HINT = ""

    def to_dict(self) -> dict:
        """The record as it is stored: its fields, then the keys kept aside."""
        data = asdict(self)
        return {**data.pop("extra"), **data}

    @classmethod
    def from_dict(cls, data: dict, *, where: str | None = None):
        """Read a record: refuse, in one line, a dict that lacks a required key;
        keep the keys this featx does not know in ``extra``."""
        where = where or cls.KIND
        if not isinstance(data, dict):
            raise cls.ERROR(f"{where} is not {cls.KIND}")
        missing = [k for k in required_fields(cls) if k not in data]
        if missing:
            raise cls.ERROR(
                f"{where} is not {cls.KIND} (no {', '.join(missing)})"
                + cls.MISSING_HINT
            )
        known = {f.name for f in fields(cls)} - {"extra"}
        return cls(
            **{k: v for k, v in data.items() if k in known},
            extra={k: v for k, v in data.items() if k not in known},
        )
