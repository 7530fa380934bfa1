"""Joining a Ray cluster, for the Ray engine of extraction
(:mod:`featx.compute.ray_engine`) and fit's joblib backend
(:mod:`featx.fit.ray_backend`). Torch-free: ``fit --engine ray`` imports no torch.
"""

from __future__ import annotations

from featx.errors import FeatxError, param

__all__ = ["INSTALL_HINT", "EngineError", "connect", "require_ray"]

INSTALL_HINT = "pip install -e '.[ray]' (or pip install 'ray[data]')"


class EngineError(FeatxError, RuntimeError):
    """The Ray engine cannot run (Ray missing, cluster unreachable, ...)."""


def require_ray():
    try:
        import ray
    except ImportError as exc:
        raise EngineError(
            f"{param('engine', 'ray')} needs Ray, which is not installed: "
            f"{INSTALL_HINT}"
        ) from exc
    return ray


def connect(address: str | None):
    """Join the cluster at ``address`` (``auto``, ``ray://host:port``) or start a
    local one; an already initialised Ray is used as it is."""
    ray = require_ray()
    if not ray.is_initialized():
        try:
            ray.init(address=address, log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise EngineError(
                f"cannot reach a Ray cluster at {address}: {exc}"
            ) from exc
    return ray
