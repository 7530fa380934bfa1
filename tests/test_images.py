import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.models import AlexNet_Weights

import featx.images.decode
from featx.errors import DataError, ImageDecodeError
from featx.images import Preprocess, decode_image, list_images
from tests.conftest import make_image, write_folder

RNG = np.random.default_rng(7)


def encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


# ------------------------------------- files Pillow opens and then gives up on


def dds_bytes(dxgi_format: int = 2) -> bytes:
    """A 4×4 DDS with a DX10 header naming ``dxgi_format``; Pillow 13 decodes
    few of them (2, R32G32B32A32_FLOAT, raises NotImplementedError at open)."""
    header = struct.pack("<4s7I44s", b"DDS ", 124, 0x1007, 4, 4, 0, 0, 0, bytes(44))
    pixel_format = struct.pack("<2I4s5I", 32, 0x4, b"DX10", 0, 0, 0, 0, 0)
    caps = struct.pack("<5I", 0x1000, 0, 0, 0, 0)
    dx10 = struct.pack("<5I", dxgi_format, 3, 0, 1, 0)
    return header + pixel_format + caps + dx10 + bytes(256)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def apng_bytes() -> bytes:
    """A PNG with an acTL (animated) but no fcTL, and an fdAT after its IDAT:
    Pillow opens it and raises SyntaxError ("frame sequence errors") in load."""
    png = encode(Image.new("RGB", (8, 8), (200, 10, 10)), "PNG")
    actl = _png_chunk(b"acTL", struct.pack(">II", 2, 0))
    fdat = _png_chunk(b"fdAT", struct.pack(">I", 1) + bytes(8))
    return png[:33] + actl + png[33:-12] + fdat + png[-12:]  # 33: after IHDR


def mpo_bytes(colour=(10, 200, 10), size=(64, 48)) -> bytes:
    """A two-picture MPO, as cameras write: the first picture is ``colour``."""
    first, second = Image.new("RGB", size, colour), Image.new("RGB", size, "blue")
    return encode(first, "MPO", save_all=True, append_images=[second])


