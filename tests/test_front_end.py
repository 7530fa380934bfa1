"""Folders as users have them: every entry accounted for (a row, a failure or a
file that is no image), decoders kept quiet with what they said recorded, and
every format Pillow and pillow-heif read.

Extraction runs with random weights to fc7 or pool5, in-process decoding unless
the test is about the decode workers.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from featx import extract
from featx.cache import FeatureCache, cache_info, read_layer
from featx.cli import main
from tests.conftest import make_image, write_folder

ROOT = Path(__file__).resolve().parent.parent


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def run_extract(folder, cache_dir, **kw):
    kw = {"layers": ["fc7"], "weights": "random", "num_workers": 0, **kw}
    return extract(folder, cache_dir=cache_dir, **kw)


# --- an account of every file ---------------------------------------------------


@pytest.fixture
def cluttered(tmp_path: Path) -> Path:
    """An ImageFolder with what real folders hold beside the images."""
    root = write_folder(tmp_path / "data", {"cats": 3, "dogs": 3})
    (root / "cats" / "notes.txt").write_text("my cats\n")
    (root / "cats" / "more.txt").write_text("more\n")
    (root / "dogs" / "paper.pdf").write_bytes(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n" * 8)
    (root / "dogs" / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1" * 4)
    (root / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (root / "dogs" / "README").write_text("no extension")
    (root / "dogs" / ".thumbnails").mkdir()
    make_image(np.random.default_rng(1)).save(root / "dogs" / ".thumbnails" / "t.png")
    (root / "cats" / "broken.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    return root


def _walked(root: Path) -> list[str]:
    """Every file and folder os.walk sees, relative and /-separated."""
    found = []
    for folder, dirs, files in os.walk(root):
        rel = Path(folder).relative_to(root)
        found += [(rel / name).as_posix() for name in dirs + files]
    return found


def test_every_entry_is_a_row_a_failure_or_a_skip(cluttered, cache_dir):
    args = ["--weights", "random", "--workers", "0", "--cache-dir", cache_dir, "-q"]
    result = invoke("extract", cluttered, "-l", "fc7", *args)
    assert result.exit_code == 0, result.output
    assert "images:  6 (6 new, 0 reused, 1 failed)" in result.output
    assert (
        "skipped: 7 files that are not images (.DS_Store 2, .txt 2, .pdf 1, "
        "hidden folders 1, no extension 1); featx info --skipped lists them"
    ) in result.output

    data = json.loads(invoke("info", "--cache-dir", cache_dir, "--json").output)
    rows = set(FeatureCache(Path(data["path"])).paths)
    failed = {f["path"] for f in data["failed"]}
    skipped = {x["path"]: x["reason"] for x in data["not_images"]}
    assert data["n_not_images"] == 7 and failed == {"cats/broken.jpg"}
    assert skipped == {
        ".DS_Store": "hidden file",
        "cats/more.txt": "not an image",
        "cats/notes.txt": "not an image",
        "dogs/.DS_Store": "hidden file",
        "dogs/.thumbnails": "hidden folder",
        "dogs/README": "not an image",
        "dogs/paper.pdf": "not an image",
    }
    hidden = [p for p, why in skipped.items() if why == "hidden folder"]
    for entry in _walked(cluttered):
        if (cluttered / entry).is_dir() and entry not in hidden:
            continue  # a class folder: its files are accounted for
        inside = any(entry.startswith(h + "/") for h in hidden)
        assert inside or entry in rows | failed | set(skipped), entry
    assert rows.isdisjoint(failed) and rows.isdisjoint(skipped)

    listed = invoke("info", "--cache-dir", cache_dir, "--skipped").stdout
    assert listed.splitlines() == [f"{p}: {why}" for p, why in skipped.items()]
    text = invoke("info", "--cache-dir", cache_dir).stdout
    assert "failed: 1   not images: 7   with warnings: 0" in text


def test_the_skip_line_shows_six_kinds_then_an_ellipsis(tmp_path, cache_dir):
    root = write_folder(tmp_path / "data", {"a": 2})
    for i, ext in enumerate([".txt", ".csv", ".md", ".json", ".xml", ".doc", ".zip"]):
        for j in range(i + 1):
            (root / "a" / f"f{j}{ext}").write_text("x")
    result = invoke(
        "extract", root, "-l", "fc7", "--weights", "random", "--workers", "0",
        "--cache-dir", cache_dir, "-q",
    )  # fmt: skip
    line = next(x for x in result.output.splitlines() if x.startswith("skipped:"))
    assert line == (
        "skipped: 28 files that are not images (.zip 7, .doc 6, .xml 5, .json 4, "
        ".md 3, .csv 2, …); featx info --skipped lists them"
    )


def test_no_skip_line_without_files_that_are_no_image(image_folder, cache_dir):
    result = invoke(
        "extract", image_folder, "-l", "fc7", "--weights", "random", "--workers",
        "0", "--cache-dir", cache_dir, "-q",
    )  # fmt: skip
    assert "skipped:" not in result.output and "warnings:" not in result.output
    data = json.loads(invoke("info", "--cache-dir", cache_dir, "--json").output)
    assert data["not_images"] == [] and data["warnings"] == []


def test_the_record_follows_the_latest_listing(image_folder, cache_dir):
    first = run_extract(image_folder, cache_dir)
    assert first.not_images == []
    (image_folder / "cats" / "notes.txt").write_text("x")
    second = run_extract(image_folder, cache_dir)
    assert [(x.path, x.reason) for x in second.not_images] == [
        ("cats/notes.txt", "not an image")
    ]
    assert second.n_new == 0 and second.n_reused == 12
    assert [x.path for x in FeatureCache(second.cache_path).not_images] == [
        "cats/notes.txt"
    ]
    (image_folder / "cats" / "notes.txt").unlink()
    third = run_extract(image_folder, cache_dir)
    assert third.not_images == [] and FeatureCache(third.cache_path).not_images == []


def test_a_read_only_cache_serves_a_folder_with_a_new_text_file(tmp_path):
    """The record follows the listing, but it is no reason to write: a cache on
    read-only media still serves its folder when a README appears beside it."""
    from tests.test_faults import remount, tmpfs

    folder = write_folder(tmp_path / "data", {"cats": 2, "dogs": 2})
    with tmpfs(tmp_path / "ro", "16m") as cache_dir:
        run_extract(folder, cache_dir)
        remount(cache_dir, "ro")
        (folder / "README.txt").write_text("about these photos")
        again = run_extract(folder, cache_dir)
        assert again.n_reused == 4 and [x.path for x in again.not_images] == [
            "README.txt"
        ]
        assert FeatureCache(again.cache_path).not_images == []  # unchanged


def test_a_cache_written_before_the_record_reads_as_none(image_folder, cache_dir):
    (image_folder / "cats" / "notes.txt").write_text("x")
    path = run_extract(image_folder, cache_dir).cache_path
    with h5py.File(path, "r+") as f:
        del f["not_images"], f["warnings"]
    info = cache_info(path)
    assert info["not_images"] == [] and info["warnings"] == []
    features, *_ = read_layer(path, "fc7")
    assert features.shape == (12, 4096)
    again = run_extract(image_folder, cache_dir)  # brought up to date
    assert again.n_new == 0 and [x.path for x in again.not_images] == ["cats/notes.txt"]
    assert [x.path for x in FeatureCache(path).not_images] == ["cats/notes.txt"]


def test_legacy_caches_have_no_record_and_load():
    legacy = sorted((ROOT / "tests" / "data" / "legacy").rglob("*.h5"))
    assert legacy
    for path in legacy:
        info = cache_info(path)
        assert info["n_not_images"] == 0 and info["n_warnings"] == 0, path


# --- quiet decoding ---------------------------------------------------------------


def damaged_tiff() -> bytes:
    """A Group-4 TIFF whose strip is garbled: it decodes, and libtiff prints
    ``Fax4Decode: Bad code word ...`` to the process's stderr from C."""
    rng = np.random.default_rng(0)
    pixels = (rng.integers(0, 2, (64, 64)) * 255).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).convert("1").save(out, "TIFF", compression="group4")
    data = bytearray(out.getvalue())
    tags = Image.open(io.BytesIO(bytes(data))).tag_v2
    start, length = tags[273][0], tags[279][0]
    garbage = rng.integers(0, 256, length - 4, np.uint8).tobytes()
    data[start + 4 : start + length] = garbage
    return bytes(data)


