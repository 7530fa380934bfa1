"""Typed records and the copies derived from one source: the report's
reproduce command, the result store's key, and files written before the
restructuring (tests/data/legacy/, see its README.md) that must still load."""

from __future__ import annotations

import json
import shlex
import shutil
from dataclasses import fields, replace
from pathlib import Path

import pytest

from featx.choices import HEAD_TRAIN_LAYERS
from featx.cli import main
from featx.errors import ParameterError
from featx.fit import FitSpec
from featx.predict.modelfile import (
    MODEL_FORMAT,
    ModelFileError,
    ModelMeta,
    check_format,
)
from featx.progress import Progress
from featx.report import (
    RecordError,
    ReportSpec,
    ResultRow,
    ResultsDocument,
    make_report,
    result_key,
)
from featx.report.spec import param_name
from featx.report.store import KEY_ROLES

LEGACY = Path(__file__).parent / "data" / "legacy"
TRAIN = "Train-random-12e3d9d749"
PRINTS = ("a" * 64, None)

# ------------------------------------------------------- the reproduce command

#: A value unlike the default for every field of ReportSpec.
OTHER_REPORT_VALUES = {
    "cache": Path("my caches/Train-x.h5"),
    "test": Path("Test-x.h5"),
    "layers": ["conv5_avg", "fc7"],
    "clfs": ["ridge", "head"],
    "models": ["alexnet", "caffe-alexnet"],
    "cv": 3,
    "repeats": 4,
    "seed": 7,
    "tune": False,
    "center_only": True,
    "cache_dir": Path("elsewhere"),
    "out": Path("out dir/r"),
}


def parse_report(command: str) -> ReportSpec:
    """The spec `featx report` builds from ``command``, parsed by its click
    command."""
    words = shlex.split(command)
    assert words[:2] == ["featx", "report"]
    ctx = main.commands["report"].make_context("report", words[2:])
    return ReportSpec.from_cli(ctx.params)


def test_every_report_field_names_a_report_option():
    """The flags the spec's fields name (and the reproduce command spells, with
    no import of the CLI) are the click command's own, with the same names."""
    options = {p.name: p.opts for p in main.commands["report"].params}
    for f in fields(ReportSpec):
        flag = f.metadata["flag"]
        assert flag in options.get(param_name(flag), ()), f.name
    assert set(OTHER_REPORT_VALUES) == {f.name for f in fields(ReportSpec)}


def test_report_defaults_are_the_commands():
    ctx = main.commands["report"].make_context("report", [])
    assert ReportSpec.from_cli(ctx.params) == ReportSpec(cache_dir=Path("cache"))


@pytest.mark.parametrize("name", list(OTHER_REPORT_VALUES))
def test_reproduce_command_parses_back_to_the_spec(name):
    base = ReportSpec(cache=Path("Train.h5"), cache_dir=Path("cache"), out=Path("r"))
    spec = replace(base, **{name: OTHER_REPORT_VALUES[name]})
    assert spec != base
    assert parse_report(spec.command()) == spec


def test_reproduce_command_with_everything_changed():
    spec = ReportSpec(**OTHER_REPORT_VALUES)
    assert parse_report(spec.command()) == spec


# --------------------------------------------------------- the result store key

#: A value unlike the default for every FitSpec field that changes results.
OTHER_FIT_VALUES = {
    "clf": "ridge",
    "cv": 3,
    "seed": 1,
    "scale": "none",
    "pca": 8,
    "tune": False,
    "value": 0.5,
    "repeats": 3,
    "center_only": True,
    "train_views": False,
    "head_train": HEAD_TRAIN_LAYERS[1],
    "source": {"weights": "random", "weights_seed": 0},
}
OTHER_RUN_VALUES = {
    "jobs": 1,
    "engine": "ray",
    "address": "ray://elsewhere:10001",
    "progress": Progress(),
}


def test_every_fit_field_declares_whether_it_changes_results():
    for f in fields(FitSpec):
        assert isinstance(f.metadata.get("results"), bool), (
            f"FitSpec.{f.name} must declare results=True/False (featx.fit.spec._option)"
        )
        if f.metadata["results"]:
            assert f.metadata["key"] in KEY_ROLES, f.name
    changing = {f.name for f in fields(FitSpec) if f.metadata["results"]}
    assert changing == set(OTHER_FIT_VALUES)
    assert {f.name for f in fields(FitSpec)} - changing == set(OTHER_RUN_VALUES)


