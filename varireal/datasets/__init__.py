"""Dataset registry: each dataset is one `DatasetSpec`, and `register` is all it takes to add one.

Every dataset writes the same on-disk layout, which the other stages read:

    classes.json                        class names, index = label
    train.csv, test.csv                 path, mask, label, class (+ ground-truth attributes if known)
    images/<split>/<class>/<id>.<ext>   images (world: PNG; real datasets: their own files, copied as is)
    masks/<split>/<class>/<id>.png      foreground masks, 0 or 255, the image's size

<class> is io.slug(class name). Paths in the CSV files are relative to the project root, as the
stages see them. Real datasets have masks for the training split only (test rows leave mask empty)
and add a mask_method column to train.csv: trimap, grounded-sam, clipseg, rmbg, grabcut or box.

This package imports nothing that imports varireal.params: params checks dataset.name against it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Protocol

from varireal.datasets import sources, world
from varireal.errors import ParamError

Rules = dict[str, dict[str, list[str]]]  # attribute -> feasibility -> values


class Dataset(Protocol):
    def class_names(self) -> list[str]: ...

    def train_images_per_class(self) -> dict[str, int]:
        """Class name -> images in its few-shot pool (before any is found unreadable)."""

    def write(self, out: Path, path_prefix: Path, shots: int | str, seed: int) -> dict:
        """Write the layout above into out; CSV paths start with path_prefix (where out will live).
        Returns the counts for metrics/fetch.json: per split images, read, copied, converted, skipped."""


@dataclass(frozen=True)
class DatasetSpec:
    """One dataset. Either `load` reads it from disk in the torchvision way (a Source: class names and
    the official splits; fetch copies a few-shot split and makes masks by `mask`), or `open` builds a
    Dataset of its own from the dataset params (the embedded world renders one)."""

    name: str
    kind: str  # what one of its classes is, as the LLM is told
    load: Callable[[Path, bool], sources.Source] | None = None  # (dataset.root, dataset.download) -> Source
    mask: str = "grounded-sam"  # what dataset.mask.method: auto means for a loaded dataset (trimap, grounded-sam, ...)
    word: str = ""  # what one of its objects is, in grounded-sam's prompt "A <word> <class>." (official: pet, car)
    open: Callable[..., Dataset] | None = None  # (dataset params) -> Dataset
    rules: Callable[[str], Rules] | None = None  # a class's full prompt lists; None: the bank file
    bank: Traversable | Path | None = None  # the prompt bank file; None: varireal/prompt_bank/<name>.yaml
    # The CLIP text of a class, for the classifier's head (train.template: registry). The real datasets carry
    # the official one: TEMPLATES_SMALL[0] "a {}photo of a {}" with the dataset word (models/clip.py).
    template: str = "a photo of a {}."
    # dataset.split: coop: (dataset.root, dataset.download, the official Source) -> CoOp's train/val/test Source
    coop: Callable[[Path, bool, sources.Source], sources.Source] | None = None

    def __post_init__(self):
        if (self.load is None) == (self.open is None):
            raise ValueError(f"dataset {self.name!r}: give exactly one of load and open")

    def bank_file(self) -> Traversable | Path:
        return self.bank or resources.files("varireal") / "prompt_bank" / f"{self.name}.yaml"


_DATASETS: dict[str, DatasetSpec] = {}


def register(spec: DatasetSpec) -> DatasetSpec:
    if spec.name in _DATASETS:
        raise ValueError(f"dataset {spec.name!r} is already registered")
    _DATASETS[spec.name] = spec
    return spec


def unregister(name: str) -> None:
    """Forget a dataset (a test's own, once the test is done)."""
    del _DATASETS[name]


def names() -> tuple[str, ...]:
    return tuple(_DATASETS)


def spec(name: str) -> DatasetSpec:
    return _DATASETS[name]


def template(name: str, choice: str = "registry") -> str:
    """The head's class text for dataset name: its registry entry's, or choice when that is an explicit text."""
    return spec(name).template if choice == "registry" else choice


def get(params) -> Dataset:
    """The Dataset that params (varireal.params.DatasetParams, already validated) names."""
    entry = spec(params.name)
    if entry.open:
        return entry.open(params)
    from varireal.datasets.real import RealDataset

    return RealDataset(params, entry)


def check_shots(dataset: Dataset, shots: int | str) -> None:
    if shots == "all":
        return
    counts = dataset.train_images_per_class()
    smallest, available = min(counts.items(), key=lambda item: item[1])
    if shots > available:
        whose = "per class" if len(set(counts.values())) == 1 else f"of class {smallest!r}, the fewest"
        raise ParamError("dataset.shots", shots, f"at most {available}, the training images {whose}")


def _embedded_world(params) -> Dataset:
    from varireal.datasets.embedded import EmbeddedWorld

    return EmbeddedWorld(params)


register(DatasetSpec("world", "a species of the procedural creatures in a synthetic world", open=_embedded_world,
                     rules=world.feasibility_rules))
register(DatasetSpec("pets", "a cat or dog breed (Oxford-IIIT Pets)", load=sources.pets, mask="trimap", word="pet",
                     template="a pet photo of a {}",
                     coop=sources.coop_from_file("oxford-iiit-pet", "split_zhou_OxfordPets.json", "oxford_pets")))
# "a aircraft", not "an aircraft": the official template puts the word in "a {}photo of a {}" as is.
register(DatasetSpec("aircraft", "an aircraft model variant (FGVC-Aircraft)", load=sources.aircraft, word="aircraft",
                     template="a aircraft photo of a {}", coop=sources.aircraft_coop))
register(DatasetSpec("cars", "a car make, model and year (Stanford Cars)", load=sources.cars, word="car",
                     template="a car photo of a {}",
                     coop=sources.coop_from_file("stanford_cars", "split_zhou_StanfordCars.json", "stanford_cars")))
register(DatasetSpec("flowers102", "a flower species (Oxford Flowers-102)", load=sources.flowers102, word="flower",
                     template="a flower photo of a {}",
                     coop=sources.coop_from_file("flowers-102", "split_zhou_OxfordFlowers.json")))
