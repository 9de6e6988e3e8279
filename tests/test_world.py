from pathlib import Path

import numpy as np
import pytest

from varireal import io
from varireal.datasets import world
from varireal.params import DatasetParams
from varireal.datasets.embedded import EmbeddedWorld


def test_rules_split_every_vocabulary_into_feasible_and_infeasible():
    for name in world.CLASS_NAMES:
        rules = world.feasibility_rules(name)
        for attribute, vocabulary in world.VOCABULARY.items():
            feasible, infeasible = rules[attribute]["feasible"], rules[attribute]["infeasible"]
            assert feasible and infeasible
            assert sorted(feasible + infeasible) == sorted(vocabulary)
            assert all(world.is_feasible(name, attribute, v) for v in feasible)
            assert not any(world.is_feasible(name, attribute, v) for v in infeasible)


def test_no_single_attribute_value_identifies_a_species():
    for attribute, vocabulary in world.VOCABULARY.items():
        for value in vocabulary:
            owners = [n for n in world.CLASS_NAMES if world.is_feasible(n, attribute, value)]
            assert len(owners) != 1, (attribute, value, owners)


def test_render_is_deterministic_and_the_mask_covers_the_object():
    instance = world.Instance("hexastar", "ocean", "red", "stripes")
    image, mask = world.render_instance(instance, np.random.default_rng(3), 64)
    again, mask_again = world.render_instance(instance, np.random.default_rng(3), 64)
    assert image.shape == (64, 64, 3) and image.dtype == np.uint8
    assert np.array_equal(image, again) and np.array_equal(mask, mask_again)
    assert set(np.unique(mask)) == {0, 255}
    assert 0.1 < (mask > 0).mean() < 0.6
    # A red object on the ocean: inside the mask red dominates, outside blue does.
    inside, outside = image[mask > 0].mean(0), image[mask == 0].mean(0)
    assert inside[0] > inside[2] and outside[2] > outside[0]


def test_species_differ_by_outline_alone():
    masks = {name: world.render_instance(world.Instance(name, "snow", "gray", "plain"), np.random.default_rng(1), 64)[1]
             for name in ("sexfoil", "septfoil", "hexastar")}
    assert not np.array_equal(masks["sexfoil"], masks["septfoil"])
    assert not np.array_equal(masks["sexfoil"], masks["hexastar"])


def test_world_writes_the_dataset_layout_with_feasible_attributes_only(tmp_path):
    dataset = EmbeddedWorld(DatasetParams(test_per_class=2, image_size=32))
    dataset.write(tmp_path, tmp_path, shots=3, seed=0)
    assert io.read_json(tmp_path / "classes.json") == world.CLASS_NAMES
    train, test = io.read_csv(tmp_path / "train.csv"), io.read_csv(tmp_path / "test.csv")
    assert len(train) == 3 * len(world.CLASS_NAMES) and len(test) == 2 * len(world.CLASS_NAMES)
    assert not {r["path"] for r in train} & {r["path"] for r in test}
    for row in train + test:
        for attribute in world.ATTRIBUTES:
            assert world.is_feasible(row["class"], attribute, row[attribute])
        assert Path(row["path"]).is_file() and Path(row["mask"]).is_file()


@pytest.mark.parametrize("seed", [0, 1])
def test_world_is_deterministic_in_seed(tmp_path, seed):
    a, b = tmp_path / "a", tmp_path / "b"
    for out in (a, b):
        EmbeddedWorld(DatasetParams(test_per_class=1, image_size=24)).write(out, out, shots=1, seed=seed)
    files = sorted(p.relative_to(a) for p in a.rglob("*.png"))
    assert files
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)