@pytest.mark.parametrize("name", list(OTHER_FIT_VALUES))
def test_a_field_that_changes_results_changes_the_key(name):
    spec = FitSpec(clf="logreg")
    other = replace(spec, **{name: OTHER_FIT_VALUES[name]})
    assert result_key(PRINTS, other, "fc7", "flip") != result_key(
        PRINTS, spec, "fc7", "flip"
    )


@pytest.mark.parametrize("name", list(OTHER_RUN_VALUES))
def test_how_the_work_runs_keeps_the_key(name):
    spec = FitSpec(clf="logreg")
    other = replace(spec, **{name: OTHER_RUN_VALUES[name]})
    assert result_key(PRINTS, other, "fc7", None) == result_key(
        PRINTS, spec, "fc7", None
    )


def test_data_and_layer_change_the_key():
    spec = FitSpec(clf="logreg")
    key = result_key(PRINTS, spec, "fc7", None)
    assert result_key(("b" * 64, None), spec, "fc7", None) != key
    assert result_key((PRINTS[0], "c" * 64), spec, "fc7", None) != key
    assert result_key(PRINTS, spec, "fc6", None) != key


# ------------------------------------------------------------- format versions


def test_a_newer_model_file_says_what_wrote_it():
    blob = {"format": MODEL_FORMAT + 1, "meta": {"featx_version": "9.1.0"}}
    with pytest.raises(ModelFileError) as info:
        check_format(blob, where="m.skops")
    message = str(info.value)
    assert "\n" not in message
    wrote = "m.skops was written by a newer featx (featx 9.1.0 wrote format 3)"
    assert wrote in message
    assert "upgrade featx" in message


def test_a_newer_results_document_says_what_wrote_it():
    data = {"results": [], "format": 7, "featx_version": "9.1.0"}
    with pytest.raises(RecordError, match=r"featx 9\.1\.0 .*upgrade featx"):
        ResultsDocument.from_dict(data)


def test_a_row_that_is_not_a_result_is_refused():
    with pytest.raises(RecordError, match="not a featx result"):
        ResultRow.from_dict({"layer": "fc7"})


# ------------------------------------------------ files written before the move


def test_legacy_model_meta_round_trips():
    from featx.predict.modelfile import load_model

    _, stored = load_model(LEGACY / "models" / f"{TRAIN}-fc7-logreg.skops")
    meta = ModelMeta.from_dict(stored)
    assert meta.weights_id == "random(seed=0)" and meta.views == ["center", "flip"]
    assert meta.extra == {}
    assert meta.to_dict() == stored
    assert list(meta.to_dict()) == list(stored)  # the same keys, in the same order


@pytest.mark.parametrize(
    ("model", "recorded"),
    [
        (f"{TRAIN}-fc7-logreg.skops", "pred_fc7_logreg.json"),
        (f"{TRAIN}-conv5_avg-ridge.skops", "pred_conv5_ridge.json"),
    ],
)
def test_legacy_model_files_predict_what_they_predicted(monkeypatch, model, recorded):
    from featx.predict import predict

    monkeypatch.chdir(LEGACY)  # the predictions record paths relative to it
    results = predict(Path("models") / model, [Path("data/Test")], device="cpu")
    got = [
        {"path": r.path, "label": r.label, "true_label": r.true_label, "error": ""}
        for r in results
    ]
    expected = json.loads((LEGACY / recorded).read_text())
    keys = ("path", "label", "true_label", "error")
    assert got == [{k: e[k] for k in keys} for e in expected]
    for r, e in zip(results, expected, strict=True):
        assert r.score == pytest.approx(e["score"], rel=1e-4, abs=1e-6)
        assert r.score_kind == e["score_kind"]


def test_legacy_results_json_loads():
    data = json.loads((LEGACY / "report" / "results.json").read_text())
    document = ResultsDocument.from_dict(data)
    assert document.format == 1 and document.best == data["best"]
    rows = document.rows()
    assert len(rows) == 8
    assert {(r.layer, r.clf) for r in rows} >= {
        ("fc7", "logreg"),
        ("fc7", "ridge+flip"),
    }
    assert rows[0].tied_with_best is not None
    for row, stored in zip(rows, data["results"], strict=True):
        # rows written before featx recorded the model are AlexNet's, and say
        # so when written back; nothing else changes
        assert "model" not in stored and row.model == "alexnet"
        assert row.summary() == {**stored, "model": "alexnet"}


