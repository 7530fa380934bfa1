"""The types a cache is made of, and the root attributes it records.

:class:`CacheMeta` alone knows how the root attributes are spelled; each of its
fields carries the description that :func:`featx.cache.describe_format` prints.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from pathlib import Path

import h5py
import numpy as np

from featx.images.views import CENTER, dataset_key

__all__ = [
    "CacheMeta",
    "CacheState",
    "FORMAT_VERSION",
    "Failure",
    "LayerDef",
    "MAX_ABS",
    "NotImage",
    "Rows",
    "STR",
    "Warnings",
    "WeightsInfo",
    "attr",
    "weights_spec",
]

FORMAT_VERSION = 1

STR = h5py.string_dtype("utf-8")
#: No AlexNet activation comes near this (pretrained fc6 peaks in the hundreds);
#: a stored value beyond it is damage. Squares of values below it fit float32.
MAX_ABS = 1e15


@dataclass(frozen=True)
class LayerDef:
    """One stored feature dataset: a layer with its spatial reduction and dtype."""

    layer: str
    module_path: str
    shape: tuple[int, ...]
    spatial: str
    dtype: str
    #: The crop of the image (:mod:`featx.images.views`); every layer has ``center``.
    view: str = CENTER
    #: How the activation is laid out (:data:`featx.model.POOLINGS`' keys):
    #: ``map`` (C, H, W), ``hwc``, ``tokens``, ``seq``, ``vector``; empty for
    #: AlexNet's, whose shape says it. Not part of equality: the layer and the
    #: model fix it.
    kind: str = field(default="", compare=False)
    #: The layer's position in the network, for ordering (-1 where the module
    #: path says it, as AlexNet's ``features.N`` / ``classifier.N`` do).
    order: int = field(default=-1, compare=False)
    #: The dataset key of a shallower layer whose numbers this one repeated on
    #: the first batch extracted (the dataset attribute ``same_as``; empty where
    #: none did, or in caches older than the record). Not part of equality.
    same_as: str = field(default="", compare=False)

    @property
    def base(self) -> str:
        """The layer's name in featx: the layer, plus ``_avg``/``_max`` for
        pooled maps; the same for every view."""
        return self.layer if self.spatial == "none" else f"{self.layer}_{self.spatial}"

    @property
    def key(self) -> str:
        """Dataset name: :attr:`base`, plus ``@view`` for views but the centre."""
        return dataset_key(self.base, self.view)

    @property
    def dim(self) -> int:
        if self.spatial != "none":
            return self.shape[0] if self.kind in ("", "map") else self.shape[-1]
        return int(np.prod(self.shape))

    @property
    def depth(self) -> tuple[int, int]:
        """Position in the network, for ordering: :attr:`order`, or for
        AlexNet's module paths their place in the chain (features, then
        classifier)."""
        if self.order >= 0:
            return 0, self.order
        block, _, index = self.module_path.partition(".")
        order = {"features": 0, "avgpool": 1, "classifier": 2}.get(block, 3)
        return order, int(index) if index.isdigit() else 0


@dataclass
class Failure:
    path: str
    reason: str
    sha256: str = ""
    size: int = -1
    mtime_ns: int = -1


@dataclass(frozen=True)
class NotImage:
    """A file of the data folder that is no image (by its extension), a hidden
    file or a hidden folder: never an error, but recorded with its reason so
    that every entry of the folder is accounted for."""

    path: str
    reason: str


#: What the decoders said of each image, by path: Python warnings and the lines
#: C libraries wrote to stderr while it decoded (:func:`featx.images.quiet_decoding`).
Warnings = dict[str, list[str]]


@dataclass
class Rows:
    """The per-image columns of a cache."""

    paths: list[str]
    labels: np.ndarray
    sha256: list[str]
    size: np.ndarray
    mtime_ns: np.ndarray

    def __len__(self) -> int:
        return len(self.paths)

    def take(self, index) -> Rows:
        """The rows at ``index`` (a sequence of row numbers), in that order."""
        index = np.asarray(index, np.int64)
        return Rows(
            paths=[self.paths[i] for i in index],
            labels=np.asarray(self.labels)[index],
            sha256=[self.sha256[i] for i in index],
            size=np.asarray(self.size)[index],
            mtime_ns=np.asarray(self.mtime_ns)[index],
        )

    def failure(self, row: int, reason: str) -> Failure:
        """Row ``row`` as a :class:`Failure` with ``reason``."""
        return Failure(
            self.paths[row],
            reason,
            self.sha256[row],
            int(self.size[row]),
            int(self.mtime_ns[row]),
        )


def attr(doc: str, *, stored: str = "string", **kwargs):
    """A field of :class:`CacheMeta` or :class:`WeightsInfo`: ``doc`` says what
    its root attribute means and ``stored`` how it is stored; both are what
    :func:`featx.cache.describe_format` prints."""
    return field(metadata={"doc": doc, "stored": stored}, **kwargs)


@dataclass(frozen=True)
class WeightsInfo:
    """Which weights computed a cache's features (root attributes ``weights_*``)."""

    id: str = attr(
        "which weights: `torchvision:AlexNet_Weights.IMAGENET1K_V1`, "
        "`random(seed=N)` or `file:<name>`"
    )
    sha256: str = attr(
        "sha256 of the weights file (of the tensors, for random weights)"
    )
    pretrained: bool = attr("whether the weights were trained", stored="bool")
    source: str = attr("where the weights came from: a file, or how they were made")
    url: str = attr("where torchvision downloads them (torchvision's only)", default="")

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "sha256": self.sha256,
            "pretrained": self.pretrained,
            "source": self.source,
        }


