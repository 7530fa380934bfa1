"""A pickled ``featx.extraction.transformer.AlexNetFeatures`` written before the
restructuring still unpickles and transforms (tests/data/legacy/README.md)."""

import pickle
import shutil
from pathlib import Path

import numpy as np

from featx.extraction.transformer import AlexNetFeatures

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
    # an old transformer still names the cache it wrote: at the folder it was
    # made from (the cache records /tmp/legacy/...), the identity is the same
    made_from = Path("/tmp/legacy/data/Train/cats")
    assert transformer._cache_path(made_from).name == cache.name
    # here the folder has moved, so its features are computed again (on this
    # CPU's kernels): equal to the recorded ones within float32 rounding
    paths = sorted(str(p.relative_to(root)) for p in root.glob("data/Train/*/*.png"))
    got = transformer.transform(paths[:2])
    expected = np.load(root / "transformer_fc7.npy")
    assert got.dtype == np.float32 and got.shape == expected.shape == (2, 4096)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)
    assert cache.stat().st_mtime_ns == before  # the old cache is left as it was
