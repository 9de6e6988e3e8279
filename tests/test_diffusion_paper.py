"""The diffusion editor's paper recipe (the official VariReal code's) on tiny random twins of its models
(tests/tiny_sdxl.py), loaded through the editor's own from_pretrained path."""

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from varireal.datasets import world
from varireal import colors
from varireal.diffusion import DiffusionEditor, Frame, dilate_square, value_span, weighted_prompt_embeds
from varireal.edit_plan import EditItem
from varireal.params import EditParams

from conftest import REPO
from tiny_sdxl import SIDE, band_settings, paper_settings


# The prompts' colours of the values these tests paint (records.Prompts.rgb).
RGB = {"pentastar": {name: colors.world_colours(name) for name in ("purple", "red")}}


def edit_params(models, **diffusion) -> EditParams:
    return EditParams(backend="diffusion", model=models["inpaint"], device="cpu", batch_size=2,
                      diffusion=paper_settings(models, **diffusion))


@pytest.fixture(scope="module")
def editor(tiny_diffusion):
    return DiffusionEditor(edit_params(tiny_diffusion), rgb=RGB)


@pytest.fixture(scope="module")
def source():
    """A non-square world picture (48 x 80) and its object mask."""
    image, mask = world.render_instance(world.Instance("pentastar", "meadow", "blue", "dots"),
                                        np.random.default_rng(0), 80)
    return image[16:64].copy(), mask[16:64] > 0


def item(attribute, value, feasibility="infeasible", seed=1):
    return EditItem("out.png", "src.png", "mask.png", 7, "pentastar", attribute, feasibility, value, seed)


def test_pad_keeps_the_aspect_and_crops_back():
    frame = Frame(48, 80, SIDE, "pad")
    assert (frame.inner_w, frame.inner_h) == (64, 38)  # 64 x 48 / 80 = 38.4, rounded down as the official code
    image = np.random.default_rng(0).integers(0, 256, (48, 80, 3), dtype=np.uint8)
    work = frame.image(image)
    assert work.shape == (SIDE, SIDE, 3)
    assert not work[38:].any() and work[:38].any()  # the picture at the top, black below
    assert frame.back(work).shape == image.shape
    mask = np.zeros((48, 80), bool)
    mask[10:20, 30:40] = True
    work_mask = frame.mask(mask)
    assert not work_mask[38:].any() and work_mask.any()
    tall = Frame(80, 48, SIDE, "pad")
    assert (tall.inner_w, tall.inner_h) == (38, 64)
    stretch = Frame(48, 80, SIDE, "stretch")
    assert (stretch.inner_w, stretch.inner_h) == (SIDE, SIDE)


@pytest.mark.parametrize("side", [1, 2, 3, 4, 5, 25])
def test_dilation_is_a_square_of_the_kernel_side(side):
    mask = np.zeros((60, 60), bool)
    mask[30, 30] = True
    grown = dilate_square(mask, side)
    rows, cols = np.nonzero(grown)
    assert grown.sum() == side * side
    assert rows.max() - rows.min() + 1 == side and cols.max() - cols.min() + 1 == side


def test_a_colour_value_without_rgb_is_an_error(tiny_diffusion, source):
    from varireal.errors import StageError

    image, mask = source
    with pytest.raises(StageError, match="no colours for color 'teal'"):
        DiffusionEditor(edit_params(tiny_diffusion), rgb=RGB).edit_batch([(image, mask, item("color", "teal"))])


def test_background_repaints_everything_but_the_object(editor, source):
    image, mask = source
    outs = editor.edit_batch([(image, mask, item("background", "lava")),
                              (image, mask, item("background", "beach", "feasible", 2))])
    for out in outs:
        assert out.shape == image.shape and out.dtype == np.uint8  # padded to the square, cropped back
        assert np.array_equal(out[mask], image[mask])
        assert np.abs(out[~mask].astype(int) - image[~mask]).mean() > 10  # a new background, not the meadow
    assert type(editor.inpainter).__name__ == "StableDiffusionXLInpaintPipeline"
    assert type(editor.painter.scheduler).__name__ == "DPMSolverMultistepScheduler"


@pytest.mark.parametrize("attribute, value", [("color", "purple"), ("texture", "knitted wool")])
def test_object_edits_are_pasted_back_through_the_mask(editor, source, attribute, value):
    image, mask = source
    outs = editor.edit_batch([(image, mask, item(attribute, value)),
                              (image, mask, item(attribute, value, "feasible", 2))])
    for out in outs:
        assert out.shape == image.shape
        assert np.array_equal(out[~mask], image[~mask])  # so outside any dilation of it too
        assert not np.array_equal(out[mask], image[mask])
    refiner = editor.refiner
    assert type(refiner).__name__ == "StableDiffusionXLControlNetPipeline"
    assert type(refiner.unet.encoder_hid_proj.image_projection_layers[0]).__name__ == "IPAdapterPlusImageProjection"
    assert refiner.image_encoder is not None and refiner.vae.config.force_upcast is False  # the fp16-fix stand-in


