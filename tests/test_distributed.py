"""Data-parallel training: `accelerate launch -m varireal train` on the CPU with 2 processes keeps the
results semantics of one process (same steps, same global batch, same loss), and writes once."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch.utils.data import BatchSampler, RandomSampler

from conftest import REPO
from launching import launch
from varireal import io
from varireal.training import RankSlice


@pytest.mark.parametrize("rows, batch_size", [(20, 4), (20, 7), (5, 5), (9, 3)])
def test_rank_slices_partition_the_global_batch(rows, batch_size):
    """Every process draws the same global batch and keeps its slice: together, the global batch."""
    def batches(rank=0, processes=1):
        generator = torch.Generator().manual_seed(0)
        sampler = RankSlice(RandomSampler(range(rows), generator=generator), batch_size, True, rank, processes)
        return [batch for _, batch in zip(range(6), (b for _ in range(3) for b in sampler))]

    generator = torch.Generator().manual_seed(0)
    reference = BatchSampler(RandomSampler(range(rows), generator=generator), batch_size, True)
    global_batches = [batch for _, batch in zip(range(6), (b for _ in range(3) for b in reference))]
    assert batches() == global_batches  # one process: the plain BatchSampler, same generator draws
    for processes in (2, 3):
        slices = [batches(rank, processes) for rank in range(processes)]
        for step, global_batch in enumerate(global_batches):
            parts = [slices[rank][step] for rank in range(processes)]
            assert sum(parts, []) == global_batch
            assert all(abs(len(part) - batch_size / processes) < 1 for part in parts)  # shares differ by one at most


# Loaded by every Python process of a launch (sitecustomize): logs each output write with the writer's rank.
WRITE_LOG = """
import os
from varireal import io

def _logged(name, write):
    def logged(path, *args, **kwargs):
        with open(os.environ["VARIREAL_WRITE_LOG"], "a") as log:
            log.write(f"{os.environ.get('RANK')} {name} {path}\\n")
        return write(path, *args, **kwargs)
    return logged

for _name in ("atomic_dir", "write_json", "write_csv"):
    setattr(io, _name, _logged(_name, getattr(io, _name)))
"""


def launch_train(processes: int, write_log: Path | None = None) -> subprocess.CompletedProcess:
    """`accelerate launch --cpu ... -m varireal train`; with write_log, every output write is logged there."""
    env = {}
    if write_log is not None:
        hooks = write_log.parent / "hooks"
        hooks.mkdir()
        (hooks / "sitecustomize.py").write_text(WRITE_LOG)
        env = {"PYTHONPATH": f"{hooks}{os.pathsep}{REPO}", "VARIREAL_WRITE_LOG": str(write_log)}
    process = launch("train", processes, extra_env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stdout, stderr = process.communicate(timeout=300)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


@pytest.fixture
def fresh_accelerate_state():
    """accelerate keeps one state per process: the other tests may train on a GPU in this process, this one
    trains on the CPU."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)
    yield
    AcceleratorState._reset_state(reset_partial_state=True)


def run_in_process(*stages: str) -> None:
    from typer.testing import CliRunner

    from varireal_pipeline.cli import app

    for stage in stages:
        result = CliRunner().invoke(app, [stage])
        assert result.exit_code == 0, result.output


