"""featx: pretrained AlexNet activations from any layer, cached in HDF5, and
classical scikit-learn classifiers trained and compared on them."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("featx")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

from featx.cache import FeatureCache, LayerData, read_layer  # noqa: E402
from featx.extract import ExtractResult, extract  # noqa: E402

__all__ = [
    "ExtractResult",
    "FeatureCache",
    "LayerData",
    "__version__",
    "extract",
    "read_layer",
]
