import json
import tracemalloc
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner
from joblib import parallel_config
from sklearn.model_selection import StratifiedKFold, cross_validate
from threadpoolctl import threadpool_limits

import featx.fit
import featx.predict.modelfile
import pipelines
from featx import FeatureCache, extract, read_layer
from featx.cache import FeatureCache as _FC
from featx.cli import main
from featx.errors import CacheError, ParameterError
from featx.fit import FitError, FitSpec, fit
from tests.conftest import write_folder


def fit_digits(digits, tmp_path, **kw):
    kw.setdefault("layer", "fc7")
    kw.setdefault("jobs", 1)  # parity with scikit-learn's sequential folds
    return fit(
        cache=digits["train_cache"],
        cache_dir=digits["cache_dir"],
        out=tmp_path / "model.skops",
        **kw,
    )


@pytest.mark.parametrize("clf", ["svm", "logreg", "mlp", "sgd"])
def test_each_classifier_beats_chance_by_far(digits, tmp_path, clf):
    result = fit_digits(digits, tmp_path, clf=clf, test=digits["test_cache"])
    assert result.mean("accuracy") > 0.6  # chance is 0.1
    assert result.test["accuracy"] > 0.6 and result.test["n_images"] == 100
    assert len(result.cv_scores["accuracy"]) == 5 and len(result.fit_times) == 5
    confusion = np.array(result.test["confusion"])
    assert confusion.shape == (10, 10) and confusion.sum() == 100


@pytest.mark.parametrize(
    ("clf", "tune"),
    [
        ("svm", True),
        ("logreg", True),
        ("ridge", True),
        ("mlp", True),
        ("svm", False),
        ("logreg", False),
        ("mlp", False),
    ],
)
def test_cv_equals_scikit_learn_cross_validate(digits, tmp_path, clf, tune):
    result = fit_digits(digits, tmp_path, clf=clf, cv=4, seed=3, tune=tune, save=False)
    X, y, _, _ = read_layer(digits["train_cache"], "fc7")
    value = None if tune else featx.fit.DEFAULT_VALUES[clf]
    pipe = pipelines.make_pipeline(
        clf, n_samples=len(y), n_features=X.shape[1], seed=3, value=value
    )
    # featx fits with one BLAS thread: with one here too, both sides do the same
    # sums on any CPU, so the scores (and tuned choices) are equal, not close
    with threadpool_limits(1):
        ref = cross_validate(
            pipe,
            X,
            y,
            cv=StratifiedKFold(4, shuffle=True, random_state=3),
            scoring=("accuracy", "f1_macro"),
            return_estimator=True,
        )
    np.testing.assert_array_equal(result.cv_scores["accuracy"], ref["test_accuracy"])
    np.testing.assert_array_equal(result.cv_scores["f1_macro"], ref["test_f1_macro"])
    assert result.tuned is tune
    if tune:  # the value each fold chose is the one scikit-learn's fit chose
        chosen = [est[-1].best_params_ for est in ref["estimator"]]
        assert result.cv_params == chosen


@pytest.mark.parametrize("jobs", [1, 2])
@pytest.mark.slow
def test_parallel_folds_match_scikit_learn(digits, tmp_path, jobs):
    # featx fits every fold with one BLAS thread, however many folds run at once.
    # scikit-learn's workers get the same single thread, so both sides do the
    # same sums on any CPU and any core count, and the scores are equal.
    result = fit_digits(digits, tmp_path, clf="logreg", cv=3, jobs=jobs, save=False)
    X, y, _, _ = read_layer(digits["train_cache"], "fc7")
    pipe = pipelines.make_pipeline("logreg", n_samples=len(y), n_features=X.shape[1])
    with (
        threadpool_limits(1),
        parallel_config(backend="loky", inner_max_num_threads=1),
    ):
        ref = cross_validate(
            pipe,
            X,
            y,
            cv=StratifiedKFold(3, shuffle=True, random_state=0),
            scoring=("accuracy", "f1_macro"),
            n_jobs=jobs,
        )
    np.testing.assert_array_equal(result.cv_scores["accuracy"], ref["test_accuracy"])
    grid = pipelines.GRIDS["logreg"]["C"]
    assert all(set(p) == {"C"} and p["C"] in grid for p in result.cv_params)
    assert result.params["C"] in grid


