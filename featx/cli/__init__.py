"""The ``featx`` command line: thin click wrappers over the library.

The only part of featx that imports click. :mod:`featx.cli.app` holds the group,
:mod:`featx.cli.options` the options several commands share,
:mod:`featx.cli.output` what the commands print (:mod:`featx.cli.scores` fit's
and report's tables), and one module per concern the commands:
:mod:`~featx.cli.extract`, :mod:`~featx.cli.caches` (``info``, ``export``,
``layers``), :mod:`~featx.cli.fit`, :mod:`~featx.cli.predict`,
:mod:`~featx.cli.report`, :mod:`~featx.cli.demo` and :mod:`~featx.cli.serve`;
each registers its commands on the group when this package imports it, so
:mod:`~featx.cli.app` imports none of them. Importing it loads neither torch nor
scikit-learn: each command imports the library when it runs.
"""

from featx.compute.process import configure_openmp

configure_openmp()  # before anything imports torch

from featx.cli import caches, demo, extract, fit, predict, report, serve  # noqa: F401
from featx.cli.app import main

__all__ = ["main"]
