"""The vocabularies of featx's options, each written once.

Importable without torch or scikit-learn: the command line builds its
``click.Choice`` lists and help from them, and the library checks a value
against the same tuple (:mod:`featx.extraction`, :mod:`featx.fit`,
:mod:`featx.cache.export`, :mod:`featx.model`). :mod:`pipelines.head` (torch) needs no
import of :mod:`featx.fit` for them.
"""

from __future__ import annotations

from featx.errors import param

__all__ = [
    "MODELS",
    "HEAD_MODELS",
    "CLASSIFIERS",
    "HEAD_TRAIN_LAYERS",
    "ENGINES",
    "SPATIAL",
    "DTYPES",
    "SCALES",
    "EXPORT_FORMATS",
    "DECODE_MODES",
    "DEFAULT_DECODE",
    "PRECISIONS",
    "RUNTIMES",
    "RUNTIME_PRECISIONS",
    "EXTRACT_PRECISIONS",
    "DECODERS",
    "DEVICES",
    "DECODE_POOLS",
    "FRIENDLY_LAYER_NAMES",
    "LAYER_NAMES",
    "mean_refused_message",
    "unknown_layer_message",
    "unknown_model_message",
]

#: The networks featx names itself, the default first; ``--model`` also takes
#: any torchvision classification model (``torchvision.models.list_models``)
#: and ``timm:NAME`` (:func:`featx.model.backbone`).
MODELS = ("alexnet", "caffe-alexnet")
#: The networks ``--clf head`` fine-tunes: the head is AlexNet's fc6-fc8.
HEAD_MODELS = ("alexnet", "caffe-alexnet")
#: Every classifier: scikit-learn's (the keys of ``pipelines.CLASSIFIERS``, a
#: test holds them equal) and AlexNet's own head, fine-tuned in torch on pool5.
CLASSIFIERS = ("svm", "logreg", "ridge", "mlp", "sgd", "head")
#: What ``head_train`` accepts: the layers of the head that learn (the others
#: keep the weights' values), the default first.
HEAD_TRAIN_LAYERS = ("fc6-fc8", "fc7-fc8", "fc8")
#: Where extraction and cross-validation folds run: here, or on a Ray cluster.
ENGINES = ("local", "ray")
#: What a convolutional map or a sequence of tokens is stored as: whole
#: (C*H*W, T*D), or pooled to C (D): the mean or the max over the positions, or
#: a ViT's class token (``cls``, token layers only).
SPATIAL = ("none", "avg", "max", "cls")
#: Storage types of the features.
DTYPES = ("float32", "float16")
#: Preprocessing of features before a classifier (``pipelines.SCALES``, which
#: knows nothing of featx; a test holds them equal).
SCALES = ("standard", "l2", "none")
#: What ``featx export`` writes.
EXPORT_FORMATS = ("npz", "csv", "parquet")
#: How JPEGs are decoded, the default first: ``fast`` lets libjpeg scale in the
#: DCT domain (1/2, 1/4 or 1/8) as far as the resize target allows; ``exact``
#: decodes every pixel (:mod:`featx.images.decode`).
DECODE_MODES = ("fast", "exact")
#: The decode mode wherever one is chosen for the user (extract, predict of a
#: new folder, the transformer, serve, preprocess_for); a record that names none
#: was made with ``exact``, before featx had scaled decoding.
DEFAULT_DECODE = DECODE_MODES[0]
#: The arithmetic of the forward pass: float32, or autocast to bfloat16 /
#: float16 (the default is fp32 on a CPU and bf16 on CUDA).
PRECISIONS = ("fp32", "bf16", "fp16")
#: What runs the forward pass, the default first: torch, or the captured
#: network exported to ONNX and run by OpenVINO or ONNX Runtime (CPU only; the
#: ``cpu-fast`` extra installs them).
RUNTIMES = ("torch", "openvino", "onnxruntime")
#: The arithmetic of the other runtimes: float32, or int8 quantized on a
#: calibration sample of the user's images.
RUNTIME_PRECISIONS = ("fp32", "int8")
#: What ``featx extract --precision`` takes: every runtime's precisions.
EXTRACT_PRECISIONS = tuple(dict.fromkeys(PRECISIONS + RUNTIME_PRECISIONS))
#: Who decodes JPEGs: PIL in the decode workers, or torchvision's
#: ``decode_jpeg`` in batches on the network's device (nvJPEG on CUDA; on a CPU
#: the same code runs with libjpeg-turbo). The default is torchvision on CUDA,
#: PIL on a CPU.
DECODERS = ("pil", "torchvision")
#: Where the network runs (``cuda:N`` stands for any device index).
DEVICES = ("auto", "cpu", "cuda", "cuda:N")
#: Where ``featx serve`` decodes images off its event loop: threads (PIL releases
#: the GIL) or worker processes (what decoders print is captured, as in extract).
DECODE_POOLS = ("thread", "process")