def write_odd_files(folder: Path) -> dict[str, str]:
    """A real DDS, APNG and MPO in ``folder``; the reason each failure gives (""
    for the MPO, which decodes)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "texture.dds").write_bytes(dds_bytes())
    (folder / "broken.apng").write_bytes(apng_bytes())
    (folder / "camera.mpo").write_bytes(mpo_bytes())
    return {
        "texture.dds": "cannot decode: NotImplementedError: Unimplemented DXGI "
        "format 2",
        "broken.apng": "cannot decode: APNG contains frame sequence errors",
        "camera.mpo": "",
    }


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (dds_bytes(), "NotImplementedError: Unimplemented DXGI format 2"),
        (apng_bytes(), "cannot decode: APNG contains frame sequence errors"),
    ],
)
def test_whatever_a_plugin_raises_is_the_files_reason(data, reason):
    with pytest.raises(ImageDecodeError) as caught:
        decode_image(data)
    assert str(caught.value).startswith("cannot decode: ")
    assert str(caught.value).endswith(reason)


def test_a_featx_bug_while_decoding_is_not_a_files_failure(monkeypatch):
    monkeypatch.setattr(featx.images.decode, "ImageOps", None)  # featx's code breaks
    with pytest.raises(AttributeError):
        decode_image(encode(make_image(RNG), "PNG"))
    with pytest.raises(ImageDecodeError, match="cannot decode"):  # a file's: still
        decode_image(dds_bytes())


def test_mpo_files_are_images_and_decode_as_their_first_picture(tmp_path):
    (tmp_path / "cls").mkdir()
    (tmp_path / "cls" / "camera.MPO").write_bytes(mpo_bytes())
    make_image(RNG).save(tmp_path / "cls" / "plain.png")
    images = list_images(tmp_path)
    assert images.paths == ["cls/camera.MPO", "cls/plain.png"]
    assert images.not_images == []
    got = np.asarray(decode_image(tmp_path / "cls" / "camera.MPO"))
    assert got.shape == (48, 64, 3)
    assert np.abs(got.astype(int) - (10, 200, 10)).max() <= 3  # JPEG rounding
    scaled = decode_image(mpo_bytes(size=(1600, 1200)), scale_to=[256])
    assert scaled.size == (400, 300)  # the JPEG decoder's DCT scaling (fast mode)


def test_preprocess_equals_weights_transforms():
    transforms = AlexNet_Weights.IMAGENET1K_V1.transforms()
    pre = Preprocess(transforms)
    imgs = [make_image(RNG, (300, 200), 1), make_image(RNG, (180, 333), 2)]
    ours = pre.normalize(torch.stack([pre.to_uint8(i) for i in imgs]))
    theirs = torch.stack([transforms(i) for i in imgs])
    assert ours.shape == (2, 3, 224, 224)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "BMP", "GIF", "WEBP", "TIFF"])
def test_every_format_decodes_to_rgb(fmt):
    img = decode_image(encode(make_image(RNG, (64, 48)), fmt))
    assert img.mode == "RGB" and img.size == (64, 48)


@pytest.mark.parametrize("mode", ["L", "P", "RGBA", "LA", "CMYK", "1", "I;16"])
def test_every_mode_becomes_rgb(mode):
    src = make_image(RNG, (40, 30))
    img = src.convert("L").convert(mode) if mode == "I;16" else src.convert(mode)
    fmt = "TIFF" if mode in ("CMYK", "I;16") else "PNG"
    out = decode_image(encode(img, fmt))
    assert out.mode == "RGB" and out.size == (40, 30)


def test_sixteen_bit_is_scaled_not_clipped():
    arr = np.array([[0, 32768, 65535]], dtype=np.uint16)
    out = np.asarray(decode_image(encode(Image.fromarray(arr), "PNG")))
    assert out[0, :, 0].tolist() == [0, 128, 255]


def test_transparent_pixels_become_white():
    img = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    assert np.asarray(decode_image(encode(img, "PNG"))).min() == 255


def test_exif_orientation_is_applied():
    img = make_image(RNG, (60, 20))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    out = decode_image(encode(img, "JPEG", exif=exif.tobytes()))
    assert out.size == (20, 60)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty file"),
        (b"this is a text file, not a picture", "not an image"),
    ],
)
def test_bad_files_get_a_reason(data, reason):
    with pytest.raises(ImageDecodeError, match=reason):
        decode_image(data)


def test_truncated_jpeg_is_refused():
    data = encode(make_image(RNG, (200, 200)), "JPEG")
    with pytest.raises(ImageDecodeError, match="cannot decode"):
        decode_image(data[: len(data) // 2])


def test_decompression_bomb_is_refused(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(ImageDecodeError, match="decompression bomb"):
        decode_image(encode(Image.new("L", (100, 100)), "PNG"))


def test_list_image_folder(tmp_path):
    root = write_folder(tmp_path / "d", {"b_dogs": 2, "a_cats": 3})
    (root / "a_cats" / "nested").mkdir()
    make_image(RNG).save(root / "a_cats" / "nested" / "DEEP.JPG")
    (root / "a_cats" / "notes.txt").write_text("not an image")
    make_image(RNG).save(root / "loose.png")
    images = list_images(root)
    assert images.classes == ["a_cats", "b_dogs"]
    assert images.paths[:2] == ["a_cats/img000.png", "a_cats/img001.png"]
    assert "a_cats/nested/DEEP.JPG" in images.paths
    assert len(images.paths) == 6
    assert images.labels.tolist() == [0, 0, 0, 0, 1, 1]
    assert images.ignored == ["loose.png"]


def test_list_flat_folder(tmp_path):
    for i in range(3):
        make_image(RNG).save(tmp_path / f"x{i}.Png")
    images = list_images(tmp_path)
    assert images.classes == [] and images.labels.tolist() == [-1, -1, -1]


def test_missing_and_empty_folders(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        list_images(tmp_path / "nope")
    (tmp_path / "empty" / "cls").mkdir(parents=True)
    with pytest.raises(DataError, match="no images in"):
        list_images(tmp_path / "empty")
