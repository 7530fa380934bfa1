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
import types
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

#: Old modules that were split: names the first target lacks are looked up in
#: these, in order (``from featx.ray_engine import joblib_backend`` still works).
ALSO = {
    "featx.forward": ("featx.compute.devices", "featx.choices"),
    "featx.ray_engine": ("featx.compute.cluster", "featx.fit.ray_backend"),
}

__all__ = ["ALSO", "MOVED", "install", "quietly"]

_QUIET = [0]


class _Split(types.ModuleType):
    """An old module whose names now live in several: each name from the first
    module that has it (the same objects, so classes are the same classes)."""

    def __init__(self, name: str, sources: tuple[str, ...]) -> None:
        super().__init__(name)
        self._sources = sources

    def __getattr__(self, attr: str):
        for source in self._sources:
            module = importlib.import_module(source)
            if hasattr(module, attr):
                return getattr(module, attr)
        raise AttributeError(f"module {self.__name__!r} has no attribute {attr!r}")

    def __dir__(self):
        return sorted(
            {n for s in self._sources for n in dir(importlib.import_module(s))}
        )


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
        if spec.name in ALSO:
            return _Split(spec.name, (new, *ALSO[spec.name]))
        module = importlib.import_module(new)
        spec.loader_state = module.__spec__  # importlib sets __spec__ to ours
        return module

    def exec_module(self, module):
        """The module it aliases has already run; give it back its own spec
        (so that reload, find_spec and importlib.resources see the real one)."""
        real = module.__spec__.loader_state
        if real is not None:
            module.__spec__ = real


def install() -> None:
    """Put the alias finder first on :data:`sys.meta_path` (once): a stale
    ``featx/head.py`` left by an older install must not shadow it."""
    if not any(isinstance(f, _Alias) for f in sys.meta_path):
        sys.meta_path.insert(0, _Alias())


class quietly:
    """A context in which old names resolve without a warning: featx itself
    loading a model file or a pickle that names them."""

    def __enter__(self):
        _QUIET[0] += 1

    def __exit__(self, *exc):
        _QUIET[0] -= 1
