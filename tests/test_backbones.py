"""Other networks than AlexNet: torchvision's and timm's, through featx's
extraction, compared with the libraries' own feature extraction on the same
weights and the same preprocessing (their weights enum's or data config's)."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.models import get_model, get_model_weights
from torchvision.models.feature_extraction import create_feature_extractor

from featx import extract
from featx.cache import FeatureCache
from featx.errors import LayerError, ParameterError, WeightsError
from featx.model import layer_table, load_weights, resolve_layers
from tests.conftest import write_folder
from tests.numerics import rel_l2

#: The largest relative L2 distance between featx's rows and the reference's.
RTOL = 1e-4


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Two classes of three PNGs of various sizes."""
    return write_folder(tmp_path_factory.mktemp("imgs") / "data", {"a": 2, "b": 2})


def _images(folder, transforms) -> torch.Tensor:
    paths = sorted(folder.rglob("*.png"))
    return torch.stack([transforms(Image.open(p).convert("RGB")) for p in paths])


def _planted(tmp_path, name: str, **kwargs):
    """A seeded random torchvision network and its state dict saved to a file."""
    torch.manual_seed(7)
    net = get_model(name, weights=None, **kwargs).eval()
    path = tmp_path / f"{name}.pth"
    torch.save(net.state_dict(), path)
    return net, path


def _rows(folder, cache_dir, name, weights, groups) -> dict[str, np.ndarray]:
    """featx's rows of each (layer, spatial) in ``groups``, in path order."""
    for spatial, layers in groups.items():
        extract(
            folder,
            layers=layers,
            spatial=spatial,
            model=name,
            weights=str(weights),
            cache_dir=cache_dir,
            num_workers=0,
            decode="exact",
        )
    [path] = cache_dir.glob("*.h5")
    with FeatureCache(path) as cache:
        order = np.argsort(cache.paths)
        return {key: cache.read(key)[order] for key in cache.layers}


def _pool(x: torch.Tensor, spatial: str) -> np.ndarray:
    if spatial == "avg":
        x = x.mean(dim=(2, 3))
    elif spatial == "cls":
        x = x[:, 0]
    return x.flatten(1).numpy()


# (model, {spatial: [layer]}, {featx key: (reference node, pooling)})
TORCHVISION_CASES = [
    pytest.param(
        "resnet18",
        {"none": ["layer3", "avgpool"], "avg": ["layer4"]},
        {
            "layer3": ("layer3", "none"),
            "layer4_avg": ("layer4", "avg"),
            "avgpool": ("avgpool", "none"),
        },
        id="resnet18",
    ),
    pytest.param(
        "vgg16",
        {"none": ["fc7"]},
        {"fc7": ("classifier.4", "none")},  # Caffe's fc7: after its ReLU
        id="vgg16",
        marks=pytest.mark.slow,
    ),
    pytest.param(
        "efficientnet_b0",
        {"avg": ["features.8"], "none": ["flatten"]},
        {"features.8_avg": ("features.8", "avg"), "flatten": ("flatten", "none")},
        id="efficientnet_b0",
    ),
    pytest.param(
        "vit_b_16",
        {"cls": ["encoder.layers.encoder_layer_11"]},
        {
            "encoder.layers.encoder_layer_11_cls": (
                "encoder.layers.encoder_layer_11",
                "cls",
            )
        },
        id="vit_b_16",
        marks=pytest.mark.slow,
    ),
    pytest.param(
        "convnext_tiny",
        {"avg": ["features.7"], "none": ["classifier.1"]},
        {
            "features.7_avg": ("features.7", "avg"),
            "classifier.1": ("classifier.1", "none"),
        },
        id="convnext_tiny",
        marks=pytest.mark.slow,
    ),
]


