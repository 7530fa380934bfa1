"""The GPU batch extractor, measured: forward pass, both decode paths, end to end.

    python benchmarks/bench_gpu.py [--images 20000] [--workers 16] [--device auto]

Makes N different ~500x375 JPEGs (q90) with several processes, then measures on
the device:

- F       forward-only img/s on uint8 batches already on the device;
- D_cpu   PIL decode + resize + crop img/s in ``--workers`` decode processes;
- D_gpu   the torchvision decoder: the workers read the files, ``decode_jpeg``
          decodes each batch on the device, which resizes and crops;
- E2E     `featx.extract` img/s writing a fresh cache, with each decoder, and
          E2E / min(F, D) for each;
- rows    GPU rows (torchvision decoder, the device's default precision) against
          CPU rows (PIL, fp32) on ``--compare`` images: relative L2 per layer.

Prints the JSON it writes to --out. On a CPU the same script is a dry run
(``benchmarks/gpu_check.sh --dry-run``): D_gpu is then the CPU twin.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import tempfile
import time
from pathlib import Path

from featx.compute.process import configure_openmp

configure_openmp()  # as the featx command does, before torch is imported

import torch

from featx import FeatureCache, extract
from featx.compute.device_decode import decode_on_device
from featx.compute.forward import (
    configure_threads,
    default_precision,
    make_loader,
    resolve_device,
)
from featx.model import load_weights, preprocess_for

sys.path.insert(0, str(Path(__file__).parent))
from bench_extract import forward_rate, make_photos, rel_l2, wanted_layers  # noqa: I001


def _make_part(args) -> int:
    root, n, seed = args
    return len(make_photos(Path(root), n, seed=seed))


def make_many(root: Path, n: int, processes: int) -> list[Path]:
    """N JPEGs made by ``processes`` processes, each its own seed and folder."""
    parts = [(root / f"part{k:02d}", n // processes, k) for k in range(processes)]
    parts[-1] = (parts[-1][0], n - (n // processes) * (processes - 1), processes - 1)
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        pool.map(_make_part, [(str(r), m, s) for r, m, s in parts])
    return sorted(root.rglob("*.jpg"))


def decode_rate(files, device, batch_size, workers, decoder) -> float:
    """img/s of decoding, resizing and cropping alone, on the way to ``device``."""
    preprocess = preprocess_for("alexnet", decoder=decoder)
    loader = make_loader(
        files,
        list(range(len(files))),
        preprocess,
        device=device,
        batch_size=batch_size,
        num_workers=workers,
    )
    start, count = time.perf_counter(), 0
    for rows, images, errors, _ in loader:
        if isinstance(images, list):
            images = decode_on_device(images, errors, preprocess, device, None)
        else:
            images = images.to(device, non_blocking=True)
        count += len(rows)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return count / (time.perf_counter() - start)


def e2e(folder, loaded, names, device, batch_size, workers, cache_dir, **kw):
    start = time.perf_counter()
    result = extract(
        folder,
        layers=names,
        weights=loaded,
        device=str(device),
        batch_size=batch_size,
        num_workers=workers,
        cache_dir=cache_dir,
        **kw,
    )
    assert result.n_new == result.n_images, result
    return result.n_images / (time.perf_counter() - start), result


def compare_rows(files, loaded, names, device, workers, work: Path) -> dict:
    """The first images' rows on the device (its defaults) and on the CPU."""
    sample = work / "sample"
    for f in files:
        target = sample / f.parent.name / f.name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(f)
    _, on_device = e2e(sample, loaded, names, device, 64, workers, work / "cmp-dev")
    _, on_cpu = e2e(
        sample, loaded, names, torch.device("cpu"), 64, workers, work / "cmp-cpu",
        precision="fp32", decoder="pil",
    )  # fmt: skip
    with FeatureCache(on_device.cache_path) as a, FeatureCache(on_cpu.cache_path) as b:
        return {layer: rel_l2(a.read(layer), b.read(layer)) for layer in names}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=20000)
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--layers", default="pool5,fc7")
    parser.add_argument("--compare", type=int, default=200)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results-gpu.json"))
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    configure_threads(device)
    names = args.layers.split(",")
    loaded = load_weights("random")
    work = Path(tempfile.mkdtemp(prefix="featx-gpu-"))
    start = time.perf_counter()
    files = make_many(work / "photos", args.images, processes=args.workers)
    made = time.perf_counter() - start
    print(f"made {len(files)} JPEGs in {made:.1f} s", file=sys.stderr)
    layers = wanted_layers(names)
    preprocess = preprocess_for("alexnet", precision=default_precision(device))
    F = forward_rate(loaded, layers, device, args.batch_size, 20 * args.batch_size,
                     preprocess, on_device=True)  # fmt: skip
    D_cpu = decode_rate(files, device, args.batch_size, args.workers, "pil")
    D_gpu = decode_rate(files, device, args.batch_size, args.workers, "torchvision")
    e2e_kw = (loaded, names, device, args.batch_size, args.workers)
    E_cpu, _ = e2e(work / "photos", *e2e_kw, work / "e2e-pil", decoder="pil")
    E_gpu, run = e2e(work / "photos", *e2e_kw, work / "e2e-tv", decoder="torchvision")
    rows = compare_rows(
        files[: args.compare], loaded, names, device, args.workers, work
    )
    result = {
        "device": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else "cpu",
        "torch": str(torch.__version__),
        "cuda": torch.version.cuda,
        "images": len(files),
        "workers": args.workers,
        "batch_size": args.batch_size,
        "precision": default_precision(device),
        "seconds_to_make_images": made,
        "F": F,
        "D_cpu": D_cpu,
        "D_gpu": D_gpu,
        "E2E_pil": E_cpu,
        "E2E_torchvision": E_gpu,
        "E2E_pil_over_min_F_D_cpu": E_cpu / min(F, D_cpu),
        "E2E_torchvision_over_min_F_D_gpu": E_gpu / min(F, D_gpu),
        "decoder_notes": run.notes,
        "rows_rel_l2_device_vs_cpu": rows,
    }
    text = json.dumps(result, indent=2)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")
    return result


if __name__ == "__main__":
    main()
