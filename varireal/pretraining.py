"""A small CLIP pretrained on a captioned corpus of the embedded world: the offline stand-in for CLIP's
web pretraining, so that the embedded default adapts a pretrained CLIP with LoRA as the paper does.

The corpus is rendered from the world: the task's species and EXTRA_SPECIES (pretraining knows more of
the world than the task asks), each picture with a caption that names its colour, texture and background
and, in a share of captions only (`species_share`), its species; the others name only its family ("a
star", "a foil"). As on the web, fine-grained names are rare, so the zero-shot classifier is imperfect
and few-shot fine-tuning has something to learn. Each attribute is named in a share of captions
(`attribute_share`): a caption that names all of them almost always tells a picture from the other 255
of its batch without the species, and pretraining then never needs to learn the species. A share of pictures (`infeasible_share`) ignores the
species' feasibility rules, as odd pictures on the web do.

Training is CLIP's: open_clip's ClipLoss over in-batch image-caption pairs, AdamW with CLIP's betas,
warm-up and cosine, the token embedding frozen (its ~49k rows would dominate the optimizer's time).
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from varireal.datasets import world
from varireal.runtime import worker_pool

# Seed stream of the corpus, apart from the world's train (0) and test (1) streams: no corpus picture is
# a picture of the task's splits.
CORPUS_STREAM, HELDOUT_STREAM = 3, 4

TEXTURE_WORDS = {"plain": "plain", "stripes": "striped", "dots": "dotted", "checker": "checkered",
                 "scales": "scaly", "speckle": "speckled", "zigzag": "zigzag"}
BACKGROUND_WORDS = {"sky": "in the sky", "meadow": "in a meadow", "desert": "in a desert", "ocean": "in the ocean",
                    "snow": "in the snow", "forest": "in a forest", "night": "at night", "lava": "on lava",
                    "moon": "on the moon"}
FAMILY = {False: "foil", True: "star"}  # rounded or pointed lobes: what a caption says without the species


@dataclass(frozen=True)
class CorpusSpec:
    size: int
    image_size: int
    species_share: float
    attribute_share: float
    infeasible_share: float
    seed: int


def caption(instance: world.Instance, named: bool, attributes: tuple[str, ...] = world.ATTRIBUTES) -> str:
    """"a photo of a red striped hexastar in a meadow." (named) or "... red striped star ..." (family only),
    naming the given attributes only ("a photo of a hexastar." names none: the world's zero-shot template).
    Short enough for the small CLIP's 16-token context."""
    _, _, pointed = world.ALL_SPECIES[world.ALL_NAMES.index(instance.class_name)]
    words = [instance.color] if "color" in attributes else []
    words += [TEXTURE_WORDS[instance.texture]] if "texture" in attributes else []
    words += [instance.class_name if named else FAMILY[pointed]]
    words += [BACKGROUND_WORDS[instance.background]] if "background" in attributes else []
    return f"a photo of a {' '.join(words)}."


def _render_one(spec: CorpusSpec, index: int, stream: int, species: list[str]) -> tuple[np.ndarray, str, str]:
    rng = np.random.default_rng([spec.seed, stream, index])
    name = species[int(rng.integers(len(species)))]
    instance = world.sample_instance(name, rng, feasible_only=rng.random() >= spec.infeasible_share)
    named = rng.random() < spec.species_share
    mentioned = tuple(attribute for attribute in world.ATTRIBUTES if rng.random() < spec.attribute_share)
    image, _ = world.render_instance(instance, rng, spec.image_size)
    return image, caption(instance, named, mentioned), name


def _render_chunk(args) -> tuple[np.ndarray, list[str], list[str]]:
    spec, indices, stream, species = args
    rendered = [_render_one(spec, i, stream, species) for i in indices]
    return (np.stack([image for image, _, _ in rendered]), [text for _, text, _ in rendered],
            [name for _, _, name in rendered])


@dataclass
class Corpus:
    images: np.ndarray  # uint8 (N, S, S, 3)
    captions: list[str]
    species: list[str]  # the species of each picture, named in its caption or not


def render_corpus(spec: CorpusSpec, workers: int, stream: int = CORPUS_STREAM,
                  species: list[str] | None = None) -> Corpus:
    """Picture i depends on (seed, stream, i) only, so the corpus is the same for any number of workers."""
    species = species or world.ALL_NAMES
    chunk = 250
    jobs = [(spec, range(start, min(start + chunk, spec.size)), stream, species)
            for start in range(0, spec.size, chunk)]
    images, captions, names = [], [], []
    with tqdm(total=spec.size, desc="render corpus", unit="img") as bar, \
            worker_pool(workers) if workers > 1 else contextlib.nullcontext() as pool:
        for block, texts, kinds in (pool.map if pool else map)(_render_chunk, jobs):
            images.append(block), captions.extend(texts), names.extend(kinds), bar.update(len(texts))
    return Corpus(np.concatenate(images), captions, names)


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
