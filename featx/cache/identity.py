"""Which cache file holds the features of which inputs, and what it records.

A cache is named after its data folder and identified by a hash of the folder,
the model, the weights (sha256) and the preprocessing: changing any of them is a
new cache.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING

from featx import __version__
from featx.cache.schema import CacheMeta, WeightsInfo

if TYPE_CHECKING:
    from featx.images import ImageSet, Preprocess
    from featx.model import LoadedWeights

__all__ = ["cache_identity", "cache_meta", "cache_path_for", "model_file_tag"]


def model_file_tag(model: str) -> str:
    """A model's name as it stands in file names: characters outside
    ``[A-Za-z0-9._-]`` replaced (``timm:resnet18`` becomes ``timm-resnet18``)."""
    return re.sub(r"[^A-Za-z0-9._-]", "-", model)


def cache_identity(
    data_root: Path, weights: LoadedWeights, preprocess: Preprocess
) -> str:
    parts = {
        "data_root": str(data_root),
        "weights_sha256": weights.sha256,
        "transform": preprocess.describe(),
    }
    if weights.arch != "alexnet":  # torchvision's caches keep their names
        parts["model"] = weights.arch
    blob = json.dumps(parts, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:10]


def cache_path_for(
    cache_dir: Path, data_root: Path, weights: LoadedWeights, preprocess: Preprocess
) -> Path:
    """One file per (data folder, weights, preprocessing)."""
    tag = (
        "imagenet"
        if weights.weights_id.startswith(("torchvision:", "timm:"))
        else "random"
        if not weights.pretrained
        else "file"
    )
    if weights.arch != "alexnet":
        tag = f"{model_file_tag(weights.arch)}-{tag}"
    stem = "".join(c if c.isalnum() or c in "-_" else "_" for c in data_root.name)
    ident = cache_identity(data_root, weights, preprocess)
    return Path(cache_dir) / f"{stem or 'data'}-{tag}-{ident}.h5"


def cache_meta(
    images: ImageSet, weights: LoadedWeights, preprocess: Preprocess
) -> CacheMeta:
    """The provenance a cache of ``images`` records."""
    # Here, not at the top: only extraction (which has torch loaded) calls this,
    # and importing featx.cache must not import torch.
    import torch
    import torchvision

    from featx.model import backbone

    net_def = backbone(weights.arch)
    is_hub = bool(net_def.imagenet_id) and weights.weights_id == net_def.imagenet_id
    return CacheMeta(
        data_root=str(images.root),
        classes=list(images.classes),
        weights=WeightsInfo(
            id=weights.weights_id,
            sha256=weights.sha256,
            pretrained=weights.pretrained,
            source=weights.source,
            url=net_def.url if is_hub else "",
        ),
        transform=preprocess.describe(),
        transform_repr=repr(preprocess),
        featx_version=__version__,
        torch_version=str(torch.__version__),
        torchvision_version=str(torchvision.__version__),
        updated=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        labelling=images.labelling,
        model=weights.arch,
    )
