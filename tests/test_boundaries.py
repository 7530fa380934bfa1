"""The cache-reading path loads no torch: `featx info`, `fit` and `report` start
fast because nothing they import pulls torch in."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

LEGACY = Path(__file__).parent / "data" / "legacy" / "cache"
CACHES = ("Train-random-12e3d9d749.h5", "Test-random-f9a3db8164.h5")

COMMANDS = {
    "info": ["info", "--cache-dir", "cache"],
    "fit": [
        "fit", "-q", "--cache-dir", "cache", "--clf", "logreg", "--layer", "fc7",
        "--cv", "3", "--jobs", "1",
    ],
    "report": [
        "report", "-q", "--cache-dir", "cache", "--clfs", "logreg", "--layers",
        "fc7", "--cv", "3", "--repeats", "1", "--jobs", "1", "--no-tune",
        "--out", "report",
    ],
}  # fmt: skip

#: What `featx serve` alone imports (the serve extra, and Ray Serve): no other
#: command, nor `featx --help`, may load them.
SERVING = (
    "fastapi", "uvicorn", "starlette", "pydantic", "prometheus_client",
    "multipart", "python_multipart", "httpx", "ray.serve",
)  # fmt: skip
HEAVY = ("torch", "torchvision", "sklearn")
#: The library's torch-free modules: what fit, report, info and the model file
#: need (the import structure itself is tests/test_structure.py's).
TORCH_FREE = (
    "featx.cache", "featx.cache.choice", "featx.cache.export", "featx.cache.info",
    "featx.cache.read", "featx.cache.write", "featx.fit", "featx.fit.ray_backend",
    "featx.compute.cluster", "featx.report", "featx.predict.modelfile",
    "featx.records",
)  # fmt: skip

#: Run in a fresh interpreter, one step after another, and after each step say
#: which of torch, torchvision, sklearn and the serving libraries are loaded.
SCRIPT = """
import importlib, json, sys
SERVING, HEAVY, TORCH_FREE = %r, %r, %r
def loaded():
    return sorted(m for m in (*HEAVY, *SERVING) if m in sys.modules)
steps = []
import featx.model_names, featx.choices, featx.cli.checks
steps.append(("vocabularies", loaded()))
from featx.cli import main
steps.append(("import featx.cli", loaded()))
for args in (["--help"], ["serve", "--help"], ["info", "--help"]):
    main(args, standalone_mode=False, prog_name="featx")
    steps.append((" ".join(args), loaded()))
for name in TORCH_FREE:
    importlib.import_module(name)
from featx.report import ReportSpec
ReportSpec(cache="c.h5").command()
steps.append(("the torch-free library", loaded()))
for args in json.loads(sys.argv[1]):
    main(args, standalone_mode=False)
    steps.append((args[0], loaded()))
print("STEPS " + json.dumps(steps))
"""
SCRIPT = SCRIPT % (SERVING, HEAVY, TORCH_FREE)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A folder with a cache dir holding the legacy Train and Test caches."""
    (tmp_path / "cache").mkdir()
    for name in CACHES:
        shutil.copy2(LEGACY / name, tmp_path / "cache" / name)
    return tmp_path


def test_the_torch_free_boundary(workdir):
    """The one check of what stays torch-free (CONTRIBUTING.md): the names the
    CLI checks against and the CLI itself load neither torch nor scikit-learn;
    `--help` (serve's too) no serving library; the library's cache-reading half
    no torch; and `featx info`, `fit` and `report`, one after another, no torch
    and no serving library."""
    commands = ("info", "fit", "report")
    argv = json.dumps([COMMANDS[c] for c in commands])
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, argv],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    line = next(x for x in done.stdout.splitlines() if x.startswith("STEPS "))
    steps = dict(json.loads(line[len("STEPS ") :]))
    front = (
        "vocabularies",
        "import featx.cli",
        "--help",
        "serve --help",
        "info --help",
    )
    assert {step: steps[step] for step in front} == {step: [] for step in front}
    for step in ("the torch-free library", *commands):
        assert steps[step] == ["sklearn"], f"after {step}: {steps[step]}"
    assert (workdir / "report" / "results.json").is_file()
    assert list((workdir / "models").glob("Train-random-*-fc7-logreg.skops"))
