"""featx: pretrained activations from any layer of AlexNet (the default) or any
torchvision or timm network, cached in HDF5, and classical scikit-learn
classifiers trained and compared on them.

The public names load their modules (and torch) on first use, so that the
command line can set up the runtime before torch is imported.
"""

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version

from featx import _moved

try:
    __version__ = version("featx")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

_LAZY = {
    "AlexNetFeatures": "featx.extraction.transformer",
    "Features": "featx.extraction.transformer",
    "ExtractResult": "featx.extraction",
    "extract": "featx.extraction",
    "FeatureCache": "featx.cache",
    "LayerData": "featx.cache",
    "read_layer": "featx.cache",
}

__all__ = ["__version__", *_LAZY]

_moved.install()  # model files and pickles that name a module by its old path


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'featx' has no attribute {name!r}")