@pytest.mark.slow
def test_sgd_streams_without_loading_the_matrix(digits, tmp_path, monkeypatch):
    def forbidden(*a, **k):
        raise AssertionError("the SGD path must not read the whole layer")

    blocks = []
    real_iter = _FC.iter_chunks

    def counting(self, layer, **kw):
        for rows, block in real_iter(self, layer, **kw):
            blocks.append(len(rows))
            yield rows, block

    monkeypatch.setattr(_FC, "read", forbidden)
    monkeypatch.setattr(_FC, "iter_chunks", counting)
    monkeypatch.setattr(featx.fit, "SGD_BLOCK_ROWS", 16)
    monkeypatch.setattr(featx.fit, "SGD_EPOCHS", 3)  # streaming, not convergence
    # imports allocate too: skops (saving the model) is imported before tracing,
    # so that the peak is the same whether or not an earlier test imported it
    featx.predict.modelfile._skops_io()
    n_rows = 300
    full_bytes = n_rows * 9216 * 4
    tracemalloc.start()
    try:
        result = fit_digits(digits, tmp_path, clf="sgd", layer="pool5", cv=3)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.mean("accuracy") > 0.5
    assert blocks and max(blocks) == 16
    # a block is 16 x 9216 float32 (590 KB); the block, its masked copy and SGD's
    # float64 copy stay far below the 300-row matrix (11 MB)
    assert peak < full_bytes / 2, (peak, full_bytes)


@pytest.mark.slow
def test_float16_cache_is_converted_in_bounded_blocks(digits, tmp_path):
    result = extract(
        digits["train"],
        layers=["pool5"],
        dtype="float16",
        weights="random",
        cache_dir=tmp_path / "c16",
        num_workers=0,
    )
    with FeatureCache(result.cache_path) as cache:
        raw = cache.file["features/pool5"][:]
        out_bytes = raw.size * 4
        del raw
        tracemalloc.start()
        try:
            X = cache.read("pool5")
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert X.dtype == np.float32
        np.testing.assert_array_equal(
            X, cache.file["features/pool5"][:].astype(np.float32)
        )
    # one float32 output plus one block: far less than float16 + float32 copies
    assert peak < out_bytes * 1.3, (peak, out_bytes)
    fitted = fit(
        cache=result.cache_path,
        layer="pool5",
        clf="logreg",
        cv=3,
        out=tmp_path / "m.skops",
    )
    assert fitted.mean("accuracy") > 0.6


@pytest.fixture
def labelled_cache(tmp_path):
    folder = write_folder(tmp_path / "d", {"a": 6, "b": 3})
    return extract(
        folder,
        layers=["fc7", "fc6"],
        weights="random",
        cache_dir=tmp_path / "c",
        num_workers=0,
    ).cache_path


def _flat_cache(tmp_path, labelled_cache):
    flat = tmp_path / "flat"
    flat.mkdir()
    for p in (tmp_path / "d" / "a").iterdir():
        p.rename(flat / p.name)
    return extract(
        flat, layers=["fc7"], weights="random", cache_dir=tmp_path / "c2", num_workers=0
    ).cache_path


def _single_class_cache(tmp_path, labelled_cache):
    one = write_folder(tmp_path / "one", {"only": 4})
    return extract(
        one, layers=["fc7"], weights="random", cache_dir=tmp_path / "c3", num_workers=0
    ).cache_path


def _newer_cache(tmp_path, labelled_cache):
    with h5py.File(labelled_cache, "r+") as f:
        f.attrs["featx_format"] = 7
    return labelled_cache


