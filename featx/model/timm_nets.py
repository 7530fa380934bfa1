"""timm's models (``--model timm:NAME``, with the ``timm`` extra).

Layers are the model's feature taps (``feature_info``: ``layer1``...``layer4``
for a ResNet, ``blocks.0``... for a ViT), captured with timm's own
``forward_intermediates``, which stops after the deepest one asked for; then
``pre_logits`` (the pooled features the classifier reads) and ``logits``.
Preprocessing is timm's data config for the model's pretrained tag: resize the
short side to ``floor(size / crop_pct)`` with its interpolation, centre crop,
its mean and std.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import torch
from torch import nn

from featx.errors import LayerError, WeightsError
from featx.model.backbone import TIMM_PREFIX, Backbone
from featx.model.checkpoints import check_online
from featx.model.layers import LayerSpec

__all__ = [
    "HEAD_LAYERS",
    "TimmBackbone",
    "TimmCapture",
    "TimmTransforms",
    "find_backbone",
    "timm_table",
]

#: The layers after the feature taps, computed by the model's head.
HEAD_LAYERS = ("pre_logits", "logits")


def _timm():
    try:
        import timm
    except ImportError as exc:
        raise LayerError(
            "timm models need timm: pip install 'featx[timm]' (or pip install timm)"
        ) from exc
    return timm


@dataclass(frozen=True)
class TimmTransforms:
    """timm's eval preprocessing, spelled as torchvision's preset is."""

    resize_size: list[int]
    crop_size: list[int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    interpolation: object
    antialias: bool = True

    def __repr__(self) -> str:
        return (
            f"timm eval transform: resize {self.resize_size} "
            f"({self.interpolation.value}), centre crop {self.crop_size}, "
            f"mean {list(self.mean)}, std {list(self.std)}"
        )


class TimmBackbone(Backbone):
    """A timm model, by ``timm:ARCH`` or ``timm:ARCH.TAG``."""

    def __init__(self, name: str) -> None:
        timm = _timm()
        self.name = self.title = name
        self.arch = name[len(TIMM_PREFIX) :]
        base, tag = timm.models.split_model_name_tag(self.arch)
        if not timm.is_model(base):
            close = difflib.get_close_matches(base, timm.list_models(), n=1)
            hint = f"; did you mean 'timm:{close[0]}'?" if close else ""
            raise LayerError(
                f"unknown model {name!r}: timm has no model {base!r} "
                f"(`timm.list_models()` lists them){hint}"
            )
        tags = timm.list_pretrained(f"{base}.*")
        if tag and self.arch not in tags:
            close = difflib.get_close_matches(self.arch, tags, n=1, cutoff=0.8)
            hint = f"; did you mean 'timm:{close[0]}'?" if close else ""
            known = ", ".join(t.split(".", 1)[1] for t in tags[:6]) or "none"
            raise LayerError(
                f"unknown model {name!r}: timm's {base} has no pretrained tag "
                f"{tag!r} (it has: {known}){hint}"
            )
        self.imagenet_id = f"timm:{self.arch}"

    def build(self) -> nn.Module:
        return _timm().create_model(self.arch, pretrained=False)

    @property
    def url(self) -> str:
        repo = self.config.get("hf_hub_id")
        return f"https://huggingface.co/{repo}" if repo else self.config.get("url", "")

    @property
    def config(self) -> dict:
        return dict(_meta_network(self.name).pretrained_cfg)

    def transforms(self) -> TimmTransforms:
        from timm.data import resolve_data_config
        from torchvision.transforms import InterpolationMode

        data = resolve_data_config({}, model=_meta_network(self.name))
        if data.get("crop_mode", "center") != "center":
            raise WeightsError(
                f"{self.name} preprocesses with crop mode {data['crop_mode']!r}; "
                "featx runs timm models whose crop mode is 'center'"
            )
        height, width = data["input_size"][-2:]
        crop_pct = data.get("crop_pct") or 0.875
        scale = [math.floor(height / crop_pct), math.floor(width / crop_pct)]
        return TimmTransforms(
            resize_size=scale[:1] if scale[0] == scale[1] else scale,
            crop_size=[height] if height == width else [height, width],
            mean=tuple(float(m) for m in data["mean"]),
            std=tuple(float(s) for s in data["std"]),
            interpolation=InterpolationMode(data.get("interpolation", "bilinear")),
        )

    def layer_table(self) -> tuple[LayerSpec, ...]:
        return timm_table(self.name)

    def capture(self, net: nn.Module, specs: list[LayerSpec]) -> nn.Module:
        return TimmCapture(net, specs, taps=len(_taps(_meta_network(self.name))))

    def imagenet_file(self) -> Path:
        cfg = self.config
        repo = cfg.get("hf_hub_id")
        if not repo:
            raise WeightsError(
                f"{self.name}'s pretrained weights are not on the Hugging Face hub; "
                "pass --weights PATH to a .safetensors or .pth file of them, or "
                "--weights random"
            )
        filename = cfg.get("hf_hub_filename") or "model.safetensors"
        url = self.url

        def message(reason: str) -> str:
            return (
                f"pretrained {self.name} weights are not cached and could not be "
                f"downloaded ({reason}). Download {filename} from {url} and pass "
                "--weights PATH to it (or set HF_HOME to a Hugging Face cache that "
                "holds it), or pass --weights random to run untrained."
            )

        from huggingface_hub import hf_hub_download, try_to_load_from_cache

        cached = try_to_load_from_cache(repo, filename)
        if isinstance(cached, str):
            return Path(cached)
        check_online(url, message)
        try:
            return Path(hf_hub_download(repo, filename))
        except Exception as exc:  # network and hub errors of many kinds
            raise WeightsError(message(str(exc).splitlines()[0])) from exc


def find_backbone(name: str) -> Backbone | None:
    """The backbone of ``timm:NAME`` (:func:`featx.model.backbone` asks; an
    unknown NAME is refused here with timm's closest), else None."""
    return TimmBackbone(name) if name.startswith(TIMM_PREFIX) else None


@cache
def _meta_network(name: str) -> nn.Module:
    """The model on the meta device, for its config and shapes."""
    arch = name[len(TIMM_PREFIX) :]
    with torch.device("meta"):
        return _timm().create_model(arch, pretrained=False).eval()


def _taps(net: nn.Module) -> list[str]:
    """The module names of the model's feature taps, in depth order."""
    info = getattr(net, "feature_info", None)
    if not info or not hasattr(net, "forward_intermediates"):
        raise LayerError(
            f"timm's {type(net).__name__} has no forward_intermediates; featx "
            "captures the timm models that have it (timm >= 1.0)"
        )
    return [tap["module"] for tap in info]


@cache
def timm_table(name: str) -> tuple[LayerSpec, ...]:
    """The feature taps, then ``pre_logits`` and ``logits``, with their shapes
    (traced on the meta device)."""
    from featx.model.backbone import backbone

    net = _meta_network(name)
    taps = _taps(net)
    height, width = backbone(name).preprocess().crop_hw
    capture = TimmCapture(
        net,
        [LayerSpec(n, n, i, (1,)) for i, n in enumerate([*taps, *HEAD_LAYERS])],
        taps=len(taps),
    )
    with torch.device("meta"), torch.no_grad():
        out = capture(torch.empty(2, 3, height, width))
    return tuple(
        LayerSpec(n, n, i, tuple(out[n].shape[1:]))
        for i, n in enumerate([*taps, *HEAD_LAYERS])
    )


class TimmCapture(nn.Module):
    """Runs a timm model to the deepest feature tap asked for, or through its
    head for ``pre_logits`` and ``logits``.

    ``forward(x, names)`` returns ``{name: tensor of shape (N, *layer.shape)}``.
    """

    def __init__(self, net: nn.Module, layers: list[LayerSpec], *, taps: int) -> None:
        super().__init__()
        self.net = net
        self.layers = {spec.name: spec for spec in layers}
        self.taps = taps

    def forward(self, x: torch.Tensor, names=None) -> dict[str, torch.Tensor]:
        wanted = [self.layers[n] for n in (names or self.layers)]
        indices = sorted({s.index for s in wanted if s.index < self.taps})
        head = {s.module_path for s in wanted if s.index >= self.taps}
        found: dict[str, torch.Tensor] = {}
        if not head:
            inter = self.net.forward_intermediates(
                x, indices=indices, intermediates_only=True, stop_early=True
            )
        elif indices:
            final, inter = self.net.forward_intermediates(x, indices=indices)
        else:
            final, inter = self.net.forward_features(x), []
        if head:
            found["pre_logits"] = self.net.forward_head(final, pre_logits=True)
            if "logits" in head:
                found["logits"] = self.net.forward_head(final)
        by_index = dict(zip(indices, inter, strict=True))
        return {
            s.name: by_index[s.index] if s.index < self.taps else found[s.module_path]
            for s in wanted
        }
