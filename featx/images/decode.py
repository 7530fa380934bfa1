"""Decoding one image file into 8-bit RGB, quietly: EXIF orientation, every
mode, the decompression-bomb guard, JPEG DCT scaling, and what the decoders say
captured per image."""

from __future__ import annotations

import atexit
import contextlib
import functools
import io
import os
import sys
import tempfile
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from featx.errors import ImageDecodeError

if TYPE_CHECKING:
    pass

__all__ = ["decode_image", "draft_size", "file_failure", "quiet_decoding"]

#: featx's own code: an exception raised there is a bug, never a file's fault.
_FEATX = Path(__file__).resolve().parents[1]


def _raised_in_featx(exc: BaseException) -> bool:
    tb = exc.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    return Path(tb.tb_frame.f_code.co_filename).resolve().is_relative_to(_FEATX)


def file_failure(exc: Exception) -> str | None:
    """The reason one file failed, for an exception raised while it was opened,
    decoded, converted, resized or cut into views; None when the exception must
    stop the run instead.

    Pillow's plugins raise more than ``OSError``/``ValueError`` on damaged or
    exotic files (``NotImplementedError`` for a DDS of an unimplemented DXGI
    format, ``SyntaxError`` for a damaged APNG, ``struct.error``, ...): any
    exception raised by the libraries that decode and resize is the file's, and
    its reason names its type. The process running out of memory
    (``MemoryError``) and an exception raised by featx's own code, other than
    :class:`ImageDecodeError`, are featx's: they stop the run. (KeyboardInterrupt
    and SystemExit are no ``Exception`` and never reach here.)
    """
    if isinstance(exc, ImageDecodeError):
        return str(exc)
    if isinstance(exc, MemoryError) or _raised_in_featx(exc):
        return None
    return f"cannot decode: {type(exc).__name__}: {exc}"


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        # PIL's own conversion clips 16-bit values at 255; scale them instead.
        arr = np.asarray(img, dtype=np.uint32 if img.mode == "I" else np.uint16)
        if img.mode == "I":
            arr = np.clip(arr, 0, 65535)
        img = Image.fromarray((arr >> 8).astype(np.uint8), mode="L")
    elif img.mode == "F":
        arr = np.clip(np.asarray(img, dtype=np.float32), 0, 255)
        img = Image.fromarray(arr.astype(np.uint8), mode="L")
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(white, rgba)
    return img.convert("RGB") if img.mode != "RGB" else img


def draft_size(size: tuple[int, int], resize) -> tuple[int, int]:
    """The smallest (width, height) a decode of an image of ``size`` may give
    and still be resized to ``resize`` (torchvision's spelling: ``[short side]``
    or ``[height, width]``) without upsampling."""
    w, h = size
    if len(resize) == 1:
        short = max(min(w, h), 1)
        return (-(-w * resize[0] // short), -(-h * resize[0] // short))
    return (int(resize[1]), int(resize[0]))


def _bomb_guard(img: Image.Image, bomb: warnings.WarningMessage | None) -> None:
    """Refuse an image over PIL's pixel limit, unless the JPEG decoder's DCT
    scaling already brought what it decodes under it: the guard protects memory
    and time, and a 100-megapixel photo decoded at 1/8 costs 1.6 megapixels.
    Above twice the limit PIL refuses at open, scaled or not."""
    if bomb is not None and img.size[0] * img.size[1] > (Image.MAX_IMAGE_PIXELS or 0):
        raise ImageDecodeError(
            f"too large to decode safely (decompression bomb guard): {bomb.message}"
        )


#: ``warnings.catch_warnings`` swaps process-wide state: images decoding in
#: threads (featx serve's pool) take turns at the open, where the bomb warning
#: is caught, so that none loses its warning to another's (a header read: brief).
_OPEN_LOCK = threading.Lock()


def decode_image(data: bytes | Path, *, scale_to=None) -> Image.Image:
    """Decode one image file (or its bytes) into an 8-bit RGB PIL image.

    ``scale_to`` (a resize target, ``[short side]`` or ``[height, width]``) lets
    a JPEG decode directly at 1/2, 1/4 or 1/8 of its size, the smallest that
    still covers the target (libjpeg's DCT scaling, through PIL's ``draft``).
    Images under twice the target decode in full either way.

    Raises
    ------
    ImageDecodeError
        With a short reason: empty file, not an image, truncated, too large,
        or the type and message of whatever else the decoder raised
        (:func:`file_failure`).
    """
    if isinstance(data, Path):
        try:
            data = data.read_bytes()
        except OSError as exc:
            raise ImageDecodeError(f"cannot read file: {exc.strerror or exc}") from exc
    if not data:
        raise ImageDecodeError("empty file (0 bytes)")
    try:
        with _OPEN_LOCK, warnings.catch_warnings(record=True) as opened:
            warnings.simplefilter("always", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
        bomb = None
        for w in opened:
            if issubclass(w.category, Image.DecompressionBombWarning):
                bomb = w
            else:  # passed on to whoever records this image's warnings
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        if scale_to is not None and img.format in ("JPEG", "MPO"):
            img.draft(img.mode, draft_size(img.size, scale_to))
        _bomb_guard(img, bomb)
        img.load()
        img = ImageOps.exif_transpose(img)
        return _to_rgb(img)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageDecodeError(
            f"too large to decode safely (decompression bomb guard): {exc}"
        ) from exc
    except UnidentifiedImageError as exc:
        raise ImageDecodeError("not an image PIL can identify") from exc
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise ImageDecodeError(f"cannot decode: {exc}") from exc
    except Exception as exc:  # a plugin's NotImplementedError, struct.error, ...
        reason = file_failure(exc)
        if reason is None:
            raise
        raise ImageDecodeError(reason) from exc


@functools.cache
def _stderr_sink():
    """One scratch file per process that file descriptor 2 points at while an
    image decodes (closed at exit, so that nothing is left to warn about)."""
    sink = tempfile.TemporaryFile()  # noqa: SIM115 (lives as long as the process)
    atexit.register(sink.close)
    return sink


@contextlib.contextmanager
def quiet_decoding() -> Iterator[list[str]]:
    """Capture what decoding one image says: the Python warnings raised (PIL's
    ``UserWarning``s) and the text C libraries write to this process's stderr
    (libtiff's ``TIFFFillStrip: Read error``), which Python's ``warnings`` never
    sees. The list yielded is filled when the block ends, one line a message.
    """
    messages: list[str] = []
    sink = _stderr_sink()
    with contextlib.suppress(ValueError, OSError):
        sys.stderr.flush()
    saved = os.dup(2)
    os.dup2(sink.fileno(), 2)
    caught: list[warnings.WarningMessage] = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield messages
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        sink.seek(0)
        text = sink.read().decode("utf-8", "replace")
        sink.seek(0)
        sink.truncate()
        for w in caught:
            messages.append(f"{w.category.__name__}: {w.message}")
        messages.extend(line.strip() for line in text.splitlines() if line.strip())
