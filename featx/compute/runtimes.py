"""The captured network run by OpenVINO or ONNX Runtime instead of torch.

:func:`runtime_net` exports the torch capture net once
(:func:`featx.compute.exports.onnx_file`), quantizes it for int8
(:mod:`featx.compute.quantize`), and returns an object whose ``net(x, names)``
answers ``{layer: activation}`` as the torch capture net does:
:func:`featx.compute.forward.run_forward` and its callers are unchanged.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from featx.choices import RUNTIMES
from featx.compute.devices import available_cores
from featx.compute.exports import (
    export_folder,
    onnx_file,
    openvino_file,
    require_runtime,
)
from featx.errors import ParameterError
from featx.images import Preprocess
from featx.model import LayerSpec, LoadedWeights

__all__ = ["RuntimeNet", "in_graph_normalization", "runtime_net"]


class RuntimeNet:
    """A network run by OpenVINO or ONNX Runtime, called as the torch capture
    net is: ``net(x, names) -> {name: tensor}`` (every layer is computed; the
    ones in ``names`` are returned), ``net.layers`` maps names to specs.

    ``x`` is the normalised float batch; where ``normalizes`` is true it may
    also be the uint8 batch itself, which the runtime normalises inside the
    graph (:func:`featx.compute.forward.run_forward` then skips
    :meth:`featx.images.Preprocess.normalize`)."""

    #: The input layout it takes (:func:`featx.compute.forward.run_forward`).
    memory_format = torch.contiguous_format

    def __init__(
        self, run, specs: list[LayerSpec], runtime: str, *, normalizes: bool = False
    ) -> None:
        self.run, self.runtime, self.normalizes = run, runtime, normalizes
        self.names = [s.name for s in specs]
        self.layers = {s.name: s for s in specs}

    def __call__(self, x: torch.Tensor, names=None) -> dict[str, torch.Tensor]:
        if x.dtype == torch.uint8 and not self.normalizes:
            raise ValueError("this network takes the normalised float batch")
        arrays = self.run(np.ascontiguousarray(x.detach().cpu().numpy()))
        out = dict(zip(self.names, arrays, strict=True))
        return {n: torch.from_numpy(out[n]) for n in (names or self.names)}

    def eval(self) -> RuntimeNet:
        return self


def in_graph_normalization(preprocess) -> tuple | None:
    """``(mean, std)`` of ``preprocess`` where it normalises as
    :meth:`featx.images.Preprocess.normalize` does (``x / 255``, minus the
    mean, over the std, per RGB channel), which OpenVINO can do inside the
    graph; None for any other (Caffe's BGR mean image)."""
    if preprocess is None or type(preprocess).normalize is not Preprocess.normalize:
        return None
    return tuple(preprocess.mean), tuple(preprocess.std)


def _openvino_run(model_path: Path, threads: int, normalization: tuple | None):
    """OpenVINO's ``run(x) -> [array per output]``, compiled for float input,
    and for uint8 input (normalised in the graph, where OpenVINO folds it into
    the first layer) the first time such a batch comes; the model is read at
    once, right after its files were checked."""
    import openvino as ov

    core = ov.Core()
    config = {"INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": "f32"}
    model = core.read_model(model_path)
    compiled: dict = {}

    def compile_for(kind: str):
        graph = model
        if kind == "uint8":
            from openvino.preprocess import PrePostProcessor

            mean, std = normalization
            ppp = PrePostProcessor(model.clone())
            ppp.input().tensor().set_element_type(ov.Type.u8).set_layout(
                ov.Layout("NCHW")
            )
            ppp.input().model().set_layout(ov.Layout("NCHW"))
            ppp.input().preprocess().convert_element_type(ov.Type.f32).scale(
                255.0
            ).mean(list(mean)).scale(list(std))
            graph = ppp.build()
        net = core.compile_model(graph, "CPU", config)
        return net.create_infer_request(), net.outputs

    def run(x: np.ndarray) -> list[np.ndarray]:
        kind = "uint8" if x.dtype == np.uint8 else "float"
        if kind not in compiled:
            compiled[kind] = compile_for(kind)
        request, outputs = compiled[kind]
        request.infer({0: x})
        return [request.get_tensor(o).data.copy() for o in outputs]

    return run


def _onnxruntime_run(model_path: Path, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    # idle threads sleep, as torch's OpenMP threads do (OMP_WAIT_POLICY=PASSIVE):
    # the decode workers share the cores
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(
        str(model_path), options, providers=["CPUExecutionProvider"]
    )
    names = [o.name for o in session.get_outputs()]

    def run(x: np.ndarray) -> list[np.ndarray]:
        return session.run(names, {"input": x})

    return run


def runtime_net(
    loaded: LoadedWeights,
    specs: list[LayerSpec],
    *,
    runtime: str,
    precision: str = "fp32",
    hw=(224, 224),
    calibration: dict | None = None,
    preprocess=None,
) -> RuntimeNet:
    """``specs`` of ``loaded``'s network, run by ``runtime`` on the CPU with the
    threads torch uses: float32 from the ONNX export, or ``int8`` quantized on
    ``calibration``'s images (:func:`featx.compute.quantize.int8_file`, which
    decodes them with ``preprocess``)."""
    if runtime not in RUNTIMES[1:]:
        raise ParameterError(
            f"`runtime` must be one of {', '.join(map(repr, RUNTIMES[1:]))} here. "
            f"Got {runtime!r}."
        )
    require_runtime(runtime)
    hw = tuple(hw)
    if precision == "int8":
        from featx.compute.quantize import int8_file

        path = int8_file(
            export_folder(loaded, specs, hw), runtime, calibration, preprocess,
            source=lambda: onnx_file(loaded, specs, hw),
        )  # fmt: skip
    elif runtime == "openvino":
        path = openvino_file(loaded, specs, hw)
    else:
        path = onnx_file(loaded, specs, hw)
    threads = available_cores()
    if runtime == "openvino":
        normalization = in_graph_normalization(preprocess)
        run = _openvino_run(path, threads, normalization)
        return RuntimeNet(run, specs, runtime, normalizes=normalization is not None)
    return RuntimeNet(_onnxruntime_run(path, threads), specs, runtime)
