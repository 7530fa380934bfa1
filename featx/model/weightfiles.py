"""The weight files of the original AlexNet, converted to caffe-alexnet's state dict.

Three files circulate, each a port of BVLC's weights (or of a Theano retraining):

- ``bvlc_alexnet.npy``, the TensorFlow port's: a pickled dict of layer name →
  ``[W, b]``; kernels H × W × in × out with grouped layers at half input depth,
  fully connected weights in × out, fc6's rows in TensorFlow's H × W × C order.
  It is read with an unpickler that admits numpy arrays and nothing else, so a
  malicious file cannot run code.
- ``alexnet_weights.h5``, convnets-keras' (Keras 1, Theano, channels first):
  layers ``conv_1``, ``conv_2_1``/``conv_2_2`` (the two groups as two layers),
  ``conv_3``, ``conv_4_*``, ``conv_5_*``, ``dense_1..3``; kernels out × in × H × W
  stored for Theano's true convolution, so flipped in H and W against Caffe's
  (and torch's) cross-correlation; conv1 takes RGB where Caffe's takes BGR;
  dense weights in × out over a C × H × W flatten.
- ``bvlc_alexnet.caffemodel``, BVLC's own: a protobuf ``NetParameter`` read
  with the ``protobuf`` package against a minimal schema of the fields needed
  (layer names and blobs, in the V1 ``layers`` or the current ``layer`` field);
  no Caffe install.

Each is converted once into a torch state dict cached by the source file's
sha256 beside torch's hub checkpoints (``$TORCH_HOME/hub/checkpoints``).
"""

from __future__ import annotations

import importlib
import os
import pickle
from pathlib import Path

import numpy as np
import torch

from featx.errors import WeightsError
from featx.model.caffe import PARAM_LAYERS, param_shapes

__all__ = [
    "KERAS_NAMES",
    "file_kind",
    "converted_path",
    "caffe_state_dict",
    "read_npy",
    "read_keras_h5",
    "read_caffemodel",
]

#: Layer name → Caffe layer name in convnets-keras' file; the grouped layers
#: are split in two there (``conv_2_1``, ``conv_2_2``).
KERAS_NAMES = {
    "conv1": "conv_1",
    "conv2": "conv_2",
    "conv3": "conv_3",
    "conv4": "conv_4",
    "conv5": "conv_5",
    "fc6": "dense_1",
    "fc7": "dense_2",
    "fc8": "dense_3",
}

#: What the npy unpickler may build: numpy arrays, their dtypes and scalars.
_NUMPY_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
}


def file_kind(path: Path) -> str:
    """``npy``, ``keras-h5``, ``caffemodel``, ``safetensors`` or ``torch``, by the
    file's first bytes (and its suffix for the caffemodel and safetensors, which
    have no signature)."""
    with path.open("rb") as f:
        head = f.read(8)
    if head.startswith(b"\x93NUMPY"):
        return "npy"
    if head == b"\x89HDF\r\n\x1a\n":
        return "keras-h5"
    if path.suffix.lower() == ".caffemodel":
        return "caffemodel"
    if path.suffix.lower() == ".safetensors":
        return "safetensors"
    return "torch"


def converted_path(sha256: str) -> Path:
    """Where the converted state dict of a source file with this sha256 lives."""
    hub = Path(torch.hub.get_dir()) / "checkpoints"
    return hub / f"featx-caffe-alexnet-{sha256[:20]}.pth"


def caffe_state_dict(path: Path, kind: str, sha256: str) -> dict[str, torch.Tensor]:
    """caffe-alexnet's state dict from one of the weight files (``kind``, from
    :func:`file_kind`, other than ``torch``), converted once per ``sha256``."""
    cached = converted_path(sha256)
    if cached.is_file():
        try:
            return torch.load(cached, map_location="cpu", weights_only=True)
        except Exception:  # a damaged conversion: convert again  # noqa: BLE001
            cached.unlink(missing_ok=True)
    reader = {"npy": read_npy, "keras-h5": read_keras_h5, "caffemodel": read_caffemodel}
    layers = reader[kind](path)
    state = _state_dict(layers, path)
    _save_quietly(state, cached)
    return state


def _save_quietly(state: dict, target: Path) -> None:
    """Keep the conversion for next time where the hub cache is writable."""
    partial = target.with_name(f"{target.name}.{os.getpid()}.partial")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        torch.save(state, partial)
        partial.replace(target)
    except OSError:
        partial.unlink(missing_ok=True)


