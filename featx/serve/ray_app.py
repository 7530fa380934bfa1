"""``featx serve --engine ray``: the same application as a Ray Serve deployment.

Each of ``--replicas`` replicas (a Ray actor, half a CPU each, so that Ray's
proxy and controller keep a share of a small machine) loads the network and
builds the application of :func:`featx.serve.app.create_app` itself, with
Ray Serve's ``@serve.batch`` gathering its batches instead of featx's
:class:`~featx.serve.batching.Batcher`; Ray Serve's proxy listens on
``--host``/``--port`` and spreads requests over the replicas. Routes, errors,
the token and the limits are the local server's.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import signal
import threading

from ray import serve

from featx.serve.batching import Overloaded
from featx.serve.spec import ServeSpec

__all__ = ["REPLICA_CPUS", "ServeBatcher", "build_app", "deployment", "serve_on_ray"]

#: The CPUs each replica asks Ray for (NOTES: whole CPUs starve a 2-core machine).
REPLICA_CPUS = 0.5


class ServeBatcher:
    """:class:`featx.serve.batching.Batcher`'s interface on ``@serve.batch``."""

    def __init__(
        self, run_batch, *, max_batch_size, max_wait_ms, max_queue, on_batch=None
    ) -> None:
        self.run_batch, self.max_queue, self.on_batch = run_batch, max_queue, on_batch
        self.max_batch_size = max_batch_size
        self.waiting = self.incoming = 0
        self.executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="featx-forward"
        )
        self._batch.set_max_batch_size(max_batch_size)
        self._batch.set_batch_wait_timeout_s(max_wait_ms / 1000)

    def start(self) -> None:
        pass

    async def stop(self) -> None:
        self.executor.shutdown(wait=True)

    def expect(self, count: int) -> None:
        self.incoming += count

    def check_room(self, count: int) -> None:
        if self.waiting + self.incoming + count > self.max_queue:
            raise Overloaded(self.waiting + self.incoming, 1)

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.005)
    async def _batch(self, crops: list) -> list:
        if self.on_batch is not None:
            self.on_batch(len(crops))
        loop = asyncio.get_running_loop()
        values = await loop.run_in_executor(self.executor, self.run_batch, crops)
        return [{k: v[i] for k, v in values.items()} for i in range(len(crops))]

    async def submit(self, crops: list) -> list:
        self.check_room(len(crops))
        self.waiting += len(crops)
        try:
            return list(await asyncio.gather(*(self._batch(c) for c in crops)))
        finally:
            self.waiting -= len(crops)


def build_app(spec: ServeSpec):
    """The application, built on a replica: the network loads there."""
    from featx.serve.app import create_app
    from featx.serve.service import FeatureService

    return create_app(FeatureService(spec), spec, batcher=ServeBatcher)


def deployment(spec: ServeSpec):
    """The Ray Serve application of ``spec``: ``--replicas`` replicas."""
    ingress = serve.ingress(lambda: build_app(spec))

    @serve.deployment(
        name="featx",
        num_replicas=spec.replicas,
        ray_actor_options={"num_cpus": REPLICA_CPUS},
        max_ongoing_requests=max(spec.max_queue, spec.max_batch_size),
        graceful_shutdown_timeout_s=spec.timeout + 5,
    )
    @ingress
    class FeatxServe:
        pass

    return FeatxServe.bind()


def serve_on_ray(service, spec: ServeSpec, *, log_level: str = "info") -> None:
    """Run ``spec`` on Ray Serve (a local Ray unless RAY_ADDRESS names one)
    until SIGTERM or SIGINT, then drain and shut Serve down."""
    import ray

    del service  # each replica loads its own
    stop = threading.Event()
    handled = (signal.SIGINT, signal.SIGTERM)
    previous = {}
    try:
        ray.init(include_dashboard=False, logging_level=log_level.upper())
        # after ray.init, which installs its own SIGTERM handler (it aborts)
        previous = {s: signal.signal(s, lambda *_: stop.set()) for s in handled}
        serve.start(http_options={"host": spec.host, "port": spec.port})
        serve.run(deployment(spec), name="featx", route_prefix="/", blocking=False)
        stop.wait()
    finally:
        with contextlib.suppress(Exception):
            serve.shutdown()  # the replicas answer what they hold first
        ray.shutdown()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
