"""The torture suite: every class of fault a hostile user found, built for real.

Each test makes the fault itself (links, FIFOs, bytes that are not UTF-8,
unreadable files, damaged caches, read-only and full disks, hostile names and
model files), runs the real command line, and checks three things: the exit
code, a one-line message with no traceback, and that nothing computed before
the fault is lost (the cache opens, and a resumed run gives identical arrays).

Permissions are denied for real: as root, commands run without the
DAC_OVERRIDE/DAC_READ_SEARCH capabilities (``setpriv``), so mode 000 binds.
Read-only and full disks are small tmpfs mounts, made when the tests run as
root (as in CI) and skipped otherwise.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from featx import extract
from featx.cache import FeatureCache, cache_lock
from featx.errors import CacheBusyError
from tests.conftest import write_folder
from tests.test_images import write_odd_files

ROOT = os.geteuid() == 0
UNPRIVILEGED = (
    ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]
    if ROOT and shutil.which("setpriv")
    else []
)


def featx(*args, unprivileged=False, timeout=300) -> subprocess.CompletedProcess:
    """Run the featx command line; ``unprivileged`` drops root's file powers."""
    prefix = UNPRIVILEGED if unprivileged else []
    cmd = [*prefix, sys.executable, "-m", "featx", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def extract_cmd(folder, cache_dir, *extra, layers=("fc7",), **kwargs):
    layer_args = [a for layer in layers for a in ("--layer", layer)]
    return featx(
        "extract",
        folder,
        *layer_args,
        "--weights",
        "random",
        "--workers",
        "0",
        "--cache-dir",
        cache_dir,
        "-q",
        *extra,
        **kwargs,
    )


def assert_one_line_error(proc, pattern: str, code: int = 1) -> str:
    """Exit ``code``, no traceback, and exactly one ``Error:`` line matching."""
    text = proc.stdout + proc.stderr
    assert proc.returncode == code, text
    assert "Traceback" not in text, text
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Error")]
    assert len(errors) == 1, proc.stderr
    assert pattern.lower() in errors[0].lower(), errors[0]
    return errors[0]


def assert_ok(proc) -> str:
    text = proc.stdout + proc.stderr
    assert proc.returncode == 0, text
    assert "Traceback" not in text, text
    return proc.stdout


def arrays(cache_path: Path) -> dict:
    """Every layer's features and the paths and labels of a cache."""
    with FeatureCache(cache_path) as cache:
        out = {"paths": cache.paths, "labels": cache.labels.tolist()}
        for key in cache.layers:
            out[key] = cache.read(key)
    return out


def assert_same_arrays(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        if isinstance(a[key], np.ndarray):
            np.testing.assert_array_equal(a[key], b[key])
        else:
            assert a[key] == b[key], key


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    """Twelve images and their reference cache (fc7 and pool5), made once."""
    root = tmp_path_factory.mktemp("clean")
    folder = write_folder(root / "data", {"cats": 6, "dogs": 6})
    result = extract(
        folder,
        layers=["fc7", "pool5"],
        weights="random",
        cache_dir=root / "cache",
        num_workers=0,
    )
    return {"folder": folder, "cache": result.cache_path}


def copy_clean(clean, tmp_path) -> tuple[Path, Path]:
    """A private copy of the clean folder and its cache directory."""
    folder = tmp_path / "data"
    shutil.copytree(clean["folder"], folder)
    cache_dir = tmp_path / "cache"
    cache_dir.mkdir()
    return folder, cache_dir


@contextlib.contextmanager
def tmpfs(path: Path, size: str):
    """A small tmpfs at ``path`` (root only); unmounted afterwards."""
    if not ROOT:
        pytest.skip("mounting a tmpfs needs root (CI runs as root)")
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def remount(path: Path, options: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{options}", str(path)], check=True)


# ------------------------------------------------------- files and folders


@pytest.mark.slow
def test_links_fifos_and_bad_names_are_skipped_with_reasons(tmp_path):
    folder = write_folder(tmp_path / "data", {"cats": 4, "dogs": 3})
    (folder / "cats" / "loop").symlink_to("..")  # walks into dogs/ again
    (folder / "cats" / "up").symlink_to(folder / "cats")  # into itself
    (folder / "cats" / "dangling.png").symlink_to(tmp_path / "nowhere.png")
    os.mkfifo(folder / "cats" / "pipe.png")  # hashing it would hang
    good = (folder / "dogs" / "img000.png").read_bytes()
    Path(os.fsdecode(os.fsencode(folder / "dogs") + b"/\xff\xfe.png")).write_bytes(good)
    (folder / "dogs" / "evil\nfailed:  forged.png").write_bytes(b"not an image")

    proc = extract_cmd(folder, tmp_path / "cache", timeout=240)
    out = assert_ok(proc)
    lines = out.splitlines()
    assert [x for x in lines if x.startswith("failed:")] == [
        "failed:  dogs/evil\\nfailed:  forged.png: not an image PIL can identify"
    ]
    skipped = "\n".join(x for x in lines if x.startswith("skipped:"))
    for name, reason in [
        ("cats/loop", "loop"),
        ("cats/up", "loop"),
        ("cats/dangling.png", "dangling"),
        ("cats/pipe.png", "not a regular file"),
        ("dogs/\\xff\\xfe.png", "not valid UTF-8"),
    ]:
        assert f"skipped: {name}: " in skipped and reason in skipped, skipped

    cache = next((tmp_path / "cache").glob("*.h5"))
    with FeatureCache(cache) as c:
        assert len(c.paths) == 7  # not 1,640: the loop is walked once
        labels = dict(zip(c.paths, c.labels.tolist(), strict=True))
        assert all(labels[p] == (0 if p.startswith("cats/") else 1) for p in labels)
        recorded = {f.path for f in c.failed}
    assert {"cats/loop", "cats/pipe.png", "dogs/\\xff\\xfe.png"} <= recorded

    again = extract_cmd(folder, tmp_path / "cache")  # a second run changes nothing
    assert "(0 new, 7 reused" in assert_ok(again)


@pytest.mark.slow
def test_files_pillow_gives_up_on_are_failures_and_a_rerun_finishes(tmp_path):
    folder = write_folder(tmp_path / "data", {"cats": 3, "dogs": 3})
    reasons = write_odd_files(folder / "dogs")  # a DDS, an APNG and an MPO, real
    failed = {f"dogs/{name}": why for name, why in reasons.items() if why}

    # a DataLoader worker, where the DDS's NotImplementedError used to end the run
    proc = extract_cmd(folder, tmp_path / "cache", "--workers", "1", timeout=240)
    lines = assert_ok(proc).splitlines()
    assert sorted(x for x in lines if x.startswith("failed:")) == sorted(
        f"failed:  {path}: {why}" for path, why in failed.items()
    )
    cache = next((tmp_path / "cache").glob("*.h5"))
    with FeatureCache(cache) as c:
        assert "dogs/camera.mpo" in c.paths  # a row of its own
        assert {f.path: f.reason for f in c.failed} == failed
    info = assert_ok(featx("info", cache, "--cache-dir", tmp_path / "cache"))
    for path, why in failed.items():
        assert f"failed:   {path}: {why}" in info

    again = extract_cmd(folder, tmp_path / "cache", "--workers", "1")
    assert "(0 new, 7 reused" in assert_ok(again)


@pytest.mark.slow
def test_unreadable_folders_and_files_are_reported_not_dropped(tmp_path):
    if ROOT and not UNPRIVILEGED:
        pytest.skip("root without setpriv cannot be denied a read")
    folder = write_folder(tmp_path / "data", {"birds": 3, "cats": 4, "dogs": 4})
    (folder / "cats" / "deep").mkdir()
    write_folder(folder / "cats" / "deep", {"x": 2}, seed=3)
    (folder / "birds").chmod(0)  # a whole class
    (folder / "cats" / "deep" / "x").chmod(0)  # a nested folder
    (folder / "dogs" / "img001.png").chmod(0)  # one file
    cache_dir = tmp_path / "cache"
    cache_dir.mkdir()
    tmp_path.chmod(0o777)
    cache_dir.chmod(0o777)
    try:
        proc = extract_cmd(folder, cache_dir, unprivileged=True)
    finally:
        for p in (folder / "birds", folder / "cats" / "deep" / "x"):
            p.chmod(0o755)
        (folder / "dogs" / "img001.png").chmod(0o644)
    out = assert_ok(proc)
    assert "skipped: birds: cannot read folder: Permission denied" in out
    assert "skipped: cats/deep/x: cannot read folder: Permission denied" in out
    assert "skipped: dogs/img001.png: cannot read file: Permission denied" in out
    with FeatureCache(next(cache_dir.glob("*.h5"))) as c:
        assert {f.path for f in c.failed} == {
            "birds",
            "cats/deep/x",
            "dogs/img001.png",
        }
        assert len(c.paths) == 7


# -------------------------------------------------------------- the cache


@pytest.mark.slow
def test_truncated_cache_says_damaged_and_rebuild_recovers(clean, tmp_path):
    folder, cache_dir = copy_clean(clean, tmp_path)
    first = extract_cmd(folder, cache_dir, layers=("fc7", "pool5"))
    assert_ok(first)
    cache = next(cache_dir.glob("*.h5"))
    reference = arrays(cache)
    os.truncate(cache, cache.stat().st_size // 2)

    for args in (["info", cache], ["fit", "--cache-dir", cache_dir, "-q"]):
        line = assert_one_line_error(featx(*args), "is damaged")
        assert "--rebuild" in line and "being written" not in line
    line = assert_one_line_error(extract_cmd(folder, cache_dir), "is damaged")
    assert f"featx extract {folder.resolve()} --rebuild" in line

    assert_ok(extract_cmd(folder, cache_dir, "--rebuild", layers=("fc7", "pool5")))
    assert_same_arrays(arrays(cache), reference)


@pytest.mark.slow
def test_garbage_anywhere_in_a_cache_never_gives_a_traceback(clean, tmp_path):
    rng = np.random.default_rng(7)
    size = clean["cache"].stat().st_size
    # the superblock, the root group, the metadata and six places anywhere
    offsets = [0, 8, 512, 2048, *rng.integers(0, size - 64, 6).tolist()]
    for offset in offsets:
        cache_dir = tmp_path / f"at{offset}"
        cache_dir.mkdir()
        cache = cache_dir / clean["cache"].name
        shutil.copy(clean["cache"], cache)
        with cache.open("r+b") as f:
            f.seek(offset)
            f.write(rng.bytes(64))
        for args in (
            ["info", cache],
            ["fit", "--cache-dir", cache_dir, "--layer", "fc7", "--clf", "ridge"],
        ):
            proc = featx(*args, "--cv", "2", "-q") if args[0] == "fit" else featx(*args)
            text = proc.stdout + proc.stderr
            assert proc.returncode in (0, 1), (offset, args, text)
            assert "Traceback" not in text, (offset, text)
            if proc.returncode == 1:
                assert "damaged" in text, (offset, text)


def test_nan_features_never_reach_a_classifier(clean, tmp_path):
    cache_dir = tmp_path / "cache"
    cache_dir.mkdir()
    cache = cache_dir / clean["cache"].name
    shutil.copy(clean["cache"], cache)
    with h5py.File(cache, "r+") as f:
        f["features/fc7"][3, 10] = np.nan
    line = assert_one_line_error(
        featx("fit", "--cache-dir", cache_dir, "--layer", "fc7", "-q"), "damaged"
    )
    assert "1 row(s) of layer fc7 hold NaN" in line


@pytest.mark.slow
def test_read_only_cache_is_readable_fittable_and_reportable(clean, tmp_path):
    folder, _ = copy_clean(clean, tmp_path)
    with tmpfs(tmp_path / "ro", "16m") as cache_dir:
        assert_ok(extract_cmd(folder, cache_dir, layers=("fc7",)))
        remount(cache_dir, "ro")
        again = assert_ok(extract_cmd(folder, cache_dir, layers=("fc7",)))
        assert "(0 new, 12 reused" in again
        line = assert_one_line_error(
            extract_cmd(folder, cache_dir, layers=("pool5",)), "cannot write in"
        )
        assert "writable --cache-dir" in line
        assert_ok(featx("fit", "--cache-dir", cache_dir, "--clf", "ridge", "-q"))
        report = featx(
            "report", "--cache-dir", cache_dir, "--clfs", "ridge", "--out",
            tmp_path / "report", "-q",
        )  # fmt: skip
        assert "cannot store results in" in assert_ok(report)
        assert (tmp_path / "report" / "report.html").is_file()
        into_ro = featx(
            "report", "--cache-dir", cache_dir, "--clfs", "ridge", "--out",
            cache_dir / "report", "-q",
        )  # fmt: skip
        assert_one_line_error(into_ro, "choose another --out")


@pytest.mark.slow
def test_disk_full_stops_with_one_line_and_loses_nothing(clean, tmp_path):
    folder, _ = copy_clean(clean, tmp_path)
    with tmpfs(tmp_path / "small", "900k") as cache_dir:
        assert_ok(extract_cmd(folder, cache_dir, layers=("fc7",)))  # ~200 kB
        cache = next(cache_dir.glob("*.h5"))
        before = arrays(cache)
        # pool5 for 12 images is 442 kB, and a new layer rewrites the file
        proc = extract_cmd(folder, cache_dir, layers=("fc7", "pool5", "fc6"))
        line = assert_one_line_error(proc, "no space left on")
        assert "free" in line and "run again" in line
        assert [p.name for p in cache_dir.iterdir() if ".tmp-" in p.name] == []
        assert_same_arrays(arrays(cache), before)
        remount(cache_dir, "size=8m")
        assert_ok(extract_cmd(folder, cache_dir, layers=("fc7", "pool5")))
        assert_same_arrays(arrays(cache), arrays(clean["cache"]))


@pytest.mark.slow
def test_a_featx_reader_never_blocks_a_writer(clean, tmp_path):
    folder, cache_dir = copy_clean(clean, tmp_path)
    assert_ok(extract_cmd(folder, cache_dir, layers=("fc7",)))
    cache = next(cache_dir.glob("*.h5"))
    with FeatureCache(cache) as reading:  # a long `featx fit` holds this open
        before = reading.read("fc7")
        write_folder(folder, {"cats": 8}, seed=9)  # 2 new images
        assert_ok(extract_cmd(folder, cache_dir, layers=("fc7", "pool5")))
        np.testing.assert_array_equal(reading.read("fc7"), before)
    with FeatureCache(cache) as after:
        assert len(after.paths) == 14


@pytest.mark.slow
def test_writers_and_foreign_readers_get_their_own_messages(clean, tmp_path):
    folder, cache_dir = copy_clean(clean, tmp_path)
    assert_ok(extract_cmd(folder, cache_dir, layers=("fc7",)))
    cache = next(cache_dir.glob("*.h5"))
    with cache_lock(cache):
        line = assert_one_line_error(
            extract_cmd(folder, cache_dir, layers=("pool5",)), "another featx process"
        )
        assert "is writing" in line
    before = arrays(cache)
    with h5py.File(cache, "r", locking=True):  # another program reads it
        write_folder(folder, {"cats": 6}, seed=9)  # new content, same names
        assert_one_line_error(
            extract_cmd(folder, cache_dir, layers=("fc7",)), "open in another program"
        )
    assert_same_arrays(arrays(cache), before)  # the refused writer changed nothing
    assert_ok(extract_cmd(folder, cache_dir, layers=("fc7",)))


@pytest.mark.slow
def test_no_lock_file_remains_after_extract_fit_and_report(clean, tmp_path):
    folder, cache_dir = copy_clean(clean, tmp_path)
    assert_ok(extract_cmd(folder, cache_dir, layers=("fc7",)))
    common = ["--cache-dir", cache_dir, "--layer", "fc7", "--cv", "2", "-q"]
    assert_ok(featx("fit", *common, "--clf", "logreg", "--jobs", "1"))
    assert_ok(
        featx(
            "report", "--cache-dir", cache_dir, "--layers", "fc7", "--clfs",
            "logreg", "--cv", "2", "--repeats", "1", "--no-tune", "-q",
            "--out", tmp_path / "report",
        )
    )  # fmt: skip
    assert not list(tmp_path.rglob("*.lock")), list(tmp_path.rglob("*.lock"))


#: Take a cache's lock and die without letting go (as a killed run does).
KILLED_WRITER = """
import os, signal, sys
from pathlib import Path
from featx.cache import cache_lock
with cache_lock(Path(sys.argv[1])):
    os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.slow
def test_a_lock_file_left_by_a_killed_process_does_not_block(clean, tmp_path):
    folder, cache_dir = copy_clean(clean, tmp_path)
    assert_ok(extract_cmd(folder, cache_dir, layers=("fc7",)))
    cache = next(cache_dir.glob("*.h5"))
    killed = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(cache)])
    assert killed.returncode == -9
    stale = cache.with_name(f".{cache.name}.lock")
    assert stale.exists()  # what a killed writer leaves
    assert_ok(extract_cmd(folder, cache_dir, layers=("fc7", "pool5")))
    assert not stale.exists()  # taken over, then removed at the normal end


def test_a_live_writer_blocks_and_its_lock_file_goes_with_it(tmp_path):
    cache = tmp_path / "a.h5"
    with cache_lock(cache), pytest.raises(CacheBusyError), cache_lock(cache):
        pass
    assert not list(tmp_path.iterdir())  # no lock file left
    with cache_lock(cache):  # and the next writer gets it at once
        assert cache.with_name(".a.h5.lock").exists()


# ----------------------------------------------- classifiers, reports, models


@pytest.mark.slow
def test_names_that_mean_something_to_a_renderer_render_literally(tmp_path):
    names = {"$x^2$": 6, "a^b": 6, "<i>&amp;": 6}
    folder = write_folder(tmp_path / "data", names)
    assert_ok(extract_cmd(folder, tmp_path / "cache"))
    out = tmp_path / "report"
    proc = featx(
        "report", "--cache-dir", tmp_path / "cache", "--clfs", "ridge", "--out", out,
        "-q", "--cv", "2",
    )  # fmt: skip
    assert_ok(proc)
    html = (out / "report.html").read_text()
    assert "$x^2$" in html and "a^b" in html and "&lt;i&gt;&amp;amp;" in html
    assert "<i>" not in html
    assert "$x^2$" in json.dumps(json.loads((out / "results.json").read_text()))
    # the confusion matrix has the class names as tick labels
    assert {p.name for p in out.glob("*.png")} >= {
        "accuracy_by_layer.png",
        "confusion_best.png",
        "fit_time.png",
    }


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["fit", "--jobs", "0"], 2, "not a positive number of jobs"),
        (["fit", "--pca", "11"], 1, "exceeds what a training fold holds"),
        (["report", "--clfs", ","], 1, "no classifier given"),
    ],
)
def test_bad_options_are_refused_before_work(clean, args, code, message):
    cache_dir = clean["cache"].parent
    proc = featx(*args, "--cache-dir", cache_dir, "-q")
    assert_one_line_error(proc, message, code=code)


class Planted:
    """Unpickling (or un-skopsing) this would write a marker file."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __setstate__(self, state):
        Path(state["marker"]).write_text("code ran")


@pytest.mark.slow
def test_a_model_file_cannot_run_code_when_loaded(clean, tmp_path):
    import joblib
    import skops.io as sio

    from featx.digest import file_sha256

    marker = tmp_path / "ran"
    hostile = tmp_path / "hostile.skops"
    blob = {"format": 2, "meta": {}, "pipeline": Planted(str(marker))}
    sio.dump(blob, hostile)
    (tmp_path / "hostile.skops.sha256").write_text(f"{file_sha256(hostile)}  x\n")
    proc = featx("predict", "--model", hostile, clean["folder"])
    assert_one_line_error(proc, "types featx does not trust")
    assert not marker.exists()

    old = tmp_path / "old.joblib"
    joblib.dump(blob, old)
    (tmp_path / "old.joblib.sha256").write_text(f"{file_sha256(old)}  x\n")
    assert_one_line_error(
        featx("predict", "--model", old, clean["folder"]), "loading joblib runs code"
    )
    assert not marker.exists()


@pytest.mark.slow
def test_nan_weights_are_refused_at_load(tmp_path, image_folder):
    from torchvision.models import alexnet

    state = alexnet().state_dict()
    state["classifier.1.weight"][0, 0] = float("nan")
    torch.save(state, tmp_path / "nan.pth")
    proc = featx(
        "extract", image_folder, "--layer", "fc7", "--weights", tmp_path / "nan.pth",
        "--cache-dir", tmp_path / "cache",
    )  # fmt: skip
    assert_one_line_error(proc, "holds NaN or Inf")
    assert not (tmp_path / "cache").exists() or not list(
        (tmp_path / "cache").glob("*.h5")
    )


@pytest.mark.slow
def test_predict_reports_each_bad_path_and_goes_on(clean, tmp_path):
    model = tmp_path / "m.skops"
    assert_ok(
        featx(
            "fit",
            "--cache-dir",
            clean["cache"].parent,
            "--layer",
            "fc7",
            "--clf",
            "ridge",
            "--out",
            model,
            "-q",
            "--cv",
            "2",
        )  # fmt: skip
    )
    good = clean["folder"] / "cats" / "img000.png"
    locked = tmp_path / "locked.png"
    shutil.copy(good, locked)
    locked.chmod(0)
    os.mkfifo(tmp_path / "pipe.png")
    tmp_path.chmod(0o777)
    proc = featx(
        "predict", "--model", model, tmp_path / "missing.png", locked,
        tmp_path / "pipe.png", good, unprivileged=True,
    )  # fmt: skip
    out = assert_ok(proc)
    lines = dict(line.split("\t", 1) for line in out.splitlines())
    assert lines[str(tmp_path / "missing.png")] == "ERROR: does not exist"
    assert "not a regular file" in lines[str(tmp_path / "pipe.png")]
    if UNPRIVILEGED or not ROOT:
        assert "Permission denied" in lines[str(locked)]
    assert not lines[str(good)].startswith("ERROR")