def test_legacy_result_store_is_reused(tmp_path, monkeypatch):
    cache_dir = tmp_path / "cache"
    shutil.copytree(LEGACY / "cache", cache_dir)
    before = {p.name: p.read_text() for p in (cache_dir / "results").iterdir()}
    for stored in before.values():
        ResultRow.from_dict(json.loads(stored))  # every entry reads as a row

    def no_fit(**kwargs):
        raise AssertionError("a stored result was recomputed")

    monkeypatch.setattr("featx.report.store.fit", no_fit)
    report = make_report(
        cache=cache_dir / f"{TRAIN}.h5",
        test=cache_dir / "Test-random-f9a3db8164.h5",
        cache_dir=cache_dir,
        clfs=["logreg", "ridge"],
        cv=3,
        out=tmp_path / "report",
    )
    assert (report.reused, report.computed) == (8, 0)
    assert {p.name: p.read_text() for p in (cache_dir / "results").iterdir()} == before
    legacy = json.loads((LEGACY / "report" / "results.json").read_text())
    ours = json.loads((tmp_path / "report" / "results.json").read_text())
    assert ours["best"] == legacy["best"]
    assert [r["cv_accuracy_mean"] for r in ours["results"]] == [
        r["cv_accuracy_mean"] for r in legacy["results"]
    ]


def test_every_key_of_a_fit_is_a_field_of_its_row():
    from featx.fit import FitResult

    result = FitResult(
        cache="c.h5", layer="fc7", clf="svm", n_rows=4, n_features=3,
        classes=["a", "b"], cv=2, seed=0, scale="standard", pca=None, tuned=True,
        cv_scores={"accuracy": [1.0, 0.5], "f1_macro": [1.0, 0.5]},
        fit_times=[0.1, 0.2], test={"accuracy": 1.0, "f1_macro": 1.0},
    )  # fmt: skip
    assert ResultRow is FitResult  # one record: a fit's result is a report's row
    row = ResultRow.from_fit(result.to_json(), classifier="svm", label="svm+flip")
    assert row.extra == {}
    assert result.test_accuracy == 1.0 and result.cv_accuracy_mean == 0.75
    assert row.classifier == "svm" and row["clf"] == "svm+flip"
    assert row.to_dict() == {
        **result.to_json(),
        "classifier": "svm",
        "clf": "svm+flip",
    }


def test_every_record_refuses_a_newer_format_in_the_same_words(tmp_path):
    """Model files, results.json, stored results and caches: one version rule and
    one message (featx/records.py)."""
    import h5py

    from featx.cache import CacheError
    from featx.cache.format import _check_format
    from featx.records import newer_message

    with pytest.raises(ModelFileError) as model:
        check_format({"format": 9, "meta": {"featx_version": "9.1.0"}}, where="m")
    with pytest.raises(RecordError) as document:
        ResultsDocument.from_dict(
            {"results": [], "format": 9, "featx_version": "9.1.0"}, where="m"
        )
    with pytest.raises(RecordError) as row:
        ResultRow.from_dict({"result_format": 9, "featx_version": "9.1.0"}, where="m")
    path = tmp_path / "c.h5"
    with h5py.File(path, "w") as f:
        f.attrs["featx_format"] = 9
        f.attrs["featx_version"] = "9.1.0"
    with h5py.File(path, "r") as f, pytest.raises(CacheError) as cache:
        _check_format(f, "m")
    errors = (model, document, row, cache)
    said = {str(e.value).split("; this featx")[0] for e in errors}
    assert said == {"m was written by a newer featx (featx 9.1.0 wrote format 9)"}
    for e, ours in ((model, 2), (document, 1), (row, 2)):
        assert str(e.value) == newer_message("m", 9, ours, "9.1.0")


