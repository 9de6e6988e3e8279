"""Fine-tune a Classifier on real and synthetic images.

Each step draws one batch of real and one batch of synthetic images and minimises
real_weight * CE(real) + (1 - real_weight) * CE(synthetic); with only one kind present, its CE.
The number of steps is fixed, so every condition gets the same compute and differs only in data.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset, RandomSampler
from tqdm import tqdm

from varireal import io
from varireal.params import TrainParams


class ImageRows(Dataset):
    """Rows with `path` and `label` -> (transformed image, label).

    With cache=True each image is decoded once and kept in memory: training sees every image
    many times, and decoding costs as much as augmenting. Only for sets that fit in RAM.
    """

    def __init__(self, rows: list[dict], transform, cache: bool = False):
        self.rows, self.transform = rows, transform
        self.decoded: dict[int, Image.Image] | None = {} if cache else None

    def __len__(self) -> int:
        return len(self.rows)

    def _decode(self, index: int) -> Image.Image:
        return io.open_rgb(self.rows[index]["path"])

    def _image(self, index: int) -> Image.Image:
        if self.decoded is None:
            return self._decode(index)
        if index not in self.decoded:
            self.decoded[index] = self._decode(index)
        return self.decoded[index]

    def __getitem__(self, index: int):
        return self.transform(self._image(index)), int(self.rows[index]["label"])


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(device)


def _endless(rows: list[dict], transform, params: TrainParams, generator: torch.Generator) -> Iterator:
    loader = DataLoader(
        ImageRows(rows, transform, cache=params.cache_images),
        batch_size=min(params.batch_size, len(rows)),
        sampler=RandomSampler(rows, generator=generator),
        drop_last=True,
        num_workers=params.workers,
        persistent_workers=params.workers > 0,
        generator=generator,  # seeds the workers' augmentation: reproducible for a given `workers`
    )
    while True:
        yield from loader


def train(classifier, real: list[dict], synthetic: list[dict], transform, params: TrainParams) -> list[dict]:
    """Train in place; returns the loss history [{step, loss, lr}]."""
    from transformers import get_cosine_schedule_with_warmup

    device = resolve_device(params.device)
    classifier.to(device).train()
    trainable = [p for p in classifier.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=params.lr, weight_decay=params.weight_decay)
    scheduler = get_cosine_schedule_with_warmup(optimizer, round(params.warmup_ratio * params.steps), params.steps)
    generator = torch.Generator().manual_seed(params.seed)
    batches = {name: _endless(rows, transform, params, generator)
               for name, rows in (("real", real), ("synthetic", synthetic)) if rows}
    weights = {"real": params.real_weight, "synthetic": 1 - params.real_weight} if len(batches) == 2 else \
        {name: 1.0 for name in batches}

    # Mixed precision on CUDA only; fp16 needs loss scaling against underflow, bf16 does not.
    autocast_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}[params.precision]
    use_autocast = device.type == "cuda" and autocast_dtype is not None
    scaler = torch.amp.GradScaler(device.type, enabled=use_autocast and autocast_dtype == torch.float16)

    history = []
    for step in tqdm(range(1, params.steps + 1), desc="train", unit="step"):
        drawn = {name: next(stream) for name, stream in batches.items()}
        # One forward pass over real and synthetic together; the loss weighs the two halves.
        images = torch.cat([images for images, _ in drawn.values()]).to(device)
        with torch.autocast(device.type, dtype=autocast_dtype, enabled=use_autocast):
            logits = classifier(images).float()
        loss = torch.zeros((), device=device)
        for name, part in zip(drawn, logits.split([len(labels) for _, labels in drawn.values()])):
            loss = loss + weights[name] * F.cross_entropy(part, drawn[name][1].to(device))
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        history.append({"step": step, "loss": round(loss.item(), 6), "lr": scheduler.get_last_lr()[0]})
    return history
