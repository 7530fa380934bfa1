"""`--precision`: the forward pass's arithmetic is part of the cache's identity,
and bf16 on the CPU stays close to float32."""

import pytest
from click.testing import CliRunner

from featx import FeatureCache, extract
from featx.cli import main
from featx.compute.devices import default_precision, resolve_device
from featx.model import preprocess_for
from tests.numerics import rel_l2


def test_fp32_is_described_as_before_and_others_are_recorded():
    assert "precision" not in preprocess_for("alexnet").describe()
    assert preprocess_for("alexnet", precision="bf16").describe()["precision"] == "bf16"
    assert default_precision(resolve_device("cpu")) == "fp32"
    with pytest.raises(ValueError, match="`precision` must be one of 'fp32', 'bf16'"):
        preprocess_for("alexnet", precision="int8")


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
@pytest.mark.slow
def test_reduced_precision_has_its_own_cache_and_stays_close(
    image_folder, tmp_path, state_dict_file, precision
):
    kw = {"layers": ["conv5", "pool5", "fc7"], "weights": str(state_dict_file)}
    kw.update(cache_dir=tmp_path / "cache", num_workers=0)
    full = extract(image_folder, **kw)  # the CPU default: fp32
    low = extract(image_folder, precision=precision, **kw)
    assert low.cache_path != full.cache_path and low.n_new == full.n_new == 12
    with FeatureCache(full.cache_path) as a, FeatureCache(low.cache_path) as b:
        assert "precision" not in a.meta.transform
        assert b.meta.transform["precision"] == precision
        for layer in ("conv5", "pool5", "fc7"):
            # bf16 keeps 8 bits of mantissa: ~0.4% per operation, a few % in all
            err = rel_l2(b.read(layer), a.read(layer))
            assert 0 < err < 0.05, (layer, err)
    out = CliRunner().invoke(main, ["info", str(low.cache_path)])
    assert f"precision: {precision}" in out.output


def test_one_decode_default_and_the_settings_are_part_of_how_preprocess_is_made():
    """extract(), the transformer, serve and preprocess_for() share one default
    (choices.DEFAULT_DECODE); a Preprocess is made with its settings, never
    patched after (a caffe-alexnet one too)."""
    import inspect

    from featx.choices import DEFAULT_DECODE
    from featx.extraction import extract
    from featx.extraction.transformer import Features
    from featx.model import preprocess_for
    from featx.serve.spec import ServeSpec

    defaults = {
        inspect.signature(f).parameters["decode"].default
        for f in (extract, preprocess_for, Features.__init__)
    }
    assert defaults == {DEFAULT_DECODE} == {ServeSpec().decode}
    for model in ("alexnet", "caffe-alexnet"):
        made = preprocess_for(model, decode="exact", precision="bf16", decoder="pil")
        assert (made.decode, made.precision, made.decoder) == ("exact", "bf16", "pil")


def test_a_mean_for_a_network_that_takes_none_is_a_parameter_error():
    from featx.errors import ParameterError
    from featx.model import preprocess_for

    with pytest.raises(ParameterError, match="mean"):
        preprocess_for("alexnet", mean="m.npy")
