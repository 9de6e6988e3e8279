"""Object masks for real training images: pets trimaps, Grounding DINO + SAM, CLIPSeg, and GrabCut as the fallback.

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
# A background remover (RMBG-1.4) sees the image at this side, as the official code feeds it, and calls a pixel
# object from this share of its min-max normalised output (128 of 255 in the official 8-bit mask).
REMOVER_SIDE = 1024
REMOVER_CUT = 128 / 255

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


def grounding_prompt(word: str, class_name: str) -> str:
    """What Grounding DINO looks for, as the official code asks it: "A <dataset word> <class>." (word may be empty)."""
    return " ".join(part for part in ("A", word, class_name) if part) + "."


def largest_object(mask: np.ndarray) -> np.ndarray:
    """The largest connected component with its holes filled: the official code keeps SAM's largest outer contour."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if count <= 1:
        return np.zeros_like(mask, dtype=bool)
    return binary_fill_holes(labels == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA])))


def _load(loader, model: str, key: str, trust_remote_code: bool):
    """loader.from_pretrained(model); a model that cannot be loaded is one line naming its param."""
    from varireal.hub import from_pretrained

    return from_pretrained(loader, model, key, trust_remote_code,
                           hint="give a model id the hub has or a local folder, or choose another "
                                "dataset.mask.method or dataset.mask.fallback")


class GroundedSam:
    """Grounding DINO finds the object a text prompt names; SAM 2 segments it inside the top-scoring box.

    detector: a Grounding DINO model id or folder; segmenter: a SAM 2 one (transformers' Sam2Model and
    Sam2Processor, through its Auto classes). A box scores the best match of any prompt word (sigmoid);
    boxes at or under box_threshold are dropped. text_threshold only picks the words that label a box, so
    it changes no mask; it is passed on as the official code does.
    """

    def __init__(self, detector: str, segmenter: str, box_threshold: float, text_threshold: float,
                 device: str = "auto", trust_remote_code: bool = False):
        import torch
        from transformers import AutoModelForMaskGeneration, AutoProcessor, GroundingDinoForObjectDetection

        from varireal.runtime import resolve_device

        self.device = resolve_device(device)
        self.box_threshold, self.text_threshold = box_threshold, text_threshold
        key, trust = "dataset.mask.detector", trust_remote_code
        self.detector_processor = _load(AutoProcessor, detector, key, trust)
        self.detector = _load(GroundingDinoForObjectDetection, detector, key, trust).to(self.device).eval()
        key = "dataset.mask.segmenter"
        self.segmenter_processor = _load(AutoProcessor, segmenter, key, trust)
        self.segmenter = _load(AutoModelForMaskGeneration, segmenter, key, trust).to(self.device).eval()
        self._torch = torch

    def box(self, image: np.ndarray, prompt: str) -> Box | None:
        """The top-scoring box above box_threshold, edges rounded to whole pixels; None when there is none.

        The official code keeps the first box the detector lists; that order is the order of its queries,
        which means nothing, so we keep the one it is surest of."""
        torch = self._torch
        height, width = image.shape[:2]
        inputs = self.detector_processor(images=image, text=prompt, return_tensors="pt").to(self.device)
        with torch.inference_mode():
            outputs = self.detector(**inputs)
        found = self.detector_processor.post_process_grounded_object_detection(
            outputs, inputs["input_ids"], threshold=self.box_threshold, text_threshold=self.text_threshold,
            target_sizes=[(height, width)])[0]
        if len(found["scores"]) == 0:
            return None
        x0, y0, x1, y1 = found["boxes"][int(found["scores"].argmax())].tolist()
        box = max(round(x0), 0), max(round(y0), 0), min(round(x1), width), min(round(y1), height)
        return box if box[2] > box[0] and box[3] > box[1] else None

    def segment(self, image: np.ndarray, box: Box) -> np.ndarray:
        """SAM's single mask for box (multimask off, as the official code asks), cut to the box, its largest object.

        The cut is ours: what a box-prompted SAM paints outside the detector's box is background by the
        detector's account."""
        torch = self._torch
        inputs = self.segmenter_processor(images=image, input_boxes=[[list(box)]], return_tensors="pt").to(self.device)
        with torch.inference_mode():
            outputs = self.segmenter(**inputs, multimask_output=False)
        mask = self.segmenter_processor.post_process_masks(outputs.pred_masks.cpu(),
                                                           inputs["original_sizes"].cpu())[0][0, 0].numpy()
        inside = np.zeros(mask.shape, dtype=bool)
        inside[box[1]:box[3], box[0]:box[2]] = True
        return largest_object(mask.astype(bool) & inside)

    def mask(self, image: np.ndarray, prompt: str) -> np.ndarray | None:
        """The object prompt names, or None when the detector finds no box for it."""
        box = self.box(image, prompt)
        return None if box is None else self.segment(image, box)


class BackgroundRemover:
    """A background-removal model (the official fallback, briaai/RMBG-1.4) as transformers'
    AutoModelForImageSegmentation loads it: RMBG-1.4 ships its own model code, so it loads only where
    dataset.mask.trust_remote_code is true, and is refused in one line otherwise."""

    def __init__(self, model: str, device: str = "auto", trust_remote_code: bool = False):
        import torch
        from transformers import AutoModelForImageSegmentation

        from varireal.runtime import resolve_device

        self.device = resolve_device(device)
        self.model = _load(AutoModelForImageSegmentation, model, "dataset.mask.background_remover",
                           trust_remote_code).to(self.device).eval()
        self._torch = torch

    def mask(self, image: np.ndarray) -> np.ndarray:
        """The foreground: the model's first output at REMOVER_SIDE (pixels / 255 - 0.5, as the official code
        feeds it), min-max normalised, resized to the image, cut at REMOVER_CUT."""
        torch = self._torch
        from torch.nn.functional import interpolate

        pixels = torch.from_numpy(np.ascontiguousarray(image[..., :3])).permute(2, 0, 1)[None].float()
        pixels = interpolate(pixels, size=(REMOVER_SIDE, REMOVER_SIDE), mode="bilinear") / 255 - 0.5
        with torch.inference_mode():
            output = self.model(pixels.to(self.device))[0][0].float().cpu()
        output = interpolate(output.reshape(1, 1, *output.shape[-2:]), size=image.shape[:2], mode="bilinear")[0, 0]
        low, high = output.min(), output.max()
        if high <= low:  # a flat answer: nothing stands out
            return np.zeros(image.shape[:2], dtype=bool)
        return ((output - low) / (high - low) >= REMOVER_CUT).numpy()


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