@pytest.mark.parametrize(("name", "groups", "expected"), TORCHVISION_CASES)
@pytest.mark.slow
def test_rows_equal_create_feature_extractor(tmp_path, folder, name, groups, expected):
    net, weights = _planted(tmp_path, name)
    rows = _rows(folder, tmp_path / "cache", name, weights, groups)
    assert sorted(rows) == sorted(expected)
    x = _images(folder, get_model_weights(name).DEFAULT.transforms())
    nodes = sorted({node for node, _ in expected.values()})
    extractor = create_feature_extractor(net, {n: n for n in nodes})
    with torch.no_grad():
        ref = extractor(x)
    for key, (node, spatial) in expected.items():
        want = _pool(ref[node], spatial)
        assert rows[key].shape == want.shape, key
        assert rel_l2(rows[key], want) < RTOL, key


@pytest.mark.slow
def test_timm_rows_equal_forward_intermediates(tmp_path, folder):
    timm = pytest.importorskip("timm")
    from safetensors.torch import save_file
    from timm.data import create_transform, resolve_data_config

    torch.manual_seed(3)
    net = timm.create_model("resnet18", pretrained=False).eval()
    weights = tmp_path / "resnet18-planted.safetensors"
    save_file(net.state_dict(), str(weights))
    groups = {"none": ["layer3", "pre_logits"], "avg": ["layer4"]}
    rows = _rows(folder, tmp_path / "cache", "timm:resnet18", weights, groups)
    transform = create_transform(**resolve_data_config({}, model=net))
    x = _images(folder, transform)
    with torch.no_grad():
        layer3, layer4 = net.forward_intermediates(
            x, indices=[3, 4], intermediates_only=True
        )
        pre_logits = net.forward_head(net.forward_features(x), pre_logits=True)
    assert rel_l2(rows["layer3"], layer3.flatten(1).numpy()) < RTOL
    assert rel_l2(rows["layer4_avg"], layer4.mean(dim=(2, 3)).numpy()) < RTOL
    assert rel_l2(rows["pre_logits"], pre_logits.numpy()) < RTOL


def test_captured_nodes_keep_their_values_before_in_place_operations():
    """resnet18's bn1 feeds an in-place ReLU: torchvision's own extractor, asked
    for bn1 and a deeper node, returns the rectified values; featx the node's."""
    from featx.model import backbone

    torch.manual_seed(0)
    net = get_model("resnet18", weights=None).eval()
    x = torch.randn(2, 3, 64, 64)
    specs = resolve_layers(["bn1", "layer1"], "resnet18")
    ours = backbone("resnet18").capture(copy.deepcopy(net), specs)
    with torch.no_grad():
        got = ours(x)
        clean = copy.deepcopy(net)
        for module in clean.modules():
            if hasattr(module, "inplace"):
                module.inplace = False
        want = create_feature_extractor(clean, ["bn1", "layer1"])(x)
        clobbered = create_feature_extractor(copy.deepcopy(net), ["bn1", "layer1"])(x)
    assert got["bn1"].min() < 0 and clobbered["bn1"].min() >= 0
    torch.testing.assert_close(got["bn1"], want["bn1"])
    torch.testing.assert_close(got["layer1"], want["layer1"])


