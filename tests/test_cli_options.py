"""The command line's option names and vocabularies: one meaning per name, and
every ``click.Choice`` taken from the library."""

import json
import shutil
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

import pipelines
from featx import choices
from featx.cli import main
from featx.errors import FeatxError
from featx.images.views import VIEW_SETS

LEGACY = Path(__file__).parent / "data" / "legacy"
TRAIN = "Train-random-12e3d9d749"
MODEL = f"models/{TRAIN}-fc7-logreg.skops"
#: The library's vocabulary behind each click.Choice, by parameter name.
VOCABULARIES = {
    "model": choices.MODELS,
    "spatial": choices.SPATIAL,
    "dtype": choices.DTYPES,
    "engine": choices.ENGINES,
    "backend": choices.ENGINES,
    "views": tuple(VIEW_SETS),
    "clf": choices.CLASSIFIERS,
    "head_train": choices.HEAD_TRAIN_LAYERS,
    "scale": choices.SCALES,
    "fmt": choices.EXPORT_FORMATS,
    "decode": choices.DECODE_MODES,
    "precision": choices.PRECISIONS,
    "decoder": choices.DECODERS,
    "decode_pool": choices.DECODE_POOLS,
    "runtime": choices.RUNTIMES,
}
#: Where one command's option takes another vocabulary than its namesakes.
COMMAND_VOCABULARIES = {("extract", "precision"): choices.EXTRACT_PRECISIONS}


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def deprecation_notes(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if "deprecated" in line]


@pytest.fixture
def legacy(tmp_path, monkeypatch):
    """A copy of the files today's main wrote, as the working folder."""
    root = tmp_path / "legacy"
    shutil.copytree(LEGACY, root)
    monkeypatch.chdir(root)
    return root


def predicted(result) -> list[tuple[str, str]]:
    return [(r["path"], r["label"]) for r in json.loads(result.stdout)]


@pytest.mark.parametrize(
    ("option", "notes"),
    [
        ("--model-file", []),
        ("--model", ["note: --model is deprecated for predict; use --model-file"]),
    ],
)
def test_predict_takes_model_file_and_still_the_old_model(legacy, option, notes):
    result = invoke("predict", option, MODEL, "data/Test", "--json", "-q")
    assert result.exit_code == 0, result.output
    assert deprecation_notes(result) == notes
    expected = json.loads((legacy / "pred_fc7_logreg.json").read_text())
    assert predicted(result) == [(r["path"], r["label"]) for r in expected]


def test_predict_without_a_model_file_says_which_option(tmp_path):
    result = invoke("predict", tmp_path)
    assert result.exit_code == 2
    assert "Missing option '--model-file'" in result.stderr


def test_help_shows_only_the_new_names():
    predict = invoke("predict", "--help").output
    assert "--model-file" in predict and "--model " not in predict
    for command in ("fit", "report"):
        text = invoke(command, "--help").output
        assert "--engine [local|ray]" in text and "--backend" not in text


@pytest.mark.parametrize(
    ("option", "notes"),
    [
        ("--engine", []),
        ("--backend", ["note: --backend is deprecated for fit; use --engine"]),
    ],
)
def test_fit_runs_with_engine_local_and_the_old_backend(legacy, option, notes):
    result = invoke(
        "fit", "--cache-dir", "cache", "--cache", TRAIN, "--layer", "fc7",
        "--clf", "logreg", "--cv", 3, "--out", "m.skops", option, "local", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert deprecation_notes(result) == notes
    assert json.loads(result.stdout)["clf"] == "logreg"
    assert (legacy / "m.skops").is_file()


@pytest.mark.parametrize(
    ("option", "notes"),
    [
        ("--engine", []),
        ("--backend", ["note: --backend is deprecated for report; use --engine"]),
    ],
)
def test_report_runs_with_engine_local_and_the_old_backend(legacy, option, notes):
    result = invoke(
        "report", "--cache-dir", "cache", "--cache", TRAIN, "--layers", "fc7",
        "--clfs", "logreg", "--cv", 3, "--repeats", 1, "--out", "out", "-q",
        option, "local",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert deprecation_notes(result) == notes
    assert (legacy / "out" / "results.json").is_file()


class Stop(FeatxError):
    pass


@pytest.mark.parametrize("option", ["--engine", "--backend"])
@pytest.mark.parametrize(
    ("command", "target"),
    [("fit", "featx.fit.fit"), ("report", "featx.report.make_report")],
)
def test_engine_ray_reaches_the_library(legacy, monkeypatch, command, target, option):
    seen = {}

    def stop(*spec, **kwargs):  # report passes its ReportSpec whole
        seen.update(kwargs)
        raise Stop("stopped")

    monkeypatch.setattr(target, stop)
    # report chooses its caches before calling the library: none here
    monkeypatch.setattr(
        "featx.cli.report._prepare", lambda spec, cache_dir: (True, [], None, None)
    )
    result = invoke(command, option, "ray", "--address", "auto")
    assert "Error: stopped" in result.stderr
    assert seen["engine"] == "ray" and seen["address"] == "auto"


def all_choice_params():
    for name, command in sorted(main.commands.items()):
        for param in command.params:
            if isinstance(param.type, click.Choice):
                yield name, param


@pytest.mark.parametrize(
    ("command", "param"),
    list(all_choice_params()),
    ids=[f"{c}-{p.name}" for c, p in all_choice_params()],
)
def test_every_choice_is_the_library_vocabulary(command, param):
    assert param.name in VOCABULARIES, f"{command} {param.name}: which vocabulary?"
    expected = COMMAND_VOCABULARIES.get((command, param.name), VOCABULARIES[param.name])
    assert tuple(param.type.choices) == expected


def test_the_library_checks_against_the_same_vocabularies():
    import featx.cache.export
    import featx.compute.devices
    import featx.model

    assert featx.model.MODELS is choices.MODELS
    for name in choices.MODELS:  # each name featx spells itself has its backbone
        assert featx.model.backbone(name).name == name
    assert pipelines.SCALES == choices.SCALES  # pipelines knows nothing of featx
    assert featx.cache.export.FORMATS is choices.EXPORT_FORMATS
    assert featx.compute.devices.DEVICE_CHOICES is choices.DEVICES


def test_num_workers_is_no_longer_a_second_name_for_ray_actors(monkeypatch, tmp_path):
    """``--workers`` (and the library's ``num_workers``) are decode workers;
    ``--num-workers``, once a name of ``--ray-actors``, is hidden and says so."""
    seen = {}

    def stop(**kwargs):
        seen.update(kwargs)
        raise Stop("stopped")

    monkeypatch.setattr("featx.cli.extract.check_extract_arguments", stop)
    help_text = invoke("extract", "--help").output
    assert "--ray-actors" in help_text and "--num-workers" not in help_text
    result = invoke(
        "extract", "-l", "fc7", "--engine", "ray", "--num-workers", "3", tmp_path
    )
    assert seen["ray_actors"] == 3
    assert "note: --num-workers is deprecated for extract; use --ray-actors" in (
        result.stderr
    )
