"""What featx needs of a network, and which class provides it for a name.

A :class:`Backbone` builds the network, lists its layers, says how an image is
prepared for it, captures chosen layers in one forward pass, and knows where its
pretrained weights live. :func:`backbone` turns a ``--model`` name into one:
``alexnet`` and ``caffe-alexnet`` (:mod:`featx.model.alexnet`), any torchvision
classification model (:mod:`featx.model.torchvision_nets`), or ``timm:NAME``
(:mod:`featx.model.timm_nets`, with the ``timm`` extra).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable
from functools import cache
from pathlib import Path

from torch import nn

from featx.choices import mean_refused_message, unknown_model_message
from featx.errors import LayerError, ParameterError, WeightsError
from featx.images import Preprocess
from featx.model.checkpoints import read_state_file
from featx.model.layers import LayerSpec

__all__ = ["Backbone", "TIMM_PREFIX", "backbone", "register_family", "unknown_model"]

#: The prefix of a timm model's name (``timm:resnet50.a1_in1k``).
TIMM_PREFIX = "timm:"


class Backbone:
    """A network family's answers to what featx asks (subclasses fill them in)."""

    #: The ``--model`` name.
    name: str
    #: What messages call it ("AlexNet", "resnet50").
    title: str

    def build(self) -> nn.Module:
        """An untrained network (seeded by the caller)."""
        raise NotImplementedError

    def friendly(self) -> dict[str, str]:
        """Short names and the path each stands for, in depth order."""
        return {}

    def layer_table(self) -> tuple[LayerSpec, ...]:
        """Every capturable layer: the friendly names first, then every path."""
        raise NotImplementedError

    def preprocess(self, mean: Path | None = None, **settings) -> Preprocess:
        """The input preprocessing (``mean`` only where the model takes one),
        made with ``settings`` (``decode``, ``precision``, ``decoder``)."""
        if mean is not None:
            raise ParameterError(mean_refused_message(self.name))
        return Preprocess(self.transforms(), **settings)

    def transforms(self):
        """A preset with ``resize_size``, ``crop_size``, ``mean``, ``std``,
        ``interpolation`` and ``antialias`` (torchvision's ``ImageClassification``)."""
        raise NotImplementedError

    def capture(self, net: nn.Module, specs: list[LayerSpec]) -> nn.Module:
        """A module whose ``forward(x, names)`` returns ``{name: activation}`` for
        ``specs`` (a subset with ``names``), computing no deeper than needed."""
        raise NotImplementedError

    # Weights ------------------------------------------------------------------
    #: The id a cache records for the pretrained weights.
    imagenet_id: str = ""
    #: Where they come from.
    url: str = ""

    def imagenet_file(self) -> Path:
        """The pretrained weights' file, downloaded if it is not there and the
        host can be reached; a WeightsError with instructions otherwise."""
        raise WeightsError(f"{self.name} has no pretrained weights to download")

    def read_state(self, path: Path, kind: str, digest: str) -> dict:
        """The state dict in the weights file ``path`` (``kind`` from
        :func:`featx.model.weightfiles.file_kind`)."""
        return read_state_file(path, kind)

    def check_state(self, state: dict, path: Path) -> None:
        """Refuse a state dict that is recognisably another network's."""

    def adapt_state(self, state: dict) -> dict:
        """The state dict as :meth:`build`'s network names it."""
        return state

    def find(self, name: str) -> LayerSpec | None:
        """The layer called ``name``, or None."""
        for spec in self.layer_table():
            if spec.name == name:
                return spec
        return None

    def unknown_layer(self, name: str) -> str:
        """What a user who asked for layer ``name`` is told: the short names
        where there are some, how to list them all, and the closest one."""
        names = [spec.name for spec in self.layer_table()]
        close = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        friendly = list(self.friendly())
        listing = f"`featx layers --model {self.name}`"
        if friendly:
            valid = (
                f"valid names: {', '.join(friendly)}, or any of the "
                f"{len(names) - len(friendly)} paths {listing} lists"
            )
        else:
            valid = f"{listing} lists its {len(names)} layers (the deepest: "
            valid += f"{', '.join(names[-3:])})"
        return f"unknown layer {name!r} of {self.name}; {valid}{hint}"


#: The network families :func:`backbone` asks, in order: each is a function
#: that takes a ``--model`` name and returns its :class:`Backbone`, or None when
#: the name is not one of its own, with a function that lists its names (for the
#: hint of an unknown one). :mod:`featx.model` registers its families (AlexNet,
#: timm, torchvision) when it is imported, so that this module, which they
#: subclass, imports none of them.
_FAMILIES: list[tuple[Callable[[str], Backbone | None], Callable[[], Iterable[str]]]]
_FAMILIES = []


def register_family(
    find: Callable[[str], Backbone | None], names: Callable[[], Iterable[str]]
) -> None:
    """Let :func:`backbone` ask ``find`` for the names no family before it took;
    ``names()`` lists the family's names."""
    _FAMILIES.append((find, names))
    backbone.cache_clear()


def unknown_model(name: str) -> LayerError:
    """The error for a ``--model`` nobody runs, with the closest name."""
    known = [n for _, names in _FAMILIES for n in names()]
    return LayerError(unknown_model_message(name, known))


@cache
def backbone(name: str) -> Backbone:
    """The :class:`Backbone` of the ``--model`` name ``name``; a LayerError
    with the closest valid name when there is none."""
    if not isinstance(name, str) or not name:
        raise unknown_model(str(name))
    for find, _ in _FAMILIES:
        found = find(name)
        if found is not None:
            return found
    raise unknown_model(name)
