"""BVLC AlexNet built in Keras 3 from the TensorFlow port's npy, as those ports
build it: the reference tests/test_caffe.py compares featx against. It shares no
code with featx and runs as a script, in a process of its own.

    python tests/keras_alexnet.py WEIGHTS.npy INPUTS.npy OUT.npz LAYER...

INPUTS is (N, 227, 227, 3): BGR on 0-255 minus the mean. OUT holds each LAYER
(norm1, pool5, fc6, fc7) as (N, features), conv maps flattened C x H x W.
"""

from __future__ import annotations

import os
import sys

import numpy as np

os.environ.setdefault("KERAS_BACKEND", "jax")
import keras  # noqa: E402

GROUPED = {"conv2", "conv4", "conv5"}


def build(w: dict, layers: list[str]):
    L, ops = keras.layers, keras.ops

    def lrn(x):  # Caffe: x / (1 + 1e-4 / 5 * sum of squares over 5 channels)^0.75
        sq = ops.pad(ops.square(x), [[0, 0], [0, 0], [0, 0], [2, 2]])
        window = sum(sq[..., i : i + x.shape[-1]] for i in range(5))
        return x / ops.power(1.0 + (1e-4 / 5) * window, 0.75)

    def conv(name, x, stride=1, pad=0):
        kernel, bias = w[name]  # H x W x in (per group) x out, as the port stores it
        if pad:
            x = L.ZeroPadding2D(pad)(x)
        layer = L.Conv2D(
            kernel.shape[-1],
            kernel.shape[0],
            strides=stride,
            groups=2 if name in GROUPED else 1,
            activation="relu",
            name=name,
        )
        out = layer(x)
        layer.set_weights([kernel, bias])
        return out

    inp = keras.Input((227, 227, 3))
    norm1 = L.Lambda(lrn)(conv("conv1", inp, stride=4))
    x = L.MaxPooling2D(3, 2)(norm1)
    x = L.Lambda(lrn)(conv("conv2", x, pad=2))
    x = L.MaxPooling2D(3, 2)(x)
    x = conv("conv5", conv("conv4", conv("conv3", x, pad=1), pad=1), pad=1)
    pool5 = L.MaxPooling2D(3, 2)(x)
    x = L.Flatten()(pool5)  # H x W x C: the order of the npy's fc6 rows
    outs = {"norm1": norm1, "pool5": pool5}
    for name in ("fc6", "fc7"):
        dense = L.Dense(w[name][0].shape[1], activation="relu", name=name)
        x = outs[name] = dense(x)
        dense.set_weights(w[name])
    return keras.Model(inp, [outs[k] for k in layers])


def main(weights: str, inputs: str, out: str, *layers: str) -> None:
    w = np.load(weights, allow_pickle=True, encoding="latin1").item()
    model = build(w, list(layers))
    got = model.predict(np.load(inputs), verbose=0)
    result = {}
    for name, value in zip(layers, got, strict=True):
        value = np.asarray(value)
        if value.ndim == 4:  # N, H, W, C -> N, C, H, W
            value = value.transpose(0, 3, 1, 2)
        result[name] = value.reshape(len(value), -1)
    np.savez(out, **result)


if __name__ == "__main__":
    main(*sys.argv[1:])
