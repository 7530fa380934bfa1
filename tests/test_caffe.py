"""caffe-alexnet against an independent Keras 3 build of the same network.

Random weights are written in each of the three file formats by the test itself,
starting from the TensorFlow port's layout (``bvlc_alexnet.npy``). The reference
is the network built layer by layer in Keras 3 (JAX backend, channels last) the
way the TensorFlow ports build it from that file: ``tests/keras_alexnet.py``, run
in a process of its own; it shares no code with featx.
The Keras 1 and caffemodel files are derived from the npy with index arithmetic
of their own, and the caffemodel is encoded in protobuf's wire format by hand.
"""

from __future__ import annotations

import importlib.util
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.datasets import load_sample_images
from torchvision.transforms.v2 import functional as TF

from featx.cache import FeatureCache
from featx.extraction import extract
from featx.model import load_weights, weightfiles

GROUPED = {"conv2", "conv4", "conv5"}
#: layer: (kernel H, W, input depth as stored (half when grouped), output)
CONV = {
    "conv1": (11, 3, 96),
    "conv2": (5, 48, 256),
    "conv3": (3, 256, 384),
    "conv4": (3, 192, 384),
    "conv5": (3, 192, 256),
}
DENSE = {"fc6": (9216, 4096), "fc7": (4096, 4096), "fc8": (4096, 1000)}
BGR_MEAN = np.array([104.00698793, 116.66876762, 122.67891434], np.float32)
LAYERS = ["norm1", "pool5", "fc6", "fc7"]


