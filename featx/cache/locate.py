"""Finding caches: by path, name or folder, and the rule that says which folder
is the training one (:mod:`featx.cache.choice` chooses the caches when none was
named)."""

from __future__ import annotations

import os
import re
from pathlib import Path

from featx.cache.read import FeatureCache
from featx.cache.schema import CacheMeta
from featx.errors import CacheError, param

__all__ = [
    "HELD_OUT_NAME",
    "cache_of_folder",
    "default_cache_dir",
    "extract_hint",
    "folder_caches",
    "is_held_out_name",
    "list_caches",
    "missing_layer",
    "shown_dir",
    "training_folder",
]


def default_cache_dir() -> Path:
    return Path(os.environ.get("FEATX_CACHE_DIR") or "cache")


def list_caches(cache_dir: Path) -> list[Path]:
    cache_dir = Path(cache_dir)
    if not cache_dir.is_dir():
        return []
    return sorted(p for p in cache_dir.glob("*.h5") if p.is_file())


#: Folder names that mean a held-out split: never trained on by default.
HELD_OUT_NAME = re.compile(
    r"^(test|testing|val|valid|validation|holdout|held[-_ ]?out|eval)([-_ .]\w*)?$",
    re.IGNORECASE,
)


def is_held_out_name(folder: str) -> bool:
    """Whether a data folder's name says it is a held-out split (Test, Val, ...)."""
    return bool(HELD_OUT_NAME.match(Path(folder).name))


def shown_dir(folder: Path) -> str:
    """A folder as a user would type it: ``./cache`` rather than ``cache``."""
    text = str(folder)
    return text if Path(text).is_absolute() or text.startswith(".") else f"./{text}"


def _no_cache(cache_dir: Path, where: str) -> CacheError:
    why = (
        "no featx cache file (*.h5) there"
        if cache_dir.is_dir()
        else "that folder does not exist"
    )
    return CacheError(
        f"no cache in {where}: {why}; run `featx extract DATA_DIR --layer fc7` "
        f"first, or point {param('cache_dir')} / FEATX_CACHE_DIR at your caches"
    )


def cache_of_folder(
    folder: Path,
    cache_dir: Path,
    like: CacheMeta | None = None,
    *,
    model: str | None = None,
    layer: str | None = None,
) -> Path:
    """The cache of the data folder ``folder`` (made with the same weights and
    preprocessing as ``like``, with ``model``, holding ``layer``, when given),
    the most recent if several."""
    root = str(Path(folder).resolve())
    mine, found = {}, []
    for path in list_caches(cache_dir):
        with FeatureCache(path) as cache:
            if cache.meta.data_root != root:
                continue
            mine[path] = (cache.meta.model, list(cache.layers))
            if (
                (like is None or cache.meta.same_source(like))
                and (model is None or cache.meta.model == model)
                and (layer is None or layer in cache.layers)
            ):
                found.append(path)
    if not found and mine and (model is not None or layer is not None):
        wanted = " and ".join(
            w
            for w in (
                f"made with {model}" if model else "",
                f"holding {layer}" if layer else "",
            )
            if w
        )
        listed = "; ".join(
            f"{p.name} ({m}): {', '.join(layers) or 'no layer'}"
            for p, (m, layers) in mine.items()
        )
        metas = []
        for path in sorted(mine, key=_mtime, reverse=True):
            with FeatureCache(path) as cache:
                metas.append(cache.meta)
        raise CacheError(
            f"no cache of {folder} in {cache_dir} {wanted}: {listed}; "
            + extract_hint(str(folder), layer, metas, model=model)
        )
    if not found:
        raise CacheError(
            f"{folder} is a folder with no cache in {cache_dir}"
            + (" made with the same weights" if like is not None else "")
            + f"; run `featx extract {folder} --layer LAYER` first"
        )
    return max(found, key=_mtime)


def folder_caches(
    folder: Path, cache_dir: Path, layer: str | None = None
) -> dict[Path, str]:
    """Every cache of the data folder ``folder`` in ``cache_dir`` (holding
    ``layer``, when given), with the network it was made with."""
    root = str(Path(folder).resolve())
    found = {}
    for path in list_caches(cache_dir):
        with FeatureCache(path) as cache:
            if cache.meta.data_root == root and (
                layer is None or layer in cache.layers
            ):
                found[path] = cache.meta.model
    return found


