"""edit: the whole synthetic pool (every attribute, both feasibilities) and its manifest, in data/synthetic/.

Resumable: images collect in data/.synthetic.partial/ (beside the output, which DVC deletes before a
run), each written whole under its final name, so a run killed at any moment and started again edits
only what is missing. The finished folder becomes data/synthetic in one rename.

Sharded: `accelerate launch -m varireal edit` runs it in any number of processes (GPUs, nodes); a plain
`varireal edit` is the one-process case. The source images are dealt round-robin to the processes;
each edits the missing items of its share into the one work folder and writes a shard file (its
manifest rows), and the main process merges the shards into a manifest byte-identical to a
one-process run's. Several nodes need data/ on a file system they all share.

Filtered (edit.filter.model set): each process judges its edits as they come and edits the failed ones
again (varireal/vqa_filter.py); the verdicts collect in data/.synthetic.partial/verdicts/, one file per
item, so a resumed run neither judges nor edits again what was decided. An item is done when its image
is there and its verdict is final.
"""

import shutil
import sys
from dataclasses import replace
from datetime import timedelta
from functools import partial
from itertools import groupby
from pathlib import Path

from PIL import Image
from tqdm import tqdm

from varireal import backends, edit_plan, edit_runs, editing, io, records, resume, vqa_filter
from varireal.batching import HalvingBatches
from varireal.errors import StageError
from varireal.params import ATTRIBUTES, load
from varireal.runtime import local_processes, process_state

from varireal_pipeline.stages import METRICS, PROMPTS, RAW, SYNTHETIC

WORK = SYNTHETIC.with_name(f".{SYNTHETIC.name}.partial")
SHARDS = WORK / "shards"  # beside the work folder's content/, so never published into data/synthetic
VERDICTS = WORK / "verdicts"  # edit.filter: one JSON per item, the scores of its judged attempts

# The processes meet twice: after the main one has prepared the work folder (seconds) and before it
# merges the shards. The second wait lasts as long as the slowest share: days on a real dataset (cars:
# ~100 GPU-hours), and the whole of one share when a resumed run finds another already done. Torch's
# default timeout (10 min with NCCL, 30 with gloo) would kill such runs, so the wait may last a month;
# a process that fails still ends the run at once (its launcher stops the others).
BARRIER_TIMEOUT = timedelta(days=30)


def unreadable_masks(sources: list[records.SplitRow]) -> dict[str, str]:
    """Mask path -> why it cannot be read (missing, not an image, truncated), for every source's mask."""
    problems = {}
    for mask in dict.fromkeys(source.mask for source in sources):
        try:
            with Image.open(mask) as image:
                image.load()
        except (OSError, ValueError) as err:  # FileNotFoundError, UnidentifiedImageError, truncated data
            problems[mask] = "missing" if isinstance(err, FileNotFoundError) else f"unreadable ({err.__class__.__name__})"
    return problems


def batches(jobs: list[tuple[edit_plan.EditItem, Path]], size: int) -> list[list[tuple[edit_plan.EditItem, Path]]]:
    """(item, path) jobs of one attribute, up to size at a time. A stable sort by attribute keeps each
    source's items adjacent and lets a batch run on into the next source's, so batches stay full."""
    by_attribute = sorted(jobs, key=lambda job: ATTRIBUTES.index(job[0].attribute))
    out = []
    for _, group in groupby(by_attribute, key=lambda job: job[0].attribute):
        group = list(group)
        out += [group[start:start + size] for start in range(0, len(group), size)]
    return out


def plan_digest(items: list[edit_plan.EditItem], params) -> str:
    """What fixes the pool's bytes: the items, the editor's settings and the input files' contents.
    Not the batch size, device or workers (nor the number of processes): a run resumed on other
    hardware may change them."""
    # The filter's model and rules, not its batch size or device; none of it when it is off, so a run
    # without the filter keeps the digest it had before the filter existed.
    exclude = {"batch_size": True, "device": True, "workers": True, "launcher": True,
               "filter": True if params.edit.filter.model is None else {"batch_size", "device"}}
    settings = params.edit.model_dump(exclude=exclude)
    inputs = sorted({path for item in items for path in (item.source, item.mask)})
    return resume.digest([item.manifest_row("").as_row() for item in items], settings,
                         {path: resume.file_digest(path) for path in inputs})


def finished(image: Path, relative: Path, settings) -> bool:
    """Whether an item is done: its image is there and, with the filter, its verdict is final."""
    if not image.is_file():
        return False
    if not settings.model:
        return True
    scores = vqa_filter.read_verdict(vqa_filter.verdict_path(VERDICTS, relative))
    return vqa_filter.is_final(scores, settings.threshold, settings.cycles)


def kept(relative: Path) -> dict:
    """The filter's manifest columns of a finished item: its last attempt's number and score."""
    scores = vqa_filter.read_verdict(vqa_filter.verdict_path(VERDICTS, relative))
    return {"filter_cycle": len(scores), "filter_score": scores[-1]}


