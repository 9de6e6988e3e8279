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

import multiprocessing
import os
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from functools import lru_cache, partial
from itertools import groupby
from pathlib import Path
from typing import Protocol

import numpy as np
from scipy import ndimage

from varireal import attributes, io, render
from varireal.errors import StageError
from varireal.params import ATTRIBUTES
from varireal.runtime import cpu_count
from varireal.prompts import FEASIBILITIES

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


@dataclass(frozen=True)
class EditItem:
    """One synthetic image to make. Its seed alone fixes its pixels, whatever order items run in."""

    path: str
    source: str
    mask: str
    label: int
    class_name: str
    attribute: str
    feasibility: str
    value: str
    seed: int


def plan(
    sources: list[dict], prompts: dict, attributes: list[str], per_image: int, seed: int, out_prefix: Path
) -> list[EditItem]:
    """Every source image x attribute x feasibility x per_image, values sampled without replacement
    (a list shorter than per_image is cycled through again in a new order)."""
    items = []
    for s, source in enumerate(sources):
        stem = Path(source["path"]).stem
        for attribute in attributes:
            a = ATTRIBUTES.index(attribute)
            for f, feasibility in enumerate(FEASIBILITIES):
                values = prompts[source["class"]][attribute][feasibility]
                rng = np.random.default_rng([seed, s, a, f])
                order = np.concatenate([rng.permutation(len(values)) for _ in range(-(-per_image // len(values)))])
                for k in range(per_image):
                    item_seed = int(np.random.SeedSequence([seed, s, a, f, k]).generate_state(1)[0])
                    name = f"{stem}_{k}.png"
                    items.append(EditItem(
                        path=(out_prefix / "images" / attribute / feasibility / io.slug(source["class"]) / name).as_posix(),
                        source=source["path"],
                        mask=source["mask"],
                        label=int(source["label"]),
                        class_name=source["class"],
                        attribute=attribute,
                        feasibility=feasibility,
                        value=values[order[k]],
                        seed=item_seed,
                    ))
    return items


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


# Running edits: one process's share, in this process or in CPU workers -----------------------------


def share(items: list[EditItem], process: int, processes: int) -> list[EditItem]:
    """The items process (0-based) of processes edits: source images dealt round-robin in plan order.
    All items of a source go to one process, which decodes the source once; every source has the same
    number of items, so shares differ by one source at most. The split depends only on the plan and
    the number of processes, never on what an earlier run finished, so a run resumed with another
    number of processes still edits every missing item exactly once."""
    sources = list(dict.fromkeys(item.source for item in items))
    mine = set(sources[process::processes])
    return [item for item in items if item.source in mine]


def cpu_workers(setting: int | str, local_processes: int) -> int:
    """edit.workers as a number: auto shares the CPUs this process may use among the processes of this
    machine (accelerate starts one per GPU), at least one each."""
    if setting != "auto":
        return int(setting)
    return max(1, cpu_count() // local_processes)


@lru_cache(maxsize=2)  # one source's items come one after another; a batch may span two sources
def read_source(path: str, mask_path: str) -> tuple[np.ndarray, np.ndarray]:
    return np.asarray(io.open_rgb(path)), io.read_mask(mask_path)


def edit_to_files(editor: Editor, jobs: Sequence[tuple[EditItem, Path]]) -> list[Path]:
    """Read each job's source, edit the jobs as one batch and write each image whole under its path."""
    edited = editor.edit_batch([(*read_source(item.source, item.mask), item) for item, _ in jobs])
    for (_, path), pixels in zip(jobs, edited):
        io.write_image_atomic(path, pixels)
    return [path for _, path in jobs]


def edit_to_files_in_workers(editor: Editor, jobs: list[tuple[EditItem, Path]], workers: int) -> Iterator[int]:
    """edit_to_files in `workers` processes, one task per source image, yielding how many images each
    finished task wrote. Workers get items, not pixels: decoding, editing and PNG encoding all run in
    parallel, and nothing big crosses a pipe. For CPU editors only (a GPU wants one process)."""
    tasks = [list(group) for _, group in groupby(jobs, key=lambda job: job[0].source)]
    # spawn, not fork: the parent may hold threads, sockets and a CUDA context (torch.distributed's
    # process group) that a forked child would inherit in an unknown state.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_end_with_parent) as pool:
        # map submits every task now and cancels the unstarted ones if this generator is closed early.
        for written in pool.map(partial(edit_to_files, editor), tasks):
            yield len(written)


def _end_with_parent() -> None:
    """Pool initializer. A parent killed with SIGKILL cannot stop its workers, which would wait for work
    forever (and keep writing to the work folder the next run uses); a thread ends the worker as soon as
    the parent is gone."""
    parent = multiprocessing.parent_process()

    def watch() -> None:
        parent.join()  # returns when the parent's end of a pipe closes, however it died
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


# Shards: each process's part of the manifest, merged by the main process -----------------------------


def shard_path(folder: Path, process: int, processes: int) -> Path:
    return folder / f"{process + 1:05d}-of-{processes:05d}.json"


def write_shard(folder: Path, process: int, processes: int, rows: list[dict], halvings: int) -> None:
    """One process's manifest rows (its whole share) and its out-of-memory halvings, written whole."""
    io.write_json(shard_path(folder, process, processes), {"rows": rows, "out_of_memory_halvings": halvings})


def merge_shards(folder: Path, processes: int, items: list[EditItem]) -> tuple[list[dict], int]:
    """The manifest rows of every shard in plan order, and the halvings summed. Raises StageError unless
    the shards cover the plan exactly: each item once, none missing, none extra."""
    rows, halvings = [], 0
    for process in range(processes):
        path = shard_path(folder, process, processes)
        if not path.is_file():
            raise StageError(f"shard {path} is missing (process {process + 1} of {processes} did not finish); "
                             f"run edit again, with any number of processes, to redo its share")
        shard = io.read_json(path)
        rows += shard["rows"]
        halvings += shard["out_of_memory_halvings"]
    by_path = {row["path"]: row for row in rows}
    if len(by_path) != len(rows) or by_path.keys() != {item.path for item in items}:
        raise StageError(f"the shards in {folder} hold {len(rows)} rows ({len(by_path)} distinct) but the plan has "
                         f"{len(items)} items; run edit again to redo them")
    return [by_path[item.path] for item in items], halvings


MANIFEST_FIELDS = ["path", "source", "class", "label", "attribute", "feasibility", "value", "seed", "backend"]


def manifest_row(item: EditItem, backend: str) -> dict:
    row = asdict(item)
    row["class"] = row.pop("class_name")
    row.pop("mask")
    row["backend"] = backend
    return {key: row[key] for key in MANIFEST_FIELDS}
