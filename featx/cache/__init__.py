"""The HDF5 feature cache: layout, crash-safe writes, locking and reading.

One module per concern, all re-exported here (``from featx.cache import X``):

- :mod:`~featx.cache.schema`: the types a cache is made of, and :class:`CacheMeta`,
  the root attributes;
- :mod:`~featx.cache.layout`: the groups and datasets of a file, and
  :func:`describe_format`, the format's reference generated from both;
- :mod:`~featx.cache.format`: opening a file and checking it is a readable cache;
- :mod:`~featx.cache.read`: :class:`FeatureCache` and :func:`read_layer`;
- :mod:`~featx.cache.write`: atomic rewrites and in-place fills;
  :mod:`~featx.cache.space`: disk space; :mod:`~featx.cache.lock`: one writer;
- :mod:`~featx.cache.locate`: finding a cache; :mod:`~featx.cache.choice`:
  choosing the caches a command reads (one per model to compare);
  :mod:`~featx.cache.info`: a summary of one.

Beside them, imported only by those who need them: :mod:`~featx.cache.identity`
(which file holds which inputs), :mod:`~featx.cache.reconcile` (bringing a cache
in line with its folder) and :mod:`~featx.cache.export` (features to npz, csv,
parquet). Nothing here imports torch: ``fit``, ``report`` and ``info`` read
caches without it.
"""

from featx.cache.choice import (
    CacheChoice,
    ModelCaches,
    choose_caches,
    resolve_cache,
    resolve_caches,
)
from featx.cache.format import (
    DAMAGED_MESSAGE,
    FAILED,
    READ_ERRORS,
    READER_MESSAGE,
    REQUIRED,
    damaged,
    reading,
)
from featx.cache.info import cache_info
from featx.cache.layout import DATASETS, ROOT_ATTRS, describe_format
from featx.cache.locate import (
    HELD_OUT_NAME,
    cache_of_folder,
    default_cache_dir,
    is_held_out_name,
    list_caches,
)
from featx.cache.lock import BUSY_MESSAGE, cache_lock, remove_stale_temporaries
from featx.cache.read import (
    READ_BLOCK_BYTES,
    FeatureCache,
    LayerData,
    read_done,
    read_layer,
    read_state,
    read_warnings,
)
from featx.cache.schema import (
    FORMAT_VERSION,
    MAX_ABS,
    STR,
    CacheMeta,
    CacheState,
    Failure,
    LayerDef,
    NotImage,
    Rows,
    Warnings,
    WeightsInfo,
    weights_spec,
)
from featx.cache.space import (
    check_free,
    disk_full_as_error,
    is_no_space,
    no_space,
    reserve,
)
from featx.cache.write import (
    COPY_BLOCK_BYTES,
    FILL_CACHE_BYTES,
    BackgroundWriter,
    CacheFiller,
    record_parity,
    write_cache,
)
from featx.errors import (
    CacheBusyError,
    CacheDamagedError,
    CacheError,
    NoSpaceError,
    ReadOnlyError,
)

__all__ = [
    "record_parity",
    "BUSY_MESSAGE",
    "COPY_BLOCK_BYTES",
    "DAMAGED_MESSAGE",
    "DATASETS",
    "FAILED",
    "FILL_CACHE_BYTES",
    "FORMAT_VERSION",
    "HELD_OUT_NAME",
    "MAX_ABS",
    "READER_MESSAGE",
    "READ_BLOCK_BYTES",
    "READ_ERRORS",
    "REQUIRED",
    "ROOT_ATTRS",
    "STR",
    "BackgroundWriter",
    "CacheBusyError",
    "CacheChoice",
    "CacheDamagedError",
    "CacheError",
    "CacheFiller",
    "CacheMeta",
    "CacheState",
    "Failure",
    "FeatureCache",
    "LayerData",
    "LayerDef",
    "ModelCaches",
    "NoSpaceError",
    "NotImage",
    "ReadOnlyError",
    "Rows",
    "Warnings",
    "WeightsInfo",
    "cache_info",
    "cache_lock",
    "cache_of_folder",
    "check_free",
    "choose_caches",
    "damaged",
    "default_cache_dir",
    "describe_format",
    "disk_full_as_error",
    "is_held_out_name",
    "is_no_space",
    "list_caches",
    "no_space",
    "read_done",
    "read_layer",
    "read_state",
    "read_warnings",
    "reading",
    "remove_stale_temporaries",
    "reserve",
    "resolve_cache",
    "resolve_caches",
    "weights_spec",
    "write_cache",
]
