"""Every torchvision classification model, captured through its FX graph.

Layers are torchvision's graph node names (``get_graph_node_names``, eval
graph): ``layer3.1.relu_1``, ``features.29``, ``encoder.layers.encoder_layer_11``.
Families with natural names get short aliases: ResNets ``layer1``...``layer4``,
``avgpool`` and ``fc``; VGGs ``conv1_1``...``conv5_3``, ``pool1``...``pool5``,
``fc6``...``fc8``, as Caffe named them (each conv after its ReLU, like AlexNet's);
ViTs ``encoder_layer_0``... (each encoder block's output).

Capture goes through ``create_feature_extractor``, which prunes every node past
the deepest one asked for, with every in-place operation made out-of-place, so
that a captured output is the node's own and not what a later in-place ReLU made
of it.
"""

from __future__ import annotations

import copy
import operator
import warnings
from functools import cache
from pathlib import Path

import torch
from torch import nn

from featx.model.backbone import Backbone
from featx.model.checkpoints import torchvision_hub_file
from featx.model.layers import LayerSpec, kind_of

__all__ = [
    "AUX_PREFIXES",
    "GraphCapture",
    "TorchvisionBackbone",
    "aliases",
    "find_backbone",
    "fold_batch_norms",
    "graph_table",
    "out_of_place",
    "torchvision_models",
]


@cache
def torchvision_models() -> tuple[str, ...]:
    """The names of torchvision's classification models."""
    import torchvision

    return tuple(torchvision.models.list_models(module=torchvision.models))


#: Keys a torchvision hub file holds that the network featx builds has not: the
#: auxiliary classifiers, which only training uses.
AUX_PREFIXES = ("aux1.", "aux2.", "AuxLogits.")


class TorchvisionBackbone(Backbone):
    """A torchvision model with its ``DEFAULT`` weights and their transforms."""

    def __init__(self, name: str) -> None:
        from torchvision.models import get_model_weights

        self.name = self.title = name
        self.entry = get_model_weights(name).DEFAULT
        self.imagenet_id = f"torchvision:{type(self.entry).__name__}.{self.entry.name}"

    def _kwargs(self) -> dict:
        """The builder arguments torchvision itself passes with the DEFAULT
        weights, so that a random network and a loaded one are the same."""
        kwargs: dict = {}
        if self.name.startswith("vit_"):  # vit_h_14's SWAG weights take 518
            kwargs["image_size"] = self.entry.meta["min_size"][0]
        if self.name in ("googlenet", "inception_v3"):
            kwargs.update(transform_input=True, init_weights=False, aux_logits=False)
        return kwargs

    def build(self) -> nn.Module:
        from torchvision.models import get_model

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return get_model(self.name, weights=None, **self._kwargs())

    def transforms(self):
        return self.entry.transforms()

    def friendly(self) -> dict[str, str]:
        return aliases(self.name)

    def layer_table(self) -> tuple[LayerSpec, ...]:
        return graph_table(self.name)

    def capture(self, net: nn.Module, specs: list[LayerSpec]) -> nn.Module:
        return GraphCapture(net, specs)

    def find(self, name: str) -> LayerSpec | None:
        """A node or alias, or a module's name standing for its last node (as
        ``create_feature_extractor`` takes it: ``encoder.layers.encoder_layer_11``,
        ``layer3.1``)."""
        spec = super().find(name)
        if spec is not None or not name:
            return spec
        inside = [s for s in self.layer_table() if s.name.startswith(name + ".")]
        if not inside:
            return None
        last = max(inside, key=lambda s: s.index)
        return LayerSpec(name, last.module_path, last.index, last.shape, last.kind)

    def adapt_state(self, state: dict) -> dict:
        return {k: v for k, v in state.items() if not k.startswith(AUX_PREFIXES)}

    @property
    def url(self) -> str:
        return self.entry.url

    def imagenet_file(self) -> Path:
        return torchvision_hub_file(
            self.entry, self.name, f"a torchvision {self.name} state dict"
        )


def find_backbone(name: str) -> Backbone | None:
    """The backbone of ``name`` where torchvision has a classification model of
    that name (:func:`featx.model.backbone` asks), else None."""
    return TorchvisionBackbone(name) if name in torchvision_models() else None


@cache
def _meta_network(name: str) -> nn.Module:
    """The network ``name`` on the meta device (no memory), built once for its
    layer table and aliases; some builders copy data while initialising, and
    are built on the CPU and moved."""
    from featx.model.backbone import backbone

    net_def = backbone(name)
    try:
        with torch.device("meta"):
            return net_def.build().eval()
    except (NotImplementedError, RuntimeError):
        return net_def.build().eval().to("meta")


