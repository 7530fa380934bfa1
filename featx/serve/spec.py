"""What ``featx serve`` is asked to serve and how: plain data, no web library."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

from featx.choices import (
    DECODE_MODES,
    DECODE_POOLS,
    DEFAULT_DECODE,
    ENGINES,
    PRECISIONS,
    RUNTIMES,
    SPATIAL,
)
from featx.errors import ParameterError, check_choice, check_int

__all__ = ["ServeSpec", "is_loopback", "DECODE_POOLS"]


@dataclass
class ServeSpec:
    """One server: a model file (predictions and its layer's features) or a
    network and layer (features alone), and the limits it keeps.

    Exactly one of ``model_file`` and ``layer`` is given.
    """

    model_file: Path | None = None
    model: str = "alexnet"
    layer: str | None = None
    spatial: str = "none"
    weights: str | None = None
    seed: int = 0
    device: str = "auto"
    decode: str = DEFAULT_DECODE
    precision: str | None = None
    #: What runs the network: None is torch with ``layer``, the model's own
    #: runtime with ``model_file``.
    runtime: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    token: str | None = None
    #: Images per forward pass, and how long the first image of a batch waits
    #: for others.
    max_batch_size: int = 32
    max_wait_ms: float = 5.0
    #: Images waiting (to be decoded, or for a forward pass) beyond which
    #: requests get 503.
    max_queue: int = 256
    #: Seconds a request may wait for its answer before it gets 504.
    timeout: float = 30.0
    max_request_mb: float = 16.0
    max_images: int = 64
    decode_workers: int | None = None
    #: threads measured faster than processes on 2 cores (bench_serve.py)
    decode_pool: str = "thread"
    engine: str = "local"
    replicas: int = 1

    def check(self) -> ServeSpec:
        """Refuse, in scikit-learn's words, settings that cannot serve."""
        if (self.model_file is None) == (self.layer is None):
            raise ParameterError(
                "give either `model_file` (predictions and features) or `layer` "
                "(features alone). Got "
                + ("both." if self.model_file is not None else "neither.")
            )
        check_choice("spatial", self.spatial, SPATIAL)
        check_choice("decode", self.decode, DECODE_MODES)
        if self.layer is not None and self.precision == "int8":
            raise ParameterError(
                "`precision` 'int8' needs calibration images, which a server "
                "with `layer` has none of: extract a folder with "
                "`precision='int8'`, fit on it, and serve the model file"
            )
        if self.precision is not None:
            check_choice("precision", self.precision, PRECISIONS)
        if self.runtime is not None:
            check_choice("runtime", self.runtime, RUNTIMES)
        check_choice("decode_pool", self.decode_pool, DECODE_POOLS)
        check_choice("engine", self.engine, ENGINES)
        for name in ("max_batch_size", "max_queue", "max_images", "replicas"):
            check_int(name, getattr(self, name), low=1)
        check_int("port", self.port, low=0)
        if self.decode_workers is not None:
            check_int("decode_workers", self.decode_workers, low=1)
        for name in ("max_wait_ms", "timeout", "max_request_mb"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or value < 0:
                raise ParameterError(f"`{name}` must be a number >= 0. Got {value!r}.")
        return self

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def max_request_bytes(self) -> int:
        return int(self.max_request_mb * 1024 * 1024)


def is_loopback(host: str) -> bool:
    """Whether ``host`` is reachable from this machine only (127.0.0.0/8, ::1,
    localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
