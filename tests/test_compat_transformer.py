"""A pickled ``featx.transformer.AlexNetFeatures`` written before the
restructuring still unpickles and transforms (tests/data/legacy/README.md)."""

import pickle
import shutil
from pathlib import Path

import numpy as np

from featx.transformer import AlexNetFeatures

LEGACY = Path(__file__).parent / "data" / "legacy"


def test_legacy_pickled_transformer_unpickles_and_transforms(tmp_path, monkeypatch):
    # pickled in a folder whose cache/ it names by the relative path "cache"
    root = tmp_path / "legacy"
    shutil.copytree(LEGACY, root)
    monkeypatch.chdir(root)
    cache = root / "cache" / "cats-random-edaae038ee.h5"
    before = cache.stat().st_mtime_ns
    transformer = pickle.loads((root / "transformer.pkl").read_bytes())
    assert type(transformer) is AlexNetFeatures
    assert transformer.get_params()["layer"] == "fc7"
    paths = sorted(str(p.relative_to(root)) for p in root.glob("data/Train/*/*.png"))
    got = transformer.transform(paths[:2])
    expected = np.load(root / "transformer_fc7.npy")
    assert got.dtype == np.float32 and got.shape == expected.shape == (2, 4096)
    np.testing.assert_array_equal(got, expected)
    assert cache.stat().st_mtime_ns == before  # read from the cache it made
