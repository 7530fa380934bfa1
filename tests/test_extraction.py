import hashlib
import signal
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.models import AlexNet_Weights

import featx.compute.forward as forward
from featx import FeatureCache, extract, read_layer
from featx.cache import cache_lock, read_state
from featx.errors import CacheBusyError, CacheError
from featx.model import FRIENDLY_LAYERS, load_weights
from tests.conftest import interrupted_run, make_image, reference, write_folder


def run(folder, cache_dir, weights="random", **kw):
    kw.setdefault("num_workers", 0)
    return extract(folder, weights=weights, cache_dir=cache_dir, **kw)


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_cache_matches_create_feature_extractor(
    image_folder, cache_dir, state_dict_file
):
    layers = [*FRIENDLY_LAYERS, "features.10", "classifier.4"]
    result = run(image_folder, cache_dir, weights=str(state_dict_file), layers=layers)
    model = load_weights(str(state_dict_file)).model
    transforms = AlexNet_Weights.IMAGENET1K_V1.transforms()
    with FeatureCache(result.cache_path) as cache:
        paths = cache.paths
        batch = torch.stack(
            [transforms(Image.open(image_folder / p).convert("RGB")) for p in paths]
        )
        ref = reference(
            model, [cache.layers[k].module_path for k in layers], batch, inplace=False
        )
        for key in layers:
            expected = ref[cache.layers[key].module_path].reshape(len(paths), -1)
            got = torch.from_numpy(cache.read(key))
            torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


def test_layout_and_reader(image_folder, cache_dir):
    result = run(image_folder, cache_dir, layers=["fc7", "conv5"], spatial="avg")
    assert result.n_images == 12 and result.n_new == 12 and result.n_failed == 0
    with h5py.File(result.cache_path, "r") as f:
        assert f["features/fc7"].shape == (12, 4096)
        assert f["features/conv5_avg"].shape == (12, 256)
        assert f["features/conv5_avg"].attrs["module_path"] == "features.11"
        assert f["features/conv5_avg"].attrs["spatial"] == "avg"
        assert list(f["features/fc7"].attrs["shape"]) == [4096]
        assert f["features/fc7"].chunks is not None
        assert f["paths"][0].decode() == "cats/img000.png"
        assert f["labels"][:].tolist() == [0] * 6 + [1] * 6
        assert len(f["sha256"][0]) == 64
        assert f.attrs["weights_id"] == "random(seed=0)"
        assert not f.attrs["weights_pretrained"]
        assert f.attrs["torch_version"] == str(torch.__version__)
        assert f.attrs["featx_format"] == 1
    features, labels, paths, classes = read_layer(result.cache_path, "fc7")
    assert features.shape == (12, 4096) and features.dtype == np.float32
    assert classes == ["cats", "dogs"] and paths[-1] == "dogs/img005.png"
    assert labels.tolist() == [0] * 6 + [1] * 6


@pytest.mark.slow
def test_spatial_pooling_and_float16(image_folder, cache_dir, tmp_path):
    full = read_layer(
        run(image_folder, cache_dir, layers=["conv5"]).cache_path, "conv5"
    )
    maps = full.features.reshape(12, 256, 13, 13)
    for mode, fn in (("avg", np.mean), ("max", np.max)):
        pooled = read_layer(
            run(image_folder, cache_dir, layers=["conv5"], spatial=mode).cache_path,
            f"conv5_{mode}",
        )
        np.testing.assert_allclose(
            pooled.features, fn(maps, axis=(2, 3)), rtol=1e-5, atol=1e-6
        )
    half = run(image_folder, tmp_path / "c16", layers=["fc7"], dtype="float16")
    with FeatureCache(half.cache_path) as cache:
        assert cache.dataset("fc7").dtype == np.float16
        f16 = cache.read("fc7")
    f32 = read_layer(run(image_folder, cache_dir, layers=["fc7"]).cache_path, "fc7")
    np.testing.assert_allclose(f16, f32.features, rtol=1e-2, atol=1e-3)
    with pytest.raises(CacheError, match="stored as float16"):
        run(image_folder, tmp_path / "c16", layers=["fc7"])


