"""featx export: every format holds exactly what the cache holds."""

import csv
import json

import numpy as np
import pytest
from click.testing import CliRunner

from featx import read_layer
from featx.cli import main


@pytest.mark.parametrize("fmt", ["npz", "csv", "parquet"])
@pytest.mark.slow
def test_each_format_round_trips_the_cache(digits, tmp_path, fmt):
    out = tmp_path / f"x.{fmt}"
    result = CliRunner().invoke(
        main,
        [
            "export",
            str(digits["train_cache"]),
            "-l",
            "fc7",
            "--format",
            fmt,
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    X, y, paths, classes = read_layer(digits["train_cache"], "fc7")
    if fmt == "npz":
        z = np.load(out)  # no allow_pickle needed
        got = z["features"], z["labels"], z["paths"].tolist(), z["classes"].tolist()
    elif fmt == "csv":
        with out.open(newline="") as f:
            rows = list(csv.reader(f))
        assert rows[0][:4] == ["path", "label", "class", "fc7_0"]
        features = np.array([[float(v) for v in r[3:]] for r in rows[1:]], np.float32)
        labels = np.array([int(r[1]) for r in rows[1:]])
        assert [r[2] for r in rows[1:]] == [classes[i] for i in y]
        got = features, labels, [r[0] for r in rows[1:]], classes
    else:
        import pyarrow.parquet as pq

        table = pq.read_table(out)
        features = np.array(table["features"].to_pylist(), np.float32)
        meta = table.schema.metadata
        got = (
            features,
            np.array(table["label"].to_pylist()),
            table["path"].to_pylist(),
            json.loads(meta[b"featx_classes"]),
        )
    np.testing.assert_array_equal(got[0], X)
    np.testing.assert_array_equal(got[1], y)
    assert got[2] == paths and got[3] == classes


@pytest.mark.slow
def test_a_missing_layer_is_named_with_the_command(digits, tmp_path):
    result = CliRunner().invoke(
        main,
        [
            "export",
            str(digits["train_cache"]),
            "-l",
            "fc6",
            "--out",
            str(tmp_path / "x"),
        ],
    )
    assert result.exit_code == 1
    assert "featx extract" in result.output and "--layer fc6" in result.output
    assert "--weights random --seed 0`" in result.output  # the cache's own weights
    assert not list(tmp_path.iterdir())
