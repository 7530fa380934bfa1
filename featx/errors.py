"""Domain errors. The CLI turns each into a one-line message and a non-zero exit."""


class FeatxError(Exception):
    """Base class for every error featx raises on purpose."""


class DataError(FeatxError, ValueError):
    """The image folder cannot be used (missing, empty, no readable image)."""


class LayerError(FeatxError, ValueError):
    """A layer name that AlexNet does not have."""


class WeightsError(FeatxError, RuntimeError):
    """Weights that cannot be found, downloaded or loaded."""


class CacheError(FeatxError, ValueError):
    """A cache file that is missing, incomplete, foreign or from a newer featx."""


class CacheBusyError(CacheError):
    """Another featx process is writing the same cache."""


class ImageDecodeError(FeatxError, ValueError):
    """One image that cannot be decoded; recorded, never fatal on its own."""
