"""Procedural graphics shared by the embedded world and the composite editor.

Everything here is a pure function of its arguments and a numpy Generator, so an image is
reproducible from its seed. Images are float32 arrays in [0, 1], shape (H, W, 3); patterns and
masks are (H, W).

Pixels must not depend on the CPU: a value that rounds the other way changes an output's hash in
dvc.lock. So pixel math uses elementwise IEEE operations only (+, -, *, /, sqrt, floor: exactly
rounded on every CPU), never a BLAS product (`image @ weights` runs a kernel chosen for the CPU) nor a
float32 sin, cos or arctan2, which numpy evaluates with kernels chosen for the CPU (its own FMA
polynomials, SVML on AVX-512, libm without AVX2) that round differently. Those run in float64 here and
are rounded to float32, which makes the kernels agree (tests/test_cpu_independence.py) except for a
float64 result within one step of a float32 rounding boundary, about one value in 10^9.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

# Base colours of objects. Dark and light values keep some headroom so shading stays visible.
COLORS: dict[str, tuple[float, float, float]] = {
    "red": (0.85, 0.15, 0.15),
    "orange": (0.95, 0.55, 0.10),
    "yellow": (0.95, 0.85, 0.20),
    "green": (0.20, 0.65, 0.25),
    "teal": (0.10, 0.60, 0.60),
    "blue": (0.20, 0.35, 0.85),
    "purple": (0.55, 0.25, 0.75),
    "pink": (0.95, 0.55, 0.70),
    "brown": (0.50, 0.30, 0.15),
    "gray": (0.55, 0.55, 0.55),
    "white": (0.95, 0.95, 0.95),
    "black": (0.15, 0.15, 0.15),
}


def sin(x) -> np.ndarray:
    return np.sin(np.asarray(x, np.float64)).astype(np.float32)


def cos(x) -> np.ndarray:
    return np.cos(np.asarray(x, np.float64)).astype(np.float32)


def arctan2(y, x) -> np.ndarray:
    return np.arctan2(np.asarray(y, np.float64), np.asarray(x, np.float64)).astype(np.float32)


# Rec. 601 luma weights: relative luminance of an RGB pixel.
LUMA = (np.float32(0.299), np.float32(0.587), np.float32(0.114))


def luminance(image: np.ndarray) -> np.ndarray:
    """Luma of an (H, W, 3) float32 image as a weighted sum, channel by channel: the same bits on
    every CPU, where `image @ LUMA` would run BLAS's CPU-specific kernel."""
    return image[..., 0] * LUMA[0] + image[..., 1] * LUMA[1] + image[..., 2] * LUMA[2]


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    return x, y


