"""featx.AlexNetFeatures: a scikit-learn transformer backed by the cache."""

import pickle

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline as sk_make_pipeline
from sklearn.utils import estimator_checks
from threadpoolctl import threadpool_limits

import featx.images
import pipelines
from featx import AlexNetFeatures, read_layer
from featx.fit import fit, folds
from tests.conftest import write_folder


@pytest.fixture
def photos(tmp_path):
    folder = write_folder(tmp_path / "data", {"a": 9, "b": 9, "c": 9}, seed=4)
    paths = sorted(str(p) for p in folder.glob("*/*.png"))
    labels = np.array([["a", "b", "c"].index(p.split("/")[-2]) for p in paths])
    return folder, paths, labels


def features(tmp_path, **params):
    params = {
        "weights": "random",
        "num_workers": 0,
        "cache_dir": tmp_path / "cache",
        **params,
    }
    return AlexNetFeatures(**params)


@pytest.mark.slow
def test_grid_search_over_layers_extracts_each_image_once(
    photos, tmp_path, monkeypatch
):
    folder, paths, labels = photos
    decoded = []
    real = featx.images.decode_image
    monkeypatch.setattr(
        featx.images,
        "decode_image",
        lambda f, **kw: decoded.append(f) or real(f, **kw),
    )
    linear = pipelines.make_pipeline("logreg", value=1.0, n_samples=18, n_features=4096)
    pipe = sk_make_pipeline(features(tmp_path), *[step for _, step in linear.steps])
    layers = ["pool5", "fc6", "fc7"]
    search = GridSearchCV(
        pipe, {"alexnetfeatures__layer": layers}, cv=folds(3, 0), scoring="accuracy"
    )
    # one BLAS thread, as featx fits: the same sums on any CPU, so equal scores
    with threadpool_limits(1, user_api="blas"):
        search.fit(paths, labels)
    assert len(decoded) == len(paths)  # 3 layers x 3 folds + refit: one pass

    cache = next((tmp_path / "cache").glob("*.h5"))
    for i, layer in enumerate(layers):
        ours = fit(
            cache=cache, layer=layer, clf="logreg", cv=3, seed=0, value=1.0, save=False
        )
        grid = [search.cv_results_[f"split{k}_test_score"][i] for k in range(3)]
        np.testing.assert_array_equal(grid, ours.cv_scores["accuracy"])


def test_transform_reads_the_cache_featx_extract_fills(photos, tmp_path):
    folder, paths, _ = photos
    t = features(tmp_path, layer="fc7").fit(paths)
    X = t.transform(paths[::-1])
    cached = read_layer(next((tmp_path / "cache").glob("*.h5")), "fc7")
    np.testing.assert_array_equal(X, cached.features[::-1])
    assert t.get_feature_names_out()[:2].tolist() == ["fc7_0", "fc7_1"]
    assert X.shape == (len(paths), len(t.get_feature_names_out()))
    pooled = features(tmp_path, layer="conv5", spatial="avg").fit(paths)
    assert pooled.transform(paths[:2]).shape == (2, 256)


def test_follows_scikit_learn_conventions(photos, tmp_path):
    _, paths, _ = photos
    t = features(tmp_path, layer="fc6")
    assert clone(t).get_params() == t.get_params()
    assert t.set_params(layer="fc7").layer == "fc7"
    fitted = t.fit(paths)
    before = fitted.transform(paths[:3])
    again = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(again.transform(paths[:3]), before)
    name = "AlexNetFeatures"
    for check in (
        estimator_checks.check_get_params_invariance,
        estimator_checks.check_set_params,
        estimator_checks.check_no_attributes_set_in_init,
        estimator_checks.check_parameters_default_constructible,
        estimator_checks.check_do_not_raise_errors_in_init_or_set_params,
        estimator_checks.check_estimator_cloneable,
        estimator_checks.check_estimator_repr,
    ):
        check(name, AlexNetFeatures())


def test_bad_input_is_refused(photos, tmp_path):
    _, paths, _ = photos
    with pytest.raises(ValueError, match="list of image paths"):
        features(tmp_path).fit(np.zeros((3, 4)))
    with pytest.raises(ValueError, match="layer"):
        features(tmp_path, layer="fc9").fit(paths)
