"""A small CLIP pretrained on a captioned corpus of the embedded world (varireal/corpus.py): the offline
stand-in for CLIP's web pretraining, so that the embedded default adapts a pretrained CLIP with LoRA as
the paper does.

Training is CLIP's: open_clip's ClipLoss over in-batch image-caption pairs, AdamW with CLIP's betas,
warm-up and cosine, the token embedding frozen (its ~49k rows would dominate the optimizer's time).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

def to_tensor(images: np.ndarray, mean, std) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> normalised float (N, 3, H, W), as open_clip's preprocessing leaves a picture."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255)
    return (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


def cosine_lr(step: int, warmup: int, total: int) -> float:
    """The share of the peak learning rate at step: linear warm-up, then cosine to zero (open_clip's)."""
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


def pretrain(clip, images: np.ndarray, tokens: torch.Tensor, *, steps: int, batch_size: int, lr: float,
             weight_decay: float, warmup: int, seed: int, mean, std) -> list[dict]:
    """Contrastive pretraining of clip in place on (images, tokens); returns [{step, loss, lr}]."""
    from open_clip.loss import ClipLoss

    torch.manual_seed(seed)
    order = torch.Generator().manual_seed(seed)
    clip.train()
    clip.token_embedding.requires_grad_(False)
    # CLIP's optimizer: no weight decay on gains, biases, embeddings and the temperature.
    decay = [p for n, p in clip.named_parameters() if p.requires_grad and p.ndim >= 2 and "embedding" not in n]
    rest = [p for n, p in clip.named_parameters() if p.requires_grad and not (p.ndim >= 2 and "embedding" not in n)]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}],
                                  lr=lr, betas=(0.9, 0.98), eps=1e-6)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: cosine_lr(step, warmup, steps))
    loss_fn = ClipLoss()
    history: list[dict] = []
    permutation = torch.randperm(len(images), generator=order)
    cursor = 0
    for step in tqdm(range(1, steps + 1), desc="pretrain", unit="step"):
        if cursor + batch_size > len(images):  # a new epoch: a new order
            permutation, cursor = torch.randperm(len(images), generator=order), 0
        batch = permutation[cursor:cursor + batch_size]
        cursor += batch_size
        image_features = F.normalize(clip.encode_image(to_tensor(images[batch.numpy()], mean, std)), dim=-1)
        text_features = F.normalize(clip.encode_text(tokens[batch]), dim=-1)
        loss = loss_fn(image_features, text_features, clip.logit_scale.exp())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        with torch.no_grad():  # CLIP's clamp: the temperature never below 1/100
            clip.logit_scale.clamp_(0, math.log(100))
        history.append({"step": step, "loss": round(loss.item(), 6), "lr": schedule.get_last_lr()[0]})
    clip.eval()
    return history


@torch.no_grad()
def zero_shot_top1(clip, tokenizer, images: np.ndarray, labels: np.ndarray, class_texts: list[str], mean, std) -> float:
    """Top-1 of CLIP's zero-shot classifier (one text per class) on images."""
    clip.eval()
    classes = F.normalize(clip.encode_text(tokenizer(class_texts)), dim=-1)
    correct = 0
    for start in range(0, len(images), 256):
        features = F.normalize(clip.encode_image(to_tensor(images[start:start + 256], mean, std)), dim=-1)
        correct += (features @ classes.T).argmax(-1).eq(torch.from_numpy(labels[start:start + 256])).sum().item()
    return round(correct / len(images), 6)


@torch.no_grad()
def retrieval_top1(clip, images: np.ndarray, tokens: torch.Tensor, mean, std, batch_size: int = 256) -> float:
    """In-batch image -> caption retrieval top-1 over consecutive batches of batch_size pairs."""
    clip.eval()
    correct = total = 0
    for start in range(0, len(images) - batch_size + 1, batch_size):
        image_features = F.normalize(clip.encode_image(to_tensor(images[start:start + batch_size], mean, std)), dim=-1)
        text_features = F.normalize(clip.encode_text(tokens[start:start + batch_size]), dim=-1)
        correct += (image_features @ text_features.T).argmax(-1).eq(torch.arange(batch_size)).sum().item()
        total += batch_size
    return round(correct / max(1, total), 6)
