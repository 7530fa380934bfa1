"""`--runtime openvino|onnxruntime` and `--precision int8`: the same features
as torch (fp32 within 1e-4, int8 within 3%), their own caches, and the export
made once and rebuilt when damaged."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from featx import FeatureCache, extract
from featx.cache.identity import cache_path_for
from featx.cli import main
from featx.compute import exports
from featx.compute.devices import check_runtime
from featx.compute.exports import RuntimeMissingError, onnx_file, require_runtime
from featx.compute.runtimes import runtime_net
from featx.errors import ParameterError
from featx.images.preprocess import computed_with
from featx.model import capture_net, load_weights, preprocess_for, resolve_layers
from tests.needs import need
from tests.numerics import rel_l2

LEGACY = Path(__file__).parent / "data" / "legacy" / "cache"
PACKAGES = {"openvino": ("openvino",), "onnxruntime": ("onnxruntime",)}


def _torch_and_runtime(model, layers, runtime):
    """``layers`` of a random ``model`` from torch and from ``runtime``, on the
    same random input."""
    loaded = load_weights("random", model=model)
    specs = resolve_layers(layers, model)
    x = torch.randn(3, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        ref = capture_net(loaded, specs).eval()(x, layers)
        got = runtime_net(loaded, specs, runtime=runtime)(x, layers)
    return ref, got


@pytest.mark.parametrize("runtime", ["openvino", "onnxruntime"])
@pytest.mark.parametrize(
    ("model", "layers"),
    [
        pytest.param("alexnet", ["conv5", "pool5", "fc7"], marks=pytest.mark.slow),
        ("resnet18", ["layer4", "avgpool"]),
        pytest.param("timm:resnet18", ["layer4", "pre_logits"], marks=pytest.mark.slow),
    ],
)
def test_fp32_runtimes_match_torch(model, layers, runtime):
    need("onnx", *PACKAGES[runtime])
    ref, got = _torch_and_runtime(model, layers, runtime)
    for layer in layers:
        assert got[layer].shape == ref[layer].shape
        assert rel_l2(got[layer].numpy(), ref[layer].numpy()) < 1e-4, layer


def test_the_export_is_made_once_and_rebuilt_when_damaged(tmp_path):
    need("onnx", "onnxruntime")
    loaded = load_weights("random")
    specs = resolve_layers(["pool5"], "alexnet")
    before = exports.EXPORTS.get("onnx", 0)
    path = onnx_file(loaded, specs, (224, 224))
    assert exports.EXPORTS["onnx"] == before + 1
    assert onnx_file(loaded, specs, (224, 224)) == path  # reused: no export
    assert exports.EXPORTS["onnx"] == before + 1
    assert path.is_relative_to(Path(torch.hub.get_dir()).parent / "featx-runtimes")
    with path.open("r+b") as f:  # damaged in place: the digest no longer matches
        f.seek(100)
        f.write(b"\0" * 64)
    assert onnx_file(loaded, specs, (224, 224)) == path
    assert exports.EXPORTS["onnx"] == before + 2
    sidecar = json.loads(path.with_name(path.name + ".sha256").read_text())
    assert list(sidecar["files"]) == ["fp32.onnx"]
    with path.open("r+b") as f:  # cut short
        f.truncate(1000)
    assert onnx_file(loaded, specs, (224, 224)) == path
    assert exports.EXPORTS["onnx"] == before + 3
    other = onnx_file(load_weights("random", seed=1), specs, (224, 224))
    assert other.parent != path.parent  # other weights: an export of their own


def test_an_unchanged_export_is_trusted_without_reading_it(tmp_path, monkeypatch):
    """Size and modification time as recorded: no hashing. Touched or copied:
    hashed once, then recorded again. The first sidecars (digests only) are
    hashed and still trusted."""
    need("onnx", "onnxruntime")
    loaded = load_weights("random")
    specs = resolve_layers(["pool5"], "alexnet")
    path = onnx_file(loaded, specs, (224, 224))
    made = exports.EXPORTS["onnx"]
    sidecar = path.with_name(path.name + ".sha256")
    hashed = []
    real = exports.file_sha256
    monkeypatch.setattr(exports, "file_sha256", lambda p: hashed.append(p) or real(p))
    assert exports.trusted(path)  # just written: hashed, unless 2 s went by
    hour_ago = path.stat().st_mtime - 3600
    os.utime(path, (hour_ago, hour_ago))  # touched
    before = len(hashed)
    assert exports.trusted(path) and len(hashed) == before + 1
    assert exports.trusted(path) and exports.trusted(path)
    assert len(hashed) == before + 1  # recorded again: not read
    digest = json.loads(sidecar.read_text())["files"]["fp32.onnx"]["sha256"]
    sidecar.write_text(json.dumps({"fp32.onnx": digest}))  # the first sidecars
    assert exports.trusted(path) and len(hashed) == before + 2
    assert "recorded_ns" in json.loads(sidecar.read_text())
    sidecar.write_text(json.dumps({"fp32.onnx": "0" * 64}))
    assert not exports.trusted(path)
    assert onnx_file(loaded, specs, (224, 224)) == path
    assert exports.EXPORTS["onnx"] == made + 1


def test_openvino_reads_its_own_format_made_once(tmp_path):
    need("onnx", "openvino")
    loaded = load_weights("random")
    specs = resolve_layers(["fc7"], "alexnet")
    before = dict(exports.EXPORTS)
    net = runtime_net(loaded, specs, runtime="openvino")
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        ref = capture_net(loaded, specs).eval()(x, ["fc7"])["fc7"]
    assert rel_l2(net(x, ["fc7"])["fc7"].numpy(), ref.numpy()) < 1e-4
    del net  # OpenVINO maps the weights file: it must not change under a live net
    ir = exports.openvino_file(loaded, specs, (224, 224))
    assert ir.suffix == ".xml" and ir.with_suffix(".bin").is_file()
    made = before.get("fp32-openvino", 0)
    assert exports.EXPORTS.get("fp32-openvino", 0) == made + 1
    damaged = tmp_path / "damaged.bin"
    damaged.write_bytes(b"damaged")
    damaged.replace(ir.with_suffix(".bin"))
    runtime_net(loaded, specs, runtime="openvino")
    assert exports.EXPORTS["fp32-openvino"] == made + 2
    assert exports.EXPORTS.get("onnx", 0) == before.get("onnx", 0) + 1  # reused


def test_openvino_normalises_uint8_batches_in_its_graph():
    """The uint8 batch goes to OpenVINO as it is, normalised inside the graph:
    the same features as torch on the normalised batch; Caffe's BGR mean image
    stays outside it."""
    need("onnx", "openvino")
    from featx.compute.runtimes import in_graph_normalization

    loaded = load_weights("random")
    names = ["pool5", "fc7"]
    specs = resolve_layers(names, "alexnet")
    pre = preprocess_for("alexnet", runtime="openvino")
    net = runtime_net(loaded, specs, runtime="openvino", preprocess=pre)
    assert net.normalizes
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(
        0, 256, (3, 3, 224, 224), dtype=torch.uint8, generator=generator
    )
    with torch.inference_mode():
        ref = capture_net(loaded, specs).eval()(pre.normalize(images), names)
        from_uint8, from_float = net(images, names), net(pre.normalize(images), names)
    for name in names:
        assert rel_l2(from_uint8[name].numpy(), ref[name].numpy()) < 1e-5, name
        assert rel_l2(from_float[name].numpy(), ref[name].numpy()) < 1e-5, name
    assert in_graph_normalization(preprocess_for("caffe-alexnet")) is None
    plain = runtime_net(loaded, specs, runtime="openvino")  # no preprocessing known
    with pytest.raises(ValueError, match="normalised float batch"):
        plain(images, names)


def test_torch_fp32_is_described_as_before_and_legacy_names_hold():
    assert "runtime" not in preprocess_for("alexnet").describe()
    described = preprocess_for("alexnet", runtime="openvino").describe()
    assert described["runtime"] == "openvino"
    with pytest.raises(
        ParameterError, match="`precision` must be one of 'fp32', 'int8'"
    ):
        preprocess_for("alexnet", precision="bf16", runtime="openvino")
    with pytest.raises(
        ParameterError, match="`precision` must be one of 'fp32', 'bf16'"
    ):
        preprocess_for("alexnet", precision="int8")
    name = "Train-random-12e3d9d749.h5"
    with FeatureCache(LEGACY / name) as cache:
        meta = cache.meta
    assert computed_with(meta.transform)["runtime"] == "torch"
    preprocess = preprocess_for("alexnet", **computed_with(meta.transform))
    assert preprocess.describe() == meta.transform
    path = cache_path_for(
        LEGACY, Path(meta.data_root), load_weights("random"), preprocess
    )
    assert path.name == name


def test_other_runtimes_run_on_the_cpu_with_the_local_engine_only():
    check_runtime("torch", torch.device("cuda"))
    with pytest.raises(ParameterError, match="runs on the CPU only; use device='cpu'"):
        check_runtime("openvino", torch.device("cuda"))
    with pytest.raises(ParameterError, match="with the local engine only"):
        check_runtime("onnxruntime", torch.device("cpu"), ray=True)


def test_a_missing_runtime_names_the_extra(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda n, *a: None if n == "nncf" else real(n, *a)
    )
    with pytest.raises(RuntimeMissingError, match=r"\.\[cpu-fast\]") as err:
        require_runtime("int8-openvino")
    assert "'nncf'" in str(err.value) and "\n" not in str(err.value)


@pytest.mark.slow
def test_each_runtime_and_precision_has_its_own_cache_and_parity(
    image_folder, tmp_path
):
    need("onnx", "openvino", "nncf")
    kw = {"layers": ["conv5", "pool5", "fc7"], "weights": "random"}
    kw.update(cache_dir=tmp_path / "cache", num_workers=0)
    runs = {
        "torch": extract(image_folder, **kw),
        "openvino": extract(image_folder, runtime="openvino", **kw),
        "int8": extract(image_folder, runtime="openvino", precision="int8", **kw),
        "int8-6": extract(
            image_folder, runtime="openvino", precision="int8", calibration=6, **kw
        ),
    }
    assert len({r.cache_path for r in runs.values()}) == 4
    assert runs["torch"].parity == {}
    assert all(v < 1e-4 for v in runs["openvino"].parity.values())
    for key in ("int8", "int8-6"):
        assert set(runs[key].parity) == {"conv5", "pool5", "fc7"}
        assert all(0 < v < 0.03 for v in runs[key].parity.values()), runs[key].parity
    with FeatureCache(runs["int8"].cache_path) as cache:
        calibration = cache.meta.transform["calibration"]
        assert calibration["images"] == 12 and calibration["seed"] == 0
        attrs = cache.dataset("fc7").attrs
        assert float(attrs["runtime_parity"]) == runs["int8"].parity["fc7"]
    made = dict(exports.EXPORTS)
    again = extract(image_folder, runtime="openvino", precision="int8", **kw)
    assert again.n_new == 0 and again.parity == runs["int8"].parity
    new = extract(
        image_folder, runtime="openvino", precision="int8", rebuild=True, **kw
    )
    assert new.n_new == 12 and made == exports.EXPORTS  # the int8 model reused
    out = CliRunner().invoke(main, ["info", str(runs["int8"].cache_path)])
    assert "runtime:  openvino (extract --runtime)" in out.output
    assert "calibration: 12 images of" in out.output
    assert "vs fp32 torch" in out.output


@pytest.mark.slow
def test_onnxruntime_int8_stays_close(image_folder, tmp_path):
    need("onnx", "onnxruntime")
    kw = {"layers": ["pool5", "fc7"], "weights": "random", "num_workers": 0}
    got = extract(
        image_folder, runtime="onnxruntime", precision="int8",
        cache_dir=tmp_path / "cache", **kw,
    )  # fmt: skip
    assert all(0 < v < 0.03 for v in got.parity.values()), got.parity


@pytest.mark.slow
@pytest.mark.parametrize("runtime", ["openvino", "onnxruntime"])
def test_cli_extract_prints_parity_and_predict_runs_the_runtime(
    image_folder, tmp_path, runtime
):
    need("onnx", *PACKAGES[runtime])
    cache_dir = tmp_path / "cache"
    args = ["extract", "-q", "--weights", "random", "-l", "fc7", "--workers", "0"]
    args += ["--cache-dir", str(cache_dir), "--runtime", runtime, str(image_folder)]
    out = CliRunner().invoke(main, args, catch_exceptions=False)
    assert out.exit_code == 0, out.output
    assert "parity:  vs fp32 torch" in out.output
    from featx.fit import fit
    from featx.predict import predict
    from featx.predict.modelfile import load_model

    cache = next(cache_dir.glob("*.h5"))
    model = fit(cache=cache, layer="fc7", clf="logreg", cv=2, out=tmp_path / "m.skops")
    _, meta = load_model(model.model_path)
    assert meta["transform"]["runtime"] == runtime
    results = predict(model.model_path, [image_folder], num_workers=0)
    torch_run = predict(
        model.model_path, [image_folder], num_workers=0, runtime="torch"
    )
    assert [r.label for r in results] == [r.label for r in torch_run]
    assert all(r.label is not None for r in results)
    scores = np.array([r.score for r in results])
    assert np.allclose(scores, [r.score for r in torch_run], atol=1e-4)


def test_cli_refuses_int8_on_torch_and_a_missing_runtime_at_once(
    image_folder, monkeypatch
):
    args = ["extract", "--weights", "random", "-l", "fc7", str(image_folder)]
    out = CliRunner().invoke(main, [*args, "--precision", "int8"])
    assert out.exit_code == 1
    assert "--precision int8 runs with --runtime openvino or onnxruntime" in out.output
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda n, *a: None if n == "onnxruntime" else real(n, *a),
    )
    out = CliRunner().invoke(main, [*args, "--runtime", "onnxruntime"])
    assert out.exit_code == 1
    assert "needs the Python package 'onnxruntime'" in out.output
    assert "pip install -e '.[cpu-fast]'" in out.output


@pytest.mark.slow
def test_the_transformer_runs_a_runtime_into_its_own_cache(image_folder, tmp_path):
    need("onnx", "openvino", "nncf")
    from featx import AlexNetFeatures

    paths = sorted(str(p) for p in image_folder.glob("*/*.png"))
    kw = {"weights": "random", "num_workers": 0, "cache_dir": tmp_path / "cache"}
    ours = AlexNetFeatures(layer="fc7", prefetch=(), **kw).fit(paths)
    fast = AlexNetFeatures(layer="fc7", prefetch=(), runtime="openvino", **kw)
    int8 = AlexNetFeatures(
        layer="fc7", prefetch=(), runtime="openvino", precision="int8", **kw
    )
    X = ours.transform(paths)
    assert rel_l2(fast.fit(paths).transform(paths), X) < 1e-4
    assert 0 < rel_l2(int8.fit(paths).transform(paths), X) < 0.03
    assert len(list((tmp_path / "cache").glob("*.h5"))) == 3
    made = dict(exports.EXPORTS)
    int8.transform(paths[::-1])  # read from its cache: nothing exported again
    assert made == exports.EXPORTS


def test_a_missing_optional_package_skips_here_and_fails_in_ci(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception):
        need("featx_no_such_package")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI is set and featx_no_such"):
        need("featx_no_such_package")
    need("numpy")  # installed: nothing happens


@pytest.mark.slow
def test_a_held_out_folder_goes_through_the_training_int8_network(
    image_folder, tmp_path
):
    """`fit --test FOLDER` on an int8 cache extracts the held-out folder with
    the training cache's runtime and calibration (its int8 network is reused,
    not calibrated on the test images)."""
    need("onnx", "openvino", "nncf")
    import shutil

    from featx.fit import fit

    train = extract(
        image_folder, layers=["fc7"], weights="random", num_workers=0,
        cache_dir=tmp_path / "cache", runtime="openvino", precision="int8",
        calibration=6,
    )  # fmt: skip
    test = tmp_path / "Test"
    shutil.copytree(image_folder, test)
    made = dict(exports.EXPORTS)
    result = fit(
        cache=train.cache_path, cache_dir=tmp_path / "cache", layer="fc7",
        clf="ridge", cv=2, test=test, save=False,
    )  # fmt: skip
    assert made == exports.EXPORTS  # the training int8 network
    assert result.test["n_images"] == train.n_images
    with FeatureCache(train.cache_path) as a, FeatureCache(result.test["cache"]) as b:
        assert b.meta.transform == a.meta.transform  # runtime, calibration
        X, Y = a.read("fc7"), b.read("fc7")
        same = [b.paths.index(p) for p in a.paths]
    assert np.allclose(Y[same], X, rtol=0, atol=1e-5 * np.abs(X).max())


@pytest.mark.slow
def test_a_damaged_int8_model_is_made_again(image_folder, tmp_path):
    need("onnx", "openvino", "nncf")
    kw = {"layers": ["fc7"], "weights": "random", "num_workers": 0}
    kw.update(runtime="openvino", precision="int8", calibration=6)
    first = extract(image_folder, cache_dir=tmp_path / "a", **kw)
    folder = next(exports.runtimes_dir().glob("alexnet-*"))
    (weights,) = folder.glob("int8-openvino-*.bin")
    damaged = tmp_path / "damaged.bin"
    damaged.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    damaged.replace(weights)
    made = exports.EXPORTS.get("int8-openvino", 0)
    again = extract(image_folder, cache_dir=tmp_path / "b", **kw)
    assert exports.EXPORTS["int8-openvino"] == made + 1
    assert again.parity == pytest.approx(first.parity, rel=1e-3)
    with FeatureCache(first.cache_path) as a, FeatureCache(again.cache_path) as b:
        assert rel_l2(b.read("fc7"), a.read("fc7")) < 1e-5
