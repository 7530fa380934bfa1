"""The session users type: the README's steps with no options beyond --weights."""

import json
import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from featx import extract
from featx.cache import FeatureCache
from featx.cli import main
from featx.images import Labelling
from tests.conftest import write_folder


@pytest.fixture
def session(tmp_path, monkeypatch):
    """data/Train and data/Test (two classes each) in a fresh working folder."""
    monkeypatch.chdir(tmp_path)
    write_folder(tmp_path / "data" / "Train", {"cats": 8, "dogs": 8}, seed=1)
    write_folder(tmp_path / "data" / "Test", {"cats": 4, "dogs": 4}, seed=2)
    return tmp_path


def featx(*args: str):
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.slow
def test_the_readme_session_runs_as_typed(session):
    layers = ["--layer", "conv5", "--layer", "fc7", "--weights", "random", "-q"]
    featx("extract", *layers, "data/Train")
    featx("extract", *layers, "data/Test")
    out = featx("fit", "--clf", "svm", "-q")
    assert re.search(r"note: training on Train-random-\w+\.h5", out)
    assert re.search(r"note: held-out set: Test-random-\w+\.h5", out)
    assert "layers compared" in out and "<- best" in out
    assert re.search(r"test: Test-random-\w+\.h5, 8 images: accuracy", out)
    assert (session / "models").is_dir()
    report = featx("report", "-q")
    assert "note: held-out set: Test-" in report
    assert (session / "reports").is_dir()
    html = next((session / "reports").glob("*/report.html")).read_text()
    assert "conv5" in html and "fc7" in html


@pytest.mark.slow
def test_several_folders_one_call_and_a_test_folder(session):
    featx(
        "extract", "data/Train", "data/Test", "-l", "fc7", "--weights", "random", "-q"
    )
    caches = sorted(p.name.split("-")[0] for p in (session / "cache").glob("*.h5"))
    assert caches == ["Test", "Train"]
    # --test as a data folder; its missing pool5 is extracted with Train's weights
    featx("extract", "data/Train", "-l", "pool5", "--weights", "random", "-q")
    out = featx(
        "fit", "--clf", "ridge", "--layer", "pool5", "--test", "data/Test", "-q"
    )
    assert re.search(r"test: Test-random-\w+\.h5, 8 images", out)


@pytest.fixture
def kaggle(tmp_path):
    """The same ten images as a flat train/cat.0.jpg folder, as an ImageFolder,
    and a labels CSV for the flat one."""
    rng = np.random.default_rng(0)
    flat, folders = tmp_path / "train", tmp_path / "folders"
    lines = ["path,label"]
    for name in ("cat", "dog"):
        (folders / name).mkdir(parents=True)
        flat.mkdir(exist_ok=True)
        for i in range(5):
            img = Image.fromarray(rng.integers(0, 255, (50, 64, 3), dtype=np.uint8))
            img.save(flat / f"{name}.{i}.jpg")
            img.save(folders / name / f"{name}.{i}.jpg")
            lines.append(f"{name}.{i}.jpg,{name}")
    (tmp_path / "labels.csv").write_text("\n".join(lines) + "\n")
    return tmp_path


def _rows(cache_path):
    with FeatureCache(cache_path) as cache:
        names = [p.rsplit("/", 1)[-1] for p in cache.paths]
        return names, cache.labels.tolist(), cache.classes, cache.read("fc7")


def test_name_and_csv_labels_give_the_image_folder_rows(kaggle):
    options = {"layers": ["fc7"], "weights": "random", "num_workers": 0}
    by_folder = extract(kaggle / "folders", cache_dir=kaggle / "c0", **options)
    by_name = extract(
        kaggle / "train",
        cache_dir=kaggle / "c1",
        labelling=Labelling(name_regex=r"^(cat|dog)\."),
        **options,
    )
    by_csv = extract(
        kaggle / "train",
        cache_dir=kaggle / "c2",
        labelling=Labelling(csv=kaggle / "labels.csv"),
        **options,
    )
    expected = _rows(by_folder.cache_path)
    for result in (by_name, by_csv):
        names, labels, classes, features = _rows(result.cache_path)
        assert (names, labels, classes) == expected[:3]
        np.testing.assert_array_equal(features, expected[3])


def test_labelling_changes_relabel_without_recomputing(kaggle):
    options = {"layers": ["fc7"], "weights": "random", "num_workers": 0}
    options["cache_dir"] = kaggle / "cache"
    first = extract(
        kaggle / "train", labelling=Labelling(name_regex=r"^(\w+)\."), **options
    )
    relabel = ["path,label"] + [
        f"{n}.{i}.jpg,{'small' if i < 2 else 'big'}"
        for n in ("cat", "dog")
        for i in range(5)
    ]
    (kaggle / "other.csv").write_text(
        "\n".join([*relabel[:-1], "ghost.jpg,big"]) + "\n"
    )
    second = extract(
        kaggle / "train", labelling=Labelling(csv=kaggle / "other.csv"), **options
    )
    assert first.n_new == 10 and second.n_new == 0  # rows reused, labels rewritten
    assert [s.path for s in second.skipped] == ["dog.4.jpg"]  # not in the CSV
    assert "no label in other.csv" in second.skipped[0].reason
    assert "ghost.jpg" in second.notes[0]
    with FeatureCache(second.cache_path) as cache:
        assert cache.classes == ["big", "small"]
        assert cache.meta.labelling.startswith("csv ")
        assert len(cache.paths) == 9


