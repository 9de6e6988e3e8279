"""Top-1 and top-5 accuracy of a Classifier on a labelled split, with every prediction kept."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from varireal.batching import HalvingBatches
from varireal.records import SplitRow
from varireal.training import ImageRows, LabelledImage


TOP_K = 5  # top-5 accuracy beside top-1, as the paper reports


@torch.no_grad()
def ranked(classifier, rows: list[LabelledImage], transform, batch_size: int, device: torch.device,
           k: int = TOP_K) -> list[tuple[int, ...]]:
    """Every row's k best labels (fewer when there are fewer classes), the argmax first. On CUDA out of
    memory the batch halves and the same images go again."""
    classifier.to(device).eval()
    in_batches = HalvingBatches(batch_size, "eval")

    def labels(images: torch.Tensor) -> list[tuple[int, ...]]:
        logits = classifier(images.to(device))
        best = logits.argmax(dim=-1).tolist()  # the top-1 prediction exactly as argmax breaks ties
        top = logits.topk(min(k, logits.shape[-1]), dim=-1).indices.tolist()
        return [(first, *[label for label in others if label != first][:k - 1]) for first, others in zip(best, top)]

    out = []
    for images, _ in tqdm(DataLoader(ImageRows(rows, transform), batch_size=batch_size), desc="eval", unit="batch"):
        out += in_batches(labels, images)
    return out


def predict(classifier, rows: list[LabelledImage], transform, batch_size: int, device: torch.device) -> list[int]:
    """The predicted label of every row (see ranked)."""
    return [best[0] for best in ranked(classifier, rows, transform, batch_size, device, k=1)]


def top_k(rows: list[SplitRow], best: list[tuple[int, ...]]) -> float:
    """The fraction of rows whose label is among their best labels (ranked's), rounded like top1."""
    return round(sum(r.label in b for r, b in zip(rows, best, strict=True)) / len(rows), 6)


def accuracy(rows: list[SplitRow], predictions: list[int], class_names: list[str]) -> dict:
    """{"top1": ..., "per_class": {class: top1}}; accuracies as fractions in [0, 1]."""
    correct = [r.label == p for r, p in zip(rows, predictions, strict=True)]
    per_class = {}
    for label, name in enumerate(class_names):
        hits = [c for r, c in zip(rows, correct) if r.label == label]
        per_class[name] = round(sum(hits) / len(hits), 6) if hits else None
    return {"top1": round(sum(correct) / len(correct), 6), "per_class": per_class, "test_images": len(rows)}
