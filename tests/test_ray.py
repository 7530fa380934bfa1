"""The Ray engine and backend, on a local cluster started by the tests."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import featx.compute.ray_engine
from featx import extract, read_layer
from featx.cache import read_state
from featx.cli import main
from featx.compute.ray_engine import ExtractActor
from featx.fit import fit
from tests.conftest import interrupted_run, write_folder
from tests.test_images import write_odd_files

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def cluster():
    # fractional CPUs per actor (featx asks 0.5): a pool of whole-CPU actors on a
    # 2-CPU cluster starves the read tasks (shared/NOTES.md)
    ray.init(num_cpus=2, log_to_driver=False, include_dashboard=False)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.mark.slow
def test_ray_rows_equal_the_local_engine(cluster, tmp_path):
    folder = write_folder(tmp_path / "data", {"a": 10, "b": 9})
    (folder / "b" / "broken.png").write_bytes(b"not a png")
    odd = write_odd_files(folder / "b")  # Pillow gives up on two of them
    local = extract(
        folder,
        layers=["conv5", "fc7"],
        spatial="avg",
        weights="random",
        cache_dir=tmp_path / "local",
        num_workers=0,
        batch_size=4,
    )
    remote = extract(
        folder,
        layers=["conv5", "fc7"],
        spatial="avg",
        weights="random",
        cache_dir=tmp_path / "ray",
        engine="ray",
        batch_size=4,
    )
    assert remote.cache_path.name == local.cache_path.name  # the same cache format
    expected = {"b/broken.png": "not an image PIL can identify"}
    expected |= {f"b/{name}": why for name, why in odd.items() if why}
    assert {f.path: f.reason for f in remote.failures} == expected
    assert {f.path: f.reason for f in local.failures} == expected
    for key in ("conv5_avg", "fc7"):
        a, b = read_layer(local.cache_path, key), read_layer(remote.cache_path, key)
        assert a.paths == b.paths and a.labels.tolist() == b.labels.tolist()
        np.testing.assert_allclose(b.features, a.features, rtol=1e-5, atol=1e-6)
    again = extract(
        folder,
        layers=["fc7"],
        weights="random",
        spatial="avg",
        cache_dir=tmp_path / "ray",
        engine="ray",
    )
    assert again.n_new == 0


@pytest.mark.slow
def test_ray_runs_caffe_alexnet_with_a_mean_image_and_views(cluster, tmp_path):
    folder = write_folder(tmp_path / "data", {"a": 4, "b": 4})
    mean = np.random.default_rng(0).uniform(90, 130, (3, 256, 256))
    np.save(tmp_path / "mean.npy", mean.astype(np.float32))
    runs = {
        engine: extract(
            folder,
            layers=["norm1", "fc7"],
            weights="random",
            model="caffe-alexnet",
            mean=tmp_path / "mean.npy",
            cache_dir=tmp_path / engine,
            engine=engine,
            num_workers=0,
            batch_size=4,
            views="flip",
        )
        for engine in ("local", "ray")
    }
    assert runs["ray"].cache_path.name == runs["local"].cache_path.name
    assert "caffe-alexnet" in runs["ray"].cache_path.name
    for key in ("norm1", "fc7", "fc7@flip"):
        a = read_layer(runs["local"].cache_path, key)
        b = read_layer(runs["ray"].cache_path, key)
        np.testing.assert_allclose(b.features, a.features, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_killed_driver_resumes_without_duplicates(cluster, tmp_path):
    folder = write_folder(tmp_path / "data", {"a": 60, "b": 60}, ext=".jpg")
    run = interrupted_run(
        folder,
        tmp_path / "cache",
        signal.SIGKILL,
        extra=["--engine", "ray", "--address", cluster],
        at=24,
    )
    assert run.returncode == -9
    (path,) = (tmp_path / "cache").glob("*.h5")
    done = int(read_state(path).done["fc7"].sum())
    assert 0 < done < 120
    resumed = extract(
        folder,
        layers=["conv5", "fc7"],
        weights="random",
        cache_dir=tmp_path / "cache",
        engine="ray",
        batch_size=4,
    )
    assert resumed.n_new == 120 - done and resumed.n_images == 120
    whole = extract(
        folder,
        layers=["conv5", "fc7"],
        weights="random",
        cache_dir=tmp_path / "whole",
        num_workers=0,
        batch_size=4,
    )
    for key in ("conv5", "fc7"):
        a, b = read_layer(path, key), read_layer(whole.cache_path, key)
        assert a.paths == b.paths and len(set(a.paths)) == 120
        np.testing.assert_allclose(a.features, b.features, rtol=1e-5, atol=1e-6)


class DiesOnce(ExtractActor):
    """An actor whose process dies on the first block it gets while the file
    ``die-once`` lies beside the data folder (it removes the file first)."""

    def __call__(self, batch):
        marker = Path(str(batch["path"][0])).parents[2] / "die-once"
        try:
            marker.unlink()
        except FileNotFoundError:
            return super().__call__(batch)
        os._exit(1)


@pytest.mark.slow
def test_a_restarted_worker_is_one_note_and_ray_talks_to_its_log(
    cluster, tmp_path, monkeypatch
):
    monkeypatch.setattr(featx.compute.ray_engine, "ExtractActor", DiesOnce)
    folder = write_folder(tmp_path / "data", {"a": 4, "b": 4})
    (tmp_path / "die-once").touch()
    result = extract(
        folder,
        layers=["fc7"],
        weights="random",
        cache_dir=tmp_path / "cache",
        engine=featx.extraction.RayEngine(actors=1),
        batch_size=4,
    )
    assert not (tmp_path / "die-once").exists()  # it died
    assert result.n_new == 8 and result.failures == []  # and its images were retried
    log = result.cache_path.with_suffix(".ray.log")
    assert [n for n in result.notes if "Ray" in n] == [
        "Ray restarted 1 worker(s) that died; the images they held were retried "
        f"(Ray's messages: {log})"
    ]
    # what Ray says there (its core's actor line, the raylet's notice of the
    # death) varies from run to run: the subprocess test below pins each down
    assert log.is_file()


#: A driver whose Ray talks on file descriptor 2 (as its C++ core does) and on
#: sys.stdout (as its raylet messages do) while featx draws on sys.stderr.
DRIVER = """
import os, sys
from pathlib import Path
from featx.compute.ray_engine import ray_output_to
with ray_output_to(Path(sys.argv[1])):
    os.write(2, b"core_worker.cc:2465: Actor with class name X\\n")
    print("(raylet) A worker died or was killed")
    sys.stderr.write("featx progress\\n")
