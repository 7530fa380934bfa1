"""The preprocessing of the weights, split so that decode workers ship uint8
crops and the device does the float maths."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image

from featx.choices import DEFAULT_DECODE
from featx.images.views import crop_views

if TYPE_CHECKING:
    import torch

__all__ = ["Preprocess", "computed_with"]


def computed_with(transform: dict) -> dict:
    """The decode mode, precision, JPEG decoder and runtime a recorded
    :meth:`Preprocess.describe` was made with; files written before a setting
    existed lack its key and used ``exact``, ``fp32``, ``pil`` and ``torch``.
    An int8 network's calibration set is added where there is one."""
    settings = {
        "decode": transform.get("decode", "exact"),
        "precision": transform.get("precision", "fp32"),
        "decoder": transform.get("jpeg_decoder", "pil"),
        "runtime": transform.get("runtime", "torch"),
    }
    if "calibration" in transform:
        settings["calibration"] = dict(transform["calibration"])
    return settings


class Preprocess:
    """The preprocessing of a torchvision weights entry, split for batching.

    Parameters
    ----------
    transforms
        ``weights.transforms()``: a torchvision ``ImageClassification`` preset.
    """

    #: A mean image file the input is centred with (caffe-alexnet's, if given).
    mean_file: Path | None = None

    @property
    def scale_to(self) -> list[int] | None:
        """The resize target a ``fast`` decode may scale a JPEG down to."""
        return self.resize_size if self.decode == "fast" else None

    def __init__(
        self,
        transforms,
        *,
        decode: str = DEFAULT_DECODE,
        precision: str = "fp32",
        decoder: str = "pil",
        runtime: str = "torch",
        calibration: dict | None = None,
    ) -> None:
        self.transforms = transforms
        #: How JPEGs are decoded, one of :data:`featx.choices.DECODE_MODES`:
        #: part of the identity.
        self.decode = decode
        #: The forward pass's arithmetic, one of
        #: :data:`featx.choices.PRECISIONS`: part of the identity too, so rows of
        #: two precisions never share a cache.
        self.precision = precision
        #: Who decodes JPEGs, one of :data:`featx.choices.DECODERS` (identity
        #: too: a tensor resize differs from PIL's by ~2e-3).
        self.decoder = decoder
        #: What runs the forward pass, one of :data:`featx.choices.RUNTIMES`
        #: (identity too; torch's caches are described as before it existed).
        self.runtime = runtime
        #: The calibration set of an int8 network
        #: (:mod:`featx.compute.quantize`): part of the identity; None for every
        #: other precision.
        self.calibration = calibration if precision == "int8" else None
        #: Its files, once extraction has sampled them (not part of the
        #: identity).
        self.calibration_files: list[Path] | None = None
        self.resize_size = list(transforms.resize_size)
        self.crop_size = list(transforms.crop_size)
        self.mean = tuple(float(m) for m in transforms.mean)
        self.std = tuple(float(s) for s in transforms.std)
        self.interpolation = transforms.interpolation
        self.antialias = transforms.antialias

    @property
    def crop_hw(self) -> tuple[int, int]:
        """The crop's (height, width); torchvision spells a square one [side]."""
        crop = self.crop_size
        return (crop[0], crop[0]) if len(crop) == 1 else (crop[0], crop[1])

    def _resize(self, img: Image.Image) -> Image.Image:
        from torchvision.transforms import functional as F

        return F.resize(
            img,
            self.resize_size,
            interpolation=self.interpolation,
            antialias=self.antialias,
        )

    def to_uint8(self, img: Image.Image) -> torch.Tensor:
        """Resize and centre crop a PIL image; return a (3, H, W) uint8 tensor."""
        from torchvision.transforms import functional as F

        return F.pil_to_tensor(F.center_crop(self._resize(img), self.crop_size))

    def views_uint8(self, img: Image.Image, views: tuple[str, ...]) -> torch.Tensor:
        """Resize a PIL image once and cut ``views`` of it (:mod:`featx.images.views`);
        return a (V, 3, H, W) uint8 tensor."""
        from torchvision.transforms import functional as F

        return crop_views(F.pil_to_tensor(self._resize(img)), self.crop_hw, views)

    def crop_tensor(
        self, image: torch.Tensor, views: tuple[str, ...] | None = None
    ) -> torch.Tensor:
        """Resize and crop a decoded (3, H, W) uint8 tensor where it lies (the
        GPU, for the torchvision decoder): (3, h, w), or (V, 3, h, w) with
        ``views``. The same sizes and interpolation as the PIL path, computed on
        the tensor."""
        from torchvision.transforms import functional as F

        resized = F.resize(
            image,
            self.resize_size,
            interpolation=self.interpolation,
            antialias=self.antialias,
        )
        if views is None:
            return F.center_crop(resized, self.crop_size)
        return crop_views(resized, self.crop_hw, views)

    def normalize(self, batch: torch.Tensor) -> torch.Tensor:
        """Turn a (N, 3, H, W) uint8 batch into the normalised float input."""
        import torch

        x = batch.float().div_(255.0)
        mean = torch.tensor(self.mean, device=x.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, device=x.device).view(1, -1, 1, 1)
        return x.sub_(mean).div_(std)

    def __repr__(self) -> str:
        return repr(self.transforms)

    def describe(self) -> dict:
        """A JSON-able description of how an image becomes features; part of a
        cache's identity. A full decode (``exact``) in float32 is described as
        before either setting existed, so caches made then keep their identity."""
        scaled = {"decode": "fast"} if self.decode == "fast" else {}
        if self.precision != "fp32":
            scaled["precision"] = self.precision
        if self.runtime != "torch":
            scaled["runtime"] = self.runtime
        if self.calibration is not None:
            scaled["calibration"] = dict(self.calibration)
        decoder = "PIL; EXIF orientation; RGB (alpha over white, 16-bit scaled)"
        if self.decoder == "torchvision":
            scaled["jpeg_decoder"] = "torchvision"
            decoder = (
                "torchvision.io.decode_jpeg on the network's device, EXIF "
                "orientation, tensor resize; other files " + decoder
            )
        return {
            **scaled,
            "decoder": decoder,
            "resize": self.resize_size,
            "interpolation": str(self.interpolation.value),
            "antialias": bool(self.antialias),
            "center_crop": self.crop_size,
            "mean": list(self.mean),
            "std": list(self.std),
        }
