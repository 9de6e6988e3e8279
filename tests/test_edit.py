import numpy as np
import pytest

from varireal import render
from varireal.datasets import world
from varireal.edit_plan import EditItem, plan
from varireal.editing import CompositeEditor
from varireal.prompts import bank
from varireal.records import SplitRow
from pathlib import Path


@pytest.fixture
def source():
    instance = world.Instance("pentastar", "meadow", "blue", "dots")
    image, mask = world.render_instance(instance, np.random.default_rng(0), 64)
    return image, mask > 0


def item(attribute, value, seed=1):
    return EditItem("out.png", "src.png", "mask.png", 7, "pentastar", attribute, "infeasible", value, seed)


def test_background_edit_keeps_every_object_pixel(source):
    image, mask = source
    out = CompositeEditor(0.8)(image, mask, item("background", "lava"))
    assert np.array_equal(out[mask], image[mask])
    assert np.abs(out[~mask].astype(int) - image[~mask]).mean() > 20
    # Lava is red-dominated where the meadow was green.
    assert out[~mask].mean(0)[0] > out[~mask].mean(0)[1]


def test_color_edit_recolours_inside_the_mask_and_keeps_shading(source):
    image, mask = source
    out = CompositeEditor(0.8)(image, mask, item("color", "orange"))
    assert np.array_equal(out[~mask], image[~mask])
    r, g, b = out[mask].astype(float).mean(0)
    assert r > g > b  # orange, no longer blue
    luma_before = image[mask].astype(float) @ [0.299, 0.587, 0.114]
    luma_after = out[mask].astype(float) @ [0.299, 0.587, 0.114]
    assert np.corrcoef(luma_before, luma_after)[0, 1] > 0.9


def test_texture_edit_changes_only_the_object(source):
    image, mask = source
    out = CompositeEditor(0.8)(image, mask, item("texture", "stripes"))
    assert np.array_equal(out[~mask], image[~mask])
    assert not np.array_equal(out[mask], image[mask])


def test_edits_are_deterministic_in_their_seed(source):
    image, mask = source
    editor = CompositeEditor(0.8)
    assert np.array_equal(editor(image, mask, item("background", "sky", 5)), editor(image, mask, item("background", "sky", 5)))
    assert not np.array_equal(editor(image, mask, item("background", "sky", 5)), editor(image, mask, item("background", "sky", 6)))


def test_plan_covers_every_image_attribute_and_feasibility_with_prompted_values():
    sources = [SplitRow(f"data/raw/images/train/{c}/000{i}.png", "m.png", l, c)
               for l, c in enumerate(world.CLASS_NAMES[:3]) for i in range(2)]
    prompts = bank("world", world.CLASS_NAMES, world.ATTRIBUTES, values_per_list=3, seed=0).values
    items = plan(sources, prompts, ["background", "color", "texture"], per_image=5, seed=0, out_prefix=Path("syn"))
    assert len(items) == 6 * 3 * 2 * 5
    assert len({i.path for i in items}) == len(items)
    assert len({i.seed for i in items}) == len(items)
    for i in items:
        assert i.value in prompts[i.class_name][i.attribute][i.feasibility]
        assert world.is_feasible(i.class_name, i.attribute, i.value) == (i.feasibility == "feasible")
    # Five edits from three values: every value used before any repeats.
    first = [i.value for i in items if i.source == sources[0].path and i.attribute == "color"
             and i.feasibility == "infeasible"]
    assert len(set(first[:3])) == 3


def test_prompt_bank_is_deterministic_and_respects_the_rules():
    a = bank("world", world.CLASS_NAMES, world.ATTRIBUTES, values_per_list=3, seed=0)
    assert a == bank("world", world.CLASS_NAMES, world.ATTRIBUTES, values_per_list=3, seed=0)
    assert a != bank("world", world.CLASS_NAMES, world.ATTRIBUTES, values_per_list=3, seed=1)
    for name in world.CLASS_NAMES:
        for attribute in world.ATTRIBUTES:
            feasible, infeasible = a.values[name][attribute]["feasible"], a.values[name][attribute]["infeasible"]
            assert len(infeasible) == 3 and 1 <= len(feasible) <= 3 and not set(feasible) & set(infeasible)
            assert all(world.is_feasible(name, attribute, v) for v in feasible)


def test_every_vocabulary_value_renders():
    rng = np.random.default_rng(0)
    for name in render.SCENES:
        assert render.scene(name, rng, 16).shape == (16, 16, 3)
    for name in render.TEXTURES:
        assert render.texture(name, rng, 16).shape == (16, 16)