@cache
def _nodes(name: str) -> tuple[str, ...]:
    """The eval graph's node names of the network ``name``, traced once."""
    from torchvision.models.feature_extraction import get_graph_node_names

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "eval nodes are a subsequence of train's"
        return tuple(
            n for n in get_graph_node_names(_meta_network(name))[1] if n != "x"
        )


@cache
def graph_table(name: str) -> tuple[LayerSpec, ...]:
    """Every node of ``name``'s eval graph whose output is one tensor per image,
    with its shape at the model's input size (traced on the meta device); the
    aliases first."""
    from featx.model.backbone import backbone

    net_def = backbone(name)
    nodes = _nodes(name)
    graph = _extractor(_meta_network(name), list(nodes))
    height, width = net_def.preprocess().crop_hw
    with torch.device("meta"), torch.no_grad():
        # two batch sizes: a node is one row per image when its first axis
        # follows the batch (maxvit's attention biases are (heads, 49, 49))
        outs = [graph(torch.empty(n, 3, height, width)) for n in (2, 3)]
    shapes = {
        node: tuple(value.shape[1:])
        for node, value in outs[0].items()
        if isinstance(value, torch.Tensor)
        and value.dim() >= 2
        and value.shape[0] == 2
        and isinstance(outs[1][node], torch.Tensor)
        and tuple(outs[1][node].shape) == (3, *value.shape[1:])
    }
    index = {node: i for i, node in enumerate(n for n in nodes if n in shapes)}
    kinds = {node: _kind(name, node, shape) for node, shape in shapes.items()}
    friendly = {a: n for a, n in net_def.friendly().items() if n in shapes}
    specs = [
        LayerSpec(alias, node, index[node], shapes[node], kinds[node])
        for alias, node in friendly.items()
    ]
    specs += [
        LayerSpec(n, n, index[n], shapes[n], kinds[n])
        for n in index
        if friendly.get(n) != n  # avgpool, fc: listed once, with the short names
    ]
    return tuple(specs)


def _kind(model: str, node: str, shape: tuple[int, ...]) -> str:
    """How a node's output is laid out, from the model's square input: ViT's
    encoder outputs are (T, D) tokens, the class token first; a (C, H, W) map
    has its two equal sides last, a (H, W, C) one (Swin's stages, ConvNeXt's
    layer norms) first. Anything else (patches on their way to tokens, image
    slices, maxvit's windows) is stored whole, never pooled."""
    kind = kind_of(shape)
    if kind == "seq":
        return (
            "tokens"
            if model.startswith("vit_") and node.startswith("encoder")
            else "other"
        )
    if kind == "map":
        if shape[1] == shape[2]:
            return "map"
        return "hwc" if shape[0] == shape[1] else "other"
    return kind


@cache
def aliases(name: str) -> dict[str, str]:
    """The short names of a family that has natural ones, and their nodes."""
    if name.startswith(("resnet", "resnext", "wide_resnet")):
        nodes = _nodes(name)
        named = {
            f"layer{i}": [n for n in nodes if n.startswith(f"layer{i}.")][-1]
            for i in range(1, 5)
        }
        return {**named, "avgpool": "avgpool", "fc": "fc"}
    if name.startswith("vgg"):
        return _vgg_aliases(_meta_network(name))
    if name.startswith("vit_"):  # each encoder block's output, as resnet's stages
        blocks = {}
        for node in _nodes(name):
            parts = node.split(".")
            if node.startswith("encoder.layers.encoder_layer_") and len(parts) > 3:
                blocks[parts[2]] = node  # the last node of the block wins
        return blocks
    return {}


def _vgg_aliases(net: nn.Module) -> dict[str, str]:
    """Caffe's VGG names: ``convB_K`` is the ReLU after block B's K-th
    convolution, ``poolB`` its max-pool; fc6 and fc7 after their ReLU, fc8 the
    logits."""
    names, block, conv = {}, 1, 0
    for i, module in enumerate(net.features):
        if isinstance(module, nn.Conv2d):
            conv += 1
        elif isinstance(module, nn.ReLU):
            names[f"conv{block}_{conv}"] = f"features.{i}"
        elif isinstance(module, nn.MaxPool2d):
            names[f"pool{block}"] = f"features.{i}"
            block, conv = block + 1, 0
    return {
        **names,
        "fc6": "classifier.1",
        "fc7": "classifier.4",
        "fc8": "classifier.6",
    }


def _extractor(net: nn.Module, nodes: list[str]) -> nn.Module:
    from torchvision.models.feature_extraction import create_feature_extractor

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return create_feature_extractor(net, return_nodes={n: n for n in nodes})