def npy_weights(seed: int = 0) -> dict[str, list[np.ndarray]]:
    """Random weights in the TensorFlow port's layout (He-scaled, so that
    activations stay of one order of magnitude through the layers)."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, (k, depth, n_out) in CONV.items():
        std = np.sqrt(2.0 / (k * k * depth))
        w = rng.normal(0, std, (k, k, depth, n_out)).astype(np.float32)
        out[name] = [w, rng.normal(0, 0.1, n_out).astype(np.float32)]
    for name, (n_in, n_out) in DENSE.items():
        w = rng.normal(0, np.sqrt(2.0 / n_in), (n_in, n_out)).astype(np.float32)
        out[name] = [w, rng.normal(0, 0.1, n_out).astype(np.float32)]
    out["conv1"][0] /= 128.0  # inputs are on 0-255
    return out


def caffe_layout(w: dict) -> dict[str, list[np.ndarray]]:
    """Caffe's layout: OIHW kernels, out x in fully connected weights, fc6's
    columns in C x H x W order (the npy's rows are H x W x C)."""
    out = {}
    for name, (kernel, bias) in w.items():
        if name in CONV:
            out[name] = [np.moveaxis(kernel, (3, 2), (0, 1)).copy(), bias]
        elif name == "fc6":
            c, h, x = np.meshgrid(
                np.arange(256), np.arange(6), np.arange(6), indexing="ij"
            )
            hwc_row = ((h * 6 + x) * 256 + c).ravel()  # the npy row of each CHW column
            out[name] = [kernel[hwc_row].T.copy(), bias]
        else:
            out[name] = [kernel.T.copy(), bias]
    return out


def write_npy(path: Path, w: dict) -> Path:
    np.save(path, w, allow_pickle=True)
    return path


def write_keras1_h5(path: Path, w: dict) -> Path:
    """convnets-keras' file: Theano kernels (flipped), RGB conv1, the groups of
    conv2/4/5 as two layers each, dense weights in x out."""
    caffe = caffe_layout(w)
    names = {"conv1": "conv_1", "conv3": "conv_3", "fc6": "dense_1", "fc7": "dense_2",
             "fc8": "dense_3"}  # fmt: skip
    with h5py.File(path, "w") as f:
        layer_names = []
        for name, (kernel, bias) in caffe.items():
            if name in CONV:
                kernel = np.flip(kernel, (2, 3))
                if name == "conv1":
                    kernel = np.flip(kernel, 1)  # BGR -> RGB input
            else:
                kernel = kernel.T
            if name in GROUPED:
                half = len(bias) // 2
                parts = [(f"conv_{name[-1]}_{i + 1}", kernel[i * half:(i + 1) * half],
                          bias[i * half:(i + 1) * half]) for i in range(2)]  # fmt: skip
            else:
                parts = [(names[name], kernel, bias)]
            if name in GROUPED:  # the merge layer joining the groups: no weights
                merge = f.create_group(f"conv_{name[-1]}")
                merge.attrs["weight_names"] = np.array([], dtype="S1")
                layer_names.append(f"conv_{name[-1]}".encode())
            for keras_name, k, b in parts:
                g = f.create_group(keras_name)
                g.attrs["weight_names"] = [
                    f"{keras_name}_W".encode(),
                    f"{keras_name}_b".encode(),
                ]
                g[f"{keras_name}_W"] = np.ascontiguousarray(k)
                g[f"{keras_name}_b"] = b
                layer_names.append(keras_name.encode())
        f.attrs["layer_names"] = layer_names
    return path


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:  # length-delimited (wire type 2)
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _blob(array: np.ndarray) -> bytes:
    shape = _field(1, b"".join(_varint(d) for d in array.shape))  # BlobShape.dim
    data = np.ascontiguousarray(array, "<f4").tobytes()
    return _field(7, shape) + _field(5, data)  # shape, packed data


def write_caffemodel(path: Path, w: dict, *, v1: bool = True) -> Path:
    """A NetParameter with the layers in the V1 ``layers`` field (2) as BVLC's
    2014 file has them, or in the current ``layer`` field (100)."""
    net = _field(1, b"AlexNet")
    for name, (kernel, bias) in caffe_layout(w).items():
        blobs = _blob(kernel), _blob(bias)
        if v1:  # V1LayerParameter: name 4, blobs 6
            net += _field(
                2, _field(4, name.encode()) + b"".join(_field(6, b) for b in blobs)
            )
        else:  # LayerParameter: name 1, type 2, blobs 7
            body = _field(1, name.encode()) + _field(2, b"Convolution")
            net += _field(100, body + b"".join(_field(7, b) for b in blobs))
    path.write_bytes(net)
    return path


def keras_reference(npy: Path, images: np.ndarray, work: Path) -> dict[str, np.ndarray]:
    """Activations of the network built in Keras 3 from ``npy``, for (N, 227, 227,
    3) BGR inputs minus the mean. It runs in a process of its own
    (``tests/keras_alexnet.py``): JAX's threads must not be in a process that
    later forks decode workers."""
    if importlib.util.find_spec("keras") is None:
        if os.environ.get("FEATX_REQUIRE_REFERENCE"):  # CI: the reference must run
            pytest.fail("keras is not installed: pip install -e '.[reference]'")
        pytest.skip("the Keras reference needs pip install -e '.[reference]'")
    np.save(work / "inputs.npy", images)
    script = Path(__file__).with_name("keras_alexnet.py")
    proc = subprocess.run(
        [sys.executable, str(script), str(npy), str(work / "inputs.npy"),
         str(work / "reference.npz"), *LAYERS],
        capture_output=True, text=True, timeout=600,
        env={**os.environ, "KERAS_BACKEND": "jax"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    with np.load(work / "reference.npz") as out:
        return {name: out[name] for name in LAYERS}


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """Real photos (scikit-learn's two), cut and scaled into six JPEGs."""
    root = tmp_path_factory.mktemp("caffe-photos")
    rng = np.random.default_rng(1)
    for k in range(6):
        photo = load_sample_images().images[k % 2]
        h, w = photo.shape[:2]
        top, left = int(rng.integers(0, h // 3)), int(rng.integers(0, w // 3))
        crop = Image.fromarray(
            photo[top : top + h // 2 + 60, left : left + w // 2 + 90]
        )
        folder = root / ("china" if k % 2 == 0 else "flower")
        folder.mkdir(exist_ok=True)
        crop.save(folder / f"p{k}.jpg", quality=92)
    return root


@pytest.fixture(scope="module")
def weight_files(tmp_path_factory):
    """~1 GB of weight files, removed when the module is done with them."""
    root = tmp_path_factory.mktemp("caffe-weights")
    w = npy_weights()
    yield (
        w,
        {
            "npy": write_npy(root / "bvlc_alexnet.npy", w),
            "h5": write_keras1_h5(root / "alexnet_weights.h5", w),
            "caffemodel": write_caffemodel(root / "bvlc_alexnet.caffemodel", w),
            "caffemodel-v2": write_caffemodel(root / "new.caffemodel", w, v1=False),
        },
    )
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(autouse=True)
def torch_home(tmp_path, monkeypatch):
    """Conversions are cached under TORCH_HOME: a fresh one per test."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))


def reference_input(path: Path) -> np.ndarray:
    """Caffe's input, computed here: shorter side 256 (bilinear, antialiased),
    centre 227, BGR, minus the ImageNet mean."""
    img = TF.center_crop(TF.resize(Image.open(path).convert("RGB"), [256]), [227])
    return np.asarray(img, np.float32)[..., ::-1] - BGR_MEAN


@pytest.mark.slow
def test_activations_match_an_independent_keras_build(photos, weight_files, tmp_path):
    w, files = weight_files
    result = extract(
        photos,
        layers=LAYERS,
        weights=str(files["npy"]),
        model="caffe-alexnet",
        cache_dir=tmp_path / "cache",
        num_workers=0,
    )
    with FeatureCache(result.cache_path) as cache:
        assert cache.meta.model == "caffe-alexnet"
        ours = {name: cache.read(name) for name in LAYERS}
        paths = [photos / p for p in cache.paths]
    inputs = np.stack([reference_input(p) for p in paths])
    ref = keras_reference(files["npy"], inputs, tmp_path)
    for name in LAYERS:
        err = np.abs(ours[name] - ref[name]).max() / np.abs(ref[name]).max()
        assert err < 1e-4, (name, err)
        assert np.abs(ref[name]).max() > 0 and ref[name].std() > 0  # not dead


@pytest.mark.parametrize("kind", ["h5", "caffemodel", "caffemodel-v2"])
@pytest.mark.slow
def test_every_format_converts_to_the_same_weights(weight_files, kind):
    _, files = weight_files
    want = load_weights(str(files["npy"]), model="caffe-alexnet").model.state_dict()
    got = load_weights(str(files[kind]), model="caffe-alexnet").model.state_dict()
    for key in want:
        torch.testing.assert_close(got[key], want[key], rtol=0, atol=0)


@pytest.mark.slow
def test_conversion_is_cached_by_sha256(weight_files):
    _, files = weight_files
    first = load_weights(str(files["caffemodel"]), model="caffe-alexnet")
    cached = weightfiles.converted_path(first.sha256)
    assert cached.is_file()
    again = load_weights(str(files["caffemodel"]), model="caffe-alexnet")
    assert (
        again.sha256 == first.sha256
        and again.weights_id == "file:bvlc_alexnet.caffemodel"
    )


def run_featx(*args, env=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "featx", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )


def bad_files(root: Path, w: dict) -> dict[str, tuple[Path, str]]:
    """Broken weight files and what the one-line error must say."""
    wrong = {k: list(v) for k, v in w.items()}
    wrong["conv2"] = [wrong["conv2"][0][:, :, :40], wrong["conv2"][1]]
    good = write_caffemodel(root / "good.caffemodel", w)
    truncated = root / "cut.caffemodel"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    from torchvision.models import alexnet

    torchvision_state = root / "alexnet-torchvision.pth"
    torch.save(alexnet().state_dict(), torchvision_state)

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    evil = root / "evil.npy"
    with evil.open("wb") as f:
        np.lib.format.write_array_header_1_0(
            f, {"descr": "|O", "fortran_order": False, "shape": ()}
        )
        pickle.dump(Evil(), f)
    return {
        "shape": (write_npy(root / "wrong.npy", wrong), "layer conv2"),
        "truncated": (truncated, "cannot read cut.caffemodel as a caffemodel"),
        "torchvision": (torchvision_state, "is a torchvision AlexNet state dict"),
        "pickle": (evil, "refusing to load"),
    }


@pytest.mark.slow
def test_bad_weight_files_stop_with_one_line_before_any_image(
    weight_files, photos, tmp_path
):
    w, _ = weight_files
    errors = {}
    for kind, (path, message) in bad_files(tmp_path, w).items():
        cache = tmp_path / f"cache-{kind}"
        proc = run_featx(
            "extract", photos, "--model", "caffe-alexnet", "--weights", path,
            "--layer", "fc7", "--cache-dir", cache,
            env={"TORCH_HOME": str(tmp_path / "th")},
        )  # fmt: skip
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 1, (kind, proc.stderr)
        assert len(lines) == 1 and message in lines[0], (kind, proc.stderr)
        assert "Traceback" not in proc.stderr and "pwned" not in proc.stdout
        assert not cache.exists()  # stopped before the cache, so before any image
        errors[kind] = proc.stderr
    assert "(256, 40, 5, 5)" in errors["shape"] and "(256, 48, 5, 5)" in errors["shape"]


@pytest.mark.slow
def test_caffe_files_are_refused_for_torchvisions_model(weight_files):
    _, files = weight_files
    for kind in ("npy", "h5", "caffemodel"):
        with pytest.raises(Exception, match="use --model caffe-alexnet"):
            load_weights(str(files[kind]))


def test_mean_image_centre_is_subtracted(tmp_path):
    from featx.model.caffe import CaffePreprocess

    mean = np.random.default_rng(0).uniform(90, 130, (3, 256, 256)).astype(np.float32)
    np.save(tmp_path / "ilsvrc_2012_mean.npy", mean)
    pre = CaffePreprocess(tmp_path / "ilsvrc_2012_mean.npy")
    batch = torch.randint(0, 256, (2, 3, 227, 227), dtype=torch.uint8)
    want = batch.numpy()[:, ::-1].astype(np.float32) - mean[:, 14:241, 14:241]
    np.testing.assert_array_equal(pre.normalize(batch).numpy(), want)
    assert pre.describe()["mean_image"]["sha256"]
    plain = CaffePreprocess()
    np.testing.assert_allclose(
        plain.normalize(batch).numpy(),
        batch.numpy()[:, ::-1].astype(np.float32) - BGR_MEAN[None, :, None, None],
        rtol=1e-6,
    )


@pytest.mark.slow
def test_layers_fit_predict_info_and_report_on_a_caffe_cache(
    photos, weight_files, tmp_path
):
    _, files = weight_files
    table = run_featx("layers", "--model", "caffe-alexnet").stdout
    assert "norm1" in table and "9216" in table.split("pool5")[1].splitlines()[0]
    cache_dir = tmp_path / "cache"
    ext = run_featx(
        "extract", photos, "--model", "caffe-alexnet", "--weights",
        files["caffemodel"], "--layer", "pool5", "--layer", "fc7",
        "--cache-dir", cache_dir, "--workers", "0", "-q",
    )  # fmt: skip
    assert ext.returncode == 0, ext.stderr
    info = run_featx("info", "--cache-dir", cache_dir)
    assert "model:    caffe-alexnet" in info.stdout
    model = tmp_path / "m.skops"
    fit = run_featx("fit", "--cache-dir", cache_dir, "--layer", "fc7", "--clf",
                    "ridge", "--cv", "3", "--out", model)  # fmt: skip
    assert fit.returncode == 0, fit.stderr
    pred = run_featx("predict", "--model", model, photos / "china", "--workers", "0")
    assert pred.returncode == 0, pred.stderr
    assert pred.stdout.count("\tchina\t") + pred.stdout.count("\tflower\t") == 3
    out = tmp_path / "report"
    rep = run_featx("report", "--cache-dir", cache_dir, "--layers", "fc7", "--clfs",
                    "ridge", "--cv", "3", "--repeats", "1", "--out", out)  # fmt: skip
    assert rep.returncode == 0, rep.stderr
    md = (out / "report.md").read_text()
    assert "- Model: caffe-alexnet (the original BVLC AlexNet" in md
    assert "--model caffe-alexnet" in md and "bvlc_alexnet.caffemodel" in md