def test_two_processes_train_like_one(project, tmp_path_factory, fresh_accelerate_state):
    # No augmentation and full fine-tuning (no dropout): the two runs do the same math in another order.
    project(train={"device": "cpu", "steps": 4, "batch_size": 5, "augment": False, "finetune": "full", "pretrained": None})
    run_in_process("fetch", "prompt", "edit", "mix", "train")
    single_loss = io.read_csv("metrics/train_loss.csv")
    single = load_file("models/lora/model.safetensors") | load_file("models/lora/head.safetensors")
    assert io.read_json("metrics/train.json")["processes"] == 1
    shutil.rmtree("models")
    Path("metrics/train.json").unlink()
    Path("metrics/train_loss.csv").unlink()

    write_log = tmp_path_factory.mktemp("launch") / "writes.log"
    parallel = launch_train(2, write_log)
    assert parallel.returncode == 0, parallel.stderr[-3000:]
    loss = io.read_csv("metrics/train_loss.csv")
    assert [(row["step"], row["lr"]) for row in loss] == [(row["step"], row["lr"]) for row in single_loss]
    for row, single_row in zip(loss, single_loss):
        assert float(row["loss"]) == pytest.approx(float(single_row["loss"]), abs=1e-5)
    weights = load_file("models/lora/model.safetensors") | load_file("models/lora/head.safetensors")
    assert weights.keys() == single.keys()
    for name, value in weights.items():
        torch.testing.assert_close(comparable(name, value), comparable(name, single[name]), rtol=1e-4, atol=1e-5,
                                   msg=name)

    # Written once, by the main process.
    assert sorted(write_log.read_text().splitlines()) == ["0 atomic_dir models/lora",
                                                          "0 write_csv metrics/train_loss.csv",
                                                          "0 write_json metrics/train.json"]
    assert io.read_json("metrics/train.json")["processes"] == 2
    assert sorted(p.name for p in Path("models/lora").iterdir()) == ["classifier.json", "head.safetensors",
                                                                     "model.safetensors"]


@pytest.mark.slow  # tens of seconds of 2-process launches or a second DVC run: `make test-slow`, which CI runs
def test_two_processes_pick_the_same_validation_checkpoint_as_one(project, fresh_accelerate_state):
    # best-val: every process judges the whole validation split with the same weights, so all choose alike.
    project(train={"device": "cpu", "steps": 4, "batch_size": 5, "augment": "none", "finetune": "full", "pretrained": None,
                   "val_fraction": 0.5, "select": "best-val", "val_every": 1})
    run_in_process("fetch", "prompt", "edit", "mix", "train")
    single = io.read_json("metrics/train.json")
    single_val = [row["val_top1"] for row in io.read_csv("metrics/train_loss.csv")]
    shutil.rmtree("models")
    parallel = launch_train(2)
    assert parallel.returncode == 0, parallel.stderr[-3000:]
    summary = io.read_json("metrics/train.json")
    assert [row["val_top1"] for row in io.read_csv("metrics/train_loss.csv")] == single_val
    assert {k: v for k, v in summary.items() if "loss" not in k and k != "processes"} == \
        {k: v for k, v in single.items() if "loss" not in k and k != "processes"}


@pytest.mark.slow  # tens of seconds of 2-process launches or a second DVC run: `make test-slow`, which CI runs
def test_the_paper_augmentation_trains_in_two_processes(project, fresh_accelerate_state):
    project(train={"device": "cpu", "steps": 2, "batch_size": 4, "augment": "paper", "workers": 1, "pretrained": None})
    run_in_process("fetch", "prompt", "edit", "mix")
    parallel = launch_train(2)
    assert parallel.returncode == 0, parallel.stderr[-3000:]
    assert io.read_json("metrics/train.json")["processes"] == 2


def comparable(name: str, weight: torch.Tensor) -> torch.Tensor:
    """The weight without the key part of attention's in_proj_bias: that bias adds the same to every logit
    of a query, so its exact gradient is zero, and AdamW turns the rounding noise into steps of size lr
    that any other summation order changes."""
    if not name.endswith("attn.in_proj_bias"):
        return weight
    width = len(weight) // 3
    return torch.cat([weight[:width], weight[2 * width:]])


@pytest.mark.slow  # tens of seconds of 2-process launches or a second DVC run: `make test-slow`, which CI runs
def test_a_global_batch_smaller_than_the_processes_is_refused(project):
    project(train={"device": "cpu", "steps": 2, "batch_size": 1, "pretrained": None})
    run_in_process("fetch", "prompt", "edit", "mix")
    result = launch_train(2)
    assert result.returncode != 0, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: train:")]
    assert errors == ["error: train: the global batch of 1 real images cannot be split between 2 processes: "
                      "launch at most 1, or raise train.batch_size (and the real images in the mix)"]
    assert not Path("models/lora").exists()
