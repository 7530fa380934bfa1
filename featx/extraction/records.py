"""What an extraction is asked to do and what it did."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from featx.cache import (
    Failure,
    NotImage,
    Warnings,
)

__all__ = ["RayEngine", "ExtractResult", "Compute"]


@dataclass(frozen=True)
class RayEngine:
    """Run extraction on a Ray cluster: ``address`` (``auto``, ``ray://host:port``,
    None to start a local one) and the number of model ``actors`` (None: one per
    GPU, or half the CPUs)."""

    address: str | None = None
    actors: int | None = None


@dataclass
class ExtractResult:
    """What one extraction did."""

    cache_path: Path
    n_images: int
    n_new: int
    n_reused: int
    failures: list[Failure]
    layers: list[str]
    seconds: float
    images_per_s: float
    weights_id: str
    pretrained: bool
    device: str
    ignored: list[str] = field(default_factory=list)
    skipped: list[Failure] = field(default_factory=list)
    #: The views of each layer this run made sure of (:mod:`featx.images.views`).
    views: list[str] = field(default_factory=lambda: ["center"])
    notes: list[str] = field(default_factory=list)
    #: The folder's files that are no image, hidden files and hidden folders:
    #: with the rows and failures, every entry of the folder.
    not_images: list[NotImage] = field(default_factory=list)
    #: What the decoders said of each image, ``{path: lines}``: those decoded
    #: in this run and those recorded by earlier ones.
    warnings: Warnings = field(default_factory=dict)
    #: Made by another runtime than torch, or in int8: each dataset's relative
    #: difference from float32 torch on a sample (:mod:`featx.extraction.parity`).
    parity: dict[str, float] = field(default_factory=dict)
    #: The seconds measuring ``parity`` took (not in ``seconds``).
    parity_seconds: float = 0.0

    @property
    def n_failed(self) -> int:
        return len(self.failures)


@dataclass(frozen=True)
class Compute:
    """How pending rows are computed."""

    device: torch.device
    batch_size: int
    num_workers: int | None
    engine: str | RayEngine
