"""Weights files: the state dict in a PyTorch or safetensors file, and the
pretrained weights in torch's hub cache (found, or downloaded where the host can
be reached). Below every network family: it imports none of featx.model."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import torch

from featx.errors import WeightsError

__all__ = [
    "check_online",
    "hub_checkpoint",
    "offline_message",
    "read_state_file",
    "torchvision_hub_file",
]


def offline_message(title: str, target: Path, url: str, reason: str, what: str) -> str:
    """What a user is told when pretrained weights in torch's hub cache are
    neither there nor downloadable: where to put the file, and the other
    choices (AlexNet's words, for every torchvision model)."""
    return (
        f"pretrained {title} weights are not cached and could not be downloaded "
        f"({reason}). Place {target.name} (from {url}) at {target} (set TORCH_HOME "
        f"to use another hub cache), or pass --weights PATH to {what}, or "
        "--weights random to run untrained."
    )


def check_online(url: str, message) -> None:
    """Refuse at once when ``FEATX_OFFLINE`` is set or ``url``'s host is out of
    reach (a 3-second connection attempt); ``message(reason)`` says what to do."""
    from urllib.parse import urlparse

    if os.environ.get("FEATX_OFFLINE"):
        raise WeightsError(message("FEATX_OFFLINE is set"))
    host = urlparse(url).hostname or ""
    try:
        socket.create_connection((host, 443), timeout=3).close()
    except OSError as exc:
        reason = f"cannot reach {host}: {exc.strerror or exc}"
        raise WeightsError(message(reason)) from exc


def hub_checkpoint(url: str) -> Path:
    """Where torch's hub cache (``TORCH_HOME``) keeps the file at ``url``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name


def torchvision_hub_file(entry, title: str, what: str) -> Path:
    """The file of the torchvision weights enum ``entry`` in torch's hub cache,
    downloaded when it is not there and its host can be reached; otherwise a
    WeightsError that says where to put it (``title``: the network's name in
    the message; ``what``: the state dict ``--weights PATH`` would take)."""
    target = hub_checkpoint(entry.url)
    if target.is_file():
        return target

    def message(reason: str) -> str:
        return offline_message(title, target, entry.url, reason, what)

    check_online(entry.url, message)  # no "Downloading ..." when it cannot work
    old_timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(30)
    try:
        entry.get_state_dict(progress=False, check_hash=True)
    except Exception as exc:  # URLError, timeouts, hash mismatch
        target.with_suffix(target.suffix + ".partial").unlink(missing_ok=True)
        reason = str(getattr(exc, "reason", exc)) or type(exc).__name__
        raise WeightsError(message(reason)) from exc
    finally:
        socket.setdefaulttimeout(old_timeout)
    return target


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
        for key in ("state_dict", "model", "state_dict_ema"):
            if isinstance(state.get(key), dict):
                state = state[key]
                break
    if not isinstance(state, dict):
        raise WeightsError(f"{path} holds a {type(state).__name__}, not a state dict")
    return state


def _load_safetensors(path: Path) -> dict:
    try:
        from safetensors.torch import load_file
    except ImportError as exc:
        raise WeightsError(
            f"{path.name} is a safetensors file; pip install safetensors (it comes "
            "with the timm extra) to read it"
        ) from exc
    try:
        return load_file(str(path), device="cpu")
    except Exception as exc:  # safetensors raises its own error types
        raise WeightsError(
            f"cannot load {path} as safetensors: {str(exc).splitlines()[0]}"
        ) from exc


def read_state_file(path: Path, kind: str) -> dict:
    """A state dict from a PyTorch or safetensors file; other kinds are the
    original AlexNet's files, which only caffe-alexnet reads."""
    if kind == "torch":
        return _load_state_dict_file(path)
    if kind == "safetensors":
        return _load_safetensors(path)
    raise WeightsError(
        f"{path.name} holds the original (Caffe) AlexNet's weights; use "
        "--model caffe-alexnet"
    )