@pytest.mark.parametrize(
    "found", ["2", 2.5, [2], "x", True, False, -3, 0, float("inf"), float("nan")]
)
def test_a_format_that_is_not_a_whole_number_is_refused(found):
    import numpy as np

    from featx.records import check_format as check

    with pytest.raises(RecordError, match="is not a format featx writes"):
        check(found, 2, what="r", error=RecordError)
    assert check(None, 2, what="r", absent=1) == 1
    assert check(2, 2, what="r") == check(np.int64(2), 2, what="r") == 2
    assert check(2.0, 2, what="r") == 2
    with pytest.raises(RecordError, match="upgrade featx"):
        check(3, 2, what="r", error=RecordError)


def test_keys_of_a_later_featx_are_kept_and_written_back():
    from featx.predict.modelfile import load_model

    _, legacy = load_model(LEGACY / "models" / f"{TRAIN}-fc7-logreg.skops")
    stored = {**legacy, "novel": {"a": 1}}
    meta = ModelMeta.from_dict(stored)
    assert meta.extra == {"novel": {"a": 1}} and meta.to_dict() == stored
    with pytest.raises(ModelFileError, match=r"no featx_version.*fit it again"):
        ModelMeta.from_dict({k: v for k, v in stored.items() if k != "featx_version"})


def test_make_report_takes_the_cli_s_spec_whole():
    """featx report builds one ReportSpec and hands it to the library, which
    builds no second one; settings the spec holds are not taken beside it."""
    spec = ReportSpec(cache="c.h5", cv=3)
    with pytest.raises(ParameterError, match="give cv in the ReportSpec"):
        make_report(spec, cv=5)


def test_make_report_refuses_what_it_would_ignore_beside_a_spec():
    spec = ReportSpec(cache="c.h5")
    with pytest.raises(ParameterError, match="give out, center_only in the"):
        make_report(spec, out=Path("elsewhere"), center_only=True)


def test_make_report_still_takes_the_old_backend_keyword(monkeypatch):
    import featx.report.build as build

    def stop(*args, **kwargs):
        raise RuntimeError("resolved")

    monkeypatch.setattr(build, "resolve_caches", stop)
    with (
        pytest.warns(DeprecationWarning, match="backend= is now engine="),
        pytest.raises(RuntimeError, match="resolved"),
    ):
        make_report(cache="c.h5", backend="local")
    with pytest.raises(ParameterError, match="give engine= only"):
        make_report(cache="c.h5", backend="local", engine="local")


def test_a_result_s_summary_follows_its_scores():
    """A held-out score set after the fit, or scores changed, are never shown
    stale; fit --json keeps its key order (the summary last)."""
    from featx.fit import FitResult

    result = FitResult(
        cache="c.h5", layer="fc7", clf="svm", n_rows=4, n_features=3,
        classes=["a", "b"], cv=2, seed=0, scale="standard", pca=None, tuned=True,
        cv_scores={"accuracy": [1.0, 0.5], "f1_macro": [1.0, 0.5]},
        fit_times=[0.1, 0.2],
    )  # fmt: skip
    assert "test_accuracy" not in result
    result.test = {"accuracy": 0.25, "f1_macro": 0.2}
    assert result["test_accuracy"] == 0.25
    result.cv_scores = {"accuracy": [0.0, 0.5], "f1_macro": [0.0, 0.5]}
    assert result.to_dict()["cv_accuracy_mean"] == 0.25
    keys = list(result.to_json())
    assert keys[-9:] == [
        "cv_accuracy_mean", "cv_accuracy_std", "cv_f1_macro_mean",
        "cv_f1_macro_std", "fit_time_mean", "cv_accuracy_ci95", "test_accuracy",
        "test_f1_macro", "classifier",
    ]  # fmt: skip
    with pytest.raises(TypeError):
        FitResult("c.h5", "fc7", "svm", 4, 3, ["a"], 2, 0, "s", None, True, {}, [], 1.0)


def test_a_result_pickled_before_extra_existed_still_serialises():
    import pickle

    from featx.fit import FitResult

    result = FitResult(
        cache="c.h5", layer="fc7", clf="svm", n_rows=4, n_features=3,
        classes=["a", "b"], cv=2, seed=0, scale="standard", pca=None, tuned=True,
        cv_scores={"accuracy": [1.0, 0.5]}, fit_times=[0.1],
    )  # fmt: skip
    state = dict(result.__dict__)
    del state["extra"], state["classifier"]
    old = FitResult.__new__(FitResult)
    old.__setstate__(state)
    assert pickle.loads(pickle.dumps(old)).to_dict()["cv_accuracy_mean"] == 0.75
