"""The diffusion editor's band recipe on tiny random SDXL twins (tests/tiny_sdxl.py): each saved with
save_pretrained and loaded back through the editor's own from_pretrained path, as a user's model id or local
folder would be. The paper recipe: tests/test_diffusion_paper.py."""

import numpy as np
import pytest
from PIL import Image

from varireal import backends, colors, io, render
from varireal.datasets import world
from varireal.diffusion import DiffusionEditor, dilate
from varireal.edit_plan import EditItem
from varireal.errors import StageError
from varireal.params import EditParams

from tiny_sdxl import band_settings


@pytest.fixture(scope="module")
def models(tiny_diffusion) -> dict[str, str]:
    return tiny_diffusion


def edit_params(models, **diffusion) -> EditParams:
    return EditParams(backend="diffusion", model=models["inpaint"], device="cpu", batch_size=2,
                      diffusion=band_settings(models, **diffusion))


@pytest.fixture(scope="module")
def source():
    """A non-square world picture (48 x 80, neither side the working resolution) and its object mask."""
    image, mask = world.render_instance(world.Instance("pentastar", "meadow", "blue", "dots"),
                                        np.random.default_rng(0), 80)
    return image[16:64].copy(), mask[16:64] > 0


# The colours the prompts give the world's colour values (records.Prompts.rgb).
RGB = {"pentastar": {value: colors.world_colours(value) for value in render.COLORS}}


def diffusion_editor(params: EditParams) -> DiffusionEditor:
    return DiffusionEditor(params, rgb=RGB)


def item(attribute, value, seed=1):
    return EditItem("out.png", "src.png", "mask.png", 7, "pentastar", attribute, "infeasible", value, seed)


@pytest.fixture(scope="module")
def editor(models):
    return diffusion_editor(edit_params(models))


def test_background_keeps_the_object_and_replaces_the_scene(editor, source):
    image, mask = source
    (out,) = editor.edit_batch([(image, mask, item("background", "lava"))])
    assert out.shape == image.shape and out.dtype == np.uint8
    assert np.array_equal(out[mask], image[mask])
    far = ~dilate(mask, 3)
    assert np.abs(out[far].astype(int) - image[far]).mean() > 10  # random weights: a new scene, not the meadow


@pytest.mark.parametrize("attribute, value", [("color", "purple"), ("texture", "knitted wool")])
def test_object_edits_change_only_the_dilated_mask(editor, source, attribute, value):
    image, mask = source
    (out,) = editor.edit_batch([(image, mask, item(attribute, value))])
    assert out.shape == image.shape
    region = dilate(mask, 3)
    assert np.array_equal(out[~region], image[~region])
    assert not np.array_equal(out[mask], image[mask])


def test_results_depend_on_the_seed_not_the_run_or_the_batch(editor, models, source):
    image, mask = source
    first, second = item("color", "purple", seed=11), item("color", "teal", seed=12)
    alone = editor.edit_batch([(image, mask, first)])[0]
    assert np.array_equal(alone, diffusion_editor(edit_params(models)).edit_batch([(image, mask, first)])[0])
    paired = editor.edit_batch([(image, mask, second), (image, mask, first)])
    # Each item has its own generator, so its noise is the same in any batch; batched CPU kernels may
    # still round differently in the last float bits, which can move a uint8 value by one.
    assert np.abs(paired[1].astype(int) - alone).max() <= 1
    assert not np.array_equal(paired[0], paired[1])
    reseeded = editor.edit_batch([(image, mask, item("color", "purple", seed=13))])[0]
    assert not np.array_equal(reseeded, alone)


def test_controlnet_and_scene_model_switch_off(editor, models, source):
    image, mask = source
    assert type(editor.inpainter).__name__ == "StableDiffusionXLControlNetInpaintPipeline"
    plain = diffusion_editor(edit_params(models, controlnet=None, scene_model=None))
    color = item("color", "purple")
    assert not np.array_equal(plain.edit_batch([(image, mask, color)])[0], editor.edit_batch([(image, mask, color)])[0])
    out = plain.edit_batch([(image, mask, item("texture", "stripes")), (image, mask, item("texture", "dots", 2))])
    region = dilate(mask, 3)
    assert all(np.array_equal(o[~region], image[~region]) for o in out)
    assert type(plain.inpainter).__name__ == "StableDiffusionXLInpaintPipeline"
    assert "painter" not in vars(plain)  # procedural patterns: the text-to-image model is never loaded
    (background,) = plain.edit_batch([(image, mask, item("background", "lava"))])
    assert np.array_equal(background[mask], image[mask])
    with pytest.raises(StageError, match="scene_model"):  # not a procedural scene: a model must draw it
        plain.edit_batch([(image, mask, item("background", "on the moon"))])


