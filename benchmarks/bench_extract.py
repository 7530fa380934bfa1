"""Extraction throughput against the machine's limit, memory, and fit times.

    python benchmarks/bench_extract.py [--images 800] [--repeats 3] [--device auto]
    python benchmarks/bench_extract.py --large 100 --out benchmarks/results-large.json

Makes N realistic JPEG photos (~500x375, quality 90) from the photos scikit-learn
ships (random crops, scales, flips, colour shifts: every file differs), then
measures, with the same model, layers, batch size, dtype and loading code as
`featx extract`:

- F    forward-only images/s on pre-made uint8 batches;
- D    decode + preprocess images/s, all workers, no model;
- L    the limit: 1 / (1/F + 1/D) on a CPU (both share the cores), min(F, D) on a GPU;
- E2E  `featx.extract` images/s writing a fresh cache (model load excluded), and
       E2E / L (the figure that counts, measured within one repeat);
- the same loop without writing the cache, to show the cost of writing;
- peak resident memory of an extraction of N and of 10xN images (fresh processes);
- fit time of each classifier on pool5 and fc7.

Prints one table and writes the numbers as JSON (--out).

With ``--model NAME`` (``resnet18``, ``resnet50``, any network featx runs) it
measures that network instead of AlexNet (layers default: ``avgpool`` for ResNets,
the last layer of the table otherwise), and beside L the plain bound that a user
without featx would reach: torchvision's ``create_feature_extractor`` on the same
layers (channels-last, inference mode) fed by PIL and ``weights.transforms()`` in
a DataLoader with a worker per core, ``L_plain = 1 / (1/F_plain + 1/D_plain)``;
E2E / L_plain is the figure to hold at 1.0 or more.

With ``--runtime openvino|onnxruntime`` (and ``--precision fp32|int8``) it
measures instead, in each repeat: torch's F and the runtime's F on the same
batches, D, L for each (1 / (1/F + 1/D)), the plain bound L_plain, and
`featx extract --runtime` E2E, with the ratios F_rt / F, E2E / L_rt and
E2E / L_plain, and the parity featx recorded (each layer's relative
difference from float32 torch on 32 images).

With ``--large N`` it measures instead, in one run, `featx extract` on N phone-size
JPEGs (4032x3024, q92) and on N ~500x375 ones, each with ``--decode fast`` and
``--decode exact``, and how far the large photos' pool5 and fc7 rows of the two
modes are apart (relative L2).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from featx.compute.process import configure_openmp

configure_openmp()  # as the featx command does, before torch is imported

import numpy as np
import torch
from PIL import Image
from sklearn.datasets import load_sample_images

import pipelines
from featx import FeatureCache, extract
from featx.cache import LayerDef
from featx.compute.forward import (
    build_net,
    compute_batches,
    configure_threads,
    default_workers,
    make_loader,
    resolve_device,
    run_forward,
)
from featx.model import layer_table, load_weights, preprocess_for, resolve_layers


def make_photos(root: Path, n: int, seed: int = 0) -> list[Path]:
    """N different ~500x375 JPEGs (q90) from scikit-learn's sample photos."""
    rng = np.random.default_rng(seed)
    photos = [Image.fromarray(a) for a in load_sample_images().images]
    files = []
    for i in range(n):
        src = photos[i % len(photos)]
        w, h = src.size
        scale = rng.uniform(0.45, 1.0)
        cw, ch = int(w * scale), int(h * scale)
        x, y = rng.integers(0, w - cw + 1), rng.integers(0, h - ch + 1)
        img = src.crop((x, y, x + cw, y + ch))
        size = (500, 375) if rng.random() < 0.75 else (375, 500)
        img = img.resize(size, Image.Resampling.BILINEAR)
        if rng.random() < 0.5:
            img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        arr = np.asarray(img).astype(np.float32) * rng.uniform(0.8, 1.2, 3)
        arr += rng.uniform(-20, 20)
        img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
        folder = root / ("china" if i % len(photos) == 0 else "flower")
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"photo{i:05d}.jpg"
        img.save(path, quality=90)
        files.append(path)
    return files


