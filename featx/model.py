"""AlexNet, its weights, and capturing the activations of chosen layers.

Two architectures (:data:`MODELS`): ``alexnet``, torchvision's (the "one weird
trick" variant, 224 input), and ``caffe-alexnet``, the original network as BVLC's
Caffe definition has it (:mod:`featx.caffe`, 227 input, LRN, grouped
convolutions), whose weights come from the files its ports use
(:mod:`featx.weightfiles`).

Layers are named by their torchvision module path (``features.10``,
``classifier.4``) or by a friendly name that stands for one of them. AlexNet is a
chain of modules, so :class:`FeatureNet` runs that chain itself: it stops after the
deepest requested layer and, with every ReLU made out-of-place, what it captures is
exactly the module's output (torchvision's in-place ReLUs would otherwise overwrite
a captured convolution output with its rectified values).
"""

from __future__ import annotations

import hashlib
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import nn
from torchvision.models import AlexNet_Weights, alexnet

from featx import caffe, weightfiles
from featx.choices import (
    DECODE_MODES,
    DECODERS,
    MODELS,
    PRECISIONS,
    unknown_layer_message,
)
from featx.digest import file_sha256
from featx.errors import LayerError, WeightsError, check_choice
from featx.images import Preprocess

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


@dataclass(frozen=True)
class LayerSpec:
    """One capturable layer: its name, module path, position and output shape."""

    name: str
    module_path: str
    index: int
    shape: tuple[int, ...]

    @property
    def dim(self) -> int:
        size = 1
        for s in self.shape:
            size *= s
        return size

    @property
    def spatial(self) -> bool:
        """Whether the activation is a (C, H, W) map that can be pooled."""
        return len(self.shape) == 3


@dataclass(frozen=True)
class Architecture:
    """What differs between the networks featx runs."""

    build: Callable[[], nn.Module]
    #: Friendly layer names and the module each one stands for.
    friendly: dict[str, str]
    #: Side of the square input.
    side: int


#: The architectures featx runs, the default first (keyed by
#: :data:`featx.choices.MODELS`; a test holds them equal).
ARCHITECTURES: dict[str, Architecture] = {
    "alexnet": Architecture(alexnet, FRIENDLY_LAYERS, 224),
    "caffe-alexnet": Architecture(
        caffe.CaffeAlexNet, caffe.FRIENDLY_LAYERS, caffe.CROP
    ),
}


def architecture(name: str) -> Architecture:
    """The architecture ``name``; a LayerError naming :data:`MODELS` if unknown."""
    if name not in ARCHITECTURES:
        raise LayerError(f"unknown model {name!r}; featx runs {' and '.join(MODELS)}")
    return ARCHITECTURES[name]


def build_model(model: str = "alexnet") -> nn.Module:
    """An untrained network of architecture ``model`` (one of :data:`MODELS`)."""
    return architecture(model).build()


def friendly_layers(model: str = "alexnet") -> dict[str, str]:
    """The friendly layer names of ``model`` and the module each stands for."""
    return architecture(model).friendly


def preprocess_for(
    model: str = "alexnet",
    mean: Path | None = None,
    decode: str = "exact",
    precision: str = "fp32",
    decoder: str = "pil",
) -> Preprocess:
    """The input preprocessing of ``model``; ``mean`` (a ``.npy`` mean image)
    only for caffe-alexnet; ``decode``, one of :data:`featx.choices.DECODE_MODES`
    (``fast`` scales JPEGs down to the model's own resize target); ``precision``
    one of :data:`featx.choices.PRECISIONS`; ``decoder`` one of
    :data:`featx.choices.DECODERS`."""
    architecture(model)  # an unknown name stops here
    check_choice("decode", decode, DECODE_MODES)
    check_choice("precision", precision, PRECISIONS)
    check_choice("decoder", decoder, DECODERS)
    if model == "caffe-alexnet":
        preprocess = caffe.CaffePreprocess(mean)
    elif mean is not None:
        raise WeightsError(
            "--mean is for --model caffe-alexnet; torchvision's AlexNet normalises "
            "with its own mean and std"
        )
    else:
        preprocess = Preprocess(WEIGHTS.transforms())
    preprocess.decode = decode
    preprocess.precision = precision
    preprocess.decoder = decoder
    return preprocess


