"""`featx report` over caches of one folder made with several models: every
(model, layer, classifier) ranked in one table, with the intervals and ties of
one model's report; with one model, the report as it was."""

from __future__ import annotations

import csv
import json
import shlex
import shutil
from contextlib import ExitStack
from pathlib import Path

import pytest
from click.testing import CliRunner

from featx.cli import main
from featx.fit.compare import paired_p
from featx.report import COLUMNS, ReportError, ReportSpec, make_report
from tests.conftest import TWO_MODELS, set_model

CLFS = ["ridge", "logreg"]
#: The layers of the caches, shallow to deep, as a report orders them.
LAYERS = ["pool5", "fc7"]


def copy_caches(two_models, folder: Path) -> Path:
    folder.mkdir()
    for path in two_models["caches"].values():
        shutil.copy2(path, folder / path.name)
    return folder


@pytest.fixture(scope="module")
def cross(two_models, tmp_path_factory):
    cache_dir = copy_caches(two_models, tmp_path_factory.mktemp("cross") / "cache")
    return make_report(
        cache_dir=cache_dir, clfs=CLFS, cv=3, repeats=2,
        out=cache_dir.parent / "report",
    )  # fmt: skip


@pytest.mark.slow
def test_every_model_layer_and_classifier_in_one_table(cross, two_models):
    assert cross.models == list(TWO_MODELS)
    assert [(r.model, r.layer, r.clf) for r in cross.rows] == [
        (m, la, c) for m in TWO_MODELS for la in LAYERS for c in CLFS
    ]
    best = max(cross.rows, key=lambda r: r.cv_accuracy_mean)
    assert cross.best.cv_accuracy_mean == best.cv_accuracy_mean
    for row in cross.rows:  # every row against the one best, on the same folds
        if row is not cross.best:
            assert row.p_vs_best == paired_p(
                cross.best.cv_scores["accuracy"], row.cv_scores["accuracy"], 3
            )
            assert row.tied_with_best == (row.p_vs_best >= 0.05)
    document = json.loads((cross.out / "results.json").read_text())
    assert document["best"] == {
        "layer": cross.best.layer, "clf": cross.best.clf, "model": cross.best.model
    }  # fmt: skip
    assert [r["model"] for r in document["results"]] == [r.model for r in cross.rows]
    assert len(document["layer_similarity"]) == 4  # 2 models x 2 layers
    assert {p["model"] for p in document["learning_curve"]} == set(TWO_MODELS)
    with (cross.out / "results.csv").open() as f:
        table = list(csv.reader(f))
    assert table[0] == ["model", *COLUMNS] and len(table) == 9
    with (cross.out / "predictions.csv").open() as f:
        predictions = list(csv.DictReader(f))
    assert {p["model"] for p in predictions} == set(TWO_MODELS)
    assert len(predictions) == 8 * 30


@pytest.mark.slow
def test_rows_equal_each_models_report_alone(cross, two_models, tmp_path):
    """The same folds, intervals and scores as a report of one cache."""
    for model in TWO_MODELS:
        cache_dir = copy_caches(two_models, tmp_path / model)
        alone = make_report(
            cache=cache_dir / two_models["caches"][model, "Train"].name,
            test=cache_dir / two_models["caches"][model, "Test"].name,
            cache_dir=cache_dir, clfs=CLFS, cv=3, repeats=2, out=tmp_path / model / "r",
        )  # fmt: skip
        mine = [r for r in cross.rows if r.model == model]
        assert [(r.layer, r.clf) for r in alone.rows] == [
            (r.layer, r.clf) for r in mine
        ]
        for a, b in zip(alone.rows, mine, strict=True):
            assert a.model == model
            assert a.cv_scores == b.cv_scores
            assert a.cv_accuracy_ci95 == b.cv_accuracy_ci95
            assert a.test_accuracy == b.test_accuracy