def wanted_layers(names, dtype="float32", model="alexnet") -> list[LayerDef]:
    from featx.extraction.api import wanted_layers as featx_layers

    return featx_layers(resolve_layers(names, model), "none", dtype, "center", model)


def default_layers(model: str) -> str:
    """What --layers means when not given."""
    if model in ("alexnet", "caffe-alexnet"):
        return "pool5,fc7"
    names = [spec.name for spec in layer_table(model)]
    return "avgpool" if "avgpool" in names else names[-1]


def forward_rate(
    loaded, layers, device, batch_size, n, preprocess, on_device=False
) -> float:
    """Pre-made uint8 batches through the same network and output handling
    (``on_device``: the batch already on the device, no host copy; the
    network run by ``preprocess.runtime``)."""
    configure_threads(device)  # as extraction does
    net = build_net(loaded, layers, device, preprocess)
    gen = torch.Generator().manual_seed(0)
    height, width = preprocess.crop_hw
    batch = torch.randint(
        0, 256, (batch_size, 3, height, width), dtype=torch.uint8, generator=gen
    )
    if device.type == "cuda":
        batch = batch.to(device) if on_device else batch.pin_memory()
    run_forward(
        net=net, preprocess=preprocess, images=batch, layers=layers, device=device
    )  # warm-up
    done = 0
    start = time.perf_counter()
    while done < n:
        run_forward(
            net=net, preprocess=preprocess, images=batch, layers=layers, device=device
        )
        done += batch_size
    if device.type == "cuda":
        torch.cuda.synchronize()
    return done / (time.perf_counter() - start)


def decode_rate(files, device, batch_size, preprocess) -> float:
    loader = make_loader(
        files,
        list(range(len(files))),
        preprocess,
        device=device,
        batch_size=batch_size,
        num_workers=None,
    )
    start = time.perf_counter()
    count = sum(len(rows) for rows, *_ in loader)
    return count / (time.perf_counter() - start)


class PlainImages(torch.utils.data.Dataset):
    """What a torchvision user writes: PIL, then the weights' transforms."""

    def __init__(self, files, transforms) -> None:
        self.files, self.transforms = files, transforms

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> torch.Tensor:
        with Image.open(self.files[i]) as img:
            return self.transforms(img.convert("RGB"))


def plain_rates(model, loaded, layers, files, device, batch_size) -> dict:
    """F_plain, D_plain and L_plain: torchvision's create_feature_extractor on
    the same weights and nodes, and PIL + weights.transforms() in a DataLoader."""
    from torchvision.models.feature_extraction import create_feature_extractor

    from featx.model import backbone

    transforms = backbone(model).transforms()
    nodes = sorted({layer.module_path for layer in layers})
    net = create_feature_extractor(loaded.model, {n: n for n in nodes})
    net = net.to(device).eval().to(memory_format=torch.channels_last)
    configure_threads(device)
    height, width = preprocess_for(model).crop_hw
    x = torch.randn(batch_size, 3, height, width, generator=torch.Generator())
    x = x.to(device).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        net(x)  # warm-up
        done, start = 0, time.perf_counter()
        while done < len(files):
            {k: v.cpu() for k, v in net(x).items()}
            done += batch_size
    f_plain = done / (time.perf_counter() - start)
    loader = torch.utils.data.DataLoader(
        PlainImages(files, transforms),
        batch_size=batch_size,
        num_workers=default_workers(device),
    )
    start = time.perf_counter()
    count = sum(len(batch) for batch in loader)
    d_plain = count / (time.perf_counter() - start)
    if device.type == "cuda":
        l_plain = min(f_plain, d_plain)
    else:
        l_plain = 1 / (1 / f_plain + 1 / d_plain)
    return {"F_plain": f_plain, "D_plain": d_plain, "L_plain": l_plain}


