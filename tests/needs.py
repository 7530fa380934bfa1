"""Tests that need an optional package: skipped where it is not installed,
except in CI (``CI`` set), where a missing package must fail the run."""

from __future__ import annotations

import importlib.util
import os

import pytest

__all__ = ["need"]


def need(*packages: str) -> None:
    """Skip the calling test unless every one of ``packages`` is installed; in
    CI, fail instead, so that a broken install of an extra is never a quiet
    skip."""
    missing = [p for p in packages if importlib.util.find_spec(p) is None]
    if not missing:
        return
    if os.environ.get("CI"):
        pytest.fail(f"CI is set and {', '.join(missing)} is not installed")
    for package in missing:
        pytest.importorskip(package)
