import csv
import json
import os
import re
import shutil
import subprocess

import pytest
from click.testing import CliRunner

from featx import extract
from featx.cli import main
from featx.fit import fit
from featx.report import ReportError, make_report
from featx.report.render import md
from tests.conftest import write_folder

XSS = "<img src=x onerror=alert(1)>"


def chromium_dom(html_path, tmp_path) -> str:
    """The DOM of a page after it loaded, from headless Chromium."""
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        if os.environ.get("FEATX_REQUIRE_CHROMIUM"):
            pytest.fail("chromium is required here (FEATX_REQUIRE_CHROMIUM is set)")
        pytest.skip("chromium is not installed")
    cmd = [
        exe,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        "--virtual-time-budget=5000",
        "--dump-dom",
        html_path.resolve().as_uri(),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True)
    return done.stdout


@pytest.fixture(scope="module")
def report(digits, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    return make_report(
        cache=digits["train_cache"],
        test=digits["test_cache"],
        cache_dir=digits["cache_dir"],
        layers=["pool5", "fc7"],
        clfs=["svm", "logreg"],
        cv=3,
        repeats=2,
        out=out,
    )


def test_report_files(report):
    names = {p.name for p in report.out.iterdir()}
    assert {
        "report.md",
        "report.html",
        "results.json",
        "results.csv",
        "accuracy_by_layer.png",
        "confusion_best.png",
        "fit_time.png",
        "pca_pool5.png",
        "pca_fc7.png",
        "confusion_all.png",
        "learning_curve.png",
        "layer_similarity.png",
        "predictions.csv",
    } <= names
    rows = json.loads((report.out / "results.json").read_text())["results"]
    assert [(r["layer"], r["clf"]) for r in rows] == [
        ("pool5", "svm"),
        ("pool5", "logreg"),
        ("fc7", "svm"),
        ("fc7", "logreg"),
    ]
    with (report.out / "results.csv").open() as f:
        table = list(csv.DictReader(f))
    assert len(table) == 4 and float(table[0]["test_accuracy"]) > 0.5
    assert set(table[0]) >= {
        "cv_accuracy_mean",
        "cv_accuracy_std",
        "cv_f1_macro_mean",
        "fit_time_mean",
        "test_accuracy",
    }
    text = (report.out / "report.md").read_text()
    assert "RANDOM weights" in text and "featx report --cache" in text
    assert "featx extract" in text and "--weights random --seed 0" in text
    assert "3-fold stratified cross-validation" in text and "How the best" in text


def test_results_match_featx_fit_json(report, digits, tmp_path):
    runner = CliRunner()
    out = runner.invoke(
        main,
        [
            "fit",
            "--cache",
            str(digits["train_cache"]),
            "--layer",
            "fc7",
            "--clf",
            "logreg",
            "--cv",
            "3",
            "--repeats",
            "2",
            "--test",
            str(digits["test_cache"]),
            "--json",
            "--out",
            str(tmp_path / "m.skops"),
        ],
        catch_exceptions=False,
    )
    from_fit = json.loads(out.output)
    row = next(r for r in report.rows if (r["layer"], r["clf"]) == ("fc7", "logreg"))
    for key in ("cv_scores", "cv_accuracy_mean", "cv_accuracy_std", "test_accuracy"):
        assert row[key] == from_fit[key]


@pytest.mark.slow
def test_results_are_reused_unless_forced(report, digits, monkeypatch, tmp_path):
    calls = []
    real = fit

    def counting(**kw):
        calls.append(kw)
        return real(**kw)

    monkeypatch.setattr("featx.report.store.fit", counting)
    again = make_report(
        cache=digits["train_cache"],
        test=digits["test_cache"],
        cache_dir=digits["cache_dir"],
        layers=["pool5", "fc7"],
        clfs=["svm", "logreg"],
        cv=3,
        out=tmp_path / "again",
    )
    assert (again.reused, again.computed, len(calls)) == (4, 0, 0)
    assert again.rows == report.rows
    forced = make_report(
        cache=digits["train_cache"],
        cache_dir=digits["cache_dir"],
        layers=["fc7"],
        clfs=["svm"],
        cv=3,
        out=tmp_path / "f",
        force=True,
    )
    assert forced.computed == 1 and len(calls) == 1


def test_missing_layer_says_which_extract_to_run(digits, tmp_path):
    with pytest.raises(
        ReportError,
        match=r"lacks conv5_avg; extract first: featx "
        r"extract .*Train --layer conv5 --spatial avg "
        r"--weights random --seed 0",
    ):
        make_report(
            cache=digits["train_cache"],
            cache_dir=digits["cache_dir"],
            layers=["conv5_avg", "fc7"],
            out=tmp_path / "r",
        )


def test_statistics_match_independent_computations(report, digits):
    import numpy as np
    from scipy import stats
    from sklearn.metrics import precision_recall_fscore_support

    from featx import read_layer

    document = json.loads((report.out / "results.json").read_text())
    rows = document["results"]
    X, y, paths, classes = read_layer(digits["train_cache"], "fc7")
    with (report.out / "predictions.csv").open() as f:
        predictions = list(csv.DictReader(f))
    assert len(predictions) == 4 * len(y)
    for r in rows:
        assert len(r["cv_scores"]["accuracy"]) == 3 * 2  # 3 folds x 2 repeats
        mine = [
            p for p in predictions if (p["layer"], p["clf"]) == (r["layer"], r["clf"])
        ]
        assert [p["path"] for p in mine] == paths
        pred = [classes.index(p["predicted"]) for p in mine]
        prec, rec, f1, support = precision_recall_fscore_support(
            y, pred, labels=range(len(classes)), zero_division=0
        )
        for i, name in enumerate(classes):
            got = r["per_class"][name]
            assert got["support"] == support[i]
            np.testing.assert_allclose(
                [got["precision"], got["recall"], got["f1"]], [prec[i], rec[i], f1[i]]
            )
        # Nadeau-Bengio corrected interval, computed here from the fold scores
        a = np.array(r["cv_scores"]["accuracy"])
        half = stats.t.ppf(0.975, len(a) - 1) * np.sqrt(
            (1 / len(a) + 1 / (3 - 1)) * a.var(ddof=1)
        )
        expected = [max(0, a.mean() - half), min(1, a.mean() + half)]
        np.testing.assert_allclose(r["cv_accuracy_ci95"], expected)
    best = next(r for r in rows if r["layer"] == document["best"]["layer"]
                and r["clf"] == document["best"]["clf"])  # fmt: skip
    assert best["tied_with_best"] and best["cv_accuracy_mean"] == max(
        r["cv_accuracy_mean"] for r in rows
    )
    # linear CKA in feature space (the report works in row space)
    P = read_layer(digits["train_cache"], "pool5").features.astype(np.float64)
    F = X.astype(np.float64)
    P, F = P - P.mean(0), F - F.mean(0)
    cka = np.linalg.norm(F.T @ P) ** 2 / (
        np.linalg.norm(P.T @ P) * np.linalg.norm(F.T @ F)
    )
    np.testing.assert_allclose(document["layer_similarity"][0][1], cka, atol=1e-4)
    curve = document["learning_curve"]
    assert {(p["layer"], p["n_per_class"]) for p in curve} >= {("fc7", 5), ("pool5", 5)}
    for p in curve:
        low, high = p["accuracy_ci95"]
        assert 0 <= low <= p["accuracy_mean"] <= high <= 1


def test_html_opens_in_chromium_with_every_figure(report, tmp_path):
    dom = chromium_dom(report.files["html"], tmp_path)
    total = re.search(r'data-images-total="(\d+)"', dom)
    loaded = re.search(r'data-images-loaded="(\d+)"', dom)
    assert total and loaded, dom[:500]
    n_figures = 8  # 5 kinds, the similarity map and 2 PCA projections
    thumbs = sum(1 for item in report.analyses["gallery"]["items"] if item["src"])
    assert thumbs > 0 and 'id="gallery"' in dom
    assert int(total.group(1)) == n_figures + thumbs == int(loaded.group(1))
    table = re.search(r'<table id="results">(.*?)</table>', dom, re.S).group(1)
    assert table.count("<tr") == 5
    assert 'id="random-weights"' in dom
    html = report.files["html"].read_text()
    assert "http://" not in html and "https://" not in html  # opens offline


@pytest.mark.slow
def test_untrusted_names_are_text(tmp_path, state_dict_file):
    folder = write_folder(tmp_path / "data", {XSS: 5, "b*_[x](y)": 5})
    result = extract(
        folder,
        layers=["fc7"],
        weights=str(state_dict_file),
        cache_dir=tmp_path / "c",
        num_workers=0,
    )
    rep = make_report(
        cache=result.cache_path,
        cache_dir=tmp_path / "c",
        clfs=["svm"],
        cv=2,
        out=tmp_path / "r",
    )
    html = rep.files["html"].read_text()
    assert XSS not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    assert 'id="random-weights"' not in html  # a weights file counts as pretrained
    dom = chromium_dom(rep.files["html"], tmp_path)
    assert '<img src="x"' not in dom and "&lt;img src=x onerror=alert(1)&gt;" in dom
    text = rep.files["md"].read_text()
    assert XSS not in text and md(XSS) in text and "b\\*\\_\\[x\\]\\(y\\)" in text


def test_report_cli(report, digits, tmp_path):
    result = CliRunner().invoke(
        main,
        [
            "report",
            "--cache",
            str(digits["train_cache"]),
            "--test",
            str(digits["test_cache"]),
            "--cache-dir",
            str(digits["cache_dir"]),
            "--layers",
            "pool5,fc7",
            "--clfs",
            "svm,logreg",
            "--cv",
            "3",
            "--out",
            str(tmp_path / "r"),
            "-q",
        ],
        catch_exceptions=False,
    )
    assert result.exit_code == 0
    assert "4 results (0 computed, 4 reused)" in result.output, result.output
    assert "report.html" in result.output


# ------------------------------------------------ the headline and the gallery


def result_row(layer, clf, accuracies, n_features):
    """A report row with these fold accuracies (3-fold CV × 2 repeats)."""
    from featx.report.records import ResultRow

    mean = sum(accuracies) / len(accuracies)
    return ResultRow(
        cache="c.h5", layer=layer, clf=clf, n_rows=90, n_features=n_features,
        classes=["a", "b"], cv=3, seed=0, scale="standard", pca=None, tuned=True,
        cv_scores={"accuracy": accuracies, "f1_macro": accuracies},
        fit_times=[0.1] * len(accuracies), cv_accuracy_mean=mean,
        cv_accuracy_std=0.01, cv_f1_macro_mean=mean, cv_f1_macro_std=0.01,
        fit_time_mean=0.1, cv_accuracy_ci95=[mean - 0.05, mean + 0.05], repeats=2,
        classifier=clf,
    )  # fmt: skip


DEPTH = {"pool5": 0, "fc6": 1, "fc7": 2}


def decided(rows):
    from featx.fit.compare import decide

    return decide(rows, lambda r: DEPTH[r.layer])


def ranked(rows):
    return decided(rows).best


def test_headline_says_no_clear_winner_when_everything_ties():
    from featx.report.render import headline

    rows = [
        result_row("pool5", "svm", [0.81, 0.79, 0.80, 0.82, 0.78, 0.80], 9216),
        result_row("fc6", "logreg", [0.80, 0.80, 0.79, 0.81, 0.79, 0.80], 4096),
        result_row("fc7", "mlp", [0.79, 0.80, 0.81, 0.80, 0.78, 0.81], 4096),
        result_row("fc7", "logreg", [0.80, 0.79, 0.80, 0.81, 0.79, 0.79], 4096),
    ]
    verdict = decided(rows)
    best = verdict.best
    line = headline(verdict, rows)
    assert line.startswith(
        "No clear winner: 4 of 4 combinations are statistically tied with the "
        "best; the simplest of them is fc6 + logreg"  # fewest features, then clf
    )
    assert "Best" not in line
    assert f"highest mean: {best.layer} + {best.clf}" in line


def test_headline_names_the_best_only_when_it_beats_every_other():
    from featx.report.render import headline

    rows = [
        result_row("pool5", "svm", [0.95, 0.96, 0.95, 0.96, 0.95, 0.96], 9216),
        result_row("fc6", "logreg", [0.60, 0.61, 0.60, 0.62, 0.61, 0.60], 4096),
        result_row("fc7", "logreg", [0.62, 0.61, 0.60, 0.61, 0.60, 0.62], 4096),
    ]
    verdict = decided(rows)
    best = verdict.best
    assert not any(r.tied_with_best for r in rows if r is not best)
    assert headline(verdict, rows).startswith("Best: pool5 + svm, CV accuracy 0.9550")


def test_exact_ties_follow_the_stated_rule_in_headline_and_table():
    """Equal fold scores: the simpler classifier, then the shallower layer
    (TIE_RULE); the headline names the row the table marks."""
    from featx.report.render import _table_rows, headline

    same = [0.80, 0.82, 0.78, 0.81, 0.79, 0.80]
    rows = [
        result_row("fc7", "logreg", same, 4096),
        result_row("fc6", "logreg", same, 4096),  # shallower than fc7
        result_row("fc6", "svm", same, 4096),
        result_row("pool5", "mlp", [0.5, 0.52, 0.49, 0.5, 0.51, 0.5], 9216),
    ]
    verdict = decided(rows)
    assert (verdict.best.layer, verdict.best.clf) == ("fc6", "logreg")
    assert verdict.simplest is verdict.best
    assert len(verdict.tied) == 3 and rows[3] not in verdict.tied
    line = headline(verdict, rows)
    assert line.startswith("No clear winner: 3 of 4 combinations")
    assert "the simplest of them is fc6 + logreg" in line
    assert "highest mean" not in line
    ctx = {"rows": rows, "best": verdict.best, "verdict": verdict}
    marks = [cells[3] for cells in _table_rows(ctx)]
    assert marks == ["tied", "best, simplest", "tied", ""]


def test_headline_and_table_mark_the_same_simplest_across_classifiers():
    """The demo's case: svm has the highest mean, logreg ties it: the headline's
    "simplest" is the row the table marks simplest, and the best stays best."""
    from featx.report.render import _table_rows, headline

    rows = [
        result_row("pool5", "svm", [0.90, 0.92, 0.91, 0.93, 0.90, 0.92], 256),
        result_row("pool5", "logreg", [0.90, 0.91, 0.90, 0.92, 0.90, 0.91], 256),
        result_row("fc7", "svm", [0.60, 0.61, 0.60, 0.62, 0.61, 0.60], 4096),
    ]
    verdict = decided(rows)
    assert verdict.best is rows[0] and verdict.simplest is rows[1]
    line = headline(verdict, rows)
    assert "the simplest of them is pool5 + logreg" in line
    assert "(highest mean: pool5 + svm, 0.9133)" in line
    ctx = {"rows": rows, "best": verdict.best, "verdict": verdict}
    assert [cells[3] for cells in _table_rows(ctx)] == ["best", "tied, simplest", ""]


def test_an_exact_tie_across_models_goes_to_the_model_listed_first():
    from featx.fit.compare import decide
    from featx.report.render import _table_rows, headline

    same = [0.80, 0.82, 0.78, 0.81, 0.79, 0.80]
    rows = []
    for model, layer in [("alexnet", "fc7"), ("resnet18", "layer4_avg"),
                         ("resnet18", "avgpool_avg")]:  # fmt: skip
        row = result_row(layer, "logreg", same, 512)
        row.model = model
        rows.append(row)
    order = {("alexnet", "fc7"): (0, 7), ("resnet18", "layer4_avg"): (1, 4),
             ("resnet18", "avgpool_avg"): (1, 5)}  # fmt: skip
    verdict = decide(rows[::-1], lambda r: order[r.model, r.layer])
    assert verdict.best is rows[0] and verdict.simplest is rows[0]
    without = decide(rows[1:][::-1], lambda r: order[r.model, r.layer])
    assert without.best is rows[1]  # the shallower layer, not the name's order
    line = headline(without, rows[1:])  # one model: no model column
    assert "the simplest of them is layer4_avg + logreg" in line
    ctx = {"rows": rows[1:], "best": without.best, "verdict": without}
    assert [cells[3] for cells in _table_rows(ctx)] == ["best, simplest", "tied"]
    ctx = {"rows": rows, "best": verdict.best, "verdict": verdict}
    assert [cells[4] for cells in _table_rows(ctx)] == ["best, simplest", "tied",
                                                        "tied"]  # fmt: skip
    assert "simplest of them is alexnet fc7 + logreg" in headline(verdict, rows)


def test_how_chosen_names_the_classifier_order_once(report):
    text = (report.out / "report.md").read_text()
    how = next(x for x in text.splitlines() if x.startswith("How the best"))
    assert how.count("ridge, logreg, svm, sgd, mlp") == 1


def test_the_report_headline_is_its_first_line(report):
    text = (report.out / "report.md").read_text()
    first = next(x for x in text.splitlines() if x and not x.startswith(("#", ">")))
    tied = [r for r in report.rows if r.tied_with_best]
    if len(tied) > 1:
        assert first.startswith(f"No clear winner: {len(tied)} of 4 combinations")
    else:
        assert first.startswith("Best: ")


def test_gallery_ranks_by_confidence_and_shares_the_cap_between_classes():
    from featx.report.analyses import gallery_order

    # class 0 has six confident mistakes, class 1 two shy ones
    index = [10, 11, 12, 13, 14, 15, 20, 21]
    true = [0, 0, 0, 0, 0, 0, 1, 1]
    confidence = [0.9, 0.95, 0.8, 0.99, 0.85, 0.7, 0.3, 0.4]
    assert gallery_order(index, true, confidence, cap=4) == [13, 11, 21, 20]
    everything = gallery_order(index, true, confidence, cap=48)
    assert everything == [13, 11, 10, 14, 12, 15, 21, 20]


def test_the_gallery_follows_the_figures_most_confident_first(report):
    text = (report.out / "report.md").read_text()
    assert text.index("## Figures") < text.index("## Misclassified")
    items = report.analyses["gallery"]["items"]
    scores = [item["confidence"] for item in items]
    assert scores == sorted(scores, reverse=True) and len(items) <= 48
    html = report.files["html"].read_text()
    assert html.index("<h2>Figures</h2>") < html.index('id="gallery"')


def test_the_reproduce_commands_wrap_and_still_parse():
    import shlex

    from featx.report.render import wrap_command

    command = (
        "featx report --cache /a/very/long/path/to/the/cache/Train-random-7da96.h5 "
        "--test '/a path/with spaces/Test.h5' --layers pool5,fc7 --clfs svm,logreg "
        "--cv 3 --repeats 2 --seed 0 --out /tmp/report"
    )
    wrapped = wrap_command(command)
    lines = wrapped.splitlines()
    assert len(lines) > 1 and all(len(x) <= 78 for x in lines[1:])
    assert lines[0].startswith("featx report --cache ")
    assert all(x.endswith(" \\") for x in lines[:-1])
    assert shlex.split(wrapped.replace("\\\n", " ")) == shlex.split(command)


def test_the_gallery_says_what_its_scores_are():
    """An svm's score is a decision value (here negative), not a confidence in
    [0, 1]: the gallery names the kind beside each number and in its order."""
    from featx.report.analyses import score_kind
    from featx.report.render import _confidence

    assert score_kind("svm") == "decision value"
    assert score_kind("svm+ten") == "decision value"
    assert score_kind("ridge") == "decision value"
    assert score_kind("logreg") == "probability"
    assert score_kind("head") == "probability"
    item = {"confidence": -0.975, "score_kind": "decision value"}
    assert _confidence(item) == " (decision value -0.975)"


def test_the_report_gallery_names_the_best_classifiers_score(report):
    from featx.report.analyses import score_kind

    kind = score_kind(report.best.clf)
    gallery = report.analyses["gallery"]
    assert gallery["order"].startswith(f"the {report.best.clf} {kind} of the")
    text = (report.out / "report.md").read_text()
    section = text[text.index("## Misclassified") : text.index("## Provenance")]
    assert "most confident first" not in section
    items = [x for x in section.splitlines() if x.startswith("- ") and "true" in x]
    assert items and all(f"({kind} " in x for x in items)
    assert f"({kind} " in report.files["html"].read_text()


def _resnet_cache(image_folder, cache_dir):
    from featx import extract

    return extract(image_folder, layers=["layer4", "avgpool"], spatial="avg",
                   weights="random", model="resnet18", cache_dir=cache_dir,
                   num_workers=0).cache_path  # fmt: skip


def test_fit_and_report_compare_a_repeated_layer_once(image_folder, cache_dir):
    path = _resnet_cache(image_folder, cache_dir)
    result = fit(cache=path, clf="ridge", cv=3, save=False)
    assert result.layer == "layer4_avg"
    assert [s["layer"] for s in result.layer_scores] in ([], ["layer4_avg"])
    assert (
        "avgpool_avg holds the same numbers as layer4_avg (recorded by extract on "
        "its first batch): compared once, as layer4_avg"
    ) in result.notes
    report = make_report(cache=path, cache_dir=cache_dir, clfs=["ridge"], cv=3,
                         repeats=1, out=cache_dir.parent / "r")  # fmt: skip
    assert [r.layer for r in report.rows] == ["layer4_avg"]
    assert any(n.startswith("avgpool_avg holds the same") for n in report.notes)


def test_fit_says_the_layer_it_compared_once_after_its_early_notes(
    image_folder, cache_dir
):
    """fit announces its choices before the work; a note the work adds (a layer
    compared once) is printed with the results, not lost."""
    path = _resnet_cache(image_folder, cache_dir)
    result = CliRunner().invoke(
        main,
        [
            "fit",
            "--cache",
            str(path),
            "--clf",
            "ridge",
            "--cv",
            "3",
            "--out",
            str(cache_dir.parent / "m.skops"),
        ],  # fmt: skip
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    notes = [line for line in result.stdout.splitlines() if line.startswith("note:")]
    assert sum("avgpool_avg holds the same numbers as layer4_avg" in n
               for n in notes) == 1  # fmt: skip


def test_an_old_cache_without_the_record_is_checked_on_its_first_rows(
    image_folder, cache_dir
):
    import h5py

    from featx.cache import FeatureCache
    from featx.fit.compare import compared_once

    path = _resnet_cache(image_folder, cache_dir)
    with h5py.File(path, "r+") as f:
        del f["features"]["avgpool_avg"].attrs["same_as"]
    with FeatureCache(path) as cache:
        assert cache.layers["avgpool_avg"].same_as == ""
        layers, notes = compared_once(cache, ["avgpool_avg", "layer4_avg"])
    assert layers == ["layer4_avg"]
    assert notes == [
        "avgpool_avg holds the same numbers as layer4_avg (its first 12 rows): "
        "compared once, as layer4_avg"
    ]
