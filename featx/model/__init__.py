"""The networks featx runs, their weights, and capturing chosen layers.

``--model`` names a network (:func:`backbone`): ``alexnet`` (the default,
torchvision's), ``caffe-alexnet`` (the original BVLC network,
:mod:`featx.model.alexnet`), any torchvision classification model
(:mod:`featx.model.torchvision_nets`) or ``timm:NAME``
(:mod:`featx.model.timm_nets`). Each lists its layers (:func:`layer_table`),
prepares images its own way (:func:`preprocess_for`) and captures the layers
asked for in one forward pass that stops at the deepest (``capture``).
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from featx.choices import (
    DECODE_MODES,
    DECODERS,
    DEFAULT_DECODE,
    MODELS,
    PRECISIONS,
    RUNTIME_PRECISIONS,
    RUNTIMES,
)
from featx.errors import LayerError, check_choice, param
from featx.images import Preprocess
from featx.model import alexnet, timm_nets, torchvision_nets
from featx.model.alexnet import (
    FRIENDLY_LAYERS,
    WEIGHTS,
    FeatureNet,
    module_chain,
)
from featx.model.backbone import TIMM_PREFIX, Backbone, backbone, register_family
from featx.model.layers import POOLINGS, LayerSpec
from featx.model.weights import LoadedWeights, hub_weights_file, load_weights

# The families, in the order backbone() asks them: AlexNet's two names, then
# timm:NAME, then torchvision's names (listed in that order in an unknown
# model's hint). They are registered here so that backbone.py, which they all
# subclass, imports none of them.
register_family(alexnet.find_backbone, lambda: MODELS)
register_family(timm_nets.find_backbone, tuple)
register_family(torchvision_nets.find_backbone, torchvision_nets.torchvision_models)

__all__ = [
    "FRIENDLY_LAYERS",
    "MODELS",
    "POOLINGS",
    "TIMM_PREFIX",
    "WEIGHTS",
    "Backbone",
    "FeatureNet",
    "LayerSpec",
    "LoadedWeights",
    "backbone",
    "build_model",
    "capture_net",
    "friendly_layers",
    "hub_weights_file",
    "layer_table",
    "load_weights",
    "module_chain",
    "preprocess_for",
    "resolve_layers",
]


def build_model(model: str = "alexnet") -> nn.Module:
    """An untrained network ``model``."""
    return backbone(model).build()


def friendly_layers(model: str = "alexnet") -> dict[str, str]:
    """The friendly layer names of ``model`` and the path each stands for."""
    return backbone(model).friendly()


def layer_table(model: str = "alexnet") -> tuple[LayerSpec, ...]:
    """Every capturable layer of ``model``, friendly names first, then all
    paths."""
    return backbone(model).layer_table()


def preprocess_for(
    model: str = "alexnet",
    mean: Path | None = None,
    decode: str = DEFAULT_DECODE,
    precision: str = "fp32",
    decoder: str = "pil",
    runtime: str = "torch",
    calibration: dict | None = None,
) -> Preprocess:
    """The input preprocessing of ``model``; ``mean`` (a ``.npy`` mean image)
    only for caffe-alexnet; ``decode``, one of :data:`featx.choices.DECODE_MODES`
    (``fast`` scales JPEGs down to the model's own resize target); ``precision``
    one of :data:`featx.choices.PRECISIONS`; ``decoder`` one of
    :data:`featx.choices.DECODERS`; ``runtime`` one of
    :data:`featx.choices.RUNTIMES` (whose precisions, but torch's, are
    :data:`featx.choices.RUNTIME_PRECISIONS`); ``calibration`` the recorded
    calibration set of an int8 network."""
    net_def = backbone(model)  # an unknown name stops here
    check_choice("decode", decode, DECODE_MODES)
    check_choice("runtime", runtime, RUNTIMES)
    allowed = PRECISIONS if runtime == "torch" else RUNTIME_PRECISIONS
    check_choice("precision", precision, allowed)
    check_choice("decoder", decoder, DECODERS)
    return net_def.preprocess(
        mean,
        decode=decode,
        precision=precision,
        decoder=decoder,
        runtime=runtime,
        calibration=calibration,
    )


def resolve_layers(
    names: list[str] | tuple[str, ...], model: str = "alexnet"
) -> list[LayerSpec]:
    """Turn layer names of ``model`` into specs, refusing unknown ones with the
    valid list."""
    net_def = backbone(model)
    found = {n: net_def.find(n) for n in names}
    unknown = [n for n, spec in found.items() if spec is None]
    if unknown:
        raise LayerError(net_def.unknown_layer(unknown[0]))
    if not names:
        raise LayerError(
            f"no layer given; use {param('layer')}, e.g. {param('layer', 'fc7')}"
        )
    return list(found.values())


def capture_net(loaded: LoadedWeights, specs: list[LayerSpec]) -> nn.Module:
    """The module that captures ``specs`` of ``loaded``'s network in one forward
    pass: ``forward(x, names) -> {name: activation}``."""
    return backbone(loaded.arch).capture(loaded.model, specs)
