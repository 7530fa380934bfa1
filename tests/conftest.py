"""Shared fixtures: generated image folders and weights saved by the tests.

Nothing is downloaded: weights are a seeded random AlexNet, saved as a state dict
or planted in a temporary TORCH_HOME under the name torchvision expects.
"""

from __future__ import annotations

import copy
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torchvision.models import alexnet
from torchvision.models.feature_extraction import create_feature_extractor

from featx.model import hub_weights_file


def make_image(rng: np.random.Generator, size=(96, 80), label: int = 0) -> Image.Image:
    """A smooth image whose colour and stripes depend on its class."""
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    freq = 0.08 + 0.1 * label
    base = np.sin(xx * freq + rng.uniform(0, 6)) * 60 + np.cos(yy * freq * 0.7) * 40
    colour = np.array(
        [(label * 97) % 256, (label * 53 + 80) % 256, (label * 31 + 160) % 256]
    )
    img = base[..., None] + colour[None, None, :] + rng.normal(0, 12, (h, w, 3))
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


def write_folder(
    root: Path, classes: dict[str, int], *, seed: int = 0, ext=".png"
) -> Path:
    """An ImageFolder: ``classes`` maps class name to image count."""
    rng = np.random.default_rng(seed)
    for label, (name, count) in enumerate(classes.items()):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            size = (int(rng.integers(60, 140)), int(rng.integers(60, 140)))
            make_image(rng, size, label).save(root / name / f"img{i:03d}{ext}")
    return root


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    """Two classes of six PNG images each."""
    return write_folder(tmp_path / "data", {"cats": 6, "dogs": 6})


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    return tmp_path / "cache"


@pytest.fixture(scope="session")
def state_dict_file(tmp_path_factory) -> Path:
    """A seeded random AlexNet saved as a torchvision-format state dict."""
    torch.manual_seed(1234)
    path = tmp_path_factory.mktemp("weights") / "alexnet-seeded.pth"
    torch.save(alexnet().state_dict(), path)
    return path


@pytest.fixture
def planted_torch_home(tmp_path: Path, state_dict_file: Path, monkeypatch) -> Path:
    """A TORCH_HOME whose hub cache already holds 'the ImageNet weights'."""
    home = tmp_path / "torch_home"
    monkeypatch.setenv("TORCH_HOME", str(home))
    target = hub_weights_file()
    target.parent.mkdir(parents=True)
    target.symlink_to(state_dict_file)
    return home


@pytest.fixture(autouse=True)
def _offline(monkeypatch, tmp_path):
    """No test may download: an empty TORCH_HOME and FEATX_OFFLINE set."""
    monkeypatch.setenv("FEATX_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_torch_home"))
    monkeypatch.delenv("FEATX_CACHE_DIR", raising=False)


@pytest.fixture(scope="session")
def digits(tmp_path_factory):
    """scikit-learn's digits as PNG folders (30 train / 10 test per digit), with
    fc7 and pool5 of a seeded random AlexNet extracted into a cache directory."""
    from featx import extract
    from featx.demo import write_digits

    root = tmp_path_factory.mktemp("digits")
    train, test = write_digits(root / "images", per_class=40)
    cache_dir = root / "cache"
    caches = {}
    for name, folder in (("train", train), ("test", test)):
        result = extract(
            folder,
            layers=["fc7", "pool5"],
            weights="random",
            cache_dir=cache_dir,
            num_workers=0,
        )
        caches[name] = result.cache_path
    return {
        "train": train,
        "test": test,
        "cache_dir": cache_dir,
        **{f"{k}_cache": v for k, v in caches.items()},
    }


#: The models of :func:`two_models`' caches, and their layers.
TWO_MODELS = ("alexnet", "caffe-alexnet")
TWO_MODELS_LAYERS = ("fc7", "pool5")


@pytest.fixture(scope="session")
def two_models(tmp_path_factory):
    """One folder (three classes of ten images) and its held-out sibling Test
    (four each), extracted with a seeded random alexnet and caffe-alexnet into
    one cache directory: caches of one folder made with two models."""
    from featx import extract

    root = tmp_path_factory.mktemp("two_models")
    folders = {
        "Train": write_folder(root / "Train", {"a": 10, "b": 10, "c": 10}, seed=1),
        "Test": write_folder(root / "Test", {"a": 4, "b": 4, "c": 4}, seed=2),
    }
    cache_dir = root / "cache"
    caches = {}
    for model in TWO_MODELS:
        for name, folder in folders.items():
            caches[model, name] = extract(
                folder,
                layers=TWO_MODELS_LAYERS,
                weights="random",
                model=model,
                cache_dir=cache_dir,
                num_workers=0,
            ).cache_path
    return {"cache_dir": cache_dir, "caches": caches, **folders}


@pytest.fixture
def models_cache_dir(two_models, tmp_path) -> Path:
    """A copy of :func:`two_models`' caches (no stored results) to change."""
    import shutil

    copy = tmp_path / "cache"
    copy.mkdir()
    for path in two_models["caches"].values():
        shutil.copy2(path, copy / path.name)
    return copy


def set_model(path: Path, model: str) -> None:
    """Write ``model`` as the network a cache records (root attribute)."""
    import h5py

    with h5py.File(path, "r+") as f:
        f.attrs["model"] = model


def reference(model: nn.Module, nodes: list[str], x: torch.Tensor, *, inplace: bool):
    """torchvision's create_feature_extractor, optionally with out-of-place ReLUs."""
    model = copy.deepcopy(model).eval()
    if not inplace:
        for module in model.modules():
            if isinstance(module, nn.ReLU):
                module.inplace = False
    extractor = create_feature_extractor(model, {n: n for n in nodes})
    with torch.no_grad():
        return extractor(x)


def interrupted_run(
    folder: Path, cache_dir: Path, sig: int, *, extra=(), at: int = 40
) -> subprocess.CompletedProcess:
    """Start `featx extract` and send ``sig`` once ``at`` images are done."""
    cmd = [
        sys.executable,
        "-m",
        "featx",
        "extract",
        str(folder),
        "--layer",
        "conv5",
        "--layer",
        "fc7",
        "--weights",
        "random",
        "--workers",
        "0",
        "--batch-size",
        "4",
        "--cache-dir",
        str(cache_dir),
        *extra,
    ]
    # SIGINT as a terminal delivers it: a shell starts background jobs with it
    # ignored, and a child would inherit that and never see the Ctrl-C
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    seen = bytearray()

    def pump():
        while chunk := proc.stderr.read1(4096):
            seen.extend(chunk)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        done = [int(n) for n in re.findall(rb"extracting:.*?(\d+)/\d+", bytes(seen))]
        if done and max(done) >= at:
            proc.send_signal(sig)
            break
        time.sleep(0.02)
    out = proc.stdout.read()  # stderr is read by the pump thread alone
    proc.wait(timeout=120)
    reader.join(timeout=30)
    return subprocess.CompletedProcess(cmd, proc.returncode, out, bytes(seen))
