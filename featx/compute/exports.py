"""The captured network exported to ONNX for the other runtimes, and the files
they keep.

The torch capture net (float32, eval, CPU) is exported once per (model,
weights sha256, captured layers, input size) into ``$TORCH_HOME/featx-runtimes/``
(beside torch's hub cache), written atomically with a sidecar digest, so that a
damaged file is rebuilt rather than trusted. The int8 models of
:mod:`featx.compute.quantize` are kept beside it the same way.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
import time
from pathlib import Path

import torch

from featx.digest import file_sha256
from featx.errors import FeatxError
from featx.model import LayerSpec, LoadedWeights, capture_net

__all__ = [
    "EXPORTS",
    "EXPORT_VERSION",
    "INSTALL_HINT",
    "RuntimeMissingError",
    "export_folder",
    "onnx_file",
    "openvino_file",
    "publish",
    "require_packages",
    "require_runtime",
    "runtimes_dir",
    "temporary",
    "trusted",
]

INSTALL_HINT = (
    "pip install -e '.[cpu-fast]' (or pip install openvino nncf onnxruntime onnx)"
)
#: Bumped when the exported graph changes meaning: older exports are not reused.
EXPORT_VERSION = 1
#: The exports this process made, by kind (``onnx``, ``int8-openvino``, ...):
#: tests count them to see an export reused.
EXPORTS: dict[str, int] = {}
#: The package each runtime needs (and, for int8, what quantizes for it).
_PACKAGES = {
    "openvino": ("openvino",),
    "onnxruntime": ("onnxruntime",),
    "onnx": ("onnx",),
    "int8-openvino": ("openvino", "nncf"),
    "int8-onnxruntime": ("onnxruntime", "onnx"),
}


class RuntimeMissingError(FeatxError, RuntimeError):
    """A runtime (or the package that exports or quantizes for it) is not
    installed."""


def require_runtime(what: str) -> None:
    """Refuse at once, in one line naming the extra, when the packages ``what``
    (a runtime, ``onnx``, or ``int8-<runtime>``) needs are missing."""
    import importlib.util

    for package in _PACKAGES[what]:
        if importlib.util.find_spec(package) is None:
            raise RuntimeMissingError(
                f"{what} needs the Python package {package!r}, which is not "
                f"installed: {INSTALL_HINT}"
            )


def require_packages(runtime: str, precision: str | None) -> None:
    """Refuse at once what a run with ``runtime`` in ``precision`` cannot do
    here: the runtime's package, and what quantizes for it (int8) or exports
    to ONNX (fp32)."""
    require_runtime(runtime)
    require_runtime(f"int8-{runtime}" if precision == "int8" else "onnx")


def runtimes_dir() -> Path:
    """Where exported and quantized networks are kept: ``featx-runtimes`` beside
    torch's hub cache (``$TORCH_HOME/featx-runtimes``)."""
    return Path(torch.hub.get_dir()).parent / "featx-runtimes"


def export_folder(loaded: LoadedWeights, specs: list[LayerSpec], hw) -> Path:
    """The folder of one exported network: named by a digest of the model, its
    weights (sha256), the captured layers and the input's height and width."""
    parts = {
        "model": loaded.arch,
        "weights_sha256": loaded.sha256,
        "layers": [s.module_path for s in specs],
        "names": [s.name for s in specs],
        "input": list(hw),
        "version": EXPORT_VERSION,
    }
    key = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()
    tag = "".join(c if c.isalnum() or c in "-_." else "-" for c in loaded.arch)
    return runtimes_dir() / f"{tag}-{key[:16]}"


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


#: A file modified less than this long before its digest was recorded is
#: hashed again on its next use (as git treats "racily clean" files): a write
#: in the same tick of the file system's clock leaves the modification time
#: unchanged.
RACY_NS = 2_000_000_000


def _stat(path: Path) -> dict:
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _unchanged(entry: dict, stat: dict, recorded_ns: int) -> bool:
    return (
        entry.get("size") == stat["size"]
        and entry.get("mtime_ns") == stat["mtime_ns"]
        and recorded_ns - stat["mtime_ns"] > RACY_NS
    )


