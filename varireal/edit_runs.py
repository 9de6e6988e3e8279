"""Running edits: one process's share, in this process or in CPU workers, and its shard of the manifest,
which the main process merges."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from functools import lru_cache, partial
from itertools import groupby
from pathlib import Path

import numpy as np

from varireal import io
from varireal.edit_plan import EditItem
from varireal.editing import Editor
from varireal.errors import StageError
from varireal.records import ManifestRow
from varireal.runtime import cpu_count, worker_pool


def cpu_workers(setting: int | str, local_processes: int) -> int:
    """edit.workers as a number: auto shares the CPUs this process may use among the processes of this
    machine (accelerate starts one per GPU), at least one each."""
    if setting != "auto":
        return int(setting)
    return max(1, cpu_count() // local_processes)


@lru_cache(maxsize=2)  # one source's items come one after another; a batch may span two sources
def read_source(path: str, mask_path: str) -> tuple[np.ndarray, np.ndarray]:
    return np.asarray(io.open_rgb(path)), io.read_mask(mask_path)


def edit_to_files(editor: Editor, jobs: Sequence[tuple[EditItem, Path]]) -> list[Path]:
    """Read each job's source, edit the jobs as one batch and write each image whole under its path."""
    edited = editor.edit_batch([(*read_source(item.source, item.mask), item) for item, _ in jobs])
    for (_, path), pixels in zip(jobs, edited):
        io.write_image_atomic(path, pixels)
    return [path for _, path in jobs]


def edit_to_files_in_workers(editor: Editor, jobs: list[tuple[EditItem, Path]], workers: int) -> Iterator[int]:
    """edit_to_files in `workers` processes, one task per source image, yielding how many images each
    finished task wrote. Workers get items, not pixels: decoding, editing and PNG encoding all run in
    parallel, and nothing big crosses a pipe. For CPU editors only (a GPU wants one process)."""
    tasks = [list(group) for _, group in groupby(jobs, key=lambda job: job[0].source)]
    with worker_pool(workers) as pool:
        # map submits every task now and cancels the unstarted ones if this generator is closed early.
        for written in pool.map(partial(edit_to_files, editor), tasks):
            yield len(written)


# Shards: each process's part of the manifest, merged by the main process -----------------------------


def shard_path(folder: Path, process: int, processes: int) -> Path:
    return folder / f"{process + 1:05d}-of-{processes:05d}.json"


def write_shard(folder: Path, process: int, processes: int, rows: list[ManifestRow], halvings: int) -> None:
    """One process's manifest rows (its whole share) and its out-of-memory halvings, written whole."""
    io.write_json(shard_path(folder, process, processes),
                  {"rows": [row.as_row() for row in rows], "out_of_memory_halvings": halvings})


def merge_shards(folder: Path, processes: int, items: list[EditItem]) -> tuple[list[ManifestRow], int]:
    """The manifest rows of every shard in plan order, and the halvings summed. Raises StageError unless
    the shards cover the plan exactly: each item once, none missing, none extra."""
    rows, halvings = [], 0
    for process in range(processes):
        path = shard_path(folder, process, processes)
        if not path.is_file():
            raise StageError(f"shard {path} is missing (process {process + 1} of {processes} did not finish); "
                             f"run edit again, with any number of processes, to redo its share")
        shard = io.read_json(path)
        rows += [ManifestRow.from_row(row) for row in shard["rows"]]
        halvings += shard["out_of_memory_halvings"]
    by_path = {row.path: row for row in rows}
    if len(by_path) != len(rows) or by_path.keys() != {item.path for item in items}:
        raise StageError(f"the shards in {folder} hold {len(rows)} rows ({len(by_path)} distinct) but the plan has "
                         f"{len(items)} items; run edit again to redo them")
    return [by_path[item.path] for item in items], halvings
