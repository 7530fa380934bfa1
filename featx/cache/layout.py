"""The layout of a cache file, declared once, and the reference made from it.

:data:`ROOT_ATTRS` comes from the fields of :class:`~featx.cache.CacheMeta`;
:data:`DATASETS` and :data:`FEATURE_ATTRS` declare what
:func:`featx.cache.write_cache` creates (a test holds the writer to them), and
:func:`describe_format` prints all three, so the documented format cannot drift
from the written one.
"""

from __future__ import annotations

from dataclasses import dataclass

from featx.cache.schema import FORMAT_VERSION, CacheMeta
from featx.images.views import ALL_VIEWS

__all__ = [
    "DATASETS",
    "Entry",
    "FEATURE_ATTRS",
    "OPTIONAL_FEATURE_ATTRS",
    "ROOT_ATTRS",
    "describe_format",
]


@dataclass(frozen=True)
class Entry:
    """One group or dataset of a cache file (``shape`` empty for a group)."""

    path: str
    shape: str
    dtype: str
    meaning: str


#: ``(name, stored as, meaning)`` of every root attribute.
ROOT_ATTRS: tuple[tuple[str, str, str], ...] = (
    (
        "featx_format",
        "integer",
        f"the format version ({FORMAT_VERSION}); a featx refuses a newer one",
    ),
    *CacheMeta.attributes(),
)

#: Every group and dataset the writer creates; ``<layer>`` is a layer's name in
#: featx (``fc7``, ``conv5_avg``), ``<view>`` a view but the centre.
DATASETS: tuple[Entry, ...] = (
    Entry(
        "/paths", "(N,)", "UTF-8", "each image, relative to `data_root`, `/`-separated"
    ),
    Entry("/labels", "(N,)", "int64", "class index into `classes`; -1 if unlabelled"),
    Entry("/sha256", "(N,)", "ASCII (64 bytes)", "hex sha256 of each image file"),
    Entry(
        "/size", "(N,)", "int64", "file size in bytes when hashed (skips re-hashing)"
    ),
    Entry("/mtime_ns", "(N,)", "int64", "file modification time (ns) when hashed"),
    Entry(
        "/scanned_at_ns",
        "(1,)",
        "int64",
        "when the folder was last scanned (a dataset: in-place runs update it)",
    ),
    Entry("/features", "", "group", "one dataset per layer and view"),
    Entry(
        "/features/<layer>",
        "(N, D)",
        "float32 or float16",
        "the layer's activations of the centre crop, one row per image, chunked",
    ),
    Entry(
        "/features/<layer>@<view>",
        "(N, D)",
        "float32 or float16",
        "the same for another view: " + ", ".join(f"`{v}`" for v in ALL_VIEWS[1:]),
    ),
    Entry("/done", "", "group", "one flag dataset per feature dataset"),
    Entry("/done/<layer>", "(N,)", "uint8", "1 where the row's features are computed"),
    Entry("/done/<layer>@<view>", "(N,)", "uint8", "the same for that view"),
    Entry("/failed", "", "group", "images that could not be read or decoded"),
    Entry("/failed/paths", "(M,)", "UTF-8", "each such file, relative to `data_root`"),
    Entry("/failed/reasons", "(M,)", "UTF-8", "why it failed, one line"),
    Entry("/failed/sha256", "(M,)", "ASCII (64 bytes)", "its sha256; empty if unread"),
    Entry("/failed/size", "(M,)", "int64", "its size in bytes; -1 if unknown"),
    Entry("/failed/mtime_ns", "(M,)", "int64", "its modification time; -1 if unknown"),
    Entry(
        "/not_images",
        "",
        "group",
        "files of the folder that are no image, as last listed (absent in "
        "older caches: read as none)",
    ),
    Entry(
        "/not_images/paths",
        "(K,)",
        "UTF-8",
        "each file (or hidden folder), relative to `data_root`",
    ),
    Entry(
        "/not_images/reasons",
        "(K,)",
        "UTF-8",
        "`not an image` (its extension is no format featx reads), `hidden file`, "
        "`hidden folder`",
    ),
    Entry(
        "/warnings",
        "",
        "group",
        "what the decoders said of images (absent in older caches: none)",
    ),
    Entry(
        "/warnings/paths",
        "(W,)",
        "UTF-8",
        "each image that decoded with warnings (a row or a failure)",
    ),
    Entry(
        "/warnings/messages",
        "(W,)",
        "UTF-8",
        "its Python warnings and C libraries' stderr lines, joined by newlines",
    ),
)

#: ``(name, stored as, meaning)`` of the attributes of every ``/features`` dataset.
FEATURE_ATTRS: tuple[tuple[str, str, str], ...] = (
    ("layer", "string", "the layer (`fc7`, `conv5`)"),
    ("module_path", "string", "its module in the network (`classifier.5`)"),
    ("shape", "int64 array", "its activation's shape before pooling (`[256, 13, 13]`)"),
    (
        "spatial",
        "string",
        "the reduction: `none`, `avg`, `max`, or `cls` (a ViT's class token)",
    ),
    ("view", "string", "the crop: `center` or another view (`flip`, `tl`, ...)"),
    (
        "kind",
        "string",
        "its layout, where the shape does not say it: `map` (C, H, W), `hwc`, "
        "`tokens` (class token first), `seq`, `vector`, `other` (absent for "
        "AlexNet's)",
    ),
    (
        "order",
        "int",
        "its position in the network, for ordering (absent for AlexNet's, "
        "whose module path says it)",
    ),
    (
        "same_as",
        "string",
        "the dataset of a shallower layer that held the same numbers on the first "
        "batch extracted (`layer4_avg` on resnet18's `avgpool_avg`); fit and report "
        "compare the two once (absent where none did, and in older caches)",
    ),
    (
        "runtime_parity",
        "float",
        "made by another runtime than torch or in int8: its relative difference "
        "(‖a−b‖/‖b‖) from float32 torch on a sample of 32 images (absent for "
        "torch's)",
    ),
)


#: The attributes of :data:`FEATURE_ATTRS` that only some datasets have.
OPTIONAL_FEATURE_ATTRS = ("kind", "order", "same_as", "runtime_parity")


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _table(header: tuple[str, ...], rows) -> str:
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
    ]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def describe_format() -> str:
    """The cache format as a Markdown fragment (no heading): a table of root
    attributes, one of groups and datasets, and one of feature attributes."""
    attrs = [(f"`{n}`", t, m) for n, t, m in ROOT_ATTRS]
    datasets = [(f"`{e.path}`", e.shape or "—", e.dtype, e.meaning) for e in DATASETS]
    feature_attrs = [(f"`{n}`", t, m) for n, t, m in FEATURE_ATTRS]
    return (
        "\n\n".join(
            [
                f"Cache format version {FORMAT_VERSION}. Root attributes:",
                _table(("Attribute", "Stored as", "Meaning"), attrs),
                "Groups and datasets (N images, M failed files, K files that are "
                "no image, W images decoded with warnings, D a layer's width):",
                _table(("Path", "Shape", "Type", "Meaning"), datasets),
                "Attributes of every dataset under `/features`:",
                _table(("Attribute", "Stored as", "Meaning"), feature_attrs),
            ]
        )
        + "\n"
    )
