"""Views: ten crops against torchvision's TenCrop, per-view caches and resume,
folds that never split an image's views, and test-time averaging."""

import json

import h5py
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from sklearn.linear_model import LogisticRegression, RidgeClassifier
from sklearn.model_selection import cross_validate
from sklearn.neural_network import MLPClassifier
from torchvision import transforms as T
from torchvision.transforms import functional as F

from featx import FeatureCache, extract
from featx.cli import main
from featx.fit import folds
from featx.images import decode_image
from featx.images.views import ALL_VIEWS, dataset_key
from featx.model import load_weights, preprocess_for
from featx.model.caffe import CROP
from featx.predict.modelfile import load_model
from pipelines.tuned import TunedClassifier, _inner_splits
from pipelines.views import ViewEnsemble
from tests.conftest import make_image, reference, write_folder
from tests.numerics import assert_same_predictions, decision_margin

#: torchvision's TenCrop order: the five crops of the image, then the five
#: crops of its mirror image. The top-left crop of the mirror image is the
#: mirror of the top-right crop (featx's ``tr_flip``, Caffe's mirrored crop).
TENCROP_INDEX = {
    "tl": 0,
    "tr": 1,
    "bl": 2,
    "br": 3,
    "center": 4,
    "tr_flip": 5,
    "tl_flip": 6,
    "br_flip": 7,
    "bl_flip": 8,
    "flip": 9,
}


@pytest.mark.parametrize("model", ["alexnet", "caffe-alexnet"])
@pytest.mark.parametrize("size", [(300, 257), (256, 400), (181, 181)])
def test_ten_crops_equal_torchvision_tencrop(model, size):
    preprocess = preprocess_for(model)
    img = make_image(np.random.default_rng(size[0]), size, label=1)
    ours = preprocess.views_uint8(img, ALL_VIEWS)
    resized = F.resize(img, preprocess.resize_size, antialias=True)
    side = preprocess.crop_size[0]
    assert side == (224 if model == "alexnet" else CROP)
    theirs = T.TenCrop(side)(resized)
    for i, view in enumerate(ALL_VIEWS):
        expected = F.pil_to_tensor(theirs[TENCROP_INDEX[view]])
        assert torch.equal(ours[i], expected), view
    # the centre is exactly what a one-view cache always held
    assert torch.equal(ours[0], preprocess.to_uint8(img))


def test_extracted_views_equal_the_reference_on_tencrop(tmp_path, state_dict_file):
    folder = write_folder(tmp_path / "data", {"a": 2, "b": 2})
    result = extract(
        folder,
        layers=["pool5", "fc7"],
        weights=str(state_dict_file),
        views="ten",
        cache_dir=tmp_path / "cache",
        num_workers=0,
    )
    assert result.views == list(ALL_VIEWS)
    loaded = load_weights(str(state_dict_file))
    preprocess = preprocess_for("alexnet")
    with FeatureCache(result.cache_path) as cache:
        assert cache.views("fc7") == ALL_VIEWS
        assert set(cache.layers) == {"fc7", "pool5"}
        for row, rel in enumerate(cache.paths[:2]):
            img = decode_image(folder / rel)
            resized = F.resize(img, preprocess.resize_size, antialias=True)
            crops = T.TenCrop(224)(resized)
            batch = torch.stack(
                [F.pil_to_tensor(crops[TENCROP_INDEX[v]]) for v in ALL_VIEWS]
            )
            x = preprocess.normalize(batch)
            ref = reference(
                loaded.model, ["features.12", "classifier.5"], x, inplace=False
            )
            for i, view in enumerate(ALL_VIEWS):
                got = cache.read(dataset_key("fc7", view), rows=np.array([row]))[0]
                want = ref["classifier.5"][i].numpy()
                np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
                got = cache.read(dataset_key("pool5", view), rows=np.array([row]))[0]
                want = ref["features.12"][i].flatten().numpy()
                np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_each_view_is_stored_and_resumed_on_its_own(tmp_path):
    folder = write_folder(tmp_path / "data", {"a": 3, "b": 3})
    kw = dict(layers=["fc7"], weights="random", cache_dir=tmp_path / "c", num_workers=0)
    path = extract(folder, **kw).cache_path
    with FeatureCache(path) as cache:
        centre = cache.read("fc7")
        assert cache.views("fc7") == ("center",)
    extract(folder, views="flip", **kw)
    with FeatureCache(path) as cache:
        assert cache.views("fc7") == ("center", "flip")
        np.testing.assert_array_equal(cache.read("fc7"), centre)
        flip = cache.read("fc7@flip")
        assert not np.allclose(flip, centre)
    extract(folder, views="ten", **kw)
    with h5py.File(path, "r+") as f:  # as if a run had died during view tl
        f["done"]["fc7@tl"][3:] = 0
        f["features"]["fc7@tl"][3:] = 0
        tl = f["features"]["fc7@tl"][:3]
    with FeatureCache(path) as cache:
        assert cache.views("fc7") == tuple(v for v in ALL_VIEWS if v != "tl")
        assert cache.views("fc7", complete=False) == ALL_VIEWS
    again = extract(folder, views="ten", **kw)
    assert again.n_new == 3  # the three rows that view lacked, nothing else
    with FeatureCache(path) as cache:
        assert cache.views("fc7") == ALL_VIEWS
        np.testing.assert_array_equal(cache.read("fc7"), centre)
        np.testing.assert_array_equal(cache.read("fc7@flip"), flip)
        np.testing.assert_array_equal(cache.read("fc7@tl")[:3], tl)
        assert np.abs(cache.read("fc7@tl")[3:]).sum() > 0
    out = CliRunner().invoke(main, ["info", str(path), "--json"])
    layer = json.loads(out.output)["layers"]["fc7"]
    assert list(layer["views"]) == list(ALL_VIEWS)
    assert set(json.loads(out.output)["layers"]) == {"fc7"}
    table = CliRunner().invoke(main, ["info", str(path)]).output
    assert "views: ten (10)" in table


