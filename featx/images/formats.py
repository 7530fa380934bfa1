"""Which files are images: every format Pillow decodes here, HEIC/HEIF
through pillow-heif, chosen by extension."""

from __future__ import annotations

import functools
from pathlib import PurePosixPath
from typing import TYPE_CHECKING

from PIL import Image

from featx.choices import DECODE_MODES  # noqa: F401  (re-exported)

if TYPE_CHECKING:
    pass

__all__ = [
    "DECODE_MODES",
    "NO_PIXELS",
    "OPENED_AS",
    "image_extensions",
    "is_image_name",
    "register_heif",
]


#: Formats Pillow registers extensions for but opens through another format's
#: plugin: an MPO (the multi-picture JPEG cameras write) opens as a JPEG.
OPENED_AS = {"MPO": "JPEG"}

#: Formats Pillow registers that give no pixels here: the MPEG plugin only reads
#: a header, and the others are stubs that wait for a handler featx never sets.
NO_PIXELS = frozenset({"MPEG"})


def register_heif() -> bool:
    """Teach Pillow HEIC/HEIF (what iPhones write) through pillow-heif; False
    where pillow-heif is not installed."""
    try:
        import pillow_heif
    except ImportError:  # a dependency, but featx still runs without it
        return False
    pillow_heif.register_heif_opener()
    return True


@functools.cache
def image_extensions() -> frozenset[str]:
    """Every file extension (lower case, with its dot) of a format that Pillow,
    with pillow-heif, can decode here.

    Listing goes by extension, not by sniffing each file's first bytes: a folder
    of 100,000 images on a network drive is listed without opening a file, and
    what the extension promises is checked anyway when the file is decoded (a
    ``.jpg`` that is no image becomes a recorded failure, never a silent skip).
    """
    from PIL import EpsImagePlugin, ImageFile

    register_heif()
    Image.init()
    found = set()
    for ext, fmt in Image.registered_extensions().items():
        fmt = OPENED_AS.get(fmt, fmt)
        if fmt not in Image.OPEN or fmt in NO_PIXELS:
            continue
        factory = Image.OPEN[fmt][0]
        if isinstance(factory, type) and issubclass(factory, ImageFile.StubImageFile):
            continue
        if fmt == "EPS" and not EpsImagePlugin.has_ghostscript():
            continue
        found.add(ext.lower())
    return frozenset(found)


def is_image_name(name: str) -> bool:
    """A name with an extension of :func:`image_extensions` (hidden files, such as
    macOS's ``._photo.jpg``, are never images)."""
    if name.startswith("."):
        return False
    return PurePosixPath(name).suffix.lower() in image_extensions()
