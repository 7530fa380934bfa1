"""Loading a network's weights: seeded random, pretrained, or from a file."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from featx.digest import file_sha256
from featx.errors import WeightsError, param
from featx.model import weightfiles
from featx.model.backbone import Backbone, backbone
from featx.model.checkpoints import hub_checkpoint

__all__ = ["LoadedWeights", "apply_state", "hub_weights_file", "load_weights"]


@dataclass
class LoadedWeights:
    """A network with its weights and where they came from."""

    model: nn.Module
    weights_id: str
    sha256: str
    pretrained: bool
    source: str
    #: The ``--model`` name (named ``arch``, not ``model``, because ``model`` is
    #: the network itself).
    arch: str = "alexnet"


def _sha256_state(model: nn.Module) -> str:
    digest = hashlib.sha256()
    for key, tensor in model.state_dict().items():
        digest.update(key.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def hub_weights_file() -> Path:
    """Where torch's hub cache keeps the ImageNet AlexNet weights."""
    from featx.model.alexnet import WEIGHTS

    return hub_checkpoint(WEIGHTS.url)


def apply_state(net: nn.Module, state: dict, path: Path, net_def: Backbone) -> None:
    """Load ``state`` into ``net``, refusing one of another network with what
    differs, and one with NaN or Inf values."""
    net_def.check_state(state, path)
    state = net_def.adapt_state(state)
    expected = net.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing[:3])}")
        if unexpected:
            parts.append(f"unexpected {', '.join(unexpected[:3])}")
        what = (
            "a torchvision AlexNet"
            if net_def.name == "alexnet"
            else f"a {net_def.name}"
        )
        raise WeightsError(f"{path} is not {what} state dict: {'; '.join(parts)}")
    for key, tensor in expected.items():
        got = state[key]
        if not isinstance(got, torch.Tensor) or got.shape != tensor.shape:
            shape = tuple(got.shape) if isinstance(got, torch.Tensor) else type(got)
            raise WeightsError(
                f"{path}: {key} has shape {shape}, {net_def.name} needs "
                f"{tuple(tensor.shape)}"
            )
        if got.is_floating_point() and not torch.isfinite(got).all():
            raise WeightsError(
                f"{path}: {key} holds NaN or Inf values; the file is damaged (every "
                "feature it computed would be NaN)"
            )
    net.load_state_dict(state)


# Long: its docstring lists every source of weights; the code is 48 lines.
def load_weights(
    weights: str = "imagenet", *, seed: int = 0, model: str = "alexnet"
) -> LoadedWeights:
    """Build the network ``model`` with ``weights``: ``imagenet``, ``random`` or a
    file path.

    ``imagenet`` is the model's pretrained weights: for torchvision models its
    weights enum's ``DEFAULT`` (AlexNet's ``IMAGENET1K_V1``) through the torch
    hub cache (``TORCH_HOME``); for ``timm:NAME`` timm's hub through the Hugging
    Face cache. They are downloaded only when not there and ``FEATX_OFFLINE`` is
    unset. ``random`` is a seeded, untrained network. A file is a PyTorch state
    dict or a ``.safetensors`` file; for ``caffe-alexnet`` also
    ``bvlc_alexnet.npy``, ``alexnet_weights.h5`` or ``bvlc_alexnet.caffemodel``
    (:mod:`featx.model.weightfiles`).

    Raises
    ------
    WeightsError
        When the file is missing, unreadable or not weights of ``model``, or the
        pretrained weights are neither cached nor downloadable.
    LayerError
        When no network is called ``model``.
    """
    net_def = backbone(model)  # an unknown name stops here
    if weights == "random":
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = net_def.build()
        return LoadedWeights(
            model=net.eval(),
            weights_id=f"random(seed={seed})",
            sha256=_sha256_state(net),
            pretrained=False,
            source=f"random initialisation, seed {seed} (NOT pretrained)",
            arch=model,
        )
    if weights == "imagenet":
        target = net_def.imagenet_file()
        kind = weightfiles.file_kind(target)
        net = net_def.build()
        apply_state(net, net_def.read_state(target, kind, ""), target, net_def)
        return LoadedWeights(
            model=net.eval(),
            weights_id=net_def.imagenet_id,
            sha256=file_sha256(target),
            pretrained=True,
            source=str(target),
            arch=model,
        )
    path = Path(weights).expanduser()
    if not path.exists():
        raise WeightsError(
            f"{param('weights')} must be 'imagenet', 'random' or a weights file; "
            f"{weights!r} is none of these (no such file)"
        )
    kind = weightfiles.file_kind(path)
    digest = file_sha256(path)
    state = net_def.read_state(path, kind, digest)
    net = net_def.build()
    apply_state(net, state, path, net_def)
    return LoadedWeights(
        model=net.eval(),
        weights_id=f"file:{path.name}",
        sha256=digest,
        pretrained=True,
        source=str(path.resolve()),
        arch=model,
    )