@pytest.mark.slow
def test_layer_tables_name_nodes_aliases_and_kinds():
    resnet = {spec.name: spec for spec in layer_table("resnet18")}
    assert [*resnet][:6] == ["layer1", "layer2", "layer3", "layer4", "avgpool", "fc"]
    assert resnet["layer4"].module_path == "layer4.1.relu_1"
    assert resnet["layer4"].shape == (512, 7, 7) and resnet["fc"].shape == (1000,)
    vgg = {spec.name: spec for spec in layer_table("vgg16")}
    assert vgg["conv5_3"].module_path == "features.29"  # the ReLU after conv5_3
    assert vgg["pool5"].module_path == "features.30"
    assert (vgg["fc6"].module_path, vgg["fc8"].module_path) == (
        "classifier.1",
        "classifier.6",
    )
    vit = {spec.name: spec for spec in layer_table("vit_b_16")}
    assert vit["encoder.ln"].kind == "tokens" and vit["encoder.ln"].shape == (197, 768)
    assert vit["encoder.ln"].poolings == ("cls", "avg", "max")
    swin = {spec.name: spec for spec in layer_table("swin_t")}
    assert swin["features.7.1.add_1"].kind == "hwc"  # Swin's stages are (H, W, C)
    assert swin["permute"].kind == "map"
    # every torchvision node of the eval graph is there, in graph order
    from torchvision.models.feature_extraction import get_graph_node_names

    # every node is there once, in graph order (avgpool and fc with the aliases)
    nodes = get_graph_node_names(get_model("resnet18"))[1][1:]
    paths = [spec.module_path for spec in layer_table("resnet18")[6:]]
    assert paths == [n for n in nodes if n not in ("avgpool", "fc")]
    assert (
        vit["encoder_layer_11"].module_path == "encoder.layers.encoder_layer_11.add_1"
    )
    # what is neither a map nor tokens is never pooled: ViT's patches on their
    # way to tokens, maxvit's (windows, tokens, channels), GoogLeNet's slices
    assert vit["reshape"].kind == "other" and vit["reshape"].poolings == ()
    maxvit = {spec.name: spec for spec in layer_table("maxvit_t")}
    window = "blocks.0.layers.0.layers.window_attention.add_1"
    assert maxvit[window].kind == "other", maxvit[window]
    # one row per image: maxvit's (heads, 49, 49) attention biases are no layers
    assert all(
        spec.shape[-2:] != (49, 49) or spec.kind == "other" for spec in maxvit.values()
    )
    assert not any(spec.shape == (49, 49) for spec in maxvit.values())


def test_unknown_models_and_layers_say_what_is_valid():
    with pytest.raises(LayerError, match="did you mean 'resnet18'"):
        layer_table("resnet81")
    with pytest.raises(LayerError, match=r"unknown layer 'layer5' of resnet18.*layer4"):
        resolve_layers(["layer5"], "resnet18")
    from featx.extraction.api import layer_spatial

    with pytest.raises(ParameterError, match="spatial=.cls. does not apply to layer4"):
        layer_spatial(resolve_layers(["layer4"], "resnet18")[0], "cls")
    with pytest.raises(ParameterError, match="neither a map nor a token sequence"):
        layer_spatial(resolve_layers(["reshape"], "vit_b_16")[0], "avg")
    assert layer_spatial(resolve_layers(["fc"], "resnet18")[0], "avg") == "none"


def test_an_unknown_timm_model_or_tag_says_what_is_valid():
    pytest.importorskip("timm")
    with pytest.raises(
        LayerError, match="has no pretrained tag 'a1_in1kk'.*'timm:resnet18.a1_in1k'"
    ):
        layer_table("timm:resnet18.a1_in1kk")
    with pytest.raises(LayerError, match="timm has no model 'resnet811'"):
        layer_table("timm:resnet811")


def test_imagenet_weights_offline_say_where_to_put_the_file(tmp_path):
    with pytest.raises(WeightsError) as caught:
        load_weights("imagenet", model="resnet50")
    message = str(caught.value)
    assert message.startswith("pretrained resnet50 weights are not cached")
    assert "resnet50-11ad3fa6.pth" in message  # ResNet50_Weights.DEFAULT is V2
    assert "--weights random" in message and "\n" not in message