def test_the_pages_name_the_model_of_each_row(cross, two_models):
    text = (cross.out / "report.md").read_text()
    assert "| model | layer | classifier | CV accuracy" in text
    assert " (95% CI " in text and "\\(95% CI" not in text  # numbers unescaped
    for model in TWO_MODELS:
        assert f"| {model} | fc7 | ridge |" in text
        assert f"![PCA projection of {model} fc7](pca_{model}_fc7.png)" in text
        assert (cross.out / f"pca_{model}_pool5.png").is_file()
    assert "compared on the same images and the same folds" in text
    assert f"## Per class: {cross.best.model} {cross.best.layer} + " in text
    assert "WARNING: The features of alexnet, caffe-alexnet come from RANDOM" in text
    html = cross.files["html"].read_text()
    assert '<table id="results" class="models">' in html
    assert 'id="random-weights"' in html


def test_provenance_names_each_models_weights_and_the_commands(cross, two_models):
    text = (cross.out / "report.md").read_text()
    section = text[text.index("## Provenance") :]
    lines = [x for x in section.splitlines() if x.startswith("- Model ")]
    assert [x.split(" ")[2] for x in lines] == ["alexnet", "caffe-alexnet"]
    for line, model in zip(lines, TWO_MODELS, strict=True):
        assert "random\\(seed=0\\)" in line and "NOT pretrained" in line
        assert two_models["caches"][model, "Train"].name in line
        assert two_models["caches"][model, "Test"].name in line
    commands = section[section.index("```sh") + 6 : section.rindex("```")]
    commands = [shlex.split(c) for c in commands.replace("\\\n", " ").splitlines()]
    extracts = [c for c in commands if c[:2] == ["featx", "extract"]]
    assert len(extracts) == 4  # train and test of each model
    assert sum("--model" in c for c in extracts) == 2
    assert all(c[c.index("--model") + 1] == "caffe-alexnet" for c in extracts
               if "--model" in c)  # fmt: skip
    report = commands[-1]
    assert report[report.index("--models") + 1] == "alexnet,caffe-alexnet"
    # the reproduce command makes the same comparison again
    ctx = main.commands["report"].make_context("report", report[2:])
    spec = ReportSpec.from_cli(ctx.params)
    assert spec.models == list(TWO_MODELS) and spec.layers == LAYERS


@pytest.mark.slow
def test_one_model_report_is_as_before(two_models, tmp_path):
    cache_dir = copy_caches(two_models, tmp_path / "cache")
    report = make_report(
        cache=cache_dir / two_models["caches"]["alexnet", "Train"].name,
        cache_dir=cache_dir, clfs=["ridge"], cv=3, repeats=1, out=tmp_path / "r",
    )  # fmt: skip
    assert report.models == ["alexnet"]
    assert {r.model for r in report.rows} == {"alexnet"}
    text = (report.out / "report.md").read_text()
    assert "| layer | classifier | CV accuracy" in text and "| model |" not in text
    assert " (95% CI " in text and "\\(95% CI" not in text  # numbers unescaped
    assert ".models" not in report.files["html"].read_text()
    assert "![PCA projection of fc7](pca_fc7.png)" in text
    assert "- Model: alexnet (torchvision's AlexNet, 224 input)" in text
    assert "- Cache: " in text and "--models" not in text
    assert "compared on the same images" not in text
    document = json.loads((report.out / "results.json").read_text())
    assert set(document["best"]) == {"layer", "clf"}
    assert all("model" not in p for p in document["learning_curve"])
    with (report.out / "results.csv").open() as f:
        assert next(csv.reader(f)) == list(COLUMNS)
    with (report.out / "predictions.csv").open() as f:
        assert next(csv.reader(f)) == ["layer", "clf", "path", "true", "predicted",
                                       "score"]  # fmt: skip


