import json

import pytest
from click.testing import CliRunner

import featx
from featx.cli import main
from featx.errors import ParameterError


def invoke(*args, **kw):
    return CliRunner().invoke(
        main, [str(a) for a in args], catch_exceptions=False, **kw
    )


def assert_one_line_error(result, text):
    assert result.exit_code != 0
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1 and text in lines[0], result.output


def all_commands():
    return sorted(main.commands)


@pytest.mark.parametrize("command", all_commands())
def test_every_command_has_help(command):
    result = invoke(command, "--help")
    assert result.exit_code == 0
    assert (
        "Usage: main " + command in result.output
        or f"{command} [OPTIONS]" in result.output
    )
    assert len(main.commands[command].help or "") > 40


def test_top_level_help_and_version():
    result = invoke("-h")
    assert result.exit_code == 0 and "featx extract --layer conv5" in result.output
    assert invoke("--version").output.split()[-1] == featx.__version__


def test_layers_lists_names_shapes_and_sizes():
    result = invoke("layers")
    assert result.exit_code == 0
    for line in ("pool5", "256x6x6", "9216", "fc7", "classifier.5", "features.10"):
        assert line in result.output
    rows = json.loads(invoke("layers", "--json").output)
    assert {
        "name": "conv1",
        "module_path": "features.1",
        "shape": [64, 55, 55],
        "dim": 193600,
        "kind": "map",
        "spatial": ["none", "avg", "max"],
    } in rows
    fc7 = next(row for row in rows if row["name"] == "fc7")
    assert fc7["kind"] == "vector" and fc7["spatial"] == ["none"]


def test_extract_then_info(image_folder, cache_dir):
    args = ["--weights", "random", "--workers", "0", "--cache-dir", cache_dir, "-q"]
    result = invoke(
        "extract", image_folder, "--layer", "conv5", "--layer", "fc7", *args
    )
    assert result.exit_code == 0, result.output
    assert "images:  12 (12 new, 0 reused, 0 failed)" in result.output
    assert "NOT pretrained" in result.output
    again = invoke("extract", image_folder, "-l", "fc7", *args)
    assert "images:  12 (0 new, 12 reused, 0 failed)" in again.output
    data = json.loads(invoke("info", "--cache-dir", cache_dir, "--json").output)
    assert data["n_images"] == 12 and data["n_failed"] == 0
    assert data["layers"]["conv5"] == {
        **data["layers"]["conv5"],
        "dim": 43264,
        "dtype": "float32",
    }
    assert data["classes"] == {"cats": 6, "dogs": 6}
    assert data["weights"]["id"] == "random(seed=0)"
    assert not data["weights"]["pretrained"]
    text = invoke("info", "--cache-dir", cache_dir).output
    assert "fc7" in text and "cats" in text and "NOT pretrained" in text


def test_layer_typo_is_refused_before_any_work(image_folder, cache_dir):
    result = invoke("extract", image_folder, "--layer", "fc9", "--cache-dir", cache_dir)
    assert_one_line_error(result, "unknown layer 'fc9'; valid names: conv1")
    assert not cache_dir.exists()


@pytest.mark.parametrize(
    ("setup", "text"),
    [
        (lambda p: p / "missing", "does not exist"),
        (lambda p: (p / "empty").mkdir() or p / "empty", "no images in"),
        (
            lambda p: (p / "file.txt").write_text("x") and p / "file.txt",
            "is not a folder",
        ),
    ],
)
def test_bad_data_dir(tmp_path, setup, text):
    result = invoke(
        "extract",
        setup(tmp_path),
        "-l",
        "fc7",
        "--weights",
        "random",
        "--cache-dir",
        tmp_path / "c",
    )
    assert_one_line_error(result, text)


def test_all_images_unreadable(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.jpg").write_bytes(b"nope")
    result = invoke(
        "extract",
        tmp_path / "d",
        "-l",
        "fc7",
        "--weights",
        "random",
        "--workers",
        "0",
        "--cache-dir",
        tmp_path / "c",
        "-q",
    )
    assert "failed:  a.jpg: not an image" in result.output
    assert_one_line_error(result, "no image could be decoded")


def test_offline_imagenet_weights_explain_what_to_do(image_folder, cache_dir):
    result = invoke("extract", image_folder, "-l", "fc7", "--cache-dir", cache_dir)
    assert_one_line_error(result, "alexnet-owt-7be5be79.pth")
    assert "--weights PATH" in result.output


def test_bad_weights_file(image_folder, tmp_path):
    (tmp_path / "w.pth").write_bytes(b"garbage")
    result = invoke(
        "extract",
        image_folder,
        "-l",
        "fc7",
        "--weights",
        tmp_path / "w.pth",
        "--cache-dir",
        tmp_path / "c",
    )
    assert_one_line_error(result, "cannot load")


def test_info_without_cache(tmp_path):
    result = invoke("info", "--cache-dir", tmp_path)
    assert_one_line_error(result, "no cache in")


def test_bad_device(image_folder, cache_dir):
    result = invoke(
        "extract",
        image_folder,
        "-l",
        "fc7",
        "--device",
        "tpu",
        "--weights",
        "random",
        "--cache-dir",
        cache_dir,
    )
    assert_one_line_error(
        result, "Invalid value for '--device': 'tpu' is not one of auto, cpu, cuda"
    )


def test_library_errors_name_the_parameter(image_folder, cache_dir):
    with pytest.raises(ParameterError) as info:
        featx.extract(image_folder, device="tpu", weights="random")
    assert str(info.value) == (
        "`device` must be one of 'auto', 'cpu', 'cuda', 'cuda:N'. Got 'tpu'."
    )
    with pytest.raises(ParameterError, match=r"`spatial` must be one of .* Got 'sum'"):
        featx.extract(image_folder, spatial="sum", weights="random")
