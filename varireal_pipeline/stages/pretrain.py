"""pretrain: the world-CLIP in models/world-clip/, a small CLIP pretrained on a captioned corpus of the
embedded world (varireal/pretraining.py); how well it knows the world in metrics/pretrain.json.

Real datasets start from a pretrained CLIP of their own (train.pretrained, e.g. openai): for them the
stage writes only a note, and `train.pretrained: world` is refused."""

import time

import numpy as np

from varireal import classifier, corpus, datasets, io, pretraining
from varireal.datasets import world
from varireal.edit_runs import cpu_workers
from varireal.params import load
from varireal.runtime import fix_cpu_threads

from varireal_pipeline.stages import METRICS, WORLD_CLIP, WORLD_CLIP_WEIGHTS

RETRIEVAL_BATCH = 256  # captions to pick from per picture in the retrieval figure (as pretraining's batches)


def main(params_path="params.yaml") -> None:
    params = load(params_path)
    p = params.pretrain
    if params.dataset.name != "world":
        with io.atomic_dir(WORLD_CLIP) as staging:
            io.write_json(staging / "skipped.json", {"dataset": params.dataset.name, "reason": (
                "the world-CLIP is pretrained for the embedded world only; train.pretrained names this "
                "dataset's CLIP")})
        io.write_json(METRICS / "pretrain.json", {"dataset": params.dataset.name, "pretrained": False})
        io.write_csv(METRICS / "pretrain_loss.csv", [], ["step", "loss", "lr"])
        print(f"pretrain: nothing to pretrain for dataset {params.dataset.name} (train.pretrained is its CLIP)")
        return

    workers = cpu_workers(p.workers, 1)
    started = time.monotonic()
    spec = corpus.CorpusSpec(p.corpus_size, p.image_size, p.captions.species_share, p.captions.attribute_share,
                                  p.infeasible_share, p.seed)
    pictures = corpus.render_corpus(spec, workers)
    rendered = time.monotonic()

    fix_cpu_threads(p.threads, deterministic=True)
    clip, _, preprocess, tokenizer = classifier.create_clip(p.model, None, p.seed)
    mean, std = clip.visual.image_mean, clip.visual.image_std
    history = pretraining.pretrain(clip, pictures.images, tokenizer(pictures.captions), steps=p.steps,
                                   batch_size=p.batch_size, lr=p.lr, weight_decay=p.weight_decay,
                                   warmup=round(p.warmup_ratio * p.steps), seed=p.seed, mean=mean, std=std)
    trained = time.monotonic()

    # Fresh pictures, never trained on: the task's species as the test split shows them (feasible only), and
    # captioned pictures drawn as the corpus is.
    heldout = corpus.render_corpus(
        corpus.CorpusSpec(p.heldout, p.image_size, 1.0, 0.0, 0.0, p.seed),
        workers, stream=corpus.HELDOUT_STREAM, species=world.CLASS_NAMES)
    labels = np.array([world.CLASS_NAMES.index(name) for name in heldout.species])
    texts = classifier.class_texts(world.CLASS_NAMES, datasets.template("world", "registry"))
    pairs = corpus.render_corpus(corpus.CorpusSpec(p.heldout, p.image_size, p.captions.species_share,
                                                             p.captions.attribute_share, p.infeasible_share, p.seed),
                                      workers, stream=corpus.HELDOUT_STREAM + 1)
    summary = {
        "dataset": "world", "pretrained": True, "corpus_size": p.corpus_size, "steps": p.steps,
        "final_loss": history[-1]["loss"] if history else None,
        "zero_shot_top1_heldout": pretraining.zero_shot_top1(clip, tokenizer, heldout.images, labels, texts, mean, std),
        "retrieval_top1_heldout": pretraining.retrieval_top1(clip, pairs.images, tokenizer(pairs.captions), mean, std,
                                                             min(RETRIEVAL_BATCH, p.heldout)),
    }
    with io.atomic_dir(WORLD_CLIP) as staging:
        classifier.save_weights(clip, staging / WORLD_CLIP_WEIGHTS.name)
    io.write_json(METRICS / "pretrain.json", summary)
    io.write_csv(METRICS / "pretrain_loss.csv", history, ["step", "loss", "lr"])
    print(f"pretrain: corpus of {p.corpus_size} rendered in {rendered - started:.0f} s on {workers} processes, "
          f"{p.steps} steps in {trained - rendered:.0f} s; zero-shot top-1 {summary['zero_shot_top1_heldout']:.3f} "
          f"on {len(labels)} held-out pictures")
