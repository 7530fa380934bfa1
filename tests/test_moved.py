"""Old import paths still work after the modules moved into the stage packages
(``featx/_moved.py``): a model file written before the move loads, and every old
name is the new module itself."""

import importlib
import json
import shutil
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from featx._moved import ALSO, MOVED, quietly
from featx.predict.modelfile import read_model

LEGACY = Path(__file__).parent / "data" / "legacy" / "models"


def test_a_model_file_that_names_featx_head_loads_and_predicts(tmp_path):
    """tests/data/legacy/README.md: written by the release before the move, so its
    HeadClassifier is recorded as ``featx.head.HeadClassifier``."""
    for name in ("tiny-head.skops", "tiny-head.skops.sha256"):
        shutil.copy(LEGACY / name, tmp_path / name)
    from skops.io import get_untrusted_types

    assert "featx.head.HeadClassifier" in get_untrusted_types(
        file=tmp_path / "tiny-head.skops"
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # featx's own loading does not warn
        pipeline, meta = read_model(tmp_path / "tiny-head.skops")
    from pipelines.head import HeadClassifier

    head = pipeline[-1]
    assert type(head) is HeadClassifier and meta.clf == "head"
    X = np.load(LEGACY / "tiny-head-X.npy")
    np.testing.assert_allclose(
        pipeline.predict_proba(X), np.load(LEGACY / "tiny-head-proba.npy"), rtol=1e-6
    )


@pytest.mark.parametrize("old", sorted(MOVED))
def test_each_old_name_is_the_new_module_and_says_where_it_went(old, monkeypatch):
    new = importlib.import_module(MOVED[old])
    monkeypatch.delitem(sys.modules, old, raising=False)
    with pytest.warns(DeprecationWarning, match=f"{old} moved to {MOVED[old]}"):
        aliased = importlib.import_module(old)
    if old in ALSO:  # split: a module of its own that reads from the parts
        assert all(getattr(aliased, n) is getattr(new, n) for n in new.__all__)
    else:
        assert aliased is new
        # its own spec, not the alias's: reload and importlib.resources work
        assert new.__spec__.name == MOVED[old]
        assert new.__spec__.origin == new.__file__


def test_every_public_name_of_an_old_module_is_still_there(monkeypatch):
    """tests/data/legacy/module_names.json: each old module's public names at
    8e6ad20 (definitions, and the featx names it imported), read with ast."""
    before = json.loads((LEGACY.parent / "module_names.json").read_text())
    missing = []
    with quietly():
        for old, names in before.items():
            module = importlib.import_module(old)
            missing += [f"{old}.{n}" for n in names if not hasattr(module, n)]
    assert missing == []
    from featx.compute.ray_engine import ray_batches
    from featx.fit.ray_backend import joblib_backend

    with quietly():
        from featx.ray_engine import joblib_backend as old_backend
        from featx.ray_engine import ray_batches as old_batches
    assert (old_backend, old_batches) == (joblib_backend, ray_batches)


def test_every_alias_points_at_a_module_that_exists():
    root = Path(__file__).resolve().parent.parent
    for old, new in MOVED.items():
        assert not (root / (old.replace(".", "/") + ".py")).exists(), old
        assert (root / (new.replace(".", "/") + ".py")).is_file(), new