def e2e_rate(
    root, loaded, names, device, batch_size, cache_dir, decode="fast", **runtime
) -> float:
    """`featx.extract` img/s on a fresh cache (``runtime``: its ``runtime``,
    ``precision`` and ``parity`` dict, filled in with what it recorded; the
    parity measurement is not timed)."""
    parity = runtime.pop("parity", None)
    start = time.perf_counter()
    result = extract(
        root,
        layers=names,
        device=str(device),
        batch_size=batch_size,
        cache_dir=cache_dir,
        weights=loaded,
        decode=decode,
        **runtime,
    )
    elapsed = time.perf_counter() - start - result.parity_seconds
    assert result.n_new == result.n_images, result
    if parity is not None:
        parity.update(result.parity)
    return result.n_images / elapsed


def runtime_mode(args, loaded, names, device) -> dict:
    """Torch's F and ``args.runtime``'s in ``args.precision``, D, both L, the
    plain bound and featx E2E with the runtime, each repeat in one run."""
    from featx.extraction.api import calibrate
    from featx.images import list_images

    work = Path(tempfile.mkdtemp(prefix="featx-bench-rt-"))
    files = make_photos(work / "photos", args.images)
    layers = wanted_layers(names, model=args.model)
    plain = preprocess_for(args.model)
    fast = preprocess_for(args.model, precision=args.precision, runtime=args.runtime)
    calibrate(fast, list_images(work / "photos"), None)  # as extract samples it
    kw = {"runtime": args.runtime, "precision": args.precision}
    parity: dict = {}
    e2e_rate(work / "photos", loaded, names, device, args.batch_size, work / "warm",
             parity=parity, **kw)  # fmt: skip
    start = time.perf_counter()
    build_net(loaded, layers, device, fast)  # exported and quantized: reused
    setup = time.perf_counter() - start
    runs = []
    for r in range(args.repeats):
        F = forward_rate(loaded, layers, device, args.batch_size, args.images, plain)
        F_rt = forward_rate(loaded, layers, device, args.batch_size, args.images, fast)
        D = decode_rate(files, device, args.batch_size, plain)
        E = e2e_rate(work / "photos", loaded, names, device, args.batch_size,
                     work / f"cache{r}", **kw)  # fmt: skip
        bound = plain_rates(args.model, loaded, layers, files, device, args.batch_size)
        L, L_rt = 1 / (1 / F + 1 / D), 1 / (1 / F_rt + 1 / D)
        run = {"F": F, "F_rt": F_rt, "D": D, "L": L, "L_rt": L_rt, "E2E_rt": E,
               **bound, "F_rt_over_F": F_rt / F, "E2E_rt_over_L_rt": E / L_rt,
               "E2E_rt_over_L_plain": E / bound["L_plain"]}  # fmt: skip
        runs.append(run)
        print(f"repeat {r + 1}: " + "  ".join(f"{k} {v:.3f}" for k, v in run.items()),
              file=sys.stderr)  # fmt: skip
    big = replicate(files, work / "big", args.memory_factor)
    if args.precision == "int8":  # measured as a second run: quantized already
        made = preprocess_for(args.model, precision="int8", runtime=args.runtime)
        calibrate(made, list_images(big), None)
        build_net(loaded, layers, device, made)
    memory = {
        f"N={n}": peak_rss(root, names, device, args.batch_size, work / f"mem{n}",
                           args.model, **kw)
        for n, root in ((args.images, work / "photos"),
                        (args.images * args.memory_factor, big))
    }  # fmt: skip
    return {
        "runtime": args.runtime,
        "precision": args.precision,
        "memory_mib": memory,
        "runs": runs,
        "median": {k: statistics.median(run[k] for run in runs) for k in runs[0]},
        "parity": parity,
        "setup_seconds": setup,
    }


