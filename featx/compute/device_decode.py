"""JPEGs decoded in batches on the network's device (the torchvision decoder).

The decode workers hand over a JPEG's bytes (:func:`device_jpeg`); the main
loop decodes a batch of them with ``torchvision.io.decode_jpeg`` on the device
(nvJPEG on CUDA, libjpeg-turbo on a CPU: the twin the tests run), then resizes
and crops there. Whatever the device refuses goes through PIL, image by image,
and a sample of every run is checked against the CPU decoder first.
"""

from __future__ import annotations

import io
from pathlib import Path

import torch
from PIL import Image

import featx.images
from featx.images import Preprocess
from featx.images.decode import file_failure

__all__ = [
    "device_jpeg",
    "CHECK_SAMPLE",
    "device_decoder_mismatch",
    "decode_on_device",
    "pil_crop",
    "resize_bomb",
    "blank",
]


def device_jpeg(path: Path, preprocess: Preprocess) -> tuple[torch.Tensor, str] | None:
    """With the torchvision decoder: a JPEG that the device can decode, as its
    file's bytes (a 1-D uint8 tensor) for :func:`decode_on_device`; None for
    every other file (PIL decodes it in the worker). The header is read to leave
    CMYK, and images over PIL's pixel limit, to PIL."""
    if preprocess.decoder != "torchvision":
        return None
    try:
        data = path.read_bytes()
        if data[:3] != b"\xff\xd8\xff":
            return None
        with Image.open(io.BytesIO(data)) as img:
            w, h = img.size
            if img.mode not in ("RGB", "L") or w * h > Image.MAX_IMAGE_PIXELS:
                return None
    except Exception as exc:  # PIL decodes it in the worker, and says why not
        if file_failure(exc) is None:
            raise
        return None
    return torch.frombuffer(bytearray(data), dtype=torch.uint8), ""


#: JPEGs whose device decode is compared with the CPU's at the start of a run.
CHECK_SAMPLE = 8


def _jpeg_batch(datas: list[torch.Tensor], device: torch.device) -> list:
    """``decode_jpeg`` of a batch on ``device``; one by one where the batch is
    refused, None for each file it refuses."""
    from torchvision.io import ImageReadMode, decode_jpeg

    kw = {"mode": ImageReadMode.RGB, "device": device, "apply_exif_orientation": True}

    def one(data):
        try:
            return decode_jpeg(data, **kw)
        except RuntimeError:
            return None

    if not datas:
        return []
    try:
        return list(decode_jpeg(datas, **kw))
    except RuntimeError:
        return [one(d) for d in datas]


def device_decoder_mismatch(datas: list[torch.Tensor], device: torch.device) -> str:
    """Why the device's JPEG decoder is not to be trusted on this run, or "".

    CUDA's ``decode_jpeg`` has returned corrupted pixels on H100s when the
    stream still had queued work (torchvision PR #9606): a sample is decoded
    on the device and on the CPU, and compared."""
    if device.type == "cpu" or not datas:
        return ""
    sample = datas[:CHECK_SAMPLE]
    on_device = _jpeg_batch(sample, device)
    if device.type == "cuda" and torch.cuda.is_available():
        torch.cuda.synchronize(device)
    on_cpu = _jpeg_batch(sample, torch.device("cpu"))
    for got, want in zip(on_device, on_cpu, strict=True):
        if got is None or want is None:
            continue
        if got.shape != want.shape:
            return f"a {tuple(want.shape)} image decoded as {tuple(got.shape)}"
        diff = (got.cpu().int() - want.int()).abs().float()
        # nvJPEG and libjpeg-turbo round IDCT and colour conversion differently by
        # a level or two; corruption is whole blocks off
        if diff.mean() > 2.0 or (diff > 32).float().mean() > 0.01:
            return f"mean pixel difference {diff.mean():.1f} from the CPU decoder"
    return ""


def decode_on_device(
    items: list[torch.Tensor],
    errors: list[str],
    preprocess: Preprocess,
    device: torch.device,
    views: tuple[str, ...] | None,
) -> torch.Tensor:
    """A batch whose JPEGs arrived as bytes: decode them together on
    ``device``, resize and crop them there; whatever the device decoder refuses
    goes through PIL here, image by image (its failure lands in ``errors``).
    Returns the stacked uint8 batch on ``device``."""
    raw = [i for i, item in enumerate(items) if item.dim() == 1]
    decoded = dict(zip(raw, _jpeg_batch([items[i] for i in raw], device), strict=True))
    out = []
    for i, item in enumerate(items):
        if item.dim() != 1:
            out.append(item.to(device))
        elif decoded[i] is not None:
            out.append(preprocess.crop_tensor(decoded[i], views))
        else:
            out.append(_pil_fallback(item, errors, i, preprocess, views).to(device))
    return torch.stack(out)


def pil_crop(
    data: bytes | Path, preprocess: Preprocess, views: tuple[str, ...] | None
) -> tuple[torch.Tensor | None, str]:
    """The PIL path for one file (or its bytes): its crop (or (V, 3, H, W)
    views), or None and why it could not be decoded, resized or cut (whatever
    the decoder raised: :func:`featx.images.decode.file_failure`). Shared by the
    decode workers of every engine and :func:`decode_on_device`'s fallback; it calls
    ``featx.images.decode_image`` through the package, where tests count the
    decodes."""
    try:
        img = featx.images.decode_image(data, scale_to=preprocess.scale_to)
        too_large = resize_bomb(img.size, preprocess.resize_size)
        if too_large:
            return None, too_large
        if views is None:
            return preprocess.to_uint8(img), ""
        return preprocess.views_uint8(img, views), ""
    except Exception as exc:  # the boundary of one file: featx's bugs go on up
        reason = file_failure(exc)
        if reason is None:
            raise
        return None, reason


def resize_bomb(size: tuple[int, int], resize_size: list[int]) -> str:
    """Why an image of ``size`` (width, height) must not be resized to
    ``resize_size``, or "": a sliver such as 1x20000 pixels (a hundred bytes as
    a PNG) would resize to a short side of 256 and a long one of five million,
    gigabytes and seconds of a core. The limit is PIL's decompression-bomb
    limit, applied to the resized image."""
    if len(resize_size) != 1 or not Image.MAX_IMAGE_PIXELS:
        return ""  # a fixed (height, width) resize has its own size
    short, long = sorted(size)
    target = resize_size[0]
    if short >= target:
        return ""  # shrinking: no larger than the image PIL already allowed
    stretched = int(target * long / max(short, 1))
    if target * stretched <= Image.MAX_IMAGE_PIXELS:
        return ""
    w, h = (target, stretched) if size[0] <= size[1] else (stretched, target)
    return (
        f"too elongated to resize safely (decompression bomb guard): "
        f"{size[0]}x{size[1]} pixels would resize to {w}x{h}, "
        f"over PIL's limit of {Image.MAX_IMAGE_PIXELS} pixels"
    )


def blank(preprocess: Preprocess, views: tuple[str, ...] | None) -> torch.Tensor:
    """The zeros that stand in for an image that could not be decoded."""
    h, w = preprocess.crop_hw
    shape = (3, h, w) if views is None else (len(views), 3, h, w)
    return torch.zeros(shape, dtype=torch.uint8)


def _pil_fallback(data, errors, i, preprocess, views) -> torch.Tensor:
    """One JPEG the device decoder refused, through PIL."""
    with featx.images.quiet_decoding():
        crop, error = pil_crop(bytes(data.numpy()), preprocess, views)
    if crop is None:
        errors[i] = error
        return blank(preprocess, views)
    return crop
