"""Small datasets written in each real dataset's on-disk layout, the one torchvision's classes check and parse."""

import hashlib
import json
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.io import savemat

from varireal.datasets.sources import flowers102_classes

TRAIN_PER_CLASS, TEST_PER_CLASS = 4, 2


def write_jpeg(path: Path, seed: int, size=(48, 40)) -> tuple[int, int, int, int]:
    """A small photo-like JPEG: a noisy dark ellipse on a noisy light background. Returns the object's box."""
    rng = np.random.default_rng(seed)
    width, height = size
    x0, y0 = int(rng.integers(4, 12)), int(rng.integers(4, 10))
    box = (x0, y0, x0 + 26, y0 + 22)
    yy, xx = np.mgrid[:height, :width]
    inside = ((xx - (box[0] + box[2] - 1) / 2) / 13) ** 2 + ((yy - (box[1] + box[3] - 1) / 2) / 11) ** 2 <= 1
    pixels = np.where(inside[..., None], rng.integers(0, 90, 3), rng.integers(170, 255, 3))
    pixels = np.clip(pixels + rng.normal(0, 6, (height, width, 3)), 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, quality=90)
    return box


def write_pets(root: Path) -> dict:
    """oxford-iiit-pet/: images/*.jpg, annotations/{trainval,test}.txt ("<id> <class> <species> <breed>"),
    annotations/trimaps/*.png (1 pet, 2 background, 3 border)."""
    base = root / "oxford-iiit-pet"
    breeds = [("Abyssinian", 1), ("american_bulldog", 2), ("Bengal", 1)]  # (file prefix, species: 1 cat, 2 dog)
    lines = {"trainval": [], "test": []}
    n = 0
    for label, (prefix, species) in enumerate(breeds, 1):
        for split, count in (("trainval", TRAIN_PER_CLASS), ("test", TEST_PER_CLASS)):
            for _ in range(count):
                n += 1
                image_id = f"{prefix}_{n}"
                box = write_jpeg(base / "images" / f"{image_id}.jpg", n)
                trimap = np.full((40, 48), 2, np.uint8)
                trimap[box[1]:box[3], box[0]:box[2]] = 3
                trimap[box[1] + 2:box[3] - 2, box[0] + 2:box[2] - 2] = 1
                (base / "annotations" / "trimaps").mkdir(parents=True, exist_ok=True)
                Image.fromarray(trimap).save(base / "annotations" / "trimaps" / f"{image_id}.png")
                lines[split].append(f"{image_id} {label} {species} {label}")
    for split, rows in lines.items():
        (base / "annotations" / f"{split}.txt").write_text("\n".join(rows) + "\n")
    return {"classes": ["Abyssinian", "American Bulldog", "Bengal"], "images": base / "images"}


def write_aircraft(root: Path) -> dict:
    """fgvc-aircraft-2013b/data/: variants.txt, images_variant_{train,val,trainval,test}.txt
    ("<id> <variant>"), images_box.txt ("<id> xmin ymin xmax ymax", 1-based), images/<id>.jpg."""
    data = root / "fgvc-aircraft-2013b" / "data"
    variants = ["707-320", "F/A-18", "Cessna 172"]
    data.mkdir(parents=True)
    (data / "variants.txt").write_text("\n".join(variants) + "\n")
    splits, boxes, n = {"train": [], "val": [], "test": []}, [], 1000000
    for variant in variants:
        for k in range(TRAIN_PER_CLASS + TEST_PER_CLASS):
            n += 1
            x0, y0, x1, y1 = write_jpeg(data / "images" / f"{n:07d}.jpg", n)
            boxes.append(f"{n:07d} {x0 + 1} {y0 + 1} {x1} {y1}")
            split = ("train", "val")[k % 2] if k < TRAIN_PER_CLASS else "test"
            splits[split].append(f"{n:07d} {variant}")
    splits["trainval"] = splits["train"] + splits["val"]
    for split, rows in splits.items():
        (data / f"images_variant_{split}.txt").write_text("\n".join(rows) + "\n")
    (data / "images_box.txt").write_text("\n".join(boxes) + "\n")
    return {"classes": variants, "images": data / "images"}


def _cars_annotations(records: list[tuple]) -> dict:
    fields = [("bbox_x1", "O"), ("bbox_y1", "O"), ("bbox_x2", "O"), ("bbox_y2", "O"), ("class", "O"), ("fname", "O")]
    return {"annotations": np.array([records], dtype=fields)}  # a 1 x N struct array, as in the devkit


