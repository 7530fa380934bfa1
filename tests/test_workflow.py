"""The session users type: the README's steps with no options beyond --weights."""

import re

import pytest
from click.testing import CliRunner

from featx.cli import main
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
