"""The original AlexNet as BVLC's Caffe deploy definition has it, and its input.

``bvlc_alexnet`` (Krizhevsky et al. 2012, as trained by BVLC): a 227 × 227 BGR
input in 0–255 minus the ImageNet mean; conv1 96 × 11 × 11 stride 4, unpadded;
local response normalisation after relu1 and relu2; conv2, conv4 and conv5 in two
groups (the two GPUs of the paper); 96-256-384-384-256 channels; pool5 256 × 6 × 6;
fc6 and fc7 4,096 wide, each a ReLU then dropout; fc8 1,000 logits.

The module layout mirrors torchvision's AlexNet (a ``features`` and a
``classifier`` chain, flattened between them), so layer capture, module paths
and friendly names work the same way for both.

LRN follows Caffe: ``b = a / (k + alpha/n · Σ a²)^beta`` over ``n`` neighbouring
channels (zero-padded at the edges), which is torch's ``LocalResponseNorm``
convention too (alpha divided by the window). TensorFlow's
``local_response_normalization`` does not divide, which is why the TensorFlow
ports pass ``alpha = 2e-5`` (1e-4 / 5) with ``depth_radius = 2``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn
from torchvision.models import AlexNet_Weights

from featx.digest import file_sha256
from featx.errors import WeightsError
from featx.images import Preprocess

__all__ = [
    "CROP",
    "BGR_MEAN",
    "FRIENDLY_LAYERS",
    "PARAM_LAYERS",
    "CaffeAlexNet",
    "param_shapes",
    "mean_image",
    "CaffePreprocess",
    "load_mean",
]

#: Input side of the network.
CROP = 227
#: The per-channel mean of ``ilsvrc_2012_mean.npy``, BGR, on 0–255.
BGR_MEAN = (104.00698793, 116.66876762, 122.67891434)

#: Friendly names and the module each one stands for.
FRIENDLY_LAYERS: dict[str, str] = {
    "conv1": "features.1",  # after ReLU
    "norm1": "features.2",  # after LRN
    "conv2": "features.5",
    "norm2": "features.6",
    "conv3": "features.9",
    "conv4": "features.11",
    "conv5": "features.13",
    "pool5": "features.14",  # 256x6x6 = 9,216
    "fc6": "classifier.1",  # after ReLU
    "fc7": "classifier.4",
    "fc8": "classifier.6",  # logits
}

#: Caffe's layer names and the module holding each one's weights.
PARAM_LAYERS: dict[str, str] = {
    "conv1": "features.0",
    "conv2": "features.4",
    "conv3": "features.8",
    "conv4": "features.10",
    "conv5": "features.12",
    "fc6": "classifier.0",
    "fc7": "classifier.3",
    "fc8": "classifier.6",
}


def _lrn() -> nn.LocalResponseNorm:
    return nn.LocalResponseNorm(size=5, alpha=1e-4, beta=0.75, k=1.0)


class CaffeAlexNet(nn.Module):
    """BVLC AlexNet (``bvlc_alexnet/deploy.prototxt``) in torch."""

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 96, kernel_size=11, stride=4),  # conv1
            nn.ReLU(inplace=True),
            _lrn(),  # norm1
            nn.MaxPool2d(kernel_size=3, stride=2),  # pool1
            nn.Conv2d(96, 256, kernel_size=5, padding=2, groups=2),  # conv2
            nn.ReLU(inplace=True),
            _lrn(),  # norm2
            nn.MaxPool2d(kernel_size=3, stride=2),  # pool2
            nn.Conv2d(256, 384, kernel_size=3, padding=1),  # conv3
            nn.ReLU(inplace=True),
            nn.Conv2d(384, 384, kernel_size=3, padding=1, groups=2),  # conv4
            nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, kernel_size=3, padding=1, groups=2),  # conv5
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),  # pool5
        )
        self.classifier = nn.Sequential(
            nn.Linear(256 * 6 * 6, 4096),  # fc6
            nn.ReLU(inplace=True),
            nn.Dropout(0.5),
            nn.Linear(4096, 4096),  # fc7
            nn.ReLU(inplace=True),
            nn.Dropout(0.5),
            nn.Linear(4096, num_classes),  # fc8
        )
        # Caffe's fillers for bvlc_alexnet: gaussian weights, constant biases
        for module in self.modules():
            if isinstance(module, nn.Conv2d | nn.Linear):
                std = 0.005 if isinstance(module, nn.Linear) else 0.01
                nn.init.normal_(module.weight, 0.0, std)
                nn.init.constant_(module.bias, 0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        return self.classifier(torch.flatten(x, 1))


def param_shapes() -> dict[str, tuple[tuple[int, ...], tuple[int, ...]]]:
    """Caffe layer name → (weight shape, bias shape) in torch's layout."""
    with torch.device("meta"):
        state = CaffeAlexNet().state_dict()
    return {
        name: (
            tuple(state[f"{path}.weight"].shape),
            tuple(state[f"{path}.bias"].shape),
        )
        for name, path in PARAM_LAYERS.items()
    }