def broken_exif_jpeg() -> bytes:
    """A JPEG whose EXIF block claims more entries than it holds: PIL warns
    ``Corrupt EXIF data`` when the orientation is read."""
    exif = Image.Exif()
    exif[0x0112] = 1
    exif[0x010F] = "featx"
    raw = exif.tobytes()
    out = io.BytesIO()
    img = make_image(np.random.default_rng(2))
    img.save(out, "JPEG", exif=raw[:10] + b"\xff\xff" + raw[12:])
    return out.getvalue()


@pytest.fixture
def noisy(tmp_path: Path) -> Path:
    root = write_folder(tmp_path / "noisy", {"a": 2, "b": 2})
    (root / "a" / "fax.tif").write_bytes(damaged_tiff())
    (root / "b" / "exif.jpg").write_bytes(broken_exif_jpeg())
    return root


def test_the_damaged_files_are_noisy_without_featx():
    """The premise: decoding them plainly prints to stderr, from C and Python."""
    code = (
        "import io, sys; from PIL import Image, ImageOps\n"
        "for data in (sys.stdin.buffer.read().split(b'--cut--')):\n"
        "    ImageOps.exif_transpose(Image.open(io.BytesIO(data))).load()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        input=damaged_tiff() + b"--cut--" + broken_exif_jpeg(),
        capture_output=True,
    )
    assert done.returncode == 0, done.stderr
    assert b"Fax4Decode: Bad code word" in done.stderr
    assert b"Corrupt EXIF data" in done.stderr


