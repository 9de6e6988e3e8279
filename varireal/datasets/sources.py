"""The real datasets, read through torchvision's dataset classes from their official on-disk layouts.

Each loader, a `load` of the dataset registry (varireal/datasets/__init__.py), returns a Source: class names and the official train(-val) and test splits as lists of
Samples (the image file in the dataset's own folder, its label, and whatever helps find the object).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from varireal.errors import StageError

if TYPE_CHECKING:  # masks imports OpenCV, too slow for params, which reads the dataset registry
    from varireal.masks import Box


@dataclass(frozen=True)
class Sample:
    path: Path
    label: int
    prompt: str  # what CLIPSeg looks for (grounded-sam asks for the class by name instead)
    box: Box | None = None  # the object's bounding box, where the dataset has one
    trimap: Path | None = None  # pets only


@dataclass(frozen=True)
class Source:
    classes: list[str]
    train: list[Sample]
    test: list[Sample]
    val: list[Sample] = field(default_factory=list)  # a validation split kept apart from train (CoOp's)


def _open(dataset_class, name: str, folder: Path, missing: str, download: bool, **kwargs):
    """Construct a torchvision dataset; a missing folder or a failed download becomes one StageError line."""
    try:
        return dataset_class(download=download, **kwargs)
    except (RuntimeError, OSError) as err:  # torchvision: "Dataset not found ..."; downloads: URLError
        if download:
            raise StageError(f"{name}: download into {folder} failed ({err}); "
                             "check the connection or put the files there by hand") from None
        raise StageError(f"{name}: no dataset in {folder} ({missing}); "
                         "set dataset.download: true to download it") from None


# torchvision keeps each split's file list in private attributes (_images, _image_files, _samples):
# stable across releases, and the only way to the files that does not decode every image.
# A second split's download=True finds the files in place and downloads nothing.

def pets(root: Path, download: bool) -> Source:
    from torchvision.datasets import OxfordIIITPet

    folder = root / "oxford-iiit-pet"
    missing = "expected images/*.jpg and annotations/{trainval,test}.txt, trimaps/; about 800 MB"
    splits = {split: _open(OxfordIIITPet, "pets", folder, missing, download, root=root, split=split)
              for split in ("trainval", "test")}

    def samples(dataset) -> list[Sample]:
        return [Sample(Path(image), label, ("a cat", "a dog")[species], trimap=Path(trimap))
                for image, label, species, trimap
                in zip(dataset._images, dataset._labels, dataset._bin_labels, dataset._segs)]

    # torchvision already turns "american_bulldog" into "American Bulldog".
    return Source(splits["trainval"].classes, samples(splits["trainval"]), samples(splits["test"]))


def _read_boxes(path: Path) -> dict[str, Box]:
    """FGVC-Aircraft images_box.txt: "<id> xmin ymin xmax ymax", 1-based inclusive -> 0-based, end exclusive."""
    boxes = {}
    for line in path.read_text().splitlines():
        if line.strip():
            image_id, x0, y0, x1, y1 = line.split()
            boxes[image_id] = (int(x0) - 1, int(y0) - 1, int(x1), int(y1))
    return boxes


def _aircraft(root: Path, download: bool, train: tuple[str, ...]) -> Source:
    from torchvision.datasets import FGVCAircraft

    folder = root / "fgvc-aircraft-2013b"
    missing = "expected data/variants.txt, data/images_variant_*.txt, data/images/; about 2.6 GB"
    splits = {split: _open(FGVCAircraft, "aircraft", folder, missing, download,
                           root=root, split=split, annotation_level="variant")
              for split in (*train, "test")}
    box_file = folder / "data" / "images_box.txt"
    boxes = _read_boxes(box_file) if box_file.exists() else {}

    def samples(dataset) -> list[Sample]:
        return [Sample(Path(image), label, "an airplane", box=boxes.get(Path(image).stem))
                for image, label in zip(dataset._image_files, dataset._labels)]

    return Source(list(splits["test"].classes), samples(splits[train[0]]), samples(splits["test"]),
                  samples(splits[train[1]]) if len(train) > 1 else [])


def aircraft(root: Path, download: bool) -> Source:
    return _aircraft(root, download, ("trainval",))


def aircraft_coop(root: Path, download: bool, official: Source) -> Source:
    """CoOp (and the paper's code) use the official train / val / test files of FGVC-Aircraft."""
    return _aircraft(root, download, ("train", "val"))


CARS_LAYOUT = ("stanford_cars/ holding devkit/{cars_meta.mat,cars_train_annos.mat}, cars_train/*.jpg, "
               "cars_test/*.jpg and cars_test_annos_withlabels.mat")


def cars(root: Path, download: bool) -> Source:
    from scipy.io import loadmat
    from torchvision.datasets import StanfordCars

    folder = root / "stanford_cars"
    splits = {}
    for split in ("train", "test"):
        # Never download=True: the official URL is gone and torchvision only raises.
        try:
            splits[split] = StanfordCars(root=root, split=split)
        except RuntimeError:
            raise StageError(
                f"cars: no Stanford Cars in {folder}; its official download is gone, so dataset.download cannot "
                "fetch it: get the images from the Kaggle mirror "
                "(kaggle.com/datasets/jessicali9530/stanford-cars-dataset) "
                "and the devkit and test labels linked from github.com/pytorch/vision/issues/7545, and lay them out as "
                f"{CARS_LAYOUT}") from None

    def samples(dataset) -> list[Sample]:
        boxes = {}
        for annotation in loadmat(dataset._annotations_mat_path, squeeze_me=True)["annotations"]:
            if "bbox_x1" in annotation.dtype.names:  # 1-based inclusive, like the aircraft boxes
                boxes[str(annotation["fname"])] = (int(annotation["bbox_x1"]) - 1, int(annotation["bbox_y1"]) - 1,
                                                   int(annotation["bbox_x2"]), int(annotation["bbox_y2"]))
        return [Sample(Path(image), int(label), "a car", box=boxes.get(Path(image).name))
                for image, label in dataset._samples]

    return Source(list(splits["train"].classes), samples(splits["train"]), samples(splits["test"]))


def flowers102_classes() -> list[str]:
    """The 102 official class names (older torchvision releases have none), index = label."""
    text = resources.files("varireal.datasets").joinpath("flowers102_classes.txt").read_text()
    return [line for line in text.splitlines() if line]


def flowers102(root: Path, download: bool) -> Source:
    from torchvision.datasets import Flowers102

    folder = root / "flowers-102"
    missing = "expected jpg/, imagelabels.mat and setid.mat with their official checksums; about 330 MB"
    splits = {split: _open(Flowers102, "flowers102", folder, missing, download, root=root, split=split)
              for split in ("train", "val", "test")}

    def samples(*datasets) -> list[Sample]:
        return [Sample(Path(image), label, "a flower")
                for dataset in datasets for image, label in zip(dataset._image_files, dataset._labels)]

    # Train and val hold 10 images per class each: the few-shot pool is both (the "train-val" split).
    return Source(flowers102_classes(), samples(splits["train"], splits["val"]), samples(splits["test"]))



# -- CoOp's splits (dataset.split: coop) ---------------------------------------------------------------
# CoOp (github.com/KaiyangZhou/CoOp, DATASETS.md) splits pets, cars and flowers into train / val / test with
# a JSON file per dataset, {"train": [[image path, label, class name], ...], "val": [...], "test": [...]};
# the paper's code (SyntheticDataFeasibility, Finetune/artifacts/<dataset>/split_coop.csv) keeps the same
# split as a CSV of "split,filename" rows. Either file, in the dataset's folder, is read; the images are
# matched to the dataset's own by file name (and folder, where names repeat), so labels and class names
# stay the dataset's. The split files are not shipped here (see COOP_SOURCE).
COOP_SOURCE = "CoOp's DATASETS.md (github.com/KaiyangZhou/CoOp/blob/main/DATASETS.md) links {json} (Google Drive)"
OFFICIAL_SOURCE = ("; the paper's code ships the same split as Finetune/artifacts/{artifact}/split_coop.csv "
                   "(github.com/Yiveen/SyntheticDataFeasibility)")
COOP_SPLITS = ("train", "val", "test")


def read_split_file(path: Path) -> dict[str, list[str]]:
    """split -> image paths as the file gives them, from a CoOp JSON or a split_coop.csv."""
    out: dict[str, list[str]] = {split: [] for split in COOP_SPLITS}
    try:
        if path.suffix == ".json":
            for split, entries in json.loads(path.read_text()).items():
                if split in out:
                    out[split] = [str(entry[0]) for entry in entries]
        else:
            with path.open(newline="") as handle:
                for row in csv.DictReader(handle):
                    if row["split"] in out:
                        out[row["split"]].append(row["filename"])
    except (OSError, ValueError, KeyError, IndexError, TypeError) as err:
        raise StageError(f"cannot read the split file {path} ({err.__class__.__name__}: {err}); expected CoOp's "
                         "JSON {\"train\": [[path, label, class], ...], ...} or a CSV with columns split,filename") from None
    return out


def coop_from_file(folder: str, json_name: str, artifact: str = "") -> Callable[[Path, bool, Source], Source]:
    """The CoOp split of a dataset whose folder under dataset.root holds json_name or split_coop.csv."""

    def split(root: Path, download: bool, official: Source) -> Source:
        base = root / folder
        found = [base / name for name in (json_name, "split_coop.csv") if (base / name).is_file()]
        if not found:
            raise StageError(f"dataset.split coop needs {base / json_name} (or split_coop.csv there); "
                             + COOP_SOURCE.format(json=json_name)
                             + (OFFICIAL_SOURCE.format(artifact=artifact) if artifact else ""))
        by_name: dict[str, list[Sample]] = {}
        for sample in (*official.train, *official.val, *official.test):
            by_name.setdefault(sample.path.name, []).append(sample)

        def find(entry: str) -> Sample:
            parts = Path(entry).parts
            candidates = by_name.get(parts[-1], [])
            if len(candidates) > 1 and len(parts) > 1:  # cars: cars_train/00001.jpg, or train/00001.jpg (the paper's)
                candidates = [s for s in candidates if s.path.parent.name in (parts[-2], f"cars_{parts[-2]}")]
            if len(candidates) != 1:
                raise StageError(f"the split file {found[0]} names {entry}, which {base} has "
                                 f"{'no' if not candidates else 'more than one'} image of; is it this dataset's?")
            return candidates[0]

        listed = read_split_file(found[0])
        return Source(official.classes, *[[find(e) for e in listed[name]] for name in ("train", "test", "val")])

    return split
