"""Finding caches: by path, name or folder (:mod:`featx.cache.choice` chooses
them when none was named)."""

from __future__ import annotations

import os
import re
from pathlib import Path

from featx.cache.read import FeatureCache
from featx.cache.schema import CacheMeta
from featx.errors import CacheError


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
        "first, or point --cache-dir / FEATX_CACHE_DIR at your caches"
    )


def resolve_cache(name: str | Path | None, cache_dir: Path | None = None) -> Path:
    """Find a cache by path, file name, or unique prefix in the cache directory.

    With no name, :func:`choose_caches` chooses the training cache.
    """
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    caches = list_caches(cache_dir)
    if name is None:
        from featx.cache.choice import choose_caches

        return choose_caches(cache_dir, find_test=False).train
    candidate = Path(name)
    if candidate.is_file():
        return candidate
    if candidate.is_dir():
        return cache_of_folder(candidate, cache_dir)
    matches = [p for p in caches if p.name == str(name) or p.stem == str(name)]
    matches = matches or [p for p in caches if p.name.startswith(str(name))]
    if len(matches) == 1:
        return matches[0]
    names = ", ".join(p.name for p in caches) or "none"
    what = "matches several caches" if matches else "is not a cache file or name"
    raise CacheError(f"{name!r} {what} in {cache_dir}; caches there: {names}")


def cache_of_folder(
    folder: Path, cache_dir: Path, like: CacheMeta | None = None
) -> Path:
    """The cache of the data folder ``folder`` (made with the same weights and
    preprocessing as ``like``, when given), the most recent if several."""
    root = str(Path(folder).resolve())
    found = []
    for path in list_caches(cache_dir):
        with FeatureCache(path) as cache:
            if cache.meta.data_root == root and (
                like is None or cache.meta.same_source(like)
            ):
                found.append(path)
    if not found:
        raise CacheError(
            f"{folder} is a folder with no cache in {cache_dir}"
            + (" made with the same weights" if like is not None else "")
            + f"; run `featx extract {folder} --layer LAYER` first"
        )
    return max(found, key=_mtime)


def _mtime(path: Path) -> int:
    return path.stat().st_mtime_ns
