"""Scaled decoding (`--decode fast`): JPEGs decode at the smallest DCT scale
that still covers the resize target; everything else, and every small image,
decodes exactly as before."""

import io
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from torchvision.models import AlexNet_Weights

import featx.images
import featx.images.decode
from featx import FeatureCache, extract
from featx.cli import main
from featx.errors import ImageDecodeError
from featx.images import decode_image, draft_size
from featx.model import load_weights, preprocess_for
from tests.conftest import reference, write_folder
from tests.numerics import rel_l2

RNG = np.random.default_rng(5)


def photo(width: int, height: int, seed: int = 0) -> Image.Image:
    """A smooth picture with texture, as a photo is (not white noise)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    f = rng.uniform(0.004, 0.02, 3)
    base = np.stack(
        [
            np.sin(xx * f[0] + yy * f[1]) * 70 + 120,
            np.cos(yy * f[2]) * 60 + 110,
            np.sin((xx + yy) * f[1]) * 50 + 100,
        ],
        axis=-1,
    )
    base += rng.normal(0, 4, base.shape)
    return Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))


def jpeg(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=kw.pop("quality", 90), **kw)
    return buf.getvalue()


def test_draft_size_keeps_the_resize_target_covered():
    assert draft_size((4032, 3024), [256]) == (342, 256)
    assert draft_size((3024, 4032), [256]) == (256, 342)
    assert draft_size((1000, 1000), [256, 256]) == (256, 256)


def test_large_jpegs_decode_scaled_and_small_ones_exactly():
    big = jpeg(photo(1600, 1200))
    # 1/4 gives 400 x 300 (short side >= 256); 1/8 would give 200 x 150
    assert decode_image(big, scale_to=[256]).size == (400, 300)
    assert decode_image(big).size == (1600, 1200)
    small = jpeg(photo(500, 375))  # under twice the target: never scaled
    fast, exact = decode_image(small, scale_to=[256]), decode_image(small)
    assert fast.size == exact.size == (500, 375)
    np.testing.assert_array_equal(np.asarray(fast), np.asarray(exact))
    png = io.BytesIO()
    photo(1600, 1200).save(png, "PNG")  # only JPEGs scale
    assert decode_image(png.getvalue(), scale_to=[256]).size == (1600, 1200)


@pytest.mark.parametrize("kind", ["baseline", "progressive", "cmyk", "exif-rotated"])
def test_scaled_decode_is_close_to_a_full_decode(kind):
    img = photo(1600, 1200, seed=1)
    kw = {}
    if kind == "progressive":
        kw["progressive"] = True
    if kind == "cmyk":
        img = img.convert("CMYK")
    if kind == "exif-rotated":
        exif = Image.Exif()
        exif[0x0112] = 6  # rotate 90° clockwise to display
        kw["exif"] = exif.tobytes()
    data = jpeg(img, **kw)
    pre = preprocess_for("alexnet", decode="fast")
    fast = pre.to_uint8(decode_image(data, scale_to=pre.scale_to))
    exact = pre.to_uint8(decode_image(data))
    assert fast.shape == exact.shape == (3, 224, 224)
    want = (1200, 1600) if kind == "exif-rotated" else (1600, 1200)
    assert decode_image(data).size == want
    assert decode_image(data, scale_to=[256]).size == (want[0] // 4, want[1] // 4)
    assert decode_image(data, scale_to=[256]).mode == "RGB"
    # resized pixels of a 1/4 decode stay within ~1% of a full decode
    assert rel_l2(fast.numpy(), exact.numpy()) < 0.02


def test_bomb_guard_lets_scaling_accept_a_large_photo_but_not_a_bomb(monkeypatch):
    # a 1.9 MP limit stands in for PIL's 89 MP, so the test images stay small
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1_000_000)
    photo_data = jpeg(photo(1600, 1200))  # 1.92 MP: over the limit, under 2x
    assert decode_image(photo_data, scale_to=[256]).size == (400, 300)
    with pytest.raises(ImageDecodeError, match="decompression bomb guard"):
        decode_image(photo_data)  # decoded in full it would cost 1.92 MP
    png = io.BytesIO()
    photo(1600, 1200).save(png, "PNG")
    with pytest.raises(ImageDecodeError, match="decompression bomb guard"):
        decode_image(png.getvalue(), scale_to=[256])  # nothing to scale
    bomb = jpeg(Image.new("RGB", (3000, 2100), (90, 90, 90)))  # 6.3 MP > 2x limit
    with pytest.raises(ImageDecodeError, match="decompression bomb guard"):
        decode_image(bomb, scale_to=[256])


@pytest.fixture(scope="module")
def phone_folder(tmp_path_factory):
    """Two classes of 1600 x 1200 JPEGs (DCT-scalable to 1/4) and two small ones."""
    root = tmp_path_factory.mktemp("phone") / "data"
    for c, name in enumerate(("a", "b")):
        (root / name).mkdir(parents=True)
        for i in range(3):
            photo(1600, 1200, seed=10 * c + i).save(root / name / f"big{i}.jpg")
        photo(400, 300, seed=50 + c).save(root / name / "small.jpg", quality=90)
    return root


@pytest.mark.slow
def test_modes_have_caches_of_their_own_and_exact_is_the_reference(
    phone_folder, tmp_path, state_dict_file
):
    kw = {"layers": ["pool5", "fc7"], "weights": str(state_dict_file)}
    kw.update(cache_dir=tmp_path / "cache", num_workers=0)
    exact = extract(phone_folder, decode="exact", **kw)
    fast = extract(phone_folder, **kw)  # the default
    assert fast.cache_path != exact.cache_path  # never one cache for both modes
    assert fast.n_new == exact.n_new == 8
    model = load_weights(str(state_dict_file)).model
    transforms = AlexNet_Weights.IMAGENET1K_V1.transforms()
    with FeatureCache(exact.cache_path) as e, FeatureCache(fast.cache_path) as f:
        paths = e.paths
        assert f.paths == paths
        batch = torch.stack(
            [transforms(Image.open(phone_folder / p).convert("RGB")) for p in paths]
        )
        ref = reference(
            model, [e.layers[k].module_path for k in ("pool5", "fc7")], batch,
            inplace=False,
        )  # fmt: skip
        small = np.array(["small" in p for p in paths])
        for key in ("pool5", "fc7"):
            want = ref[e.layers[key].module_path].reshape(len(paths), -1).numpy()
            np.testing.assert_allclose(e.read(key), want, rtol=1e-4, atol=1e-5)
            # small images: the very same rows; large ones: close
            np.testing.assert_array_equal(f.read(key)[small], e.read(key)[small])
            big_fast, big_exact = f.read(key)[~small], e.read(key)[~small]
            assert 0 < rel_l2(big_fast, big_exact) < 0.05
        assert f.meta.transform["decode"] == "fast"
        assert "decode" not in e.meta.transform  # as caches made before the mode
    info = CliRunner().invoke(main, ["info", str(fast.cache_path)])
    assert "decode:   fast" in info.output
    info = CliRunner().invoke(main, ["info", str(exact.cache_path), "--json"])
    assert '"decode": "exact"' in info.output


def test_cli_decode_option_and_a_wrong_mode(phone_folder, tmp_path):
    runner = CliRunner()
    out = runner.invoke(
        main,
        ["extract", str(phone_folder), "-l", "fc7", "--weights", "random",
         "--decode", "exact", "--cache-dir", str(tmp_path), "-q", "--workers", "0"],
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    (cache,) = tmp_path.glob("*.h5")
    with FeatureCache(cache) as c:
        assert "decode" not in c.meta.transform
    bad = runner.invoke(main, ["extract", str(phone_folder), "-l", "fc7",
                               "--decode", "quick"])  # fmt: skip
    assert bad.exit_code == 2 and "'fast', 'exact'" in bad.output
    with pytest.raises(ValueError, match="`decode` must be one of 'fast', 'exact'"):
        extract(phone_folder, layers=["fc7"], weights="random", decode="quick")


# ------------------------------- a file's failure, whatever its decoder raises

#: What a stand-in decoder raises for each file: the exceptions Pillow's plugins
#: raise besides OSError and ValueError, and some no plugin should.
RAISED = {
    "dds.png": NotImplementedError("Unimplemented DXGI format 2"),
    "apng.png": SyntaxError("APNG contains frame sequence errors"),
    "header.png": struct.error("unpack requires a buffer of 4 bytes"),
    "xmp.png": KeyError("XML:com.adobe.xmp"),
    "plugin.png": RuntimeError("a plugin's own error"),
    "eof.png": EOFError("no more images"),
}


@pytest.fixture
def stand_in_decoder(tmp_path, monkeypatch):
    """A folder of six good images and one file per entry of :data:`RAISED` plus
    ``empty.png``, whose decoder (through ``featx.images``, as every engine calls
    it) raises that entry, or gives a 0×0 image that resizing cannot take."""
    folder = write_folder(tmp_path / "data", {"a": 3, "b": 3})
    good = (folder / "a" / "img000.png").read_bytes()
    for name in [*RAISED, "empty.png"]:
        (folder / "b" / name).write_bytes(good)
    real = featx.images.decode_image

    def decode(data, **kw):
        name = Path(str(data)).name
        if name in RAISED:
            raise RAISED[name]
        return Image.new("RGB", (0, 0)) if name == "empty.png" else real(data, **kw)

    monkeypatch.setattr(featx.images, "decode_image", decode)
    return folder


@pytest.mark.parametrize("views", ["center", "flip"])
def test_whatever_a_decoder_raises_is_a_recorded_failure(stand_in_decoder, views):
    result = extract(
        stand_in_decoder,
        layers=["fc7"],
        views=views,
        weights="random",
        cache_dir=stand_in_decoder.parent / "cache",
        num_workers=0,
        batch_size=4,
    )
    reasons = {f.path: f.reason for f in result.failures}
    expected = {
        f"b/{name}": f"cannot decode: {type(exc).__name__}: {exc}"
        for name, exc in RAISED.items()
    }
    expected["b/empty.png"] = "cannot decode: ZeroDivisionError: division by zero"
    assert reasons == expected
    assert result.n_new == 6
    with FeatureCache(result.cache_path) as cache:
        assert {f.path: f.reason for f in cache.failed} == expected


@pytest.mark.parametrize(
    "exc", [KeyboardInterrupt(), MemoryError(), SystemExit(3)], ids=type
)
def test_an_interrupt_or_the_process_out_of_memory_stops_the_run(
    stand_in_decoder, monkeypatch, exc
):
    monkeypatch.setitem(RAISED, "plugin.png", exc)
    with pytest.raises(type(exc)):
        extract(
            stand_in_decoder,
            layers=["fc7"],
            weights="random",
            cache_dir=stand_in_decoder.parent / "cache",
            num_workers=0,
        )


def test_a_bug_in_featx_stops_the_run(image_folder, tmp_path, monkeypatch):
    monkeypatch.setattr(featx.images.decode, "ImageOps", None)  # featx's code breaks
    with pytest.raises(AttributeError):
        extract(
            image_folder,
            layers=["fc7"],
            weights="random",
            cache_dir=tmp_path / "cache",
            num_workers=0,
        )
