"""The embedded world: a procedurally rendered fine-grained dataset that needs no download.

Ten species of flat "flowers" whose identity is their outline alone: 3 to 7 lobes, rounded
(-foil) or pointed (-star). Telling six lobes from seven under random rotation, scale and
stretch is the fine-grained part. Colour, texture and background are not identity, but each
species has a few feasible ones (the only ones real photos of it show) and the rest are
infeasible for it. Because the rules are code, the feasibility of any edit is known exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from varireal import attributes, render

# (name, lobes, pointed)
SPECIES = [
    ("trefoil", 3, False),
    ("quatrefoil", 4, False),
    ("cinquefoil", 5, False),
    ("sexfoil", 6, False),
    ("septfoil", 7, False),
    ("tristar", 3, True),
    ("quadstar", 4, True),
    ("pentastar", 5, True),
    ("hexastar", 6, True),
    ("heptastar", 7, True),
]
CLASS_NAMES = [name for name, _, _ in SPECIES]
# Species that exist in the world but are not among the task's classes: the pretraining corpus shows
# them too (varireal/pretraining.py), so the pretrained CLIP knows more of the world than the task asks.
EXTRA_SPECIES = [
    ("octofoil", 8, False),
    ("nonafoil", 9, False),
    ("octastar", 8, True),
    ("nonastar", 9, True),
]
ALL_SPECIES = SPECIES + EXTRA_SPECIES
ALL_NAMES = [name for name, _, _ in ALL_SPECIES]
ATTRIBUTES = ("background", "color", "texture")  # the world's own: each instance has one value of each
# Every value the procedural library paints, as the attribute registry lists them.
VOCABULARY = {attribute: list(attributes.get(attribute).procedural) for attribute in ATTRIBUTES}

# The world's training population per species; few-shot splits draw from it, the test split is
# rendered from a disjoint seed stream.
TRAIN_IMAGES_PER_CLASS = 200


def _feasible_indices(species: int, count: int, stride: int, vocabulary: int) -> list[int]:
    return sorted({(species + k * stride) % vocabulary for k in range(count)})


def feasible_values(class_name: str) -> dict[str, list[str]]:
    """Attribute -> the values a real photo of this species can show.

    Strides are chosen so that species share some values but no value identifies a species:
    colour and background carry some class information, as they do in real data, but not all.
    """
    species = ALL_NAMES.index(class_name)
    picks = {
        "background": _feasible_indices(species, 3, 2, len(VOCABULARY["background"])),
        "color": _feasible_indices(species, 3, 5, len(VOCABULARY["color"])),
        "texture": _feasible_indices(species, 2, 3, len(VOCABULARY["texture"])),
    }
    return {attribute: [VOCABULARY[attribute][i] for i in idx] for attribute, idx in picks.items()}


def feasibility_rules(class_name: str) -> dict[str, dict[str, list[str]]]:
    """Attribute -> {"feasible": [...], "infeasible": [...]}; infeasible is everything else."""
    feasible = feasible_values(class_name)
    return {
        attribute: {
            "feasible": feasible[attribute],
            "infeasible": [v for v in VOCABULARY[attribute] if v not in feasible[attribute]],
        }
        for attribute in ATTRIBUTES
    }


def is_feasible(class_name: str, attribute: str, value: str) -> bool:
    return value in feasible_values(class_name)[attribute]


@dataclass(frozen=True)
class Instance:
    class_name: str
    background: str
    color: str
    texture: str


def sample_instance(class_name: str, rng: np.random.Generator, feasible_only: bool = True) -> Instance:
    """A photo-like instance: every attribute drawn from the species' feasible values, or (feasible_only
    False) from every value the world paints, as an edited or odd picture would show it."""
    choices = feasible_values(class_name) if feasible_only else VOCABULARY
    return Instance(class_name, *(str(rng.choice(choices[a])) for a in ATTRIBUTES))


def _outline_radius(theta: np.ndarray, lobes: int, pointed: bool, depth: float) -> np.ndarray:
    phase = (theta * lobes / (2 * np.pi)) % 1.0  # position within one lobe, 0..1, tip at 0.5
    if pointed:
        tip = 1 - np.abs(2 * phase - 1)
        wave = 2 * (tip * tip * np.sqrt(tip)) - 1  # tip ** 2.5 without a CPU-specific power kernel
    else:
        wave = -render.cos(2 * np.pi * phase)
    return (1 + depth * wave) / (1 + depth)


def render_instance(instance: Instance, rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Render one image. Returns (RGB uint8 (size, size, 3), mask uint8 {0, 255})."""
    _, lobes, pointed = ALL_SPECIES[ALL_NAMES.index(instance.class_name)]
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    cx, cy = size * (0.5 + rng.uniform(-0.08, 0.08, 2))
    radius = size * rng.uniform(0.28, 0.38)
    rotation, stretch = rng.uniform(0, 2 * np.pi), rng.uniform(0.85, 1.15)
    depth = rng.uniform(0.22, 0.32) if pointed else rng.uniform(0.14, 0.22)

    dx, dy = (x - cx) * stretch, (y - cy) / stretch
    rho, theta = np.sqrt(dx * dx + dy * dy), render.arctan2(dy, dx) + rotation
    edge = radius * _outline_radius(theta, lobes, pointed, depth)
    alpha = np.clip(edge - rho + 0.5, 0.0, 1.0)  # one-pixel anti-aliased edge

    # Light from the upper left: a soft highlight that makes recolouring "keep the shading".
    lit_x, lit_y = dx + 0.35 * radius, dy + 0.35 * radius
    light = np.sqrt(lit_x * lit_x + lit_y * lit_y) / (1.6 * radius)
    shading = 0.55 + 0.45 * np.clip(1 - light**2, 0, 1)
    base = render.jittered_color(instance.color, rng)
    surface = base * (shading * (1 - render.TEXTURE_CONTRAST * render.texture(instance.texture, rng, size)))[..., None]

    background = render.scene(instance.background, rng, size)
    image = background * (1 - alpha[..., None]) + surface * alpha[..., None]
    return render.to_uint8(image), np.where(alpha >= 0.5, 255, 0).astype(np.uint8)