def make_large_photos(root: Path, n: int, seed: int = 1) -> list[Path]:
    """N different phone-size JPEGs (4032x3024, q92): a random crop of one of
    scikit-learn's sample photos, upscaled, with a fine grain, so that the files
    (~2 MB) take the decoder's time a phone's photo takes."""
    rng = np.random.default_rng(seed)
    photos = [Image.fromarray(a) for a in load_sample_images().images]
    files = []
    for i in range(n):
        src = photos[i % len(photos)]
        w, h = src.size
        cw, ch = int(w * 0.8), int(h * 0.8)
        x, y = rng.integers(0, w - cw + 1), rng.integers(0, h - ch + 1)
        img = src.crop((x, y, x + cw, y + ch)).resize(
            (4032, 3024), Image.Resampling.BICUBIC
        )
        arr = np.asarray(img, np.float32) + rng.normal(0, 3, (3024, 4032, 3))
        img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
        folder = root / ("china" if i % len(photos) == 0 else "flower")
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"phone{i:05d}.jpg"
        img.save(path, quality=92)
        files.append(path)
    return files


def rel_l2(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64), b.astype(np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def large_photo_mode(args, loaded, names, device) -> dict:
    """E2E img/s on N phone-size and N ~500x375 JPEGs, each decode mode, in one
    run; and the large photos' rows of the two modes compared."""
    work = Path(tempfile.mkdtemp(prefix="featx-bench-large-"))
    small = make_photos(work / "small-1", args.large)
    large = make_large_photos(work / "large-1", args.large)
    # each file several times under other names (hard links): enough batches for
    # a steady state, without the minutes that making 12 MP photos takes
    replicate(small, work / "small", args.large_copies)
    replicate(large, work / "large", args.large_copies)
    sizes = {
        "500x375": statistics.median(f.stat().st_size for f in small),
        "4032x3024": statistics.median(f.stat().st_size for f in large),
    }
    e2e_rate(work / "small", loaded, names, device, args.batch_size, work / "warm")
    rates = {}
    for label in ("4032x3024", "500x375"):
        folder = work / ("large" if label == "4032x3024" else "small")
        for mode in ("fast", "exact"):
            rate = e2e_rate(
                folder, loaded, names, device, args.batch_size,
                work / f"cache-{label}-{mode}", decode=mode,
            )  # fmt: skip
            rates[f"{label} {mode}"] = rate
            print(f"{label} {mode}: {rate:.1f} img/s", file=sys.stderr)
    rows = {}
    for mode in ("fast", "exact"):
        (path,) = (work / f"cache-4032x3024-{mode}").glob("*.h5")
        with FeatureCache(path) as cache:
            rows[mode] = {layer: cache.read(layer) for layer in names}
    return {
        "images_each": args.large * args.large_copies,
        "distinct_images_each": args.large,
        "median_file_bytes": sizes,
        "img_per_s": rates,
        "large_fast_over_small_fast": rates["4032x3024 fast"] / rates["500x375 fast"],
        "large_exact_over_small_exact": (
            rates["4032x3024 exact"] / rates["500x375 exact"]
        ),
        "fast_over_exact_on_large": rates["4032x3024 fast"] / rates["4032x3024 exact"],
        "rel_l2_fast_vs_exact_large": {
            layer: rel_l2(rows["fast"][layer], rows["exact"][layer]) for layer in names
        },
    }


def no_write_rate(files, loaded, layers, device, batch_size, preprocess) -> float:
    start = time.perf_counter()
    batches = compute_batches(
        files=files,
        rows=list(range(len(files))),
        wanted=layers,
        loaded=loaded,
        preprocess=preprocess,
        device=device,
        batch_size=batch_size,
        num_workers=None,
    )
    count = sum(len(rows) for rows, _, _ in batches)
    return count / (time.perf_counter() - start)


def peak_rss(
    root: Path, names, device, batch_size, cache_dir: Path, model="alexnet", **runtime
) -> dict:
    """Run one extraction in a fresh process; its peak RSS (MiB). ``runtime``:
    its ``runtime`` and ``precision``."""
    code = (
        "import json, resource, sys\n"
        "from featx.compute.process import configure_openmp\n"
        "configure_openmp()\n"
        "from featx import extract\n"
        f"extract({str(root)!r}, layers={list(names)!r}, weights='random', "
        f"model={model!r}, "
        f"device={str(device)!r}, batch_size={batch_size}, "
        f"cache_dir={str(cache_dir)!r}, "
        + "".join(f"{k}={v!r}, " for k, v in runtime.items())
        + ")\n"
        "me = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024\n"
        "kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024\n"
        "print(json.dumps({'main_mib': me, 'worker_mib': kids}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def replicate(files: list[Path], root: Path, times: int) -> Path:
    """times x the files as hard links (distinct paths, same bytes)."""
    for k in range(times):
        for f in files:
            target = root / f"copy{k}" / f.parent.name / f.name
            target.parent.mkdir(parents=True, exist_ok=True)
            os.link(f, target)
    return root


def fit_times(cache_path: Path, layers) -> dict:
    out = {}
    with FeatureCache(cache_path) as cache:
        y = cache.labels
        for layer in layers:
            X = cache.read(layer)
            for clf in ("svm", "logreg", "mlp"):
                pipe = pipelines.make_pipeline(
                    clf, n_samples=len(y), n_features=X.shape[1]
                )
                start = time.perf_counter()
                pipe.fit(X, y)
                out[f"{layer}/{clf}"] = time.perf_counter() - start
    return out


def machine(device) -> dict:
    """What the numbers were measured on."""
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    return {
        "cpu_cores": len(os.sched_getaffinity(0)),
        "processor": platform.processor() or platform.machine(),
        "avx512f": " avx512f" in flags,
        "device": str(device),
        "gpu": gpu,
        "torch": str(torch.__version__),
        "torch_threads": torch.get_num_threads(),
        "decode_workers": default_workers(device),
    }


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=800, help="N photos")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model", default="alexnet", help="the network")
    parser.add_argument(
        "--layers", default=None, help="comma list [default: pool5,fc7 for AlexNet]"
    )
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="auto")
    parser.add_argument(
        "--memory-factor",
        type=int,
        default=10,
        help="the second memory run uses this many times N images",
    )
    parser.add_argument(
        "--large",
        type=int,
        default=0,
        metavar="N",
        help="measure N phone-size and N ~500x375 JPEGs in both decode modes instead",
    )
    parser.add_argument(
        "--large-copies",
        type=int,
        default=5,
        help="with --large: each photo this many times (hard links)",
    )
    parser.add_argument(
        "--runtime",
        default="torch",
        help="openvino or onnxruntime: measure it beside torch instead",
    )
    parser.add_argument("--precision", default="fp32", help="with --runtime: or int8")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results.json"))
    args = parser.parse_args(argv)

    device = resolve_device(args.device)
    names = (args.layers or default_layers(args.model)).split(",")
    layers = wanted_layers(names, model=args.model)
    preprocess = preprocess_for(args.model)
    loaded = load_weights("random", model=args.model)
    if args.runtime != "torch":
        result = {
            "machine": machine(device),
            "settings": {"images": args.images, "model": args.model, "layers": names,
                         "batch_size": args.batch_size, "repeats": args.repeats},
            "runtime": runtime_mode(args, loaded, names, device),
        }  # fmt: skip
        print(json.dumps(result, indent=2))
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2))
        return result
    if args.large:
        result = {
            "machine": machine(device),
            "settings": {"layers": names, "batch_size": args.batch_size},
            "large_photos": large_photo_mode(args, loaded, names, device),
        }
        print(json.dumps(result, indent=2))
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2))
        return result
    work = Path(tempfile.mkdtemp(prefix="featx-bench-"))
    files = make_photos(work / "photos", args.images)
    # untimed: the first repeat should not pay for cold files and first calls
    e2e_rate(work / "photos", loaded, names, device, args.batch_size, work / "warm")
    runs = []
    for r in range(args.repeats):
        F = forward_rate(
            loaded, layers, device, args.batch_size, args.images, preprocess
        )
        D = decode_rate(files, device, args.batch_size, preprocess)
        E = e2e_rate(
            work / "photos", loaded, names, device, args.batch_size, work / f"cache{r}"
        )
        W = no_write_rate(files, loaded, layers, device, args.batch_size, preprocess)
        L = min(F, D) if device.type == "cuda" else 1 / (1 / F + 1 / D)
        run = {"F": F, "D": D, "L": L, "E2E": E, "ratio": E / L, "no_write": W}
        if args.model != "alexnet":
            plain = plain_rates(
                args.model, loaded, layers, files, device, args.batch_size
            )
            run.update(plain, ratio_plain=E / plain["L_plain"])
        runs.append(run)
        print(
            f"repeat {r + 1}: F {F:.1f}  D {D:.1f}  L {L:.1f}  E2E {E:.1f}  "
            f"E2E/L {E / L:.3f}  no-write {W:.1f} img/s"
            + (
                f"  L_plain {run['L_plain']:.1f}  E2E/L_plain {run['ratio_plain']:.3f}"
                if "L_plain" in run
                else ""
            ),
            file=sys.stderr,
        )
    med = {k: statistics.median(run[k] for run in runs) for k in runs[0]}
    big = replicate(files, work / "big", args.memory_factor)
    mem_n = peak_rss(
        work / "photos", names, device, args.batch_size, work / "mem1", args.model
    )
    mem_big = peak_rss(big, names, device, args.batch_size, work / "mem10", args.model)
    fits = fit_times(next((work / "cache0").glob("*.h5")), names)
    result = {
        "machine": machine(device),
        "settings": {
            "images": args.images,
            "model": args.model,
            "layers": names,
            "batch_size": args.batch_size,
            "repeats": args.repeats,
            "dtype": "float32",
        },
        "runs": runs,
        "median": med,
        "memory_mib": {
            f"N={args.images}": mem_n,
            f"N={args.images * args.memory_factor}": mem_big,
        },
        "fit_seconds": fits,
    }
    print_table(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    return result


def print_table(res: dict) -> None:
    m, med = res["machine"], res["median"]
    print(
        f"featx extraction benchmark: {res['settings']['model']}, "
        f"{res['settings']['images']} JPEGs ~500x375, "
        f"layers {','.join(res['settings']['layers'])}, batch "
        f"{res['settings']['batch_size']}, device {m['device']}"
        + (f" ({m['gpu']})" if m["gpu"] else f", {m['cpu_cores']} cores")
    )
    print(f"{'measure':<44}{'median':>10}")
    rows = [
        ("F  forward only (img/s)", med["F"]),
        ("D  decode + preprocess (img/s)", med["D"]),
        ("L  limit (img/s)", med["L"]),
        ("E2E featx extract, writing the cache (img/s)", med["E2E"]),
        ("E2E / L", med["ratio"]),
        ("same loop without writing (img/s)", med["no_write"]),
    ]
    if "L_plain" in med:
        rows += [
            ("F_plain torchvision forward (img/s)", med["F_plain"]),
            ("D_plain PIL + weights.transforms() (img/s)", med["D_plain"]),
            ("L_plain plain bound (img/s)", med["L_plain"]),
            ("E2E / L_plain", med["ratio_plain"]),
        ]
    for name, value in rows:
        print(
            f"{name:<44}{value:>10.3f}"
            if name.startswith("E2E / L")
            else f"{name:<44}{value:>10.1f}"
        )
    for label, mem in res["memory_mib"].items():
        print(
            f"{'peak RSS ' + label + ' main / workers (MiB)':<44}"
            f"{mem['main_mib']:>10.0f} / {mem['worker_mib']:.0f}"
        )
    for key, secs in res["fit_seconds"].items():
        print(f"{'fit ' + key + ' (s)':<44}{secs:>10.2f}")


if __name__ == "__main__":
    main()
