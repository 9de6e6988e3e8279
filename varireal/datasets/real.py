"""A real dataset as a Dataset: a seeded few-shot training split with object masks, and the whole test split.

Plain 8-bit RGB JPEG/PNG files are copied byte for byte; other images are converted to 8-bit RGB PNG or
skipped (varireal/datasets/images.py). Masks are made once here, for the training shots only, by the
method in dataset.mask (see varireal/masks.py).
"""

from __future__ import annotations

import dataclasses
import sys
from collections import Counter, defaultdict
from functools import cached_property
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from varireal import datasets, io, masks, records
from varireal.datasets import DatasetSpec, images
from varireal.datasets.sources import Sample, Source
from varireal.errors import ParamError, StageError, first_line

# Images decoded and segmented together; bounds memory on datasets of large photos.
MASK_CHUNK = 16
MASK_METHODS = ("trimap", "grounded-sam", "clipseg", "rmbg", "grabcut", "box")


class RealDataset:
    """A dataset the registry loads from disk (spec.load); params: its validated dataset section."""

    def __init__(self, params, spec: DatasetSpec):
        self.params, self.spec = params, spec
        if params.mask.method == "trimap" and spec.mask != "trimap":
            with_trimaps = [name for name in datasets.names() if datasets.spec(name).mask == "trimap"]
            raise ParamError("dataset.mask.method", "trimap",
                             f"only {', '.join(with_trimaps)} ships trimaps; "
                             "use auto, grounded-sam, clipseg or grabcut")

    @cached_property
    def source(self) -> Source:
        """The dataset as torchvision reads it (downloading it first if asked), cut to dataset.classes."""
        root = Path(self.params.root)
        source = self.spec.load(root, self.params.download)
        if self.params.split == "coop":
            if self.spec.coop is None:
                with_coop = [name for name in datasets.names() if datasets.spec(name).coop]
                raise ParamError("dataset.split", "coop", f"official for {self.spec.name}; CoOp splits exist for "
                                                          f"{', '.join(with_coop)}")
            source = self.spec.coop(root, self.params.download, source)
        keep = self.params.classes
        if keep is None:
            return source
        if keep > len(source.classes):
            raise ParamError("dataset.classes", keep,
                             f"at most {len(source.classes)}, the classes of {self.params.name}")
        return Source(source.classes[:keep], [s for s in source.train if s.label < keep],
                      [s for s in source.test if s.label < keep], [s for s in source.val if s.label < keep])

    def class_names(self) -> list[str]:
        return list(self.source.classes)

    def train_images_per_class(self) -> dict[str, int]:
        counts = Counter(sample.label for sample in self.source.train)
        return {name: counts.get(label, 0) for label, name in enumerate(self.source.classes)}

    def mask_method(self) -> str:
        method = self.params.mask.method
        return self.spec.mask if method == "auto" else method

    def write(self, out: Path, path_prefix: Path, shots: int | str, seed: int) -> dict:
        """Write the layout; return fetch's counts (metrics/fetch.json). Bad images are skipped or converted
        (varireal/datasets/images.py), one warning line each; a skipped shot is replaced by the class's next.
        shots "all" keeps every usable training image. A split with a validation part (CoOp's) also writes
        val.csv (no masks)."""
        names = self.class_names()
        io.write_json(out / "classes.json", names)
        settings = self.params.mask  # the models first: a wrong model id fails before any copying
        grounded = (masks.GroundedSam(settings.detector, settings.segmenter, settings.box_threshold,
                                       settings.text_threshold, settings.device, settings.trust_remote_code)
                    if self.mask_method() == "grounded-sam" else None)
        remover = (masks.BackgroundRemover(settings.background_remover, settings.device, settings.trust_remote_code)
                   if grounded and settings.fallback == "rmbg" else None)
        segmenter = (_load_clipseg(settings.model, settings.device, settings.trust_remote_code)
                     if self.mask_method() == "clipseg" or (grounded and settings.fallback == "clipseg") else None)
        counts = {"train": images.empty_counts(), "test": images.empty_counts()}
        train = self._admit_shots(out, path_prefix, shots, seed, counts["train"])
        train_rows = []
        made = self._masks(train, out, path_prefix, grounded, segmenter, remover)
        for (_, row), (mask, method) in tqdm(zip(train, made), total=len(train), desc="train masks", unit="img"):
            rel = Path(row.path).relative_to(path_prefix / "images").with_suffix(".png")
            masks.save_mask(mask, out / "masks" / rel)
            train_rows.append(dataclasses.replace(row, mask=(path_prefix / "masks" / rel).as_posix(), mask_method=method))
        records.write_split(out / "train.csv", train_rows)

        test_rows = [row for sample in tqdm(self.source.test, desc="copy test", unit="img")
                     if (row := self._admit(sample, "test", out, path_prefix, counts["test"]))]
        records.write_split(out / "test.csv", test_rows)
        val_rows = []
        if self.source.val:
            counts["val"] = images.empty_counts()
            val_rows = [row for sample in tqdm(self.source.val, desc="copy val", unit="img")
                        if (row := self._admit(sample, "val", out, path_prefix, counts["val"]))]
            records.write_split(out / "val.csv", val_rows)

        counts["masks"] = dict.fromkeys(MASK_METHODS, 0) | Counter(row.mask_method for row in train_rows)
        summary = ", ".join(f"{method} {n}" for method, n in counts["masks"].items() if n)
        fallbacks = sum(n for method, n in counts["masks"].items() if method != self.mask_method())
        if fallbacks:
            summary += f" ({fallbacks} fell back from {self.mask_method()})"
        bad = {split: sum(counts[split]["skipped"].values()) for split in ("train", "test")}
        converted = sum(sum(counts[split]["converted"].values()) for split in ("train", "test"))
        val = f", {len(val_rows)} validation" if self.source.val else ""
        print(f"fetch: {self.params.name} ({self.params.split} split): {len(names)} classes, {len(train_rows)} "
              f"training{val} and {len(test_rows)} test images; masks: {summary}; skipped {bad['train']} training and "
              f"{bad['test']} test images, converted {converted} (metrics/fetch.json)")
        return counts

    def _admit_shots(self, out: Path, path_prefix: Path, shots: int | str, seed: int,
                     counts: dict) -> list[tuple[Sample, records.SplitRow]]:
        """shots usable images per class: the seeded draw, each unusable one replaced by the class's next in
        shot_order; "all": every usable one (at least one per class). Sorted by label, then file name."""
        by_class: dict[int, list[Sample]] = defaultdict(list)
        for sample in self.source.train:
            by_class[sample.label].append(sample)
        chosen = []
        for label, name in enumerate(tqdm(self.source.classes, desc="copy train", unit="class")):
            candidates = by_class[label]
            wanted = len(candidates) if shots == "all" else shots
            admitted = []
            for sample in shot_order(candidates, wanted, seed, label):
                if len(admitted) == wanted:
                    break
                if row := self._admit(sample, "train", out, path_prefix, counts):
                    admitted.append((sample, row))
            if len(admitted) < wanted and (shots != "all" or not admitted):
                unusable = f"; {len(candidates) - len(admitted)} of its {len(candidates)} are unusable (see the " \
                           "warnings above)" if candidates else ""
                raise ParamError("dataset.shots", shots,
                                 f"at most {len(admitted)}, the usable training images of class {name!r}{unusable}")
            chosen += sorted(admitted, key=lambda pair: pair[0].path.name)
        return chosen

    def _admit(self, sample: Sample, split: str, out: Path, path_prefix: Path,
               counts: dict) -> records.SplitRow | None:
        """Copy or convert one image into out/images/<split>/<class>/; its CSV row, or None when skipped."""
        name = self.source.classes[sample.label]
        rel = Path(split) / io.slug(name) / sample.path.name
        outcome = images.admit(sample.path, out / "images" / rel)
        images.tally(counts, outcome)
        if outcome.action != "copied":
            tqdm.write(f"fetch: {outcome.action} {sample.path}: {outcome.detail} ({split}, {name})", file=sys.stderr)
        if outcome.path is None:
            return None
        return records.SplitRow(path=(path_prefix / "images" / rel.with_name(outcome.path.name)).as_posix(), mask=None,
                                label=sample.label, class_name=name)

    def _masks(self, train: list[tuple[Sample, records.SplitRow]], out: Path, path_prefix: Path,
               grounded: masks.GroundedSam | None, segmenter: masks.ClipSeg | None,
               remover: masks.BackgroundRemover | None):
        """Yield (mask, method that produced it) per admitted training image, in order; images are read
        from their admitted copies (8-bit RGB). A missing or broken trimap falls back to GrabCut; grounded-sam
        without a box or with too small a mask to dataset.mask.fallback (CLIPSeg or the background remover),
        and that to GrabCut."""
        method, settings = self.mask_method(), self.params.mask
        for start in range(0, len(train), MASK_CHUNK):
            chunk = train[start:start + MASK_CHUNK]
            images_ = [_read(out / Path(row.path).relative_to(path_prefix), "RGB") for _, row in chunk]
            if method == "trimap":
                for (sample, row), image in zip(chunk, images_):
                    trimap, problem = _read_trimap(sample.trimap, image.shape[:2])
                    if trimap is not None:
                        yield masks.trimap_to_mask(trimap), "trimap"
                        continue
                    tqdm.write(f"fetch: no usable trimap for {sample.path} ({problem}); GrabCut mask instead "
                               f"(train, {row.class_name})", file=sys.stderr)
                    yield masks.grabcut_or_box(image, sample.box, settings.min_area)
                continue
            found: list[tuple[np.ndarray | None, str]] = [(None, method)] * len(chunk)
            if grounded:
                found = [(grounded.mask(image, masks.grounding_prompt(self.spec.word, row.class_name)), method)
                         for (_, row), image in zip(chunk, images_)]
            missing = [i for i, (mask, _) in enumerate(found)
                       if mask is None or not masks.covers(mask, settings.min_area)]
            if segmenter:
                made = segmenter.masks([images_[i] for i in missing], [chunk[i][0].prompt for i in missing],
                                       settings.threshold)
                for i, mask in zip(missing, made):
                    found[i] = mask, "clipseg"
            if remover:
                for i in missing:
                    found[i] = remover.mask(images_[i]), "rmbg"
            for (sample, _), image, (mask, made_by) in zip(chunk, images_, found):
                if mask is not None and masks.covers(mask, settings.min_area):
                    yield mask, made_by
                else:
                    yield masks.grabcut_or_box(image, sample.box, settings.min_area)


