"""The torchvision decoder: JPEGs decoded in batches by decode_jpeg on the
network's device (nvJPEG on CUDA), resized and cropped there. On a CPU the same
code runs with libjpeg-turbo: these tests hold it to the PIL path."""

import io

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from torchvision.models import AlexNet_Weights

import featx.compute.device_decode
import featx.compute.forward
import featx.images
from featx import FeatureCache, extract
from featx.cli import main
from featx.compute.device_decode import device_decoder_mismatch
from featx.images import Preprocess
from tests.conftest import make_image
from tests.numerics import rel_l2

RNG = np.random.default_rng(3)


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """JPEGs of two classes, and the files the device decoder leaves to PIL: a
    CMYK JPEG, a PNG, a grayscale and an EXIF-rotated JPEG, a truncated JPEG."""
    root = tmp_path_factory.mktemp("mixed") / "data"
    for label, name in enumerate(("a", "b")):
        (root / name).mkdir(parents=True)
        for i in range(5):
            size = (int(RNG.integers(200, 400)), int(RNG.integers(200, 400)))
            make_image(RNG, size, label).save(root / name / f"{i}.jpg", quality=90)
    a = root / "a"
    make_image(RNG, (300, 260), 0).convert("CMYK").save(a / "cmyk.jpg")
    make_image(RNG, (300, 260), 0).save(a / "plain.png")
    make_image(RNG, (300, 260), 0).convert("L").save(a / "gray.jpg")
    exif = Image.Exif()
    exif[0x0112] = 6
    make_image(RNG, (320, 240), 0).save(a / "rotated.jpg", exif=exif.tobytes())
    whole = io.BytesIO()
    make_image(RNG, (300, 260), 1).save(whole, "JPEG")
    (root / "b" / "cut.jpg").write_bytes(whole.getvalue()[: len(whole.getvalue()) // 3])
    return root


@pytest.mark.slow
def test_cpu_twin_matches_the_pil_path(mixed, tmp_path, state_dict_file):
    kw = {"layers": ["pool5", "fc7"], "weights": str(state_dict_file)}
    kw.update(cache_dir=tmp_path / "cache", num_workers=0, batch_size=4)
    pil = extract(mixed, **kw)  # the CPU default
    tv = extract(mixed, decoder="torchvision", **kw)
    assert tv.cache_path != pil.cache_path  # the decode path is part of the identity
    assert [f.path for f in tv.failures] == [f.path for f in pil.failures]
    assert [f.path for f in pil.failures] == ["b/cut.jpg"]
    with FeatureCache(pil.cache_path) as p, FeatureCache(tv.cache_path) as t:
        assert p.paths == t.paths and t.meta.transform["jpeg_decoder"] == "torchvision"
        for layer in ("pool5", "fc7"):
            a, b = p.read(layer), t.read(layer)
            for i, path in enumerate(p.paths):
                err = rel_l2(b[i], a[i])
                if path.endswith((".png", "cmyk.jpg")):  # PIL decodes them in both
                    assert err == 0, (path, layer)
                else:  # libjpeg-turbo both; tensor vs PIL resize: <= 5e-3 measured
                    assert err < 7e-3, (path, layer, err)
    out = CliRunner().invoke(main, ["info", str(tv.cache_path)])
    assert "decoder:  torchvision" in out.output


def test_a_device_decoder_that_corrupts_pixels_is_refused(monkeypatch):
    data = io.BytesIO()
    make_image(RNG, (64, 48), 0).save(data, "JPEG")
    raw = [torch.frombuffer(bytearray(data.getvalue()), dtype=torch.uint8)]
    real = featx.compute.device_decode._jpeg_batch

    def corrupting(datas, device):
        out = real(datas, torch.device("cpu"))
        if device.type != "cpu":  # the "device": whole blocks off
            out = [img.clone() for img in out]
            out[0][:, :16, :16] = 255 - out[0][:, :16, :16]
        return out

    monkeypatch.setattr(featx.compute.device_decode, "_jpeg_batch", corrupting)
    assert device_decoder_mismatch(raw, torch.device("cpu")) == ""  # nothing to check
    assert "mean pixel difference" in device_decoder_mismatch(raw, torch.device("meta"))
    monkeypatch.setattr(featx.compute.device_decode, "_jpeg_batch", real)
    same = real(raw, torch.device("cpu"))
    monkeypatch.setattr(featx.compute.device_decode, "_jpeg_batch", lambda d, dev: same)
    assert device_decoder_mismatch(raw, torch.device("meta")) == ""


def test_a_refused_device_decoder_is_said_once_and_the_run_goes_on(
    mixed, tmp_path, monkeypatch
):
    monkeypatch.setattr(
        featx.compute.forward, "device_decoder_mismatch", lambda raw, device: "a test"
    )
    result = extract(
        mixed, layers=["fc7"], weights="random", decoder="torchvision",
        cache_dir=tmp_path, num_workers=0, batch_size=4,
    )  # fmt: skip
    line = "GPU JPEG decoding refused (a test); decoding on the CPU"
    assert result.notes.count(line) == 1
    assert result.n_new == result.n_images and result.n_failed == 1  # the cut JPEG


def test_torchvision_decoder_is_refused_with_ray(mixed, tmp_path):
    with pytest.raises(ValueError, match="runs with the local engine only"):
        extract(mixed, layers=["fc7"], weights="random", decoder="torchvision",
                engine="ray", cache_dir=tmp_path)  # fmt: skip


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_decoding_matches_the_cpu_rows(mixed, tmp_path):
    kw = {"layers": ["pool5", "fc7"], "weights": "random", "precision": "fp32"}
    cpu = extract(mixed, device="cpu", cache_dir=tmp_path / "cpu", **kw)
    gpu = extract(mixed, device="cuda", cache_dir=tmp_path / "gpu", **kw)
    assert not gpu.notes, gpu.notes  # the start-of-run pixel check passed
    with FeatureCache(cpu.cache_path) as a, FeatureCache(gpu.cache_path) as b:
        assert b.meta.transform["jpeg_decoder"] == "torchvision"
        for layer in ("pool5", "fc7"):
            assert rel_l2(b.read(layer), a.read(layer)) < 2e-2


def test_the_pil_fallback_records_whatever_its_decoder_raises(monkeypatch):
    def decode(data, **kw):
        raise NotImplementedError("Unimplemented DXGI format 2")

    monkeypatch.setattr(featx.images, "decode_image", decode)
    preprocess = Preprocess(AlexNet_Weights.DEFAULT.transforms())
    refused = torch.frombuffer(bytearray(b"\xff\xd8\xff not a JPEG"), dtype=torch.uint8)
    errors = ["", ""]
    batch = featx.compute.device_decode.decode_on_device(
        [refused, torch.ones((3, 224, 224), dtype=torch.uint8)],
        errors,
        preprocess,
        torch.device("cpu"),
        None,
    )
    reason = "cannot decode: NotImplementedError: Unimplemented DXGI format 2"
    assert errors == [reason, ""]
    assert batch.shape == (2, 3, 224, 224)
    assert batch[0].sum() == 0 and batch[1].min() == 1  # a blank, and the crop
