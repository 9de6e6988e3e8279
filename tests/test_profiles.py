"""Profiles: `varireal profile NAME` sets the paper's setup through `dvc exp run -S`."""

import os
import shutil

import pytest
import yaml
from dvc.utils.hydra import apply_overrides
from typer.testing import CliRunner

from varireal_pipeline import profiles
from varireal_pipeline.cli import app
from varireal.params import load, validate

from conftest import REPO

PROFILES = sorted(p.stem for p in (REPO / "profiles").glob("*.yaml"))


def test_every_dataset_has_a_profile():
    assert {"pets", "aircraft", "cars", "flowers102", "paper"} <= set(PROFILES)


@pytest.mark.parametrize("name", PROFILES)
def test_dvc_reads_the_overrides_back_as_the_profile_says(name, tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    profile = profiles.load(name)
    params_file = tmp_path / "params.yaml"
    shutil.copy(REPO / "params.yaml", params_file)
    apply_overrides(params_file, profiles.overrides(profile))  # what `dvc exp run -S` does to params.yaml

    expected = validate(profiles.merged(yaml.safe_load((REPO / "params.yaml").read_text()), profile), name)
    assert load(params_file) == expected
    if name != "paper":
        assert expected.dataset.name == name and expected.train.model == "ViT-B-16"
        assert expected.train.lora.target_modules == ["q_proj", "v_proj"] and expected.edit.backend == "diffusion"


def test_strings_that_look_like_other_types_survive_the_round_trip(tmp_path):
    awkward = {"tracking": {"experiment": "it's a \\ test, [x]"}, "prompt": {"model": "1e-4", "base_url": "C:\\dir\\"},
               "train": {"pretrained": "true"}, "edit": {"model": "null"}}
    params_file = tmp_path / "params.yaml"
    shutil.copy(REPO / "params.yaml", params_file)
    apply_overrides(params_file, profiles.overrides(awkward))
    params = load(params_file)
    assert (params.tracking.experiment, params.prompt.model, params.prompt.base_url, params.train.pretrained,
            params.edit.model) == ("it's a \\ test, [x]", "1e-4", "C:\\dir\\", "true", "null")


def test_profile_runs_dvc_exp_run_with_the_overrides_then_the_extra_arguments(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    (fake_bin / "dvc").write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {tmp_path}/args\nexit 3\n')
    (fake_bin / "dvc").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake_bin}{os.pathsep}{os.environ['PATH']}")

    result = CliRunner().invoke(app, ["profile", "pets", "--queue", "-S", "train.seed=1"])
    assert result.exit_code == 3  # dvc's exit code is the command's
    args = (tmp_path / "args").read_text().splitlines()
    expected = ["exp", "run"] + [a for o in profiles.overrides(profiles.load("pets")) for a in ("-S", o)]
    assert args == expected + ["--queue", "-S", "train.seed=1"]


def test_a_bad_profile_is_refused_before_dvc_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    bad = tmp_path / "bad.yaml"
    bad.write_text("inherit: paper\ntrain: {lr: -1}\n")
    result = CliRunner().invoke(app, ["profile", str(bad), "--dry-run"])
    assert result.exit_code == 2 and "train.lr=-1" in result.output and "dvc exp run" not in result.output

    bad.write_text("train: {learning_rate: 0.1}\n")
    result = CliRunner().invoke(app, ["profile", str(bad), "--dry-run"])
    assert result.exit_code == 2 and "train.learning_rate" in result.output and "not a key" in result.output

    result = CliRunner().invoke(app, ["profile", "no-such-profile"])
    assert result.exit_code == 1 and "no profile profiles/no-such-profile.yaml" in result.output
    assert "pets" in result.output
