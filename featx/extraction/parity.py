"""How far another runtime's (or int8's) features are from float32 torch's.

At the end of an extraction made by OpenVINO or ONNX Runtime, or in int8, each
stored layer is computed again on a sample of the cache's images with float32
torch, and the relative difference ‖a−b‖/‖b‖ of the stored values ``a`` from
torch's ``b`` is recorded on its dataset (``runtime_parity``).
"""

from __future__ import annotations

import copy

import numpy as np
import torch

from featx.cache import FeatureCache, LayerDef, record_parity
from featx.compute.forward import compute_batches
from featx.images import Preprocess

__all__ = [
    "PARITY_SAMPLE",
    "measured",
    "recorded_parity",
    "runtime_parity",
    "torch_twin",
]

#: Images the parity of a runtime with torch is measured on.
PARITY_SAMPLE = 32


def measured(preprocess: Preprocess) -> bool:
    """Whether features made with ``preprocess`` get their parity measured."""
    return preprocess.runtime != "torch" or preprocess.precision == "int8"


def torch_twin(preprocess: Preprocess) -> Preprocess:
    """``preprocess`` as float32 torch runs it (the same decoding)."""
    twin = copy.copy(preprocess)
    twin.runtime, twin.precision = "torch", "fp32"
    twin.calibration = twin.calibration_files = None
    return twin


def runtime_parity(run, *, sample: int = PARITY_SAMPLE) -> dict[str, float]:
    """Each layer of ``run`` (an :class:`featx.extraction.run.Run`) against
    float32 torch on ``sample`` of its cache's rows, evenly spread: ``{dataset:
    relative difference}``, also recorded in the cache."""
    wanted: list[LayerDef] = run.wanted
    with FeatureCache(run.path) as cache:
        done = np.logical_and.reduce([cache.done(w.key) for w in wanted])
        rows = np.flatnonzero(done)
        if not len(rows):
            return {}
        rows = rows[np.linspace(0, len(rows) - 1, min(sample, len(rows))).astype(int)]
        rows = np.unique(rows)
        paths = cache.paths
        stored = {w.key: cache.read(w.key, rows=rows) for w in wanted}
    batches = compute_batches(
        files=[run.images.root / paths[r] for r in rows],
        rows=list(range(len(rows))),
        wanted=wanted,
        loaded=run.loaded,
        preprocess=torch_twin(run.preprocess),
        device=torch.device("cpu"),
        batch_size=len(rows),
        num_workers=0,
    )
    got: dict[str, list] = {w.key: [] for w in wanted}
    kept: list[np.ndarray] = []
    for idx, values, _ in batches:
        kept.append(idx)
        for key in got:
            got[key].append(values[key])
    if not kept or not len(np.concatenate(kept)):
        return {}
    keep = np.concatenate(kept)
    parity = {}
    for key, parts in got.items():
        ref = np.concatenate(parts).astype(np.float64)
        ours = stored[key][keep].astype(np.float64)
        norm = np.linalg.norm(ref)
        parity[key] = float(np.linalg.norm(ours - ref) / norm) if norm else 0.0
    record_parity(run.path, parity)
    return parity


def recorded_parity(path, keys) -> dict[str, float]:
    """The parity an earlier run recorded for the datasets ``keys``."""
    with FeatureCache(path) as cache:
        attrs = {key: cache.dataset(key).attrs for key in keys}
        return {
            k: float(a["runtime_parity"])
            for k, a in attrs.items()
            if "runtime_parity" in a
        }
