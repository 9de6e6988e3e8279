"""grounded-sam masks: Grounding DINO finds the box of "A <dataset word> <class>.", SAM 2 segments it.

The tiny models are rigged (tests/tiny_detectors.py): every detector query scores 0.5 on tiny_detectors.BOX,
and the segmenter's mask is the whole image or nothing, so each test knows the mask to expect.
"""

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from varireal import io, masks
from varireal.errors import StageError

import tiny_detectors
from dataset_layouts import WRITERS, trust_flowers_checksums
from test_masks import object_on_background


def expected_box(height, width):
    x0, y0, x1, y1 = tiny_detectors.BOX
    return round(x0 * width), round(y0 * height), round(x1 * width), round(y1 * height)


def box_mask(height, width):
    x0, y0, x1, y1 = expected_box(height, width)
    mask = np.zeros((height, width), bool)
    mask[y0:y1, x0:x1] = True
    return mask


@pytest.fixture(scope="module")
def grounded(tiny_grounding_dino, tiny_sam2):
    def make(box_threshold=0.4, inside=True):
        return masks.GroundedSam(str(tiny_grounding_dino), str(tiny_sam2[inside]), box_threshold=box_threshold,
                                 text_threshold=0.3, device="cpu")
    return make


def test_prompt_names_the_dataset_word_and_the_class():
    assert masks.grounding_prompt("aircraft", "707-320") == "A aircraft 707-320."
    assert masks.grounding_prompt("", "golden retriever") == "A golden retriever."


def test_the_mask_is_sams_inside_the_detectors_box(grounded):
    detector = grounded()
    for height, width in ((72, 96), (40, 48), (33, 50)):
        image, _ = object_on_background(height=height, width=width, box=(5, 5, 30, 30))
        assert detector.box(image, "A aircraft 707-320.") == expected_box(height, width)
        mask = detector.mask(image, "A aircraft 707-320.")
        assert mask.dtype == bool and mask.shape == (height, width)
        np.testing.assert_array_equal(mask, box_mask(height, width))  # SAM says everything; the box cuts it


def test_a_box_threshold_above_the_score_finds_nothing(grounded):
    image, _ = object_on_background()
    assert grounded(box_threshold=0.5).mask(image, "A car Acura RL Sedan 2012.") is None  # score 0.5 is not > 0.5
    assert grounded(box_threshold=0.49).box(image, "A car Acura RL Sedan 2012.") is not None


def test_an_empty_sam_mask_is_empty(grounded):
    image, _ = object_on_background()
    assert not grounded(inside=False).mask(image, "A flower pink primrose.").any()


def test_masks_are_deterministic(grounded):
    image, _ = object_on_background(seed=3)
    first, second = grounded().mask(image, "A pet Bengal."), grounded().mask(image, "A pet Bengal.")
    np.testing.assert_array_equal(first, second)


def test_largest_object_keeps_one_component_and_fills_it():
    mask = np.zeros((30, 40), bool)
    mask[2:20, 2:20] = True
    mask[8:12, 8:12] = False  # a hole
    mask[2:12, 25:35] = True  # a smaller second object
    expected = np.zeros_like(mask)
    expected[2:20, 2:20] = True
    np.testing.assert_array_equal(masks.largest_object(mask), expected)
    assert not masks.largest_object(np.zeros((4, 4), bool)).any()


def test_a_model_that_is_not_there_is_one_line(tmp_path, tiny_sam2, tiny_grounding_dino):
    with pytest.raises(StageError, match=r"cannot load dataset\.mask\.detector='.*no-such-model'") as error:
        masks.GroundedSam(str(tmp_path / "no-such-model"), str(tiny_sam2[True]), 0.4, 0.3, "cpu")
    assert "\n" not in str(error.value)
    with pytest.raises(StageError, match=r"cannot load dataset\.mask\.segmenter="):
        masks.GroundedSam(str(tiny_grounding_dino), str(tmp_path / "no-such-model"), 0.4, 0.3, "cpu")


def fetch():
    from varireal_pipeline.cli import app

    return CliRunner().invoke(app, ["fetch"])


