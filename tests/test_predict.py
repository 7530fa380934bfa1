import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torchvision.models import alexnet

from featx import read_layer
from featx.cli import main
from featx.errors import WeightsError
from featx.fit import fit
from featx.predict import predict
from featx.predict.modelfile import ModelFileError, load_model, sidecar_path
from tests.test_images import write_odd_files


@pytest.fixture(scope="module")
def models(digits, tmp_path_factory):
    out = tmp_path_factory.mktemp("models")
    return {
        clf: fit(
            cache=digits["train_cache"],
            layer="fc7",
            clf=clf,
            cv=3,
            out=out / f"{clf}.skops",
        ).model_path
        for clf in ("logreg", "svm")
    }


@pytest.mark.parametrize("clf", ["logreg", "svm"])
def test_save_load_predict_round_trip(digits, models, clf):
    pipeline, meta = load_model(models[clf])
    assert meta["layer"] == "fc7" and meta["classes"] == [str(i) for i in range(10)]
    assert meta["weights_id"] == "random(seed=0)"
    X, _, paths, classes = read_layer(digits["test_cache"], "fc7")
    expected = {p: classes[k] for p, k in zip(paths, pipeline.predict(X), strict=True)}
    results = predict(models[clf], [digits["test"]], num_workers=0)
    assert len(results) == 100
    got = {str(r.path).split("Test/")[1]: r.label for r in results}
    assert got == expected
    kind = "probability" if clf == "logreg" else "decision"
    assert all(r.score_kind == kind for r in results)


def test_unreadable_images_do_not_stop_the_others(digits, models, tmp_path):
    (tmp_path / "broken.png").write_bytes(b"\x89PNG broken")
    one = next((digits["test"] / "3").iterdir())
    results = predict(models["logreg"], [tmp_path / "broken.png", one], num_workers=0)
    assert results[0].error == "not an image PIL can identify"
    assert results[0].label is None and results[1].label is not None


def test_tampered_or_unsigned_model_is_refused(models, tmp_path):
    blob = Path(models["svm"]).read_bytes()
    (tmp_path / "copy.skops").write_bytes(blob)
    with pytest.raises(ModelFileError, match=r"no copy.skops.sha256 beside it"):
        load_model(tmp_path / "copy.skops")
    sidecar_path(tmp_path / "copy.skops").write_text(
        sidecar_path(models["svm"]).read_text()
    )
    load_model(tmp_path / "copy.skops")  # an exact copy with its sidecar loads
    (tmp_path / "copy.skops").write_bytes(blob + b"\0")
    with pytest.raises(ModelFileError, match="does not match"):
        load_model(tmp_path / "copy.skops")


@pytest.mark.slow
def test_other_weights_are_refused(digits, models, tmp_path):
    torch.manual_seed(5)
    torch.save(alexnet().state_dict(), tmp_path / "other.pth")
    with pytest.raises(WeightsError, match="not the ones the model was trained on"):
        predict(models["logreg"], [digits["test"]], weights=str(tmp_path / "other.pth"))


def test_cli_predict_json_and_csv(digits, models):
    runner = CliRunner()
    image = str(next((digits["test"] / "7").iterdir()))
    out = runner.invoke(
        main,
        [
            "predict",
            "--model-file",
            models["logreg"],
            image,
            "--json",
            "-q",
            "--workers",
            "0",
        ],
        catch_exceptions=False,
    )
    rows = json.loads(out.stdout)  # machine-readable: stdout alone
    assert out.stderr.startswith("WARNING: random weights, NOT pretrained")
    assert rows[0]["path"] == image and rows[0]["label"] in [str(i) for i in range(10)]
    assert 0.0 <= rows[0]["score"] <= 1.0
    csv = runner.invoke(
        main,
        ["predict", "--model-file", models["svm"], image, "--csv", "-q"]
        + ["--workers", "0"],
        catch_exceptions=False,
    )
    header, row = csv.stdout.strip().splitlines()
    assert header == "path,label,score,score_kind,error" and row.startswith(image)
    assert np.isfinite(float(row.split(",")[2]))


