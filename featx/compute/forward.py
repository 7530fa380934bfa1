"""The compute core: the decode loader and the forward pass (the device and its
threads are chosen in :mod:`featx.compute.devices`).

Everything that turns image files into activations lives here, and nothing
about caches: :func:`compute_batches` yields ``(rows, values, failures)`` that
extraction writes to HDF5, prediction classifies in memory, and the Ray engine
and the benchmark reuse.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch

import featx.images
from featx.cache import LayerDef
from featx.compute.device_decode import (
    blank,
    decode_on_device,
    device_decoder_mismatch,
    device_jpeg,
    pil_crop,
)
from featx.compute.devices import (
    DEVICE_CHOICES,
    MAX_CPU_WORKERS,
    available_cores,
    check_runtime,
    configure_threads,
    default_decoder,
    default_precision,
    default_workers,
    lower_priority,
    resolve_device,
)
from featx.compute.process import release_free_memory
from featx.images import Preprocess
from featx.images.views import ALL_VIEWS, CENTER
from featx.model import LoadedWeights, capture_net, resolve_layers

__all__ = [
    "TRIM_EVERY",
    "MAX_CPU_WORKERS",
    "AUTOCAST",
    "DEVICE_CHOICES",
    "Batch",
    "ImageDataset",
    "resolve_device",
    "available_cores",
    "default_workers",
    "configure_threads",
    "check_runtime",
    "build_net",
    "views_in",
    "make_loader",
    "POOL_AXES",
    "reduce_spatial",
    "run_forward",
    "default_decoder",
    "default_precision",
    "compute_batches",
]

#: Batches between two returns of freed heap memory to the OS (process.py).
TRIM_EVERY = 4
#: The autocast type of each precision but float32.
AUTOCAST = {"bf16": torch.bfloat16, "fp16": torch.float16}

#: One batch: rows that decoded, ``{layer key: (n, dim) array}`` for them, and
#: ``(row, reason)`` for the files that did not.
Batch = tuple[np.ndarray, dict[str, np.ndarray], list[tuple[int, str]]]


class ImageDataset(torch.utils.data.Dataset):
    """Decodes and preprocesses images in DataLoader workers.

    Each item is ``(row, image, error, said)``: ``image`` is a (3, H, W) uint8
    tensor, or (V, 3, H, W) with one crop per view when ``views`` are named
    (decoded and resized once), or zeros with a non-empty ``error`` when the file
    could not be decoded; ``said`` holds what the decoders printed or warned for
    this image (:func:`featx.images.quiet_decoding`), so that nothing reaches
    the terminal over the progress bar.
    """

    def __init__(
        self,
        files: list[Path],
        rows: list[int],
        preprocess: Preprocess,
        views: tuple[str, ...] | None = None,
    ):
        self.files = files
        self.rows = rows
        self.preprocess = preprocess
        self.views = views
        self.blank = blank(preprocess, views)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int):
        with featx.images.quiet_decoding() as said:
            image, error = device_jpeg(self.files[i], self.preprocess) or self._decode(
                i
            )
        return self.rows[i], image, error, said

    def _decode(self, i: int) -> tuple[torch.Tensor, str]:
        crop, error = pil_crop(self.files[i], self.preprocess, self.views)
        return (self.blank if crop is None else crop), error


def build_net(
    loaded: LoadedWeights,
    wanted: list[LayerDef],
    device: torch.device,
    preprocess: Preprocess | None = None,
) -> torch.nn.Module:
    """The truncated, channels-last network for ``wanted`` on ``device``: its
    ``forward(x, names)`` returns ``{layer: activation}``, and ``layers`` maps
    each name to its :class:`featx.model.LayerSpec`. Where ``preprocess`` names
    another runtime than torch, the same network exported and run by it
    (:func:`featx.compute.runtimes.runtime_net`)."""
    specs = resolve_layers(list(dict.fromkeys(w.layer for w in wanted)), loaded.arch)
    runtime = preprocess.runtime if preprocess is not None else "torch"
    if runtime != "torch":
        from featx.compute.runtimes import runtime_net

        check_runtime(runtime, device)
        return runtime_net(
            loaded, specs, runtime=runtime, precision=preprocess.precision,
            hw=preprocess.crop_hw, calibration=preprocess.calibration,
            preprocess=preprocess,
        )  # fmt: skip
    net = capture_net(loaded, specs).to(device).eval()
    return net.to(memory_format=torch.channels_last)


def views_in(wanted: list[LayerDef]) -> tuple[str, ...] | None:
    """The views ``wanted`` computes, in storage order; None for the centre
    alone (images then batch as (n, 3, H, W), as they always did)."""
    views = {layer.view for layer in wanted}
    if views <= {CENTER}:
        return None
    return tuple(v for v in ALL_VIEWS if v in views)


def _collate(batch):
    """Rows, images (a stacked uint8 batch; a list when some items are JPEG
    bytes for the device decoder), errors and what each decode said."""
    rows = torch.tensor([b[0] for b in batch], dtype=torch.int64)
    items = [b[1] for b in batch]
    raw = any(item.dim() == 1 for item in items)
    images = items if raw else torch.stack(items)
    errors = [b[2] for b in batch]
    said = [b[3] for b in batch]
    return rows, images, errors, said


def make_loader(
    files: list[Path],
    rows: list[int],
    preprocess: Preprocess,
    *,
    device: torch.device,
    batch_size: int,
    num_workers: int | None,
    views: tuple[str, ...] | None = None,
) -> torch.utils.data.DataLoader:
    """The DataLoader that decodes and crops images into uint8 batches in
    ``num_workers`` processes (0: in this process); with ``views``, each image
    is a (V, 3, H, W) stack of its crops."""
    num_workers = default_workers(device) if num_workers is None else num_workers
    return torch.utils.data.DataLoader(
        ImageDataset(files, rows, preprocess, views),
        batch_size=batch_size,
        num_workers=num_workers,
        collate_fn=_collate,
        pin_memory=device.type == "cuda",
        prefetch_factor=4 if num_workers else None,
        # on a CPU the workers share the forward pass's cores: it goes first
        worker_init_fn=lower_priority if device.type == "cpu" else None,
    )


#: The axes each kind of activation (``featx.model.POOLINGS``) pools over, of
#: a batch of that many axes.
POOL_AXES = {
    "map": ((2, 3), 4),
    "hwc": ((1, 2), 4),
    "tokens": ((1,), 3),
    "seq": ((1,), 3),
}


def reduce_spatial(x: torch.Tensor, spatial: str, kind: str = "map") -> torch.Tensor:
    """A batch of activations of ``kind`` → ``(n, width)``: ``avg`` or ``max``
    over the positions (``(n, C, H, W)`` → ``(n, C)``; ``(n, T, D)`` → ``(n, D)``),
    ``cls`` the class token (``(n, T, D)`` → ``(n, D)``); else flattened."""
    axes, ndim = POOL_AXES.get(kind or "map", ((), 0))
    pooled = x.dim() == ndim
    if spatial == "cls" and kind == "tokens":
        return x[:, 0]
    if pooled and spatial == "avg":
        return x.mean(dim=axes)
    if pooled and spatial == "max":
        return x.amax(dim=axes)
    return x.reshape(x.shape[0], -1)


def run_forward(
    *,
    net: torch.nn.Module,
    preprocess: Preprocess,
    images: torch.Tensor,
    layers: list[LayerDef],
    device: torch.device,
    views: tuple[str, ...] | None = None,
    to_host: bool = True,
) -> dict:
    """One batch of uint8 images → ``{layer key: (n, dim) array}``.

    ``images`` is (n, 3, H, W), or (n, V, 3, H, W) holding ``views``: then each
    view a layer of ``layers`` asks for is a forward pass of its own (the
    memory of one view's batch; views no layer asks for cost nothing). With
    ``to_host=False`` the values stay tensors on the device.
    """
    if views is None:
        result = _forward_view(net, preprocess, images, layers, device)
    else:
        result = {}
        for i, view in enumerate(views):
            wanted = [layer for layer in layers if layer.view == view]
            if wanted:
                result.update(
                    _forward_view(net, preprocess, images[:, i], wanted, device)
                )
    if to_host:
        return {key: value.cpu().numpy() for key, value in result.items()}
    return result


class _HostCopy:
    """A batch's values on their way to the host: on CUDA, copied into pinned
    memory without blocking and marked by an event, so that the next batch's
    forward pass is queued before this one is waited for; on a CPU, already
    there."""

    def __init__(self, values: dict, device: torch.device) -> None:
        self.event = None
        if device.type != "cuda":
            self.values = {k: v.numpy() for k, v in values.items()}
            return
        self.values = {}
        for key, value in values.items():
            host = torch.empty(value.shape, dtype=value.dtype, pin_memory=True)
            self.values[key] = host.copy_(value, non_blocking=True)
        self.event = torch.cuda.Event()
        self.event.record()

    def result(self) -> dict[str, np.ndarray]:
        if self.event is not None:
            self.event.synchronize()
            self.values = {k: v.numpy() for k, v in self.values.items()}
            self.event = None
        return self.values


def _forward_view(net, preprocess, images, layers, device) -> dict[str, np.ndarray]:
    # the other runtimes take a plain (N, C, H, W) array: no channels-last copy
    layout = getattr(net, "memory_format", torch.channels_last)
    x = images.to(device, non_blocking=True).contiguous(memory_format=layout)
    if not getattr(net, "normalizes", False):  # OpenVINO does it in its graph
        x = preprocess.normalize(x)
    names = sorted({layer.layer for layer in layers})
    cast = AUTOCAST.get(preprocess.precision)
    with torch.inference_mode():
        if cast is not None:
            with torch.autocast(device.type, dtype=cast):
                outs = net(x, names)
        else:
            outs = net(x, names)
        result = {}
        for layer in layers:
            kind = net.layers[layer.layer].kind
            y = reduce_spatial(outs[layer.layer].float(), layer.spatial, kind)
            result[layer.key] = y.to(getattr(torch, layer.dtype))
    return result


def compute_batches(
    *,
    files: list[Path],
    rows: list[int],
    wanted: list[LayerDef],
    loaded: LoadedWeights,
    preprocess: Preprocess,
    device: torch.device,
    batch_size: int,
    num_workers: int | None,
    needed: Callable[[np.ndarray], list[LayerDef]] | None = None,
    on_said: Callable[[int, list[str]], None] | None = None,
    on_note: Callable[[str], None] | None = None,
) -> Iterator[Batch]:
    """Start the decode workers now and return an iterator over :data:`Batch`.

    ``needed(rows)`` may narrow the layers (and views) computed for a batch.
    ``on_said(row, lines)`` receives what the decoders warned or printed for
    an image (nothing of it reaches the terminal); ``on_note(line)`` a line for
    the user (the device's JPEG decoder refused, say). Images are decoded and
    resized once, whatever the number of views ``wanted`` asks for. (Eleven
    keyword-only parameters: the inputs, the network and how to run it.)
    """
    views = views_in(wanted)
    configure_threads(device)
    net = build_net(loaded, wanted, device, preprocess)
    loader = make_loader(
        files,
        rows,
        preprocess,
        device=device,
        batch_size=batch_size,
        num_workers=num_workers,
        views=views,
    )
    batches = iter(loader)  # forks the workers here, before any HDF5 file opens
    stream = _Stream(net, preprocess, wanted, device, views)
    stream.needed, stream.on_said, stream.on_note = needed, on_said, on_note
    return iter(stream.ahead(batches))


class _Stream:
    """The computing of one :func:`compute_batches` call, one batch ahead."""

    needed = on_said = on_note = None

    def __init__(self, net, preprocess, wanted, device, views) -> None:
        self.net, self.preprocess, self.wanted = net, preprocess, wanted
        self.device, self.views = device, views
        self.jpeg_device: torch.device | None = None  # None: not checked yet

    def ahead(self, batches):
        """Batch k+1's forward pass is queued on the device before batch k's
        values are waited for and handed on (to the writer)."""
        pending = None
        for batch in self.computed(batches):
            if pending is not None:
                yield pending[0], pending[1].result(), pending[2]
            pending = batch
        if pending is not None:
            yield pending[0], pending[1].result(), pending[2]

    def computed(self, batches):
        for count, (rows, images, errors, said) in enumerate(batches, 1):
            if count % TRIM_EVERY == 0:
                release_free_memory()
            for row, lines in zip(rows.tolist(), said, strict=True):
                if lines and self.on_said is not None:
                    self.on_said(row, lines)
            if isinstance(images, list):  # JPEG bytes for the device
                images = self.decode(images, errors)
            failed = [(r, e) for r, e in zip(rows.tolist(), errors, strict=True) if e]
            ok = np.array([not e for e in errors])
            idx = rows.numpy()[ok]
            values = {}
            if ok.any():
                values = run_forward(
                    net=self.net,
                    preprocess=self.preprocess,
                    # a batch with no failed image is not copied
                    images=images
                    if ok.all()
                    else images[torch.from_numpy(ok).to(images.device)],
                    layers=self.needed(idx) if self.needed else self.wanted,
                    device=self.device,
                    views=self.views,
                    to_host=False,
                )
            yield idx, _HostCopy(values, self.device), failed

    def decode(self, items: list, errors: list[str]) -> torch.Tensor:
        """A batch with JPEG bytes, decoded on the device (checked against the
        CPU decoder once, before the first batch)."""
        if self.jpeg_device is None:
            raw = [item for item in items if item.dim() == 1]
            why = device_decoder_mismatch(raw, self.device)
            if why and self.on_note is not None:
                self.on_note(f"GPU JPEG decoding refused ({why}); decoding on the CPU")
            self.jpeg_device = torch.device("cpu") if why else self.device
        out = decode_on_device(
            items, errors, self.preprocess, self.jpeg_device, self.views
        )
        return out.to(self.device, non_blocking=True)
