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


@pytest.mark.slow
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


def test_demo_help_says_what_it_downloads():
    result = CliRunner().invoke(main, ["demo", "--help"])
    text = " ".join(result.output.split())
    assert "bundled digits, offline" not in text
    assert "else downloaded (AlexNet: 233 MB)" in text
    assert "FEATX_OFFLINE set, which skips the attempt" in text


def test_demo_says_its_first_line_before_the_heavy_imports(tmp_path, monkeypatch):
    import sys

    # featx.demo (scikit-learn, then torch) cannot be imported: what the demo
    # printed by then was printed before those imports
    monkeypatch.setitem(sys.modules, "featx.demo", None)
    result = CliRunner().invoke(main, ["demo", "--out", str(tmp_path / "d")])
    assert isinstance(result.exception, ImportError)
    assert result.output.startswith("featx demo: digits → AlexNet features → ")


class Recorder:
    """A Progress that keeps every stage started and every description."""

    def __init__(self):
        self.stages, self.texts = [], []

    def start(self, stage, total):
        self.stages.append(stage)

    def advance(self, n):
        pass

    def describe(self, text):
        self.texts.append(text)

    def finish(self):
        pass


def test_the_fitting_bar_says_which_fit_and_which_fold(tmp_path):
    import shutil
    from pathlib import Path

    from featx.report import make_report

    legacy = Path(__file__).parent / "data" / "legacy" / "cache"
    for name in ("Train-random-12e3d9d749.h5", "Test-random-f9a3db8164.h5"):
        shutil.copy2(legacy / name, tmp_path / name)
    progress = Recorder()
    make_report(
        cache=tmp_path / "Train-random-12e3d9d749.h5",
        test=tmp_path / "Test-random-f9a3db8164.h5",
        cache_dir=tmp_path,
        layers=["fc7"],
        clfs=["logreg"],
        cv=3,
        repeats=1,
        tune=False,
        jobs=1,
        out=tmp_path / "report",
        progress=progress,
    )
    # one bar per stage of the report; each fit's folds are told on its bar
    assert progress.stages == ["fitting", "analysing"]
    assert "fc7 + logreg" in progress.texts
    # the fit's own, after the layer it reads (fit names it first)
    fits = [t for t in progress.texts if t.startswith("fc7 + logreg: ")]
    assert fits[0] == "fc7 + logreg: fc7"
    fits = fits[1:]
    assert fits[0] == "fc7 + logreg: fold 1/3"
    assert [t.split(": accuracy")[0] for t in fits if "done" in t] == [
        f"fc7 + logreg: fold {k}/3 done" for k in (1, 2, 3)
    ]
    assert fits[-1] == "fc7 + logreg: refitting on every row"
