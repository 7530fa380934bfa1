"""Steps that join extraction to fitting, for commands given data folders.

``featx fit --test data/Test`` and ``featx report --test data/Test`` name a data
folder rather than a cache: :func:`held_out_cache` (now in
:mod:`featx.fit.heldout`, re-exported here) extracts the layers the training
cache has, made as the training cache was, and returns the held-out cache.
"""

from __future__ import annotations

from featx.fit.heldout import held_out_cache, held_out_caches

__all__ = ["held_out_cache", "held_out_caches"]