class Recorder(LogisticRegression):
    """Logistic regression that remembers the image ids it was trained on (the
    first column of every view holds its image's id)."""

    seen: list = []

    def fit(self, X, y):
        Recorder.seen.append(np.unique(X[:, 0]).astype(int))
        return super().fit(X, y)


def _views_data(n=60, n_views=4, width=5, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    X = rng.normal(size=(n, n_views, width)) + y[:, None, None]
    X[:, :, 0] = np.arange(n)[:, None]  # every view carries its image's id
    return X.reshape(n, n_views * width), y


def view_rows(images: np.ndarray, n_views: int) -> np.ndarray:
    """The rows of the stacked per-view matrix (image ``i``'s view ``v`` is row
    ``i * n_views + v``) that hold the views of ``images``."""
    images = np.asarray(images, np.int64)
    return (images[:, None] * n_views + np.arange(n_views)).ravel()


def test_no_view_of_an_image_crosses_a_fold_boundary():
    X, y = _views_data()
    Recorder.seen = []
    model = ViewEnsemble(Recorder(max_iter=500), n_views=4)
    splits = list(folds(5, 0).split(X, y))
    cross_validate(model, X, y, cv=splits)
    assert len(Recorder.seen) == len(splits)
    for (train, test), seen in zip(splits, Recorder.seen, strict=True):
        np.testing.assert_array_equal(seen, np.sort(train))
        rows_train, rows_test = view_rows(train, 4), view_rows(test, 4)
        assert len(rows_train) == 4 * len(train)
        assert not set(rows_train // 4) & set(rows_test // 4)
        assert not set(rows_train) & set(rows_test)
    # the inner search of a tuned classifier splits whole images too
    groups = np.repeat(np.arange(len(y)), 4)
    for train, val in _inner_splits(2, 0, np.repeat(y, 4), groups):
        assert not set(groups[train]) & set(groups[val])
        assert len(train) % 4 == 0 and len(val) % 4 == 0


@pytest.mark.parametrize(
    "clf",
    [
        LogisticRegression(max_iter=500),
        RidgeClassifier(),
        MLPClassifier((8,), max_iter=300, random_state=0),
    ],
    ids=["logreg", "ridge-binary", "mlp"],
)
def test_prediction_averages_the_views_decisions(clf):
    X, y = _views_data(n_views=3)
    if isinstance(clf, RidgeClassifier):
        y = (y > 0).astype(int)
    model = ViewEnsemble(clf, n_views=3).fit(X, y)
    per_view = X.reshape(len(X), 3, -1)
    method = (
        "decision_function"
        if hasattr(model.estimator_, "decision_function")
        else "predict_proba"
    )
    scores = [getattr(model.estimator_, method)(per_view[:, v]) for v in range(3)]
    mean = np.mean(scores, axis=0)
    np.testing.assert_allclose(getattr(model, method)(X), mean, rtol=1e-6)
    expected = (mean > 0).astype(int) if mean.ndim == 1 else mean.argmax(axis=1)
    # the model averages in its own order: rows within rounding of a tie may go
    # either way
    margin = decision_margin(mean, 1e-6)
    assert_same_predictions(model.predict(X), model.classes_[expected], mean, margin)
    # one view only: the centre, on its own
    np.testing.assert_allclose(
        getattr(model, method)(per_view[:, 0]), scores[0], rtol=1e-6
    )
    centre = ViewEnsemble(clf, n_views=3, test_views="center").fit(X, y)
    np.testing.assert_allclose(getattr(centre, method)(X), scores[0], rtol=1e-6)


def test_tuned_classifier_takes_groups():
    X, y = _views_data(n_views=2)
    model = ViewEnsemble(
        TunedClassifier(LogisticRegression(max_iter=500), param="C", grid=[0.1, 1.0]),
        n_views=2,
    ).fit(X, y)
    assert model.estimator_.best_params_["C"] in (0.1, 1.0)


def test_fit_and_predict_use_the_views_a_cache_has(tmp_path):
    folder = write_folder(tmp_path / "data", {"a": 6, "b": 6})
    cache_dir = tmp_path / "cache"
    result = extract(
        folder, layers=["fc7"], weights="random", views="flip",
        cache_dir=cache_dir, num_workers=0,
    )  # fmt: skip
    runner = CliRunner()
    out = runner.invoke(
        main,
        ["fit", "--clf", "logreg", "--cv", "3", "--cache-dir", str(cache_dir),
         "--json", "--out", str(tmp_path / "m.skops")],
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    assert data["views"] == ["center", "flip"] and data["train_views"]
    pipeline, meta = load_model(tmp_path / "m.skops")
    assert meta["views"] == ["center", "flip"]
    out = runner.invoke(
        main, ["predict", "--model", str(tmp_path / "m.skops"), str(folder), "--json"]
    )
    assert out.exit_code == 0, out.output
    assert "views: flip: 2 crops per image, scores averaged" in out.stderr
    rows = json.loads(out.stdout)
    with FeatureCache(result.cache_path) as cache:
        X = cache.read_views("fc7", ("center", "flip"))
        expected = dict(zip(cache.paths, pipeline.predict(X), strict=True))
    for row in rows:
        rel = row["path"].split("data/", 1)[1]
        assert row["label"] == meta["classes"][expected[rel]]
    table = runner.invoke(
        main, ["fit", "--clf", "ridge", "--cv", "3", "--cache-dir", str(cache_dir),
               "--center-only", "--out", str(tmp_path / "c.skops")],
    ).output  # fmt: skip
    assert "views:" not in table
    assert load_model(tmp_path / "c.skops")[1]["views"] == ["center"]


def test_flip_view_is_the_mirror_image(tmp_path):
    """A left-right symmetric image gives the same features in both views."""
    root = tmp_path / "data" / "a"
    root.mkdir(parents=True)
    half = np.random.default_rng(0).integers(0, 255, (120, 60, 3), np.uint8)
    Image.fromarray(np.concatenate([half, half[:, ::-1]], axis=1)).save(
        root / "sym.png"
    )
    path = extract(
        tmp_path / "data", layers=["fc7"], weights="random", views="flip",
        cache_dir=tmp_path / "c", num_workers=0,
    ).cache_path  # fmt: skip
    with FeatureCache(path) as cache:
        np.testing.assert_allclose(
            cache.read("fc7"), cache.read("fc7@flip"), rtol=1e-4, atol=1e-5
        )


def test_report_compares_views_with_the_centre_on_the_same_folds(tmp_path):
    from featx.report import make_report

    folder = write_folder(tmp_path / "data", {"a": 6, "b": 6})
    cache = extract(
        folder, layers=["fc7"], weights="random", views="flip",
        cache_dir=tmp_path / "cache", num_workers=0,
    ).cache_path  # fmt: skip
    report = make_report(
        cache=cache, cache_dir=tmp_path / "cache", clfs=["ridge"], cv=3,
        repeats=1, out=tmp_path / "rep",
    )  # fmt: skip
    by = {r["clf"]: r for r in report.rows}
    assert set(by) == {"ridge", "ridge+flip"}
    assert by["ridge"]["views"] == ["center"]
    assert by["ridge+flip"]["views"] == ["center", "flip"]
    assert by["ridge+flip"]["classifier"] == "ridge"
    assert len(by["ridge"]["cv_scores"]["accuracy"]) == 3
    assert min(by["ridge+flip"]["oof_pred"]) >= 0  # every image tested once
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "train on every view" in md and "ridge\\+flip" in md
    only = make_report(
        cache=cache, cache_dir=tmp_path / "cache", clfs=["ridge"], cv=3,
        repeats=1, out=tmp_path / "rep2", center_only=True,
    )  # fmt: skip
    assert [r["clf"] for r in only.rows] == ["ridge"]
    # its reproduce command makes the same report, not one with ridge+flip rows
    assert "--center-only" in (tmp_path / "rep2" / "report.md").read_text()


def test_a_held_out_folder_is_extracted_with_the_training_views(tmp_path):
    train = write_folder(tmp_path / "data" / "Train", {"a": 6, "b": 6})
    test = write_folder(tmp_path / "data" / "Test", {"a": 3, "b": 3}, seed=1)
    cache_dir = tmp_path / "cache"
    extract(
        train, layers=["fc7"], weights="random", views="flip",
        cache_dir=cache_dir, num_workers=0,
    )  # fmt: skip
    out = CliRunner().invoke(
        main,
        ["fit", "--clf", "ridge", "--cv", "3", "--cache-dir", str(cache_dir),
         "--test", str(test), "--json", "-q", "--out", str(tmp_path / "m.skops")],
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    data = json.loads(out.output[out.output.index("{") :])
    assert data["test"]["views"] == ["center", "flip"]
    assert data["test"]["n_images"] == 6
