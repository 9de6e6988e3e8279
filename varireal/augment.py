"""Training augmentation presets (train.augment): none | light | paper.

- none: the model's evaluation transform (resize, centre crop, normalise): no randomness at all.
- light: open_clip's own training transform, as the classifier has always trained (random resized crop of
  scale 0.9-1, then normalise). The embedded default uses it: its bits do not change.
- paper: the official fine-tuning augmentation (Finetune/classify/data.py of the paper's code), built from
  torchvision.transforms.v2: RandAugment (2 ops, magnitude 9), random resized crop of scale 0.25-1
  (bicubic), horizontal flip, colour jitter (brightness 0.4, contrast 0.4, saturation 0.2, hue 0.1) with
  p 0.8, grayscale with p 0.2, Gaussian blur (sigma 0.1-2) with p 0.2, solarize (threshold 128) with p 0.2,
  then the model's normalisation. Hue jitter and grayscale wash out colour: they act on the very attribute
  the colour edits change.

Every random draw comes from torch's generator (the official blur and solarize drew from Python's `random`),
so training.py's seeding makes the augmentations reproducible per seed, per rank and per loader worker,
in one process as in several.
"""

from __future__ import annotations

from typing import Literal

import torch

Preset = Literal["none", "light", "paper"]
PRESETS: tuple[str, ...] = ("none", "light", "paper")

# The official numbers (Finetune/classify/data.py, util_data.py at 4cddb23).
PAPER_CROP_SCALE = (0.25, 1.0)
PAPER_JITTER = {"brightness": 0.4, "contrast": 0.4, "saturation": 0.2, "hue": 0.1}
PAPER_JITTER_P = 0.8
PAPER_GRAYSCALE_P = 0.2
PAPER_BLUR_P, PAPER_BLUR_SIGMA = 0.2, (0.1, 2.0)
PAPER_SOLARIZE_P, PAPER_SOLARIZE_THRESHOLD = 0.2, 128


def _find(transform, kind: str):
    """The first step of a (possibly nested) torchvision Compose whose class is named kind."""
    for step in getattr(transform, "transforms", [transform]):
        if type(step).__name__ == kind:
            return step
        inner = _find(step, kind) if hasattr(step, "transforms") else None
        if inner is not None:
            return inner
    return None


def model_geometry(preprocess_eval) -> tuple[int, tuple[float, ...], tuple[float, ...]]:
    """(side, mean, std) the model expects, read from its evaluation transform (open_clip's)."""
    crop, normalize = _find(preprocess_eval, "CenterCrop"), _find(preprocess_eval, "Normalize")
    if crop is None or normalize is None:
        raise ValueError("the model's evaluation transform has no CenterCrop or no Normalize to take the input size "
                         "and normalisation from")
    size = crop.size if isinstance(crop.size, int) else crop.size[0]
    return int(size), tuple(normalize.mean), tuple(normalize.std)


def _rgb(image):
    """A module-level function, not a lambda: the transform must pickle into spawned loader processes."""
    return image.convert("RGB")


def paper(side: int, mean, std):
    """The official training augmentation for images of side x side pixels, normalised by mean and std."""
    from torchvision.transforms import InterpolationMode, v2

    blur_kernel = 2 * int(3 * PAPER_BLUR_SIGMA[1] + 0.5) + 1  # 3 sigma each side: 13 pixels at sigma 2
    return v2.Compose([
        v2.Lambda(_rgb),
        v2.RandAugment(),
        v2.RandomResizedCrop(side, scale=PAPER_CROP_SCALE, interpolation=InterpolationMode.BICUBIC, antialias=True),
        v2.RandomHorizontalFlip(),
        v2.RandomApply([v2.ColorJitter(**PAPER_JITTER)], p=PAPER_JITTER_P),
        v2.RandomGrayscale(p=PAPER_GRAYSCALE_P),
        v2.RandomApply([v2.GaussianBlur(blur_kernel, sigma=PAPER_BLUR_SIGMA)], p=PAPER_BLUR_P),
        v2.RandomSolarize(threshold=PAPER_SOLARIZE_THRESHOLD, p=PAPER_SOLARIZE_P),
        v2.ToImage(),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(mean=list(mean), std=list(std)),
    ])


def build(preset: str, preprocess_train, preprocess_eval):
    """The training transform of a preset, given the model's own training and evaluation transforms."""
    if preset == "none":
        return preprocess_eval
    if preset == "light":
        return preprocess_train
    if preset == "paper":
        return paper(*model_geometry(preprocess_eval))
    raise ValueError(f"unknown augmentation preset {preset!r}; known: {', '.join(PRESETS)}")
