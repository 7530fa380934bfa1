"""Old import paths of modules that moved into the stage packages.

Model files (skops names each object's class by module and name), pickled
transformers and users' scripts written before the stage packages name modules such as
``featx.head`` or ``featx.transformer``. Each old name here is an alias: importing
it gives the module that now holds the code (the same module object, so a class
loaded either way is one class). Installed by :mod:`featx` on import; an old
name imported from a script warns once with the new one.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import warnings

#: old dotted name -> the module that holds its code now.
MOVED = {
    "featx.caffe": "featx.model.caffe",
    "featx.compare": "featx.fit.compare",
    "featx.device_decode": "featx.compute.device_decode",
    "featx.forward": "featx.compute.forward",
    "featx.head": "pipelines.head",
    "featx.modelfile": "featx.predict.modelfile",
    "featx.ray_engine": "featx.compute.ray_engine",
    "featx.reuse": "featx.predict.reuse",
    "featx.runtime": "featx.compute.process",
    "featx.transformer": "featx.extraction.transformer",
    "featx.views": "featx.images.views",
    "featx.weightfiles": "featx.model.weightfiles",
    "featx.workflow": "featx.fit.heldout",
}

__all__ = ["MOVED", "install", "quietly"]

_QUIET = [0]


class _Alias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path=None, target=None):
        if fullname not in MOVED:
            return None
        return importlib.machinery.ModuleSpec(fullname, self)

    def create_module(self, spec):
        new = MOVED[spec.name]
        if not _QUIET[0]:
            warnings.warn(
                f"{spec.name} moved to {new}; import it from there",
                DeprecationWarning,
                stacklevel=2,
            )
        return importlib.import_module(new)

    def exec_module(self, module):
        """The module it aliases has already run."""


def install() -> None:
    """Put the alias finder on :data:`sys.meta_path` (once)."""
    if not any(isinstance(f, _Alias) for f in sys.meta_path):
        sys.meta_path.append(_Alias())


class quietly:
    """A context in which old names resolve without a warning: featx itself
    loading a model file or a pickle that names them."""

    def __enter__(self):
        _QUIET[0] += 1

    def __exit__(self, *exc):
        _QUIET[0] -= 1
