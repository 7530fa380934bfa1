"""int8 networks for the CPU runtimes, calibrated on the user's own images.

The calibration set is sampled from the folder being extracted, with a fixed
seed: the images whose ``sha256(seed:path)`` rank lowest, so that adding a few
images to a large folder seldom changes it. Its description (how many images,
the seed, the folder and a hash of the files' contents) is part of the cache's
identity. OpenVINO models are quantized by NNCF (``nncf.quantize``); ONNX
Runtime's by ``onnxruntime.quantization.quantize_static`` (QDQ, per channel).
Each int8 model is kept beside its float32 export, once per calibration set.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
from pathlib import Path

import numpy as np

from featx.compute.exports import (
    EXPORTS,
    publish,
    require_runtime,
    temporary,
    trusted,
)
from featx.digest import file_sha256
from featx.errors import DataError, ParameterError, param

__all__ = [
    "CALIBRATION_IMAGES",
    "CALIBRATION_SEED",
    "RECIPE",
    "calibration_arrays",
    "calibration_files",
    "int8_file",
    "sample_calibration",
]

#: Images the int8 quantization is calibrated on, by default.
CALIBRATION_IMAGES = 300
#: The seed of the calibration sample.
CALIBRATION_SEED = 0
#: Bumped when the quantization recipe changes: older int8 models are not reused.
RECIPE = 2


def _ranked(paths: list[str], n: int, seed: int) -> list[str]:
    def rank(p: str) -> str:
        return hashlib.sha256(f"{seed}:{p}".encode()).hexdigest()

    return sorted(sorted(paths, key=rank)[:n])


def _digest(root: Path, chosen: list[str], seed: int) -> str:
    digest = hashlib.sha256(json.dumps([seed, chosen]).encode())
    for path in chosen:
        digest.update(file_sha256(root / path).encode())
    return digest.hexdigest()[:16]


def sample_calibration(
    root: Path, paths: list[str], n: int = CALIBRATION_IMAGES, *, seed: int = 0
) -> tuple[dict, list[Path]]:
    """The calibration set of ``n`` images among ``paths`` (relative to
    ``root``): its description, as the cache's identity records it, and its
    files."""
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ParameterError(f"`calibration` must be an integer >= 1. Got {n!r}.")
    chosen = _ranked(list(paths), n, seed)
    if not chosen:
        raise DataError(f"no images in {root} to calibrate the int8 network on")
    described = {
        "images": len(chosen),
        "seed": seed,
        "root": str(root),
        "sha256": _digest(root, chosen, seed),
    }
    return described, [root / p for p in chosen]


def calibration_files(described: dict) -> list[Path]:
    """The files of a calibration set a cache (or a model) records, found again
    in its folder; a DataError when they changed or are gone."""
    from featx.images import FolderWalker

    root = Path(described["root"])
    if not root.is_dir():
        raise DataError(
            f"the int8 network was calibrated on images in {root}, which is gone; "
            f"extract again with {param('precision', 'int8')}"
        )
    found = [str(f.relative_to(root)) for f in FolderWalker(root).files(root)]
    chosen = _ranked(found, described["images"], described["seed"])
    if _digest(root, chosen, described["seed"]) != described["sha256"]:
        raise DataError(
            f"the calibration images in {root} changed since the int8 network was "
            f"made; extract again with {param('precision', 'int8')}"
        )
    return [root / p for p in chosen]


def calibration_arrays(files: list[Path], preprocess) -> list[np.ndarray]:
    """Each calibration image decoded and normalised as extraction does: a
    (1, 3, H, W) float32 array (images that do not decode are left out)."""
    from featx.compute.device_decode import pil_crop

    arrays = []
    for path in files:
        crop, _ = pil_crop(path, preprocess, None)
        if crop is not None:
            arrays.append(preprocess.normalize(crop[None]).numpy())
    if not arrays:
        raise DataError("none of the calibration images could be decoded")
    return arrays


def int8_file(
    folder: Path, runtime: str, described: dict, preprocess, *, source
) -> Path:
    """The int8 model for ``runtime``, kept in the export folder ``folder``,
    calibrated on the set ``described`` (its files: ``preprocess``'s
    ``calibration_files`` when extraction sampled them, else found again);
    made once from the float32 ONNX export ``source()`` (asked for only then),
    and again when a file is damaged."""
    require_runtime(f"int8-{runtime}")
    stem = f"int8-{runtime}-r{RECIPE}-{described['sha256']}"
    if runtime == "openvino":
        final, parts = folder / f"{stem}.xml", [folder / f"{stem}.bin"]
    else:
        final, parts = folder / f"{stem}.onnx", []
    if trusted(final, *parts):
        return final
    files = getattr(preprocess, "calibration_files", None) or calibration_files(
        described
    )
    arrays = calibration_arrays(files, preprocess)
    onnx_path = source()
    tmp = temporary(final)
    with _quiet():
        if runtime == "openvino":
            _quantize_openvino(onnx_path, arrays, tmp)
        else:
            _quantize_onnxruntime(onnx_path, arrays, tmp)
    if runtime == "openvino":
        publish({tmp: final, tmp.with_suffix(".bin"): parts[0]})
    else:
        publish({tmp: final})
    EXPORTS[f"int8-{runtime}"] = EXPORTS.get(f"int8-{runtime}", 0) + 1
    return final


@contextlib.contextmanager
def _quiet():
    """The library never prints: NNCF's progress bars and the quantizers' log
    lines are swallowed (warnings at ERROR level still pass)."""
    names = ("", "nncf", "torch.utils.cpp_extension")
    loggers = [logging.getLogger(name) for name in names]
    levels = [log.level for log in loggers]
    for log in loggers:
        log.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        for log, level in zip(loggers, levels, strict=True):
            log.setLevel(level)


def _quantize_openvino(onnx_path: Path, arrays: list[np.ndarray], out: Path) -> None:
    import nncf
    import openvino as ov
    from nncf.quantization.advanced_parameters import (
        AdvancedQuantizationParameters,
    )
    from nncf.quantization.range_estimator import RangeEstimatorParametersSet

    # activation ranges from the calibration set's min and max, as ONNX Runtime's
    # MinMax calibration does: on AlexNet pool5 / fc7 (random weights, 256 photos)
    # 1.2% / 1.0% from fp32 against 3.5% / 2.8% with NNCF's default, as fast
    minmax = AdvancedQuantizationParameters(
        activations_range_estimator_params=RangeEstimatorParametersSet.MINMAX
    )
    model = ov.Core().read_model(onnx_path)
    quantized = nncf.quantize(
        model, nncf.Dataset(arrays), subset_size=len(arrays),
        advanced_parameters=minmax,
    )  # fmt: skip
    ov.save_model(quantized, out, compress_to_fp16=False)


def _quantize_onnxruntime(onnx_path: Path, arrays: list[np.ndarray], out: Path):
    from onnxruntime import quantization as q

    class Reader(q.CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter(arrays)

        def get_next(self):
            x = next(self.items, None)
            return None if x is None else {"input": x}

    q.quantize_static(
        str(onnx_path), str(out), Reader(),
        quant_format=q.QuantFormat.QDQ, per_channel=True,
        activation_type=q.QuantType.QInt8, weight_type=q.QuantType.QInt8,
    )  # fmt: skip
