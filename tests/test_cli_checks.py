"""Mistakes in a command's arguments are answered before torch is imported:
one line, a non-zero exit, and the suggestion a typo deserves."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from featx import model_names
from featx.choices import FRIENDLY_LAYER_NAMES, LAYER_NAMES, MODELS
from featx.cli import main

#: Run a command in a fresh interpreter; print its exit code, its stderr and
#: whether torch or scikit-learn was imported by the time it exited.
SCRIPT = """
import json, sys
from click.testing import CliRunner
from featx.cli import main
result = CliRunner().invoke(main, json.loads(sys.argv[1]))
print("RESULT " + json.dumps(
    [result.exit_code, result.output, "torch" in sys.modules or "sklearn" in
     sys.modules]
))
"""


def run_fresh(args: list[str], cwd: Path) -> tuple[int, str, bool]:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, json.dumps(args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )
    line = next(x for x in done.stdout.splitlines() if x.startswith("RESULT "))
    return tuple(json.loads(line[len("RESULT ") :]))


def one_error_line(output: str) -> str:
    lines = [x for x in output.splitlines() if x.startswith("Error:")]
    assert len(lines) == 1 and "Traceback" not in output, output
    return lines[0]


CASES = {
    "missing folder": (
        ["extract", "--layer", "fc7", "data/Trian"],
        "Error: data folder data/Trian does not exist",
    ),
    "unknown layer": (
        ["extract", "--weights", "random", "--layer", "fc77", "."],
        "did you mean 'fc7'?",
    ),
    "missing weights file": (
        ["extract", "--weights", "nope.pth", "--layer", "fc7", "."],
        "'nope.pth' is none of these (no such file)",
    ),
    "missing model file": (
        ["predict", "--model-file", "nope.skops", "photo.jpg"],
        "Error: model file nope.skops does not exist",
    ),
    "unknown model": (
        ["extract", "--model", "resnet181", "--weights", "random", "-l", "fc", "."],
        "Error: unknown model 'resnet181'; featx runs alexnet, caffe-alexnet, "
        "every torchvision classification model",
    ),
    "unknown model in the demo": (
        ["demo", "--models", "alexnet,resnet181"],
        "did you mean 'resnet18'?",
    ),
    "unknown model in layers": (
        ["layers", "--model", "resnet181"],
        "did you mean 'resnet18'?",
    ),
    "fit with no cache": (
        ["fit"],
        "Error: no cache in ./cache: that folder does not exist",
    ),
    "report with no cache": (
        ["report"],
        "Error: no cache in ./cache: that folder does not exist",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_mistakes_are_answered_before_torch_is_imported(tmp_path, case):
    args, text = CASES[case]
    exit_code, output, torch_loaded = run_fresh(args, tmp_path)
    assert exit_code != 0
    assert text in one_error_line(output)
    assert not torch_loaded, "torch or scikit-learn was imported before the answer"


@pytest.mark.parametrize(
    ("args", "text"),
    [
        (["--layer", "conv55"], "unknown layer 'conv55'; valid names: conv1"),
        (["--layer", "fc6", "--layer", "pol5"], "did you mean 'pool5'?"),
        (["--layer", "features.99"], "did you mean 'features.9'?"),
        (["--model", "caffe-alexnet", "--layer", "nrm1"], "did you mean 'norm1'?"),
        (["--layer", "fc7", "--mean", "m.npy"], "--mean is for --model caffe-alexnet"),
        (
            ["--model", "caffe-alexnet", "--layer", "fc7", "--mean", "m.npy"],
            "--mean m.npy does not exist",
        ),
        (["--layer", "fc7", "--labels", "l.csv"], "--labels l.csv does not exist"),
        (
            ["--layer", "fc7", "--labels", "l.csv", "--label-from-name", "(a)"],
            "give one of --labels and --label-from-name",
        ),
        (["--layer", "fc7", "--ray-actors", "2"], "--ray-actors is for --engine ray"),
        (["--layer", "fc7", "--address", "auto"], "--address is for --engine ray"),
        (
            ["--model", "caffe-alexnet", "--layer", "fc7"],
            "caffe-alexnet has no weights to download",
        ),
    ],
)
def test_extract_refuses_each_mistake_in_one_line(tmp_path, args, text):
    result = CliRunner().invoke(
        main, ["extract", *args, str(tmp_path)], catch_exceptions=False
    )
    assert result.exit_code != 0
    assert text in one_error_line(result.output)
    assert not (tmp_path / "cache").exists()


def test_a_name_far_from_every_layer_gets_no_suggestion(tmp_path):
    result = CliRunner().invoke(main, ["extract", "-l", "xyzzy", str(tmp_path)])
    line = one_error_line(result.output)
    assert "unknown layer 'xyzzy'" in line and "did you mean" not in line


@pytest.mark.parametrize("model", MODELS)
def test_the_torch_free_layer_names_are_the_models(model):
    from featx.model import friendly_layers, layer_table

    assert LAYER_NAMES[model] == tuple(spec.name for spec in layer_table(model))
    assert FRIENDLY_LAYER_NAMES[model] == tuple(friendly_layers(model))


def test_the_torch_free_model_names_are_torchvisions():
    import torchvision

    from featx.model import TIMM_PREFIX as timm_prefix

    installed = tuple(torchvision.models.list_models(module=torchvision.models))
    release = torchvision.__version__.split("+")[0]
    table = (model_names.TORCHVISION_VERSION, model_names.TORCHVISION_MODELS)
    assert (release, installed) == table, (
        f"write featx/model_names.py anew: {release!r}, {installed!r}"
    )
    assert model_names.torchvision_names_current()
    assert timm_prefix == model_names.TIMM_PREFIX


def test_the_library_refuses_an_unknown_model_in_the_same_words():
    from featx.cli.checks import check_model
    from featx.errors import LayerError
    from featx.model import backbone

    with pytest.raises(LayerError) as early:
        check_model("vgg161")
    with pytest.raises(LayerError) as late:
        backbone("vgg161")
    assert str(early.value) == str(late.value)
    assert str(early.value).endswith("did you mean 'vgg16'?")


def test_another_torchvision_release_leaves_the_model_check_to_the_library(
    monkeypatch,
):
    from featx.cli import checks

    # a network the table does not name may be a newer release's
    monkeypatch.setattr(checks, "torchvision_names_current", lambda: False)
    checks.check_model("resnet181")
    for name in ("alexnet", "caffe-alexnet", "resnet18", "timm:resnet50.a1_in1k"):
        checks.check_model(name)


def test_the_library_suggests_the_same_name():
    from featx.errors import LayerError
    from featx.model import resolve_layers

    with pytest.raises(LayerError, match="did you mean 'pool5'"):
        resolve_layers(["pool"])


# ------------------------------------------------- which cache, and where


LEGACY = Path(__file__).parent / "data" / "legacy" / "cache"


def test_no_cache_says_what_was_looked_for_and_where(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["fit", "--clf", "logreg"])
    assert one_error_line(result.output) == (
        "Error: no cache in ./cache: that folder does not exist; run `featx "
        "extract DATA_DIR --layer fc7` first, or point --cache-dir / "
        "FEATX_CACHE_DIR at your caches"
    )
    (tmp_path / "cache").mkdir()
    result = CliRunner().invoke(main, ["info"])
    assert "no cache in ./cache: no featx cache file (*.h5) there" in one_error_line(
        result.output
    )


@pytest.mark.parametrize("command", ["info", "export"])
def test_commands_that_pick_a_cache_say_which_and_how_to_choose(
    tmp_path, monkeypatch, command
):
    import shutil

    monkeypatch.chdir(tmp_path)
    (tmp_path / "cache").mkdir()
    name = "Train-random-12e3d9d749.h5"
    shutil.copy2(LEGACY / name, tmp_path / "cache" / name)
    extra = ["--layer", "fc7", "--out", str(tmp_path / "x.npz")]
    args = [command, *(extra if command == "export" else [])]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert f"note: reading {name} (" in result.stderr
    assert "the only cache in ./cache; naming a CACHE chooses another" in result.stderr
    assert "note:" not in result.stdout


def test_the_library_names_its_parameters_and_the_cli_its_flags():
    """featx.errors.param: one message, spelled for each reader."""
    from featx.cli.flags import FLAGS, as_flags
    from featx.errors import Message, ParameterError, param
    from featx.images import Labelling

    with pytest.raises(ParameterError) as info:
        Labelling(name_regex="(")
    assert str(info.value).startswith("label_from_name='(' is not a regular")
    assert info.value.for_cli(FLAGS).startswith("--label-from-name ( is not a")
    note = Message(f"use {param('num_workers', 2)} or {param('layer_names')}")
    assert note == "use num_workers=2 or `layer_names`"
    assert as_flags(note) == "use --workers 2 or --layer"
    assert as_flags("plain text") == "plain text"

    args = ["extract", "-l", "fc7", "--label-from-name", "(", str(Path.cwd())]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1
    assert result.output.startswith("Error: --label-from-name ( is not a regular")


def test_report_s_errors_name_report_s_own_flags():
    from featx.cli.flags import flags_of
    from featx.errors import ParameterError, param

    error = ParameterError(f"no {param('layer', 'fc9')} in the cache")
    assert error.for_cli(flags_of("report")) == "no --layers fc9 in the cache"
    assert error.for_cli(flags_of("fit")) == "no --layer fc9 in the cache"
    assert repr(error) == "ParameterError(\"no layer='fc9' in the cache\")"
