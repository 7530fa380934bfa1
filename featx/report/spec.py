"""What a report is (:class:`ReportSpec`) and the ``featx report`` command that
makes it again, both derived from the spec's fields: each names its flag in its
metadata, so the library writes the command without importing the CLI, and a
test holds the flags equal to the click command's options."""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path

__all__ = ["DEFAULT_CLFS", "KINDS", "REPORT_REPEATS", "ReportSpec", "param_name"]

#: The classifiers of a report by default.
DEFAULT_CLFS = ("svm", "logreg", "mlp")
#: Repeats of the k-fold CV in a report: 2 × 5 folds give the intervals and the
#: paired tests 10 scores while keeping `featx demo` within its time target.
REPORT_REPEATS = 2
#: How a field is spelled on the command line (``option``'s ``kind``).
KINDS = ("value", "path", "csv", "flag", "negated")


def _option(flag: str, kind: str = "value", default=None, factory=None):
    """A :class:`ReportSpec` field given by the ``featx report`` option ``flag``
    (``--cache-dir``), written as ``kind`` says: ``value``; ``path``; ``csv`` (a
    comma-separated list); ``flag`` (present when true); ``negated`` (a flag
    present when false, as ``--no-tune``)."""
    meta = {"flag": flag, "kind": kind}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class ReportSpec:
    """Which caches, layers and classifiers a report compares, and how: what
    `featx report` takes, less how the work runs (jobs, engine, progress)."""

    cache: Path | None = _option("--cache", "path")
    test: Path | None = _option("--test", "path")
    layers: list[str] | None = _option("--layers", "csv")
    clfs: list[str] = _option("--clfs", "csv", factory=lambda: list(DEFAULT_CLFS))
    #: The models compared (None: every model of the training folder's images,
    #: or with ``cache``, that cache's alone).
    models: list[str] | None = _option("--models", "csv")
    cv: int = _option("--cv", default=5)
    repeats: int = _option("--repeats", default=REPORT_REPEATS)
    seed: int = _option("--seed", default=0)
    tune: bool = _option("--no-tune", "negated", default=True)
    center_only: bool = _option("--center-only", "flag", default=False)
    cache_dir: Path | None = _option("--cache-dir", "path")
    out: Path | None = _option("--out", "path")

    @classmethod
    def from_cli(cls, params: Mapping) -> ReportSpec:
        """The spec of ``featx report``'s parsed parameters (a click context's
        ``params``)."""
        values = {}
        for f in fields(cls):
            raw, kind = params[param_name(f.metadata["flag"])], f.metadata["kind"]
            if kind == "csv":
                raw = [v.strip() for v in raw.split(",") if v.strip()] if raw else None
                if raw is None and f.name == "clfs":
                    raw = []
            elif kind == "path":
                raw = None if raw is None else Path(raw)
            elif kind == "negated":
                raw = not raw
            values[f.name] = raw
        return cls(**values)

    def command(self) -> str:
        """The ``featx report`` command line that makes this report."""
        words = ["featx", "report"]
        for f in fields(self):
            value, kind = getattr(self, f.name), f.metadata["kind"]
            spelling = f.metadata["flag"]
            if kind == "flag" or kind == "negated":
                if bool(value) == (kind == "flag"):
                    words.append(spelling)
            elif value is not None:
                text = ",".join(value) if kind == "csv" else str(value)
                words += [spelling, shlex.quote(text)]
        return " ".join(words)


def param_name(flag: str) -> str:
    """The name click gives the parameter of the option ``flag``
    (``--cache-dir`` -> ``cache_dir``)."""
    return flag.lstrip("-").replace("-", "_")
