"""Domain errors. The CLI turns each into a one-line message and a non-zero exit."""

__all__ = [
    "FeatxError",
    "ParameterError",
    "DataError",
    "LayerError",
    "WeightsError",
    "CacheError",
    "CacheBusyError",
    "CacheDamagedError",
    "ReadOnlyError",
    "NoSpaceError",
    "ImageDecodeError",
    "check_choice",
    "check_int",
    "printable",
]


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


class CacheDamagedError(CacheError):
    """A cache file that HDF5 cannot read: truncated, overwritten, not HDF5."""


class ReadOnlyError(FeatxError, OSError):
    """Work that must write, in a place where featx cannot write."""


class NoSpaceError(FeatxError, OSError):
    """The disk is (or would be) full; nothing already written was lost."""


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


def printable(name: str) -> str:
    """``name`` as one line that cannot fake output: control characters, and
    bytes that are not UTF-8 (``surrogateescape``), are written as escapes
    (``\\n``, ``\\xff``). Escaping twice changes nothing."""
    out = []
    for ch in name:
        code = ord(ch)
        if 0xDC80 <= code <= 0xDCFF:  # a byte os.fsdecode could not decode
            out.append(f"\\x{code - 0xDC00:02x}")
        elif not ch.isprintable():
            out.append(ch.encode("unicode_escape", "backslashreplace").decode())
        else:
            out.append(ch)
    return "".join(out)
