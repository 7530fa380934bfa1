"""Views of an image: the crops its activations are computed on.

AlexNet's paper and Caffe's classifier average the predictions of ten crops of
the resized image: the four corners and the centre, and the mirror image of
each. featx stores each view of a layer as a dataset of its own, so that a
cache holds the centre (what it always held), the centre and its mirror
(``flip``), or all ten (``ten``), and resumes or extends each view separately.

View names, in storage order: ``center``, ``flip`` (the centre of the mirror
image), ``tl``, ``tr``, ``bl``, ``br`` (the corners: top-left, top-right,
bottom-left, bottom-right) and ``tl_flip``, ``tr_flip``, ``bl_flip``,
``br_flip`` (their mirrors).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from featx.errors import check_choice

__all__ = [
    "CENTER",
    "VIEW_SETS",
    "ALL_VIEWS",
    "SEPARATOR",
    "views_of",
    "setting_of",
    "dataset_key",
    "crop_views",
]

CENTER = "center"
#: What ``--views`` accepts, and the views each stores.
VIEW_SETS: dict[str, tuple[str, ...]] = {
    "center": (CENTER,),
    "flip": (CENTER, "flip"),
    "ten": (
        CENTER,
        "flip",
        "tl",
        "tr",
        "bl",
        "br",
        "tl_flip",
        "tr_flip",
        "bl_flip",
        "br_flip",
    ),
}
ALL_VIEWS = VIEW_SETS["ten"]
#: Between a layer and a view in a dataset's name: ``fc7@flip``.
SEPARATOR = "@"

if TYPE_CHECKING:
    import torch


def views_of(setting: str) -> tuple[str, ...]:
    """The views ``--views setting`` stores (``center``, ``flip`` or ``ten``)."""
    check_choice("views", setting, tuple(VIEW_SETS))
    return VIEW_SETS[setting]


def setting_of(views) -> str:
    """The ``--views`` setting that stores exactly ``views`` (any order); a set
    that is none of them is named by its views."""
    views = set(views)
    for name, members in VIEW_SETS.items():
        if views == set(members):
            return name
    return "+".join(v for v in ALL_VIEWS if v in views)


def dataset_key(base: str, view: str) -> str:
    """The dataset holding ``view`` of the layer stored as ``base``."""
    return base if view == CENTER else f"{base}{SEPARATOR}{view}"


def _corner(img: torch.Tensor, corner: str, height: int, width: int):
    """The ``height`` x ``width`` crop of a (C, H, W) tensor at ``corner``."""
    full_h, full_w = img.shape[-2:]
    top = 0 if corner[0] == "t" else full_h - height
    left = 0 if corner[1] == "l" else full_w - width
    return img[..., top : top + height, left : left + width]


def crop_views(
    resized: torch.Tensor, crop_hw: tuple[int, int], views: tuple[str, ...]
) -> torch.Tensor:
    """``views`` of a resized (3, H, W) uint8 image as (V, 3, h, w) crops of
    ``crop_hw = (h, w)``.

    The centre is torchvision's ``center_crop`` (what a cache of one view holds);
    ``flip`` is the centre of the mirror image; the corners sit flush with the
    image's edges, and ``_flip`` mirrors them left to right. These are the ten
    crops of torchvision's ``TenCrop`` (tested), named by the crop they mirror.
    """
    import torch  # here: the cache and the classifiers use this module's names
    from torchvision.transforms import functional as F

    height, width = crop_hw
    out = []
    for view in views:
        base, _, flip = view.partition("_")
        if base == "flip":
            # the centre of the mirror image, as torchvision's TenCrop cuts it:
            # one pixel off the mirrored centre crop where the margin is odd
            crop = F.center_crop(resized.flip(-1), [height, width])
        elif base == CENTER:
            crop = F.center_crop(resized, [height, width])
        else:
            crop = _corner(resized, base, height, width)
        out.append(crop.flip(-1) if flip else crop)
    return torch.stack(out).contiguous()
