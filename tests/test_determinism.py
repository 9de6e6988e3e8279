"""Same params and seeds, two fresh folders: byte-identical data at every stage and the same top-1 on CPU.
(A fresh clone reproducing the committed dvc.lock is tested in test_pipeline.py.)"""

import shutil
from pathlib import Path

import pytest

from test_stages import STAGES, run
from varireal import io


def run_everything_in(folder: Path, params: Path, monkeypatch) -> Path:
    folder.mkdir()
    shutil.copy(params, folder / "params.yaml")
    monkeypatch.chdir(folder)
    run(*STAGES)
    return folder


def files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.slow  # tens of seconds: make test's 6-minute budget; CI runs it (make test-slow)
def test_two_fresh_runs_with_the_same_params_are_identical(project, tmp_path, monkeypatch):
    params = project(seed=3, train={"steps": 4, "seed": 1}, mix={"infeasible_ratio": 0.5})
    first = run_everything_in(tmp_path / "first", params, monkeypatch)
    second = run_everything_in(tmp_path / "second", params, monkeypatch)

    for relative in ["data/prompts.json", "data/synthetic/manifest.csv", "data/scores/scores.csv",
                     "data/mixed/train.csv", "data/raw/train.csv"]:
        assert (first / relative).read_bytes() == (second / relative).read_bytes(), relative
    images = files(first / "data/synthetic/images")
    assert len(images) == len(io.read_csv(first / "data/synthetic/manifest.csv")) > 0
    assert images == files(second / "data/synthetic/images")
    assert files(first / "models/lora") == files(second / "models/lora")  # the same weights, so ...
    top1 = [io.read_json(folder / "metrics/eval.json")["top1"] for folder in (first, second)]
    assert top1[0] == top1[1]  # ... the same top-1, exactly
    assert (first / "metrics/predictions.csv").read_bytes() == (second / "metrics/predictions.csv").read_bytes()
