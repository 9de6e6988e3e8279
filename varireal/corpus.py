"""The world-CLIP's captioned corpus: pictures of the embedded world and captions that say what they show.

The task's species and EXTRA_SPECIES (pretraining knows more of the world than the task asks), each picture
with a caption that names its colour, texture and background and, in a share of captions only
(`species_share`), its species; the others name only its family ("a star", "a foil"). As on the web,
fine-grained names are rare, so the zero-shot classifier is imperfect and few-shot fine-tuning has something
to learn. Each attribute is named in a share of captions (`attribute_share`): a caption that names all of
them almost always tells a picture from the other 255 of its batch without the species, and pretraining
then never needs to learn the species. A share of pictures (`infeasible_share`) ignores the species'
feasibility rules, as odd pictures on the web do.

No torch here: the rendering processes import this module only.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np
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