BAD_INPUTS = {
    "missing layer": (None, {"layer": "pool5"}, CacheError, "layer 'pool5' is not in"),
    "cv above the smallest class": (
        None,
        {"layer": "fc7"},
        FitError,
        r"cv=5 needs at least 5 images in every class; 'b' has 3",
    ),
    "classifier typo": (
        None,
        {"layer": "fc7", "clf": "svn", "cv": 3},
        ParameterError,
        r"`clf` must be one of 'svm', 'logreg', 'ridge', 'mlp', 'sgd', 'head'. "
        r"Got 'svn'.",
    ),
    "jobs zero": (None, {"layer": "fc7", "jobs": 0}, ParameterError, r"`jobs` must"),
    "no labels": (_flat_cache, {}, FitError, "has no labels"),
    "one class": (_single_class_cache, {}, FitError, "one class only"),
    "newer featx": (
        _newer_cache,
        {"layer": "fc7", "cv": 3},
        CacheError,
        "newer featx",
    ),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_explained(tmp_path, labelled_cache, case):
    make, kwargs, error, message = BAD_INPUTS[case]
    cache = make(tmp_path, labelled_cache) if make else labelled_cache
    with pytest.raises(error, match=message):
        fit(cache=cache, save=False, **kwargs)


def test_without_layer_each_is_cross_validated_and_the_best_kept(digits, tmp_path):
    result = fit(
        cache=digits["train_cache"],
        cache_dir=digits["cache_dir"],
        clf="ridge",
        cv=3,
        save=False,
    )
    scores = {s["layer"]: s["cv_accuracy_mean"] for s in result.layer_scores}
    assert set(scores) == {"fc7", "pool5"}
    assert result.layer == max(scores, key=scores.get)
    alone = fit_digits(digits, tmp_path, clf="ridge", cv=3, save=False)
    assert scores["fc7"] == alone.mean("accuracy")


@pytest.mark.slow
def test_without_cache_the_training_folder_by_rule_and_its_test_sibling(
    tmp_path, labelled_cache
):
    cache_dir = tmp_path / "c"
    for name in ("e", "Test"):  # extracted after d, so newer
        write_folder(tmp_path / name, {"x": 3, "y": 3}, seed=len(name))
        extract(
            tmp_path / name,
            layers=["fc7"],
            weights="random",
            cache_dir=cache_dir,
            num_workers=0,
        )
    # d and e both have the held-out sibling Test: the newer is not chosen,
    # the choice is refused with both folders
    with pytest.raises(CacheError, match=r"2 folders .* each with a held-out") as err:
        fit(cache_dir=cache_dir, cv=3, clf="ridge", save=False)
    assert f"{tmp_path / 'd'} (d-random-" in str(err.value)
    assert str(err.value).endswith("--cache chooses one")
    result = fit(
        cache=tmp_path / "e",
        cache_dir=cache_dir,
        cv=3,
        clf="ridge",
        test=tmp_path / "Test",
        save=False,
    )
    assert Path(result.cache).name.startswith("e-")
    assert Path(result.test["cache"]).name.startswith("Test-")
    # with d's cache gone, e is the only training folder
    next(cache_dir.glob("d-*.h5")).unlink()
    result = fit(cache_dir=cache_dir, cv=3, clf="ridge", save=False)
    assert Path(result.cache).name.startswith("e-")
    assert Path(result.test["cache"]).name.startswith("Test-")
    assert result.notes[0].startswith("training on e-") and "--cache" in result.notes[0]
    assert "the only training folder in" in result.notes[0]
    assert result.notes[1].startswith("held-out set: Test-")
    write_folder(tmp_path / "Val", {"x": 3, "y": 3})
    for name in ("Val", "Test"):  # only held-out folders: no training cache
        extract(
            tmp_path / name,
            layers=["fc7"],
            weights="random",
            cache_dir=tmp_path / "c2",
            num_workers=0,
        )
    with pytest.raises(CacheError, match="every cache in .* is of a held-out folder"):
        fit(cache_dir=tmp_path / "c2", cv=3, save=False)


def test_cli_fit_json_and_table(digits, tmp_path):
    runner = CliRunner()
    args = [
        "fit",
        "--clf",
        "logreg",
        "--cache",
        str(digits["train_cache"]),
        "--layer",
        "fc7",
        "--cv",
        "3",
        "--test",
        str(digits["test_cache"]),
        "--out",
        str(tmp_path / "m.skops"),
    ]
    result = runner.invoke(main, [*args, "--json"], catch_exceptions=False)
    data = json.loads(result.output)
    for key in (
        "layer",
        "clf",
        "cv_accuracy_mean",
        "cv_accuracy_std",
        "cv_scores",
        "test_accuracy",
    ):
        assert key in data
    assert data["layer"] == "fc7" and len(data["cv_scores"]["accuracy"]) == 3
    table = runner.invoke(main, args, catch_exceptions=False).output
    assert "mean" in table and "confusion" in table and "m.skops.sha256" in table
    typo = runner.invoke(
        main, ["fit", "--clf", "svn", "--cache", str(digits["train_cache"])]
    )
    assert typo.exit_code == 2
    assert typo.output.strip().splitlines()[-1] == (
        "Error: Invalid value for '--clf': 'svn' is not one of 'svm', 'logreg', "
        "'ridge', 'mlp', 'sgd', 'head'."
    )


def test_final_model_takes_the_value_most_folds_chose():
    assert featx.fit.consensus("svm", [{"C": 0.1}, {"C": 1.0}, {"C": 0.1}]) == 0.1
    # a tie goes to the stronger regularisation (smaller C, larger alpha)
    assert featx.fit.consensus("svm", [{"C": 1.0}, {"C": 0.01}]) == 0.01
    assert featx.fit.consensus("ridge", [{"alpha": 10.0}, {"alpha": 1e3}]) == 1e3


def test_the_old_backend_keyword_still_reaches_the_engine():
    """fit() and make_report() say ``engine``, as extract() does; ``backend=``
    (their word before) still works, with a warning that names the new one."""
    from featx.fit.spec import renamed

    with pytest.warns(DeprecationWarning, match=r"backend= is now engine="):
        options = renamed({"backend": "ray", "cv": 3})
    assert options == {"engine": "ray", "cv": 3}
    assert FitSpec(**options).engine == "ray"
    assert renamed({"engine": "local"}) == {"engine": "local"}
