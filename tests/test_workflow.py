"""The session users type: the README's steps with no options beyond --weights."""

import re

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
