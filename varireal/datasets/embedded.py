"""The embedded world as a Dataset: renders a few-shot training split and a feasible-only test split."""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from varireal import io, records
from varireal.datasets import images, world
from varireal.runtime import cpu_count, worker_pool

# Seed streams, so that train and test images never coincide.
_TRAIN, _TEST = 0, 1


class EmbeddedWorld:
    def __init__(self, params):
        """params: the validated dataset section (varireal.params.DatasetParams)."""
        self.params = params

    def class_names(self) -> list[str]:
        return list(world.CLASS_NAMES)

    def train_images_per_class(self) -> dict[str, int]:
        return dict.fromkeys(self.class_names(), world.TRAIN_IMAGES_PER_CLASS)

    def write(self, out: Path, path_prefix: Path, shots: int | str, seed: int) -> dict:
        if shots == "all":
            shots = world.TRAIN_IMAGES_PER_CLASS
        picker = np.random.default_rng([seed, 7])
        splits = {
            "train": [(_TRAIN, i) for i in sorted(picker.choice(world.TRAIN_IMAGES_PER_CLASS, shots, replace=False))],
            "test": [(_TEST, i) for i in range(self.params.test_per_class)],
        }
        io.write_json(out / "classes.json", self.class_names())
        total = len(self.class_names()) * sum(len(ids) for ids in splits.values())
        counts = {}
        # Every image is a function of (seed, stream, label, index) alone: rendered on every core, in any order,
        # the split is the same.
        workers = max(1, min(cpu_count(), total // 200))
        with tqdm(total=total, desc="render world", unit="img") as bar, \
                worker_pool(workers) if workers > 1 else contextlib.nullcontext() as pool:
            for split, ids in splits.items():
                jobs = [(out, path_prefix, split, label, name, seed, stream, int(index), self.params.image_size)
                        for label, name in enumerate(self.class_names()) for stream, index in ids]
                rows = []
                for row in (pool.map(_render, jobs, chunksize=20) if pool else map(_render, jobs)):
                    rows.append(row)
                    bar.update()
                records.write_split(out / f"{split}.csv", rows)
                # Rendered, so nothing to read, convert or skip: the same keys as a real dataset's counts.
                counts[split] = images.empty_counts() | {"images": len(rows), "rendered": len(rows)}
        return counts


def _render(job) -> records.SplitRow:
    """Render one picture of the world and its mask into out; its row of the split."""
    out, path_prefix, split, label, name, seed, stream, index, size = job
    rng = np.random.default_rng([seed, stream, label, index])
    instance = world.sample_instance(name, rng)
    image, mask = world.render_instance(instance, rng, size)
    rel = Path(split) / name / f"{index:04d}.png"
    for kind, array in (("images", image), ("masks", mask)):
        (out / kind / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(array).save(out / kind / rel)
    return records.SplitRow(path=(path_prefix / "images" / rel).as_posix(), mask=(path_prefix / "masks" / rel).as_posix(),
                            label=label, class_name=name, background=instance.background, color=instance.color,
                            texture=instance.texture)