def _state_dict(layers: dict[str, tuple[np.ndarray, np.ndarray]], source: Path):
    """Check each layer's (W, b), in torch's layout, against caffe-alexnet's."""
    shapes = param_shapes()
    missing = [name for name in shapes if name not in layers]
    if missing:
        raise WeightsError(
            f"{source.name} has no {', '.join(missing)} layer; it is not AlexNet "
            f"weights (layers found: {', '.join(sorted(layers)) or 'none'})"
        )
    state = {}
    for name, (w_shape, b_shape) in shapes.items():
        weight, bias = layers[name]
        for what, array, expected in (
            ("weights", weight, w_shape),
            ("bias", bias, b_shape),
        ):
            if tuple(array.shape) != expected:
                raise WeightsError(
                    f"{source.name}: layer {name} {what} have shape "
                    f"{tuple(array.shape)} (converted to torch's layout); "
                    f"caffe-alexnet expects {expected}"
                )
        module = PARAM_LAYERS[name]
        state[f"{module}.weight"] = torch.from_numpy(
            np.ascontiguousarray(weight, np.float32)
        )
        state[f"{module}.bias"] = torch.from_numpy(
            np.ascontiguousarray(bias, np.float32)
        )
    return state


def _pair(entry, source: Path, name: str) -> tuple[np.ndarray, np.ndarray]:
    if not isinstance(entry, list | tuple) or len(entry) != 2:
        raise WeightsError(
            f"{source.name}: layer {name} should be [weights, bias]; got "
            f"{type(entry).__name__}"
            + (f" of {len(entry)}" if isinstance(entry, list | tuple) else "")
        )
    weight, bias = (np.asarray(a) for a in entry)
    return weight, bias


class _ArraysOnly(pickle.Unpickler):
    """An unpickler that builds numpy arrays and refuses every other global."""

    def find_class(self, module: str, name: str):
        if (module, name) not in _NUMPY_GLOBALS:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        try:
            return getattr(importlib.import_module(module), name)
        except ImportError:  # numpy.core and numpy._core: one is the other's alias
            other = (
                module.replace("numpy._core", "numpy.core")
                if "._core" in module
                else module.replace("numpy.core", "numpy._core")
            )
            return getattr(importlib.import_module(other), name)


