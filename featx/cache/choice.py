"""Choosing the caches a command reads when none was named: the training cache,
its held-out sibling, and, where its folder was extracted with several models,
one cache of each model to compare."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from featx.cache.locate import (
    _mtime,
    _no_cache,
    cache_of_folder,
    default_cache_dir,
    extract_hint,
    is_held_out_name,
    list_caches,
    shown_dir,
    training_folder,
)
from featx.cache.read import FeatureCache
from featx.cache.schema import CacheMeta
from featx.errors import CacheError

__all__ = [
    "CacheChoice",
    "ModelCaches",
    "choose_caches",
    "held_out_notes",
    "resolve_cache",
    "resolve_caches",
]


@dataclass
class ModelCaches:
    """One model's caches in a comparison of models: its training cache and
    the held-out cache scored with it (None without one)."""

    model: str
    train: Path
    test: Path | None = None


@dataclass
class CacheChoice:
    """The caches a command chose when none was named, and why."""

    train: Path
    test: Path | None = None
    notes: list[str] = field(default_factory=list)
    #: With caches of ``train``'s folder made with several models: each model's
    #: caches, in the order they are compared (``train`` and ``test`` are among
    #: them). Empty with one model.
    models: list[ModelCaches] = field(default_factory=list)
    #: Why ``train``'s folder was chosen (``the only training folder in
    #: ./cache``); empty where a cache was named or was the only one.
    why: str = ""


def _labelled(path: Path) -> bool:
    with FeatureCache(path) as cache:
        return bool(cache.classes)


def _metas(caches: list[Path]) -> dict[Path, CacheMeta]:
    metas = {}
    for path in caches:
        with FeatureCache(path) as cache:
            metas[path] = cache.meta
    return metas


def choose_caches(
    cache_dir: Path | None = None,
    *,
    find_test: bool = True,
    how: str = "--cache",
    verb: str = "training on",
    models: list[str] | None = None,
    layer: str | None = None,
):
    """The training cache (and a held-out one) to use when none was named.

    Training: the only cache, or else the most recently written cache of the
    training folder :func:`training_folder` chooses (never one named like a
    held-out split: Test, Val, Valid, ...); with ``models``, only caches made
    with one of them count, and with ``layer``, only caches holding it. Held
    out: a cache of a sibling folder named like a split, made with the same
    weights and preprocessing. The notes say which was chosen (``verb`` it),
    and that ``how`` (the command's way of naming a cache) chooses another.
    """
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    metas = _metas(list_caches(cache_dir))
    choice = _choose_train(
        cache_dir, metas, how=how, verb=verb, models=models, layer=layer
    )
    if find_test:
        choice.test = _sibling_test(choice.train, metas)
        choice.notes += _held_out_notes([choice], metas)
    return choice


def _choose_train(
    cache_dir: Path,
    metas: dict,
    *,
    how: str,
    verb: str,
    models: list[str] | None,
    layer: str | None = None,
) -> CacheChoice:
    """:func:`choose_caches`' training cache and its note (:func:`training_folder`
    says the rule); with ``layer``, only caches holding that layer count."""
    where = shown_dir(cache_dir)
    if not metas:
        raise _no_cache(cache_dir, where)
    caches = list(metas)
    if models:
        caches = [p for p in caches if metas[p].model in models]
        if not caches:
            made = ", ".join(sorted({m.model for m in metas.values()}))
            raise CacheError(
                f"no cache in {where} was made with {', '.join(models)}; "
                f"its caches are of {made}"
            )
        where += f" made with {', '.join(models)}"
    if layer is not None:
        have = _with_layer(caches, metas, layer, where, how)
        if len(have) < len(caches):
            where += f" with {layer}"
        caches = have
    if len(caches) == 1:
        train = caches[0]
        note = (
            f"{verb} {train.name} ({metas[train].data_root}), the only cache in "
            f"{where}; {how} chooses another"
        )
        return CacheChoice(train, None, [note])
    root, why = training_folder(caches, metas, where, how)
    mine = [p for p in caches if metas[p].data_root == root]
    train = max(mine, key=_mtime)
    which = f"the most recent of its {len(mine)} caches, " if len(mine) > 1 else ""
    note = f"{verb} {train.name} ({root}), {which}{why}; {how} chooses another"
    return CacheChoice(train, None, [note], why=why)


def _with_layer(caches: list[Path], metas: dict, layer: str, where: str, how: str):
    """The caches holding ``layer``; none: an error naming the layers there."""
    held = {}
    for path in caches:
        with FeatureCache(path) as cache:
            held[path] = list(cache.layers)
    have = [p for p in caches if layer in held[p]]
    if not have:
        listed = "; ".join(
            f"{p.name} ({metas[p].model}): {', '.join(held[p]) or 'no layer'}"
            for p in caches
        )
        latest = sorted(caches, key=_mtime, reverse=True)
        hint = extract_hint(
            metas[latest[0]].data_root or "DATA_DIR",
            layer,
            [
                metas[p]
                for p in latest
                if metas[p].data_root == metas[latest[0]].data_root
            ],
            model=None,
        )
        raise CacheError(f"no cache in {where} holds {layer}: {listed}; {hint}")
    return have


def _held_out_notes(entries: list, metas: dict) -> list[str]:
    """What :func:`_sibling_test` found for each model's training cache
    (``entries``: :class:`CacheChoice` or :class:`ModelCaches`)."""
    found = [e for e in entries if e.test is not None]
    if not found:
        return []
    if len(entries) == 1:
        test = found[0].test
        return [
            f"held-out set: {test.name} ({metas[test].data_root}), a sibling folder "
            "extracted with the same weights; --test chooses another"
        ]
    sets = ", ".join(f"{e.test.name} ({e.model})" for e in found)
    notes = [
        f"held-out sets: {sets}, of {metas[found[0].test].data_root}, extracted "
        "with each model's weights; --test chooses another"
    ]
    notes += [
        f"{e.model} has no cache of that held-out folder made with its weights: "
        "its rows have no test score"
        for e in entries
        if e.test is None
    ]
    return notes


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
    return max(tests, key=_mtime) if tests else None


def resolve_cache(
    name: str | Path | None,
    cache_dir: Path | None = None,
    *,
    model: str | None = None,
    layer: str | None = None,
) -> Path:
    """Find a cache by path, file name, or unique prefix in the cache directory.

    With no name, :func:`choose_caches` chooses the training cache. A data
    folder's cache is its most recent one made with ``model`` and holding
    ``layer``, where they are given.
    """
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    caches = list_caches(cache_dir)
    if name is None:
        return choose_caches(cache_dir, find_test=False).train
    candidate = Path(name)
    if candidate.is_file():
        return candidate
    if candidate.is_dir():
        return cache_of_folder(candidate, cache_dir, model=model, layer=layer)
    matches = [p for p in caches if p.name == str(name) or p.stem == str(name)]
    matches = matches or [p for p in caches if p.name.startswith(str(name))]
    if len(matches) == 1:
        return matches[0]
    names = ", ".join(p.name for p in caches) or "none"
    what = "matches several caches" if matches else "is not a cache file or name"
    raise CacheError(f"{name!r} {what} in {cache_dir}; caches there: {names}")


# Long: its docstring states the choosing rule; the code is 52 lines.
def resolve_caches(
    cache: str | Path | None,
    test: str | Path | None,
    cache_dir: Path | None,
    *,
    models: list[str] | None = None,
    find_test: bool = True,
) -> CacheChoice:
    """The training and held-out caches a command was given, or, where it was
    given none, the ones :func:`choose_caches` chooses (with its notes; no
    held-out sibling is looked for unless ``find_test``).

    With no ``cache``, or with ``models`` (a list of model names), the most
    recent cache of every model (of each of ``models``) made of the same images
    as the training cache is compared beside it: :attr:`CacheChoice.models`
    lists them when there are several, each with its held-out cache (``test``'s
    folder extracted with that model's weights, or a sibling folder's cache as
    :func:`choose_caches` finds one).
    """
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    if cache is not None and not models:
        choice = CacheChoice(resolve_cache(cache, cache_dir))
        if test is not None:
            choice.test = resolve_cache(test, cache_dir)
        return choice
    metas = _metas(list_caches(cache_dir))
    if cache is not None:
        choice = CacheChoice(resolve_cache(cache, cache_dir))
        metas.update(_metas([choice.train]))
    else:
        choice = _choose_train(
            cache_dir, metas, how="--cache", verb="training on", models=models
        )
    entries, notes = _compared_models(choice.train, metas, models)
    test_path = resolve_cache(test, cache_dir) if test is not None else None
    if test_path is not None:
        metas.update(_metas([test_path]))
    for entry in entries:
        if test_path is not None:
            # one model: the cache named, checked by the command as before
            entry.test = (
                test_path
                if len(entries) == 1
                else _test_of(entry, test_path, metas, cache_dir)
            )
        elif cache is None and find_test:
            entry.test = _sibling_test(entry.train, metas)
        if entry.train == choice.train:
            choice.test = entry.test
    if len(entries) > 1:
        choice.models = entries
        shown = ", ".join(f"{e.model} ({e.train.name})" for e in entries)
        # the folder's reason, not one cache's: every model's is used
        why = f", {choice.why}" if choice.why else ""
        choice.notes = [
            f"comparing {len(entries)} models on {metas[choice.train].data_root}"
            f"{why}: {shown}, the most recent cache of each; --models chooses "
            "fewer"
        ]
    choice.notes += notes
    if test_path is None:
        choice.notes += _held_out_notes(choice.models or [choice], metas)
    return choice


def held_out_notes(entries: list[ModelCaches]) -> list[str]:
    """The notes :func:`resolve_caches` writes on the held-out sibling caches
    it found for ``entries`` (after some were left out, say)."""
    metas = _metas([e.test for e in entries if e.test is not None])
    return _held_out_notes(entries, metas)


def _same_rows(a: Path, b: Path) -> bool:
    """Whether two caches hold the same images (by content), in the same order,
    with the same labels: then their fold scores pair."""
    with FeatureCache(a) as x, FeatureCache(b) as y:
        return (
            x.classes == y.classes
            and x.paths == y.paths
            and np.array_equal(x.sha256, y.sha256)
            and np.array_equal(x.labels, y.labels)
        )


def _compared_models(
    train: Path, metas: dict, models: list[str] | None
) -> tuple[list[ModelCaches], list[str]]:
    """The most recent cache of each model (of each of ``models``, in that
    order; else every model found, by name) made of ``train``'s folder, with
    ``train`` itself for its own model; and notes on the ones left out because
    their rows are not ``train``'s images."""
    own = metas[train].model
    if models and own not in models:
        raise CacheError(
            f"{train.name} was made with {own}, which --models "
            f"{','.join(models)} leaves out; add it, or drop --cache"
        )
    root = metas[train].data_root
    latest: dict[str, Path] = {own: train}
    for path in sorted(metas, key=_mtime, reverse=True):
        model = metas[path].model
        if metas[path].data_root == root and (not models or model in models):
            latest.setdefault(model, path)
    notes = []
    for model, path in list(latest.items()):
        if model == own or _same_rows(train, path):
            continue
        why = (
            f"{path.name} ({model}) holds other images of {root} than "
            f"{train.name}, so their fold scores would not pair"
        )
        if models:
            raise CacheError(f"{why}; extract it again or leave {model} out")
        notes.append(f"left out {why}; extract it again to compare {model}")
        del latest[model]
    missing = [m for m in models or () if m not in latest]
    if missing:
        made = ", ".join(latest)
        raise CacheError(
            f"no cache of {root} made with {', '.join(missing)}; its caches are "
            f"of {made}: run `featx extract {root} --model {missing[0]} "
            "--layer LAYER` first"
        )
    order = list(dict.fromkeys(models)) if models else sorted(latest)
    return [ModelCaches(m, latest[m]) for m in order], notes


def _test_of(entry: ModelCaches, test: Path, metas: dict, cache_dir: Path) -> Path:
    """The held-out cache of ``entry``'s model: ``test`` itself when it was
    made with the same weights, else the cache of ``test``'s folder that was."""
    like = metas[entry.train]
    if metas[test].same_source(like):
        return test
    folder = Path(metas[test].data_root)
    try:
        return cache_of_folder(folder, cache_dir, like=like)
    except CacheError as exc:
        raise CacheError(
            f"--test {test.name}: no cache of {folder} in {shown_dir(cache_dir)} "
            f"was made with {entry.model}'s weights (those of {entry.train.name}); "
            "extract that folder with them too"
        ) from exc