def load_judge(settings, edit_device):
    """The filter's model on its device: auto is the edit's own (each process's GPU under accelerate)."""
    from varireal.runtime import resolve_device
    from varireal.scoring import VqaJudge

    device = edit_device if settings.device == "auto" and edit_device is not None else resolve_device(settings.device)
    return VqaJudge(settings.model, device, settings.trust_remote_code, key="edit.filter.model",
                    hint="give a transformers vision-language model id or local folder, downloaded beforehand "
                         "for an offline run")


def main(params_path="params.yaml") -> None:
    params = load(params_path)
    # The composite editor alone needs no torch: light spares its import when no launcher started us.
    state = process_state(params.edit.device, BARRIER_TIMEOUT, light=params.edit.backend == "composite")
    sources = records.read_split(RAW / "train.csv")
    prompts = records.read_prompts(PROMPTS)
    values = prompts.values
    planned = edit_plan.plan(sources, values, params.edit.attributes, params.edit.per_image, params.seed, SYNTHETIC)
    if params.edit.backend == "composite" and (unknown := editing.unknown_to_composite(values)):
        raise StageError(f"edit.backend composite paints only the embedded world's procedural values, not "
                         f"{', '.join(unknown[:3])}{' ...' if len(unknown) > 3 else ''}; use edit.backend: diffusion")
    unreadable = unreadable_masks(sources)
    if state.is_main_process:  # one warning per mask, not one per process
        for mask, why in unreadable.items():
            print(f"edit: warning: mask {mask} is {why}; skipping its image's edits", file=sys.stderr, flush=True)
    items = [item for item in planned if item.mask not in unreadable]
    relative = {item: Path(item.path).relative_to(SYNTHETIC) for item in items}

    if state.is_main_process:  # the others wait: they must not write into a folder being cleaned
        resume.start(WORK, plan_digest(planned, params), relative.values())
        shutil.rmtree(SHARDS, ignore_errors=True)  # an earlier run's, perhaps with another number of processes
        done = sum(finished(resume.content_of(WORK) / path, path, params.edit.filter) for path in relative.values())
        if done:
            print(f"edit: resuming, {done} of {len(items)} items already done", flush=True)
    state.wait_for_everyone()

    staging = resume.content_of(WORK)
    share = edit_plan.share(items, state.process_index, state.num_processes)
    print(f"edit: process {state.process_index + 1} of {state.num_processes}: {len(share)} of {len(items)} items",
          flush=True)
    jobs = [(item, staging / relative[item]) for item in share
            if not finished(staging / relative[item], relative[item], params.edit.filter)]
    editor = backends.editor(params.edit, state.device, prompts.rgb)
    judge = load_judge(params.edit.filter, state.device) if params.edit.filter.model and jobs else None
    # The processes of this node (torchrun's or MPI's count) share its CPUs.
    workers = edit_runs.cpu_workers(params.edit.workers, local_processes())
    in_batches = HalvingBatches(params.edit.batch_size, "edit")
    with tqdm(total=len(share), initial=len(share) - len(jobs), desc=f"edit ({editor.name})", unit="img",
              disable=not state.is_main_process) as bar:
        if judge is not None:  # edit a batch, judge it, edit the failed ones again
            vqa_filter.edit_and_judge(
                [(item, path, vqa_filter.verdict_path(VERDICTS, relative[item])) for item, path in jobs],
                partial(in_batches, partial(edit_runs.edit_to_files, editor)), judge,
                partial(batches, size=params.edit.batch_size), params.edit.filter.threshold,
                params.edit.filter.cycles, params.edit.filter.batch_size, bar.update)
        elif editor.name == "composite" and workers > 1:
            for written in edit_runs.edit_to_files_in_workers(editor, jobs, workers):
                bar.update(written)
        else:  # the diffusion editor keeps its process's GPU busy with batches
            for batch in batches(jobs, params.edit.batch_size):
                in_batches(partial(edit_runs.edit_to_files, editor), batch)
                bar.update(len(batch))
    rows = [item.manifest_row(editor.name) for item in share]
    if params.edit.filter.model:
        rows = [replace(row, **kept(relative[item])) for item, row in zip(share, rows)]
    edit_runs.write_shard(SHARDS, state.process_index, state.num_processes, rows, in_batches.halvings)
    state.wait_for_everyone()

    if state.is_main_process:
        # Rows derived from the plan alone (and the filter's saved verdicts), so a resumed or sharded run's
        # manifest and metrics equal an uninterrupted one-process run's (halvings aside: they count this
        # run's out-of-memory errors).
        rows, halvings = edit_runs.merge_shards(SHARDS, state.num_processes, items)
        records.write_manifest(staging / "manifest.csv", rows)
        metrics = {"planned": len(planned), "written": len(items), "skipped_missing_mask": len(planned) - len(items),
                   "out_of_memory_halvings": halvings}
        if params.edit.filter.model:  # counts from the kept attempts, so a resumed run's equal an uninterrupted one's
            metrics["filter"] = vqa_filter.summary([row.filter_cycle for row in rows], [row.filter_score for row in rows],
                                                   params.edit.filter.threshold, params.edit.filter.cycles)
        io.write_json(METRICS / "edit.json", metrics)
        resume.publish(WORK, SYNTHETIC)
    state.destroy_process_group()