sys.stderr.write("featx after\\n")
print("featx result")
"""


@pytest.mark.slow
def test_ray_output_goes_to_its_log_and_featx_keeps_the_terminal(tmp_path):
    log = tmp_path / "x.ray.log"
    proc = subprocess.run(
        [sys.executable, "-c", DRIVER, str(log)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "featx progress\nfeatx after\n"
    assert proc.stdout == "featx result\n"
    assert log.read_text() == (
        "core_worker.cc:2465: Actor with class name X\n"
        "(raylet) A worker died or was killed\n"
    )


@pytest.mark.slow
def test_cv_on_ray_equals_local(cluster, digits, tmp_path):
    kw = {
        "cache": digits["train_cache"],
        "layer": "fc7",
        "clf": "svm",
        "cv": 3,
        "jobs": 2,
        "save": False,
    }
    local = fit(**kw)
    remote = fit(**kw, backend="ray")
    assert remote.cv_scores == local.cv_scores
    assert remote.cv_confusion == local.cv_confusion


@pytest.mark.slow
def test_default_install_does_not_import_ray():
    code = (
        "import sys, featx, featx.cli, featx.extraction, featx.fit, featx.report;"
        "print('ray' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False"


def test_engine_ray_without_ray_says_how_to_install(
    monkeypatch, image_folder, cache_dir
):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if it were not installed
    result = CliRunner().invoke(
        main,
        [
            "extract",
            str(image_folder),
            "-l",
            "fc7",
            "--weights",
            "random",
            "--engine",
            "ray",
            "--cache-dir",
            str(cache_dir),
        ],
    )
    assert result.exit_code == 1
    assert result.output.strip() == (
        "Error: --engine ray needs Ray, which is not installed: pip install -e "
        "'.[ray]' (or pip install 'ray[data]')"
    )