def module_chain(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The network's modules in execution order (the flatten sits before
    classifier; torchvision's AlexNet has an ``avgpool`` between them)."""
    chain = [(f"features.{i}", m) for i, m in enumerate(model.features)]
    if hasattr(model, "avgpool"):
        chain.append(("avgpool", model.avgpool))
    chain += [(f"classifier.{i}", m) for i, m in enumerate(model.classifier)]
    return chain


@cache
def layer_table(model: str = "alexnet") -> tuple[LayerSpec, ...]:
    """Every capturable layer of ``model``, friendly names first, then all module
    paths."""
    side = architecture(model).side
    with torch.device("meta"):
        net = build_model(model)
        x = torch.empty(1, 3, side, side)
        shapes = {}
        for index, (path, module) in enumerate(module_chain(net)):
            if path == "classifier.0":
                x = torch.flatten(x, 1)
            x = module(x)
            shapes[path] = (index, tuple(x.shape[1:]))
    specs = [
        LayerSpec(name, path, *shapes[path])
        for name, path in friendly_layers(model).items()
    ]
    specs += [LayerSpec(path, path, *shapes[path]) for path in shapes]
    return tuple(specs)


def resolve_layers(
    names: list[str] | tuple[str, ...], model: str = "alexnet"
) -> list[LayerSpec]:
    """Turn layer names of ``model`` into specs, refusing unknown ones with the
    valid list."""
    table = {spec.name: spec for spec in layer_table(model)}
    unknown = [n for n in names if n not in table]
    if unknown:
        raise LayerError(unknown_layer_message(unknown[0], model))
    if not names:
        raise LayerError("no layer given; use --layer, e.g. --layer fc7")
    seen, specs = set(), []
    for n in names:
        if n not in seen:
            seen.add(n)
            specs.append(table[n])
    return specs


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


@dataclass
class LoadedWeights:
    """An AlexNet with its weights and where they came from."""

    model: nn.Module
    weights_id: str
    sha256: str
    pretrained: bool
    source: str
    #: The architecture, one of :data:`MODELS` (named ``arch``, not ``model``,
    #: because ``model`` is the network itself).
    arch: str = "alexnet"


def _sha256_state(model: nn.Module) -> str:
    digest = hashlib.sha256()
    for key, tensor in model.state_dict().items():
        digest.update(key.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def hub_weights_file() -> Path:
    """Where torch's hub cache keeps the ImageNet AlexNet weights."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(WEIGHTS.url).name


def _load_state_dict_file(path: Path) -> dict:
    if not path.is_file():
        raise WeightsError(f"weights file {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many kinds for a bad file
        raise WeightsError(
            f"cannot load {path} as a PyTorch state dict: {str(exc).splitlines()[0]}"
        ) from exc
    if isinstance(state, dict):
        for key in ("state_dict", "model"):
            if isinstance(state.get(key), dict):
                state = state[key]
    if not isinstance(state, dict):
        raise WeightsError(f"{path} holds a {type(state).__name__}, not a state dict")
    return state


def _apply_state(model: nn.Module, state: dict, path: Path, arch: str) -> None:
    if arch == "caffe-alexnet" and _is_torchvision(state):
        raise WeightsError(
            f"{path} is a torchvision AlexNet state dict, not caffe-alexnet "
            "weights; use --model alexnet"
        )
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing[:3])}")
        if unexpected:
            parts.append(f"unexpected {', '.join(unexpected[:3])}")
        what = "a torchvision AlexNet" if arch == "alexnet" else f"a {arch}"
        raise WeightsError(f"{path} is not {what} state dict: {'; '.join(parts)}")
    for key, tensor in expected.items():
        got = state[key]
        if not isinstance(got, torch.Tensor) or got.shape != tensor.shape:
            shape = tuple(got.shape) if isinstance(got, torch.Tensor) else type(got)
            raise WeightsError(
                f"{path}: {key} has shape {shape}, {arch} needs {tuple(tensor.shape)}"
            )
        if got.is_floating_point() and not torch.isfinite(got).all():
            raise WeightsError(
                f"{path}: {key} holds NaN or Inf values; the file is damaged (every "
                "feature it computed would be NaN)"
            )
    model.load_state_dict(state)


def _is_torchvision(state: dict) -> bool:
    """Whether ``state`` looks like torchvision's AlexNet (64 conv1 filters)."""
    conv1 = state.get("features.0.weight")
    return isinstance(conv1, torch.Tensor) and tuple(conv1.shape[:2]) == (64, 3)


def _offline_message(target: Path, reason: str) -> str:
    return (
        f"pretrained AlexNet weights are not cached and could not be downloaded "
        f"({reason}). Place {target.name} (from {WEIGHTS.url}) at {target} "
        f"(set TORCH_HOME to use another hub cache), or pass --weights PATH to a "
        f"torchvision AlexNet state dict, or --weights random to run untrained."
    )


def _check_reachable(target: Path) -> None:
    """Refuse at once, with the instructions, when the weights' host is out of
    reach (a 3-second connection attempt)."""
    host = urlparse(WEIGHTS.url).hostname or ""
    try:
        socket.create_connection((host, 443), timeout=3).close()
    except OSError as exc:
        reason = f"cannot reach {host}: {exc.strerror or exc}"
        raise WeightsError(_offline_message(target, reason)) from exc


# Long: three sources of weights (random, torchvision's hub, a file), each short.
def load_weights(
    weights: str = "imagenet", *, seed: int = 0, model: str = "alexnet"
) -> LoadedWeights:
    """Build the network ``model`` with ``weights``: ``imagenet``, ``random`` or a
    file path.

    ``imagenet`` reads torchvision's ``AlexNet_Weights.IMAGENET1K_V1`` through the
    torch hub cache (``TORCH_HOME``), downloading it only when it is not there and
    ``FEATX_OFFLINE`` is unset. ``random`` is a seeded, untrained network. For
    ``caffe-alexnet`` a file is ``bvlc_alexnet.npy``, ``alexnet_weights.h5``,
    ``bvlc_alexnet.caffemodel`` (:mod:`featx.weightfiles`) or a state dict of it.

    Raises
    ------
    WeightsError
        When the file is missing, unreadable or not weights of ``model``, or the
        ImageNet weights are neither cached nor downloadable.
    """
    architecture(model)  # an unknown name stops here
    if weights == "random":
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = build_model(model)
        return LoadedWeights(
            model=net.eval(),
            weights_id=f"random(seed={seed})",
            sha256=_sha256_state(net),
            pretrained=False,
            source=f"random initialisation, seed {seed} (NOT pretrained)",
            arch=model,
        )
    net = build_model(model)
    if weights == "imagenet":
        if model == "caffe-alexnet":
            raise WeightsError(
                "caffe-alexnet has no weights to download: pass --weights with "
                "bvlc_alexnet.npy (TensorFlow port), alexnet_weights.h5 "
                "(convnets-keras) or bvlc_alexnet.caffemodel (BVLC), or --weights "
                "random"
            )
        target = _hub_weights()
        _apply_state(net, _load_state_dict_file(target), target, model)
        return LoadedWeights(
            model=net.eval(),
            weights_id="torchvision:AlexNet_Weights.IMAGENET1K_V1",
            sha256=file_sha256(target),
            pretrained=True,
            source=str(target),
        )
    path = Path(weights).expanduser()
    if not path.exists():
        raise WeightsError(
            f"--weights must be 'imagenet', 'random' or a weights file; "
            f"{weights!r} is none of these (no such file)"
        )
    kind = weightfiles.file_kind(path)
    digest = file_sha256(path)
    if kind == "torch":
        state = _load_state_dict_file(path)
    elif model == "caffe-alexnet":
        state = weightfiles.caffe_state_dict(path, kind, digest)
    else:
        raise WeightsError(
            f"{path.name} holds the original (Caffe) AlexNet's weights; use "
            "--model caffe-alexnet"
        )
    _apply_state(net, state, path, model)
    return LoadedWeights(
        model=net.eval(),
        weights_id=f"file:{path.name}",
        sha256=digest,
        pretrained=True,
        source=str(path.resolve()),
        arch=model,
    )


def _hub_weights() -> Path:
    """torchvision's ImageNet AlexNet file in the hub cache, downloaded when
    it is not there and the host can be reached."""
    target = hub_weights_file()
    if target.is_file():
        return target
    if os.environ.get("FEATX_OFFLINE"):
        raise WeightsError(_offline_message(target, "FEATX_OFFLINE is set"))
    _check_reachable(target)  # no "Downloading ..." when it cannot work
    old_timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(30)
    try:
        WEIGHTS.get_state_dict(progress=False, check_hash=True)
    except Exception as exc:  # URLError, timeouts, hash mismatch
        target.with_suffix(target.suffix + ".partial").unlink(missing_ok=True)
        reason = str(getattr(exc, "reason", exc)) or type(exc).__name__
        raise WeightsError(_offline_message(target, reason)) from exc
    finally:
        socket.setdefaulttimeout(old_timeout)
    return target
