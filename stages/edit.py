"""edit: the whole synthetic pool (every attribute, both feasibilities) and its manifest, in data/synthetic/."""

from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from varireal import editing, io
from varireal.params import load

from stages import PROMPTS, RAW, SYNTHETIC


@lru_cache(maxsize=2)  # items of one source image come one after another
def _source(path: str, mask_path: str) -> tuple[np.ndarray, np.ndarray]:
    with Image.open(path) as image, Image.open(mask_path) as mask:
        return np.asarray(image.convert("RGB")), np.asarray(mask.convert("L")) > 127


def main(params_path="params.yaml") -> None:
    params = load(params_path)
    sources = io.read_csv(RAW / "train.csv")
    values = io.read_json(PROMPTS)
    items = editing.plan(sources, values, params.edit.attributes, params.edit.per_image, params.seed, SYNTHETIC)
    editor = editing.CompositeEditor(params.edit.texture_strength)
    with io.atomic_dir(SYNTHETIC) as staging:
        for item in tqdm(items, desc="edit", unit="img"):
            image, mask = _source(item.source, item.mask)
            out = staging / Path(item.path).relative_to(SYNTHETIC)
            out.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(editor(image, mask, item)).save(out)
        rows = [editing.manifest_row(item, editor.name) for item in items]
        io.write_csv(staging / "manifest.csv", rows, editing.MANIFEST_FIELDS)
