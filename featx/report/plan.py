"""What a report fits: each model's training cache (a :class:`Source`), its
layers, and the classifiers fitted on each layer (:func:`variants`)."""

from __future__ import annotations

from contextlib import ExitStack

from featx.cache import CacheChoice, FeatureCache, ModelCaches
from featx.errors import FeatxError, Message, param
from featx.fit import has_head, is_head_layer
from featx.fit.compare import compared_once
from featx.images.views import CENTER, setting_of
from featx.report.provenance import extract_commands
from featx.report.sources import Source
from featx.report.spec import ReportSpec

__all__ = ["ReportError", "choose_layers", "open_sources", "plan_fits", "variants"]


class ReportError(FeatxError, ValueError):
    """A report that cannot be made as asked."""


def open_sources(
    choice: CacheChoice, wanted: list[str] | None, stack: ExitStack, notes: list[str]
) -> list[Source]:
    """Each model's training cache, opened on ``stack``, with its layers: the
    ``wanted`` ones it holds (a model holding none is left out, with a note;
    one that no model holds is an error), or every complete one."""
    entries = choice.models or [ModelCaches("", choice.train, choice.test)]
    sources = []
    for entry in entries:
        train = stack.enter_context(FeatureCache(entry.train))
        sources.append(Source(train.meta.model, train, entry.test, []))
    if len(sources) == 1 or not wanted:
        for source in sources:
            source.layers = choose_layers(source.train, wanted)
        return _once(sources, notes)
    nowhere = [w for w in wanted if all(w not in s.train.layers for s in sources)]
    if nowhere:  # the error says which extract makes them
        choose_layers(sources[0].train, nowhere)
    for source in sources:
        have = [w for w in wanted if w in source.train.layers]
        lacks = [w for w in wanted if w not in have]
        if lacks:
            notes.append(
                f"{source.model}'s cache {source.train.path.name} has no "
                f"{', '.join(lacks)}" + ("; it is left out" if not have else "")
            )
        source.layers = choose_layers(source.train, have) if have else []
    return _once([s for s in sources if s.layers], notes)


def _once(sources: list[Source], notes: list[str]) -> list[Source]:
    """Each source's layers, each compared once: a layer holding the same
    numbers as a shallower one is left out, with a note
    (:func:`featx.fit.compare.compared_once`)."""
    for source in sources:
        source.layers, said = compared_once(source.train, source.layers)
        notes += [f"{source.model}: {n}" if len(sources) > 1 else n for n in said]
    return sources


def plan_fits(sources: list[Source], spec: ReportSpec, notes: list[str]) -> dict:
    """What the report fits on each (model, layer): :func:`variants`; the head
    is AlexNet's, so it is left out of other models, with a note."""
    plan = {
        (source.model, layer): variants(
            source.train, layer, spec.clfs, spec.center_only
        )
        for source in sources
        for layer in source.layers
    }
    if "head" in spec.clfs:
        others = [s.model for s in sources if not has_head(s.model)]
        if others and len(others) < len(sources):
            notes.append(
                Message(
                    f"no head rows for {', '.join(others)}: "
                    f"{param('clfs', 'head')} fine-tunes AlexNet's fc6-fc8 on pool5"
                )
            )
    if not any(plan.values()):
        if not any(has_head(s.model) for s in sources):
            raise ReportError(
                f"{param('clfs', 'head')} fine-tunes AlexNet's fc6-fc8 on pool5, and "
                "the report's "
                f"caches are of {', '.join(s.model for s in sources)}; add another "
                "classifier"
            )
        raise ReportError(
            f"{param('clfs', 'head')} fine-tunes on pool5 alone, and no layer of "
            f"the report is pool5; add {param('layers', 'pool5')} or another "
            "classifier"
        )
    return plan


def choose_layers(cache: FeatureCache, wanted: list[str] | None) -> list[str]:
    """Requested layers (checked), or every complete layer, shallow to deep."""
    have = cache.layers
    if wanted:
        missing = [w for w in wanted if w not in have]
        if missing:
            pairs = []
            for name in missing:
                base, _, pooled = name.partition("_")
                pooled_ok = pooled in ("avg", "max")
                pairs.append(
                    (base if pooled_ok else name, pooled if pooled_ok else "none")
                )
            commands = "; ".join(extract_commands(cache.meta, pairs))
            raise ReportError(
                f"{cache.path.name} lacks {', '.join(missing)}; extract first: "
                f"{commands}"
            )
        for w in wanted:
            cache.dataset(w)
        layers = list(wanted)
    else:
        layers = cache.complete_layers()
        if not layers:
            raise ReportError(f"{cache.path.name} has no complete layer")
    return sorted(layers, key=lambda k: (have[k].depth, k))


def variants(
    cache: FeatureCache, layer: str, clfs: list[str], center_only: bool = False
) -> list[tuple[str, str | None]]:
    """What a report fits on ``layer``: each classifier on the centre crop,
    and where the cache holds more views of the layer, each but the head again
    on every view (the head fine-tunes on an AlexNet's pool5 only, and on the
    centre: ten views would cost ten times its fit)."""
    views = (CENTER,) if center_only else cache.views(layer)
    ldef = cache.layers[layer]
    setting = setting_of(views) if len(views) > 1 else None
    plan: list[tuple[str, str | None]] = []
    for clf in clfs:
        if clf == "head":
            if has_head(cache.meta.model) and is_head_layer(ldef):
                plan.append((clf, None))
            continue
        plan.append((clf, None))
        if setting and clf != "sgd":
            plan.append((clf, setting))
    return plan
