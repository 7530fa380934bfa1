"""Labels that do not come from class subfolders: a CSV, or a regular
expression on file names."""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from featx.digest import file_sha256
from featx.errors import DataError, Message, ParameterError, param, printable

__all__ = ["Labelling", "read_label_csv"]


@dataclass(frozen=True)
class Labelling:
    """Labels that do not come from class subfolders: a CSV of ``path,label``
    (paths relative to the data folder), or the first group of a regular
    expression searched in each file name (``'^(cat|dog)\\.'``)."""

    csv: Path | None = None
    name_regex: str | None = None

    def __post_init__(self) -> None:
        if (self.csv is None) == (self.name_regex is None):
            raise ParameterError(
                f"give one of {param('labels')} and {param('label_from_name')}"
            )
        if self.name_regex is not None:
            try:
                pattern = re.compile(self.name_regex)
            except re.error as exc:
                raise ParameterError(
                    f"{param('label_from_name', self.name_regex)} is not a regular "
                    f"expression: {exc}"
                ) from exc
            if pattern.groups < 1:
                raise ParameterError(
                    f"{param('label_from_name', self.name_regex)} has no group: put "
                    "the "
                    "class in parentheses, e.g. '^(cat|dog)\\.'"
                )

    def describe(self) -> str:
        """How the labels were made, as the cache records it."""
        if self.csv is not None:
            return f"csv {Path(self.csv).resolve()} sha256 {file_sha256(self.csv)}"
        return f"name {self.name_regex}"

    def label(
        self, root: Path, rels: list[str]
    ) -> tuple[dict[str, str], list[tuple[str, str]], list[str]]:
        """The label of each of ``rels`` that has one; the others, as
        ``(rel, why)`` pairs (the listing records them as skipped); and notes
        (paths of the CSV that are no image here)."""
        if self.name_regex is not None:
            pattern = re.compile(self.name_regex)
            found, skipped = {}, []
            for rel in rels:
                match = pattern.search(PurePosixPath(rel).name)
                if match and match.group(1):
                    found[rel] = match.group(1)
                else:
                    why = Message(
                        "name does not match "
                        + param("label_from_name", self.name_regex)
                    )
                    skipped.append((rel, why))
            return found, skipped, []
        table = read_label_csv(Path(self.csv))
        here = set(rels)
        found = {rel: table[rel] for rel in rels if rel in table}
        why = f"no label in {Path(self.csv).name}"
        skipped = [(rel, why) for rel in rels if rel not in table]
        unknown = [p for p in table if p not in here]
        notes = []
        if unknown:
            notes.append(
                f"{len(unknown)} path(s) of {Path(self.csv).name} are no image in "
                f"{printable(str(root))} (e.g. {printable(unknown[0])})"
            )
        return found, skipped, notes


def read_label_csv(path: Path) -> dict[str, str]:
    """``path -> label`` from a CSV with the columns ``path`` and ``label``."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            if not reader.fieldnames or not {"path", "label"} <= set(reader.fieldnames):
                raise DataError(
                    f"{path} needs the columns path,label (it has: "
                    f"{','.join(reader.fieldnames or [])})"
                )
            table: dict[str, str] = {}
            for line, row in enumerate(reader, start=2):
                rel = (row["path"] or "").strip().replace("\\", "/")
                rel = rel.removeprefix("./")
                label = (row["label"] or "").strip()
                if not rel or not label:
                    raise DataError(f"{path}, line {line}: empty path or label")
                if table.setdefault(rel, label) != label:
                    raise DataError(
                        f"{path}, line {line}: {rel} has two labels "
                        f"({table[rel]!r} and {label!r})"
                    )
    except FileNotFoundError as exc:
        raise DataError(f"labels file {path} does not exist") from exc
    except (UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"cannot read {path} as a UTF-8 CSV: {exc}") from exc
    return table
