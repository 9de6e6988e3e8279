"""edit: the whole synthetic pool (every attribute, both feasibilities) and its manifest, in data/synthetic/.

Resumable: images collect in data/.synthetic.partial/ (beside the output, which DVC deletes before a
run), each written whole under its final name, so a run killed at any moment and started again edits
only what is missing. The finished folder becomes data/synthetic in one rename.
"""

import sys
from functools import lru_cache
from itertools import groupby
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from varireal import editing, io, resume
from varireal.batching import HalvingBatches
from varireal.errors import StageError
from varireal.params import ATTRIBUTES, load

from stages import METRICS, PROMPTS, RAW, SYNTHETIC

WORK = SYNTHETIC.with_name(f".{SYNTHETIC.name}.partial")


@lru_cache(maxsize=2)  # one source's items come one after another; a batch may span two sources
def _source(path: str, mask_path: str) -> tuple[np.ndarray, np.ndarray]:
    return np.asarray(io.open_rgb(path)), io.read_mask(mask_path)


def unreadable_masks(sources: list[dict]) -> dict[str, str]:
    """Mask path -> why it cannot be read (missing, not an image, truncated), for every source's mask."""
    problems = {}
    for mask in dict.fromkeys(source["mask"] for source in sources):
        try:
            with Image.open(mask) as image:
                image.load()
        except (OSError, ValueError) as err:  # FileNotFoundError, UnidentifiedImageError, truncated data
            problems[mask] = "missing" if isinstance(err, FileNotFoundError) else f"unreadable ({err.__class__.__name__})"
    return problems


def batches(items: list[editing.EditItem], size: int) -> list[list[editing.EditItem]]:
    """Items of one attribute, up to size at a time. A stable sort by attribute keeps each source's
    items adjacent and lets a batch run on into the next source's, so batches stay full."""
    by_attribute = sorted(items, key=lambda item: ATTRIBUTES.index(item.attribute))
    out = []
    for _, group in groupby(by_attribute, key=lambda item: item.attribute):
        group = list(group)
        out += [group[start:start + size] for start in range(0, len(group), size)]
    return out


def plan_digest(items: list[editing.EditItem], params) -> str:
    """What fixes the pool's bytes: the items, the editor's settings and the input files' contents.
    Not the batch size or the device: a run resumed on a smaller GPU may change them."""
    settings = params.edit.model_dump(exclude={"batch_size", "device"})
    inputs = sorted({path for item in items for path in (item.source, item.mask)})
    return resume.digest([editing.manifest_row(item, "") for item in items], settings,
                         {path: resume.file_digest(path) for path in inputs})


def main(params_path="params.yaml") -> None:
    params = load(params_path)
    sources = io.read_csv(RAW / "train.csv")
    values = io.read_json(PROMPTS)
    planned = editing.plan(sources, values, params.edit.attributes, params.edit.per_image, params.seed, SYNTHETIC)
    if params.edit.backend == "composite" and (unknown := editing.unknown_to_composite(values)):
        raise StageError(f"edit.backend composite paints only the embedded world's procedural values, not "
                         f"{', '.join(unknown[:3])}{' ...' if len(unknown) > 3 else ''}; use edit.backend: diffusion")
    unreadable = unreadable_masks(sources)
    for mask, why in unreadable.items():
        print(f"edit: warning: mask {mask} is {why}; skipping its image's edits", file=sys.stderr, flush=True)
    items = [item for item in planned if item.mask not in unreadable]

    relative = {item: Path(item.path).relative_to(SYNTHETIC) for item in items}
    staging = resume.start(WORK, plan_digest(planned, params), relative.values())
    todo = [item for item in items if not (staging / relative[item]).is_file()]
    if len(todo) < len(items):
        print(f"edit: resuming, {len(items) - len(todo)} of {len(items)} items already done", flush=True)

    editor = editing.make_editor(params.edit)
    in_batches = HalvingBatches(params.edit.batch_size, "edit")
    with tqdm(total=len(items), initial=len(items) - len(todo), desc=f"edit ({editor.name})", unit="img") as bar:
        for batch in batches(todo, params.edit.batch_size):
            edited = in_batches(editor.edit_batch, [(*_source(item.source, item.mask), item) for item in batch])
            for item, pixels in zip(batch, edited):
                io.write_image_atomic(staging / relative[item], pixels)
            bar.update(len(batch))

    # Derived from the plan alone, so a resumed run's manifest and metrics equal an uninterrupted run's
    # (halvings aside: they count this run's out-of-memory errors).
    io.write_csv(staging / "manifest.csv", [editing.manifest_row(item, editor.name) for item in items],
                 editing.MANIFEST_FIELDS)
    io.write_json(METRICS / "edit.json", {"planned": len(planned), "written": len(items),
                                          "skipped_missing_mask": len(planned) - len(items),
                                          "out_of_memory_halvings": in_batches.halvings})
    resume.publish(WORK, SYNTHETIC)
