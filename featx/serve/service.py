"""The loaded network (and model) a server answers with: one image's bytes
into its crop, one batch of crops into features, features into predictions.

Every step is the batch path's own: the weights (:func:`featx.model.load_weights`
or, for a model file, :func:`featx.predict.weights_for`), the preprocessing and
decode settings (:func:`featx.extraction.api.resolve_preprocess`,
:func:`featx.predict.check_preprocessing`), the crop
(:func:`featx.compute.device_decode.pil_crop`), the forward pass
(:func:`featx.compute.forward.run_forward`) and the classifier
(:func:`featx.predict.classify`). So a served embedding is the row ``featx
extract`` stores, and a served prediction the one ``featx predict`` prints.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from featx.errors import ParameterError
from featx.images.views import CENTER
from featx.serve.spec import ServeSpec

__all__ = ["Crop", "decode_crop", "FeatureService"]


@dataclass
class Crop:
    """One decoded image, ready to batch: a uint8 ``(3, H, W)`` array (or
    ``(V, 3, H, W)`` with views), or None and why."""

    pixels: np.ndarray | None
    error: str = ""
    #: What the decoders warned or printed for this image.
    said: list[str] = field(default_factory=list)


def decode_crop(data: bytes, preprocess, views, *, quiet: bool = True) -> Crop:
    """Decode one image file's bytes and crop it as extraction does.

    ``quiet`` captures what the decoders say (it redirects file descriptor 2,
    so only one decode at a time per process may use it: the process pool's
    workers do, the thread pool's do not)."""
    import featx.images
    from featx.compute.device_decode import pil_crop

    if quiet:
        with featx.images.quiet_decoding() as said:
            crop, error = pil_crop(data, preprocess, views)
    else:
        said = []
        crop, error = pil_crop(data, preprocess, views)
    return Crop(None if crop is None else crop.numpy(), error, said)


class FeatureService:
    """A network's layer, loaded once, and the model file fitted on it if any.

    Parameters
    ----------
    spec
        What to serve (:class:`featx.serve.ServeSpec`), checked.
    """

    def __init__(self, spec: ServeSpec) -> None:
        from featx.compute.forward import build_net, configure_threads

        self.spec = spec.check()
        self.pipeline = self.meta = None
        self.dim: int | None = None
        self.batches = 0
        if spec.model_file is not None:
            self._load_model_file(Path(spec.model_file))
        else:
            self._load_layer()
        from featx.compute.forward import views_in

        self.views = views_in(self.wanted)
        #: The dataset an embedding is: the layer's centre view.
        self.key = next(w.key for w in self.wanted if w.view == CENTER)
        configure_threads(self.device)
        # a model file's runtime (OpenVINO, ONNX Runtime, int8) runs as it was
        # made, unless a float32 model is moved to another float32 runtime
        self.net = build_net(self.loaded, self.wanted, self.device, self.preprocess)

    def _load_layer(self) -> None:
        from featx.compute.forward import resolve_device
        from featx.extraction.api import (
            layer_spatial,
            resolve_preprocess,
            runtime_device,
        )
        from featx.extraction.api import wanted_layers as layers_of
        from featx.model import load_weights, resolve_layers

        spec = self.spec
        layer = resolve_layers([spec.layer], spec.model)[0]
        layer_spatial(layer, spec.spatial)
        runtime = spec.runtime or "torch"
        self.device = resolve_device(runtime_device(spec.device, runtime))
        self.preprocess = resolve_preprocess(
            spec.model, None, spec.decode, spec.precision, "pil",
            device=self.device, runtime=runtime,
        )  # fmt: skip
        self.wanted = layers_of([layer], spec.spatial, "float32", CENTER, spec.model)
        self.loaded = load_weights(
            spec.weights or "imagenet", seed=spec.seed, model=spec.model
        )
        self.model_name, self.layer = spec.model, layer.name
        self.spatial = self.wanted[0].spatial

    def _load_model_file(self, path: Path) -> None:
        from featx.compute.forward import resolve_device
        from featx.extraction.api import runtime_device
        from featx.predict import (
            check_preprocessing,
            read_model,
            wanted_layers,
            weights_for,
        )

        self.pipeline, self.meta = read_model(path)
        self.preprocess = check_preprocessing(self.meta, self.spec.runtime)
        self.device = resolve_device(
            runtime_device(self.spec.device, self.preprocess.runtime)
        )
        if self.preprocess.decoder != "pil":
            raise ParameterError(
                f"{path} was fitted on features decoded by "
                f"{self.preprocess.decoder}; featx serve decodes with PIL, so its "
                "features would differ: fit on a cache made with --decoder pil"
            )
        self.wanted = wanted_layers(self.meta, center_only=False)
        self.loaded = weights_for(self.meta, self.spec.weights)
        self.model_name, self.layer = self.meta.model, self.meta.layer_name
        self.spatial = self.meta.spatial

    @property
    def has_classifier(self) -> bool:
        return self.pipeline is not None

    def describe(self) -> dict:
        """What every answer says it was computed with."""
        return {
            "model": self.model_name,
            "layer": self.layer,
            "spatial": self.spatial,
            "weights": self.loaded.weights_id,
            "weights_sha256": self.loaded.sha256,
            "pretrained": self.loaded.pretrained,
            "decode": self.preprocess.decode,
            "precision": self.preprocess.precision,
            "runtime": self.preprocess.runtime,
            "device": str(self.device),
            "dim": self.dim,
        }

    def warm_up(self) -> None:
        """One forward pass of a blank image: the first batch's cost paid
        before the server says it is ready, and the embedding's width."""
        self.dim = int(self.forward([self.blank()])[self.key].shape[1])

    def blank(self) -> np.ndarray:
        """The zeros of one image's crop (the warm-up batch)."""
        from featx.compute.device_decode import blank

        return blank(self.preprocess, self.views).numpy()

    def decode(self, data: bytes, *, quiet: bool = True) -> Crop:
        return decode_crop(data, self.preprocess, self.views, quiet=quiet)

    def forward(self, crops: list[np.ndarray]) -> dict[str, np.ndarray]:
        """One forward pass over ``crops``: ``{layer key: (n, dim) array}``."""
        import torch

        from featx.compute.forward import TRIM_EVERY, run_forward
        from featx.compute.process import release_free_memory

        self.batches += 1
        if self.batches % TRIM_EVERY == 0:  # as extraction does
            release_free_memory()
        images = torch.from_numpy(np.stack(crops))
        return run_forward(
            net=self.net,
            preprocess=self.preprocess,
            images=images,
            layers=self.wanted,
            device=self.device,
            views=self.views,
        )

    def embedding(self, row: dict[str, np.ndarray]) -> np.ndarray:
        """One image's float32 embedding from its ``{layer key: row}``."""
        return np.asarray(row[self.key], dtype=np.float32)

    def predict(self, values: dict[str, np.ndarray], top_k: int) -> list:
        """The :class:`featx.predict.Prediction` of each row of ``values``."""
        from featx.predict import Prediction, classify, model_input

        X = model_input(values, self.wanted, self.meta)
        out = [Prediction(path="") for _ in range(len(X))]
        classify(self.pipeline, X, self.meta, top_k, out)
        return out

    def model_info(self) -> dict:
        """The fitted model's classes, layer and cross-validated accuracy."""
        meta = self.meta
        info = {
            "classes": list(meta.classes),
            "layer": meta.layer_name,
            "clf": meta.clf,
            "views": list(meta.views),
            "precision": self.preprocess.precision,
            "runtime": self.preprocess.runtime,
        }
        scores = (meta.cv_scores or {}).get("accuracy")
        if scores:
            from featx.fit.intervals import ci95

            info["cv_accuracy"] = float(np.mean(scores))
            info["cv_accuracy_ci95"] = ci95(scores, meta.cv or len(scores))
        return info
