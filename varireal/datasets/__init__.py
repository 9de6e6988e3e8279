"""Dataset registry. Each dataset writes the same on-disk layout, which the other stages read:

    classes.json                        class names, index = label
    train.csv, test.csv                 path, mask, label, class (+ ground-truth attributes if known)
    images/<split>/<class>/<id>.<ext>   images (world: PNG; real datasets: their own files, copied as is)
    masks/<split>/<class>/<id>.png      foreground masks, 0 or 255, the image's size

<class> is io.slug(class name). Paths in the CSV files are relative to the project root, as the
stages see them. Real datasets have masks for the training split only (test rows leave mask empty)
and add a mask_method column to train.csv: trimap, clipseg, grabcut or box.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from varireal.params import DatasetParams, ParamError


class Dataset(Protocol):
    def class_names(self) -> list[str]: ...

    def train_images_per_class(self) -> dict[str, int]:
        """Class name -> images in its few-shot pool (before any is found unreadable)."""

    def write(self, out: Path, path_prefix: Path, shots: int, seed: int) -> dict:
        """Write the layout above into out; CSV paths start with path_prefix (where out will live).
        Returns the counts for metrics/fetch.json: per split images, read, copied, converted, skipped."""


def get(params: DatasetParams) -> Dataset:
    if params.name == "world":
        from varireal.datasets.embedded import EmbeddedWorld

        return EmbeddedWorld(params)
    from varireal.datasets.real import RealDataset  # pets, aircraft, cars, flowers102

    return RealDataset(params)


def check_shots(dataset: Dataset, shots: int) -> None:
    counts = dataset.train_images_per_class()
    smallest, available = min(counts.items(), key=lambda item: item[1])
    if shots > available:
        whose = "per class" if len(set(counts.values())) == 1 else f"of class {smallest!r}, the fewest"
        raise ParamError("dataset.shots", shots, f"at most {available}, the training images {whose}")
