"""The embedded default at full size: a meaningful experiment, not a smoke test. Slow (a few minutes)."""

import shutil

import pytest
from typer.testing import CliRunner

from varireal import io
from varireal_pipeline.cli import app

from conftest import REPO


@pytest.mark.slow
def test_embedded_default_is_well_above_chance_and_below_saturation(tmp_path, monkeypatch):
    shutil.copy(REPO / "params.yaml", tmp_path)
    monkeypatch.chdir(tmp_path)
    for stage in ["fetch", "prompt", "edit", "pretrain", "mix", "train", "eval"]:
        result = CliRunner().invoke(app, [stage])
        assert result.exit_code == 0, result.output
    top1 = io.read_json("metrics/eval.json")["top1"]
    chance = 1 / len(io.read_json("data/raw/classes.json"))
    assert 3 * chance < top1 < 0.9