def _vertical_gradient(size: int, top, bottom) -> np.ndarray:
    t = np.linspace(0.0, 1.0, size, dtype=np.float32)[:, None, None]
    row = (1 - t) * np.asarray(top, np.float32) + t * np.asarray(bottom, np.float32)
    return np.broadcast_to(row, (size, size, 3)).copy()


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Value noise in [0, 1]: a cells x cells random grid, cubic-upsampled to size x size."""
    coarse = rng.random((cells, cells), dtype=np.float32)
    fine = ndimage.zoom(coarse, size / cells, order=3, mode="reflect")[:size, :size]
    return np.clip(fine, 0.0, 1.0)


def _mix(base: np.ndarray, color, weight: np.ndarray) -> np.ndarray:
    weight = weight[..., None]
    return base * (1 - weight) + np.asarray(color, np.float32) * weight


def _scene_sky(rng, size):
    img = _vertical_gradient(size, (0.30, 0.55, 0.95), (0.75, 0.88, 1.00))
    clouds = np.clip((_smooth_noise(rng, size, 5) - 0.55) * 4, 0, 1)
    return _mix(img, (1.0, 1.0, 1.0), clouds)


def _scene_meadow(rng, size):
    x, y = _grid(size)
    horizon = size * rng.uniform(0.25, 0.4)
    img = _vertical_gradient(size, (0.25, 0.60, 0.20), (0.15, 0.45, 0.10))
    blades = 0.85 + 0.3 * _smooth_noise(rng, size, 64) * (sin(2 * np.pi * x / size * rng.uniform(30, 50)) > 0)
    img = img * blades[..., None]
    sky = _vertical_gradient(size, (0.55, 0.75, 0.95), (0.80, 0.90, 0.98))
    return np.where((y < horizon)[..., None], sky, img)


def _scene_desert(rng, size):
    x, y = _grid(size)
    u, v = x / size, y / size
    dunes = sin(2 * np.pi * (u * rng.uniform(0.8, 1.6) + v * rng.uniform(2.0, 3.6)) + rng.uniform(0, 6.3))
    img = _vertical_gradient(size, (0.93, 0.80, 0.55), (0.85, 0.68, 0.40))
    return img * (0.88 + 0.12 * dunes)[..., None]


def _scene_ocean(rng, size):
    x, y = _grid(size)
    phase = rng.uniform(0, 6.3)
    u, v = x / size, y / size
    waves = sin(2 * np.pi * v * rng.uniform(6, 10) + 1.5 * sin(2 * np.pi * u * rng.uniform(1, 2) + phase))
    img = _vertical_gradient(size, (0.10, 0.35, 0.60), (0.02, 0.15, 0.35))
    return _mix(img, (0.75, 0.90, 1.0), np.clip(waves - 0.7, 0, 1) * 1.5)


def _scene_snow(rng, size):
    img = _vertical_gradient(size, (0.85, 0.90, 0.97), (0.97, 0.98, 1.00))
    drifts = _smooth_noise(rng, size, 6)
    return _mix(img, (0.70, 0.78, 0.90), 0.4 * drifts)


def _scene_forest(rng, size):
    x, _ = _grid(size)
    img = _vertical_gradient(size, (0.10, 0.30, 0.12), (0.05, 0.18, 0.06))
    img = img * (0.8 + 0.4 * _smooth_noise(rng, size, 12))[..., None]
    for trunk_x in rng.uniform(0, size, rng.integers(3, 7)):
        width = rng.uniform(0.03, 0.07) * size
        img = _mix(img, (0.35, 0.22, 0.12), (np.abs(x - trunk_x) < width).astype(np.float32))
    return img


def _scene_night(rng, size):
    img = _vertical_gradient(size, (0.02, 0.02, 0.10), (0.08, 0.08, 0.25))
    stars = np.zeros((size, size), np.float32)
    stars.flat[rng.choice(size * size, rng.integers(150, 300), replace=False)] = 1.0
    glow = ndimage.gaussian_filter(stars, size / 200)
    return _mix(img, (1.0, 1.0, 0.9), np.clip(glow / glow.max(), 0, 1))


def _scene_lava(rng, size):
    noise = _smooth_noise(rng, size, 8)
    cracks = np.clip(1 - np.abs(noise - 0.5) * 12, 0, 1)
    img = np.broadcast_to(np.float32([0.25, 0.04, 0.02]), (size, size, 3)).copy()
    return _mix(img, (1.0, 0.6, 0.05), cracks)


def _scene_moon(rng, size):
    x, y = _grid(size)
    horizon = size * rng.uniform(0.3, 0.45)
    ground = _vertical_gradient(size, (0.55, 0.55, 0.55), (0.35, 0.35, 0.37))
    for _ in range(rng.integers(4, 9)):
        cx, cy, r = rng.uniform(0, size), rng.uniform(horizon, size), rng.uniform(0.03, 0.1) * size
        ground = _mix(ground, (0.22, 0.22, 0.24), ((x - cx) ** 2 + ((y - cy) * 2) ** 2 < r**2).astype(np.float32))
    space = np.zeros((size, size, 3), np.float32)
    return np.where((y < horizon)[..., None], space, ground)


SCENES = {
    "sky": _scene_sky,
    "meadow": _scene_meadow,
    "desert": _scene_desert,
    "ocean": _scene_ocean,
    "snow": _scene_snow,
    "forest": _scene_forest,
    "night": _scene_night,
    "lava": _scene_lava,
    "moon": _scene_moon,
}


def _pattern_plain(rng, size):
    return np.zeros((size, size), np.float32)


def _pattern_stripes(rng, size):
    x, y = _grid(size)
    angle, period = rng.uniform(0, np.pi), rng.uniform(0.08, 0.14) * size
    return (sin(2 * np.pi * (x * cos(angle) + y * sin(angle)) / period) > 0).astype(np.float32)


def _pattern_dots(rng, size):
    x, y = _grid(size)
    period = rng.uniform(0.09, 0.14) * size
    dx, dy = (x + rng.uniform(0, period)) % period - period / 2, (y + rng.uniform(0, period)) % period - period / 2
    return (dx**2 + dy**2 < (0.28 * period) ** 2).astype(np.float32)


def _pattern_checker(rng, size):
    x, y = _grid(size)
    period = rng.uniform(0.08, 0.13) * size
    return ((np.floor(x / period) + np.floor(y / period)) % 2).astype(np.float32)


def _pattern_scales(rng, size):
    x, y = _grid(size)
    period = rng.uniform(0.09, 0.13) * size
    row = np.floor(y / period)
    dx = (x + row * period / 2) % period - period / 2
    dy = y % period
    ring = np.abs(np.sqrt(dx**2 + dy**2) - 0.5 * period)
    return (ring < 0.12 * period).astype(np.float32)


def _pattern_speckle(rng, size):
    return (_smooth_noise(rng, size, 40) > 0.62).astype(np.float32)


def _pattern_zigzag(rng, size):
    x, y = _grid(size)
    period = rng.uniform(0.1, 0.15) * size
    triangle = np.abs((x / period) % 2 - 1) * period * 0.6
    return (((y + triangle) / (period * 0.5)) % 2 < 1).astype(np.float32)


TEXTURES = {
    "plain": _pattern_plain,
    "stripes": _pattern_stripes,
    "dots": _pattern_dots,
    "checker": _pattern_checker,
    "scales": _pattern_scales,
    "speckle": _pattern_speckle,
    "zigzag": _pattern_zigzag,
}

# Per-channel spread of a named colour between instances, as a fraction.
COLOR_JITTER = 0.08

# How strongly a texture darkens the surface it is laid on.
TEXTURE_CONTRAST = 0.45


# Scenes and patterns are drawn at this multiple of the output size and box-filtered down, so hard
# pattern edges are anti-aliased like the edges of a photographed object.
SUPERSAMPLE = 2


def _downsample(array: np.ndarray, factor: int) -> np.ndarray:
    h, w = array.shape[0] // factor, array.shape[1] // factor
    return array.reshape(h, factor, w, factor, *array.shape[2:]).mean(axis=(1, 3))


def scene(name: str, rng: np.random.Generator, size: int) -> np.ndarray:
    return _downsample(SCENES[name](rng, size * SUPERSAMPLE), SUPERSAMPLE).astype(np.float32)


def texture(name: str, rng: np.random.Generator, size: int) -> np.ndarray:
    return _downsample(TEXTURES[name](rng, size * SUPERSAMPLE), SUPERSAMPLE).astype(np.float32)


def jittered_color(name: str, rng: np.random.Generator) -> np.ndarray:
    """A named colour with the per-instance spread real objects of that colour show."""
    return color(name) * rng.uniform(1 - COLOR_JITTER, 1 + COLOR_JITTER, 3).astype(np.float32)


def color(name: str) -> np.ndarray:
    return np.asarray(COLORS[name], np.float32)


def to_uint8(image: np.ndarray) -> np.ndarray:
    return np.round(np.clip(image, 0.0, 1.0) * 255).astype(np.uint8)


def to_float(image: np.ndarray) -> np.ndarray:
    return image.astype(np.float32) / 255.0