def _load_clipseg(model: str, device: str, trust_remote_code: bool) -> masks.ClipSeg:
    try:
        return masks.ClipSeg(model, device, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as err:  # not on the hub, offline, not a CLIPSeg folder, not a valid id
        reason = first_line(err)
        raise StageError(f"cannot load CLIPSeg from dataset.mask.model={model!r} ({reason}); "
                         "give a model id the hub has or a local folder, or set dataset.mask.method: grabcut "
                         "(grounded-sam: dataset.mask.fallback: grabcut)") from None


def _read(path: Path, mode: str | None = None) -> np.ndarray:
    """The pixels of an image file; mode None keeps the stored values (trimap labels 1, 2, 3)."""
    with Image.open(path) as image:
        return np.array(image.convert(mode) if mode else image)


def _read_trimap(path: Path | None, shape: tuple[int, int]) -> tuple[np.ndarray | None, str]:
    """A pets trimap of the image's shape, or None and why not."""
    if path is None or not path.exists():
        return None, "no such file"
    try:
        trimap = _read(path)
    except (OSError, SyntaxError, ValueError) as err:  # missing, not an image, truncated
        return None, first_line(err)
    if trimap.shape != shape:
        return None, f"its shape {trimap.shape} is not the image's {shape}"
    return trimap, ""


def shot_order(candidates: list[Sample], shots: int, seed: int, label: int) -> list[Sample]:
    """A class's files in the order fetch tries them: the seeded draw of shots (in name order), then the
    others in a second seeded order, the replacements for drawn files that turn out unusable. Depends on
    neither the file system's order nor which other classes are kept."""
    candidates = sorted(candidates, key=lambda s: s.path.name)
    drawn = sorted(np.random.default_rng([seed, label]).choice(len(candidates), min(shots, len(candidates)),
                                                              replace=False))
    others = [i for i in range(len(candidates)) if i not in set(drawn)]
    others = [others[i] for i in np.random.default_rng([seed, label, 1]).permutation(len(others))]
    return [candidates[i] for i in [*drawn, *others]]