def extract_hint(
    folder: str, layer: str | None, metas: list[CacheMeta], *, model: str | None
) -> str:
    """A `featx extract` command that makes ``layer`` of ``folder`` with the
    weights of one of ``metas`` (caches of it, most recent first) whose network
    has that layer (``model``'s, when given): a hint that runs as printed. With
    no such network, how to list each network's layers instead."""
    from featx.errors import FeatxError

    layer = layer or "LAYER"
    base, _, pooled = layer.rpartition("_")
    spelled = (
        f"--layer {base} --spatial {pooled}"
        if base and pooled in ("avg", "max")
        else f"--layer {layer}"
    )
    name = base if base and pooled in ("avg", "max") else layer
    like = [m for m in metas if model is None or m.model == model]
    models = [m.model for m in like] or [model or "alexnet"]
    for meta_model in dict.fromkeys(models):
        try:
            from featx.model import resolve_layers

            resolve_layers([name], meta_model)
        except (FeatxError, ImportError):
            continue
        flags = next(
            (m.extract_flags() for m in like if m.model == meta_model),
            "" if meta_model == "alexnet" else f" --model {meta_model}",
        )
        return f"run `featx extract {folder} {spelled}{flags}` first"
    return (
        f"{layer} is no layer of {', '.join(dict.fromkeys(models))}: "
        f"`featx layers --model {models[0]}` lists them"
    )


def training_folder(
    caches: list[Path], metas: dict, where: str, how: str = "--cache"
) -> tuple[str, str]:
    """The data folder to train on when no cache was named, and why.

    The rule: folders named like a held-out split (Test, Val, ...) are never
    trained on; of the others, the only one, or else the only one with a
    held-out sibling folder (``data/Test`` beside ``data/Train``) that has a
    cache too. Anything else is ambiguous: :class:`CacheError` lists the
    folders, and ``how`` (``--cache``) names one. Which folder was extracted
    last plays no part, so extracting a scratch folder never changes it.
    """
    folders: dict[str, list[Path]] = {}
    for path in caches:
        folders.setdefault(metas[path].data_root, []).append(path)
    training = [f for f in folders if not is_held_out_name(f)]
    if not training:
        names = ", ".join(p.name for p in caches)
        raise CacheError(
            f"every cache in {where} is of a held-out folder; choose the "
            f"training cache with {how}: {names}"
        )
    if len(training) == 1:
        return training[0], f"the only training folder in {where}"
    roots = [m.data_root for m in metas.values()]
    paired = [
        f
        for f in training
        if any(is_held_out_name(r) and Path(r).parent == Path(f).parent for r in roots)
    ]
    if len(paired) == 1:
        return paired[0], (
            f"the only one of {len(training)} training folders in {where} with a "
            "held-out sibling (Test, Val, ...)"
        )
    some = 0 < len(paired) < len(training)
    listed = "; ".join(
        f"{f} ({', '.join(p.name for p in sorted(folders[f]))})"
        + (" with a held-out sibling" if some and f in paired else "")
        for f in sorted(training)
    )
    how_many = "none" if not paired else f"{len(paired)}" if some else "each"
    raise CacheError(
        f"{len(training)} folders have training caches in {where}, {how_many} "
        f"with a held-out sibling (Test, Val, ...): {listed}; {how} chooses one"
    )


def missing_layer(cache: FeatureCache, layer: str) -> CacheError:
    """The error for ``layer`` missing from ``cache``: its layers, and an
    extract command that makes it with the cache's network, where the network
    has it (or how to list the layers the network has)."""
    meta = cache.meta
    have = ", ".join(cache.layers) or "none"
    hint = extract_hint(meta.data_root or "DATA_DIR", layer, [meta], model=meta.model)
    return CacheError(
        f"layer {layer!r} is not in {cache.path.name} (it has: {have}); {hint}"
    )


def _mtime(path: Path) -> int:
    return path.stat().st_mtime_ns
