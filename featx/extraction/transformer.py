"""``Features``: a network's activations as a scikit-learn transformer.

``transform(paths)`` returns one layer's features for image files, through
featx's cache: the folder that holds the files is extracted once (resumably,
like ``featx extract``), and every later call — another fold, another clone,
another layer of ``prefetch`` — reads rows from the cache. So::

    pipe = make_pipeline(Features(layer="fc6"), LogisticRegression())
    GridSearchCV(pipe, {"features__layer": ["pool5", "fc6", "fc7"]})

decodes and forwards each image once: on a miss, the layers of ``prefetch``
(for AlexNet by default pool5, fc6, fc7 and fc8, which together cost one forward
pass and ~73 KB per image) are computed with the one asked for. Any network
``featx extract --model`` runs works: ``Features(model="resnet50",
layer="avgpool")``. ``AlexNetFeatures`` is ``Features`` under its first name,
with the step name ``alexnetfeatures`` its users' searches spell.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from featx.choices import DEFAULT_DECODE
from featx.errors import DataError, ParameterError

__all__ = ["DEFAULT_PREFETCH", "Features", "AlexNetFeatures"]

#: AlexNet's layers computed beside the one asked for, by default.
DEFAULT_PREFETCH = ("pool5", "fc6", "fc7", "fc8")


def _as_paths(X, who: str = "Features") -> list[Path]:
    """Image paths from a list, a 1-D array, or a one-column 2-D array."""
    array = np.asarray(X, dtype=object)
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 1 or not len(array):
        raise ValueError(
            f"{who} takes a non-empty list of image paths, got an array of "
            f"shape {array.shape}"
        )
    if not all(isinstance(p, str | os.PathLike) for p in array):
        raise ValueError(f"{who} takes image paths (str or Path)")
    return [Path(p).resolve() for p in array]


class Features(TransformerMixin, BaseEstimator):
    """Pretrained activations of image files, cached in HDF5.

    The constructor only stores its parameters (scikit-learn's convention);
    they mean what the options of ``featx extract`` mean.

    Parameters
    ----------
    layer : str
        A layer of ``model`` (``featx layers --model NAME`` lists them): for
        AlexNet conv1..conv5, pool5, fc6, fc7, fc8, or a module path.
    weights : str
        ``"imagenet"``, ``"random"`` (seeded by ``seed``) or a weights file.
    spatial : {"none", "avg", "max", "cls"}
        Keep maps and token sequences whole, or pool them globally (``cls``: a
        ViT's class token).
    dtype : {"float32", "float16"}
        Storage type in the cache; ``transform`` returns float32.
    cache_dir : str or Path, optional
        Where caches live (default: ``$FEATX_CACHE_DIR`` or ``./cache``).
    device, batch_size, num_workers, seed
        As for ``featx extract``.
    prefetch : tuple of str, optional
        Layers computed together with ``layer`` when images must be extracted,
        so that a search over them extracts each image once (default: AlexNet's
        and caffe-alexnet's pool5, fc6, fc7, fc8; for other networks none).
        Those that ``spatial`` does not apply to are left out.
    model : str
        The network, as ``featx extract --model`` takes it: ``"alexnet"``,
        ``"caffe-alexnet"`` (then ``weights`` is ``"random"`` or one of its
        weight files), a torchvision model (``"resnet50"``) or ``"timm:NAME"``.
    decode : {"fast", "exact"}
        JPEGs decoded at the smallest DCT scale that covers the resize target,
        or in full; as ``featx extract --decode``.
    precision : {None, "fp32", "bf16", "fp16"}
        The forward pass's arithmetic (None: fp32 on a CPU, bf16 on CUDA).
    decoder : {None, "pil", "torchvision"}
        Who decodes JPEGs (None: torchvision on CUDA, PIL on a CPU).
    runtime : {"torch", "openvino", "onnxruntime"}
        What runs the forward pass, as ``featx extract --runtime``; the other
        runtimes take ``precision`` "fp32" or "int8" (calibrated on
        ``calibration`` images of the folder, default 300).
    calibration : int, optional
        int8 only: how many of the folder's images to calibrate on.
    """

    def __init__(
        self,
        layer="fc7",
        *,
        weights="imagenet",
        spatial="none",
        dtype="float32",
        cache_dir=None,
        device="auto",
        batch_size=64,
        num_workers=None,
        seed=0,
        prefetch=None,
        model="alexnet",
        decode=DEFAULT_DECODE,
        precision=None,
        decoder=None,
        runtime="torch",
        calibration=None,
    ):
        self.layer = layer
        self.model = model
        self.decode = decode
        self.precision = precision
        self.decoder = decoder
        self.runtime = runtime
        self.calibration = calibration
        self.weights = weights
        self.spatial = spatial
        self.dtype = dtype
        self.cache_dir = cache_dir
        self.device = device
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.seed = seed
        self.prefetch = prefetch

    def fit(self, X, y=None):
        """Check the parameters and ``X``; learns nothing from the data."""
        from featx.extraction.api import layer_spatial
        from featx.model import resolve_layers

        _as_paths(X, type(self).__name__)
        spec = resolve_layers([self.layer], self.model)[0]
        spatial = layer_spatial(spec, self.spatial)  # cls of a map stops here
        pooled = spatial != "none"
        self.layer_key_ = f"{spec.name}_{spatial}" if pooled else spec.name
        self.n_features_out_ = spec.pooled_dim if pooled else spec.dim
        return self

    def transform(self, X) -> np.ndarray:
        """The features of the images ``X`` (paths), as float32 (n, d)."""
        check_is_fitted(self, "layer_key_")
        paths = _as_paths(X, type(self).__name__)
        root = Path(os.path.commonpath([p.parent for p in paths]))
        rels = [p.relative_to(root).as_posix() for p in paths]
        found = self._read(root, rels)
        if found is None:  # a miss: extract (resumably), then read
            self._extract(root)
            found = self._read(root, rels, strict=True)
        return found

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        """``<layer>_0`` .. ``<layer>_{d-1}``."""
        check_is_fitted(self, "layer_key_")
        return np.array(
            [f"{self.layer_key_}_{j}" for j in range(self.n_features_out_)],
            dtype=object,
        )

    def _weights(self):
        from featx.model import load_weights

        if getattr(self, "_loaded", None) is None:
            self._loaded = load_weights(self.weights, seed=self.seed, model=self.model)
        return self._loaded

    def _cache_path(self, root: Path) -> Path:
        from featx.cache import default_cache_dir
        from featx.cache.identity import cache_path_for
        from featx.compute.devices import resolve_device
        from featx.extraction.api import calibrate, resolve_preprocess, runtime_device

        cache_dir = (
            self.cache_dir if self.cache_dir is not None else default_cache_dir()
        )
        preprocess = resolve_preprocess(
            self.model, None, self.decode, self.precision, self.decoder,
            device=resolve_device(runtime_device(self.device, self.runtime)),
            runtime=self.runtime,
        )  # fmt: skip
        if preprocess.precision == "int8":  # the folder's sample: the identity
            from featx.images import list_images

            calibrate(preprocess, list_images(root.resolve()), self.calibration)
        return cache_path_for(Path(cache_dir), root, self._weights(), preprocess)

    def _read(self, root: Path, rels: list[str], *, strict: bool = False):
        """The rows of ``rels`` from ``root``'s cache; None when the cache lacks
        the layer or a row (``strict``: say why instead)."""
        from featx.cache import FeatureCache

        path = self._cache_path(root)
        if not path.exists() and not strict:
            return None
        with FeatureCache(path) as cache:
            if self.layer_key_ not in cache.complete_layers() and not strict:
                return None
            index = {p: i for i, p in enumerate(cache.paths)}
            missing = [r for r in rels if r not in index]
            if missing:
                if not strict:
                    return None
                failed = {f.path: f.reason for f in cache.failed}
                why = failed.get(missing[0], "not in the folder's listing")
                raise DataError(f"no features for {root / missing[0]}: {why}")
            rows = np.array([index[r] for r in rels], np.int64)
            return cache.read(self.layer_key_, rows=rows)

    def _extract(self, root: Path) -> None:
        """Extract ``root`` with the layer and ``prefetch`` (computing only what
        the cache lacks)."""
        from featx.extraction import extract

        extract(
            root,
            layers=self._layers(),
            spatial=self.spatial,
            weights=self._weights(),
            device=self.device,
            batch_size=self.batch_size,
            num_workers=self.num_workers,
            dtype=self.dtype,
            cache_dir=self.cache_dir,
            decode=self.decode,
            precision=self.precision,
            decoder=self.decoder,
            runtime=self.runtime,
            calibration=self.calibration,
        )

    def _layers(self) -> list[str]:
        """The layer, then those of ``prefetch`` that ``spatial`` applies to."""
        from featx.extraction.api import layer_spatial
        from featx.model import resolve_layers

        prefetch = self.prefetch
        if prefetch is None:
            alexnet = self.model in ("alexnet", "caffe-alexnet")
            prefetch = DEFAULT_PREFETCH if alexnet else ()
        if not isinstance(prefetch, tuple | list):
            raise ParameterError(
                f"`prefetch` must be a tuple of layers. Got {prefetch!r}."
            )
        fits = []
        for spec in resolve_layers(list(prefetch), self.model) if prefetch else []:
            try:
                layer_spatial(spec, self.spatial)
            except ParameterError:
                continue
            fits.append(spec.name)
        return list(dict.fromkeys([self.layer, *fits]))

    def __getstate__(self):
        state = dict(self.__dict__)
        state.pop("_loaded", None)  # weights are reloaded, never pickled
        return state

    def __setstate__(self, state):
        # pickled before decode modes existed: its caches were decoded in full
        state.setdefault("decode", "exact")
        state.setdefault("precision", None)
        state.setdefault("decoder", None)
        state.setdefault("runtime", "torch")
        state.setdefault("calibration", None)
        super().__setstate__(state)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.string = True
        tags.requires_fit = True
        return tags


class AlexNetFeatures(Features):
    """:class:`Features`, by its first name: AlexNet's activations by default,
    in a pipeline step named ``alexnetfeatures``. Its parameters are
    :class:`Features`' own."""