def weights_spec(weights_id: str, source: str = "") -> tuple[str, int]:
    """The ``(weights, seed)`` for :func:`featx.model.load_weights` that
    rebuilds the weights recorded as ``weights_id`` (``source`` is the file of a
    ``file:`` id)."""
    if weights_id.startswith("random(seed="):
        return "random", int(weights_id[len("random(seed=") : -1])
    if weights_id.startswith("torchvision:"):
        return "imagenet", 0
    return source, 0


@dataclass(frozen=True)
class CacheMeta:
    """The root attributes of a cache, typed: what made its rows and how.

    :meth:`to_attrs` and :meth:`from_attrs` are the only code that knows how
    they are spelled in the file.
    """

    data_root: str = attr("the data folder the rows come from, absolute")
    classes: list[str] = attr(
        "class names, a JSON list; `/labels` holds indices into it", stored="JSON"
    )
    weights: WeightsInfo = field(metadata={"prefix": "weights_"})
    transform: dict = attr(
        "the preprocessing (decoder, resize, crop, mean, std), a JSON object",
        stored="JSON",
    )
    transform_repr: str = attr(
        "the preprocessing as torchvision prints it, for people", default=""
    )
    featx_version: str = attr("the featx that wrote the file", default="")
    torch_version: str = attr("the torch that computed the features", default="")
    torchvision_version: str = attr("the torchvision beside it", default="")
    updated: str = attr("when the file was last written (ISO 8601)", default="")
    labelling: str = attr(
        "how the labels were made: `folders` (class subfolders), `none`, "
        "`csv <file> sha256 <hex>` or `name <regex>`",
        default="folders",
    )
    model: str = attr(
        "the architecture (`featx layers` lists them); caches written before "
        "featx knew two have none and are `alexnet`",
        default="alexnet",
    )

    @classmethod
    def attributes(cls) -> list[tuple[str, str, str]]:
        """``(name, stored as, meaning)`` of every root attribute
        :meth:`to_attrs` writes, from the fields' descriptions."""
        out = []
        for f in fields(cls):
            if "prefix" in f.metadata:
                out += [
                    (
                        f.metadata["prefix"] + w.name,
                        w.metadata.get("stored", ""),
                        w.metadata.get("doc", ""),
                    )
                    for w in fields(WeightsInfo)
                ]
            else:
                out.append(
                    (f.name, f.metadata.get("stored", ""), f.metadata.get("doc", ""))
                )
        return out

    @property
    def mean_file(self) -> str | None:
        """The mean image caffe-alexnet's input was centred with, if one was."""
        return (self.transform.get("mean_image") or {}).get("file")

    def to_attrs(self) -> dict:
        return {
            "model": self.model,
            "featx_version": self.featx_version,
            "torch_version": self.torch_version,
            "torchvision_version": self.torchvision_version,
            "classes": json.dumps(self.classes),
            "weights_id": self.weights.id,
            "weights_sha256": self.weights.sha256,
            "weights_pretrained": self.weights.pretrained,
            "weights_source": self.weights.source,
            "weights_url": self.weights.url,
            "transform": json.dumps(self.transform),
            "transform_repr": self.transform_repr,
            "data_root": self.data_root,
            "updated": self.updated,
            "labelling": self.labelling,
        }

    @classmethod
    def from_attrs(cls, attrs) -> CacheMeta:
        def text(key: str) -> str:
            value = attrs.get(key, "")
            return value.decode() if isinstance(value, bytes) else str(value)

        return cls(
            data_root=text("data_root"),
            classes=json.loads(text("classes") or "[]"),
            weights=WeightsInfo(
                id=text("weights_id"),
                sha256=text("weights_sha256"),
                pretrained=bool(attrs.get("weights_pretrained", False)),
                source=text("weights_source"),
                url=text("weights_url"),
            ),
            transform=json.loads(text("transform") or "{}"),
            transform_repr=text("transform_repr"),
            featx_version=text("featx_version"),
            torch_version=text("torch_version"),
            torchvision_version=text("torchvision_version"),
            updated=text("updated"),
            labelling=text("labelling") or "folders",
            model=text("model") or "alexnet",
        )

    def extract_flags(self) -> str:
        """The `featx extract` flags that rebuild this cache's model and weights
        (`` --model resnet18 --weights random --seed 0``)."""
        import shlex

        spec, seed = weights_spec(self.weights.id, self.weights.source)
        flags = "" if self.model == "alexnet" else f" --model {self.model}"
        if self.mean_file:
            flags += f" --mean {shlex.quote(self.mean_file)}"
        if spec == "random":
            return f"{flags} --weights random --seed {seed}"
        return f"{flags} --weights {shlex.quote(spec)}"

    def same_source(self, other: CacheMeta) -> bool:
        """Whether rows of both caches come from the same weights and preprocessing."""
        return (
            self.model == other.model
            and self.weights.sha256 == other.weights.sha256
            and self.transform == other.transform
        )


@dataclass
class CacheState:
    """What an existing cache file holds, short of the features themselves."""

    path: Path
    attrs: dict
    rows: Rows
    layers: dict[str, LayerDef]
    done: dict[str, np.ndarray]
    failed: list[Failure] = field(default_factory=list)
    scanned_at_ns: int = 0
    #: Optional groups (caches written before them have none).
    not_images: list[NotImage] = field(default_factory=list)
    warnings: Warnings = field(default_factory=dict)

    @property
    def classes(self) -> list[str]:
        return json.loads(self.attrs.get("classes", "[]"))