def test_labelled_folder_gives_accuracy_and_true_classes(digits, models):
    pipeline, _ = load_model(models["logreg"])
    X, y, _, _ = read_layer(digits["test_cache"], "fc7")
    expected = float(np.mean(pipeline.predict(X) == y))
    result = CliRunner().invoke(
        main,
        ["predict", "--model-file", models["logreg"], str(digits["test"]), "-q"]
        + ["--workers", "0", "--top-k", "3"],
        catch_exceptions=False,
    )
    lines = result.stdout.strip().splitlines()
    assert lines[-1] == f"accuracy: {expected:.4f} on 100 labelled image(s)"
    first = lines[0].split("\t")
    true_class = first[0].split("/")[-2]
    assert first[3].startswith(f"true: {true_class} ")
    assert first[3].endswith(" ok" if first[1] == true_class else " WRONG")
    top = first[4].removeprefix("top: ").split(", ")
    assert len(top) == 3 and top[0].split()[0] == first[1]
    scores = [float(t.split()[1]) for t in top]
    assert scores == sorted(scores, reverse=True)


def test_top_k_in_json(digits, models):
    image = str(next((digits["test"] / "2").iterdir()))
    results = predict(models["svm"], [image], num_workers=0, top_k=4)
    assert len(results[0].top) == 4 and results[0].top[0][0] == results[0].label
    assert results[0].true_label is None  # a file given alone has no known class


# ------------------------------------- a folder whose cache exists is not re-run


@pytest.fixture
def count_decodes(monkeypatch):
    import featx.images

    decoded = []
    real = featx.images.decode_image
    monkeypatch.setattr(
        featx.images, "decode_image", lambda f, **kw: decoded.append(f) or real(f, **kw)
    )
    return decoded


@pytest.mark.slow
def test_a_matching_cache_is_read_instead_of_extracting(digits, models, count_decodes):
    extracted = predict(models["svm"], [digits["test"]], num_workers=0)
    assert len(count_decodes) == 100
    count_decodes.clear()
    reused = predict(
        models["svm"], [digits["test"]], num_workers=0, cache_dir=digits["cache_dir"]
    )
    assert not count_decodes  # no image was decoded: the cache had them all
    assert {r.cache for r in reused} == {str(digits["test_cache"])}
    by_path = {r.path: (r.label, round(r.score, 4)) for r in extracted}
    assert {r.path: (r.label, round(r.score, 4)) for r in reused} == by_path


def test_the_cli_says_which_cache_it_read(digits, models):
    result = CliRunner().invoke(
        main,
        ["predict", "--model-file", models["logreg"], str(digits["test"]), "-q"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    assert (
        f"features of 100 image(s) read from {digits['test_cache']} (same weights, "
        "preprocessing and layer as the model); --no-reuse extracts them anew"
    ) in result.stderr
    assert "accuracy:" in result.stdout


@pytest.mark.slow
@pytest.mark.parametrize("change", ["layer", "image", "no-reuse"])
def test_a_cache_that_does_not_match_is_not_read(
    digits, models, tmp_path, count_decodes, change
):
    import shutil

    from featx import extract

    folder = tmp_path / "Test"
    shutil.copytree(digits["test"], folder)
    layers = ["pool5"] if change == "layer" else ["fc7"]
    extract(folder, layers=layers, weights="random", cache_dir=tmp_path / "c",
            num_workers=0)  # fmt: skip
    if change == "image":  # one image changed since the cache was made
        victim = next((folder / "3").iterdir())
        shutil.copy(next((folder / "4").iterdir()), victim)
    count_decodes.clear()
    results = predict(
        models["logreg"], [folder], num_workers=0,
        cache_dir=None if change == "no-reuse" else tmp_path / "c",
    )  # fmt: skip
    assert len(count_decodes) == 100 and not any(r.cache for r in results)


def test_predict_says_what_its_scores_are(digits, models):
    for clf, text in (("svm", "decision values, not probabilities"),
                      ("logreg", "probability of the class")):  # fmt: skip
        result = CliRunner().invoke(
            main,
            ["predict", "--model-file", models[clf], "-q", "--no-reuse", "--workers",
             "0", str(next((digits["test"] / "1").iterdir()))],
            catch_exceptions=False,
        )  # fmt: skip
        assert result.exit_code == 0 and text in result.stderr
        assert text not in result.stdout


def test_files_pillow_gives_up_on_are_errors_and_the_others_predicted(
    digits, models, tmp_path
):
    reasons = write_odd_files(tmp_path)  # a real DDS, APNG and MPO
    one = next((digits["test"] / "3").iterdir())
    paths = [tmp_path / name for name in reasons] + [one]
    results = predict(models["logreg"], paths, num_workers=0)
    assert [r.error for r in results] == [*reasons.values(), ""]
    failed = [bool(why) for why in reasons.values()]
    assert [r.label is None for r in results] == [*failed, False]
