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

#: Run in a fresh interpreter: import featx.cli, run each command, and say after
#: which step torch appeared in sys.modules, if it did.
SCRIPT = """
import json, sys
SERVING = %r
def web():
    return sorted(m for m in SERVING if m in sys.modules)
from featx.cli import main
steps = [("import featx.cli", "torch" in sys.modules, web())]
for args in json.loads(sys.argv[1]):
    main(args, standalone_mode=False)
    steps.append((args[0], "torch" in sys.modules, web()))
print("STEPS " + json.dumps(steps))
"""

#: What `featx serve` alone imports (the serve extra, and Ray Serve): no other
#: command, nor `featx --help`, may load them.
SERVING = (
    "fastapi", "uvicorn", "starlette", "pydantic", "prometheus_client",
    "multipart", "python_multipart", "httpx", "ray.serve",
)  # fmt: skip
SCRIPT = SCRIPT % (SERVING,)

@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A folder with a cache dir holding the legacy Train and Test caches."""
    (tmp_path / "cache").mkdir()
    for name in CACHES:
        shutil.copy2(LEGACY / name, tmp_path / "cache" / name)
    return tmp_path


@pytest.mark.slow
@pytest.mark.parametrize(
    "commands",
    [
        ("info",),
        ("report",),
        ("fit",),
        ("info", "fit", "report"),
    ],
    ids="+".join,
)
def test_cache_reading_commands_load_no_torch(workdir, commands):
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
    steps = json.loads(line[len("STEPS ") :])
    assert [s for s, _, _ in steps] == ["import featx.cli", *commands]
    loaded = [step for step, torch_loaded, _ in steps if torch_loaded]
    assert not loaded, f"torch is in sys.modules after: {', '.join(loaded)}"
    web = {step: names for step, _, names in steps if names}
    assert not web, f"serving libraries imported: {web}"
    if "report" in commands:
        assert (workdir / "report" / "results.json").is_file()
    if "fit" in commands:
        assert list((workdir / "models").glob("Train-random-*-fc7-logreg.skops"))


def test_the_torch_free_vocabularies_import_neither_torch_nor_sklearn():
    # what the command line checks names against before it loads the library
    code = (
        "import sys, featx.model_names, featx.choices, featx.cli.checks; "
        "print(sorted(m for m in ('torch', 'torchvision', 'sklearn') "
        "if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize("args", [["--help"], ["serve", "--help"], ["info", "--help"]])
def test_help_loads_no_serving_library(tmp_path, args):
    """`featx --help`, and the help of `serve` itself, import neither torch nor
    the serve extra: only running `featx serve` does."""
    script = SCRIPT.replace(
        "main(args, standalone_mode=False)",
        "main(args, standalone_mode=False, prog_name='featx')",
    )
    done = subprocess.run(
        [sys.executable, "-c", script, json.dumps([args])],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    line = next(x for x in done.stdout.splitlines() if x.startswith("STEPS "))
    steps = json.loads(line[len("STEPS ") :])
    assert [(torch_loaded, names) for _, torch_loaded, names in steps] == [
        (False, []),
        (False, []),
    ]
