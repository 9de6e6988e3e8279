"""Colour values and the RGB they tint with.

Every colour value a prompt backend writes carries one or more RGB triplets (integers 0..255): the
prompt banks list them in their `palette:` section, the chat-model backends ask for them in the answer,
the embedded world's come from its renderer (`render.COLORS`). Editors tint with them; no editor guesses
a colour from its words.

The tint keeps the object's shading:
- one colour: the object's luminance relative to its mean, times the colour;
- several colours (coats such as "black and tan", "seal point", "brindle"): a luminance gradient map.
  The colours are sorted by their own luminance; the object's pixels, ranked by luminance (ties in
  reading order), are split into as many equal shares: the darkest share takes the darkest colour, ...,
  the lightest share the lightest. Each share keeps its own shading (its luminance relative to the
  share's mean). Every colour covers part of the object: none is dropped or averaged away.
Either result is blended with the source at alpha inside the mask; pixels outside it are the source's.

The pixel math is elementwise numpy (no matmul, no BLAS, no float32 transcendental functions) and an
integer sort, so a tint is the same bytes on every CPU.
"""

from __future__ import annotations

from typing import Annotated

import numpy as np
from pydantic import Field, StrictInt, TypeAdapter

from varireal import attributes, render

Channel = Annotated[StrictInt, Field(ge=0, le=255)]
RGB = Annotated[list[Channel], Field(min_length=3, max_length=3)]
Colours = Annotated[list[RGB], Field(min_length=1)]  # one value's colours, at least one
Palette = dict[str, Colours]  # colour value -> its colours

COLOURS = TypeAdapter(Colours)
PALETTE = TypeAdapter(Palette)


def colour_attributes() -> tuple[str, ...]:
    """The attributes whose values are colours: those the editors paint by tinting."""
    return tuple(name for name in attributes.names() if attributes.get(name).paint == "recolor")


def from_unit(rgb) -> list[int]:
    """An RGB in [0, 1] (the renderer's palette) as integers 0..255."""
    return [int(round(float(channel) * 255)) for channel in rgb]


def world_colours(value: str) -> list[list[int]]:
    """The embedded world's colour value as the renderer paints it."""
    return [from_unit(render.COLORS[value])]


def _shaded(luma: np.ndarray, where: np.ndarray, rgb: np.ndarray) -> np.ndarray:
    """rgb times the luminance of `where`'s pixels relative to their mean."""
    relative = luma / max(float(luma[where].mean()), 1e-3)
    return rgb * relative[..., None]


def tint(pixels: np.ndarray, mask: np.ndarray, rgbs, alpha: float = 1.0) -> np.ndarray:
    """pixels (H, W, 3 floats in [0, 1]) with the masked object tinted to rgbs (triplets 0..255) at alpha.

    The rule for one and for several colours is the module's docstring's."""
    if not len(rgbs):
        raise ValueError("tint needs at least one colour")
    colours = np.asarray(rgbs, np.float32) / np.float32(255)
    luma = render.luminance(pixels)
    if not mask.any():
        return pixels.copy()
    if len(colours) == 1:
        tinted = _shaded(luma, mask, colours[0])
    else:
        order = np.argsort(render.luminance(colours), kind="stable")  # darkest colour first
        rows, cols = np.nonzero(mask)
        ranks = np.empty(len(rows), np.int64)
        ranks[np.argsort(luma[rows, cols], kind="stable")] = np.arange(len(rows))
        share = np.zeros(mask.shape, np.int64)
        share[rows, cols] = ranks * len(colours) // len(rows)  # 0 = the darkest share
        tinted = np.zeros_like(pixels)
        for index, colour in enumerate(order):
            part = mask & (share == index)
            if part.any():
                tinted = np.where(part[..., None], _shaded(luma, part, colours[colour]), tinted)
    blended = (1 - np.float32(alpha)) * pixels + np.float32(alpha) * np.clip(tinted, 0, 1)
    return np.where(mask[..., None], blended, pixels).astype(pixels.dtype)
