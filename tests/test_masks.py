"""Mask producers on images whose object is known: trimaps, component clean-up, GrabCut, tiny CLIPSeg."""

import numpy as np
import pytest
from PIL import Image

from varireal import masks


def object_on_background(height=72, width=96, box=(30, 20, 70, 56), seed=0):
    """A noisy dark-red ellipse filling box on a noisy light-grey background, and its true mask."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:height, :width]
    x0, y0, x1, y1 = box
    cx, cy, rx, ry = (x0 + x1 - 1) / 2, (y0 + y1 - 1) / 2, (x1 - x0) / 2, (y1 - y0) / 2
    truth = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1
    image = np.where(truth[..., None], [150, 30, 40], [200, 200, 195]) + rng.normal(0, 8, (height, width, 3))
    return np.clip(image, 0, 255).astype(np.uint8), truth


def iou(a, b):
    return (a & b).sum() / (a | b).sum()


def test_trimap_counts_pet_and_border_as_object():
    trimap = np.array([[2, 2, 2, 2],
                       [2, 3, 3, 2],
                       [2, 3, 1, 2],
                       [2, 2, 2, 2]], np.uint8)
    expected = np.array([[0, 0, 0, 0],
                         [0, 1, 1, 0],
                         [0, 1, 1, 0],
                         [0, 0, 0, 0]], bool)
    np.testing.assert_array_equal(masks.trimap_to_mask(trimap), expected)


def test_clean_keeps_comparable_objects_drops_specks_fills_holes():
    mask = np.zeros((40, 60), bool)
    mask[5:25, 5:25] = True    # 400 px, with a hole
    mask[12:16, 12:16] = False
    mask[5:20, 35:55] = True   # 300 px: a second object
    mask[35, 58] = True        # a speck
    cleaned = masks.clean(mask)
    expected = np.zeros_like(mask)
    expected[5:25, 5:25] = True
    expected[5:20, 35:55] = True
    np.testing.assert_array_equal(cleaned, expected)
    assert not masks.clean(np.zeros((8, 8), bool)).any()


def test_grabcut_finds_the_object_inside_its_box():
    box = (30, 20, 70, 56)
    image, truth = object_on_background(box=box)
    mask = masks.grabcut(image, (box[0] - 4, box[1] - 4, box[2] + 4, box[3] + 4))
    assert mask.shape == truth.shape
    assert iou(mask, truth) > 0.85
    outside = np.ones_like(mask)
    outside[16:60, 26:74] = False
    assert not mask[outside].any()  # outside the box is background by construction


def test_grabcut_without_a_box_starts_from_the_centre():
    image, truth = object_on_background()
    assert iou(masks.grabcut(image), truth) > 0.85


def test_flat_image_falls_back_to_the_box():
    flat = np.full((40, 50, 3), 128, np.uint8)
    mask, method = masks.grabcut_or_box(flat, (10, 5, 30, 25), min_area=0.02)
    assert method == "box"
    expected = np.zeros((40, 50), bool)
    expected[5:25, 10:30] = True
    np.testing.assert_array_equal(mask, expected)


def test_save_mask_writes_0_or_255(tmp_path):
    mask = np.zeros((5, 7), bool)
    mask[1:3, 2:6] = True
    masks.save_mask(mask, tmp_path / "m" / "a.png")
    with Image.open(tmp_path / "m" / "a.png") as saved:
        assert saved.mode == "L" and saved.size == (7, 5)
        np.testing.assert_array_equal(np.asarray(saved), mask * 255)


@pytest.fixture(scope="module")
def clipseg(tiny_clipseg):
    return masks.ClipSeg(str(tiny_clipseg), device="cpu", batch_size=2)


def test_clipseg_probabilities_come_at_each_images_size(clipseg):
    images = [object_on_background(height=h, width=w)[0] for h, w in ((72, 96), (50, 40), (33, 33))]
    probabilities = clipseg.probabilities(images, ["a car", "a flower", "a dog"])
    assert [p.shape for p in probabilities] == [(72, 96), (50, 40), (33, 33)]
    # The tiny model's decoder outputs logit 0 everywhere (see conftest).
    for p in probabilities:
        np.testing.assert_allclose(p, 0.5, atol=1e-6)


def test_clipseg_threshold_decides_what_it_finds(clipseg):
    image, _ = object_on_background()
    assert clipseg.masks([image], ["a car"], threshold=0.4)[0].all()
    assert not clipseg.masks([image], ["a car"], threshold=0.6)[0].any()
