"""Old import paths still work after the modules moved into the stage packages
(``featx/_moved.py``): a model file written before the move loads, and every old
name is the new module itself."""

import importlib
import shutil
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from featx._moved import MOVED
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
    assert aliased is new


def test_every_alias_points_at_a_module_that_exists():
    root = Path(__file__).resolve().parent.parent
    for old, new in MOVED.items():
        assert not (root / (old.replace(".", "/") + ".py")).exists(), old
        assert (root / (new.replace(".", "/") + ".py")).is_file(), new
