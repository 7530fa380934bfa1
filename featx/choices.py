"""The vocabularies of featx's options, each written once.

Importable without torch or scikit-learn: the command line builds its
``click.Choice`` lists and help from them, and the library checks a value
against the same tuple (:mod:`featx.extraction`, :mod:`featx.fit`,
:mod:`featx.cache.export`, :mod:`featx.model`). :mod:`featx.head` (torch) needs no
import of :mod:`featx.fit` for them.
"""

from __future__ import annotations

#: The networks featx runs (the keys of ``featx.model.ARCHITECTURES``), the
#: default first.
MODELS = ("alexnet", "caffe-alexnet")
#: Every classifier: scikit-learn's (the keys of ``pipelines.CLASSIFIERS``, a
#: test holds them equal) and AlexNet's own head, fine-tuned in torch on pool5.
CLASSIFIERS = ("svm", "logreg", "ridge", "mlp", "sgd", "head")
#: What ``head_train`` accepts: the layers of the head that learn (the others
#: keep the weights' values), the default first.
HEAD_TRAIN_LAYERS = ("fc6-fc8", "fc7-fc8", "fc8")
#: Where extraction and cross-validation folds run: here, or on a Ray cluster.
ENGINES = ("local", "ray")
#: What a convolutional map is stored as: whole (C*H*W), or pooled to C.
SPATIAL = ("none", "avg", "max")
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
#: The arithmetic of the forward pass: float32, or autocast to bfloat16 /
#: float16 (the default is fp32 on a CPU and bf16 on CUDA).
PRECISIONS = ("fp32", "bf16", "fp16")
#: Who decodes JPEGs: PIL in the decode workers, or torchvision's
#: ``decode_jpeg`` in batches on the network's device (nvJPEG on CUDA; on a CPU
#: the same code runs with libjpeg-turbo). The default is torchvision on CUDA,
#: PIL on a CPU.
DECODERS = ("pil", "torchvision")
#: Where the network runs (``cuda:N`` stands for any device index).
DEVICES = ("auto", "cpu", "cuda", "cuda:N")
