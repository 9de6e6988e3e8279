"""The DVC pipeline end to end in a temporary copy of the project, as a user drives it."""

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from conftest import write_small_project
from launching import free_port

STAGES = ["fetch", "prompt", "edit", "pretrain", "score", "mix", "train", "eval"]


def ran(output: str) -> list[str]:
    return re.findall(r"Running stage '(\w+)'", output)


@pytest.fixture(scope="module")
def dvc_project(tmp_path_factory):
    root = tmp_path_factory.mktemp("project")
    write_small_project(root)

    env = {k: v for k, v in os.environ.items() if not k.startswith("DVC_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"  # the installed `varireal` and `dvc`
    env |= {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}

    def sh(*args: str, check=True, cwd=root) -> str:
        # Output goes through a file, not a pipe: `dvc queue start` leaves daemon workers that inherit it,
        # and a pipe would hold the call until they exit (forever, when a celery worker hangs on shutdown).
        with tempfile.TemporaryFile("w+") as output:
            result = subprocess.run(args, cwd=cwd, env=env, stdout=output, stderr=subprocess.STDOUT, timeout=600)
            output.seek(0)
            text = output.read()
        if check and result.returncode:
            raise AssertionError(f"{' '.join(args)} failed:\n{text}")
        return text

    sh("git", "init", "-q")
    sh("dvc", "init", "-q")
    sh("dvc", "config", "core.analytics", "false")
    sh("git", "add", "-A")
    sh("git", "commit", "-qm", "project")
    first = sh("dvc", "repro")
    sh("git", "add", "-A")
    sh("git", "commit", "-qm", "first run")
    return root, sh, first


def runs(root: Path) -> list:
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow.db'}")
    return mlflow.search_runs(experiment_names=["varireal"], output_format="list")


def test_repro_runs_every_stage_once_then_nothing(dvc_project):
    root, sh, first = dvc_project
    assert ran(first) == STAGES
    assert ran(sh("dvc", "repro")) == []
    assert sh("git", "status", "--porcelain") == ""  # outputs are ignored through DVC, nothing left over
    lock = yaml.safe_load((root / "dvc.lock").read_text())
    (run,) = runs(root)
    outs = {o["path"]: o["md5"] for stage in lock["stages"].values() for o in stage.get("outs", [])}
    assert run.data.tags["dvc.synthetic_md5"] == outs["data/synthetic"]
    assert run.data.tags["dvc.checkpoint_md5"] == outs["models/lora"]
    assert run.data.tags["git.commit"] == sh("git", "rev-list", "--max-parents=0", "HEAD").strip()


@pytest.mark.slow  # tens of seconds of 2-process launches or a second DVC run: `make test-slow`, which CI runs
def test_fresh_clone_reproduces_the_committed_lock_and_logs_its_run(dvc_project, tmp_path):
    root, sh, _ = dvc_project
    clone = tmp_path / "clone"
    sh("git", "clone", "-q", str(root), str(clone))
    assert ran(sh("dvc", "repro", cwd=clone)) == STAGES  # nothing cached yet: every stage, eval included
    assert sh("git", "status", "--porcelain", cwd=clone) == ""  # same lock hashes, same metrics
    (run,) = runs(clone)
    assert run.data.metrics["top1"] == json.loads((clone / "metrics/eval.json").read_text())["top1"]


def test_new_ratio_reruns_mix_train_eval_only_and_logs_a_mixed_run(dvc_project):
    root, sh, _ = dvc_project
    out = sh("dvc", "exp", "run", "-S", "mix.infeasible_ratio=0.5", "-n", "half")
    assert ran(out) == ["mix", "train", "eval"]
    half = [r for r in runs(root) if r.data.params["mix.infeasible_ratio"] == "0.5"]
    assert len(half) == 1
    assert half[0].data.tags["condition"] == "mixed" and half[0].data.tags["dvc.experiment"] == "half"
    assert "top1" in half[0].data.metrics
    assert "top1" in sh("dvc", "metrics", "show")
    shown = sh("dvc", "exp", "show", "--no-pager", "--md")
    assert "top1" in shown and "half" in shown


@pytest.mark.slow  # a few minutes on 2 cores: `make test-slow`, which CI runs
def test_queued_grid_runs_two_at_a_time_and_lands_in_the_root_store(dvc_project):
    """The README's sweep: a grid over ratio x replicate seed, queued and run two at a time."""
    root, sh, _ = dvc_project
    before = {r.info.run_id for r in runs(root)}
    sh("dvc", "exp", "run", "--queue", "-S", "mix.infeasible_ratio=0,1", "-S", "train.seed=1,2")
    sh("dvc", "exp", "run", "--queue", "-S", "mix.synthetic_per_class=0", "-n", "queued-real")
    sh("dvc", "queue", "start", "-j", "2")
    deadline = time.time() + 500
    while time.time() < deadline:
        status = sh("dvc", "queue", "status")
        if not re.search(r"\b(Queued|Running)\b", status):
            break
        time.sleep(3)
    new = [r for r in runs(root) if r.info.run_id not in before]
    names = sorted(r.data.tags["dvc.experiment"] for r in new)
    assert "Failed" not in status, status + "".join(sh("dvc", "queue", "logs", n, check=False) for n in names)

    grid = {(r.data.params["mix.infeasible_ratio"], r.data.params["train.seed"]): r for r in new
            if r.data.tags["dvc.experiment"] != "queued-real"}
    assert sorted(grid) == [("0.0", "1"), ("0.0", "2"), ("1.0", "1"), ("1.0", "2")]
    assert all(r.info.status == "FINISHED" and "top1" in r.data.metrics for r in new)
    assert {grid[k].data.tags["condition"] for k in grid} == {"feasible", "infeasible"}
    # Replicates and ratios share one synthetic pool: the queue never re-ran fetch, prompt or edit.
    lock = yaml.safe_load((root / "dvc.lock").read_text())
    pool = next(o["md5"] for o in lock["stages"]["edit"]["outs"] if o["path"] == "data/synthetic")
    assert {r.data.tags["dvc.synthetic_md5"] for r in new} == {pool}
    for run in new:
        log = sh("dvc", "queue", "logs", run.data.tags["dvc.experiment"])
        assert not {"fetch", "prompt", "edit"} & set(ran(log)), log

    (real,) = [r for r in new if r.data.tags["dvc.experiment"] == "queued-real"]
    assert real.data.tags["condition"] == "real-only"
    assert not list(root.glob(".dvc/tmp/exps/**/mlflow.db"))  # no stray store in the temporary copies
    artifact = Path(real.info.artifact_uri.removeprefix("file://"), "eval.json")
    assert artifact.is_file() and root in artifact.parents


@pytest.mark.slow  # a few minutes on 2 cores: `make test-slow`, which CI runs
def test_launcher_params_run_edit_and_train_in_two_processes_under_dvc(dvc_project):
    """README "Several GPUs": the launcher params put `accelerate launch` in front of edit and train.
    On the CPU accelerate starts the processes with mpirun (tests/launching.py)."""
    root, sh, _ = dvc_project
    (root / "hostfile").write_text("localhost:2\n")
    launcher = ("accelerate launch --cpu --num_processes 2 --num_machines 1 --mixed_precision no --dynamo_backend no "
                f"--mpirun_hostfile hostfile --main_process_port {free_port()} -m")
    pool = yaml.safe_load((root / "dvc.lock").read_text())["stages"]["edit"]["outs"][0]["md5"]

    out = sh("dvc", "exp", "run", "-S", f"edit.launcher='{launcher}'", "-S", f"train.launcher='{launcher}'")
    assert ran(out) == ["edit", "train", "eval"]  # score and mix see the same pool
    assert "edit: process 1 of 2" in out and "edit: process 2 of 2" in out
    lock = yaml.safe_load((root / "dvc.lock").read_text())["stages"]
    assert lock["edit"]["cmd"] == f"{launcher} varireal edit"
    assert lock["edit"]["outs"][0]["md5"] == pool  # byte for byte what one process wrote
    assert json.loads((root / "metrics/train.json").read_text())["processes"] == 2
