"""Fine-tune a Classifier on real and synthetic images.

Each step draws one batch of real and one batch of synthetic images and minimises
real_weight * CE(real) + (1 - real_weight) * CE(synthetic); with only one kind present, its CE.
The number of steps is fixed (train.steps, or computed from train.epochs), so every condition gets the
same compute and differs only in data. The learning rate warms up linearly from lr_min to lr over
warmup_ratio of the steps, then follows a cosine down to lr_min (0: transformers' cosine schedule).

The checkpoint kept is the final step's, or (select: best-val) the step with the best top-1 on a
validation split held out from the real training images: never the test split.

Under `accelerate launch` the processes train data-parallel with the results semantics of one
process: the same steps, the same global batch (each process takes its slice of it) and the same
loss. One process trains bit for bit as it did without accelerate.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler
from tqdm import tqdm

from varireal import io
from varireal.errors import StageError
from varireal.params import TrainParams
from varireal.runtime import process_state


class LabelledImage(Protocol):
    """A row of a split or of the training set (varireal/records.py): an image file and its class."""

    path: str
    label: int


class ImageRows(Dataset):
    """Rows with `path` and `label` -> (transformed image, label).

    With cache=True each image is decoded once and kept in memory: training sees every image
    many times, and decoding costs as much as augmenting. Only for sets that fit in RAM.
    """

    def __init__(self, rows: Sequence[LabelledImage], transform, cache: bool = False):
        self.rows, self.transform = rows, transform
        self.decoded: dict[int, Image.Image] | None = {} if cache else None

    def __len__(self) -> int:
        return len(self.rows)

    def _decode(self, index: int) -> Image.Image:
        return io.open_rgb(self.rows[index].path)

    def _image(self, index: int) -> Image.Image:
        if self.decoded is None:
            return self._decode(index)
        if index not in self.decoded:
            self.decoded[index] = self._decode(index)
        return self.decoded[index]

    def __getitem__(self, index: int):
        return self.transform(self._image(index)), self.rows[index].label


class RankSlice(BatchSampler):
    """The batches of a BatchSampler, each cut to this process's share.

    Every process draws the same global batch of indices from the same seeded generator and keeps
    only its slice, so a process decodes and augments only its own images, the processes' slices
    partition the global batch, and the global batch does not depend on the number of processes.
    """

    def __init__(self, sampler, batch_size: int, drop_last: bool, rank: int = 0, processes: int = 1):
        super().__init__(sampler, batch_size, drop_last)
        self.rank, self.processes = rank, processes

    def __iter__(self) -> Iterator[list[int]]:
        for batch in super().__iter__():
            yield batch[len(batch) * self.rank // self.processes:len(batch) * (self.rank + 1) // self.processes]


def _rank_seed(seed: int, rank: int) -> int:
    return int(np.random.SeedSequence([seed, rank]).generate_state(1)[0])


def _seed_worker(rank: int, worker_id: int) -> None:
    """A loader process of rank > 0: its own augmentation stream, not rank 0's (base seed + worker id)."""
    torch.manual_seed(_rank_seed(torch.initial_seed(), rank))


def _endless(rows: Sequence[LabelledImage], transform, params: TrainParams, generator: torch.Generator,
             rank: int = 0, processes: int = 1) -> Iterator:
    batch_size = min(params.batch_size, len(rows))
    loader = DataLoader(
        ImageRows(rows, transform, cache=params.cache_images),
        batch_sampler=RankSlice(RandomSampler(rows, generator=generator), batch_size, True, rank, processes),
        num_workers=params.workers,
        persistent_workers=params.workers > 0,
        generator=generator,  # seeds the workers' augmentation: reproducible for a given `workers`
        worker_init_fn=functools.partial(_seed_worker, rank) if rank > 0 else None,
    )
    while True:
        yield from loader


