"""featx.cache: the documented format is the written one, and the package's shape."""

from __future__ import annotations

import re
from dataclasses import fields

import h5py
import numpy as np
import pytest

import featx.cache
from featx import extract
from featx.cache import CacheMeta, WeightsInfo, describe_format
from featx.cache.layout import (
    DATASETS,
    FEATURE_ATTRS,
    OPTIONAL_FEATURE_ATTRS,
    ROOT_ATTRS,
)

SUBMODULES = (
    "schema",
    "format",
    "layout",
    "space",
    "lock",
    "write",
    "read",
    "locate",
    "info",
    "identity",
    "reconcile",
    "export",
)


@pytest.fixture
def written(image_folder, cache_dir):
    """A cache written by featx.extract: two layers, the centre and one view,
    and one file that fails to decode (so /failed has a row)."""
    (image_folder / "cats" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    result = extract(
        image_folder,
        layers=["fc7", "conv5"],
        spatial="avg",
        weights="random",
        cache_dir=cache_dir,
        num_workers=0,
        views="flip",
    )
    return result.cache_path


def _pattern(path: str) -> re.Pattern:
    """A documented path (``/features/<layer>@<view>``) as a regex of real ones."""
    text = re.escape(path.lstrip("/"))
    text = text.replace(re.escape("<layer>"), r"[^/@]+")
    return re.compile("^" + text.replace(re.escape("<view>"), r"[^/@]+") + "$")


def test_every_attribute_to_attrs_writes_is_described():
    meta = CacheMeta(
        data_root="/d",
        classes=["a"],
        weights=WeightsInfo(
            id="random(seed=0)", sha256="0", pretrained=False, source=""
        ),
        transform={},
    )
    documented = {name: doc for name, _, doc in ROOT_ATTRS}
    undescribed = set(meta.to_attrs()) - set(documented)
    assert not undescribed, f"to_attrs writes keys with no description: {undescribed}"
    assert set(documented) == set(meta.to_attrs()) | {"featx_format"}
    assert all(doc.strip() for doc in documented.values()), "a field has no doc"
    assert all(stored for _, stored, _ in ROOT_ATTRS)
    for cls in (CacheMeta, WeightsInfo):
        for f in fields(cls):
            assert f.metadata.get("doc") or f.metadata.get("prefix"), f.name


def _check_entry(entry, objects) -> None:
    """Every object matching ``entry`` is of its kind, dtype and rank."""
    found = [n for n in objects if _pattern(entry.path).match(n)]
    assert found, f"{entry.path} is documented but not in a written cache"
    for name in found:
        obj = objects[name]
        if entry.dtype == "group":
            assert isinstance(obj, h5py.Group), name
            continue
        assert isinstance(obj, h5py.Dataset), name
        if entry.dtype in ("int64", "uint8"):
            assert obj.dtype == np.dtype(entry.dtype), name
        assert obj.ndim == (1 if entry.shape.endswith(",)") else 2), name


def test_documented_format_is_the_written_one(written):
    with h5py.File(written, "r", locking=False) as f:
        assert set(f.attrs) == {name for name, _, _ in ROOT_ATTRS}
        objects: dict[str, h5py.HLObject] = {}
        f.visititems(lambda name, obj: objects.__setitem__(name, obj))
        assert f["failed/paths"].shape == (1,)
        assert "fc7@flip" in f["features"] and "conv5_avg" in f["features"]
        feature_attrs = {name for name, _, _ in FEATURE_ATTRS}
        required = feature_attrs - set(OPTIONAL_FEATURE_ATTRS)
        for key in f["features"]:  # AlexNet's layers: the shape says the layout
            assert set(f["features"][key].attrs) == required, key
        for entry in DATASETS:
            _check_entry(entry, objects)
        patterns = [_pattern(e.path) for e in DATASETS]
        undocumented = [n for n in objects if not any(p.match(n) for p in patterns)]
        assert not undocumented, f"written but not documented: {undocumented}"


def test_describe_format_is_markdown_of_every_declaration():
    text = describe_format()
    assert not text.lstrip().startswith("#")  # a fragment for a page's own heading
    for name, stored, _ in ROOT_ATTRS + FEATURE_ATTRS:
        assert f"| `{name}` | {stored} |" in text
    for entry in DATASETS:
        assert f"| `{entry.path}` |" in text
    assert "`/failed/size`" in text and "`/failed/mtime_ns`" in text
    assert len(re.findall(r"^\|(---\|)+$", text, re.MULTILINE)) == 3  # three tables


def test_cache_package_reexports_what_cache_py_gave():
    for name in (
        "FeatureCache",
        "LayerData",
        "read_layer",
        "read_state",
        "read_done",
        "cache_lock",
        "cache_info",
        "resolve_cache",
        "resolve_caches",
        "choose_caches",
        "cache_of_folder",
        "default_cache_dir",
        "weights_spec",
        "write_cache",
        "CacheFiller",
        "BackgroundWriter",
        "remove_stale_temporaries",
        "FORMAT_VERSION",
        "LayerDef",
        "CacheMeta",
        "CacheState",
        "Failure",
        "Rows",
        "describe_format",
    ):
        assert name in featx.cache.__all__ and hasattr(featx.cache, name), name
