"""Training throughput of `varireal.training.train` against a bare PyTorch loop on the same model
and data, measured in one run: the embedded default's mixed set (built by `dvc repro mix` in a fresh
copy of the project), the same classifier, trainable weights, transform, threads and batch (real +
synthetic images per step). The bare loop is DataLoader -> forward -> cross-entropy -> backward ->
AdamW, nothing else. Each loop runs twice, alternating; the faster run of each counts.

Usage: .venv/bin/python bench/train_throughput.py [--steps 150]
"""

from __future__ import annotations

import argparse
import os
import time

from common import Project, machine


def bare_loop(classifier, rows, transform, p, steps: int) -> None:
    import torch
    import torch.nn.functional as F
    from torch.utils.data import DataLoader

    from varireal.training import ImageRows

    loader = DataLoader(ImageRows(rows, transform, cache=p.cache_images), batch_size=2 * p.batch_size,
                        shuffle=True, drop_last=True, num_workers=p.workers)
    optimizer = torch.optim.AdamW([t for t in classifier.parameters() if t.requires_grad], lr=p.lr,
                                  weight_decay=p.weight_decay)
    classifier.train()
    batches = iter(())
    for _ in range(steps):
        try:
            images, labels = next(batches)
        except StopIteration:
            batches = iter(loader)
            images, labels = next(batches)
        loss = F.cross_entropy(classifier(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


def main(steps: int) -> None:
    print(machine())
    project = Project()
    project.sh("dvc", "repro", "mix")
    os.chdir(project.root)

    import torch

    from varireal import classifier as clf
    from varireal import augment, datasets, io, records, training
    from varireal.params import load

    p = load("params.yaml").train.model_copy(update={"steps": steps})
    class_names = io.read_json("data/raw/classes.json")
    rows = records.read_mixed("data/mixed/train.csv")
    real = [r for r in rows if r.kind == "real"]
    synthetic = [r for r in rows if r.kind == "synthetic"]
    torch.set_num_threads(p.threads)
    torch.use_deterministic_algorithms(True, warn_only=True)

    def fresh():
        model, augmenting, plain = clf.build(class_names, p.model, p.pretrained, p.seed, p.finetune, p.lora,
                                             template=datasets.template("world", p.template), head=p.head)
        return model, augment.build(p.augment, augmenting, plain)

    loops = {
        "bare PyTorch loop": lambda model, transform: bare_loop(model, real + synthetic, transform, p, steps),
        "varireal training.train": lambda model, transform: training.train(model, real, synthetic, transform, p),
    }
    best = {name: float("inf") for name in loops}
    for _ in range(2):
        for name, loop in loops.items():
            model, transform = fresh()
            start = time.perf_counter()
            loop(model, transform)
            best[name] = min(best[name], time.perf_counter() - start)
    images = steps * 2 * p.batch_size
    for name, seconds in best.items():
        print(f"{name:24}: {steps} steps of {2 * p.batch_size} images in {seconds:5.1f} s = "
              f"{images / seconds:6.1f} images/s")
    ratio = best["bare PyTorch loop"] / best["varireal training.train"]
    print(f"varireal / bare throughput: {ratio:.2f}  (goal >= 0.9)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=150)
    main(parser.parse_args().steps)