def test_a_bad_labelling_is_refused_in_one_line(kaggle):
    runner = CliRunner()
    for option, message in [
        (["--label-from-name", "^cat"], "has no group"),
        (["--label-from-name", "^(cat"], "is not a regular expression"),
        (["--labels", str(kaggle / "nope.csv")], "does not exist"),
    ]:
        result = runner.invoke(
            main,
            [
                "extract",
                str(kaggle / "train"),
                "-l",
                "fc7",
                "--weights",
                "random",
                *option,
            ],
        )
        assert result.exit_code == 1, result.output
        assert message in result.output and "Traceback" not in result.output


# ------------------------------ choosing caches: one story per command (#32)


def run(*args: str):
    """A featx command as typed, whatever its exit code."""
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def run_hint(output: str):
    """The command between backquotes in an error, run as printed."""
    import shlex

    found = re.search(r"`(featx [^`]+)`", output) or re.search(
        r"first: (featx .+)$", output.strip()
    )
    hint = found.group(1)
    words = shlex.split(hint)
    assert words[0] == "featx"
    return run(*words[1:], "-q") if words[1] == "extract" else run(*words[1:])


RANDOM = {"weights": "random", "num_workers": 0, "cache_dir": Path("cache")}


@pytest.fixture
def two_networks(session):
    """data/Train extracted with AlexNet (fc7) and then resnet18 (avgpool):
    the most recent cache of the folder is resnet18's, which has no fc7."""
    extract(session / "data" / "Train", layers=["fc7"], **RANDOM)
    extract(session / "data" / "Train", layers=["avgpool"], model="resnet18", **RANDOM)
    return session


@pytest.mark.slow
def test_a_layer_the_caches_lack_is_refused_before_a_test_folder_is_extracted(
    session,
):
    extract(session / "data" / "Train", layers=["fc7"], **RANDOM)
    args = ["--layers", "conv5_avg,fc7", "--clfs", "logreg,ridge"]
    without = run("report", *args, "-q")
    result = run("report", *args, "--test", "data/Test", "-q")
    assert result.exit_code == without.exit_code == 1
    assert "Traceback" not in result.output
    # the same one-line error as without --test, and no held-out extraction
    assert result.stderr.splitlines()[-1] == without.stderr.splitlines()[-1]
    assert "lacks conv5_avg; extract first: featx extract" in result.stderr
    fit = run("fit", "--layer", "conv5_avg", "--test", "data/Test", "-q")
    assert fit.exit_code == 1 and "layer 'conv5_avg' is not in" in fit.stderr
    assert sorted(p.name[:5] for p in Path("cache").glob("*.h5")) == ["Train"]
    # the report's hint runs, and then the report does
    assert run_hint(result.stderr).exit_code == 0
    again = run("report", *args, "--test", "data/Test", "-q", "--cv", "2")
    assert again.exit_code == 0, again.output


@pytest.mark.slow
def test_a_test_folder_is_extracted_as_the_training_cache_by_cli_and_library(
    session,
):
    from featx.fit import fit
    from featx.images.preprocess import computed_with

    featx(
        "extract",
        "--decode",
        "exact",
        "-l",
        "fc7",
        "--weights",
        "random",
        "-q",
        "data/Train",
    )
    out = featx("fit", "--clf", "ridge", "--cv", "2", "--test", "data/Test", "-q")
    assert re.search(r"test: Test-random-\w+\.h5, 8 images: accuracy", out)
    with FeatureCache(next(Path("cache").glob("Test-*.h5"))) as test:
        assert computed_with(test.meta.transform)["decode"] == "exact"
    for path in Path("cache").glob("Test-*.h5"):
        path.unlink()
    result = fit(test="data/Test", clf="ridge", cv=2, save=False)
    assert result.test["n_images"] == 8
    assert Path(result.test["cache"]).name.startswith("Test-random-")
    assert any(
        n.startswith("held-out set: the cache of data/Test made as Train-")
        for n in result.notes
    )