def trusted(path: Path, *parts: Path) -> bool:
    """Whether ``path`` (and the files ``parts`` it comes with) are there and
    match what their sidecar recorded when they were written.

    A file whose size and modification time are those recorded (and were not
    recorded in the same moment as the write) is trusted without reading it;
    any other is hashed, and trusted only when its sha256 is the recorded one.
    Then the sidecar records its size and time again, so that a copied or
    touched file is read once, not on every run. A file rewritten in place
    keeping its size and modification time is not noticed; every other
    damage is, and the export is made again."""
    files = (path, *parts)
    try:
        recorded = json.loads(_sidecar(path).read_text())
        if "files" in recorded:
            entries, at = recorded["files"], int(recorded["recorded_ns"])
        else:  # the first sidecars held only each file's digest
            entries, at = {n: {"sha256": v} for n, v in recorded.items()}, 0
        if set(entries) != {p.name for p in files}:
            return False
        stats = {p.name: _stat(p) for p in files}
        if all(_unchanged(entries[n], st, at) for n, st in stats.items()):
            return True
        if any(entries[p.name].get("sha256") != file_sha256(p) for p in files):
            return False
    except (OSError, ValueError, AttributeError, TypeError, KeyError):
        return False
    # verified: recorded again where the folder can be written (a read-only
    # TORCH_HOME hashes it again next time; it is trusted all the same)
    with contextlib.suppress(OSError):
        _record(path, {n: {**entries[n], **stats[n]} for n in stats})
    return True


def _record(path: Path, entries: dict) -> None:
    """Write ``path``'s sidecar (atomically): each file's digest, size and
    modification time, and when they were recorded."""
    sidecar = _sidecar(path)
    tmp = sidecar.with_name(
        f".{sidecar.name}.{os.getpid()}-{threading.get_ident()}.tmp"
    )
    tmp.write_text(json.dumps({"files": entries, "recorded_ns": time.time_ns()}))
    tmp.replace(sidecar)


def publish(written: dict[Path, Path]) -> None:
    """Move each temporary file of ``written`` (temporary → final) into place
    with ``os.replace``, then write the sidecar of the first final file with
    every file's digest, size and time: a crash leaves no sidecar, or an old
    one that no longer matches, and the export is made again."""
    digests = {final.name: file_sha256(tmp) for tmp, final in written.items()}
    for tmp, final in written.items():
        tmp.replace(final)
    finals = list(written.values())
    _record(
        finals[0], {f.name: {"sha256": digests[f.name], **_stat(f)} for f in finals}
    )


def temporary(final: Path) -> Path:
    """A temporary name beside ``final`` that no other process writes."""
    return final.with_name(f".{final.stem}.{os.getpid()}.tmp{final.suffix}")


class _Outputs(torch.nn.Module):
    """The capture net as ONNX sees it: one input, one output per layer."""

    def __init__(self, net: torch.nn.Module, names: list[str]) -> None:
        super().__init__()
        self.net, self.names = net, names

    def forward(self, x):
        out = self.net(x, self.names)
        return tuple(out[n] for n in self.names)


def onnx_file(loaded: LoadedWeights, specs: list[LayerSpec], hw) -> Path:
    """The float32 ONNX export of ``specs`` of ``loaded``'s network, made once
    (and again when the file is damaged): input ``input`` of shape
    (batch, 3, *hw), one output per layer, named after it; the batch axis is
    dynamic."""
    folder = export_folder(loaded, specs, hw)
    path = folder / "fp32.onnx"
    if trusted(path):
        return path
    require_runtime("onnx")
    folder.mkdir(parents=True, exist_ok=True)
    names = [s.name for s in specs]
    net = _Outputs(capture_net(loaded, specs), names).eval()
    x = torch.zeros(2, 3, *hw)
    tmp = temporary(path)
    axes = {"input": {0: "batch"}, **{n: {0: "batch"} for n in names}}
    import warnings

    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")  # torch's notes on the legacy exporter
        torch.onnx.export(
            net, (x,), str(tmp), input_names=["input"], output_names=names,
            dynamic_axes=axes, opset_version=17, dynamo=False,
        )  # fmt: skip
    publish({tmp: path})
    EXPORTS["onnx"] = EXPORTS.get("onnx", 0) + 1
    return path


def openvino_file(loaded: LoadedWeights, specs: list[LayerSpec], hw) -> Path:
    """The float32 export of :func:`onnx_file` in OpenVINO's own format (an
    ``.xml`` graph and its ``.bin`` weights), made once beside it: OpenVINO
    reads it in milliseconds where parsing the ONNX file takes a second or
    more for AlexNet (228 MB). The weights stay float32."""
    folder = export_folder(loaded, specs, hw)
    final, weights = folder / "fp32-openvino.xml", folder / "fp32-openvino.bin"
    if trusted(final, weights):
        return final
    source = onnx_file(loaded, specs, hw)
    require_runtime("openvino")
    import openvino as ov

    tmp = temporary(final)
    ov.save_model(ov.Core().read_model(source), tmp, compress_to_fp16=False)
    publish({tmp: final, tmp.with_suffix(".bin"): weights})
    EXPORTS["fp32-openvino"] = EXPORTS.get("fp32-openvino", 0) + 1
    return final
