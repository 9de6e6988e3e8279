"""fetch on the real datasets: small fixtures in each dataset's real on-disk layout, read by torchvision
through `varireal fetch` with download off."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from varireal import io
from varireal.datasets.real import shot_order
from varireal.datasets.sources import Sample, flowers102_classes

from dataset_layouts import TEST_PER_CLASS, TRAIN_PER_CLASS, WRITERS, trust_flowers_checksums


def fetch():
    from varireal_pipeline.cli import app

    return CliRunner().invoke(app, ["fetch"])


@pytest.fixture
def real(project, tmp_path, monkeypatch):
    """real(name, **dataset overrides): the fixture dataset in tmp/datasets, params pointing at it."""
    root, made = tmp_path / "datasets", {}

    def make(name: str, seed: int = 0, **dataset):
        if name not in made:
            made[name] = WRITERS[name](root)
        if name == "flowers102":
            trust_flowers_checksums(monkeypatch, root)
        settings = {"name": name, "root": str(root), "shots": 2, "mask": {"method": "grabcut"}}
        if name == "pets":
            settings["mask"] = {"method": "auto"}
        if name == "flowers102":
            settings["classes"] = 3  # the fixture has 3 of the 102 classes
        project(seed=seed, dataset=settings | dataset)
        return made[name]
    return make


@pytest.mark.parametrize("name", list(WRITERS))
def test_fetch_copies_a_seeded_few_shot_split_with_masks(real, name):
    facts = real(name)
    result = fetch()
    assert result.exit_code == 0, result.output
    assert io.read_json("data/raw/classes.json") == facts["classes"]

    train, test = io.read_csv("data/raw/train.csv"), io.read_csv("data/raw/test.csv")
    assert [int(row["label"]) for row in train] == [0, 0, 1, 1, 2, 2]
    assert sorted(int(row["label"]) for row in test) == [label for label in range(3) for _ in range(TEST_PER_CLASS)]
    if name != "cars":  # cars numbers each split's files from 00001, so the names repeat across splits
        assert len({Path(row["path"]).name for row in train + test}) == len(train) + len(test)

    for row in train + test:
        assert row["class"] == facts["classes"][int(row["label"])]
        path = Path(row["path"])
        split = "train" if row in train else "test"
        assert path.parent == Path("data/raw/images") / split / io.slug(row["class"])
        source = facts.get(f"{split}_images", facts["images"]) / path.name
        assert path.read_bytes() == source.read_bytes()  # copied byte for byte

    for row in train:
        assert row["mask_method"] == ("trimap" if name == "pets" else "grabcut")
        mask_path = Path("data/raw/masks/train") / io.slug(row["class"]) / f"{Path(row['path']).stem}.png"
        assert Path(row["mask"]) == mask_path
        with Image.open(row["path"]) as image, Image.open(row["mask"]) as mask:
            assert mask.size == image.size
            values = np.asarray(mask)
        assert set(np.unique(values)) <= {0, 255}
        assert 0.1 < (values == 255).mean() < 0.8  # the fixture's ellipse covers about a quarter
    assert all(row["mask"] == "" for row in test)
    assert "masks: " in result.output


def test_pets_masks_are_the_trimaps_with_border(real):
    facts = real("pets")
    assert fetch().exit_code == 0
    for row in io.read_csv("data/raw/train.csv"):
        trimap_path = facts["images"].parent / "annotations" / "trimaps" / f"{Path(row['path']).stem}.png"
        with Image.open(trimap_path) as trimap, Image.open(row["mask"]) as mask:
            np.testing.assert_array_equal(np.asarray(mask), np.isin(np.asarray(trimap), [1, 3]) * 255)


def test_aircraft_grabcut_stays_inside_the_dataset_box(real):
    facts = real("aircraft")
    assert fetch().exit_code == 0
    boxes = {}
    for line in (facts["images"].parent / "images_box.txt").read_text().split("\n"):
        if line:
            image_id, *coords = line.split()
            boxes[image_id] = [int(c) for c in coords]
    for row in io.read_csv("data/raw/train.csv"):
        x0, y0, x1, y1 = boxes[Path(row["path"]).stem]
        with Image.open(row["mask"]) as mask:
            values = np.asarray(mask).copy()
        values[y0 - 1:y1, x0 - 1:x1] = 0
        assert not values.any()


def test_shots_depend_on_the_seed_only(real):
    def shots(seed):
        real("aircraft", seed=seed)
        assert fetch().exit_code == 0
        return [row["path"] for row in io.read_csv("data/raw/train.csv")]

    first = shots(0)
    assert shots(0) == first
    assert shots(1) != first


def test_shot_order_ignores_the_order_files_are_listed_in():
    samples = [Sample(Path(f"/d/2_{k}.jpg"), 2, "a car") for k in range(9)]
    order = shot_order(samples, 4, seed=3, label=2)
    assert shot_order(list(reversed(samples)), 4, seed=3, label=2) == order
    assert sorted(order, key=lambda s: s.path) == samples  # every file once: the draw, then the replacements
    drawn = order[:4]
    assert drawn == sorted(drawn, key=lambda s: s.path.name)  # the draw in name order
    assert shot_order(samples, 4, seed=4, label=2)[:4] != drawn


def test_classes_keeps_the_first_n_in_both_splits(real):
    facts = real("cars", classes=2)
    assert fetch().exit_code == 0
    assert io.read_json("data/raw/classes.json") == facts["classes"][:2]
    assert {row["label"] for row in io.read_csv("data/raw/train.csv")} == {"0", "1"}
    assert {row["label"] for row in io.read_csv("data/raw/test.csv")} == {"0", "1"}


@pytest.mark.parametrize("name, folder, hint", [
    ("pets", "oxford-iiit-pet", "dataset.download: true"),
    ("aircraft", "fgvc-aircraft-2013b", "dataset.download: true"),
    ("flowers102", "flowers-102", "dataset.download: true"),
    ("cars", "stanford_cars", "kaggle.com"),
])
def test_missing_data_is_one_line_and_exit_1(project, tmp_path, name, folder, hint):
    project(dataset={"name": name, "root": str(tmp_path / "nothing-here"), "download": False})
    result = fetch()
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: fetch: {name}: no ")
    assert str(tmp_path / "nothing-here" / folder) in lines[0] and hint in lines[0]
    assert not Path("data/raw").exists()


def test_cars_download_explains_where_to_get_it(project, tmp_path):
    project(dataset={"name": "cars", "root": str(tmp_path), "download": True})
    result = fetch()
    assert result.exit_code == 1
    assert "official download is gone" in result.output and "cars_test_annos_withlabels.mat" in result.output


def test_too_many_shots_is_a_param_error(real):
    real("flowers102", shots=TRAIN_PER_CLASS + 1)
    result = fetch()
    assert result.exit_code == 2
    assert "dataset.shots=5" in result.output and f"at most {TRAIN_PER_CLASS}" in result.output


def test_trimaps_only_for_pets(real):
    real("aircraft", mask={"method": "trimap"})
    result = fetch()
    assert result.exit_code == 2 and "dataset.mask.method='trimap'" in result.output


def test_flowers102_names_match_torchvision():
    from torchvision.datasets import Flowers102

    names = flowers102_classes()
    assert len(names) == 102 and names[0] == "pink primrose" and names[-1] == "blackberry lily"
    if hasattr(Flowers102, "classes"):
        assert names == list(Flowers102.classes)


def test_clipseg_masks_and_their_grabcut_fallback(real, tiny_clipseg):
    """The tiny CLIPSeg says 0.5 everywhere: under threshold 0.4 it finds the whole image, above 0.6 nothing,
    and then GrabCut in the dataset's box makes the mask."""
    real("aircraft", mask={"method": "clipseg", "model": str(tiny_clipseg), "threshold": 0.4, "device": "cpu"})
    result = fetch()
    assert result.exit_code == 0, result.output
    rows = io.read_csv("data/raw/train.csv")
    assert {row["mask_method"] for row in rows} == {"clipseg"}
    for row in rows:
        with Image.open(row["mask"]) as mask:
            assert (np.asarray(mask) == 255).all()

    real("aircraft", mask={"method": "clipseg", "model": str(tiny_clipseg), "threshold": 0.6, "device": "cpu"})
    result = fetch()
    assert result.exit_code == 0, result.output
    rows = io.read_csv("data/raw/train.csv")
    assert {row["mask_method"] for row in rows} == {"grabcut"}
    assert f"grabcut {len(rows)} ({len(rows)} fell back from clipseg)" in result.output
    for row in rows:
        with Image.open(row["mask"]) as mask:
            assert 0.1 < (np.asarray(mask) == 255).mean() < 0.8


def test_unloadable_clipseg_model_is_one_line_and_exit_1(real, tmp_path):
    real("aircraft", mask={"method": "clipseg", "model": str(tmp_path / "no-such-model")})
    result = fetch()
    assert result.exit_code == 1, result.output
    assert "cannot load CLIPSeg from dataset.mask.model=" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_more_classes_than_the_dataset_has_is_a_param_error(real):
    real("pets", classes=4)
    result = fetch()
    assert result.exit_code == 2 and "dataset.classes=4" in result.output and "at most 3" in result.output