BANNER = "WARNING: random weights, NOT pretrained: these features are for testing only."


def _featx_lines(stderr: str) -> list[str]:
    """The lines on stderr that are not featx's progress bars."""
    lines = [part.strip() for line in stderr.split("\n") for part in line.split("\r")]
    bars = ("hashing:", "extracting:", "copying:")
    return [x for x in lines if x and not x.startswith(bars)]


@pytest.mark.parametrize(("workers", "quiet"), [("0", True), ("1", False)])
@pytest.mark.slow
def test_decoders_print_nothing_and_their_warnings_are_kept(
    noisy, tmp_path, workers, quiet
):
    """In this process and in a decode worker, with and without the bar."""
    cache_dir = tmp_path / f"cache{workers}"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "FEATX_OFFLINE": "1"}
    done = subprocess.run(
        [
            sys.executable, "-m", "featx", "extract", str(noisy), "-l", "fc7",
            "--weights", "random", "--workers", workers, "--batch-size", "2",
            "--cache-dir", str(cache_dir), *(["-q"] if quiet else []),
        ],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    # featx's own line is all that reaches stderr, beside the progress bars
    assert _featx_lines(done.stderr) == [BANNER], done.stderr
    if quiet:
        assert done.stderr.splitlines() == [BANNER]
    else:
        assert "extracting: 100%" in done.stderr
    assert "images:  6 (6 new, 0 reused, 0 failed)" in done.stdout
    assert (
        "warnings: 2 images decoded with warnings (featx info --warnings)"
        in done.stdout
    )
    shown = invoke("info", "--cache-dir", cache_dir, "--warnings").stdout.splitlines()
    assert shown[0] == "a/fax.tif:" and shown[1].startswith(
        "    Fax4Decode: Bad code word"
    )
    exif = shown.index("b/exif.jpg:")
    assert "UserWarning: Corrupt EXIF data" in shown[exif + 1]
    assert all(line.startswith("    ") for line in shown if not line.endswith(":"))


@pytest.mark.slow
def test_warnings_stay_with_reused_images_and_go_with_removed_ones(noisy, cache_dir):
    first = run_extract(noisy, cache_dir)
    assert sorted(first.warnings) == ["a/fax.tif", "b/exif.jpg"]
    assert first.warnings["a/fax.tif"][0].startswith("Fax4Decode: Bad code word")
    again = run_extract(noisy, cache_dir)
    assert again.n_new == 0 and again.warnings == first.warnings
    more = run_extract(noisy, cache_dir, layers=["fc6"])  # the images decode again
    assert more.n_new == 6 and more.warnings == first.warnings
    (noisy / "b" / "exif.jpg").unlink()
    fewer = run_extract(noisy, cache_dir)
    assert list(fewer.warnings) == ["a/fax.tif"]
    assert list(FeatureCache(fewer.cache_path).warnings) == ["a/fax.tif"]
    # a file rewritten without its fault loses its warnings
    make_image(np.random.default_rng(3)).save(noisy / "a" / "fax.tif")
    fixed = run_extract(noisy, cache_dir)
    assert fixed.n_new == 1 and fixed.warnings == {}
    assert cache_info(fixed.cache_path)["warnings"] == []


# --- formats ----------------------------------------------------------------------


def _can_save(fmt: str) -> str:
    """Why ``fmt`` cannot be written here, or ''."""
    from featx.images import register_heif

    if fmt == "HEIF" and not register_heif():
        return "pillow-heif is not installed"
    try:
        Image.new("RGB", (16, 16)).save(io.BytesIO(), fmt)
    except (KeyError, OSError, ValueError) as exc:
        return f"Pillow has no {fmt} encoder here ({exc})"
    return ""


FORMATS = {".avif": "AVIF", ".heic": "HEIF", ".ppm": "PPM", ".pgm": "PPM"}
FORMATS[".jfif"] = "JPEG"


@pytest.fixture(scope="module")
def formats(tmp_path_factory):
    """One folder with an image of each format that can be written here, one
    with the lossless ones as PNG; both extracted to pool5."""
    root = tmp_path_factory.mktemp("formats")
    mixed, pngs = root / "mixed", root / "pngs"
    mixed.mkdir()
    pngs.mkdir()
    rng = np.random.default_rng(5)
    missing = {}
    for ext, fmt in FORMATS.items():
        if why := _can_save(fmt):
            missing[ext] = why
            continue
        img = make_image(rng, (120, 90), label=len(missing))
        img = img.convert("L") if ext == ".pgm" else img
        img.save(mixed / f"img{ext}", fmt)
        if ext in (".ppm", ".pgm"):
            img.save(pngs / f"img{ext}.png")
    cache = root / "cache"
    kw = {"layers": ["pool5"], "weights": "random", "num_workers": 0}
    made = extract(mixed, cache_dir=cache, **kw)
    png = extract(pngs, cache_dir=cache, **kw)
    return made, png, missing


@pytest.mark.parametrize("ext", list(FORMATS))
def test_every_format_gets_a_row(formats, ext):
    made, _, missing = formats
    if ext in missing:
        pytest.skip(missing[ext])
    assert made.failures == [] and made.not_images == []
    assert f"img{ext}" in FeatureCache(made.cache_path).paths


@pytest.mark.parametrize("ext", [".ppm", ".pgm"])
def test_lossless_formats_give_the_rows_of_the_same_picture_as_png(formats, ext):
    made, png, missing = formats
    if ext in missing:
        pytest.skip(missing[ext])
    x, _, paths, _ = read_layer(made.cache_path, "pool5")
    y, _, png_paths, _ = read_layer(png.cache_path, "pool5")
    a, b = x[paths.index(f"img{ext}")], y[png_paths.index(f"img{ext}.png")]
    assert np.linalg.norm(a - b) <= 1e-4 * np.linalg.norm(b)
