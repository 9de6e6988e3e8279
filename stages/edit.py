"""edit: the whole synthetic pool (every attribute, both feasibilities) and its manifest, in data/synthetic/."""

from functools import lru_cache
from itertools import groupby
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from varireal import editing, io
from varireal.errors import StageError
from varireal.params import ATTRIBUTES, load

from stages import PROMPTS, RAW, SYNTHETIC


@lru_cache(maxsize=2)  # one source's items come one after another; a batch may span two sources
def _source(path: str, mask_path: str) -> tuple[np.ndarray, np.ndarray]:
    with Image.open(path) as image, Image.open(mask_path) as mask:
        return np.asarray(image.convert("RGB")), np.asarray(mask.convert("L")) > 127


def batches(items: list[editing.EditItem], size: int) -> list[list[editing.EditItem]]:
    """Items of one attribute, up to size at a time. A stable sort by attribute keeps each source's
    items adjacent and lets a batch run on into the next source's, so batches stay full."""
    by_attribute = sorted(items, key=lambda item: ATTRIBUTES.index(item.attribute))
    out = []
    for _, group in groupby(by_attribute, key=lambda item: item.attribute):
        group = list(group)
        out += [group[start:start + size] for start in range(0, len(group), size)]
    return out


def main(params_path="params.yaml") -> None:
    params = load(params_path)
    sources = io.read_csv(RAW / "train.csv")
    values = io.read_json(PROMPTS)
    items = editing.plan(sources, values, params.edit.attributes, params.edit.per_image, params.seed, SYNTHETIC)
    if params.edit.backend == "composite" and (unknown := editing.unknown_to_composite(values)):
        raise StageError(f"edit.backend composite paints only the embedded world's procedural values, not "
                         f"{', '.join(unknown[:3])}{' ...' if len(unknown) > 3 else ''}; use edit.backend: diffusion")
    editor = editing.make_editor(params.edit)
    with io.atomic_dir(SYNTHETIC) as staging, tqdm(total=len(items), desc=f"edit ({editor.name})", unit="img") as bar:
        for batch in batches(items, params.edit.batch_size):
            edited = editor.edit_batch([(*_source(item.source, item.mask), item) for item in batch])
            for item, pixels in zip(batch, edited):
                out = staging / Path(item.path).relative_to(SYNTHETIC)
                out.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(pixels).save(out)
            bar.update(len(batch))
        rows = [editing.manifest_row(item, editor.name) for item in items]
        io.write_csv(staging / "manifest.csv", rows, editing.MANIFEST_FIELDS)
