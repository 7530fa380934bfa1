"""AlexNet, its weights, and capturing the activations of chosen layers.

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
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import nn
from torchvision.models import AlexNet_Weights, alexnet

from featx.digest import file_sha256
from featx.errors import LayerError, WeightsError

WEIGHTS = AlexNet_Weights.IMAGENET1K_V1

#: Friendly names and the module each one stands for.
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


def module_chain(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """AlexNet's modules in execution order (the flatten sits before classifier)."""
    chain = [(f"features.{i}", m) for i, m in enumerate(model.features)]
    chain.append(("avgpool", model.avgpool))
    chain += [(f"classifier.{i}", m) for i, m in enumerate(model.classifier)]
    return chain


@cache
def layer_table() -> tuple[LayerSpec, ...]:
    """Every capturable layer, friendly names first, then all module paths."""
    with torch.device("meta"):
        model = alexnet()
        x = torch.empty(1, 3, 224, 224)
        shapes = {}
        for index, (path, module) in enumerate(module_chain(model)):
            if path == "classifier.0":
                x = torch.flatten(x, 1)
            x = module(x)
            shapes[path] = (index, tuple(x.shape[1:]))
    specs = [
        LayerSpec(name, path, *shapes[path]) for name, path in FRIENDLY_LAYERS.items()
    ]
    specs += [LayerSpec(path, path, *shapes[path]) for path in shapes]
    return tuple(specs)


def resolve_layers(names: list[str] | tuple[str, ...]) -> list[LayerSpec]:
    """Turn layer names into specs, refusing unknown ones with the valid list."""
    table = {spec.name: spec for spec in layer_table()}
    unknown = [n for n in names if n not in table]
    if unknown:
        friendly = ", ".join(FRIENDLY_LAYERS)
        raise LayerError(
            f"unknown layer {unknown[0]!r}; valid names: {friendly}, or a module "
            "path such as features.10 or classifier.4 (`featx layers` lists all)"
        )
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


def _sha256_state(model: nn.Module) -> str:
    digest = hashlib.sha256()
    for key, tensor in model.state_dict().items():
        digest.update(key.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def weights_spec(weights_id: str, source: str = "") -> tuple[str, int]:
    """The ``(weights, seed)`` for :func:`load_weights` that rebuilds the weights
    recorded as ``weights_id`` (``source`` is the file of a ``file:`` id)."""
    if weights_id.startswith("random(seed="):
        return "random", int(weights_id[len("random(seed=") : -1])
    if weights_id.startswith("torchvision:"):
        return "imagenet", 0
    return source, 0


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


def _apply_state(model: nn.Module, state: dict, path: Path) -> None:
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing[:3])}")
        if unexpected:
            parts.append(f"unexpected {', '.join(unexpected[:3])}")
        raise WeightsError(
            f"{path} is not a torchvision AlexNet state dict: {'; '.join(parts)}"
        )
    for key, tensor in expected.items():
        got = state[key]
        if not isinstance(got, torch.Tensor) or got.shape != tensor.shape:
            shape = tuple(got.shape) if isinstance(got, torch.Tensor) else type(got)
            raise WeightsError(
                f"{path}: {key} has shape {shape}, AlexNet needs {tuple(tensor.shape)}"
            )
        if got.is_floating_point() and not torch.isfinite(got).all():
            raise WeightsError(
                f"{path}: {key} holds NaN or Inf values; the file is damaged (every "
                "feature it computed would be NaN)"
            )
    model.load_state_dict(state)


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
def load_weights(weights: str = "imagenet", *, seed: int = 0) -> LoadedWeights:
    """Build AlexNet with ``weights``: ``imagenet``, ``random`` or a file path.

    ``imagenet`` reads torchvision's ``AlexNet_Weights.IMAGENET1K_V1`` through the
    torch hub cache (``TORCH_HOME``), downloading it only when it is not there and
    ``FEATX_OFFLINE`` is unset. ``random`` is a seeded, untrained network.

    Raises
    ------
    WeightsError
        When the file is missing, unreadable or not an AlexNet state dict, or
        the ImageNet weights are neither cached nor downloadable.
    """
    if weights == "random":
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = alexnet()
        return LoadedWeights(
            model=model.eval(),
            weights_id=f"random(seed={seed})",
            sha256=_sha256_state(model),
            pretrained=False,
            source=f"random initialisation, seed {seed} (NOT pretrained)",
        )
    model = alexnet()
    if weights == "imagenet":
        target = hub_weights_file()
        if not target.is_file():
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
        _apply_state(model, _load_state_dict_file(target), target)
        return LoadedWeights(
            model=model.eval(),
            weights_id="torchvision:AlexNet_Weights.IMAGENET1K_V1",
            sha256=file_sha256(target),
            pretrained=True,
            source=str(target),
        )
    path = Path(weights).expanduser()
    if not path.exists():
        raise WeightsError(
            f"--weights must be 'imagenet', 'random' or a state-dict file; "
            f"{weights!r} is none of these (no such file)"
        )
    _apply_state(model, _load_state_dict_file(path), path)
    return LoadedWeights(
        model=model.eval(),
        weights_id=f"file:{path.name}",
        sha256=file_sha256(path),
        pretrained=True,
        source=str(path.resolve()),
    )