#: The friendly layer names of AlexNet and caffe-alexnet (their backbones'
#: ``friendly()`` keys, in order; a test holds them equal).
FRIENDLY_LAYER_NAMES = {
    "alexnet": ("conv1", "conv2", "conv3", "conv4", "conv5", "pool5", "fc6", "fc7",
                "fc8"),
    "caffe-alexnet": ("conv1", "norm1", "conv2", "norm2", "conv3", "conv4", "conv5",
                      "pool5", "fc6", "fc7", "fc8"),
}  # fmt: skip
#: Every name ``--layer`` accepts for AlexNet and caffe-alexnet: the friendly
#: names, then the module paths (what ``featx.model.layer_table`` lists; a test
#: holds them equal). Written here so that a typo is answered without importing
#: torch; other networks' layers are checked once torch is loaded.
LAYER_NAMES = {
    "alexnet": (
        *FRIENDLY_LAYER_NAMES["alexnet"],
        *(f"features.{i}" for i in range(13)),
        "avgpool",
        *(f"classifier.{i}" for i in range(7)),
    ),
    "caffe-alexnet": (
        *FRIENDLY_LAYER_NAMES["caffe-alexnet"],
        *(f"features.{i}" for i in range(15)),
        *(f"classifier.{i}" for i in range(7)),
    ),
}


def mean_refused_message(model: str) -> str:
    """What a user who gave ``--mean`` with a network other than caffe-alexnet
    is told (the command line says it before torch loads, the library after)."""
    title = "torchvision's AlexNet" if model == "alexnet" else model
    return (
        f"{param('mean')} is for {param('model', 'caffe-alexnet')}; {title} "
        "normalises with its own "
        "mean and std"
    )


def unknown_layer_message(name: str, model: str = "alexnet") -> str:
    """What a user who asked ``model`` for layer ``name`` is told: the valid
    names, and the closest one (difflib) when there is one."""
    import difflib

    friendly = ", ".join(FRIENDLY_LAYER_NAMES[model])
    close = difflib.get_close_matches(name, LAYER_NAMES[model], n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return (
        f"unknown layer {name!r}; valid names: {friendly}, or a module path such "
        "as features.10 or classifier.4 (`featx layers"
        + ("" if model == "alexnet" else f" --model {model}")
        + f"` lists all){hint}"
    )


def unknown_model_message(name: str, known) -> str:
    """What a user who gave ``--model name`` that featx does not run is told,
    with the closest of the ``known`` names (difflib) when there is one; the
    command line says it before torch loads, :func:`featx.model.backbone`
    after."""
    import difflib

    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return (
        f"unknown model {name!r}; featx runs alexnet, caffe-alexnet, every "
        "torchvision classification model (resnet50, vgg16, vit_b_16, ...) and "
        f"timm:NAME with the timm extra{hint}"
    )