def mean_image(array: np.ndarray, source: str) -> np.ndarray:
    """A BGR mean on 0–255 as a (3, 227, 227) float32 array: a per-channel mean
    (3,) broadcast, or the centre of a (3, H, W) mean image such as
    ``ilsvrc_2012_mean.npy`` (3 × 256 × 256), cut as the images are."""
    array = np.asarray(array, np.float32)
    if array.shape == (3,):
        return np.broadcast_to(array[:, None, None], (3, CROP, CROP)).copy()
    if array.ndim == 4 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != 3 or array.shape[0] != 3 or min(array.shape[1:]) < CROP:
        raise WeightsError(
            f"{source}: a mean must be 3 BGR values or a 3 x H x W image with H "
            f"and W at least {CROP}; got shape {array.shape}"
        )
    if not np.isfinite(array).all():
        raise WeightsError(f"{source}: the mean holds NaN or Inf values")
    top = (array.shape[1] - CROP) // 2
    left = (array.shape[2] - CROP) // 2
    return np.ascontiguousarray(array[:, top : top + CROP, left : left + CROP])


class CaffePreprocess(Preprocess):
    """Caffe's input: the shorter side resized to 256 (bilinear, aspect kept, as
    for torchvision's model), a centre crop of 227, BGR on 0–255 minus the
    ImageNet mean (per channel, or a mean image given as ``mean``)."""

    def __init__(self, mean: Path | None = None, **settings) -> None:
        super().__init__(AlexNet_Weights.IMAGENET1K_V1.transforms(), **settings)
        self.crop_size = [CROP]
        self.mean_file = Path(mean).resolve() if mean is not None else None
        if self.mean_file is None:
            self.mean_sha256 = ""
            self.mean_bgr = mean_image(np.array(BGR_MEAN), "the ImageNet mean")
        else:
            self.mean_sha256, self.mean_bgr = load_mean(self.mean_file)
        self.mean = tuple(float(v) for v in self.mean_bgr.mean(axis=(1, 2)))
        self.std = (1.0, 1.0, 1.0)
        self._mean_tensor: torch.Tensor | None = None

    def normalize(self, batch: torch.Tensor) -> torch.Tensor:
        """(N, 3, 227, 227) uint8 RGB → float BGR on 0–255 minus the mean."""
        if self._mean_tensor is None or self._mean_tensor.device != batch.device:
            self._mean_tensor = torch.from_numpy(self.mean_bgr).to(batch.device)
        return batch.flip(1).float().sub_(self._mean_tensor)

    def describe(self) -> dict:
        out = super().describe()
        out.update(
            channels="BGR",
            range="0-255",
            mean=[round(v, 6) for v in self.mean],
            std=[1.0, 1.0, 1.0],
        )
        if self.mean_file is not None:
            out["mean_image"] = {
                "file": str(self.mean_file),
                "sha256": self.mean_sha256,
            }
        return out

    def __repr__(self) -> str:
        return (
            f"CaffePreprocess(resize={self.resize_size}, crop={self.crop_size}, "
            f"BGR 0-255 minus mean {self.describe()['mean']})"
        )


def load_mean(path: Path) -> tuple[str, np.ndarray]:
    """The sha256 and the (3, 227, 227) mean of a ``.npy`` mean file (a plain
    array; a pickled object is refused)."""
    if not path.is_file():
        raise WeightsError(f"mean file {path} does not exist")
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise WeightsError(
            f"cannot read {path} as a numpy mean array: {str(exc).splitlines()[0]}"
        ) from exc
    return file_sha256(path), mean_image(array, str(path))
