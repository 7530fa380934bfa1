"""What a capturable layer is, and the pooling each kind of activation takes.

A network's layers are listed as :class:`LayerSpec` rows (:func:`featx.model.
layer_table`); ``--layer`` names one by its friendly name or its path (a module
path for AlexNet, a torchvision graph node, a timm feature tap).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["LayerSpec", "POOLINGS", "kind_of"]

#: How each kind of activation may be pooled, beside ``none`` (stored whole).
#: ``map`` is (C, H, W); ``hwc`` a (H, W, C) map (torchvision's Swin); ``tokens``
#: (T, D) with a class token first (ViT); ``seq`` (T, D) without one.
POOLINGS: dict[str, tuple[str, ...]] = {
    "vector": (),
    "map": ("avg", "max"),
    "hwc": ("avg", "max"),
    "tokens": ("cls", "avg", "max"),
    "seq": ("avg", "max"),
    "other": (),
}


def kind_of(shape: tuple[int, ...]) -> str:
    """The kind of an activation of ``shape`` (one image's, no batch axis) when
    nothing more is known: 1-D a vector, 2-D a sequence, 3-D a (C, H, W) map."""
    return {1: "vector", 2: "seq", 3: "map"}.get(len(shape), "other")


@dataclass(frozen=True)
class LayerSpec:
    """One capturable layer: its name, path, position, output shape and kind."""

    name: str
    module_path: str
    index: int
    shape: tuple[int, ...]
    #: One of :data:`POOLINGS`' keys; derived from the shape when not given.
    kind: str = ""

    def __post_init__(self) -> None:
        if not self.kind:
            object.__setattr__(self, "kind", kind_of(self.shape))

    @property
    def dim(self) -> int:
        size = 1
        for s in self.shape:
            size *= s
        return size

    @property
    def poolings(self) -> tuple[str, ...]:
        """The reductions ``--spatial`` may apply to this layer (besides none)."""
        return POOLINGS[self.kind]

    @property
    def spatial(self) -> bool:
        """Whether the activation is a map or a sequence that can be pooled."""
        return bool(self.poolings)

    @property
    def pooled_dim(self) -> int:
        """The width of one pooled row: the channels, or the token width."""
        return self.shape[0] if self.kind == "map" else self.shape[-1]
