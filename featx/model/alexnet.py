"""AlexNet, featx's first network: torchvision's and the original Caffe one.

``alexnet`` is torchvision's (the "one weird trick" variant, 224 input);
``caffe-alexnet`` the original network as BVLC's Caffe definition has it
(:mod:`featx.model.caffe`, 227 input, LRN, grouped convolutions), whose weights come
from the files its ports use (:mod:`featx.model.weightfiles`).

Layers are named by their torchvision module path (``features.10``,
``classifier.4``) or by a friendly name that stands for one of them. AlexNet is a
chain of modules, so :class:`FeatureNet` runs that chain itself: it stops after the
deepest requested layer and, with every ReLU made out-of-place, what it captures is
exactly the module's output (torchvision's in-place ReLUs would otherwise overwrite
a captured convolution output with its rectified values).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import torch
from torch import nn
from torchvision.models import AlexNet_Weights, alexnet

from featx.choices import unknown_layer_message
from featx.errors import WeightsError
from featx.images import Preprocess
from featx.model import caffe, weightfiles
from featx.model.backbone import Backbone
from featx.model.checkpoints import torchvision_hub_file
from featx.model.layers import LayerSpec

__all__ = [
    "AlexNetBackbone",
    "CaffeAlexNetBackbone",
    "FRIENDLY_LAYERS",
    "FeatureNet",
    "WEIGHTS",
    "chain_table",
    "find_backbone",
    "module_chain",
]

WEIGHTS = AlexNet_Weights.IMAGENET1K_V1


#: Friendly names of torchvision's AlexNet and the module each one stands for.
FRIENDLY_LAYERS: dict[str, str] = {
    "conv1": "features.1",  # after ReLU
    "conv2": "features.4",
    "conv3": "features.7",
    "conv4": "features.9",
    "conv5": "features.11",
    "pool5": "features.12",  # after the last max-pool, 256x6x6
    "fc6": "classifier.2",  # after ReLU
    "fc7": "classifier.5",
    "fc8": "classifier.6",  # logits
}


def module_chain(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The network's modules in execution order (the flatten sits before
    classifier; torchvision's AlexNet has an ``avgpool`` between them)."""
    chain = [(f"features.{i}", m) for i, m in enumerate(model.features)]
    if hasattr(model, "avgpool"):
        chain.append(("avgpool", model.avgpool))
    chain += [(f"classifier.{i}", m) for i, m in enumerate(model.classifier)]
    return chain


class FeatureNet(nn.Module):
    """Runs AlexNet up to the deepest requested layer and returns the captures.

    ``forward(x, names)`` returns ``{name: tensor of shape (N, *layer.shape)}``.
    """

    def __init__(self, model: nn.Module, layers: list[LayerSpec]) -> None:
        super().__init__()
        self.layers = {spec.name: spec for spec in layers}
        depth = max(spec.index for spec in layers)
        chain = module_chain(model)[: depth + 1]
        for _, module in chain:
            if hasattr(module, "inplace"):
                module.inplace = False
        self.paths = [path for path, _ in chain]
        self.chain = nn.ModuleList(module for _, module in chain)

    def forward(self, x: torch.Tensor, names=None) -> dict[str, torch.Tensor]:
        wanted = [self.layers[n] for n in (names or self.layers)]
        by_index: dict[int, list[str]] = {}
        for spec in wanted:
            by_index.setdefault(spec.index, []).append(spec.name)
        last = max(by_index)
        out = {}
        for index, module in enumerate(self.chain):
            if self.paths[index] == "classifier.0":
                x = torch.flatten(x, 1)
            x = module(x)
            for name in by_index.get(index, ()):
                out[name] = x
            if index == last:
                break
        return out


class AlexNetBackbone(Backbone):
    """torchvision's AlexNet with ``AlexNet_Weights.IMAGENET1K_V1``."""

    name = "alexnet"
    title = "AlexNet"
    side = 224
    imagenet_id = "torchvision:AlexNet_Weights.IMAGENET1K_V1"

    def build(self) -> nn.Module:
        return alexnet()

    def friendly(self) -> dict[str, str]:
        return FRIENDLY_LAYERS

    def transforms(self):
        return WEIGHTS.transforms()

    def capture(self, net: nn.Module, specs: list[LayerSpec]) -> nn.Module:
        return FeatureNet(net, specs)

    def layer_table(self) -> tuple[LayerSpec, ...]:
        return chain_table(self.name)

    def unknown_layer(self, name: str) -> str:
        return unknown_layer_message(name, self.name)

    @property
    def url(self) -> str:
        return WEIGHTS.url

    def imagenet_file(self) -> Path:
        return torchvision_hub_file(
            WEIGHTS, "AlexNet", "a torchvision AlexNet state dict"
        )


class CaffeAlexNetBackbone(AlexNetBackbone):
    """The original BVLC AlexNet; weights only from its ports' files."""

    name = "caffe-alexnet"
    title = "caffe-alexnet"
    side = caffe.CROP
    imagenet_id = ""

    def build(self) -> nn.Module:
        return caffe.CaffeAlexNet()

    def friendly(self) -> dict[str, str]:
        return caffe.FRIENDLY_LAYERS

    def preprocess(self, mean: Path | None = None, **settings) -> Preprocess:
        return caffe.CaffePreprocess(mean, **settings)

    def imagenet_file(self) -> Path:
        raise WeightsError(
            "caffe-alexnet has no weights to download: pass --weights with "
            "bvlc_alexnet.npy (TensorFlow port), alexnet_weights.h5 "
            "(convnets-keras) or bvlc_alexnet.caffemodel (BVLC), or --weights "
            "random"
        )

    def read_state(self, path: Path, kind: str, digest: str) -> dict:
        if kind in ("torch", "safetensors"):
            return super().read_state(path, kind, digest)
        return weightfiles.caffe_state_dict(path, kind, digest)

    def check_state(self, state: dict, path: Path) -> None:
        conv1 = state.get("features.0.weight")
        if isinstance(conv1, torch.Tensor) and tuple(conv1.shape[:2]) == (64, 3):
            raise WeightsError(
                f"{path} is a torchvision AlexNet state dict, not caffe-alexnet "
                "weights; use --model alexnet"
            )


def find_backbone(name: str) -> Backbone | None:
    """The backbone of ``name`` where it is ``alexnet`` or ``caffe-alexnet``
    (:func:`featx.model.backbone` asks), else None."""
    family = {"alexnet": AlexNetBackbone, "caffe-alexnet": CaffeAlexNetBackbone}
    return family[name]() if name in family else None


@cache
def chain_table(model: str) -> tuple[LayerSpec, ...]:
    """Every capturable layer of an AlexNet, friendly names first, then all
    module paths, with shapes traced on the meta device."""
    from featx.model.backbone import backbone

    net_def = backbone(model)
    with torch.device("meta"):
        net = net_def.build()
        x = torch.empty(1, 3, net_def.side, net_def.side)
        shapes = {}
        for index, (path, module) in enumerate(module_chain(net)):
            if path == "classifier.0":
                x = torch.flatten(x, 1)
            x = module(x)
            shapes[path] = (index, tuple(x.shape[1:]))
    specs = [
        LayerSpec(name, path, *shapes[path])
        for name, path in net_def.friendly().items()
    ]
    specs += [LayerSpec(path, path, *shapes[path]) for path in shapes]
    return tuple(specs)
