"""Where a report's data and weights came from, and the commands that redo it."""

from __future__ import annotations

import importlib.metadata
import platform
import shlex
import time
from pathlib import Path

import sklearn

import pipelines
from featx import __version__
from featx.cache import CacheMeta, FeatureCache, cache_info
from featx.report.spec import ReportSpec

__all__ = ["extract_commands", "protocol", "provenance", "weights_flags"]


def weights_flags(meta: CacheMeta) -> str:
    """The `featx extract` flags that rebuild ``meta``'s model and weights."""
    return meta.extract_flags()


def extract_commands(
    meta: CacheMeta, layers: list[tuple[str, str]], cache_dir: Path | None = None
) -> list[str]:
    """`featx extract` commands that make ``layers`` ((name, spatial) pairs) in the
    cache described by ``meta``: one per spatial reduction."""
    by_spatial: dict[str, list[str]] = {}
    for name, spatial in layers:
        by_spatial.setdefault(spatial, []).append(name)
    root = shlex.quote(meta.data_root or "DATA_DIR")
    where = f" --cache-dir {shlex.quote(str(cache_dir))}" if cache_dir else ""
    return [
        f"featx extract {root} "
        + " ".join(f"--layer {n}" for n in names)
        + ("" if spatial == "none" else f" --spatial {spatial}")
        + weights_flags(meta)
        + where
        for spatial, names in by_spatial.items()
    ]


def protocol(spec: ReportSpec) -> str:
    """The cross-validation protocol, in words."""
    cv, seed, repeats = spec.cv, spec.seed, spec.repeats
    return (
        f"{cv}-fold stratified cross-validation, shuffled with seed {seed}"
        + (
            f", repeated {repeats} times (seeds {seed}–{seed + repeats - 1}); "
            if repeats > 1
            else "; "
        )
        + "features standardised; "
        + (
            f"each classifier's regularisation tuned by {pipelines.SEARCH}; "
            if spec.tune
            else "default regularisation; "
        )
        + "accuracy and macro-F1 on each held-out fold"
    )


def _extract_commands(infos: list[dict], layers: list[str], cache_dir) -> list[str]:
    commands = []
    for ci in infos:
        pairs = [
            (ci["layers"][key]["layer"], ci["layers"][key]["spatial"])
            for key in layers
            if key in ci["layers"]
        ]
        with FeatureCache(Path(ci["path"])) as cache:
            commands += extract_commands(cache.meta, pairs, cache_dir)
    return commands


# Long: one dict, built key by key as provenance.json spells it.
def provenance(spec: ReportSpec, sources: list | None = None) -> dict:
    """Where the data and weights came from, and the commands that redo it all;
    ``spec`` names the caches, layers and folders the report resolved, and
    ``sources`` (:class:`~featx.report.sources.Source`, one per model) each
    model's caches where several are compared: then ``models`` lists each
    one's caches and weights, and the commands rebuild every cache."""
    info = cache_info(spec.cache)
    test_info = cache_info(spec.test) if spec.test else None
    parts = [(info, test_info, spec.layers)]
    if sources and len(sources) > 1:
        parts = [
            (
                cache_info(s.train.path),
                cache_info(s.test) if s.test else None,
                s.layers,
            )
            for s in sources
        ]
    commands = [
        command
        for train, test, layers in parts
        for command in _extract_commands(
            [i for i in (train, test) if i], layers, spec.cache_dir
        )
    ]
    found = {
        "generated": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "data_root": info["data_root"],
        "cache": info["path"],
        "n_images": info["n_images"],
        "classes": info["classes"],
        "n_failed": info["n_failed"],
        "failed": info["failed"][:50],
        "test": None
        if test_info is None
        else {
            "data_root": test_info["data_root"],
            "cache": test_info["path"],
            "n_images": test_info["n_images"],
            "n_failed": test_info["n_failed"],
        },
        "model": info["model"],
        "weights": info["weights"],
        "versions": {
            "featx": __version__,
            # from the installed metadata: the report need not import torch
            "torch": importlib.metadata.version("torch"),
            "torchvision": importlib.metadata.version("torchvision"),
            "scikit-learn": sklearn.__version__,
            "python": platform.python_version(),
            "cache written by featx": info["versions"]["featx"],
        },
        "protocol": protocol(spec),
        "commands": [*commands, spec.command()],
    }
    if len(parts) > 1:
        found["models"] = [
            {
                "model": train["model"],
                "cache": train["path"],
                "weights": train["weights"],
                "test": test["path"] if test else None,
            }
            for train, test, _ in parts
        ]
    return found
