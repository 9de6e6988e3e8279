"""Dataset registry. Each dataset writes the same on-disk layout, which the other stages read:

    classes.json                        class names, index = label
    train.csv, test.csv                 path, mask, label, class (+ ground-truth attributes if known)
    images/<split>/<class>/<id>.png     RGB images
    masks/<split>/<class>/<id>.png      foreground masks, 0 or 255

Paths in the CSV files are relative to the project root, as the stages see them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from varireal.params import DatasetParams, ParamError


class Dataset(Protocol):
    def class_names(self) -> list[str]: ...

    def train_images_per_class(self) -> int: ...

    def write(self, out: Path, path_prefix: Path, shots: int, seed: int) -> None:
        """Write the layout above into out; CSV paths start with path_prefix (where out will live)."""


def get(params: DatasetParams) -> Dataset:
    from varireal.datasets.embedded import EmbeddedWorld

    registry = {"world": EmbeddedWorld}
    return registry[params.name](params)


def check_shots(dataset: Dataset, shots: int) -> None:
    available = dataset.train_images_per_class()
    if shots > available:
        raise ParamError("dataset.shots", shots, f"at most {available}, the training images per class")