def total_steps(params: TrainParams, real: Sequence[LabelledImage], synthetic: Sequence[LabelledImage]) -> int:
    """train.steps, or from train.epochs: passes over the larger of the two sets at batch_size images of each
    kind per step (the official loader pools real x repeats and synthetic: about as many steps per epoch)."""
    if params.steps is not None:
        return params.steps
    return max(1, math.ceil(params.epochs * max(len(real), len(synthetic)) / params.batch_size))


def cosine_factor(step: int, warmup: int, total: int, floor: float = 0.0) -> float:
    """The learning rate at step over the peak lr: linear warm-up from floor to 1, cosine from 1 to floor.
    With floor 0 it is transformers' get_cosine_schedule_with_warmup bit for bit."""
    if step < warmup:
        factor = float(step) / float(max(1, warmup))
    else:
        progress = float(step - warmup) / float(max(1, total - warmup))
        factor = max(0.0, 0.5 * (1.0 + math.cos(math.pi * 0.5 * 2.0 * progress)))
    return factor if floor == 0 else floor + (1.0 - floor) * factor


def validation_split(rows: Sequence[LabelledImage], fraction: float, seed: int) -> list[LabelledImage]:
    """The rows held out for validation: round(fraction x n) per class (at least 1 where fraction > 0 and
    a class has 2 or more, never all of a class), drawn from seed. Stratified, so every class is judged."""
    by_label: dict[int, list[LabelledImage]] = {}
    for row in rows:
        by_label.setdefault(row.label, []).append(row)
    rng = np.random.default_rng([seed, 1729])
    held: list[LabelledImage] = []
    for label in sorted(by_label):
        members = sorted(by_label[label], key=lambda row: row.path)
        count = min(len(members) - 1, max(1, round(fraction * len(members)))) if fraction > 0 else 0
        held += [members[i] for i in sorted(rng.choice(len(members), count, replace=False))] if count > 0 else []
    return held


@dataclass
class Validation:
    """Top-1 on a validation split at the last step and, when select is best-val, every `every` steps;
    train() then keeps the weights of the best step (the earliest of the best top-1)."""

    rows: Sequence[LabelledImage]
    transform: object
    every: int
    batch_size: int = 128
    results: list[dict] = field(default_factory=list)

    @property
    def best(self) -> dict | None:
        return max(self.results, key=lambda result: result["val_top1"]) if self.results else None

    @torch.no_grad()
    def top1(self, classifier, device) -> float:
        was_training = classifier.training
        classifier.eval()
        correct = 0
        for images, labels in DataLoader(ImageRows(self.rows, self.transform), batch_size=self.batch_size):
            correct += (classifier(images.to(device)).argmax(dim=-1).cpu() == labels).sum().item()
        classifier.train(was_training)
        return round(correct / len(self.rows), 6)


