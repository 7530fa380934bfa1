"""The Prometheus metrics of one server, in a registry of its own (two apps in
one process, as in the tests, never share counters)."""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

__all__ = ["BATCH_BUCKETS", "LATENCY_BUCKETS", "Metrics"]

BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class Metrics:
    """Requests by endpoint and status, images, batch sizes, queue depth,
    latency and decode failures."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.requests = Counter(
            "featx_requests", "Requests answered", ["endpoint", "status"], registry=r
        )
        self.latency = Histogram(
            "featx_request_latency_seconds", "Time to answer a request",
            ["endpoint"], buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.images = Counter(
            "featx_images", "Images received", ["endpoint"], registry=r
        )
        self.decode_failures = Counter(
            "featx_decode_failures", "Images that could not be read", ["type"],
            registry=r,
        )  # fmt: skip
        self.batch_size = Histogram(
            "featx_batch_size", "Images per forward pass", buckets=BATCH_BUCKETS,
            registry=r,
        )  # fmt: skip
        self.queue_depth = Gauge(
            "featx_queue_depth", "Images waiting for a forward pass", registry=r
        )
        self.ready = Gauge("featx_ready", "1 once the warm-up batch ran", registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)