@pytest.fixture
def real(project, tmp_path, monkeypatch, tiny_grounding_dino, tiny_sam2, tiny_clipseg):
    """real(name, **mask overrides): the fixture dataset, masks by grounded-sam with the tiny models (and the
    tiny CLIPSeg as its fallback)."""
    root = tmp_path / "datasets"

    def make(name, **mask):
        WRITERS[name](root)
        if name == "flowers102":
            trust_flowers_checksums(monkeypatch, root)
        settings = {"method": "auto", "detector": str(tiny_grounding_dino), "segmenter": str(tiny_sam2[True]),
                    "model": str(tiny_clipseg), "device": "cpu"} | mask
        project(dataset={"name": name, "root": str(root), "shots": 2, "classes": 3, "mask": settings})
    return make


@pytest.mark.parametrize("name", ["aircraft", "cars", "flowers102"])
def test_fetch_makes_grounded_sam_masks_by_default_for_datasets_without_trimaps(real, name):
    real(name)
    result = fetch()
    assert result.exit_code == 0, result.output
    rows = io.read_csv("data/raw/train.csv")
    assert len(rows) == 6 and {row["mask_method"] for row in rows} == {"grounded-sam"}
    for row in rows:
        with Image.open(row["path"]) as image, Image.open(row["mask"]) as mask:
            assert mask.size == image.size
            np.testing.assert_array_equal(np.asarray(mask), box_mask(image.height, image.width) * 255)
    assert "grounded-sam 6" in result.output and "fell back" not in result.output


def test_fetch_falls_back_to_grabcut_when_nothing_is_found(real):
    real("aircraft", box_threshold=0.6, fallback="grabcut")
    result = fetch()
    assert result.exit_code == 0, result.output
    rows = io.read_csv("data/raw/train.csv")
    assert {row["mask_method"] for row in rows} == {"grabcut"}
    assert "grabcut 6 (6 fell back from grounded-sam)" in result.output


def test_fetch_falls_back_to_clipseg_when_sams_mask_is_empty(real, tiny_sam2):
    real("cars", segmenter=str(tiny_sam2[False]), fallback="clipseg", threshold=0.4)
    result = fetch()
    assert result.exit_code == 0, result.output
    rows = io.read_csv("data/raw/train.csv")
    assert {row["mask_method"] for row in rows} == {"clipseg"}  # the tiny CLIPSeg finds the whole image
    assert "clipseg 6 (6 fell back from grounded-sam)" in result.output


def test_fetch_with_a_bad_detector_is_one_line_and_exit_1(real, tmp_path):
    real("flowers102", detector=str(tmp_path / "no-such-model"))
    result = fetch()
    assert result.exit_code == 1, result.output
    assert "cannot load dataset.mask.detector=" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_the_background_remover_runs_only_with_trust_remote_code(tmp_path, tiny_background_remover):
    with pytest.raises(StageError, match="dataset.mask.trust_remote_code: true") as error:
        masks.BackgroundRemover(str(tiny_background_remover), "cpu", trust_remote_code=False)
    assert "\n" not in str(error.value)
    remover = masks.BackgroundRemover(str(tiny_background_remover), "cpu", trust_remote_code=True)
    image, truth = object_on_background()  # a dark-red ellipse on light grey
    mask = remover.mask(image)
    assert mask.shape == truth.shape and mask.dtype == bool
    assert (mask & truth).sum() / (mask | truth).sum() > 0.8


def test_fetch_falls_back_to_the_background_remover_when_nothing_is_found(real, tiny_background_remover):
    real("flowers102", box_threshold=0.6, fallback="rmbg", background_remover=str(tiny_background_remover),
         trust_remote_code=True)
    result = fetch()
    assert result.exit_code == 0, result.output
    rows = io.read_csv("data/raw/train.csv")
    assert {row["mask_method"] for row in rows} == {"rmbg"}
    for row in rows:
        with Image.open(row["mask"]) as mask:
            assert 0.1 < (np.asarray(mask) == 255).mean() < 0.8  # the fixture's dark ellipse, not everything

    real("flowers102", box_threshold=0.6, fallback="rmbg", background_remover=str(tiny_background_remover))
    result = fetch()
    assert result.exit_code == 1, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]  # after the loading bars
    assert len(errors) == 1 and "dataset.mask.trust_remote_code: true" in errors[0]


def test_datasets_without_trimaps_default_to_grounded_sam_with_the_official_words():
    from varireal import datasets

    real = ("pets", "aircraft", "cars", "flowers102")
    assert {name: datasets.spec(name).word for name in real} == {
        "pets": "pet", "aircraft": "aircraft", "cars": "car", "flowers102": "flower"}
    assert {name: datasets.spec(name).mask for name in real} == {
        "pets": "trimap", "aircraft": "grounded-sam", "cars": "grounded-sam", "flowers102": "grounded-sam"}
