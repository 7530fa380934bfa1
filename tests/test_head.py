"""Fine-tuning AlexNet's head on cached pool5: its initialisation is AlexNet's
own fc6/fc7, it is deterministic, and it works as a featx classifier."""

import json

import numpy as np
import pytest
from click.testing import CliRunner
from sklearn.base import clone

from featx import FeatureCache, extract
from featx.cli import main
from featx.errors import WeightsError
from featx.fit import head_source
from featx.predict.modelfile import load_model
from pipelines.head import HeadClassifier
from tests.conftest import write_folder


@pytest.fixture(scope="module")
def head_cache(tmp_path_factory, state_dict_file):
    """pool5, fc6 and fc7 of 24 images, from a saved state dict."""
    root = tmp_path_factory.mktemp("head")
    folder = write_folder(root / "data", {"a": 12, "b": 12})
    result = extract(
        folder,
        layers=["pool5", "fc6", "fc7"],
        weights=str(state_dict_file),
        cache_dir=root / "cache",
        num_workers=0,
    )
    return result.cache_path


def _head(path, **kw) -> HeadClassifier:
    with FeatureCache(path) as cache:
        return HeadClassifier(**{**head_source(cache.meta), "device": "cpu", **kw})


@pytest.mark.slow
def test_initial_head_reproduces_the_models_fc6_and_fc7(head_cache):
    with FeatureCache(head_cache) as cache:
        pool5, fc6, fc7 = (cache.read(k) for k in ("pool5", "fc6", "fc7"))
    head = _head(head_cache)
    np.testing.assert_allclose(head.hidden(pool5, "fc6"), fc6, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(head.hidden(pool5, "fc7"), fc7, rtol=1e-4, atol=1e-4)
    # trained with fc8 alone, fc6 and fc7 stay exactly AlexNet's
    with FeatureCache(head_cache) as cache:
        y = cache.labels
    fitted = _head(head_cache, train_layers="fc8", max_epochs=2).fit(pool5, y)
    np.testing.assert_allclose(fitted.hidden(pool5, "fc7"), fc7, rtol=1e-4, atol=1e-4)
    fc6_only = _head(head_cache, train_layers="fc7-fc8", max_epochs=2).fit(pool5, y)
    np.testing.assert_array_equal(fc6_only.coefs_[0], head.initial_head()[0])
    assert not np.array_equal(fc6_only.coefs_[2], head.initial_head()[2])


@pytest.mark.slow
def test_head_is_seeded_and_deterministic_on_cpu(head_cache):
    with FeatureCache(head_cache) as cache:
        X, y = cache.read("pool5"), cache.labels
    a = _head(head_cache, max_epochs=3, random_state=1).fit(X, y)
    b = clone(a).fit(X, y)
    c = clone(a).set_params(random_state=2, max_epochs=1).fit(X, y)
    for wa, wb in zip(a.coefs_, b.coefs_, strict=True):
        np.testing.assert_array_equal(wa, wb)
    assert not np.array_equal(a.coefs_[4], c.coefs_[4])
    proba = a.predict_proba(X)
    np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-5)
    np.testing.assert_array_equal(a.predict(X), a.classes_[proba.argmax(axis=1)])
    decision = a.decision_function(X)
    assert decision.shape == (len(X),)
    np.testing.assert_array_equal(a.predict(X), a.classes_[(decision > 0).astype(int)])


@pytest.mark.slow
def test_head_learns_its_training_rows(head_cache):
    """With the features standing still (fc8 alone) and no early stopping, the
    head fits the 24 training images."""
    with FeatureCache(head_cache) as cache:
        X, y = cache.read("pool5"), cache.labels
    head = _head(
        head_cache, train_layers="fc8", max_epochs=200, patience=None, dropout=0.0,
        lr=1e-2, batch_size=8,
    ).fit(X, y)  # fmt: skip
    assert (head.predict(X) == y).mean() >= 0.9
    assert head.n_epochs_ == 200


@pytest.mark.slow
def test_other_weights_at_the_same_place_are_refused(head_cache, tmp_path):
    with FeatureCache(head_cache) as cache:
        X, y = cache.read("pool5"), cache.labels
    head = _head(head_cache, weights_sha256="0" * 64)
    with pytest.raises(WeightsError, match="not the ones the cache was made with"):
        head.fit(X, y)
    with pytest.raises(ValueError, match="pool5 rows of 9216 features"):
        _head(head_cache).fit(X[:, :100], y)
    with pytest.raises(
        ValueError,
        match=r"^`model` must be one of alexnet, caffe-alexnet: the head is "
        r"AlexNet's fc6-fc8. Got 'resnet18'.$",
    ):
        _head(head_cache, model="resnet18").fit(X, y)


@pytest.mark.slow
def test_cli_fit_head_saves_a_safe_model_and_predicts(head_cache, tmp_path):
    runner = CliRunner()
    model = tmp_path / "head.skops"
    out = runner.invoke(
        main,
        ["fit", "--clf", "head", "--head-train", "fc8", "--cache", str(head_cache),
         "--cv", "2", "--json", "--out", str(model)],
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    assert data["layer"] == "pool5" and data["clf"] == "head"
    assert data["params"] == {"weight_decay": 5e-4}
    pipeline, meta = load_model(model)  # skops: only trusted types inside
    assert type(pipeline[-1]).__name__ == "HeadClassifier"
    with FeatureCache(head_cache) as cache:
        folder = cache.meta.data_root
    out = runner.invoke(main, ["predict", "--model", str(model), folder])
    assert out.exit_code == 0, out.output
    assert "accuracy:" in out.output
    # a layer that is not pool5: one line, exit 1
    out = runner.invoke(
        main, ["fit", "--clf", "head", "--cache", str(head_cache), "--layer", "fc7"]
    )
    assert out.exit_code == 1
    assert "fine-tunes fc6-fc8 on pool5 rows" in out.output
    out = runner.invoke(
        main, ["fit", "--clf", "head", "--C", "1", "--cache", str(head_cache)]
    )
    assert out.exit_code == 2 and "--alpha, not --C" in out.output


@pytest.mark.slow
def test_report_fits_the_head_on_pool5_beside_the_linear_classifiers(
    head_cache, tmp_path
):
    from featx.report import make_report

    report = make_report(
        cache=head_cache, cache_dir=head_cache.parent, clfs=["ridge", "head"],
        layers=["pool5", "fc7"], cv=2, repeats=1, head_train="fc8",
        out=tmp_path / "rep",
    )  # fmt: skip
    pairs = {(r["layer"], r["clf"]) for r in report.rows}
    assert pairs == {("pool5", "ridge"), ("pool5", "head"), ("fc7", "ridge")}
    assert "fine-tuned on pool5" in (tmp_path / "rep" / "report.md").read_text()
