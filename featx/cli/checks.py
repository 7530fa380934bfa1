"""Checks of a command's arguments that need neither torch nor any weights.

Each runs before the command imports its heavy modules, so that a typo in a
folder, a file or a layer name is answered in about the time Python takes to
start, with one line and a non-zero exit. The library checks the same things
again where it is called directly; these are the same rules, said sooner.
A command that reads caches and was named none finds out that there are none
before it imports scikit-learn.
"""

from __future__ import annotations

from pathlib import Path

from featx.choices import (
    LAYER_NAMES,
    MODELS,
    mean_refused_message,
    unknown_layer_message,
    unknown_model_message,
)
from featx.errors import DataError, LayerError, ParameterError, WeightsError
from featx.model_names import (
    TIMM_PREFIX,
    TORCHVISION_MODELS,
    torchvision_names_current,
)

__all__ = [
    "WEIGHT_NAMES",
    "check_folders",
    "check_file",
    "check_model",
    "check_caches",
    "check_layers",
    "check_weights",
    "check_extract_arguments",
]

#: The names ``--weights`` takes besides a file.
WEIGHT_NAMES = ("imagenet", "random")


def check_folders(folders) -> None:
    """Every one of ``folders`` is an existing folder (a DataError otherwise)."""
    for folder in folders:
        folder = Path(folder)
        if not folder.exists():
            raise DataError(f"data folder {folder} does not exist")
        if not folder.is_dir():
            raise DataError(f"data folder {folder} is not a folder")


def check_file(path: Path | None, option: str) -> None:
    """``path``, given to ``option``, is an existing file (when given at all)."""
    if path is None:
        return
    if not Path(path).exists():
        raise ParameterError(f"{option} {path} does not exist")
    if not Path(path).is_file():
        raise ParameterError(f"{option} {path} is a folder, not a file")


def check_model(model: str) -> None:
    """``model`` is a network featx runs, or a LayerError with the closest name.
    torchvision's names come from :data:`featx.model_names.TORCHVISION_MODELS`,
    trusted only where the installed torchvision is the release it was written
    from (else the library asks torchvision); timm's are checked when timm
    loads."""
    if model in MODELS or model in TORCHVISION_MODELS or model.startswith(TIMM_PREFIX):
        return
    if torchvision_names_current():
        raise LayerError(unknown_model_message(model, (*MODELS, *TORCHVISION_MODELS)))


def check_caches(cache, cache_dir) -> None:
    """A command named no cache (``cache`` is None) and ``cache_dir`` holds
    none: the library's own CacheError, said before scikit-learn is imported."""
    if cache is not None:
        return
    from featx.cache.locate import list_caches

    if not list_caches(Path(cache_dir)):
        from featx.cache import choose_caches

        choose_caches(Path(cache_dir), find_test=False)  # raises: no cache


def check_layers(names, model: str = "alexnet") -> None:
    """Every one of ``names`` is a layer of ``model``, or a LayerError that says
    which names are valid and which one was probably meant. Only AlexNet's
    layers are known without torch; other networks' are checked when the
    network is built."""
    if model not in MODELS:
        return
    for name in names:
        if name not in LAYER_NAMES[model]:
            raise LayerError(unknown_layer_message(name, model))


def check_weights(weights: str, model: str = "alexnet") -> None:
    """``--weights`` names weights that can exist for ``model``: a name, or a
    file that is there."""
    if weights in WEIGHT_NAMES:
        if weights == "imagenet" and model == "caffe-alexnet":
            raise WeightsError(
                "caffe-alexnet has no weights to download: pass --weights with "
                "bvlc_alexnet.npy (TensorFlow port), alexnet_weights.h5 "
                "(convnets-keras) or bvlc_alexnet.caffemodel (BVLC), or --weights "
                "random"
            )
        return
    if not Path(weights).expanduser().exists():
        raise WeightsError(
            f"--weights must be 'imagenet', 'random' or a weights file; "
            f"{weights!r} is none of these (no such file)"
        )


def check_extract_arguments(
    *,
    data_dirs,
    layer_names,
    model: str,
    weights: str,
    mean_file: Path | None,
    labels_csv: Path | None,
    name_regex: str | None,
    engine: str,
    address: str | None,
    ray_actors: int | None,
) -> None:
    """Everything ``featx extract`` can refuse before torch is imported."""
    check_model(model)
    check_layers(layer_names, model)
    if mean_file is not None and model != "caffe-alexnet":
        raise ParameterError(mean_refused_message(model))
    check_file(mean_file, "--mean")
    if labels_csv is not None and name_regex is not None:
        raise ParameterError("give one of --labels and --label-from-name")
    check_file(labels_csv, "--labels")
    if engine != "ray" and (address is not None or ray_actors is not None):
        option = "--address" if address is not None else "--ray-actors"
        raise ParameterError(f"{option} is for --engine ray")
    check_folders(data_dirs)
    check_weights(weights, model)
