"""The paper's training and evaluation params (issue 14): augmentation presets, the schedule, the head's
template and head, and the validation split that picks a checkpoint without looking at the test set."""

import colorsys
import math

import numpy as np
import pytest
import torch
from PIL import Image

from varireal import augment, datasets, training
from varireal import classifier as clf
from varireal.errors import ParamError
from varireal.params import validate
from varireal.records import SplitRow


@pytest.fixture
def tiny(tiny_clip_config):
    names = ["cat", "dog", "owl"]
    return names, clf.build(names, str(tiny_clip_config), None, seed=0, finetune="full", template="a photo of a {}.")


def solid(rgb=(200, 60, 30), side=48) -> Image.Image:
    return Image.new("RGB", (side, side), rgb)


def unnormalized(tensor: torch.Tensor, preprocess_eval) -> np.ndarray:
    _, mean, std = augment.model_geometry(preprocess_eval)
    return (tensor * torch.tensor(std)[:, None, None] + torch.tensor(mean)[:, None, None]).clamp(0, 1).numpy()


def median_hue(pixels: np.ndarray) -> float | None:
    """The median hue of the pixels (C, H, W) with some colour (saturated and not dark); None if there are none."""
    flat = pixels.reshape(3, -1).T
    hsv = np.array([colorsys.rgb_to_hsv(*p) for p in flat[:: max(1, len(flat) // 200)]])
    coloured = hsv[(hsv[:, 1] > 0.2) & (hsv[:, 2] > 0.2)]
    return float(np.median(coloured[:, 0])) if len(coloured) else None


def test_none_is_the_models_eval_transform_and_light_is_open_clips_train_transform(tiny):
    _, (_, preprocess_train, preprocess_eval) = tiny
    assert augment.build("none", preprocess_train, preprocess_eval) is preprocess_eval
    assert augment.build("light", preprocess_train, preprocess_eval) is preprocess_train
    image = solid()
    torch.manual_seed(1)
    first = augment.build("none", preprocess_train, preprocess_eval)(image)
    torch.manual_seed(2)
    assert torch.equal(augment.build("none", preprocess_train, preprocess_eval)(image), first)  # no randomness


def test_paper_preset_changes_hue_and_can_grayscale(tiny):
    _, (_, preprocess_train, preprocess_eval) = tiny
    paper = augment.build("paper", preprocess_train, preprocess_eval)
    side, *_ = augment.model_geometry(preprocess_eval)
    image = solid()
    original = median_hue(unnormalized(preprocess_eval(image), preprocess_eval))
    hue_shifts, grays = [], 0
    for seed in range(40):
        torch.manual_seed(seed)
        out = paper(image)
        assert out.shape == (3, side, side) and out.dtype == torch.float32
        pixels = unnormalized(out, preprocess_eval)
        if np.abs(pixels[0] - pixels[1]).max() < 1e-6 and np.abs(pixels[1] - pixels[2]).max() < 1e-6:
            grays += 1
        hue = median_hue(pixels)
        if hue is not None:
            hue_shifts.append(min(abs(hue - original), 1 - abs(hue - original)))
    assert grays >= 1  # p 0.2 per image: ~8 of 40
    assert max(hue_shifts) > 0.02  # jitter up to 0.1 of the hue circle, p 0.8


def test_paper_preset_is_deterministic_per_seed(tiny):
    _, (_, preprocess_train, preprocess_eval) = tiny
    paper = augment.build("paper", preprocess_train, preprocess_eval)
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 56, 3), dtype=np.uint8))

    def draw(seed):
        torch.manual_seed(seed)
        return torch.stack([paper(image) for _ in range(4)])

    assert torch.equal(draw(3), draw(3))
    assert not torch.equal(draw(3), draw(4))


def test_old_booleans_map_to_presets_and_bad_values_are_one_clear_error():
    assert validate({"train": {"augment": True}}, "t").train.augment == "light"
    assert validate({"train": {"augment": False}}, "t").train.augment == "none"
    with pytest.raises(ParamError, match="train.augment"):
        validate({"train": {"augment": "heavy"}}, "t")


@pytest.mark.parametrize("train, words", [
    ({"steps": 10, "epochs": 2}, "exactly one of train.steps and train.epochs"),
    ({"steps": None}, "exactly one of train.steps and train.epochs"),
    ({"lr": 1e-4, "lr_min": 1e-4}, "lr_min must be below"),
    ({"template": "a photo"}, "exactly one {}"),
    ({"head": "mlp"}, "text"),
    ({"select": "best-test"}, "best-val"),
])
def test_bad_training_params_name_the_key(train, words):
    with pytest.raises(ParamError, match="train") as error:
        validate({"train": train}, "t")
    assert words in str(error.value)


def test_schedule_is_transformers_cosine_without_a_floor_and_the_official_one_with_it():
    from transformers import get_cosine_schedule_with_warmup

    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    reference = get_cosine_schedule_with_warmup(optimizer, 15, 150).lr_lambdas[0]
    assert all(training.cosine_factor(step, 15, 150) == reference(step) for step in range(160))

    floor = 1e-8 / 1e-4
    factors = [training.cosine_factor(step, 10, 100, floor) for step in range(101)]
    assert factors[0] == pytest.approx(floor)  # official: warm-up starts at min_lr ...
    assert factors[10] == pytest.approx(1.0)  # ... peaks at lr ...
    assert factors[100] == pytest.approx(floor) and min(factors) >= floor  # ... and ends at min_lr


def test_epochs_count_passes_over_the_larger_set():
    rows = [SplitRow(f"{i}.png", None, 0, "a") for i in range(100)]
    params = validate({"train": {"steps": None, "epochs": 2.5, "batch_size": 32}}, "t").train
    assert training.total_steps(params, rows[:10], rows) == math.ceil(2.5 * 100 / 32)
    assert training.total_steps(params, rows, []) == math.ceil(2.5 * 100 / 32)  # real only
    assert training.total_steps(validate({}, "t").train, rows, rows) == 150


def test_validation_split_is_stratified_disjoint_and_seeded():
    rows = [SplitRow(f"{c}/{i}.png", None, label, c) for label, c in enumerate("abc") for i in range(10 + label)]
    held = training.validation_split(rows, 0.2, seed=0)
    assert [sum(r.label == label for r in held) for label in range(3)] == [2, 2, 2]
    assert held == training.validation_split(list(reversed(rows)), 0.2, seed=0)  # order-free
    assert held != training.validation_split(rows, 0.2, seed=1)
    two = [SplitRow(f"{i}.png", None, 0, "a") for i in range(2)]
    assert len(training.validation_split(two, 0.9, seed=0)) == 1  # never a whole class
    assert training.validation_split(rows, 0.0, seed=0) == []


def test_registry_templates_are_the_official_ones_and_the_world_keeps_its_own():
    assert datasets.template("world") == "a photo of a {}."
    assert datasets.template("pets") == "a pet photo of a {}"
    assert datasets.template("cars") == "a car photo of a {}"
    assert datasets.template("aircraft") == "a aircraft photo of a {}"  # the official text, article and all
    assert datasets.template("flowers102") == "a flower photo of a {}"
    assert datasets.template("pets", "itap of a {}.") == "itap of a {}."


def test_text_head_is_the_class_text_embeddings_only(tiny_clip_config):
    names = ["cat", "dog", "owl"]
    model, *_ = clf.build(names, str(tiny_clip_config), None, seed=0, finetune="full", template="a {}", head="text")
    assert not model.head_offset.requires_grad and not model.head_offset.any()
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        text = torch.nn.functional.normalize(model.base.encode_text(model.tokens), dim=-1)
        image = torch.nn.functional.normalize(model.base.encode_image(images), dim=-1)
        assert torch.allclose(model.eval()(images), model.scale * image @ text.T, atol=1e-5)


def test_best_val_keeps_the_best_steps_weights(tiny_clip_config, tmp_path):
    names = ["red", "blue"]
    rows = []
    for label, rgb in enumerate([(220, 30, 30), (30, 30, 220)]):
        for i in range(6):
            path = tmp_path / f"{label}_{i}.png"
            solid(tuple(min(255, c + 4 * i) for c in rgb), 32).save(path)
            rows.append(SplitRow(str(path), None, label, names[label]))
    held = training.validation_split(rows, 0.34, seed=0)
    train_rows = [r for r in rows if r not in held]
    params = validate({"train": {"model": str(tiny_clip_config), "pretrained": None, "device": "cpu", "steps": 6,
                                 "batch_size": 4, "lr": 0.01, "augment": "none", "select": "best-val", "val_every": 1,
                                 "val_fraction": 0.34}}, "t").train

    def trained(select):
        model, _, preprocess_eval = clf.build(names, params.model, None, 0, "full", template="a {}")
        validation = training.Validation(held, preprocess_eval, params.val_every)
        training.train(model, train_rows, [], preprocess_eval, params.model_copy(update={"select": select}), validation)
        return model, validation

    final, final_validation = trained("final")
    assert [r["step"] for r in final_validation.results] == [6]  # final: judged once, at the end
    best, validation = trained("best-val")
    assert [r["step"] for r in validation.results] == list(range(1, 7))
    assert validation.top1(best, torch.device("cpu")) == validation.best["val_top1"]
    if validation.best["step"] != 6:  # the earliest best step's weights, not the last step's
        assert any(not torch.equal(a, b) for a, b in zip(best.parameters(), final.parameters()))


def test_paper_preset_pickles_for_spawned_loader_processes(tiny):
    import pickle

    _, (_, preprocess_train, preprocess_eval) = tiny
    paper = augment.build("paper", preprocess_train, preprocess_eval)
    torch.manual_seed(0)
    expected = paper(solid())
    torch.manual_seed(0)
    assert torch.equal(pickle.loads(pickle.dumps(paper))(solid()), expected)