@pytest.mark.parametrize("attribute, value", [("background", "lava"), ("color", "purple"), ("texture", "stripes")])
def test_same_seed_same_bytes(editor, tiny_diffusion, source, attribute, value):
    image, mask = source
    first = editor.edit_batch([(image, mask, item(attribute, value, seed=5))])[0]
    again = DiffusionEditor(edit_params(tiny_diffusion), rgb=RGB).edit_batch([(image, mask, item(attribute, value, seed=5))])[0]
    assert np.array_equal(first, again)
    other = editor.edit_batch([(image, mask, item(attribute, value, seed=6))])[0]
    assert not np.array_equal(first, other)


def test_feasibility_picks_its_numbers(tiny_diffusion, source):
    image, mask = source
    same = {"feasible": 0.3, "infeasible": 0.3}
    apart = DiffusionEditor(edit_params(tiny_diffusion, refiner={"model": None},
                                        color={"steps": 5, "strength": same, "alpha": {"feasible": 0.0,
                                                                                       "infeasible": 1.0}}), rgb=RGB)
    feasible, infeasible = apart.edit_batch([(image, mask, item("color", "red", "feasible")),
                                             (image, mask, item("color", "red", "infeasible"))])
    assert not np.array_equal(feasible, infeasible)  # same seed and strength: only the tint's alpha differs
    assert "refiner" not in vars(apart)  # refiner.model null: the inpainting is pasted back as it is


def test_v_prediction_scene_model(tiny_diffusion, source):
    image, mask = source
    v_editor = DiffusionEditor(edit_params(tiny_diffusion, scene_model=tiny_diffusion["scene-v"]), rgb=RGB)
    (out,) = v_editor.edit_batch([(image, mask, item("background", "lava"))])
    assert v_editor.painter.scheduler.config.prediction_type == "v_prediction"
    assert np.array_equal(out[mask], image[mask])


def test_band_recipe_still_works(tiny_diffusion, source):
    image, mask = source
    band = DiffusionEditor(EditParams(backend="diffusion", model=tiny_diffusion["inpaint"], device="cpu",
                                      diffusion=band_settings(tiny_diffusion)), rgb=RGB)
    (out,) = band.edit_batch([(image, mask, item("color", "purple"))])
    assert type(band.inpainter).__name__ == "StableDiffusionXLControlNetInpaintPipeline"
    from varireal.diffusion import dilate

    region = dilate(mask, 3)
    assert np.array_equal(out[~region], image[~region]) and not np.array_equal(out[mask], image[mask])


@pytest.mark.parametrize("pipe_name", ["inpainter", "painter"])
def test_prompt_weight_scales_the_value_tokens_only(editor, pipe_name):
    pipe = getattr(editor, pipe_name)
    prompts, values = ["a photo of a cat on the beach at noon"], ["beach"]
    span = value_span(pipe.tokenizer, prompts[0], values[0])
    assert span is not None and span[1] > span[0]
    plain = weighted_prompt_embeds(pipe, prompts, values, 1.0, ["blurry"], True, editor.device)
    weighted = weighted_prompt_embeds(pipe, prompts, values, 1.3, ["blurry"], True, editor.device)
    rows = torch.zeros(plain["prompt_embeds"].shape[1], dtype=torch.bool)
    rows[span[0]:span[1]] = True
    assert torch.allclose(weighted["prompt_embeds"][0, rows], 1.3 * plain["prompt_embeds"][0, rows])
    assert torch.equal(weighted["prompt_embeds"][0, ~rows], plain["prompt_embeds"][0, ~rows])
    assert torch.equal(weighted["negative_prompt_embeds"], plain["negative_prompt_embeds"])
    if "pooled_prompt_embeds" in plain:  # SDXL: the pooled embedding is the unweighted prompt's
        assert torch.equal(weighted["pooled_prompt_embeds"], plain["pooled_prompt_embeds"])
    # The span is where the value's own tokens are: encoding it alone gives the same ids.
    ids = pipe.tokenizer(prompts[0]).input_ids
    assert ids[span[0]:span[1]] == pipe.tokenizer("beach", add_special_tokens=False).input_ids


def test_pets_profile_lists_the_official_values(monkeypatch):
    from varireal_pipeline.cli import app

    monkeypatch.chdir(REPO)
    result = CliRunner().invoke(app, ["profile", "pets", "--dry-run"])
    assert result.exit_code == 0, result.output
    for setting in ("edit.diffusion.recipe=paper", "edit.diffusion.fit=pad",
                    "edit.diffusion.scene_model=stabilityai/stable-diffusion-2-1-base",
                    "edit.diffusion.background.dilation=120", "edit.diffusion.background.strength=0.99",
                    "edit.diffusion.background.guidance=40.0", "edit.diffusion.color.alpha.feasible=0.3",
                    "edit.diffusion.color.alpha.infeasible=0.5", "edit.diffusion.color.guidance.feasible=12.0",
                    "edit.diffusion.color.ip_adapter_scale.feasible=0.7",
                    "edit.diffusion.texture.ip_adapter_scale.feasible=0.2",
                    "edit.diffusion.refiner.model=SG161222/RealVisXL_V4.0",
                    "edit.diffusion.refiner.vae=madebyollin/sdxl-vae-fp16-fix",
                    "edit.diffusion.ip_adapter_weights=ip-adapter-plus_sdxl_vit-h.safetensors"):
        assert setting in result.output
