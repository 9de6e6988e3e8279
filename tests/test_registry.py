"""The registries are the only place a dataset, an attribute or a backend is named.

The acceptance test: a dataset registered here, by a test, with its loader, its prompt bank and its
files on disk, runs the whole pipeline with no other module edited.
"""

from pathlib import Path
from typing import get_args

import pytest
import yaml
from torchvision.datasets import ImageFolder
from typer.testing import CliRunner

from varireal import attributes, backends, colors, datasets, io, prompts, records, render
from varireal.datasets.sources import Sample, Source
from varireal.params import EditParams, ParamError, PromptParams, load

from dataset_layouts import TEST_PER_CLASS, TRAIN_PER_CLASS, write_jpeg

TOY_CLASSES = ["red_block", "blue_ball", "green_cone"]


def write_toy(root: Path) -> None:
    """toy/{train,test}/<class>/<n>.jpg: the class-per-folder layout torchvision's ImageFolder reads."""
    n = 0
    for name in TOY_CLASSES:
        for split, count in (("train", TRAIN_PER_CLASS), ("test", TEST_PER_CLASS)):
            for _ in range(count):
                n += 1
                write_jpeg(root / "toy" / split / name / f"{n:03d}.jpg", n)


def load_toy(root: Path, download: bool) -> Source:
    splits = {split: ImageFolder(root / "toy" / split) for split in ("train", "test")}

    def samples(folder: ImageFolder) -> list[Sample]:
        return [Sample(Path(path), label, "a toy") for path, label in folder.samples]

    return Source(splits["train"].classes, samples(splits["train"]), samples(splits["test"]))


def write_toy_bank(path: Path) -> Path:
    """Every class gets the same lists, drawn from the procedural values the composite editor paints."""
    defaults = {}
    for name in attributes.names():
        values = list(attributes.get(name).procedural)
        defaults[name] = {"feasible": values[:3], "infeasible": values[3:6]}
    palette = {value: colors.world_colours(value) for value in render.COLORS}  # every colour value has its colours
    path.write_text(yaml.safe_dump({"unknown_classes": "defaults", "defaults": defaults, "palette": palette}))
    return path


@pytest.fixture
def toy(tmp_path):
    """The toy dataset, registered for the test and forgotten after it."""
    spec = datasets.register(datasets.DatasetSpec(
        "toy", "a toy shape", load=load_toy, mask="grabcut", bank=write_toy_bank(tmp_path / "toy.yaml")))
    yield spec
    datasets.unregister("toy")
    prompts.load_bank.cache_clear()  # it holds the toy bank under the name "toy"


def run(*stages):
    from varireal_pipeline.cli import app

    for stage in stages:
        result = CliRunner().invoke(app, [stage])
        assert result.exit_code == 0, f"{stage}: {result.output}\n{result.exception!r}"


def test_a_registered_dataset_runs_the_whole_pipeline(project, tmp_path, toy):
    write_toy(tmp_path / "datasets")
    project(dataset={"name": "toy", "root": str(tmp_path / "datasets"), "shots": 2},
            train={"pretrained": None}, score={"pretrained": None})  # a real dataset: no world-CLIP
    run("fetch", "prompt", "edit", "pretrain", "score", "mix", "train", "eval")

    assert io.read_json("data/raw/classes.json") == sorted(TOY_CLASSES)  # ImageFolder sorts its folders
    assert {row["mask_method"] for row in io.read_csv("data/raw/train.csv")} <= {"grabcut", "box"}
    assert set(records.read_prompts("data/prompts.json").values) == set(TOY_CLASSES)
    manifest = io.read_csv("data/synthetic/manifest.csv")
    assert len(manifest) == len(TOY_CLASSES) * 2 * len(attributes.names()) * 2 * 2
    assert len(io.read_csv("metrics/predictions.csv")) == len(TOY_CLASSES) * TEST_PER_CLASS
    assert 0 <= io.read_json("metrics/eval.json")["top1"] <= 1


def test_registering_makes_a_name_valid_and_unknown_names_list_the_registered(project, toy):
    assert load(project(dataset={"name": "toy"})).dataset.name == "toy"
    with pytest.raises(ParamError) as err:
        load(project(dataset={"name": "imagenet"}))
    assert str(err.value) == (f"{Path('params.yaml').resolve()}: dataset.name='imagenet' is not allowed: "
                              f"unknown dataset; registered: {', '.join(datasets.names())}")
    assert "toy" in str(err.value)


def test_unknown_attributes_list_the_registered(project):
    with pytest.raises(ParamError, match="edit.attributes.0='smell' is not allowed: unknown attribute; "
                                         "registered: background, color, texture"):
        load(project(edit={"attributes": ["smell"]}))
    with pytest.raises(ParamError, match="mix.attribute='smell' .* registered: background, color, texture, all"):
        load(project(mix={"attribute": "smell"}))


def test_every_backend_the_schema_allows_has_a_factory():
    assert set(get_args(PromptParams.model_fields["backend"].annotation)) == set(backends.PROMPT_BACKENDS)
    assert set(get_args(EditParams.model_fields["backend"].annotation)) == set(backends.EDIT_BACKENDS)


def test_a_name_is_registered_once():
    with pytest.raises(ValueError, match="already registered"):
        datasets.register(datasets.DatasetSpec("world", "again", open=lambda params: None))
    with pytest.raises(ValueError, match="exactly one of load and open"):
        datasets.DatasetSpec("half", "no way to read it")