def test_rerun_recomputes_nothing(image_folder, cache_dir, monkeypatch):
    first = run(image_folder, cache_dir, layers=["fc7"])
    inode = first.cache_path.stat().st_ino
    features = read_layer(first.cache_path, "fc7").features
    monkeypatch.setattr(forward, "run_forward", None)  # must not be called
    again = run(image_folder, cache_dir, layers=["fc7"])
    assert again.cache_path == first.cache_path
    assert (again.n_new, again.n_reused) == (0, 12)
    assert again.cache_path.stat().st_ino == inode  # filled in place, not rewritten
    np.testing.assert_array_equal(
        read_layer(again.cache_path, "fc7").features, features
    )


def test_new_layer_computes_only_that_layer(image_folder, cache_dir, monkeypatch):
    first = run(image_folder, cache_dir, layers=["fc7"])
    fc7 = read_layer(first.cache_path, "fc7").features
    seen = []
    real = forward.run_forward

    def spy(**kw):
        seen.append(sorted(layer.key for layer in kw["layers"]))
        return real(**kw)

    monkeypatch.setattr(forward, "run_forward", spy)
    second = run(image_folder, cache_dir, layers=["fc7", "pool5"])
    assert seen and all(keys == ["pool5"] for keys in seen)
    assert second.n_new == 12
    np.testing.assert_array_equal(read_layer(second.cache_path, "fc7").features, fc7)
    assert read_layer(second.cache_path, "pool5").features.shape == (12, 9216)


def test_add_remove_and_modify_images(image_folder, cache_dir, tmp_path):
    first = run(image_folder, cache_dir, layers=["fc7"])
    old = read_layer(first.cache_path, "fc7")
    rng = np.random.default_rng(99)
    make_image(rng, (90, 90), 1).save(image_folder / "dogs" / "new.png")
    (image_folder / "cats" / "img002.png").unlink()
    make_image(rng, (70, 120), 0).save(image_folder / "cats" / "img004.png")  # changed
    result = run(image_folder, cache_dir, layers=["fc7"])
    assert (result.n_images, result.n_new, result.n_reused) == (12, 2, 10)
    now = read_layer(result.cache_path, "fc7")
    assert "cats/img002.png" not in now.paths and "dogs/new.png" in now.paths
    fresh = read_layer(
        run(image_folder, tmp_path / "fresh", layers=["fc7"]).cache_path, "fc7"
    )
    assert now.paths == fresh.paths
    np.testing.assert_allclose(now.features, fresh.features, rtol=1e-5, atol=1e-6)
    changed = now.paths.index("cats/img004.png")
    assert not np.allclose(
        now.features[changed], old.features[old.paths.index("cats/img004.png")]
    )
    unchanged = old.paths.index("cats/img000.png")
    np.testing.assert_array_equal(now.features[0], old.features[unchanged])


