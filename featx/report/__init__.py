"""Reports that compare layers × classifiers (and models). They read caches;
they never extract.

Every (model, layer, classifier) result is stored as JSON under ``<cache dir>/results``,
keyed by a fingerprint of the cache's rows and the fit's parameters, so a later
report on the same data reuses it (``force`` recomputes).

Modules: :mod:`~featx.report.spec` (what a report is, and its command line),
:mod:`~featx.report.records` (rows and results.json), :mod:`~featx.report.store`
(stored results), :mod:`~featx.report.sources` and :mod:`~featx.report.plan`
(the caches of each model compared, their layers and classifiers),
:mod:`~featx.report.build` (:func:`make_report`),
:mod:`~featx.report.analyses`, :mod:`~featx.report.outputs`,
:mod:`~featx.report.figures`, :mod:`~featx.report.render` and
:mod:`~featx.report.provenance`.
"""

from featx.fit import fit
from featx.report.build import Report, check_writable, make_report
from featx.report.outputs import COLUMNS, PROJECTION_ROWS
from featx.report.plan import ReportError, choose_layers, variants
from featx.report.provenance import extract_commands, provenance, weights_flags
from featx.report.records import (
    BULKY,
    RESULT_FORMAT,
    RESULTS_FORMAT,
    RecordError,
    ResultRow,
    ResultsDocument,
)
from featx.report.spec import DEFAULT_CLFS, REPORT_REPEATS, ReportSpec
from featx.report.store import ResultStore, fingerprint, result_key

__all__ = [
    "BULKY",
    "COLUMNS",
    "DEFAULT_CLFS",
    "PROJECTION_ROWS",
    "REPORT_REPEATS",
    "RESULTS_FORMAT",
    "RESULT_FORMAT",
    "RecordError",
    "Report",
    "ReportError",
    "ReportSpec",
    "ResultRow",
    "ResultStore",
    "ResultsDocument",
    "check_writable",
    "choose_layers",
    "extract_commands",
    "fingerprint",
    "fit",
    "make_report",
    "provenance",
    "result_key",
    "variants",
    "weights_flags",
]
