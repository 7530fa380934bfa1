"""`featx fit` over caches of one folder made with several models: each model's
cache is cross-validated on the same folds and the best (model, layer) kept."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner

from featx.cache import CacheError, resolve_caches
from featx.cli import main
from featx.fit import FitError, fit
from tests.conftest import TWO_MODELS, TWO_MODELS_LAYERS, set_model


def cache_of(two_models, model: str, folder: str, cache_dir: Path) -> Path:
    return cache_dir / two_models["caches"][model, folder].name


def test_with_no_cache_each_model_of_the_folder_is_chosen(two_models, models_cache_dir):
    choice = resolve_caches(None, None, models_cache_dir)
    assert [(m.model, m.train.name, m.test.name) for m in choice.models] == [
        (
            model,
            two_models["caches"][model, "Train"].name,
            two_models["caches"][model, "Test"].name,
        )
        for model in TWO_MODELS
    ]
    # the most recent cache is caffe-alexnet's: it is the one `train` names
    assert choice.train.name == two_models["caches"]["caffe-alexnet", "Train"].name
    # one note on the folder and every model's cache of it: no "training on"
    # one cache that the comparison may not keep
    assert not any(n.startswith("training on") for n in choice.notes)
    assert choice.notes[0].startswith(
        f"comparing 2 models on {two_models['Train']}, the only training folder "
        f"in {models_cache_dir}: alexnet (Train-random-"
    )
    assert choice.notes[0].endswith(
        "the most recent cache of each; --models chooses fewer"
    )
    assert choice.notes[1].startswith("held-out sets: Test-random-")
    # named, a cache is used alone, as before
    alone = resolve_caches(choice.train, None, models_cache_dir)
    assert alone.models == [] and alone.test is None and alone.notes == []


def test_fit_keeps_the_best_model_and_layer_and_lists_every_score(
    two_models, models_cache_dir
):
    result = fit(cache_dir=models_cache_dir, clf="ridge", cv=3, save=False)
    scores = {(s["model"], s["layer"]): s for s in result.model_scores}
    assert set(scores) == {(m, la) for m in TWO_MODELS for la in TWO_MODELS_LAYERS}
    means = {k: s["cv_accuracy_mean"] for k, s in scores.items()}
    best = max(means.values())
    assert means[result.model, result.layer] == best
    assert Path(result.cache).name == two_models["caches"][result.model, "Train"].name
    assert Path(result.test["cache"]).name == (
        two_models["caches"][result.model, "Test"].name
    )
    # each model on the same folds as a fit of its cache alone
    for model in TWO_MODELS:
        alone = fit(
            cache=cache_of(two_models, model, "Train", models_cache_dir),
            layer="fc7",
            clf="ridge",
            cv=3,
            save=False,
        )
        assert alone.model == model and alone.model_scores == []
        assert scores[model, "fc7"]["cv_accuracy_mean"] == alone.mean("accuracy")
        assert scores[model, "fc7"]["cv_accuracy_std"] == alone.std("accuracy")
    data = result.to_json()
    assert data["model"] == result.model and data["model_scores"] == result.model_scores


def test_models_chooses_which_are_compared(two_models, models_cache_dir):
    only = fit(
        cache_dir=models_cache_dir, models=["caffe-alexnet"], clf="ridge", cv=3,
        save=False,
    )  # fmt: skip
    assert only.model == "caffe-alexnet" and only.model_scores == []
    assert {s["layer"] for s in only.layer_scores} == set(TWO_MODELS_LAYERS)
    assert only.notes[0].endswith("made with caffe-alexnet; --cache chooses another")
    assert Path(only.test["cache"]).name == (
        two_models["caches"]["caffe-alexnet", "Test"].name
    )
    # a named cache and --models: that cache and the others' of its folder
    both = resolve_caches(
        cache_of(two_models, "alexnet", "Train", models_cache_dir),
        cache_of(two_models, "alexnet", "Test", models_cache_dir),
        models_cache_dir,
        models=["caffe-alexnet", "alexnet"],
    )
    assert [m.model for m in both.models] == ["caffe-alexnet", "alexnet"]
    assert [m.test.name for m in both.models] == [
        two_models["caches"][m, "Test"].name for m in ("caffe-alexnet", "alexnet")
    ]
    with pytest.raises(CacheError, match="no cache of .*Train made with resnet18"):
        fit(cache_dir=models_cache_dir, models=["alexnet", "resnet18"], save=False)
    with pytest.raises(CacheError, match=r"was made with alexnet, which --models"):
        resolve_caches(
            cache_of(two_models, "alexnet", "Train", models_cache_dir),
            None,
            models_cache_dir,
            models=["caffe-alexnet"],
        )


def test_a_cache_of_other_images_is_left_out_with_a_note(two_models, tmp_path):
    from featx import extract
    from tests.conftest import write_folder

    folder = write_folder(tmp_path / "Train", {"a": 4, "b": 4}, seed=3)
    cache_dir = tmp_path / "cache"
    old = extract(folder, layers=["fc7"], weights="random", model="caffe-alexnet",
                  cache_dir=cache_dir, num_workers=0)  # fmt: skip
    write_folder(tmp_path / "Train", {"a": 5, "b": 5}, seed=4)  # more images
    extract(folder, layers=["fc7"], weights="random", cache_dir=cache_dir,
            num_workers=0)  # fmt: skip
    choice = resolve_caches(None, None, cache_dir)
    assert choice.models == []
    left_out = f"left out {old.cache_path.name} (caffe-alexnet) holds other images"
    assert any(n.startswith(left_out) for n in choice.notes), choice.notes
    with pytest.raises(CacheError, match="would not pair; extract it again"):
        resolve_caches(None, None, cache_dir, models=["alexnet", "caffe-alexnet"])


def test_cli_fit_across_models_json_and_table(two_models, models_cache_dir):
    runner = CliRunner()
    args = ["fit", "--cache-dir", str(models_cache_dir), "--clf", "ridge", "--cv", "3",
            "--layer", "fc7", "--out", str(models_cache_dir / "m.skops")]  # fmt: skip
    done = runner.invoke(main, [*args, "--json"], catch_exceptions=False)
    data = json.loads(done.stdout)
    assert data["model"] in TWO_MODELS
    assert [(s["model"], s["layer"]) for s in data["model_scores"]] == [
        (m, "fc7") for m in TWO_MODELS
    ]
    table = runner.invoke(main, args, catch_exceptions=False).stdout
    assert "models and layers compared (3-fold CV accuracy), best kept:" in table
    assert table.count("<- best") == 1 and f"model: {data['model']}" in table
    for model in TWO_MODELS:
        assert f"\n  {model:<15}fc7 " in table
    # the model file says which network its features come from
    from featx.predict.modelfile import read_model

    _, meta = read_model(models_cache_dir / "m.skops")
    assert meta.model == data["model"]


def test_one_model_prints_and_writes_as_before(two_models, models_cache_dir):
    cache = cache_of(two_models, "alexnet", "Train", models_cache_dir)
    args = ["fit", "--cache", str(cache), "--clf", "ridge", "--cv", "3"]
    runner = CliRunner()
    out = ["--out", str(models_cache_dir / "m.skops")]
    data = json.loads(runner.invoke(main, [*args, *out, "--json"]).stdout)
    assert "model_scores" not in data and data["model"] == "alexnet"
    assert [s["layer"] for s in data["layer_scores"]] == ["fc7", "pool5"]
    table = runner.invoke(main, [*args, *out])
    assert "layers compared (3-fold CV accuracy), best kept:" in table.stdout
    assert "models and layers" not in table.stdout
    assert f"\ncache: {cache.name}   layer: " in table.stdout


def test_the_head_refuses_a_cache_of_another_network(two_models, models_cache_dir):
    cache = cache_of(two_models, "caffe-alexnet", "Train", models_cache_dir)
    set_model(cache, "resnet18")
    result = CliRunner().invoke(
        main, ["fit", "--clf", "head", "--cache", str(cache), "--cv", "3"]
    )
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [
        "Error: --clf head fine-tunes AlexNet's fc6-fc8 on pool5; this cache is of "
        f"resnet18 ({cache.name}), which has no such head; choose another --clf "
        "(svm, logreg, ridge, mlp, sgd)"
    ]
    with pytest.raises(FitError, match="this cache is of resnet18"):
        fit(cache=cache, clf="head", layer="pool5", save=False)


def test_across_models_the_head_leaves_other_networks_out(
    two_models, models_cache_dir, monkeypatch
):
    """Which caches the head runs on (its fit is tested in test_head.py: here
    each fold fits ridge in its place, to stay fast)."""
    import featx.fit.run

    ran = []
    real = featx.fit.run.cross_validate

    def as_ridge(train, layer, labels, spec):
        ran.append((train.meta.model, layer, spec.source.get("model")))
        return real(train, layer, labels, replace(spec, clf="ridge", source={}))

    monkeypatch.setattr(featx.fit.run, "cross_validate", as_ridge)
    for folder in ("Train", "Test"):
        set_model(cache_of(two_models, "caffe-alexnet", folder, models_cache_dir),
                  "resnet18")  # fmt: skip
    result = fit(cache_dir=models_cache_dir, clf="head", cv=3, save=False)
    assert ran == [("alexnet", "pool5", "alexnet")]
    assert result.model == "alexnet" and result.layer == "pool5"
    assert result.model_scores == []  # one model was left to compare
    assert any(
        note.startswith("left out resnet18: clf='head' fine-tunes AlexNet's fc6-fc8")
        for note in result.notes
    ), result.notes
    with pytest.raises(FitError, match="this cache is of resnet18"):
        fit(cache_dir=models_cache_dir, models=["resnet18"], clf="head", save=False)


def test_an_exact_tie_between_models_goes_to_the_first(two_models, models_cache_dir):
    """A copy of alexnet's caches recorded as another network scores the same
    on every fold: the model listed first wins."""
    import shutil

    for folder in ("Train", "Test"):
        cache = cache_of(two_models, "alexnet", folder, models_cache_dir)
        twin = shutil.copy2(cache, cache.with_name(f"{folder}-twin-{cache.name}"))
        set_model(Path(twin), "twin")
    for models in (["twin", "alexnet"], ["alexnet", "twin"]):
        result = fit(
            cache_dir=models_cache_dir, models=models, clf="ridge", cv=3, save=False
        )
        scores = {(s["model"], s["layer"]): s["cv_accuracy_mean"]
                  for s in result.model_scores}  # fmt: skip
        assert scores["twin", "fc7"] == scores["alexnet", "fc7"]
        assert result.model == models[0]
        assert Path(result.cache).name.startswith("Train-twin-" if models[0] == "twin"
                                                  else "Train-random-")  # fmt: skip