#: In-place operators and their out-of-place twins.
_OUT_OF_PLACE = {operator.iadd: operator.add, operator.imul: operator.mul}


def out_of_place(graph: torch.fx.GraphModule) -> None:
    """Make every in-place operation of ``graph`` out-of-place: modules with an
    ``inplace`` flag, functions called with ``inplace=True``, ``x.relu_()``-style
    methods and ``+=``. Later users of the operand read the operation's result
    instead, so the graph computes what it did, and a captured operand keeps its
    own value."""
    order = {node: i for i, node in enumerate(graph.graph.nodes)}
    changed: set[nn.Module] = set()
    for node in list(graph.graph.nodes):
        if _make_out_of_place(graph, node, changed) and node.args:
            operand = node.args[0]
            if isinstance(operand, torch.fx.Node):
                for user in list(operand.users):
                    if user.op != "output" and order[user] > order[node]:
                        user.replace_input_with(operand, node)
    graph.recompile()


def _make_out_of_place(
    graph: torch.fx.GraphModule, node: torch.fx.Node, changed: set[nn.Module]
) -> bool:
    """Turn ``node`` out-of-place if it works in place; whether it did
    (``changed`` holds the modules already turned, which may be called again)."""
    if node.op == "call_module":
        module = graph.get_submodule(node.target)
        if getattr(module, "inplace", None) is True:
            module.inplace = False
            changed.add(module)
        return module in changed
    if node.kwargs.get("inplace") is True:
        node.kwargs = {**node.kwargs, "inplace": False}
        return True
    if node.op == "call_function" and node.target in _OUT_OF_PLACE:
        node.target = _OUT_OF_PLACE[node.target]
        return True
    if (
        node.op == "call_method"
        and node.target.endswith("_")
        and not node.target.startswith("_")
        and hasattr(torch.Tensor, node.target[:-1])
    ):
        node.target = node.target[:-1]
        return True
    return False


def fold_batch_norms(graph: torch.fx.GraphModule) -> int:
    """Fold each eval-mode BatchNorm2d into the Conv2d before it, where nothing
    else reads the convolution's output (a captured convolution keeps its own);
    returns how many were folded. The result is the batch norm's output, to
    float32 rounding."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    modules = dict(graph.named_modules())
    calls: dict[str, int] = {}
    for node in graph.graph.nodes:
        if node.op == "call_module":
            calls[node.target] = calls.get(node.target, 0) + 1
    folded = 0
    for target in calls:  # conv-norm blocks the tracer keeps whole (leaves)
        block = modules[target]
        if (
            isinstance(block, nn.Sequential)
            and len(block) >= 2
            and isinstance(block[0], nn.Conv2d)
            and isinstance(block[1], nn.BatchNorm2d)
        ):
            block = copy.deepcopy(block)  # the loaded network keeps its own
            block[0] = fuse_conv_bn_eval(block[0], block[1])
            block[1] = nn.Identity()
            parent, _, leaf = target.rpartition(".")
            setattr(graph.get_submodule(parent) if parent else graph, leaf, block)
            folded += 1
    for node in list(graph.graph.nodes):
        conv = node.args[0] if node.op == "call_module" and node.args else None
        if not (
            isinstance(modules.get(node.target), nn.BatchNorm2d)
            and isinstance(conv, torch.fx.Node)
            and conv.op == "call_module"
            and isinstance(modules.get(conv.target), nn.Conv2d)
            and len(conv.users) == 1
            and calls[conv.target] == calls[node.target] == 1
        ):
            continue
        parent, _, leaf = conv.target.rpartition(".")
        fused = fuse_conv_bn_eval(modules[conv.target], modules[node.target])
        setattr(graph.get_submodule(parent) if parent else graph, leaf, fused)
        node.replace_all_uses_with(conv)
        graph.graph.erase_node(node)
        folded += 1
    graph.recompile()
    return folded


class GraphCapture(nn.Module):
    """Runs a torchvision model's graph up to the deepest node asked for, with
    in-place operations made out-of-place and batch norms folded into their
    convolutions.

    ``forward(x, names)`` returns ``{name: tensor of shape (N, *layer.shape)}``.
    """

    def __init__(self, net: nn.Module, layers: list[LayerSpec]) -> None:
        super().__init__()
        self.layers = {spec.name: spec for spec in layers}
        nodes = list(dict.fromkeys(s.module_path for s in layers))
        self.graph = _extractor(net.eval(), nodes).eval()
        out_of_place(self.graph)
        fold_batch_norms(self.graph)

    def forward(self, x: torch.Tensor, names=None) -> dict[str, torch.Tensor]:
        out = self.graph(x)
        return {n: out[self.layers[n].module_path] for n in (names or self.layers)}
