"""edit survives SIGKILL at any moment, skips images whose mask is gone, and halves batches on CUDA out of
memory (as does eval). Kills hit a real `varireal edit` process: from outside while it edits, and from
inside (a wrapper that SIGKILLs the process when it reaches a given call) at moments too short to catch."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from conftest import REPO
from test_stages import run
from varireal import evaluation, io
from varireal_pipeline.cli import app
from varireal.editing import CompositeEditor
from varireal.errors import StageError
from varireal.records import SplitRow

WORK = Path("data/.synthetic.partial")
CONTENT = WORK / "content"
VARIREAL = Path(sys.executable).with_name("varireal")  # the console script a user runs

# Runs `varireal edit` with one function replaced by a wrapper that kills the process at its N-th call
# (counting only calls that meet the condition).
KILL_AT_CALL = """
import os, signal, sys
import {module} as where
from varireal_pipeline.cli import app
target, calls, wanted = where.{name}, [0], int(sys.argv[1])

def wrapper(*args, **kwargs):
    if {condition}:
        calls[0] += 1
        if calls[0] == wanted:
            os.kill(os.getpid(), signal.SIGKILL)
    return target(*args, **kwargs)

where.{name} = wrapper
app(["edit"])
"""


def files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def stats(root: Path) -> dict[str, tuple[int, int]]:
    return {p.relative_to(root).as_posix(): (p.stat().st_ino, p.stat().st_mtime_ns)
            for p in root.rglob("*.png") if not p.name.startswith(".")}


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO)}


def kill_when(images_done: int) -> None:
    """Start `varireal edit`, SIGKILL it as soon as at least images_done images are in the work folder.
    Only the edit process is killed, not its workers: they must end with it, not write on."""
    process = subprocess.Popen([VARIREAL, "edit"], env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)  # its own process group: its workers can be found
    try:
        while process.poll() is None and len(stats(CONTENT) if CONTENT.is_dir() else {}) < images_done:
            time.sleep(0.002)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert process.returncode == -signal.SIGKILL, "edit finished before the kill"
    deadline = time.monotonic() + 10
    while (left := survivors(process.pid)) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not left, f"{len(left)} workers outlived the killed edit"


def survivors(group: int) -> list[psutil.Process]:
    """Live (not zombie) processes of a process group."""
    alive = []
    for process in psutil.process_iter():
        try:
            if os.getpgid(process.pid) == group and process.status() != psutil.STATUS_ZOMBIE:
                alive.append(process)
        except (ProcessLookupError, psutil.NoSuchProcess):
            pass
    return alive


def kill_inside(module: str, name: str, call: int, condition: str = "True") -> None:
    script = KILL_AT_CALL.format(module=module, name=name, condition=condition)
    process = subprocess.run([sys.executable, "-c", script, str(call)], env=env(), capture_output=True, text=True)
    assert process.returncode == -signal.SIGKILL, process.stderr[-2000:]


def check_after_kill(reference: dict[str, bytes], seen: dict[str, tuple[int, int]]) -> None:
    """What a kill leaves: no output yet, every image under a final name whole and equal to the
    reference, nothing else but temp files (dot names); images kept from before untouched."""
    assert not Path("data/synthetic").exists()
    for relative, data in files(CONTENT).items():
        name = Path(relative).name
        if name.startswith("."):
            continue
        assert data == reference[relative], relative
        if name.endswith(".png"):
            with Image.open(CONTENT / relative) as image:
                image.load()
    now = stats(CONTENT)
    assert {path: now[path] for path in seen} == seen  # nothing finished was edited again
    seen.update(now)


def test_edit_killed_at_any_moment_resumes_to_the_same_bytes(project, tmp_path):
    project(edit={"workers": 1})
    run("fetch", "prompt", "edit")
    reference = files(Path("data/synthetic"))
    reference_metrics = Path("metrics/edit.json").read_bytes()
    images = sum(name.endswith(".png") for name in reference)
    shutil.rmtree("data/synthetic")
    seen: dict[str, tuple[int, int]] = {}

    project(edit={"workers": 2})  # not part of the plan: the runs below resume each other
    kill_when(1)  # from outside, soon after the start
    check_after_kill(reference, seen)
    assert 1 <= len(seen) < images

    # Mid-write: the fifth image of this run is written to its temp file, not yet renamed. In this
    # process (workers are separate processes, which the wrapper does not reach).
    project(edit={"workers": 1})
    kill_inside("os", "replace", 5, "str(args[1]).endswith('.png')")
    check_after_kill(reference, seen)
    assert any(p.name.startswith(".") for p in CONTENT.rglob("*"))

    project(edit={"workers": 2})
    kill_when(images // 2)  # from outside, about half way
    check_after_kill(reference, seen)
    assert images // 2 <= len(seen) < images

    kill_inside("varireal.io", "write_csv", 1)  # every image done, the manifest not yet written
    check_after_kill(reference, seen)
    assert len(seen) == images and not (CONTENT / "manifest.csv").exists()

    kill_inside("varireal.resume", "publish", 1)  # manifest and metrics written, not yet moved into place
    check_after_kill(reference, seen)
    assert (CONTENT / "manifest.csv").read_bytes() == reference["manifest.csv"]

    result = CliRunner().invoke(app, ["edit"])
    assert result.exit_code == 0, result.output
    assert f"edit: resuming, {images} of {images} items already done" in result.output
    assert files(Path("data/synthetic")) == reference  # no temp file, no leftover, same bytes
    assert stats(Path("data/synthetic")) == seen  # moved, not rewritten
    assert Path("metrics/edit.json").read_bytes() == reference_metrics
    assert not WORK.exists()


def test_a_changed_plan_starts_the_work_folder_afresh(project):
    run("fetch", "prompt")
    kill_when(1)
    stale = CONTENT / "images" / "leftover.png"
    stale.write_bytes(b"not an image of this plan")
    project(edit={"per_image": 1})  # another plan: its images must not mix with the old ones
    result = CliRunner().invoke(app, ["edit"])
    assert result.exit_code == 0, result.output
    assert "resuming" not in result.output
    manifest = io.read_csv("data/synthetic/manifest.csv")
    assert sorted(files(Path("data/synthetic"))) == sorted(
        ["manifest.csv"] + [Path(row["path"]).relative_to("data/synthetic").as_posix() for row in manifest])


def test_a_missing_mask_skips_its_items_with_one_warning(project):
    run("fetch", "prompt", "edit")
    complete = io.read_csv("data/synthetic/manifest.csv")
    sources = io.read_csv("data/raw/train.csv")
    missing, broken = sources[0], sources[3]
    Path(missing["mask"]).unlink()
    Path(broken["mask"]).write_bytes(b"\x89PNG truncated")

    result = CliRunner().invoke(app, ["edit"])
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.output.splitlines() if "warning" in line]
    assert len(warnings) == 2 and "Traceback" not in result.output
    assert missing["mask"] in warnings[0] and "missing" in warnings[0]
    assert broken["mask"] in warnings[1] and "unreadable" in warnings[1]
    manifest = io.read_csv("data/synthetic/manifest.csv")
    assert manifest == [row for row in complete if row["source"] not in (missing["path"], broken["path"])]
    per_source = len(complete) // len(sources)
    assert io.read_json("metrics/edit.json") == {"planned": len(complete), "written": len(complete) - 2 * per_source,
                                                 "skipped_missing_mask": 2 * per_source, "out_of_memory_halvings": 0}


def fails_above(limit: int, calls: list[int]):
    """An edit_batch that runs out of CUDA memory for batches larger than limit, recording batch sizes."""
    real = CompositeEditor.edit_batch

    def edit_batch(self, batch):
        calls.append(len(batch))
        if len(batch) > limit:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(self, batch)

    return edit_batch


def test_edit_out_of_memory_halves_the_batch_once_and_keeps_the_results(project, monkeypatch):
    project(edit={"workers": 1})  # batches in this process, as the diffusion editor's (the patch reaches them)
    run("fetch", "prompt", "edit")
    reference = files(Path("data/synthetic"))
    project(edit={"batch_size": 8, "workers": 1})
    calls: list[int] = []
    monkeypatch.setattr(CompositeEditor, "edit_batch", fails_above(2, calls))
    result = CliRunner().invoke(app, ["edit"])
    assert result.exit_code == 0, result.output
    assert files(Path("data/synthetic")) == reference
    assert result.output.count("out of memory") == 1
    assert "edit: CUDA out of memory at batch 8; continuing with 4" in result.output
    assert calls[:3] == [8, 4, 2] and set(calls[3:]) == {2}  # halved for good, not tried big again
    assert io.read_json("metrics/edit.json")["out_of_memory_halvings"] == 2


def test_edit_out_of_memory_at_batch_1_is_one_line_error(project, monkeypatch):
    project(edit={"workers": 1})
    run("fetch", "prompt")
    monkeypatch.setattr(CompositeEditor, "edit_batch", fails_above(0, []))
    result = CliRunner().invoke(app, ["edit"])
    assert result.exit_code == 1
    assert "error: edit: CUDA out of memory with a batch of 1" in result.output
    assert "Traceback" not in result.output


class FlatClassifier(torch.nn.Module):
    """Per-image logits from a linear layer; out of CUDA memory for batches larger than limit."""

    def __init__(self, limit: int):
        super().__init__()
        self.linear, self.limit, self.sizes = torch.nn.Linear(3 * 8 * 8, 5), limit, []
        torch.nn.init.normal_(self.linear.weight, generator=torch.Generator().manual_seed(0))

    def forward(self, images):
        self.sizes.append(len(images))
        if len(images) > self.limit:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")
        return self.linear(images.flatten(1))


def test_eval_out_of_memory_halves_the_batch_and_predicts_the_same(tmp_path, capsys):
    rng = np.random.default_rng(0)
    rows = []
    for i in range(11):
        path = tmp_path / f"{i}.png"
        Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(path)
        rows.append(SplitRow(str(path), None, 0, "class"))
    from torchvision.transforms.functional import to_tensor

    cpu = torch.device("cpu")
    expected = evaluation.predict(FlatClassifier(limit=100), rows, to_tensor, 8, cpu)
    classifier = FlatClassifier(limit=2)
    assert evaluation.predict(classifier, rows, to_tensor, 8, cpu) == expected
    assert len(set(expected)) > 1  # the comparison means something
    assert classifier.sizes[:3] == [8, 4, 2] and max(classifier.sizes[3:]) == 2
    assert capsys.readouterr().err.count("eval: CUDA out of memory at batch 8; continuing with 4") == 1
    with pytest.raises(StageError, match="batch of 1"):
        evaluation.predict(FlatClassifier(limit=0), rows, to_tensor, 8, cpu)