def test_failed_images_are_recorded_and_retried_when_fixed(image_folder, cache_dir):
    (image_folder / "cats" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    (image_folder / "dogs" / "zero.png").write_bytes(b"")
    first = run(image_folder, cache_dir, layers=["fc7"])
    assert first.n_images == 12
    assert sorted(f.path for f in first.failures) == [
        "cats/broken.jpg",
        "dogs/zero.png",
    ]
    state = read_state(first.cache_path)
    assert "dogs/zero.png" not in state.rows.paths
    assert {f.path: f.reason for f in state.failed}[
        "dogs/zero.png"
    ] == "empty file (0 bytes)"
    again = run(image_folder, cache_dir, layers=["fc7"])
    assert again.n_new == 0 and again.n_failed == 2
    make_image(np.random.default_rng(5), (80, 80), 1).save(
        image_folder / "dogs" / "zero.png"
    )
    fixed = run(image_folder, cache_dir, layers=["fc7"])
    assert fixed.n_new == 1 and fixed.n_images == 13
    assert [f.path for f in fixed.failures] == ["cats/broken.jpg"]


@pytest.mark.slow
def test_decode_workers_give_the_same_features(image_folder, cache_dir, tmp_path):
    serial = read_layer(run(image_folder, cache_dir, layers=["fc6"]).cache_path, "fc6")
    parallel = run(
        image_folder, tmp_path / "par", layers=["fc6"], num_workers=2, batch_size=5
    )
    np.testing.assert_allclose(
        read_layer(parallel.cache_path, "fc6").features,
        serial.features,
        rtol=1e-5,
        atol=1e-6,
    )


def test_cpu_decode_workers_yield_the_cores_to_the_forward_pass(
    image_folder, monkeypatch
):
    """On a CPU the decode workers run CPU_WORKER_NICENESS below the process
    that forks them; beside a GPU they keep its priority."""
    import os

    from featx.compute.devices import CPU_WORKER_NICENESS, lower_priority
    from featx.model import preprocess_for

    files = sorted(image_folder.rglob("*.png"))
    kw = {"batch_size": 4, "num_workers": 2}
    args = (files, list(range(len(files))), preprocess_for("alexnet"))
    gpu = forward.make_loader(*args, device=torch.device("cuda"), **kw)
    assert gpu.worker_init_fn is None
    # each batch is collated in the worker that decoded it: it reports its nice
    monkeypatch.setattr(forward, "_collate", lambda batch: os.nice(0))
    cpu = forward.make_loader(*args, device=torch.device("cpu"), **kw)
    assert cpu.worker_init_fn is lower_priority
    assert set(cpu) == {min(19, os.nice(0) + CPU_WORKER_NICENESS)}


def test_second_writer_is_refused_and_changes_nothing(image_folder, cache_dir):
    first = run(image_folder, cache_dir, layers=["fc7"])
    make_image(np.random.default_rng(3)).save(image_folder / "cats" / "extra.png")
    before = file_digest(first.cache_path)
    with (
        cache_lock(first.cache_path),
        pytest.raises(CacheBusyError, match="another featx"),
    ):
        run(image_folder, cache_dir, layers=["fc7", "fc6"])
    assert file_digest(first.cache_path) == before


def test_newer_format_is_refused(image_folder, cache_dir):
    path = run(image_folder, cache_dir, layers=["fc7"]).cache_path
    with h5py.File(path, "r+") as f:
        f.attrs["featx_format"] = 99
    with pytest.raises(CacheError, match="newer featx"):
        read_layer(path, "fc7")
    with pytest.raises(CacheError, match="newer featx"):
        run(image_folder, cache_dir, layers=["fc7"])


@pytest.mark.slow
@pytest.mark.parametrize(
    "sig", [signal.SIGKILL, signal.SIGINT], ids=["kill-9", "ctrl-c"]
)
def test_interrupted_run_resumes_to_the_same_arrays(tmp_path, sig):
    folder = write_folder(tmp_path / "data", {"a": 90, "b": 90}, ext=".jpg")
    interrupted = interrupted_run(folder, tmp_path / "cache", sig)
    assert interrupted.returncode == (-9 if sig == signal.SIGKILL else 130)
    if sig == signal.SIGINT:
        assert b"run the same command again to resume" in interrupted.stderr
    (path,) = (tmp_path / "cache").glob("*.h5")
    state = read_state(path)  # the file is valid HDF5 with part of the rows done
    done = int(state.done["fc7"].sum())
    # Ctrl-C drains the writer queue, so every batch shown as done is committed;
    # kill -9 loses what was queued for the writer (4 batches of 4) or in flight.
    least = 40 if sig == signal.SIGINT else 40 - (4 + 1) * 4
    assert least <= done < 180
    resumed = run(folder, tmp_path / "cache", layers=["conv5", "fc7"])
    assert resumed.n_new == 180 - done and resumed.n_images == 180
    whole = run(folder, tmp_path / "whole", layers=["conv5", "fc7"], batch_size=4)
    for key in ("conv5", "fc7"):
        a, b = read_layer(path, key), read_layer(whole.cache_path, key)
        assert a.paths == b.paths
        np.testing.assert_allclose(a.features, b.features, rtol=1e-6, atol=1e-7)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu_within_half_precision(image_folder, tmp_path):
    cpu = run(image_folder, tmp_path / "cpu", layers=["pool5", "fc7"], device="cpu")
    gpu = run(image_folder, tmp_path / "gpu", layers=["pool5", "fc7"], device="cuda")
    for key in ("pool5", "fc7"):
        a = read_layer(cpu.cache_path, key).features
        b = read_layer(gpu.cache_path, key).features
        scale = np.abs(a).max()
        np.testing.assert_allclose(b, a, rtol=2e-2, atol=2e-2 * scale)


@pytest.mark.slow
def test_identical_layers_are_recorded_and_noted(image_folder, cache_dir):
    """The docs' example: resnet18's layer4 averaged over space is its avgpool."""
    result = extract(image_folder, layers=["layer4", "avgpool"], spatial="avg",
                     weights="random", model="resnet18", cache_dir=cache_dir,
                     num_workers=0, batch_size=4)  # fmt: skip
    assert [n for n in result.notes if "same numbers" in n] == [
        "avgpool_avg holds the same numbers as layer4_avg (first batch); fit and "
        "report compare it once, as the shallower layer"
    ]
    with FeatureCache(result.cache_path) as cache:
        assert cache.layers["avgpool_avg"].same_as == "layer4_avg"
        assert cache.layers["layer4_avg"].same_as == ""
        np.testing.assert_array_equal(  # both stored: the record only says so
            cache.read("avgpool_avg"), cache.read("layer4_avg")
        )
    # a layer added later keeps the record (the file is rewritten)
    later = extract(image_folder, layers=["layer3"], spatial="avg",
                    weights="random", model="resnet18", cache_dir=cache_dir,
                    num_workers=0, batch_size=4)  # fmt: skip
    assert later.cache_path == result.cache_path
    with FeatureCache(later.cache_path) as cache:
        assert cache.layers["layer3_avg"].same_as == ""
        assert cache.layers["avgpool_avg"].same_as == "layer4_avg"


@pytest.mark.slow
def test_a_layer_added_later_is_compared_with_the_stored_rows(image_folder, cache_dir):
    options = dict(spatial="avg", weights="random", model="resnet18",
                   cache_dir=cache_dir, num_workers=0, batch_size=4)  # fmt: skip
    extract(image_folder, layers=["layer4"], **options)
    result = extract(image_folder, layers=["avgpool"], **options)
    assert any(n.startswith("avgpool_avg holds the same numbers as layer4_avg")
               for n in result.notes)  # fmt: skip
    with FeatureCache(result.cache_path) as cache:
        assert cache.layers["avgpool_avg"].same_as == "layer4_avg"


def test_different_layers_get_no_identity_note(image_folder, cache_dir):
    result = extract(image_folder, layers=["pool5", "fc7"], weights="random",
                     cache_dir=cache_dir, num_workers=0)  # fmt: skip
    assert not [n for n in result.notes if "same numbers" in n]
    with FeatureCache(result.cache_path) as cache:
        assert not any(d.same_as for d in cache.layers.values())


def test_extract_says_in_one_line_that_two_layers_are_the_same(image_folder, cache_dir):
    from click.testing import CliRunner

    from featx.cli import main

    result = CliRunner().invoke(main, [
        "extract", str(image_folder), "--model", "resnet18", "--layer", "layer4",
        "--layer", "avgpool", "--spatial", "avg", "--weights", "random",
        "--cache-dir", str(cache_dir), "--workers", "0",
    ], catch_exceptions=False)  # fmt: skip
    assert result.exit_code == 0, result.output
    said = [x for x in result.output.splitlines() if "same numbers" in x]
    assert said == [
        "note:    avgpool_avg holds the same numbers as layer4_avg (first batch); "
        "fit and report compare it once, as the shallower layer"
    ]