@pytest.mark.slow
def test_models_filters_and_orders_the_comparison(two_models, tmp_path):
    cache_dir = copy_caches(two_models, tmp_path / "cache")
    result = CliRunner().invoke(
        main,
        ["report", "--cache-dir", str(cache_dir), "--models", "caffe-alexnet,alexnet",
         "--layers", "fc7", "--clfs", "ridge", "--cv", "3", "--repeats", "1",
         "--out", str(tmp_path / "r"), "-q"],
        catch_exceptions=False,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    table = [x for x in result.stdout.splitlines() if x.startswith("  ") and "[" in x]
    assert [x.split()[:3] for x in table] == [
        ["caffe-alexnet", "fc7", "ridge"],
        ["alexnet", "fc7", "ridge"],
    ]
    alone = make_report(
        cache_dir=cache_dir, models=["alexnet"], clfs=["ridge"], layers=["fc7"],
        cv=3, repeats=1, out=tmp_path / "a",
    )  # fmt: skip
    assert alone.models == ["alexnet"] and len(alone.rows) == 1
    assert (alone.out / "pca_fc7.png").is_file()


def test_a_network_without_the_head_gets_no_head_rows(two_models, tmp_path):
    from featx.cache import resolve_caches
    from featx.report.plan import open_sources, plan_fits

    cache_dir = copy_caches(two_models, tmp_path / "cache")
    for folder in ("Train", "Test"):
        set_model(cache_dir / two_models["caches"]["caffe-alexnet", folder].name,
                  "resnet18")  # fmt: skip
    choice = resolve_caches(None, None, cache_dir)
    notes = []
    spec = ReportSpec(clfs=["head", "ridge"])
    with ExitStack() as stack:
        sources = open_sources(choice, None, stack, notes)
        plan = plan_fits(sources, spec, notes)
    assert plan["alexnet", "pool5"] == [("head", None), ("ridge", None)]
    assert plan["resnet18", "pool5"] == [("ridge", None)]
    assert notes == [
        "no head rows for resnet18: clfs='head' fine-tunes AlexNet's fc6-fc8 on pool5"
    ]
    with pytest.raises(ReportError, match=(
        r"^clfs='head' fine-tunes AlexNet's fc6-fc8 on pool5, and the report's "
        r"caches are of resnet18; add another classifier$"
    )):  # fmt: skip
        make_report(cache_dir=cache_dir, models=["resnet18"], clfs=["head"],
                    out=tmp_path / "h")  # fmt: skip
    # a network the report has no words for is named as it is
    report = make_report(
        cache_dir=cache_dir, clfs=["ridge"], layers=["fc7"], cv=3, repeats=1,
        out=tmp_path / "r",
    )  # fmt: skip
    assert report.models == ["alexnet", "resnet18"]
    text = (report.out / "report.md").read_text()
    assert "- Model resnet18: random\\(seed=0\\)" in text
    assert "--model resnet18 --weights random --seed 0" in text.replace("\\\n    ", "")


@pytest.mark.slow
def test_alexnet_and_resnet18_rank_in_one_table(two_models, tmp_path):
    from featx import extract

    cache_dir = copy_caches(two_models, tmp_path / "cache")
    for folder in ("Train", "Test"):
        extract(two_models[folder], layers=["layer4", "avgpool"], spatial="avg",
                weights="random", model="resnet18", cache_dir=cache_dir,
                num_workers=0)  # fmt: skip
    report = make_report(
        cache_dir=cache_dir, models=["alexnet", "resnet18"], clfs=["ridge"], cv=3,
        repeats=1, out=tmp_path / "r",
    )  # fmt: skip
    # avgpool_avg is layer4_avg averaged again: compared once, with a note
    assert [(r.model, r.layer) for r in report.rows] == [
        ("alexnet", "pool5"), ("alexnet", "fc7"), ("resnet18", "layer4_avg"),
    ]  # fmt: skip
    assert (
        "resnet18: avgpool_avg holds the same numbers as layer4_avg (recorded by "
        "extract on its first batch): compared once, as layer4_avg"
    ) in report.notes
    assert all(r.test_accuracy is not None for r in report.rows)
    assert sum(r is report.best for r in report.rows) == 1
    text = (report.out / "report.md").read_text()
    assert "| resnet18 | layer4\\_avg | ridge |" in text
    assert "- Model resnet18: random\\(seed=0\\)" in text
    flat = text.replace(" \\\n    ", " ")
    assert "--layer layer4 --spatial avg --model resnet18" in flat  # as compared
    # --layers of either network: each is compared on those it holds
    mixed = make_report(
        cache_dir=cache_dir, models=["alexnet", "resnet18"], clfs=["ridge"], cv=3,
        repeats=1, layers=["fc7", "avgpool_avg"], out=tmp_path / "m",
    )  # fmt: skip
    assert [(r.model, r.layer) for r in mixed.rows] == [
        ("alexnet", "fc7"), ("resnet18", "avgpool_avg")
    ]  # fmt: skip
    assert (mixed.reused, mixed.computed) == (1, 1)
    lacks = [n for n in mixed.notes if " has no " in n]
    assert [n.split("'")[0] + ": " + n.rsplit(" ", 1)[1] for n in lacks] == [
        "alexnet: avgpool_avg", "resnet18: fc7"
    ]  # fmt: skip


def test_layers_of_either_model_and_a_layer_of_none(two_models, tmp_path):
    cache_dir = copy_caches(two_models, tmp_path / "cache")
    with pytest.raises(ReportError, match=r"lacks fc6; extract first: featx extract"):
        make_report(cache_dir=cache_dir, layers=["fc7", "fc6"], clfs=["ridge"],
                    out=tmp_path / "r")  # fmt: skip


def _figure_rows():
    """Two models with different layers, intervals that reach 1.0."""
    from tests.test_report import result_row

    rows, columns = [], []
    for model, layers, base in [("alexnet", ["pool5", "fc7"], 0.93),
                                ("resnet18", ["layer4_avg"], 0.7)]:  # fmt: skip
        for layer in layers:
            columns.append((model, layer))
            for clf in CLFS:
                row = result_row(layer, clf, [base] * 6, 512)
                row.model = model
                row.cv_accuracy_ci95 = [base - 0.1, min(1.0, base + 0.1)]
                row.test_accuracy = base
                rows.append(row)
    return rows, columns


def test_fig1_has_a_panel_per_model_and_holds_every_interval():
    from featx.report.figures import accuracy_figure

    rows, columns = _figure_rows()
    fig = accuracy_figure(rows, columns, CLFS)
    try:
        axes = fig.axes
        assert [a.get_xlabel() for a in axes] == ["alexnet layer", "resnet18 layer"]
        assert [[t.get_text() for t in a.get_xticklabels()] for a in axes] == [
            ["pool5", "fc7"], ["layer4_avg"]
        ]  # fmt: skip
        # one line per classifier in each model's panel: none joins two models
        assert [len(a.get_lines()) for a in axes] == [len(CLFS) * 3, len(CLFS) * 3]
        assert {len(a.get_lines()[0].get_xdata()) for a in axes} == {2, 1}
        low, high = axes[0].get_ylim()
        assert axes[1].get_ylim() == (low, high)
        ends = [e for r in rows for e in r.cv_accuracy_ci95]
        assert low < min(ends) and high > max(ends) == 1.0  # the caps show whole
        assert fig._suptitle.get_text() == (
            "Accuracy by model and layer, 95% intervals (x: test)"
        )
    finally:
        import matplotlib.pyplot as plt

        plt.close(fig)


def test_fig1_caption_is_its_title(cross):
    from featx.report.figures import accuracy_title
    from featx.report.render import md

    title = accuracy_title(True, True)
    assert title.startswith("Accuracy by model and layer")
    text = (cross.out / "report.md").read_text()
    assert f"![{md('Fig. 1: ' + title)}](accuracy_by_layer.png)" in text
