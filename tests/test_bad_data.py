"""Bad source images in fetch: a small Oxford-IIIT Pets in its real layout whose files are truncated, not
images, grayscale, CMYK, 16-bit, with alpha, tiny or huge. Fetch converts what it can, skips the rest with
one warning line each, draws the next shot in place of a skipped one, and counts all of it."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from varireal import colors, io, records, render
from varireal.datasets import images
from varireal.datasets.real import shot_order
from varireal.datasets.sources import Sample

from dataset_layouts import write_jpeg
from test_stages import mlflow_runs, run

PIXEL_LIMIT = 70_000  # Image.MAX_IMAGE_PIXELS in these tests: the 300x300 image is over it, 256x256 is not
RAMP = np.arange(256 * 256, dtype=np.uint16).reshape(256, 256)  # every 16-bit value once
RGBA = (200, 100, 0)
ALPHAS = (0, 128, 255)  # per band of rows in the RGBA image
CMYK_CYAN = (255, 0, 0, 0)

# file id -> (split, how its file is written); pets ids are "<breed>_<n>", labels come from the breed.
BREEDS = {"Abyssinian": (1, 1), "american_bulldog": (2, 2), "Bengal": (3, 1)}  # label, species (1 cat, 2 dog)
FILES = {
    "Abyssinian_1": ("trainval", "good"), "Abyssinian_2": ("trainval", "good"), "Abyssinian_3": ("trainval", "good"),
    "Abyssinian_4": ("trainval", "truncated"), "Abyssinian_5": ("trainval", "random"),
    "Abyssinian_6": ("trainval", "tiny"), "Abyssinian_7": ("trainval", "huge"),
    "american_bulldog_8": ("trainval", "gray"), "american_bulldog_9": ("trainval", "cmyk"),
    "Bengal_10": ("trainval", "ramp16"), "Bengal_11": ("trainval", "rgba"),
    "Abyssinian_20": ("test", "good"), "Abyssinian_21": ("test", "good"),
    "american_bulldog_22": ("test", "good"), "american_bulldog_23": ("test", "truncated"),
    "Bengal_24": ("test", "good"), "Bengal_25": ("test", "random"), "Bengal_26": ("test", "gray"),
}
BAD = {"truncated", "random", "tiny", "huge"}
NO_TRIMAP = "american_bulldog_9"  # its mask falls back to GrabCut
CLASSES = ["Abyssinian", "American Bulldog", "Bengal"]


def write_image(path: Path, how: str, seed: int) -> tuple[int, int]:
    """Write one source file (always named .jpg, as pets lists them; the content decides the format). Returns its size."""
    rng = np.random.default_rng(seed)
    if how == "good":
        write_jpeg(path, seed)
    elif how == "truncated":
        write_jpeg(path, seed)
        path.write_bytes(path.read_bytes()[:400])
    elif how == "random":
        path.write_bytes(rng.bytes(2000))
    elif how == "tiny":
        Image.fromarray(rng.integers(0, 255, (10, 10, 3), dtype=np.uint8)).save(path, "JPEG")
    elif how == "huge":
        Image.new("RGB", (300, 300), (90, 120, 150)).save(path, "JPEG")
    elif how == "gray":
        Image.fromarray(rng.integers(0, 255, (40, 48), dtype=np.uint8)).save(path, "JPEG")
    elif how == "cmyk":
        Image.new("CMYK", (48, 40), CMYK_CYAN).save(path, "JPEG")
    elif how == "ramp16":
        Image.fromarray(RAMP).save(path, "PNG")
    elif how == "rgba":
        alpha = np.repeat(ALPHAS, [14, 13, 13])[:, None].repeat(48, axis=1)
        pixels = np.dstack([np.broadcast_to(np.array(RGBA, np.uint8), (40, 48, 3)), alpha]).astype(np.uint8)
        Image.fromarray(pixels, "RGBA").save(path, "PNG")
    with Image.open(path) if how not in BAD else Image.new("L", (48, 40)) as image:
        return image.size


def write_bad_pets(root: Path) -> Path:
    """oxford-iiit-pet/ with FILES: images/<id>.jpg, annotations/trimaps/<id>.png, annotations/{trainval,test}.txt."""
    base = root / "oxford-iiit-pet"
    (base / "images").mkdir(parents=True)
    (base / "annotations" / "trimaps").mkdir(parents=True)
    lines = {"trainval": [], "test": []}
    for n, (image_id, (split, how)) in enumerate(FILES.items()):
        width, height = write_image(base / "images" / f"{image_id}.jpg", how, n)
        if image_id != NO_TRIMAP:
            trimap = np.full((height, width), 2, np.uint8)
            trimap[height // 4:3 * height // 4, width // 4:3 * width // 4] = 1
            Image.fromarray(trimap).save(base / "annotations" / "trimaps" / f"{image_id}.png")
        label, species = BREEDS[image_id.rsplit("_", 1)[0]]
        lines[split].append(f"{image_id} {label} {species} {label}")
    for split, rows in lines.items():
        (base / "annotations" / f"{split}.txt").write_text("\n".join(rows) + "\n")
    return base


def abyssinian_order(seed: int) -> list[str]:
    """The file ids of Abyssinian in fetch's shot order for two shots."""
    candidates = [Sample(Path(f"{image_id}.jpg"), 0, "a cat") for image_id, (split, _) in FILES.items()
                  if split == "trainval" and image_id.startswith("Abyssinian")]
    return [sample.path.stem for sample in shot_order(candidates, 2, seed, 0)]


