"""Caches written by featx before the restructuring still load (tests/data/legacy)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from featx.cache import FeatureCache, cache_info, read_layer, resolve_caches
from featx.cli import main

LEGACY = Path(__file__).parent / "data" / "legacy"
TRAIN = "Train-random-12e3d9d749.h5"
TEST = "Test-random-f9a3db8164.h5"
CATS = "cats-random-edaae038ee.h5"
WEIGHTS_SHA256 = "bf49beddff211783b3141447d99939bd690e416ea13e0127c766e75b70a0d763"


@pytest.fixture
def legacy_caches(tmp_path: Path) -> Path:
    """A copy of the legacy caches (readers must never need to write them)."""
    cache_dir = tmp_path / "cache"
    cache_dir.mkdir()
    for name in (TRAIN, TEST, CATS):
        shutil.copy2(LEGACY / "cache" / name, cache_dir / name)
    return cache_dir


def test_legacy_train_cache_reads_layers_and_views(legacy_caches):
    with FeatureCache(legacy_caches / TRAIN) as cache:
        assert cache.n_rows == 12
        assert cache.classes == ["cats", "dogs"]
        assert cache.paths == [
            f"{c}/{i}.png" for c in ("cats", "dogs") for i in range(6)
        ]
        assert cache.labels.tolist() == [0] * 6 + [1] * 6
        assert sorted(cache.layers) == ["conv5_avg", "fc7"]
        assert sorted(cache.all_layers) == [
            "conv5_avg",
            "conv5_avg@flip",
            "fc7",
            "fc7@flip",
        ]
        assert cache.complete_layers() == ["conv5_avg", "fc7"]
        assert cache.views("fc7") == ("center", "flip")
        assert cache.views("conv5_avg") == ("center", "flip")
        fc7 = cache.read("fc7")
        flip = cache.read("fc7@flip")
        conv5 = cache.read("conv5_avg")
        both = cache.read_views("fc7", ("center", "flip"))
        layer = cache.layers["conv5_avg"]
        assert (layer.layer, layer.spatial, layer.module_path) == (
            "conv5",
            "avg",
            "features.11",
        )
        assert layer.shape == (256, 13, 13)
        assert cache.meta.labelling == "folders"
        assert cache.meta.model == "alexnet"
        assert cache.meta.weights.id == "random(seed=0)"
        assert cache.meta.weights.sha256 == WEIGHTS_SHA256
        assert not cache.meta.weights.pretrained
    assert fc7.shape == flip.shape == (12, 4096)
    assert conv5.shape == (12, 256)
    assert fc7.dtype == np.float32
    assert np.isfinite(fc7).all() and np.isfinite(conv5).all()
    assert not np.array_equal(fc7, flip)  # the mirror image is another input
    np.testing.assert_array_equal(both, np.hstack([fc7, flip]))
    # The legacy transformer's output is fc7 of the first two training images.
    np.testing.assert_array_equal(fc7[:2], np.load(LEGACY / "transformer_fc7.npy"))


def test_legacy_read_layer_and_unlabelled_cache(legacy_caches):
    features, labels, paths, classes = read_layer(legacy_caches / TEST, "fc7")
    assert features.shape == (4, 4096)
    assert labels.tolist() == [0, 0, 1, 1]
    assert paths == ["cats/0.png", "cats/1.png", "dogs/0.png", "dogs/1.png"]
    assert classes == ["cats", "dogs"]
    with FeatureCache(legacy_caches / CATS) as cache:
        assert cache.classes == []
        assert cache.labels.tolist() == [-1] * 6
        assert cache.meta.labelling == "none"
        assert sorted(cache.layers) == ["fc6", "fc7", "fc8", "pool5"]
        assert cache.read("pool5").shape == (6, 9216)
        assert cache.views("fc7") == ("center",)
        np.testing.assert_array_equal(
            cache.read("fc7")[:2], np.load(LEGACY / "transformer_fc7.npy")
        )


def test_legacy_cache_info(legacy_caches):
    info = cache_info(legacy_caches / TRAIN)
    assert info["format"] == 1
    assert info["n_images"] == 12
    assert info["data_root"] == "/tmp/legacy/data/Train"
    assert info["classes"] == {"cats": 6, "dogs": 6}
    assert info["n_failed"] == 0 and info["failed"] == []
    assert info["model"] == "alexnet"
    assert info["weights"] == {
        "id": "random(seed=0)",
        "sha256": WEIGHTS_SHA256,
        "pretrained": False,
        "source": "random initialisation, seed 0 (NOT pretrained)",
    }
    assert info["versions"]["featx"] == "0.1.0"
    fc7 = info["layers"]["fc7"]
    assert (fc7["dim"], fc7["dtype"], fc7["complete"]) == (4096, "float32", True)
    assert fc7["views"] == {"center": {"rows_done": 12}, "flip": {"rows_done": 12}}
    assert info["layers"]["conv5_avg"]["shape"] == [256, 13, 13]


def test_legacy_caches_are_chosen_as_train_and_test(legacy_caches):
    (legacy_caches / CATS).unlink()  # a second training candidate
    choice = resolve_caches(None, None, legacy_caches)
    assert choice.train.name == TRAIN
    # Test/ is a sibling of Train/ as recorded, with the same weights.
    assert choice.test is not None and choice.test.name == TEST


def test_featx_info_on_legacy_cache(legacy_caches):
    runner = CliRunner()
    result = runner.invoke(
        main,
        ["info", "--cache-dir", str(legacy_caches), "Train-random"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    assert f"cache:    {legacy_caches / TRAIN}  (format 1)" in result.output
    assert "images:   12   failed: 0" in result.output
    assert "views: flip (2)" in result.output
    result = runner.invoke(
        main,
        ["info", "--cache-dir", str(legacy_caches), "--json", TEST],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.output[result.output.index("{") :])
    assert data["n_images"] == 4
    assert data["classes"] == {"cats": 2, "dogs": 2}
    assert set(data["layers"]) == {"fc7", "conv5_avg"}
