import json

import pytest
from click.testing import CliRunner

from featx.cli import main


@pytest.mark.slow
def test_demo_offline_makes_a_complete_report(tmp_path):
    out = tmp_path / "demo"
    result = CliRunner().invoke(
        main,
        [
            "demo",
            "--out",
            str(out),
            "--per-class",
            "12",
            "--cv",
            "3",
            "-q",
            "--workers",
            "0",
        ],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    assert "Continuing with random weights" in result.output
    assert "alexnet-owt-7be5be79.pth" in result.output
    document = json.loads((out / "report" / "results.json").read_text())
    rows = document["results"]
    assert {"best", "learning_curve", "layer_similarity"} <= set(document)
    assert {(r["layer"], r["clf"]) for r in rows} == {
        (layer, clf)
        for layer in ("conv5_avg", "fc6", "fc7")
        for clf in ("svm", "logreg", "mlp")
    }
    assert all(r["test_accuracy"] is not None for r in rows)
    assert max(r["cv_accuracy_mean"] for r in rows) > 0.5
    html = (out / "report" / "report.html").read_text()
    assert 'id="random-weights"' in html
    assert (out / "data" / "Train" / "9").is_dir() and (out / "data" / "Test").is_dir()
    assert f"Open {out / 'report' / 'report.html'}" in result.output


def test_demo_extracts_every_layer_in_one_pass_per_folder(tmp_path, monkeypatch):
    import featx.images
    import featx.report
    from featx.cache import FeatureCache
    from featx.demo import DEMO_KEYS, run_demo

    decoded = []
    real = featx.images.decode_image
    monkeypatch.setattr(
        featx.images,
        "decode_image",
        lambda f, **kw: decoded.append(str(f)) or real(f, **kw),
    )
    asked = {}
    monkeypatch.setattr(
        featx.report, "make_report", lambda **kw: asked.update(kw) or "report"
    )
    run_demo(tmp_path, per_class=5, num_workers=0, weights="random")
    images = sorted(str(p.resolve()) for p in (tmp_path / "data").rglob("*.png"))
    assert len(images) == 50
    assert sorted(str(type(tmp_path)(p).resolve()) for p in decoded) == images
    for cache in (asked["cache"], asked["test"]):
        with FeatureCache(cache) as opened:
            assert set(DEMO_KEYS) <= set(opened.complete_layers())
    assert asked["layers"] == DEMO_KEYS


def test_demo_models_extracts_each_and_reports_across_them(tmp_path, monkeypatch):
    import featx.report
    from featx.cache import FeatureCache, list_caches
    from featx.demo import DEMO_KEYS, run_demo

    asked = {}
    monkeypatch.setattr(
        featx.report, "make_report", lambda **kw: asked.update(kw) or "report"
    )
    run_demo(
        tmp_path, per_class=5, num_workers=0, weights="random",
        models=["alexnet", "caffe-alexnet"],
    )  # fmt: skip
    assert asked["models"] == ["alexnet", "caffe-alexnet"]
    assert asked["layers"] is None  # each model's own layers
    made = {}
    for path in list_caches(asked["cache_dir"]):
        with FeatureCache(path) as cache:
            assert set(DEMO_KEYS) <= set(cache.complete_layers())
            made[cache.meta.model, cache.meta.data_root] = path
    train, test = tmp_path / "data" / "Train", tmp_path / "data" / "Test"
    assert set(made) == {
        (m, str(f.resolve()))
        for m in ("alexnet", "caffe-alexnet")
        for f in (train, test)
    }
    assert asked["cache"] == made["alexnet", str(train.resolve())]
    assert asked["test"] == made["alexnet", str(test.resolve())]


@pytest.mark.slow
def test_demo_models_ranks_both_in_one_report(tmp_path):
    out = tmp_path / "demo"
    result = CliRunner().invoke(
        main,
        ["demo", "--out", str(out), "--models", "alexnet,caffe-alexnet",
         "--per-class", "5", "--cv", "3", "-q", "--workers", "0"],
        catch_exceptions=False,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "caffe-alexnet has no weights to download" in result.output
    rows = json.loads((out / "report" / "results.json").read_text())["results"]
    assert {(r["model"], r["layer"]) for r in rows} == {
        (m, layer)
        for m in ("alexnet", "caffe-alexnet")
        for layer in ("conv5_avg", "fc6", "fc7")
    }
    text = (out / "report" / "report.md").read_text()
    assert "| model | layer | classifier |" in text
