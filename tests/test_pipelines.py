import pytest
from sklearn.decomposition import PCA, IncrementalPCA
from sklearn.preprocessing import Normalizer, StandardScaler

import pipelines


def test_svm_dual_follows_the_shape():
    wide = pipelines.svm(n_samples=100, n_features=4096)
    tall = pipelines.svm(n_samples=10_000, n_features=256)
    assert wide.named_steps["clf"].dual is True
    assert tall.named_steps["clf"].dual is False
    assert pipelines.svm(n_samples=1000, n_features=4096, pca=64)["clf"].dual is False


def test_logreg_solver_follows_the_size():
    assert pipelines.logreg(n_samples=2000, n_features=4096)["clf"].solver == "lbfgs"
    big = pipelines.logreg(n_samples=pipelines.SAGA_ROWS + 1, n_features=4096)
    assert big["clf"].solver == "saga"


def test_mlp_is_small_and_stops_early_with_enough_rows():
    clf = pipelines.mlp(n_samples=5000, n_features=4096)["clf"]
    assert clf.hidden_layer_sizes == (256,) and clf.early_stopping
    assert not pipelines.mlp(n_samples=50, n_features=4096)["clf"].early_stopping


def test_preprocessing_options():
    assert isinstance(pipelines.svm(n_samples=9, n_features=9)["scale"], StandardScaler)
    l2 = pipelines.logreg(n_samples=9, n_features=9, scale="l2", pca=4)
    assert isinstance(l2["scale"], Normalizer) and isinstance(l2["pca"], PCA)
    assert l2["pca"].n_components == 4
    assert list(pipelines.mlp(n_samples=9, n_features=9, scale="none").named_steps) == [
        "clf"
    ]
    streaming = pipelines.sgd(n_samples=9, n_features=9, pca=4)
    assert isinstance(streaming["pca"], IncrementalPCA)
    assert all(hasattr(s, "partial_fit") for _, s in streaming.steps)


def test_errors_name_what_was_received():
    with pytest.raises(
        ValueError,
        match=r"`clf` must be one of 'svm', 'logreg', "
        r"'mlp', 'sgd'\. Got 'svn'\.",
    ):
        pipelines.make_pipeline("svn", n_samples=9, n_features=9)
    with pytest.raises(ValueError, match="`scale` must be one of"):
        pipelines.svm(n_samples=9, n_features=9, scale="minmax")
