import copy

import pytest
import torch
from torchvision.models import alexnet

from featx.errors import LayerError, WeightsError
from featx.model import (
    FRIENDLY_LAYERS,
    FeatureNet,
    hub_weights_file,
    layer_table,
    load_weights,
    resolve_layers,
)
from tests.conftest import reference


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return alexnet().eval()


@pytest.fixture(scope="module")
def batch():
    return torch.randn(3, 3, 224, 224, generator=torch.Generator().manual_seed(1))


def test_friendly_layers_match_create_feature_extractor(model, batch):
    specs = resolve_layers(list(FRIENDLY_LAYERS))
    net = FeatureNet(copy.deepcopy(model), specs)
    with torch.no_grad():
        ours = net(batch)
    # Friendly layers are post-ReLU (or pool / logits), so torchvision's default
    # in-place model is a valid reference for them.
    ref = reference(model, list(FRIENDLY_LAYERS.values()), batch, inplace=True)
    for name, path in FRIENDLY_LAYERS.items():
        torch.testing.assert_close(ours[name], ref[path], rtol=1e-5, atol=1e-6)


def test_pre_relu_module_paths_are_not_overwritten(model, batch):
    paths = ["features.0", "features.10", "classifier.1", "classifier.4", "avgpool"]
    net = FeatureNet(copy.deepcopy(model), resolve_layers(paths))
    with torch.no_grad():
        ours = net(batch)
    ref = reference(model, paths, batch, inplace=False)
    for path in paths:
        torch.testing.assert_close(ours[path], ref[path], rtol=1e-5, atol=1e-6)
    # A convolution's raw output has negative values. With a deeper node also
    # requested, torchvision's in-place ReLU erases them from its own capture.
    assert ours["features.10"].min() < 0
    clobbered = reference(model, ["features.10", "features.12"], batch, inplace=True)
    assert clobbered["features.10"].min() >= 0


def test_forward_stops_at_the_deepest_requested_layer(model, batch):
    net = FeatureNet(copy.deepcopy(model), resolve_layers(["conv2", "conv5"]))
    assert net.paths[-1] == "features.11"
    assert not any(p.startswith("classifier") for p in net.paths)
    called = []
    net.chain[-1].register_forward_hook(lambda *a: called.append(1))
    with torch.no_grad():
        out = net(batch, ["conv2"])  # only conv2 needed: stops before conv5
    assert set(out) == {"conv2"} and not called


def test_layer_table_shapes():
    table = {s.name: s for s in layer_table()}
    assert table["pool5"].shape == (256, 6, 6) and table["pool5"].dim == 9216
    assert table["conv1"].shape == (64, 55, 55)
    assert table["fc6"].dim == 4096 and table["fc8"].dim == 1000
    assert table["features.10"].module_path == "features.10"


def test_unknown_layer_lists_valid_names():
    with pytest.raises(LayerError, match=r"unknown layer 'fc9'.*conv1, conv2.*fc8"):
        resolve_layers(["fc7", "fc9"])


def test_random_weights_are_seeded_and_marked():
    a, b = load_weights("random", seed=3), load_weights("random", seed=3)
    assert a.sha256 == b.sha256 and not a.pretrained
    assert "NOT pretrained" in a.source
    assert load_weights("random", seed=4).sha256 != a.sha256


def test_state_dict_file_loads(state_dict_file):
    loaded = load_weights(str(state_dict_file))
    expected = torch.load(state_dict_file, weights_only=True)
    torch.testing.assert_close(
        loaded.model.state_dict()["features.0.weight"], expected["features.0.weight"]
    )
    assert loaded.pretrained and loaded.weights_id == "file:alexnet-seeded.pth"


@pytest.mark.slow
def test_wrong_keys_and_shapes_are_explained(tmp_path, state_dict_file):
    state = torch.load(state_dict_file, weights_only=True)
    state.pop("classifier.6.bias")
    torch.save(state, tmp_path / "missing.pth")
    with pytest.raises(WeightsError, match="missing classifier.6.bias"):
        load_weights(str(tmp_path / "missing.pth"))
    state = torch.load(state_dict_file, weights_only=True)
    state["classifier.6.weight"] = torch.zeros(10, 4096)
    state["classifier.6.bias"] = torch.zeros(10)
    torch.save(state, tmp_path / "shape.pth")
    with pytest.raises(
        WeightsError, match=r"classifier.6.weight has shape \(10, 4096\)"
    ):
        load_weights(str(tmp_path / "shape.pth"))
    (tmp_path / "junk.pth").write_bytes(b"not a torch file")
    with pytest.raises(WeightsError, match="cannot load"):
        load_weights(str(tmp_path / "junk.pth"))
    with pytest.raises(WeightsError, match="'imagenett' is none of these"):
        load_weights("imagenett")


def test_imagenet_offline_says_where_to_put_the_file():
    with pytest.raises(WeightsError) as info:
        load_weights("imagenet")
    message = str(info.value)
    assert "alexnet-owt-7be5be79.pth" in message
    assert str(hub_weights_file()) in message and "--weights PATH" in message


@pytest.mark.slow
def test_imagenet_weights_from_the_hub_cache(planted_torch_home, state_dict_file):
    loaded = load_weights("imagenet")
    assert loaded.pretrained
    assert loaded.weights_id == "torchvision:AlexNet_Weights.IMAGENET1K_V1"
    assert loaded.sha256 == load_weights(str(state_dict_file)).sha256
