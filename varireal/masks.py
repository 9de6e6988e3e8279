"""Object masks for real training images: pets trimaps, CLIPSeg, and GrabCut as the fallback.

Every producer returns a bool array of the image's height and width (True = object). `save_mask`
writes it as the PNG the other stages read (0 or 255), whole or not at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
from scipy.ndimage import binary_fill_holes

from varireal import io

# A connected component smaller than this share of the largest one is noise, not a second object.
KEEP_COMPONENT_FRACTION = 0.2
# Without a box, GrabCut starts from the centre: everything within this margin of the border is background.
CENTRED_BOX_MARGIN = 0.05
GRABCUT_ITERATIONS = 5

Box = tuple[int, int, int, int]  # x0, y0, x1, y1 in pixels, x1 and y1 exclusive


def trimap_to_mask(trimap: np.ndarray) -> np.ndarray:
    """Oxford-IIIT Pet trimap (1 = pet, 2 = background, 3 = border) -> mask; the border counts as pet."""
    return (trimap == 1) | (trimap == 3)


def clean(mask: np.ndarray) -> np.ndarray:
    """Keep the largest connected component and any of comparable size (two pets stay two), fill holes."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if count <= 1:
        return np.zeros_like(mask, dtype=bool)
    areas = stats[1:, cv2.CC_STAT_AREA]
    keep = 1 + np.flatnonzero(areas >= KEEP_COMPONENT_FRACTION * areas.max())
    return binary_fill_holes(np.isin(labels, keep))


def centred_box(width: int, height: int) -> Box:
    dx, dy = round(width * CENTRED_BOX_MARGIN), round(height * CENTRED_BOX_MARGIN)
    return dx, dy, width - dx, height - dy


def grabcut(image: np.ndarray, box: Box | None = None) -> np.ndarray:
    """GrabCut initialised with box (outside = background); a centred box when there is none.

    Returns an empty mask when GrabCut finds nothing or cannot run (e.g. a flat image).
    """
    height, width = image.shape[:2]
    x0, y0, x1, y1 = box or centred_box(width, height)
    # GrabCut learns the background from outside the box, so leave it at least one pixel of border.
    x0, y0 = max(x0, 1), max(y0, 1)
    x1, y1 = min(x1, width - 1), min(y1, height - 1)
    if x1 - x0 < 2 or y1 - y0 < 2:
        return np.zeros((height, width), dtype=bool)
    labels = np.zeros((height, width), np.uint8)
    background_model, foreground_model = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    try:
        cv2.grabCut(np.ascontiguousarray(image[..., :3]), labels, (x0, y0, x1 - x0, y1 - y0),
                    background_model, foreground_model, GRABCUT_ITERATIONS, cv2.GC_INIT_WITH_RECT)
    except cv2.error:  # too few distinct colours to fit its colour models
        return np.zeros((height, width), dtype=bool)
    return clean((labels == cv2.GC_FGD) | (labels == cv2.GC_PR_FGD))


def box_mask(shape: tuple[int, int], box: Box | None) -> np.ndarray:
    """The last resort: the box itself (or the centred box) as the object."""
    height, width = shape
    x0, y0, x1, y1 = box or centred_box(width, height)
    mask = np.zeros((height, width), dtype=bool)
    mask[max(y0, 0):y1, max(x0, 0):x1] = True
    return mask


class ClipSeg:
    """Text-prompted segmentation with a transformers CLIPSeg model (model id or local folder)."""

    def __init__(self, model: str, device: str = "auto", batch_size: int = 8, trust_remote_code: bool = False):
        import torch
        from transformers import CLIPSegForImageSegmentation, CLIPSegProcessor

        from varireal.hub import from_pretrained
        from varireal.runtime import resolve_device

        self.device = resolve_device(device)
        # The processor loads its tokenizer and image processor through Auto classes, which honour auto_map.
        self.processor = from_pretrained(CLIPSegProcessor, model, "dataset.mask.model", trust_remote_code)
        self.model = from_pretrained(CLIPSegForImageSegmentation, model, "dataset.mask.model",
                                     trust_remote_code).to(self.device).eval()
        self.batch_size = batch_size
        self._torch = torch

    def probabilities(self, images: Sequence[np.ndarray], prompts: Sequence[str]) -> list[np.ndarray]:
        """Per image, the probability that each pixel shows its prompt, at the image's own size."""
        torch = self._torch
        out = []
        for start in range(0, len(images), self.batch_size):
            batch, texts = images[start:start + self.batch_size], list(prompts[start:start + self.batch_size])
            inputs = self.processor(text=texts, images=list(batch), padding=True, return_tensors="pt")
            with torch.inference_mode():
                logits = self.model(**inputs.to(self.device)).logits
            logits = logits.reshape(len(batch), 1, *logits.shape[-2:]).float()
            for image, logit in zip(batch, logits):
                size = image.shape[:2]
                upsampled = torch.nn.functional.interpolate(logit[None], size=size, mode="bilinear")
                out.append(upsampled[0, 0].sigmoid().cpu().numpy())
        return out

    def masks(self, images: Sequence[np.ndarray], prompts: Sequence[str], threshold: float) -> list[np.ndarray]:
        return [clean(p > threshold) for p in self.probabilities(images, prompts)]


def covers(mask: np.ndarray, min_area: float) -> bool:
    """Whether mask found an object: not empty and at least min_area of the image."""
    return bool(mask.any()) and mask.mean() >= min_area


def grabcut_or_box(image: np.ndarray, box: Box | None, min_area: float) -> tuple[np.ndarray, str]:
    """GrabCut in box; if it finds nothing, the box itself. Returns the mask and which of the two it is."""
    mask = grabcut(image, box)
    if covers(mask, min_area):
        return mask, "grabcut"
    return box_mask(image.shape[:2], box), "box"


def save_mask(mask: np.ndarray, path: str | Path) -> None:
    io.write_image_atomic(path, mask.astype(np.uint8) * 255)
