"""Which source images fetch lets into data/raw, and how, so that every later stage reads 8-bit RGB.

Each image is opened and fully decoded. Plain 8-bit RGB JPEG and PNG files are copied byte for byte.
Other modes and formats are converted to 8-bit RGB and written as PNG: 16-bit values are scaled
(v >> 8, as Pillow reads 16-bit RGB PNGs), never clipped; alpha is composited over white. Files that
do not decode (not an image, truncated, corrupt), are under MIN_SIDE pixels on a side, or are over
Pillow's decompression-bomb limit (Image.MAX_IMAGE_PIXELS) are skipped.
"""

from __future__ import annotations

import shutil
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from varireal.errors import first_line

# Below this a photo holds too little of the object to edit or to learn from (CLIP sees 224 px).
MIN_SIDE = 32
# MPO: a camera JPEG with extra frames; every JPEG reader decodes its first.
PLAIN_FORMATS = ("JPEG", "MPO", "PNG")
ALPHA_BACKGROUND = (255, 255, 255)
ALPHA_MODES = ("RGBA", "RGBa", "LA", "La", "PA")

CONVERSIONS = ("grayscale", "palette", "cmyk", "16bit", "float", "alpha", "format", "mode")
SKIP_REASONS = ("not_an_image", "truncated", "corrupt", "too_small", "too_large", "unsupported_mode")

# What Pillow's decoders raise on broken files besides OSError (plugins parse headers by hand).
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, TypeError, IndexError, EOFError, struct.error)


@dataclass(frozen=True)
class Outcome:
    action: str  # "copied", "converted" or "skipped"
    kind: str = ""  # a CONVERSIONS kind or a SKIP_REASONS reason
    detail: str = ""  # for the warning line
    path: Path | None = None  # the file written; None when skipped


def admit(source: Path, target: Path) -> Outcome:
    """Copy source to target, write it converted to target with a .png suffix, or skip it."""
    decoded = _decode(source)
    if isinstance(decoded, Outcome):
        return decoded
    kind, detail, image = decoded
    target.parent.mkdir(parents=True, exist_ok=True)
    if image is None:
        shutil.copyfile(source, target)
        return Outcome("copied", path=target)
    target = target.with_suffix(".png")
    image.save(target)
    return Outcome("converted", kind, detail, target)


def _decode(source: Path) -> Outcome | tuple[str, str, Image.Image | None]:
    """(conversion kind, detail, converted image) with kind "" and image None for a plain file, or a skip."""
    with warnings.catch_warnings():
        # Over MAX_IMAGE_PIXELS Pillow only warns (it raises over twice that): both mean too large here.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(source) as image:
                if min(image.size) < MIN_SIDE:
                    width, height = image.size
                    return Outcome("skipped", "too_small",
                                   f"too small ({width}x{height} pixels, under {MIN_SIDE} on a side)")
                kind, described = _conversion(image)
                image.load()
                if not kind:
                    return "", "", None
                try:
                    converted = to_rgb8(image)
                except ValueError:  # a mode Pillow cannot turn into RGB (LAB, HSV ...)
                    return Outcome("skipped", "unsupported_mode", f"unsupported mode {image.mode}")
                over = " over white" if kind == "alpha" or image.mode in ALPHA_MODES else ""
                return kind, f"{described} to 8-bit RGB PNG{over}", converted
        except (Image.DecompressionBombWarning, Image.DecompressionBombError):
            return Outcome("skipped", "too_large",
                           f"too large (over Pillow's limit of {Image.MAX_IMAGE_PIXELS} pixels)")
        except UnidentifiedImageError:
            return Outcome("skipped", "not_an_image", "not an image Pillow can read")
        except _DECODE_ERRORS as err:
            message = first_line(err)
            reason = "truncated" if "truncated" in message.lower() else "corrupt"
            return Outcome("skipped", reason, f"{reason} image ({message})")


def _is_16bit(image: Image.Image) -> bool:
    """16 bits per channel in the file; Pillow reads 16-bit RGB(A) PNGs as 8-bit modes, so ask the decoder."""
    return image.mode.startswith("I;16") or any(";16" in str(tile.args) for tile in image.tile)


def _conversion(image: Image.Image) -> tuple[str, str]:
    """What converting this opened (not yet decoded) image means: (kind, words), kind "" when it is plain."""
    mode = image.mode
    if _is_16bit(image) or mode == "I":
        kind = "16bit"
    elif mode == "F":
        kind = "float"
    elif mode in ALPHA_MODES or "transparency" in image.info:
        kind = "alpha"
    elif mode == "CMYK":
        kind = "cmyk"
    elif mode in ("1", "L"):
        kind = "grayscale"
    elif mode == "P":
        kind = "palette"
    elif mode != "RGB":
        kind = "mode"
    elif image.format not in PLAIN_FORMATS:
        kind = "format"
    else:
        return "", ""
    words = {"16bit": "16-bit ", "alpha": "transparent ", "cmyk": "CMYK ", "grayscale": "grayscale ",
             "palette": "palette ", "float": "floating-point "}.get(kind, "")
    return kind, f"{words}{image.format} ({mode})"


def to_rgb8(image: Image.Image) -> Image.Image:
    """A decoded image as 8-bit RGB. Integer modes (I;16*, and I, taken to hold 16-bit values) keep their
    top 8 bits; float (F) is taken as 0..1; alpha is composited over ALPHA_BACKGROUND. Raises ValueError
    for a mode Pillow cannot convert."""
    mode = image.mode
    if mode.startswith("I"):
        values = np.clip(np.asarray(image).astype(np.int64), 0, 65535)
        return Image.fromarray((values >> 8).astype(np.uint8)).convert("RGB")
    if mode == "F":
        values = np.nan_to_num(np.asarray(image, dtype=np.float64))
        return Image.fromarray(np.clip(np.rint(values * 255), 0, 255).astype(np.uint8)).convert("RGB")
    if mode in ALPHA_MODES or "transparency" in image.info:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, ALPHA_BACKGROUND + (255,))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def empty_counts() -> dict:
    """A split's counts in metrics/fetch.json; every key present, so `dvc metrics diff` lines up."""
    return {"images": 0, "read": 0, "copied": 0,
            "converted": dict.fromkeys(CONVERSIONS, 0), "skipped": dict.fromkeys(SKIP_REASONS, 0)}


def tally(counts: dict, outcome: Outcome) -> None:
    counts["read"] += 1
    if outcome.action == "copied":
        counts["copied"] += 1
    else:
        counts[outcome.action][outcome.kind] += 1
    counts["images"] += outcome.action != "skipped"
