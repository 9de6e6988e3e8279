"""Top-1 accuracy of a Classifier on a labelled split, with every prediction kept."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from varireal.batching import HalvingBatches
from varireal.records import SplitRow
from varireal.training import ImageRows, LabelledImage


@torch.no_grad()
def predict(classifier, rows: list[LabelledImage], transform, batch_size: int, device: torch.device) -> list[int]:
    """The predicted label of every row. On CUDA out of memory the batch halves and the same images go again."""
    classifier.to(device).eval()
    in_batches = HalvingBatches(batch_size, "eval")

    def labels(images: torch.Tensor) -> list[int]:
        return classifier(images.to(device)).argmax(dim=-1).tolist()

    predictions = []
    for images, _ in tqdm(DataLoader(ImageRows(rows, transform), batch_size=batch_size), desc="eval", unit="batch"):
        predictions += in_batches(labels, images)
    return predictions


def accuracy(rows: list[SplitRow], predictions: list[int], class_names: list[str]) -> dict:
    """{"top1": ..., "per_class": {class: top1}}; accuracies as fractions in [0, 1]."""
    correct = [r.label == p for r, p in zip(rows, predictions, strict=True)]
    per_class = {}
    for label, name in enumerate(class_names):
        hits = [c for r, c in zip(rows, correct) if r.label == label]
        per_class[name] = round(sum(hits) / len(hits), 6) if hits else None
    return {"top1": round(sum(correct) / len(correct), 6), "per_class": per_class, "test_images": len(rows)}
