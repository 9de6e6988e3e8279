"""Minimal, mask-based edits of real images: one attribute changes, the object stays.

Two backends share the plan, the manifest and the `Editor` interface; `varireal.backends` picks one.
The `composite` backend works on the CPU with the procedural library in `render`, painting each
attribute as its registry entry says (varireal/attributes.py):
- scene (background): a new scene around the object; the object's pixels are kept exactly;
- recolor (color): the object recoloured inside its mask, keeping its shading (luminance relative to its mean);
- retexture (texture): a pattern laid over the object's smoothed shading, blended into the mask.
Pixels outside the mask (recolor, retexture) or inside it (scene) are never touched.
The `diffusion` backend (varireal/diffusion.py) follows the paper's recipe with diffusers.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
from scipy import ndimage

from varireal import attributes, render
from varireal.edit_plan import EditItem

def edit_background(image: np.ndarray, mask: np.ndarray, value: str, rng: np.random.Generator) -> np.ndarray:
    height, width = mask.shape  # render draws squares; a real photo gets the top-left of a big enough one
    scene = render.scene(value, rng, max(height, width))[:height, :width]
    return np.where(mask[..., None], image, scene)


def edit_color(image: np.ndarray, mask: np.ndarray, value: str, rng: np.random.Generator) -> np.ndarray:
    return recolor(image, mask, render.jittered_color(value, rng))


def recolor(image: np.ndarray, mask: np.ndarray, rgb: np.ndarray) -> np.ndarray:
    """The object in colour rgb (floats in [0, 1]), its luminance relative to its mean kept as shading."""
    luma = render.luminance(image)
    relative = luma / max(float(luma[mask].mean()), 1e-3)
    recolored = rgb * relative[..., None]
    return np.where(mask[..., None], recolored, image)


def edit_texture(
    image: np.ndarray, mask: np.ndarray, value: str, rng: np.random.Generator, strength: float
) -> np.ndarray:
    mean_color = image[mask].mean(axis=0)
    shading = smooth_shading(image, mask)
    height, width = mask.shape
    pattern = render.texture(value, rng, max(height, width))[:height, :width]
    surface = mean_color * (shading * (1 - render.TEXTURE_CONTRAST * pattern))[..., None]
    blended = (1 - strength) * image + strength * surface
    return np.where(mask[..., None], blended, image)


def smooth_shading(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The object's shading without its old pattern: luminance blurred inside the mask (normalised
    convolution), relative to its mean. A new texture laid over it keeps the object's light and shape."""
    weight = mask.astype(np.float32)
    luma = render.luminance(image)
    smooth = ndimage.gaussian_filter(luma * weight, 3) / np.maximum(ndimage.gaussian_filter(weight, 3), 1e-3)
    return smooth / max(float(luma[mask].mean()), 1e-3)


class Editor(Protocol):
    """What the edit stage needs from a backend: its manifest name and a batched edit.

    edit_batch takes (image uint8 RGB, mask bool, item) triples, all of one attribute, and returns one
    uint8 RGB image of the source's size per triple. An item's result depends only on its own seed,
    never on the batch it came in.
    """

    name: str

    def edit_batch(self, batch: list[tuple[np.ndarray, np.ndarray, EditItem]]) -> list[np.ndarray]: ...


def unknown_to_composite(prompts: dict) -> list[str]:
    """Values the composite editor cannot paint: it knows the procedural library's names only (the
    embedded world's vocabulary), not free text such as "living room sofa"."""
    return sorted({f"{attribute} {value!r}" for lists in prompts.values() for attribute, by_feasibility in lists.items()
                   for values in by_feasibility.values() for value in values
                   if value not in attributes.get(attribute).procedural})


class CompositeEditor:
    name = "composite"

    def __init__(self, texture_strength: float):
        self.texture_strength = texture_strength

    def __call__(self, image: np.ndarray, mask: np.ndarray, item: EditItem) -> np.ndarray:
        """image: uint8 RGB, mask: bool; returns uint8 RGB of the same size."""
        rng = np.random.default_rng(item.seed)
        pixels = render.to_float(image)
        spec = attributes.get(item.attribute)
        if spec.paint == "scene":
            out = edit_background(pixels, mask, item.value, rng)
        elif spec.paint == "recolor":
            out = edit_color(pixels, mask, item.value, rng)
        else:
            out = edit_texture(pixels, mask, item.value, rng, self.texture_strength)
        # Untouched pixels go back bit for bit, not through a float round trip.
        out = render.to_uint8(out)
        keep = mask if spec.keeps_object else ~mask
        out[keep] = image[keep]
        return out

    def edit_batch(self, batch: list[tuple[np.ndarray, np.ndarray, EditItem]]) -> list[np.ndarray]:
        return [self(image, mask, item) for image, mask, item in batch]