def test_imagenet_weights_from_the_hub_cache(tmp_path, monkeypatch):
    """A file planted where torch's hub keeps ResNet-18's DEFAULT weights is
    what ``--weights imagenet`` loads, with the enum's transforms."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "home"))
    net, path = _planted(tmp_path, "resnet18")
    entry = get_model_weights("resnet18").DEFAULT
    target = tmp_path / "home" / "hub" / "checkpoints" / entry.url.rsplit("/", 1)[1]
    target.parent.mkdir(parents=True)
    target.symlink_to(path)
    loaded = load_weights("imagenet", model="resnet18")
    assert (
        loaded.pretrained
        and loaded.weights_id == "torchvision:ResNet18_Weights.IMAGENET1K_V1"
    )
    for key, value in net.state_dict().items():
        torch.testing.assert_close(loaded.model.state_dict()[key], value)


def test_a_state_dict_of_another_network_is_refused(tmp_path, state_dict_file):
    with pytest.raises(WeightsError, match=r"is not a resnet18 state dict: missing"):
        load_weights(str(state_dict_file), model="resnet18")


@pytest.fixture(scope="module")
def resnet_cache(tmp_path_factory):
    """resnet18 (random weights) features of 8 images, then of 4 more added to
    the folder: the second run computes only the new ones."""
    root = tmp_path_factory.mktemp("resnet")
    data = write_folder(root / "data", {"cats": 4, "dogs": 4})
    cache_dir = root / "cache"
    args = {"model": "resnet18", "weights": "random", "cache_dir": cache_dir}
    first = extract(data, layers=["avgpool", "layer4"], spatial="avg", views="flip",
                    num_workers=0, **args)  # fmt: skip
    with FeatureCache(first.cache_path) as cache:
        before = {
            p: row
            for p, row in zip(cache.paths, cache.read("avgpool_avg"), strict=True)
        }
    write_folder(root / "more", {"cats": 2, "dogs": 2}, seed=5)
    for path in (root / "more").rglob("*.png"):
        path.rename(data / path.parent.name / f"new-{path.name}")
    second = extract(data, layers=["avgpool", "layer4"], spatial="avg", views="flip",
                     num_workers=0, **args)  # fmt: skip
    return {"data": data, "cache_dir": cache_dir, "first": first, "second": second,
            "before": before, "args": args}  # fmt: skip


@pytest.mark.slow
def test_resume_and_views_with_another_network(resnet_cache):
    first, second = resnet_cache["first"], resnet_cache["second"]
    assert first.cache_path == second.cache_path
    assert first.cache_path.name.startswith("data-resnet18-random-")
    assert (first.n_new, second.n_new, second.n_images) == (8, 4, 12)
    with FeatureCache(second.cache_path) as cache:
        assert set(cache.all_layers) == {
            "avgpool_avg", "avgpool_avg@flip", "layer4_avg", "layer4_avg@flip"
        }  # fmt: skip
        assert cache.views("avgpool_avg") == ("center", "flip")
        assert cache.meta.model == "resnet18"
        rows = dict(zip(cache.paths, cache.read("avgpool_avg"), strict=True))
        flipped = cache.read("avgpool_avg@flip")
        assert cache.layers["layer4_avg"].dim == 512
    for path, row in resnet_cache["before"].items():
        np.testing.assert_array_equal(rows[path], row)  # the old rows, untouched
    assert not np.allclose(flipped, np.stack(list(rows.values())))
    # avgpool is layer4 averaged: the two layers agree
    with FeatureCache(second.cache_path) as cache:
        np.testing.assert_allclose(
            cache.read("layer4_avg"), cache.read("avgpool_avg"), rtol=1e-5, atol=1e-6
        )


def test_export_and_transformer_with_another_network(resnet_cache, tmp_path):
    from featx import Features
    from featx.cache.export import export

    path = resnet_cache["second"].cache_path
    out = export(path, "avgpool_avg", "npz", tmp_path / "rows.npz")
    with FeatureCache(path) as cache, np.load(out, allow_pickle=False) as saved:
        rows = cache.read("avgpool_avg")
        paths = [str(resnet_cache["data"] / p) for p in cache.paths]
        np.testing.assert_array_equal(saved["features"], rows)
    features = Features(
        model="resnet18", layer="avgpool", spatial="avg", weights="random",
        cache_dir=resnet_cache["cache_dir"], num_workers=0,
    )  # fmt: skip
    got = features.fit_transform(paths)
    np.testing.assert_array_equal(got, rows)  # read from the same cache
    assert features.get_feature_names_out()[0] == "avgpool_avg_0"
    assert got.shape == (12, 512)


@pytest.mark.slow
def test_fit_and_predict_with_another_network(resnet_cache, tmp_path):
    import shutil

    from featx.fit import fit
    from featx.predict import predict
    from featx.predict.modelfile import load_model

    result = fit(cache=resnet_cache["second"].cache_path, layer="avgpool_avg",
                 clf="logreg", cv=2, out=tmp_path / "m.skops")  # fmt: skip
    pipeline, meta = load_model(result.model_path)
    assert meta["model"] == "resnet18"
    copy_dir = tmp_path / "copy"  # another folder: features computed afresh
    shutil.copytree(resnet_cache["data"], copy_dir)
    results = predict(result.model_path, [copy_dir], num_workers=0)
    with FeatureCache(resnet_cache["second"].cache_path) as cache:
        labels = pipeline.predict(cache.read("avgpool_avg"))
        want = {p: meta["classes"][k] for p, k in zip(cache.paths, labels, strict=True)}
    got = {Path(r.path).relative_to(copy_dir).as_posix(): r.label for r in results}
    assert got == want


@pytest.mark.slow
def test_every_torchvision_model_lists_its_layers():
    from featx.model.torchvision_nets import torchvision_models

    for name in torchvision_models():
        table = layer_table(name)
        assert len(table) > 10, name
        last = max(table, key=lambda spec: spec.index)  # the logits
        assert last.kind == "vector" and last.shape == (1000,), (name, last)
        assert len({spec.name for spec in table}) == len(table), name


def test_batch_norms_fold_into_their_convolutions_but_not_under_a_capture():
    """The capture folds resnet18's batch norms (and keeps the loaded network's
    own); a convolution asked for keeps its pre-norm output."""
    from featx.model import backbone

    torch.manual_seed(0)
    net = get_model("resnet18", weights=None).eval()
    for module in net.modules():  # non-trivial statistics, or folding is a no-op
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    specs = resolve_layers(["layer1.0.conv2", "layer4", "fc"], "resnet18")
    capture = backbone("resnet18").capture(net, specs)
    graph = capture.graph
    norms = [
        n
        for n in graph.graph.nodes
        if n.op == "call_module"
        and isinstance(graph.get_submodule(n.target), torch.nn.BatchNorm2d)
    ]
    assert [n.target for n in norms] == ["layer1.0.bn2"]  # under the captured conv
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules()) == 20
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        got = capture(x)
        want = create_feature_extractor(
            copy.deepcopy(net), ["layer1.0.conv2", "layer4", "fc"]
        )(x)
    for name in ("layer1.0.conv2", "layer4", "fc"):
        assert rel_l2(got[name], want[name]) < 1e-5, name


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "resnet50", "--layer", "layr4"], "did you mean 'layer4'?"),
        (
            ["--model", "resnet50", "--layer", "layer4", "--spatial", "cls"],
            "--spatial cls does not apply to layer4, a map of shape [2048, 7, 7]",
        ),
        (["--model", "resnt50", "--layer", "fc"], "did you mean 'resnet50'?"),
    ],
)
def test_the_cli_refuses_layers_and_models_before_loading_weights(
    folder, args, message
):
    """Offline with --weights imagenet, loading would fail: the layer, the
    pooling and the model are refused first, in one line."""
    from click.testing import CliRunner

    from featx.cli import main

    result = CliRunner().invoke(main, ["extract", *args, str(folder)])
    assert result.exit_code != 0
    [line] = [x for x in result.output.splitlines() if x.startswith("Error")]
    assert message in line and "weights" not in line
