"""Where the forward pass runs: the device, its threads, and the decode
workers, decoder and precision that suit it."""

from __future__ import annotations

import contextlib
import os

import torch

from featx.choices import DEVICES
from featx.errors import ParameterError, param

__all__ = [
    "DEVICE_CHOICES",
    "CPU_WORKER_NICENESS",
    "MAX_CPU_WORKERS",
    "available_cores",
    "check_runtime",
    "configure_threads",
    "default_decoder",
    "default_precision",
    "default_workers",
    "lower_priority",
    "resolve_device",
]

#: Decode workers on a CPU-only machine: more only add contention.
MAX_CPU_WORKERS = 8

#: How much lower the decode workers run than the forward pass on a CPU, where
#: they share its cores (``nice``). The forward pass is the path every image
#: waits on: at equal priority the scheduler takes a core from one of its
#: threads mid-layer, and the others wait for it; a few batches decoded ahead
#: keep it fed. Measured: +3-5% end to end for AlexNet on 2 cores, torch and
#: OpenVINO, fp32 and int8 (docs/performance.md).
CPU_WORKER_NICENESS = 10

DEVICE_CHOICES = DEVICES


def _device_error(device: str, why: str = "") -> ParameterError:
    options = ", ".join(repr(d) for d in DEVICE_CHOICES)
    reason = f" ({why})." if why else "."
    return ParameterError(f"`device` must be one of {options}. Got {device!r}{reason}")


def resolve_device(device: str) -> torch.device:
    """``auto`` picks CUDA when present; ``cuda:N`` must exist."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise _device_error(device) from exc
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise _device_error(device, "CUDA is not available on this machine")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise _device_error(
                device, f"this machine has {torch.cuda.device_count()} CUDA device(s)"
            )
    elif dev.type != "cpu":
        raise _device_error(device)
    return dev


def available_cores() -> int:
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def default_workers(device: torch.device) -> int:
    """Decode workers: every core on a GPU machine; on a CPU every core up to
    :data:`MAX_CPU_WORKERS`, since the forward pass and decoding take turns."""
    cores = available_cores()
    return cores if device.type == "cuda" else min(cores, MAX_CPU_WORKERS)


def lower_priority(_worker_id: int) -> None:
    """A CPU decode worker's ``worker_init_fn``: :data:`CPU_WORKER_NICENESS`
    below the process that forked it (where the system allows it)."""
    with contextlib.suppress(AttributeError, OSError):  # no nice, or not allowed
        os.nice(CPU_WORKER_NICENESS)


def configure_threads(device: torch.device) -> None:
    """On a CPU, torch uses every core: decoding and the forward pass take turns."""
    if device.type == "cpu":
        torch.set_num_threads(available_cores())


def default_decoder(device: torch.device) -> str:
    """torchvision's batched decode_jpeg on CUDA (nvJPEG); PIL on a CPU, where
    it measured faster (580 against 404 img/s per core)."""
    return "torchvision" if device.type == "cuda" else "pil"


def default_precision(device: torch.device) -> str:
    """fp32 on a CPU; bf16 on CUDA (tensor cores, and float32's range)."""
    return "bf16" if device.type == "cuda" else "fp32"


def check_runtime(runtime: str, device: torch.device, *, ray: bool = False) -> None:
    """Refuse another runtime than torch on CUDA or with the Ray engine: OpenVINO
    and ONNX Runtime run here on the CPU only."""
    if runtime == "torch":
        return
    if device.type != "cpu":
        raise ParameterError(
            f"runtime {runtime!r} runs on the CPU only; use "
            f"{param('device', 'cpu')}, or {param('runtime', 'torch')} on {device}"
        )
    if ray:
        raise ParameterError(
            f"runtime {runtime!r} runs with the local engine only; use "
            f"{param('engine', 'local')}"
        )
