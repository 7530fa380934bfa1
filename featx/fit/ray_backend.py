"""fit's ``engine="ray"``: scikit-learn's joblib work (CV folds, the search's
candidates) runs on a Ray cluster. No torch is imported."""

from __future__ import annotations

from featx.compute.cluster import connect

__all__ = ["joblib_backend"]


def joblib_backend(address: str | None):
    """A context in which joblib (scikit-learn's n_jobs) runs on the cluster."""
    import joblib

    connect(address)
    from ray.util.joblib import register_ray

    register_ray()
    return joblib.parallel_config(backend="ray")