def train(classifier, real: Sequence[LabelledImage], synthetic: Sequence[LabelledImage], transform, params: TrainParams,
          validation: Validation | None = None) -> list[dict]:
    """Train in place, in this process or data-parallel under `accelerate launch`; returns the loss
    history [{step, loss, lr}] (the same on every process).

    Data-parallel keeps the results semantics of one process: the same steps, the same global batch
    (batch_size real + batch_size synthetic images per step, split between the processes) and the
    same loss. The classifier object itself is trained, never a copy: the caller saves it unwrapped.
    """
    from accelerate import Accelerator, DistributedDataParallelKwargs
    from transformers import get_cosine_schedule_with_warmup

    # This process's device: train.device, or `accelerate launch --cpu`; "auto" gives each process its own GPU.
    on_cpu = process_state(params.device).device.type == "cpu"
    # Mixed precision on CUDA only (fp16 with loss scaling); the CPU trains in fp32. Params decide, not
    # `accelerate config`, so that dvc.lock records it.
    precision = "no" if on_cpu else {"bf16": "bf16", "fp16": "fp16", "fp32": "no"}[params.precision]
    # A trainable weight can take no part in the loss (CLIP's logit_scale: the classifier's scale is fixed).
    # The graph is the same at every step; static_graph lets DDP find such weights once and leave them alone.
    accelerator = Accelerator(cpu=on_cpu, mixed_precision=precision,
                              kwargs_handlers=[DistributedDataParallelKwargs(static_graph=True)])
    rank, processes = accelerator.process_index, accelerator.num_processes
    global_batch = {name: min(params.batch_size, len(rows))
                    for name, rows in (("real", real), ("synthetic", synthetic)) if rows}
    kind, smallest = min(global_batch.items(), key=lambda item: item[1])
    if smallest < processes:
        accelerator.wait_for_everyone()  # every process refuses; the main one says why, in one line
        if not accelerator.is_main_process:
            raise SystemExit(1)
        raise StageError(f"the global batch of {smallest} {kind} images cannot be split between {processes} processes: "
                         f"launch at most {smallest}, or raise train.batch_size (and the {kind} images in the mix)")
    if rank > 0:  # augmentation and dropout: rank 0 keeps its stream, the others must not repeat it
        torch.manual_seed(_rank_seed(params.seed, rank))

    classifier.to(accelerator.device).train()
    trainable = [p for p in classifier.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=params.lr, weight_decay=params.weight_decay)
    # Not the scheduler: accelerate's wrapper steps it once per process at every step, for a global batch that
    # grows with the processes. Here the global batch is fixed: one schedule step per step.
    model, optimizer = accelerator.prepare(classifier, optimizer)
    steps = total_steps(params, real, synthetic)
    warmup = round(params.warmup_ratio * steps)
    if params.lr_min == 0:
        scheduler = get_cosine_schedule_with_warmup(optimizer, warmup, steps)
    else:
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, functools.partial(
            cosine_factor, warmup=warmup, total=steps, floor=params.lr_min / params.lr))
    generator = torch.Generator().manual_seed(params.seed)
    batches = {name: _endless(rows, transform, params, generator, rank, processes)
               for name, rows in (("real", real), ("synthetic", synthetic)) if rows}
    weights = {"real": params.real_weight, "synthetic": 1 - params.real_weight} if len(batches) == 2 else \
        {name: 1.0 for name in batches}

    keep_best = validation is not None and params.select == "best-val"
    best_weights: dict[str, torch.Tensor] | None = None
    history = []
    for step in tqdm(range(1, steps + 1), desc="train", unit="step", disable=not accelerator.is_main_process):
        drawn = {name: next(stream) for name, stream in batches.items()}
        # One forward pass over real and synthetic together; the loss weighs the two halves.
        images = torch.cat([images for images, _ in drawn.values()]).to(accelerator.device)
        logits = model(images).float()
        # Each kind's summed CE over this process's slice, divided by the kind's global count / processes:
        # DDP averages gradients over processes, which then equals the gradient of the global weighted mean.
        loss = torch.zeros((), device=accelerator.device)
        for name, part in zip(drawn, logits.split([len(labels) for _, labels in drawn.values()])):
            part_loss = F.cross_entropy(part, drawn[name][1].to(accelerator.device), reduction="sum")
            loss = loss + weights[name] * (part_loss / (global_batch[name] / processes))
        optimizer.zero_grad(set_to_none=True)
        accelerator.backward(loss)
        optimizer.step()
        scheduler.step()
        mean_loss = accelerator.reduce(loss.detach(), reduction="mean")
        history.append({"step": step, "loss": round(mean_loss.item(), 6), "lr": scheduler.get_last_lr()[0]})
        if validation is not None and ((keep_best and step % validation.every == 0) or step == steps):
            # Every process evaluates the whole split with the same weights: the same choice everywhere.
            best = validation.best
            validation.results.append({"step": step, "val_top1": validation.top1(classifier, accelerator.device)})
            if keep_best and (best is None or validation.results[-1]["val_top1"] > best["val_top1"]):
                best_weights = {name: p.detach().clone() for name, p in classifier.named_parameters()
                                if p.requires_grad}
    if keep_best and best_weights is not None:
        with torch.no_grad():
            for name, p in classifier.named_parameters():
                if name in best_weights:
                    p.copy_(best_weights[name])
    return history