def write_cars(root: Path) -> dict:
    """stanford_cars/: devkit/cars_meta.mat (class_names), devkit/cars_train_annos.mat and
    cars_test_annos_withlabels.mat (annotations: bbox_x1..bbox_y2 1-based, class 1-based, fname),
    cars_train/*.jpg, cars_test/*.jpg."""
    base = root / "stanford_cars"
    names = ["AM General Hummer SUV 2000", "Acura RL Sedan 2012", "BMW M3 Coupe 2012"]
    (base / "devkit").mkdir(parents=True)
    savemat(base / "devkit" / "cars_meta.mat", {"class_names": np.array([names], dtype=object)})
    records = {"train": [], "test": []}
    for split, count in (("train", TRAIN_PER_CLASS), ("test", TEST_PER_CLASS)):
        for label in range(1, len(names) + 1):
            for _ in range(count):
                fname = f"{len(records[split]) + 1:05d}.jpg"
                x0, y0, x1, y1 = write_jpeg(base / f"cars_{split}" / fname, 100 * label + len(records[split]))
                records[split].append((x0 + 1, y0 + 1, x1, y1, label, fname))
    savemat(base / "devkit" / "cars_train_annos.mat", _cars_annotations(records["train"]))
    savemat(base / "cars_test_annos_withlabels.mat", _cars_annotations(records["test"]))
    return {"classes": names, "images": base / "cars_train", "test_images": base / "cars_test"}


def write_flowers102(root: Path) -> dict:
    """flowers-102/: jpg/image_<5 digits>.jpg, imagelabels.mat (labels, 1-based), setid.mat (trnid, valid, tstid)."""
    base = root / "flowers-102"
    labels, split_ids = [], {"trnid": [], "valid": [], "tstid": []}
    for label in range(1, 4):
        for k in range(TRAIN_PER_CLASS + TEST_PER_CLASS):
            labels.append(label)
            write_jpeg(base / "jpg" / f"image_{len(labels):05d}.jpg", len(labels))
            split = ("trnid", "valid")[k % 2] if k < TRAIN_PER_CLASS else "tstid"
            split_ids[split].append(len(labels))
    savemat(base / "imagelabels.mat", {"labels": np.array([labels])})
    savemat(base / "setid.mat", {key: np.array([ids]) for key, ids in split_ids.items()})
    return {"classes": flowers102_classes()[:3], "images": base / "jpg"}


WRITERS = {"pets": write_pets, "aircraft": write_aircraft, "cars": write_cars, "flowers102": write_flowers102}


def trust_flowers_checksums(monkeypatch, root: Path) -> None:
    """torchvision checks Flowers102's .mat files against the official checksums; let it accept ours."""
    from torchvision.datasets import Flowers102

    base = root / "flowers-102"
    monkeypatch.setattr(Flowers102, "_file_dict", {
        "image": Flowers102._file_dict["image"],
        **{key: (name, hashlib.md5((base / name).read_bytes()).hexdigest())
           for key, (name, _) in Flowers102._file_dict.items() if key != "image"}})


def write_coop_pets_split(root: Path, form: str = "json") -> dict[str, list[str]]:
    """CoOp's split of the pets fixture in the dataset folder: per breed the last trainval image goes to val,
    the others to train, the official test stays test. form json: split_zhou_OxfordPets.json as CoOp ships it
    ({"train": [[file, label, class], ...], ...}, paths relative to images/); csv: split_coop.csv as the
    paper's code keeps it ("split,filename", paths <breed>/<file>). Returns split -> image ids."""
    base = root / "oxford-iiit-pet"
    splits: dict[str, list[tuple[str, int]]] = {"train": [], "val": [], "test": []}
    for part in ("trainval", "test"):
        rows = [line.split() for line in (base / "annotations" / f"{part}.txt").read_text().splitlines()]
        for label in sorted({int(row[1]) for row in rows}):
            ids = [row[0] for row in rows if int(row[1]) == label]
            if part == "test":
                splits["test"] += [(i, label - 1) for i in ids]
            else:
                splits["train"] += [(i, label - 1) for i in ids[:-1]]
                splits["val"] += [(ids[-1], label - 1)]
    if form == "json":
        content = {split: [[f"{i}.jpg", label, i.rsplit("_", 1)[0].lower()] for i, label in rows]
                   for split, rows in splits.items()}
        (base / "split_zhou_OxfordPets.json").write_text(json.dumps(content))
    else:
        lines = ["split,filename"] + [f"{split},{i.rsplit('_', 1)[0]}/{i}.jpg"
                                      for split, rows in splits.items() for i, _ in rows]
        (base / "split_coop.csv").write_text("\n".join(lines) + "\n")
    return {split: [i for i, _ in rows] for split, rows in splits.items()}
