import numpy as np
import pytest
from sklearn.decomposition import PCA, IncrementalPCA
from sklearn.preprocessing import Normalizer, StandardScaler

import pipelines


@pytest.mark.parametrize(("rows", "cols", "dual"), [(40, 300, True), (300, 20, False)])
def test_svm_solves_the_formulation_that_fits_the_shape(rows, cols, dual):
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(rows, cols)), rng.integers(0, 2, rows)
    auto = pipelines.svm(n_samples=rows, n_features=cols, C=1.0).fit(X, y)
    explicit = pipelines.svm(n_samples=rows, n_features=cols, C=1.0)
    explicit.set_params(clf__dual=dual).fit(X, y)
    np.testing.assert_array_equal(auto["clf"].coef_, explicit["clf"].coef_)


def test_logreg_solver_follows_the_size():
    tuned = pipelines.logreg(n_samples=2000, n_features=4096)["clf"]
    assert tuned.estimator.solver == "lbfgs"
    big = pipelines.logreg(n_samples=pipelines.SAGA_ROWS + 1, n_features=4096, C=1)
    assert big["clf"].solver == "saga"


def test_mlp_is_small_and_stops_early_with_enough_rows():
    clf = pipelines.mlp(n_samples=5000, n_features=4096, alpha=1e-4)["clf"]
    assert clf.hidden_layer_sizes == (256,) and clf.early_stopping
    small = pipelines.mlp(n_samples=50, n_features=4096)["clf"]
    assert not small.estimator.early_stopping


@pytest.mark.parametrize("clf", ["svm", "logreg", "ridge", "mlp"])
def test_tuned_by_default_fixed_on_request(clf):
    tuned = pipelines.make_pipeline(clf, n_samples=100, n_features=50, seed=4)["clf"]
    param, grid = next(iter(pipelines.GRIDS[clf].items()))
    assert (tuned.param, tuned.grid, tuned.random_state) == (param, grid, 4)
    fixed = pipelines.make_pipeline(clf, n_samples=100, n_features=50, value=0.5)
    assert fixed["clf"].get_params()[param] == 0.5


@pytest.mark.parametrize("clf", ["svm", "logreg", "ridge", "mlp"])
def test_one_inner_split_only_with_enough_rows(clf):
    # on few rows one split's choice is noisy (75 digits: ridge lost 16 points)
    def splits(n):
        return pipelines.make_pipeline(clf, n_samples=n, n_features=50)["clf"]

    few, many = pipelines.ONE_SPLIT_ROWS - 1, pipelines.ONE_SPLIT_ROWS
    assert splits(few).inner_splits is None
    assert splits(many).inner_splits == pipelines.INNER_SPLITS == 1


def test_the_commands_offer_every_classifier():
    from featx.choices import CLASSIFIERS

    assert (*pipelines.CLASSIFIERS, "head") == CLASSIFIERS


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
        match=r"`clf` must be one of 'svm', 'logreg', 'ridge', "
        r"'mlp', 'sgd'\. Got 'svn'\.",
    ):
        pipelines.make_pipeline("svn", n_samples=9, n_features=9)
    with pytest.raises(ValueError, match="`scale` must be one of"):
        pipelines.svm(n_samples=9, n_features=9, scale="minmax")
