"""Domain errors. The CLI turns each into a one-line message and a non-zero exit.

A message names a parameter through :func:`param`: the library's message spells
it as the parameter (``spatial='avg'``), the command line's as its flag
(``--spatial avg``, :func:`render` with the CLI's table of flags).
"""

import re

__all__ = [
    "param",
    "render",
    "Message",
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


_MARK, _SEP = "\x1f", "\x1e"
_PARAM = re.compile(f"{_MARK}(\\w+)(?:{_SEP}([^{_SEP}]*){_SEP}([^{_MARK}]*))?{_MARK}")


def param(name: str, *value) -> str:
    """``name`` (with ``value``, if given) as an error message names it: see
    :func:`render`."""
    if not value:
        return f"{_MARK}{name}{_MARK}"
    text, shown = (_clean(s) for s in (str(value[0]), repr(value[0])))
    return f"{_MARK}{name}{_SEP}{text}{_SEP}{shown}{_MARK}"


def _clean(text: str) -> str:
    """A value as a mark may hold it: without the marks' own characters."""
    return text.replace(_MARK, "").replace(_SEP, "")


def render(message: str, flags: dict[str, str] | None = None) -> str:
    """``message`` with each :func:`param` spelled for its reader: as the
    parameter (``spatial='avg'``, ``spatial=``) without ``flags``; with them, as
    the flag they map the parameter to (``--spatial avg``; a parameter not in
    ``flags`` is ``--`` and its name with dashes)."""

    def spell(match: re.Match) -> str:
        name, text, shown = match.groups()
        if flags is None:
            return f"`{name}`" if text is None else f"{name}={shown}"
        flag = flags.get(name, "--" + name.replace("_", "-"))
        return flag if text is None else f"{flag} {text}"

    return _PARAM.sub(spell, message)


class Message(str):
    """A message for people (a note, an error's text) that may name parameters
    (:func:`param`): the string is the library's spelling, :meth:`for_cli` the
    command line's."""

    raw: str

    def __new__(cls, raw: str):
        self = super().__new__(cls, render(raw))
        self.raw = raw
        return self

    def for_cli(self, flags: dict[str, str]) -> str:
        return render(self.raw, flags)


class FeatxError(Exception):
    """Base class for every error featx raises on purpose. Its message names
    parameters the library's way; the CLI renders them as flags
    (:func:`render`). ``args`` and ``repr`` hold the library's text."""

    def __init__(self, *args) -> None:
        raw = args[0] if args and isinstance(args[0], str) else None
        if raw is not None:
            args = (render(raw), *args[1:])
        super().__init__(*args)
        self._raw = raw

    @property
    def message(self) -> Message:
        """The message, as a :class:`Message` (it keeps the parameters it names)."""
        raw = getattr(self, "_raw", None)
        return Message(raw if raw is not None else super().__str__())

    def for_cli(self, flags: dict[str, str]) -> str:
        """The message with its parameters spelled as the command line's flags."""
        return self.message.for_cli(flags)


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
