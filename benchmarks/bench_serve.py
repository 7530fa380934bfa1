"""`featx serve` against offline `featx extract` on the same images, in one run.

    python benchmarks/bench_serve.py [--images 400] [--requests 400]
    python benchmarks/bench_serve.py --rss-requests 5000   # the issue's memory test
    python benchmarks/bench_serve.py --tiny       # a quick check that it runs

Makes N ~500x375 JPEGs (bench_extract's photos), then measures:

- offline: `featx.extract` img/s on them (model load excluded);
- in-process: one image's decode + forward time (the median of 20), the floor of
  a lone client's latency;
- the server (`featx serve --layer L --weights random`, a subprocess on a free
  127.0.0.1 port): img/s with 1, 8, 32 and 64 concurrent clients each sending
  one image per request (`/v1/embeddings`, base64 answers as the openai client
  asks), p50/p95/p99 latency; at 32 clients a bad request is sent beside every
  tenth good one, and errors among the valid ones are counted;
- the server's resident memory (its process and its decode workers) before and
  after --rss-requests more requests.

and the issue's targets: img/s at 32 clients >= 0.7 x offline, p50 with one
client <= 1.5 x the in-process time, RSS growth < 50 MB, 0 errors. Writes the
numbers to --out (benchmarks/results-serve.json).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import httpx  # noqa: E402
import numpy as np  # noqa: E402
from bench_extract import machine, make_photos  # noqa: E402 (configures OpenMP)

from featx import extract  # noqa: E402
from featx.compute.devices import resolve_device  # noqa: E402
from featx.model import load_weights  # noqa: E402
from featx.serve import ServeSpec  # noqa: E402
from featx.serve.service import FeatureService  # noqa: E402

CONCURRENCY = (1, 8, 32, 64)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def offline_rate(folder: Path, layer: str, cache_dir: Path) -> float:
    loaded = load_weights("random", model="alexnet")
    start = time.perf_counter()
    result = extract(folder, layers=[layer], weights=loaded, cache_dir=cache_dir)
    return result.n_images / (time.perf_counter() - start)


def in_process_seconds(files: list[Path], layer: str) -> float:
    """One image's decode and forward pass, as the server does them."""
    service = FeatureService(ServeSpec(layer=layer, weights="random"))
    service.warm_up()
    times = []
    for f in files[:20]:
        data = f.read_bytes()
        start = time.perf_counter()
        service.forward([service.decode(data).pixels])
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` and its children (the decode workers)."""
    total = 0
    pids = [pid]
    while pids:
        p = pids.pop()
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
            for task in Path(f"/proc/{p}/task").iterdir():
                kids = (task / "children").read_text().split()
                pids.extend(int(k) for k in kids)
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total / 1024


async def load(url, bodies, concurrency, count, bad_every=0) -> dict:
    """``count`` one-image requests from ``concurrency`` clients; with
    ``bad_every``, a bad request beside every that many good ones."""
    latencies, errors, bad_answers = [], 0, 0
    sent = 0

    async def client():
        nonlocal sent, errors, bad_answers
        async with httpx.AsyncClient(timeout=120) as http:
            while sent < count:
                i = sent
                sent += 1
                body = {"input": [bodies[i % len(bodies)]], "encoding_format": "base64"}
                start = time.perf_counter()
                got = await http.post(f"{url}/v1/embeddings", json=body)
                latencies.append(time.perf_counter() - start)
                if got.status_code != 200:
                    errors += 1
                if bad_every and i % bad_every == 0:
                    bad = await http.post(f"{url}/v1/embeddings", json={"input": ["@"]})
                    bad_answers += bad.status_code == 422

    start = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    wall = time.perf_counter() - start
    q = np.percentile(latencies, [50, 95, 99]) * 1000
    return {
        "clients": concurrency,
        "requests": count,
        "img_per_s": count / wall,
        "p50_ms": float(q[0]),
        "p95_ms": float(q[1]),
        "p99_ms": float(q[2]),
        "errors": errors,
        "bad_requests_refused": bad_answers,
    }


def start_server(layer: str, pool: str, batch: int) -> tuple:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "featx", "serve", "--layer", layer, "--weights",
         "random", "--port", str(port), "--decode-pool", pool, "-q",
         "--max-batch-size", str(batch), "--max-queue", "1024"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("the server did not start")


def stop_server(proc) -> None:
    proc.terminate()
    proc.wait(timeout=120)


def measure_server(args, bodies, pool: str) -> dict:
    proc, url = start_server(args.layer, pool, args.max_batch_size)
    try:
        asyncio.run(load(url, bodies, 8, 32))  # warm the connections and workers
        levels = []
        for c in args.concurrency:
            count = max(args.requests, 4 * c)
            levels.append(
                asyncio.run(load(url, bodies, c, count, bad_every=10 if c == 32 else 0))
            )
        before = rss_mb(proc.pid)
        memory = asyncio.run(load(url, bodies, 32, args.rss_requests))
        after = rss_mb(proc.pid)
    finally:
        stop_server(proc)
    return {
        "decode_pool": pool,
        "levels": levels,
        "rss": {
            "requests": args.rss_requests,
            "before_mb": before,
            "after_mb": after,
            "growth_mb": after - before,
            "img_per_s": memory["img_per_s"],
            "errors": memory["errors"],
        },
    }


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--requests", type=int, default=400, help="per level")
    parser.add_argument("--rss-requests", type=int, default=5000)
    parser.add_argument("--layer", default="fc7")
    parser.add_argument("--max-batch-size", type=int, default=32)
    parser.add_argument("--pools", default="process,thread")
    parser.add_argument("--tiny", action="store_true", help="a quick run")
    parser.add_argument(
        "--out", type=Path, default=Path("benchmarks/results-serve.json")
    )
    args = parser.parse_args(argv)
    args.concurrency = CONCURRENCY
    if args.tiny:
        args.images, args.requests, args.rss_requests = 32, 32, 100
        args.concurrency = (1, 8)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        files = make_photos(root / "photos", args.images)
        bodies = [base64.b64encode(f.read_bytes()).decode() for f in files]
        offline = offline_rate(root / "photos", args.layer, root / "cache")
        single = in_process_seconds(files, args.layer)
        servers = [measure_server(args, bodies, p) for p in args.pools.split(",")]
    best = max(servers, key=lambda s: s["levels"][-1]["img_per_s"])
    by_clients = {lv["clients"]: lv for lv in best["levels"]}
    targets = {
        "ratio_32_clients_to_offline": by_clients.get(32, {}).get("img_per_s", 0)
        / offline,
        "target_ratio": 0.7,
        "p50_1_client_over_in_process": by_clients[1]["p50_ms"] / 1000 / single,
        "target_p50": 1.5,
        "rss_growth_mb": best["rss"]["growth_mb"],
        "target_rss_mb": 50,
        "errors": sum(lv["errors"] for s in servers for lv in s["levels"])
        + sum(s["rss"]["errors"] for s in servers),
    }
    res = {
        "machine": machine(resolve_device("auto")),
        "layer": args.layer,
        "images": args.images,
        "max_batch_size": args.max_batch_size,
        "offline_extract_img_per_s": offline,
        "in_process_one_image_ms": single * 1000,
        "servers": servers,
        "best_pool": best["decode_pool"],
        "targets": targets,
        "load_average": os.getloadavg(),
    }
    args.out.write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps({k: res[k] for k in ("offline_extract_img_per_s",
                                          "in_process_one_image_ms", "targets")},
                     indent=2))  # fmt: skip
    for s in servers:
        for lv in s["levels"]:
            print(s["decode_pool"], lv)
        print(s["decode_pool"], "rss", s["rss"])
    return res


if __name__ == "__main__":
    main()