def test_export_and_info_read_a_cache_holding_the_layer_or_the_model_named(
    two_networks,
):
    result = run("export", "--layer", "fc7", "data/Train")
    assert result.exit_code == 0, result.output
    assert re.match(r"wrote Train-random-\w+-fc7\.npz", result.stdout)
    # a layer only resnet18 has: its cache, without naming it
    result = run("export", "--layer", "avgpool")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("wrote Train-resnet18-random-")
    info = run("info", "data/Train")
    assert re.search(
        r"note: reading Train-resnet18-random-\w+\.h5 \(resnet18\), the most recent "
        r"of the 2 caches of data/Train; --model alexnet reads another",
        info.stderr,
    )
    info = run("info", "--model", "alexnet", "--json", "data/Train")
    assert json.loads(info.stdout)["model"] == "alexnet"
    # a network without the layer: the hint that says so runs
    result = run("export", "--layer", "fc7", "--model", "resnet18", "data/Train")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "fc7 is no layer of resnet18: `featx layers --model resnet18`" in (
        result.stderr
    )
    assert run_hint(result.stderr).exit_code == 0
    # a cache named, or fitted, that lacks the layer: the same, and it runs
    resnet = str(next(Path("cache").glob("Train-resnet18-*.h5")))
    for args in (
        ["export", "--layer", "fc7", resnet],
        ["fit", "--layer", "fc7", "--cache", resnet, "-q"],
    ):
        result = run(*args)
        assert result.exit_code == 1, result.output
        assert "fc7 is no layer of resnet18: `featx layers --model" in result.stderr
        assert run_hint(result.stderr).exit_code == 0
    # a layer no cache has: the hint extracts it with a network that has it
    result = run("export", "--layer", "pool5")
    assert result.exit_code == 1
    assert "no cache in ./cache holds pool5: Train-" in result.stderr
    assert run_hint(result.stderr).exit_code == 0
    assert run("export", "--layer", "pool5", "data/Train").exit_code == 0


def test_every_fit_note_names_the_caches_then_used(two_networks):
    out = featx(
        "fit",
        "--clf",
        "ridge",
        "--layer",
        "fc7",
        "--cv",
        "2",
        "--test",
        "data/Test",
        "-q",
    )
    alexnet = next(p.name for p in Path("cache").glob("Train-random-*.h5"))
    assert f"note: held-out set: the cache of data/Test made as {alexnet}," in out
    assert "left out resnet18: Train-resnet18-" in out
    assert re.search(r"test: Test-random-\w+\.h5, 8 images", out)
    # resnet18's cache is left out: no held-out cache made with its weights
    assert not list(Path("cache").glob("Test-resnet18-*.h5"))
    out = featx(
        "fit", "--clf", "ridge", "--models", "alexnet,resnet18", "--cv", "2", "-q"
    )
    assert "note: training on" not in out
    assert "note: comparing 2 models on" in out


@pytest.mark.slow
def test_the_warning_and_notes_come_before_the_progress_bars(session):
    extract(session / "data" / "Train", layers=["fc7"], **RANDOM)
    extract(session / "data" / "Test", layers=["fc7"], **RANDOM)
    for command in (["fit", "--clf", "ridge"], ["report", "--clfs", "ridge"]):
        result = run(*command, "--cv", "2")
        assert result.exit_code == 0, result.output
        text = result.output
        warning, training = text.index("WARNING: random"), text.index("note: train")
        held_out = text.index("note: held-out set")
        assert warning < training < held_out < text.index("folds")


@pytest.mark.slow
def test_extracting_another_folder_does_not_change_what_fit_trains_on(session):
    write_folder(session / "photos", {"cats": 3, "dogs": 3}, seed=3)
    for folder in ("data/Train", "data/Test", "photos"):
        extract(session / folder, layers=["fc7"], **RANDOM)
    out = featx("fit", "--clf", "ridge", "--cv", "2", "-q")
    assert re.search(
        r"note: training on Train-random-\w+\.h5 \(\S+/data/Train\), the only one "
        r"of 2 training folders in \./cache with a held-out sibling",
        out,
    )
    for path in Path("cache").glob("Test-*.h5"):
        path.unlink()
    result = run("fit", "--clf", "ridge", "-q")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "Error: 2 folders have training caches in ./cache, none with a " in (
        result.stderr
    )
    assert "/data/Train (Train-random-" in result.stderr
    assert "/photos (photos-random-" in result.stderr
    assert result.stderr.rstrip().endswith("--cache chooses one")
    out = featx("fit", "--clf", "ridge", "--cv", "2", "--cache", "data/Train", "-q")
    assert "cache: Train-random-" in out


@pytest.mark.slow
def test_info_says_when_nothing_was_skipped_and_predict_hints_model_file(session):
    extract(session / "data" / "Train", layers=["fc7"], **RANDOM)
    out = featx("info", "data/Train", "--skipped")
    assert out.strip() == (
        f"no file skipped: every file of {session / 'data' / 'Train'} is an image"
    )
    featx("fit", "--clf", "ridge", "--cv", "2", "--out", "models/x.skops", "-q")
    result = run("predict", "models/x.skops", "data/Test")
    assert result.exit_code == 2
    assert (
        "models/x.skops is a model file, not images to classify: featx predict "
        "--model-file models/x.skops data/Test"
    ) in result.stderr
    hint = result.stderr.rsplit(": featx ", 1)[1].split()
    assert run(*hint, "-q").exit_code == 0