def read_npy(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The TensorFlow port's ``bvlc_alexnet.npy``, in torch's layout."""
    try:
        with path.open("rb") as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                _, _, dtype = np.lib.format.read_array_header_1_0(f)
            else:
                _, _, dtype = np.lib.format.read_array_header_2_0(f)
            # a plain array is not the port's dict of layers
            blob = _ArraysOnly(f, encoding="latin1").load() if dtype.hasobject else None
    except (OSError, ValueError, EOFError, pickle.UnpicklingError) as exc:
        raise WeightsError(
            f"cannot read {path.name} as the TensorFlow port's weights: "
            f"{str(exc).splitlines()[0]}"
        ) from exc
    data = blob.item() if isinstance(blob, np.ndarray) and blob.shape == () else blob
    if not isinstance(data, dict):
        raise WeightsError(
            f"{path.name} holds no dict of layer -> [weights, bias] (the layout of "
            "the TensorFlow port's bvlc_alexnet.npy)"
        )
    layers = {}
    for name in PARAM_LAYERS:
        if name not in data:
            continue
        weight, bias = _pair(data[name], path, name)
        if name.startswith("conv"):
            if weight.ndim != 4:
                raise WeightsError(
                    f"{path.name}: layer {name} weights have shape {weight.shape}; "
                    "a kernel is H x W x in x out"
                )
            weight = weight.transpose(3, 2, 0, 1)  # HWIO → OIHW
        elif name == "fc6":
            if weight.shape != (9216, 4096):
                raise WeightsError(
                    f"{path.name}: layer fc6 weights have shape {weight.shape}; "
                    "the port's fc6 is 9216 x 4096 (6 x 6 x 256 rows)"
                )
            # rows are TensorFlow's H x W x C flatten; torch flattens C x H x W
            weight = weight.reshape(6, 6, 256, 4096).transpose(3, 2, 0, 1)
            weight = weight.reshape(4096, 9216)
        else:
            weight = weight.T
        layers[name] = (weight, bias)
    return layers


def read_keras_h5(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """convnets-keras' ``alexnet_weights.h5`` (Keras 1, Theano), in torch's
    layout: kernels flipped back to cross-correlation, conv1 made BGR."""
    import h5py

    try:
        with h5py.File(path, "r", locking=False) as f:
            root = f.get("model_weights", f)
            # layers without weights (input, pooling, and the merge layers
            # named conv_2/conv_4/conv_5 that join the groups) are left out
            found = {
                name: pair
                for name in root
                if (pair := _keras_layer(root[name])) is not None
            }
    except (OSError, KeyError, ValueError) as exc:
        raise WeightsError(
            f"cannot read {path.name} as a Keras weights file: "
            f"{str(exc).splitlines()[0]}"
        ) from exc
    layers = {}
    for name, keras in KERAS_NAMES.items():
        if keras in found:
            weight, bias = found[keras]
        elif f"{keras}_1" in found and f"{keras}_2" in found:  # the two groups
            (w1, b1), (w2, b2) = found[f"{keras}_1"], found[f"{keras}_2"]
            if w1.shape != w2.shape:
                raise WeightsError(
                    f"{path.name}: the groups of {keras} differ in shape "
                    f"({w1.shape} and {w2.shape})"
                )
            weight, bias = np.concatenate([w1, w2]), np.concatenate([b1, b2])
        else:
            continue
        if name.startswith("conv"):
            if weight.ndim != 4:
                raise WeightsError(
                    f"{path.name}: layer {keras} weights have shape {weight.shape}; "
                    "a Theano kernel is out x in x H x W"
                )
            weight = weight[:, :, ::-1, ::-1]  # Theano convolves: flip back
            if name == "conv1":
                weight = weight[:, ::-1]  # RGB input → BGR
        else:
            weight = weight.T
        layers[name] = (weight, bias)
    return layers


def _keras_layer(group) -> tuple[np.ndarray, np.ndarray] | None:
    """A Keras 1 (or 2) layer group's [weights, bias], in the stored order."""
    names = [
        n.decode() if isinstance(n, bytes) else n
        for n in group.attrs.get("weight_names", [])
    ]
    if len(names) != 2:
        return None
    return np.asarray(group[names[0]]), np.asarray(group[names[1]])


# Long: the caffemodel protobuf schema, declared; data, not logic.
def _caffe_schema():
    """Message classes for the parts of ``caffe.proto`` a caffemodel's weights
    need: NetParameter → layers (V1) / layer → name, blobs → shape and data."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    F = descriptor_pb2.FieldDescriptorProto
    proto = descriptor_pb2.FileDescriptorProto(
        name="featx_caffe_min.proto", package="featx_caffe", syntax="proto2"
    )

    def message(name, fields):
        msg = proto.message_type.add(name=name)
        for field_name, number, kind, label, type_name in fields:
            field = msg.field.add(
                name=field_name, number=number, type=kind, label=label
            )
            if type_name:
                field.type_name = f".featx_caffe.{type_name}"

    opt, rep = F.LABEL_OPTIONAL, F.LABEL_REPEATED
    message("BlobShape", [("dim", 1, F.TYPE_INT64, rep, "")])
    message(
        "BlobProto",
        [
            ("num", 1, F.TYPE_INT32, opt, ""),
            ("channels", 2, F.TYPE_INT32, opt, ""),
            ("height", 3, F.TYPE_INT32, opt, ""),
            ("width", 4, F.TYPE_INT32, opt, ""),
            ("data", 5, F.TYPE_FLOAT, rep, ""),
            ("shape", 7, F.TYPE_MESSAGE, opt, "BlobShape"),
            ("double_data", 8, F.TYPE_DOUBLE, rep, ""),
        ],
    )
    message(
        "LayerParameter",
        [
            ("name", 1, F.TYPE_STRING, opt, ""),
            ("type", 2, F.TYPE_STRING, opt, ""),
            ("blobs", 7, F.TYPE_MESSAGE, rep, "BlobProto"),
        ],
    )
    message(
        "V1LayerParameter",
        [
            ("name", 4, F.TYPE_STRING, opt, ""),
            ("blobs", 6, F.TYPE_MESSAGE, rep, "BlobProto"),
        ],
    )
    message(
        "NetParameter",
        [
            ("name", 1, F.TYPE_STRING, opt, ""),
            ("layers", 2, F.TYPE_MESSAGE, rep, "V1LayerParameter"),
            ("layer", 100, F.TYPE_MESSAGE, rep, "LayerParameter"),
        ],
    )
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return message_factory.GetMessageClass(
        pool.FindMessageTypeByName("featx_caffe.NetParameter")
    )


def read_caffemodel(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """BVLC's ``bvlc_alexnet.caffemodel``: Caffe's layout is torch's already
    (OIHW kernels, out x in fully connected, a C x H x W flatten)."""
    from google.protobuf.message import DecodeError

    net = _caffe_schema()()
    try:
        net.ParseFromString(path.read_bytes())
    except (DecodeError, OSError) as exc:
        raise WeightsError(
            f"cannot read {path.name} as a caffemodel (truncated or not Caffe's "
            f"protobuf): {exc}"
        ) from exc
    shapes = param_shapes()
    layers = {}
    for layer in [*net.layers, *net.layer]:
        if layer.name not in shapes or len(layer.blobs) < 2:
            continue
        pair = []
        for blob, expected in zip(layer.blobs[:2], shapes[layer.name], strict=True):
            values = np.asarray(blob.double_data or blob.data, np.float32)
            size = int(np.prod(expected))
            if values.size != size:
                dims = tuple(blob.shape.dim) or (
                    blob.num,
                    blob.channels,
                    blob.height,
                    blob.width,
                )
                raise WeightsError(
                    f"{path.name}: layer {layer.name} holds a blob of shape "
                    f"{dims} ({values.size} values); caffe-alexnet expects "
                    f"{expected}"
                )
            pair.append(values.reshape(expected))
        layers[layer.name] = (pair[0], pair[1])
    return layers
