"""The feasibility study of README "Results": top-1 per attribute and condition on the embedded default over
three training seeds, and the feasibility gap (infeasible - feasible) against fine-tuning strength (LoRA lr),
backbone strength (pretraining steps), a second pretraining seed and, at the far end, a model trained from
scratch. `varireal report` draws it (gaps.png) with its seed-level verdicts.

One `dvc repro` in a throw-away copy of the project makes the pool and the world-CLIP. Every cell then runs
`varireal mix`, `train` and `eval` on that pool, exactly as `dvc exp run -S <overrides>` would, in one of two
worker folders (the pool linked, not copied; one CPU thread each, the README's advice for two at a time), and
logs its MLflow run to the copy's store. A setting with other pretrain params first pretrains its own
world-CLIP. At the end it prints the report command for the store.

Usage: .venv/bin/python bench/feasibility_study.py [--quick]
  --quick: one seed, colour only (a smoke run of a few minutes)
"""

from __future__ import annotations

import argparse
import itertools
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

from common import Project, machine

ATTRIBUTES = ["background", "color", "texture"]
DEFAULT_SEEDS, STUDY_SEEDS = [0, 1, 2], [0, 1]
# Settings of the study, as -S overrides of the default; "default" is params.yaml itself.
STUDY = {
    "LoRA lr 1e-3 (stronger fine-tuning)": {"train.lr": 0.001},
    "pretrained 120 steps (weaker backbone)": {"pretrain.steps": 120},
    "pretraining seed 1": {"pretrain.seed": 1},
    "from scratch (full fine-tuning, random init)": {"train.finetune": "full", "train.pretrained": None,
                                                     "train.lr": 0.001},
}


def merged(params: dict, overrides: dict) -> dict:
    out = yaml.safe_load(yaml.safe_dump(params))
    for key, value in overrides.items():
        node = out
        *parents, last = key.split(".")
        for part in parents:
            node = node[part]
        node[last] = value
    return out


def pretrain_key(overrides: dict) -> tuple:
    return tuple(sorted((k, v) for k, v in overrides.items() if k.startswith("pretrain.")))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    attributes, default_seeds, study_seeds = (["color"], [0], [0]) if args.quick else \
        (ATTRIBUTES, DEFAULT_SEEDS, STUDY_SEEDS)

    print(machine(), flush=True)
    project = Project()
    print(f"project copy: {project.root}", flush=True)
    print(f"dvc repro: {project.sh('dvc', 'repro'):.0f} s", flush=True)
    base = yaml.safe_load((project.root / "params.yaml").read_text())
    store = f"sqlite:///{project.root / 'mlflow.db'}"
    base["tracking"]["uri"] = store

    # The cells: (setting, overrides). The default: every condition; the study: the pure sets per attribute.
    cells = [("default", {"train.finetune": "none"})]  # zero-shot: one run, no seed to vary
    for seed in default_seeds:
        cells.append(("default", {"mix.synthetic_per_class": 0, "train.seed": seed}))
        for attribute, ratio in itertools.product(attributes, [0.0, 0.5, 1.0]):
            cells.append(("default", {"mix.attribute": attribute, "mix.infeasible_ratio": ratio, "train.seed": seed}))
    for (name, overrides), seed in itertools.product(STUDY.items(), study_seeds):
        for attribute, ratio in itertools.product(attributes, [0.0, 1.0]):
            cells.append((name, overrides | {"mix.attribute": attribute, "mix.infeasible_ratio": ratio,
                                             "train.seed": seed}))

    # World-CLIPs: the default's from the repro; one more per other pretrain setting, two at a time.
    checkpoints = {(): project.root / "models/world-clip"}
    others = {pretrain_key(o): o for _, o in cells if pretrain_key(o)}
    workers = [project.root / f".study/worker{i}" for i in range(2)]

    def folder_for(name: str) -> Path:
        folder = project.root / ".study" / name
        (folder / "data").mkdir(parents=True, exist_ok=True)
        for part in ("raw", "synthetic", "scores", "prompts.json"):
            link = folder / "data" / part
            if not link.exists():
                link.symlink_to(project.root / "data" / part)
        return folder

    def run(folder: Path, params: dict, *stages: str) -> float:
        (folder / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        started = time.perf_counter()
        for stage in stages:
            done = subprocess.run(["varireal", stage], cwd=folder, env=project.env, capture_output=True, text=True)
            if done.returncode:
                sys.exit(f"{stage} failed in {folder}:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
        return time.perf_counter() - started

    def pretrain(key: tuple) -> None:
        folder = folder_for("pretrain-" + "-".join(f"{k.split('.')[-1]}{v}" for k, v in key))
        params = merged(base, dict(key) | {"pretrain.threads": 1, "pretrain.workers": 1})
        seconds = run(folder, params, "pretrain")
        checkpoints[key] = folder / "models/world-clip"
        print(f"pretrain {dict(key)}: {seconds:.0f} s", flush=True)

    with ThreadPoolExecutor(2) as pool:
        list(pool.map(pretrain, others))

    free = list(workers)
    for worker in workers:
        folder_for(worker.name)

    def cell(item) -> None:
        name, overrides = item
        worker = free.pop()
        try:
            link = worker / "models/world-clip"
            link.parent.mkdir(exist_ok=True)
            if link.is_symlink():
                link.unlink()
            link.symlink_to(checkpoints[pretrain_key(overrides)])
            params = merged(base, overrides | {"train.threads": 1})
            seconds = run(worker, params, "mix", "train", "eval")
            top1 = yaml.safe_load((worker / "metrics/eval.json").read_text())["top1"]
            shown = ", ".join(f"{k}={v}" for k, v in overrides.items())
            print(f"{name}: {shown}: top1 {100 * top1:.1f} ({seconds:.0f} s)", flush=True)
        finally:
            free.append(worker)

    started = time.perf_counter()
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(cell, cells))
    print(f"{len(cells)} cells in {time.perf_counter() - started:.0f} s")
    print(f"report: PATH={Path(sys.executable).parent}:$PATH varireal report --params {project.root}/params.yaml "
          f"--out reports  # with tracking.uri {store}")
    (project.root / "params.yaml").write_text(yaml.safe_dump(base, sort_keys=False))


if __name__ == "__main__":
    os.environ.pop("DVC_ROOT", None)
    main()
