"""Domain errors. The CLI turns each into a one-line message and a non-zero exit."""


class FeatxError(Exception):
    """Base class for every error featx raises on purpose."""


class ParameterError(FeatxError, ValueError):
    """An argument outside its allowed values; the message names the parameter."""


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


def check_choice(name: str, value, allowed) -> None:
    """Refuse ``value`` unless it is one of ``allowed``, in scikit-learn's words."""
    if value not in allowed:
        options = ", ".join(repr(a) for a in allowed)
        raise ParameterError(f"`{name}` must be one of {options}. Got {value!r}.")


def check_int(name: str, value, *, low: int, allow=()) -> None:
    """Refuse an integer ``value`` below ``low`` (``allow`` lists exceptions)."""
    if value in allow:
        return
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        extra = "".join(f" or {a}" for a in allow)
        raise ParameterError(
            f"`{name}` must be an integer >= {low}{extra}. Got {value!r}."
        )
