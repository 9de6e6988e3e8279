"""edit in several processes (accelerate launch) and with several CPU workers writes what one process
writes, byte for byte; a sharded run killed part way finishes in any number of processes.

The processes start as `accelerate launch --cpu --num_processes 2 ... -m varireal edit` (tests/launching.py)."""

import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from typer.testing import CliRunner

from launching import launch
from test_resume import files
from test_stages import run
from varireal import edit_plan, edit_runs, io, records
from varireal_pipeline.cli import app
from varireal.errors import StageError
from varireal.params import load

ACCELERATE = Path(sys.executable).with_name("accelerate")
CONTENT = Path("data/.synthetic.partial/content")
SHARE_LINE = re.compile(r"edit: process (\d+) of (\d+): (\d+) of (\d+) items")


SMALLER = {"dataset": {"shots": 1}}  # ten source images, 120 edits


def reference(project) -> tuple[dict[str, bytes], bytes]:
    """A one-process edit of a small project (one worker: the launched processes get one CPU each)."""
    project(**SMALLER, edit={"workers": 1})
    run("fetch", "prompt", "edit")
    made = files(Path("data/synthetic")), Path("metrics/edit.json").read_bytes()
    shutil.rmtree("data/synthetic")
    Path("metrics/edit.json").unlink()
    return made


def test_two_processes_write_what_one_process_writes(project):
    pool, metrics = reference(project)
    process = launch("edit", 2, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = process.communicate(timeout=120)[0]
    assert process.returncode == 0, output[-3000:]
    assert files(Path("data/synthetic")) == pool  # manifest and every image; no shard file among them
    assert Path("metrics/edit.json").read_bytes() == metrics
    assert not Path("data/.synthetic.partial").exists()
    assert "Traceback" not in output and "warn" not in output.lower()

    items = [row["path"] for row in io.read_csv("data/synthetic/manifest.csv")]
    lines = sorted(SHARE_LINE.findall(output))
    assert lines == [("1", "2", str(len(items) // 2), str(len(items))), ("2", "2", str(len(items) // 2), str(len(items)))]
    params = load("params.yaml")
    planned = edit_plan.plan(records.read_split("data/raw/train.csv"), records.read_prompts("data/prompts.json").values,
                           params.edit.attributes, params.edit.per_image, params.seed, Path("data/synthetic"))
    shares = [{item.path for item in edit_plan.share(planned, index, 2)} for index in range(2)]
    assert not shares[0] & shares[1] and sorted(shares[0] | shares[1]) == sorted(items)
    assert all(len(share) == len(items) // 2 for share in shares)


def test_two_process_run_killed_part_way_finishes_in_one_process(project):
    pool, metrics = reference(project)
    process = launch("edit", 2, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while process.poll() is None and not (CONTENT.is_dir() and any(CONTENT.rglob("*.png"))):
        time.sleep(0.002)
    # Every process at once, as on a node that dies: the launcher, mpirun and the edit processes.
    children = psutil.Process(process.pid).children(recursive=True)
    for member in [process, *children]:
        member.send_signal(signal.SIGKILL)
    process.wait()
    assert not psutil.wait_procs(children, timeout=10)[1]
    assert process.returncode == -signal.SIGKILL and not Path("data/synthetic").exists(), "edit finished first"

    result = CliRunner().invoke(app, ["edit"])
    assert result.exit_code == 0, result.output
    assert "edit: resuming" in result.output and "edit: process 1 of 1" in result.output
    assert files(Path("data/synthetic")) == pool
    assert Path("metrics/edit.json").read_bytes() == metrics


def test_cpu_workers_do_not_change_the_bytes(project):
    pool, metrics = reference(project)
    project(**SMALLER, edit={"workers": 2})
    run("edit")
    assert files(Path("data/synthetic")) == pool
    assert Path("metrics/edit.json").read_bytes() == metrics


def item(path: str, source: str) -> edit_plan.EditItem:
    return edit_plan.EditItem(path, source, "mask.png", 0, "pentastar", "color", "feasible", "red", 1)


def test_shares_deal_sources_round_robin_and_cover_the_plan():
    items = [item(f"{source}_{k}.png", f"{source}.png") for source in "abcde" for k in range(3)]
    for processes in (1, 2, 3, 7):
        shares = [edit_plan.share(items, index, processes) for index in range(processes)]
        assert sorted(i.path for share in shares for i in share) == sorted(i.path for i in items)
        assert max(map(len, shares)) - min(map(len, shares)) <= 3  # one source's items at most
        for share in shares:  # a source's items all in one share
            assert all(i in share for s in {i.source for i in share} for i in items if i.source == s)


def test_a_missing_or_stale_shard_stops_the_merge_with_one_line(tmp_path):
    items = [item(f"{source}.png", f"{source}.png") for source in "abc"]
    rows = [i.manifest_row("composite") for i in items]
    edit_runs.write_shard(tmp_path, 0, 2, [rows[0], rows[2]], 1)
    with pytest.raises(StageError) as missing:
        edit_runs.merge_shards(tmp_path, 2, items)
    assert "00002-of-00002.json is missing" in str(missing.value) and "\n" not in str(missing.value)

    edit_runs.write_shard(tmp_path, 1, 2, [rows[1], rows[2]], 2)  # an item twice
    with pytest.raises(StageError, match="hold 4 rows"):
        edit_runs.merge_shards(tmp_path, 2, items)
    edit_runs.write_shard(tmp_path, 1, 2, [rows[1]], 2)
    assert edit_runs.merge_shards(tmp_path, 2, items) == (rows, 3)  # plan order, halvings summed
