"""Listing image folders, decoding images and the preprocessing of the weights.

Decoding always goes through PIL: EXIF orientation is applied, every mode (palette,
grayscale, 16-bit, CMYK, alpha) becomes 8-bit RGB, and images larger than PIL's
decompression-bomb limit are refused. Preprocessing is split in two so that decode
workers ship small uint8 tensors and the device does the float maths:

- :meth:`Preprocess.to_uint8` — resize and centre crop exactly as
  ``weights.transforms()`` does, on the PIL image, to a ``uint8`` tensor;
- :meth:`Preprocess.normalize` — scale to [0, 1] and apply the weights' mean/std.

Together they equal ``weights.transforms()(image)``; a test checks it. Listing
and decoding need no torch: the preprocessing imports it when first used, so
commands that only read caches start faster.
"""

from featx.errors import ImageDecodeError  # raised by decode_image, as always
from featx.images.decode import (
    decode_image,
    draft_size,
    file_failure,
    quiet_decoding,
)
from featx.images.formats import (
    DECODE_MODES,
    NO_PIXELS,
    image_extensions,
    is_image_name,
    register_heif,
)
from featx.images.labels import Labelling, read_label_csv
from featx.images.listing import (
    FolderWalker,
    ImageSet,
    Skipped,
    entry_kind,
    list_images,
    skip_groups,
)
from featx.images.preprocess import Preprocess

__all__ = [
    "DECODE_MODES",
    "NO_PIXELS",
    "FolderWalker",
    "ImageDecodeError",
    "ImageSet",
    "Labelling",
    "Preprocess",
    "Skipped",
    "decode_image",
    "draft_size",
    "entry_kind",
    "file_failure",
    "image_extensions",
    "is_image_name",
    "list_images",
    "quiet_decoding",
    "read_label_csv",
    "register_heif",
    "skip_groups",
]
