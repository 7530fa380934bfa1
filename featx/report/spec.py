"""What a report is (:class:`ReportSpec`) and the ``featx report`` command that
makes it again, both derived from the spec's fields and the click command's own
options, so that neither can drift from the other."""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path

#: The classifiers of a report by default.
DEFAULT_CLFS = ("svm", "logreg", "mlp")
#: Repeats of the k-fold CV in a report: 2 × 5 folds give the intervals and the
#: paired tests 10 scores while keeping `featx demo` within its time target.
REPORT_REPEATS = 2
#: How a field is spelled on the command line (``option``'s ``kind``).
KINDS = ("value", "path", "csv", "flag", "negated")


def _option(param: str, kind: str = "value", default=None, factory=None):
    """A :class:`ReportSpec` field given by the ``featx report`` parameter named
    ``param`` (its click name, not its spelling), written as ``kind`` says:
    ``value``; ``path``; ``csv`` (a comma-separated list); ``flag`` (present when
    true); ``negated`` (a flag present when false, as ``--no-tune``)."""
    meta = {"param": param, "kind": kind}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class ReportSpec:
    """Which caches, layers and classifiers a report compares, and how: what
    `featx report` takes, less how the work runs (jobs, engine, progress)."""

    cache: Path | None = _option("cache", "path")
    test: Path | None = _option("test", "path")
    layers: list[str] | None = _option("layers", "csv")
    clfs: list[str] = _option("clfs", "csv", factory=lambda: list(DEFAULT_CLFS))
    #: The models compared (None: every model of the training folder's images,
    #: or with ``cache``, that cache's alone).
    models: list[str] | None = _option("models", "csv")
    cv: int = _option("cv", default=5)
    repeats: int = _option("repeats", default=REPORT_REPEATS)
    seed: int = _option("seed", default=0)
    tune: bool = _option("no_tune", "negated", default=True)
    center_only: bool = _option("center_only", "flag", default=False)
    cache_dir: Path | None = _option("cache_dir", "path")
    out: Path | None = _option("out", "path")

    @classmethod
    def from_cli(cls, params: Mapping) -> ReportSpec:
        """The spec of ``featx report``'s parsed parameters (a click context's
        ``params``)."""
        values = {}
        for f in fields(cls):
            raw, kind = params[f.metadata["param"]], f.metadata["kind"]
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
        options = _report_options()
        words = ["featx", "report"]
        for f in fields(self):
            value, kind = getattr(self, f.name), f.metadata["kind"]
            spelling = options[f.metadata["param"]]
            if kind == "flag" or kind == "negated":
                if bool(value) == (kind == "flag"):
                    words.append(spelling)
            elif value is not None:
                text = ",".join(value) if kind == "csv" else str(value)
                words += [spelling, shlex.quote(text)]
        return " ".join(words)


def _report_options() -> dict[str, str]:
    """Each ``featx report`` parameter's long spelling, from the click command
    itself (imported here, when a command is written, not with the library)."""
    from featx.cli import main

    spellings = {}
    for param in main.commands["report"].params:
        if getattr(param, "hidden", False):
            continue
        long = [o for o in param.opts if o.startswith("--")]
        if long:
            spellings.setdefault(param.name, long[0])
    return spellings