def test_ip_adapter_conditions_the_inpainting(models, source):
    image, mask = source
    with_adapter = diffusion_editor(edit_params(models, ip_adapter=models["ip-adapter"]))
    batch = [(image, mask, item("color", "purple")), (image, mask[:, ::-1].copy(), item("color", "teal", 2))]
    out = with_adapter.edit_batch(batch)
    assert with_adapter.inpainter.image_encoder is not None
    region = dilate(mask, 3)
    assert np.array_equal(out[0][~region], image[~region])
    # The adapter changes the result against the same pipeline without it (random weights, scale 0.6).
    without = diffusion_editor(edit_params(models)).edit_batch(batch[:1])[0]
    assert not np.array_equal(out[0], without)
    # Each item keeps its own image prompt in a batch (diffusers alone would give all items the
    # first's, or mix them): alone it comes out the same, up to float rounding.
    alone = with_adapter.edit_batch(batch[1:])[0]
    assert np.abs(out[1].astype(int) - alone).max() <= 1
    # Background harmonisation shares the adapter-loaded UNet, so it gets an image prompt too.
    (background,) = with_adapter.edit_batch([(image, mask, item("background", "lava"))])
    assert np.array_equal(background[mask], image[mask])


def test_missing_model_is_one_clear_error(models, tmp_path, source):
    image, mask = source
    broken = diffusion_editor(edit_params(models, controlnet=None).model_copy(update={"model": str(tmp_path / "none")}))
    with pytest.raises(StageError, match="edit.model"):
        broken.edit_batch([(image, mask, item("color", "purple"))])


def test_colour_edits_start_from_the_prompts_colours(models, source, monkeypatch):
    image, mask = source
    editor = DiffusionEditor(edit_params(models), rgb={"pentastar": {"seal point": [[70, 50, 38], [235, 222, 200]]}})
    tinted = []
    real_tint = colors.tint
    monkeypatch.setattr(colors, "tint", lambda *args: tinted.append(args[2]) or real_tint(*args))
    editor.edit_batch([(image, mask, item("color", "seal point"))])
    assert tinted == [[[70, 50, 38], [235, 222, 200]]]
    with pytest.raises(StageError, match="no colours for color 'ruddy' of class 'pentastar'"):
        editor.edit_batch([(image, mask, item("color", "ruddy"))])  # never a silent skip


def test_editor_picks_the_backend(models):
    assert backends.editor(EditParams()).name == "composite"
    assert backends.editor(edit_params(models)).name == "diffusion"


def test_edit_stage_with_the_diffusion_backend(project, models):
    from varireal_pipeline.stages import edit, fetch, prompt

    params = project(dataset={"shots": 1}, edit={
        "backend": "diffusion", "model": models["inpaint"], "device": "cpu", "batch_size": 3, "per_image": 1,
        "diffusion": band_settings(models, dilation=2)})
    fetch.main(params)
    prompt.main(params)
    edit.main(params)
    manifest = io.read_csv("data/synthetic/manifest.csv")
    classes = io.read_json("data/raw/classes.json")
    assert len(manifest) == len(classes) * 1 * 3 * 2 * 1  # classes x shots x attributes x feasibilities x per_image
    assert {row["backend"] for row in manifest} == {"diffusion"}
    for row in manifest:
        with Image.open(row["path"]) as edited, Image.open(row["source"]) as original:
            assert edited.size == original.size and edited.mode == "RGB"


@pytest.mark.parametrize("diffusion, key", [({"resolution": 100}, "edit.diffusion.resolution"),
                                            ({"recipe": "band", "steps": 2, "harmonize_strength": 0.4}, "edit.diffusion"),
                                            ({"color": {"steps": 2}}, "edit.diffusion")])
def test_diffusion_params_that_cannot_run_are_rejected(project, diffusion, key):
    from varireal.params import ParamError, load

    with pytest.raises(ParamError) as error:
        load(project(edit={"diffusion": diffusion}))
    assert error.value.key == key
