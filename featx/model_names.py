"""The names ``--model`` takes, written here so that the command line can
refuse a misspelt network without importing torch (:mod:`featx.cli.checks`).

:data:`TORCHVISION_MODELS` is ``torchvision.models.list_models(module=
torchvision.models)`` of the torchvision release :data:`TORCHVISION_VERSION`; a
test holds both equal to the installed torchvision (its failure prints the new
table). With another release installed, the command line leaves the check to
:func:`featx.model.backbone`, which asks torchvision itself. timm's names
(``timm:NAME``) are checked when timm is loaded.
"""

from __future__ import annotations

__all__ = [
    "TIMM_PREFIX",
    "TORCHVISION_VERSION",
    "TORCHVISION_MODELS",
    "installed_torchvision",
    "torchvision_names_current",
]

#: What a ``--model`` of timm's starts with (``timm:resnet50.a1_in1k``).
TIMM_PREFIX = "timm:"
#: The torchvision release :data:`TORCHVISION_MODELS` was written from.
TORCHVISION_VERSION = "0.29.1"
#: torchvision's classification models, as ``list_models`` names them.
TORCHVISION_MODELS = (
    "alexnet",
    "convnext_base",
    "convnext_large",
    "convnext_small",
    "convnext_tiny",
    "densenet121",
    "densenet161",
    "densenet169",
    "densenet201",
    "efficientnet_b0",
    "efficientnet_b1",
    "efficientnet_b2",
    "efficientnet_b3",
    "efficientnet_b4",
    "efficientnet_b5",
    "efficientnet_b6",
    "efficientnet_b7",
    "efficientnet_v2_l",
    "efficientnet_v2_m",
    "efficientnet_v2_s",
    "googlenet",
    "inception_v3",
    "maxvit_t",
    "mnasnet0_5",
    "mnasnet0_75",
    "mnasnet1_0",
    "mnasnet1_3",
    "mobilenet_v2",
    "mobilenet_v3_large",
    "mobilenet_v3_small",
    "regnet_x_16gf",
    "regnet_x_1_6gf",
    "regnet_x_32gf",
    "regnet_x_3_2gf",
    "regnet_x_400mf",
    "regnet_x_800mf",
    "regnet_x_8gf",
    "regnet_y_128gf",
    "regnet_y_16gf",
    "regnet_y_1_6gf",
    "regnet_y_32gf",
    "regnet_y_3_2gf",
    "regnet_y_400mf",
    "regnet_y_800mf",
    "regnet_y_8gf",
    "resnet101",
    "resnet152",
    "resnet18",
    "resnet34",
    "resnet50",
    "resnext101_32x8d",
    "resnext101_64x4d",
    "resnext50_32x4d",
    "shufflenet_v2_x0_5",
    "shufflenet_v2_x1_0",
    "shufflenet_v2_x1_5",
    "shufflenet_v2_x2_0",
    "squeezenet1_0",
    "squeezenet1_1",
    "swin_b",
    "swin_s",
    "swin_t",
    "swin_v2_b",
    "swin_v2_s",
    "swin_v2_t",
    "vgg11",
    "vgg11_bn",
    "vgg13",
    "vgg13_bn",
    "vgg16",
    "vgg16_bn",
    "vgg19",
    "vgg19_bn",
    "vit_b_16",
    "vit_b_32",
    "vit_h_14",
    "vit_l_16",
    "vit_l_32",
    "wide_resnet101_2",
    "wide_resnet50_2",
)


def installed_torchvision() -> str | None:
    """The installed torchvision's release (``0.29.1``, without a ``+cu130``
    build tag), read from its metadata without importing it; None when it is
    not installed."""
    from importlib import metadata

    try:
        return metadata.version("torchvision").split("+", 1)[0]
    except metadata.PackageNotFoundError:
        return None


def torchvision_names_current() -> bool:
    """Whether :data:`TORCHVISION_MODELS` names the installed torchvision's
    models (it was written from the same release)."""
    return installed_torchvision() == TORCHVISION_VERSION
