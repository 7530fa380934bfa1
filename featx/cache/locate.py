"""Finding caches: by path, name or folder, or choosing one when none was named."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
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


@dataclass
class CacheChoice:
    """The caches a command chose when none was named, and why."""

    train: Path
    test: Path | None = None
    notes: list[str] = field(default_factory=list)


def _labelled(path: Path) -> bool:
    with FeatureCache(path) as cache:
        return bool(cache.classes)


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


def choose_caches(
    cache_dir: Path | None = None,
    *,
    find_test: bool = True,
    how: str = "--cache",
    verb: str = "training on",
):
    """The training cache (and a held-out one) to use when none was named.

    Training: the only cache, or else the most recently written one whose data
    folder is not named like a held-out split (Test, Val, Valid, ...). Held out:
    a cache of a sibling folder named like a split, made with the same weights
    and preprocessing. The notes say which was chosen (``verb`` it), and that
    ``how`` (the command's way of naming a cache) chooses another.
    """
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    caches = list_caches(cache_dir)
    where = shown_dir(cache_dir)
    if not caches:
        raise _no_cache(cache_dir, where)
    metas = {}
    for path in caches:
        with FeatureCache(path) as cache:
            metas[path] = cache.meta
    if len(caches) == 1:
        train = caches[0]
        notes = [
            f"{verb} {train.name} ({metas[train].data_root}), the only cache in "
            f"{where}; {how} chooses another"
        ]
    else:
        candidates = [p for p in caches if not is_held_out_name(metas[p].data_root)]
        if not candidates:
            names = ", ".join(p.name for p in caches)
            raise CacheError(
                f"every cache in {cache_dir} is of a held-out folder; choose the "
                f"training cache with --cache: {names}"
            )
        train = max(candidates, key=lambda p: p.stat().st_mtime_ns)
        notes = [
            f"{verb} {train.name} ({metas[train].data_root}), the most recent "
            f"of {len(candidates)} training cache(s) in {where}; {how} chooses "
            "another"
        ]
    choice = CacheChoice(train, None, notes)
    if find_test:
        choice.test = _sibling_test(train, metas)
    if choice.test is not None:
        choice.notes.append(
            f"held-out set: {choice.test.name} ({metas[choice.test].data_root}), "
            "a sibling folder extracted with the same weights; --test chooses "
            "another"
        )
    return choice


def _sibling_test(train: Path, metas: dict) -> Path | None:
    """The most recent cache of a labelled sibling folder of ``train``'s that is
    named like a held-out split and made with the same weights, if any."""
    parent = Path(metas[train].data_root).parent
    tests = [
        p
        for p in metas
        if p != train
        and Path(metas[p].data_root).parent == parent
        and is_held_out_name(metas[p].data_root)
        and metas[p].same_source(metas[train])
        and _labelled(p)
    ]
    return max(tests, key=lambda p: p.stat().st_mtime_ns) if tests else None


def resolve_caches(
    cache: str | Path | None, test: str | Path | None, cache_dir: Path | None
) -> CacheChoice:
    """The training and held-out caches a command was given, or, where it was
    given none, the ones :func:`choose_caches` chooses (with its notes)."""
    if cache is not None:
        choice = CacheChoice(resolve_cache(cache, cache_dir))
    else:
        choice = choose_caches(cache_dir, find_test=test is None)
    if test is not None:
        choice.test = resolve_cache(test, cache_dir)
    return choice


def resolve_cache(name: str | Path | None, cache_dir: Path | None = None) -> Path:
    """Find a cache by path, file name, or unique prefix in the cache directory.

    With no name, :func:`choose_caches` chooses the training cache.
    """
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    caches = list_caches(cache_dir)
    if name is None:
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
    return max(found, key=lambda p: p.stat().st_mtime_ns)