# The first seed whose seeded draw of two Abyssinian shots hits a bad file, so a replacement must be drawn.
SEED = next(seed for seed in range(100) if any(FILES[i][1] in BAD for i in abyssinian_order(seed)[:2]))


@pytest.fixture
def bad_pets(project, tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", PIXEL_LIMIT)
    base = write_bad_pets(tmp_path / "datasets")
    project(seed=SEED, dataset={"name": "pets", "root": str(tmp_path / "datasets"), "shots": 2,
                                "mask": {"method": "auto"}})
    return base


def fetch():
    from varireal_pipeline.cli import app

    return CliRunner().invoke(app, ["fetch"])


def warnings_of(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith(("fetch: skipped", "fetch: converted"))]


def test_fetch_skips_and_converts_bad_images_with_one_line_each_and_counts_them(bad_pets):
    result = fetch()
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output

    order = abyssinian_order(SEED)
    good_abyssinians = [i for i in order if FILES[i][1] not in BAD]
    tried = order[:order.index(good_abyssinians[1]) + 1]  # read until two usable ones were found
    skipped_in_train = [i for i in tried if FILES[i][1] in BAD]
    assert skipped_in_train  # SEED makes the draw hit a bad file

    # The next file in the shot order stands in for each skipped one; the split keeps name order.
    train = io.read_csv("data/raw/train.csv")
    assert [Path(row["path"]).stem for row in train] == sorted(good_abyssinians[:2]) + [
        "american_bulldog_8", "american_bulldog_9", "Bengal_10", "Bengal_11"]
    assert [row["class"] for row in train] == [c for c in CLASSES for _ in range(2)]
    test = io.read_csv("data/raw/test.csv")
    assert [Path(row["path"]).stem for row in test] == ["Abyssinian_20", "Abyssinian_21", "american_bulldog_22",
                                                        "Bengal_24", "Bengal_26"]

    reason = {"truncated": "truncated", "random": "not_an_image", "tiny": "too_small", "huge": "too_large"}
    metrics = io.read_json("metrics/fetch.json")
    expected_train_skips = dict.fromkeys(images.SKIP_REASONS, 0)
    for image_id in skipped_in_train:
        expected_train_skips[reason[FILES[image_id][1]]] += 1
    assert metrics["train"] == {
        "images": 6, "read": len(tried) + 4, "copied": 2,
        "converted": dict.fromkeys(images.CONVERSIONS, 0) | {"grayscale": 1, "cmyk": 1, "16bit": 1, "alpha": 1},
        "skipped": expected_train_skips}
    assert metrics["test"] == {
        "images": 5, "read": 7, "copied": 4, "converted": dict.fromkeys(images.CONVERSIONS, 0) | {"grayscale": 1},
        "skipped": dict.fromkeys(images.SKIP_REASONS, 0) | {"truncated": 1, "not_an_image": 1}}
    unused = {"grounded-sam": 0, "clipseg": 0, "rmbg": 0}
    assert metrics["masks"] == {"trimap": 5, **unused, "grabcut": 1, "box": 0} or \
        metrics["masks"] == {"trimap": 5, **unused, "grabcut": 0, "box": 1}

    # One line per skipped or converted file, naming it, the split and the class; never for copied ones.
    lines = warnings_of(result.output)
    assert len(lines) == len(skipped_in_train) + 4 + 3
    source = bad_pets / "images"
    assert f"fetch: skipped {source / 'american_bulldog_23.jpg'}: truncated image" in result.output
    assert any(line.startswith(f"fetch: skipped {source / 'Bengal_25.jpg'}: not an image")
               and line.endswith("(test, Bengal)") for line in lines)
    assert any(line.startswith(f"fetch: converted {source / 'american_bulldog_9.jpg'}: CMYK JPEG (CMYK) to "
                               "8-bit RGB PNG")
               and line.endswith("(train, American Bulldog)") for line in lines)
    assert f"fetch: no usable trimap for {source / NO_TRIMAP}.jpg (no such file); GrabCut" in result.output

    # Plain RGB JPEGs are copied byte for byte; converted ones are PNGs with masks of their size.
    for row in train + test:
        path = Path(row["path"])
        if FILES[path.stem][1] == "good":
            assert path.suffix == ".jpg" and path.read_bytes() == (source / path.name).read_bytes()
        else:
            assert path.suffix == ".png"
        with Image.open(path) as image:
            assert image.mode == "RGB" and min(image.size) >= images.MIN_SIDE
    for row in train:
        with Image.open(row["path"]) as image, Image.open(row["mask"]) as mask:
            assert mask.size == image.size and set(np.unique(np.asarray(mask))) <= {0, 255}

    # The same params give the same split.
    assert fetch().exit_code == 0 and io.read_csv("data/raw/train.csv") == train


def test_converted_pixels_are_right(bad_pets):
    assert fetch().exit_code == 0
    source = bad_pets / "images"
    rgb = {Path(row["path"]).stem: np.asarray(Image.open(row["path"])) for row in io.read_csv("data/raw/train.csv")}

    # 16-bit: the top 8 bits of every value, not 16-bit values clipped at 255.
    ramp = rgb["Bengal_10"]
    assert ramp.dtype == np.uint8 and ramp.shape == (256, 256, 3)
    for channel in range(3):
        np.testing.assert_array_equal(ramp[..., channel], (RAMP >> 8).astype(np.uint8))
    assert ramp.min() == 0 and ramp.max() == 255 and len(np.unique(ramp)) == 256

    # Grayscale: each channel is the decoded gray value.
    with Image.open(source / "american_bulldog_8.jpg") as gray_source:
        gray = np.asarray(gray_source)
    for channel in range(3):
        np.testing.assert_array_equal(rgb["american_bulldog_8"][..., channel], gray)

    # CMYK cyan is RGB cyan (up to JPEG's rounding).
    assert np.abs(rgb["american_bulldog_9"].astype(int) - [0, 255, 255]).max() <= 3

    # Alpha: composited over white, out = c * a + 255 * (1 - a).
    blended = rgb["Bengal_11"].astype(int)
    for rows, alpha in zip((slice(0, 14), slice(14, 27), slice(27, 40)), ALPHAS):
        expected = np.array(RGBA) * alpha / 255 + 255 * (1 - alpha / 255)
        assert np.abs(blended[rows] - expected).max() <= 1


@pytest.mark.parametrize("mode, values, expected", [
    ("I;16", np.array([[0, 255, 256, 65535]], np.uint16), [0, 0, 1, 255]),
    ("I", np.array([[-5, 32768, 65535, 70000]], np.int32), [0, 128, 255, 255]),  # 16-bit range, clamped
    ("F", np.array([[0.0, 0.5, 1.0, 2.0]], np.float32), [0, 128, 255, 255]),  # 0..1
    ("L", np.array([[0, 7, 128, 255]], np.uint8), [0, 7, 128, 255]),
])
def test_to_rgb8_scales_each_mode(mode, values, expected):
    image = Image.fromarray(values, mode if mode != "I;16" else None)
    assert image.mode == mode
    out = images.to_rgb8(image)
    assert out.mode == "RGB"
    np.testing.assert_array_equal(np.asarray(out)[0], np.repeat(np.array(expected, np.uint8)[:, None], 3, axis=1))


def test_admit_handles_palette_transparency_and_other_formats(tmp_path):
    palette = Image.new("P", (40, 40), 1)
    palette.putpalette([0, 0, 0, 10, 20, 30] + [0] * 762)
    palette.info["transparency"] = 1
    palette.save(tmp_path / "p.png", transparency=1)
    outcome = images.admit(tmp_path / "p.png", tmp_path / "out" / "p.png")
    assert (outcome.action, outcome.kind) == ("converted", "alpha")
    assert np.asarray(Image.open(outcome.path))[0, 0].tolist() == [255, 255, 255]  # fully transparent -> white

    Image.new("RGB", (40, 40), (10, 20, 30)).save(tmp_path / "b.bmp")
    outcome = images.admit(tmp_path / "b.bmp", tmp_path / "out" / "b.bmp")
    assert (outcome.action, outcome.kind, outcome.path.name) == ("converted", "format", "b.png")
    assert np.asarray(Image.open(outcome.path))[5, 5].tolist() == [10, 20, 30]

    Image.new("RGB", (40, 31)).save(tmp_path / "thin.png")
    outcome = images.admit(tmp_path / "thin.png", tmp_path / "out" / "thin.png")
    assert (outcome.action, outcome.kind, outcome.path) == ("skipped", "too_small", None)
    assert not (tmp_path / "out" / "thin.png").exists()


def test_a_class_left_with_too_few_usable_images_is_one_line_naming_it(bad_pets):
    for image_id in ("Bengal_10", "Bengal_11"):
        (bad_pets / "images" / f"{image_id}.jpg").write_bytes(b"not an image at all")
    result = fetch()
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert errors == ["error: params.yaml: dataset.shots=2 is not allowed: at most 0, the usable training images "
                      "of class 'Bengal'; 2 of its 2 are unusable (see the warnings above)"]
    assert "Traceback" not in result.output
    assert not Path("data/raw").exists() and not Path("metrics/fetch.json").exists()


def test_an_empty_class_is_named(project, tmp_path):
    from dataset_layouts import write_aircraft

    data = tmp_path / "datasets" / "fgvc-aircraft-2013b" / "data"
    write_aircraft(tmp_path / "datasets")
    (data / "variants.txt").write_text((data / "variants.txt").read_text() + "A380\n")  # no image has it
    project(dataset={"name": "aircraft", "root": str(tmp_path / "datasets"), "shots": 1,
                     "mask": {"method": "grabcut"}})
    result = fetch()
    assert result.exit_code == 2, result.output
    assert result.output.strip() == ("error: params.yaml: dataset.shots=1 is not allowed: at most 0, the training "
                                     "images of class 'A380', the fewest")


def test_the_whole_pipeline_runs_on_the_cleaned_data(bad_pets, project, tiny_clip_config):
    project(seed=SEED, dataset={"name": "pets", "root": str(bad_pets.parent), "shots": 2, "mask": {"method": "auto"}},
            score={"model": str(tiny_clip_config), "threads": 1, "pretrained": None}, edit={"per_image": 1},
            train={"pretrained": None})  # a real dataset: no world-CLIP, a random tiny CLIP
    run("fetch")
    # The composite editor paints the procedural library's values only, so the prompts are written here.
    values = {"background": list(render.SCENES)[:4], "color": list(render.COLORS)[:4],
              "texture": list(render.TEXTURES)[:4]}
    records.write_prompts("data/prompts.json", records.Prompts(
        {name: {attribute: {"feasible": found[:2], "infeasible": found[2:]} for attribute, found in values.items()}
         for name in CLASSES},
        {name: {value: colors.world_colours(value) for value in values["color"]} for name in CLASSES}))
    run("edit", "pretrain", "score", "mix", "train", "eval")
    manifest = io.read_csv("data/synthetic/manifest.csv")
    assert {Path(row["source"]).stem for row in manifest} >= {"Bengal_10", "american_bulldog_9"}
    (mlflow_run,) = mlflow_runs()
    assert 0 <= mlflow_run.data.metrics["top1"] <= 1


def test_the_world_counts_its_rendered_images(project):
    project(dataset={"test_per_class": 2, "shots": 1})
    assert fetch().exit_code == 0
    metrics = io.read_json("metrics/fetch.json")
    classes = len(io.read_json("data/raw/classes.json"))
    assert metrics["train"] == images.empty_counts() | {"images": classes, "rendered": classes}
    assert metrics["test"] == images.empty_counts() | {"images": 2 * classes, "rendered": 2 * classes}
