"""A real dataset as a Dataset: a seeded few-shot training split with object masks, and the whole test split.

Image files are copied byte for byte (converted to RGB only when read); masks are made once here,
for the training shots only, by the method in dataset.mask (see varireal/masks.py).
"""

from __future__ import annotations

import shutil
from collections import Counter, defaultdict
from functools import cached_property
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from varireal import io, masks
from varireal.datasets.sources import LOADERS, Sample, Source
from varireal.errors import StageError
from varireal.params import DatasetParams, ParamError

# Images decoded and segmented together; bounds memory on datasets of large photos.
MASK_CHUNK = 16


class RealDataset:
    def __init__(self, params: DatasetParams):
        self.params = params
        if params.mask.method == "trimap" and params.name != "pets":
            raise ParamError("dataset.mask.method", "trimap", "only pets ships trimaps; use auto, clipseg or grabcut")

    @cached_property
    def source(self) -> Source:
        """The dataset as torchvision reads it (downloading it first if asked), cut to dataset.classes."""
        source = LOADERS[self.params.name](Path(self.params.root), self.params.download)
        keep = self.params.classes
        if keep is None:
            return source
        if keep > len(source.classes):
            raise ParamError("dataset.classes", keep,
                             f"at most {len(source.classes)}, the classes of {self.params.name}")
        return Source(source.classes[:keep], [s for s in source.train if s.label < keep],
                      [s for s in source.test if s.label < keep], source.mask_method)

    def class_names(self) -> list[str]:
        return list(self.source.classes)

    def train_images_per_class(self) -> int:
        counts = Counter(sample.label for sample in self.source.train)
        return min(counts.get(label, 0) for label in range(len(self.source.classes)))

    def mask_method(self) -> str:
        method = self.params.mask.method
        return self.source.mask_method if method == "auto" else method

    def write(self, out: Path, path_prefix: Path, shots: int, seed: int) -> None:
        names = self.class_names()
        io.write_json(out / "classes.json", names)
        train = select_shots(self.source.train, shots, seed)
        settings = self.params.mask
        segmenter = _load_clipseg(settings.model, settings.device, settings.trust_remote_code) if self.mask_method() == "clipseg" else None
        train_rows = []
        for sample, (mask, method) in tqdm(zip(train, self._masks(train, segmenter)), total=len(train),
                                           desc="copy train + masks", unit="img"):
            rel = Path("train") / io.slug(names[sample.label]) / sample.path.name
            masks.save_mask(mask, out / "masks" / rel.with_suffix(".png"))
            train_rows.append(self._copy(sample, out, rel, path_prefix) | {
                "mask": (path_prefix / "masks" / rel.with_suffix(".png")).as_posix(), "mask_method": method})
        io.write_csv(out / "train.csv", train_rows, ["path", "mask", "label", "class", "mask_method"])

        test_rows = [self._copy(sample, out, Path("test") / io.slug(names[sample.label]) / sample.path.name,
                                path_prefix)
                     for sample in tqdm(self.source.test, desc="copy test", unit="img")]
        io.write_csv(out / "test.csv", test_rows, ["path", "mask", "label", "class"])

        counts = Counter(row["mask_method"] for row in train_rows)
        summary = ", ".join(f"{method} {n}" for method, n in sorted(counts.items()))
        if self.mask_method() != "trimap":
            fallbacks = sum(n for method, n in counts.items() if method != self.mask_method())
            summary += f" ({fallbacks} fell back from {self.mask_method()})"
        print(f"fetch: {self.params.name}: {len(names)} classes, {len(train_rows)} training and "
              f"{len(test_rows)} test images; masks: {summary}")

    def _copy(self, sample: Sample, out: Path, rel: Path, path_prefix: Path) -> dict:
        target = out / "images" / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(sample.path, target)
        return {"path": (path_prefix / "images" / rel).as_posix(), "mask": "", "label": sample.label,
                "class": self.source.classes[sample.label]}

    def _masks(self, samples: list[Sample], segmenter: masks.ClipSeg | None):
        """Yield (mask, method that produced it) per sample, in order."""
        method, settings = self.mask_method(), self.params.mask
        for start in range(0, len(samples), MASK_CHUNK):
            chunk = samples[start:start + MASK_CHUNK]
            if method == "trimap":
                for sample in chunk:
                    yield masks.trimap_to_mask(_read(sample.trimap)), "trimap"
                continue
            images = [_read(sample.path, "RGB") for sample in chunk]
            found = (segmenter.masks(images, [s.prompt for s in chunk], settings.threshold) if segmenter
                     else [None] * len(chunk))
            for sample, image, mask in zip(chunk, images, found):
                if mask is not None and masks.covers(mask, settings.min_area):
                    yield mask, method
                else:
                    yield masks.grabcut_or_box(image, sample.box, settings.min_area)


def _load_clipseg(model: str, device: str, trust_remote_code: bool) -> masks.ClipSeg:
    try:
        return masks.ClipSeg(model, device, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as err:  # not on the hub, offline, not a CLIPSeg folder, not a valid id
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise StageError(f"cannot load CLIPSeg from dataset.mask.model={model!r} ({first_line}); "
                         "give a model id the hub has or a local folder, or set dataset.mask.method: grabcut") from None


def _read(path: Path, mode: str | None = None) -> np.ndarray:
    """The pixels of an image file; mode None keeps the stored values (trimap labels 1, 2, 3)."""
    with Image.open(path) as image:
        return np.array(image.convert(mode) if mode else image)


def select_shots(samples: list[Sample], shots: int, seed: int) -> list[Sample]:
    """shots samples per class, drawn per seed from the class's files in name order, so the choice
    depends on neither the file system nor which other classes are kept. Sorted by label, then name."""
    by_class: dict[int, list[Sample]] = defaultdict(list)
    for sample in samples:
        by_class[sample.label].append(sample)
    chosen = []
    for label in sorted(by_class):
        candidates = sorted(by_class[label], key=lambda s: s.path.name)
        picks = np.random.default_rng([seed, label]).choice(len(candidates), shots, replace=False)
        chosen.extend(candidates[i] for i in sorted(picks))
    return chosen
