"""Edit throughput, measured in one run, and what it projects for the paper's datasets.

1. The composite editor (the embedded default's `varireal edit`, a fresh copy of the project): images/s
   with one worker process and with every core (`edit.workers: auto`).
2. The diffusion editor, per attribute, in batches of `edit.batch_size`, against a plain diffusers loop
   that inpaints one image per pipeline call with the same pipeline, inputs and steps (the loop does
   only the pipeline call, none of the editor's preparation, so the ratio is if anything too low).
   `--models tiny` (default): the tests' tiny random SD inpainting + Canny ControlNet + scene pipeline
   on the CPU, which measures overheads, not a GPU's speed. `--models paper`: the paper profile's
   models (SDXL inpainting, ControlNet, IP-Adapter, SD 2.1) at its resolution and steps, on `--device`;
   they must be in the Hugging Face cache or downloadable.
3. A projection: edits of the paper's pets, aircraft and cars pools (classes x shots x 5 edits x 3
   attributes x 2 feasibilities) x the measured seconds per edit of each attribute, in hours.

Usage: .venv/bin/python bench/edit_throughput.py [--models tiny|paper] [--device cpu|cuda]
       [--items 16] [--batch-size 8] [--steps N]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from common import REPO, Project, machine

sys.path.insert(0, str(REPO / "tests"))  # tiny_sdxl: the random pipelines the tests use

# The paper's pools: classes, shots per class (profiles/*.yaml), edits per image and attribute and
# feasibility, two feasibilities.
DATASETS = {"pets": 37, "aircraft": 100, "cars": 196}
SHOTS, PER_IMAGE, FEASIBILITIES = 16, 5, 2
VALUES = {"background": "a sunny beach", "color": "red", "texture": "leopard spots"}


def composite() -> float:
    """Seconds per composite edit with every core."""
    project = Project()
    project.sh("dvc", "repro", "prompt")  # fetch and prompt: the edit stage's inputs
    rates = {}
    for workers in (1, "auto"):
        seconds = project.sh("varireal", "edit", "--params", project.params(edit={"workers": workers}))
        written = project.metrics("edit")["written"]
        rates[workers] = written / seconds
        print(f"composite, edit.workers={workers!s:4}: {written} images in {seconds:5.1f} s = "
              f"{rates[workers]:6.1f} images/s")
    print(f"composite, every core / one worker: {rates['auto'] / rates[1]:.2f}x")
    return 1 / rates["auto"]


def diffusion_params(models: str, device: str, batch_size: int, steps: int | None):
    from varireal import profiles
    from varireal.params import EditParams

    if models == "paper":
        edit = profiles.load("paper", REPO / "profiles")["edit"]
        params = EditParams(**{**edit, "device": device, "batch_size": batch_size})
    else:
        import tiny_sdxl

        folders = tiny_sdxl.build(Path(tempfile.mkdtemp(prefix="varireal-bench-")))
        params = EditParams(backend="diffusion", model=folders["inpaint"], device=device, batch_size=batch_size,
                            diffusion=tiny_sdxl.band_settings(folders, steps=10))
    if steps:
        params = params.model_copy(update={"diffusion": params.diffusion.model_copy(update={"steps": steps})})
    return params


def diffusion(params, count: int) -> dict[str, float]:
    """Seconds per edit of each attribute, batched; prints the ratio against a plain diffusers loop."""
    import numpy as np
    import torch
    from PIL import Image

    from varireal import colors
    from varireal.datasets import world
    from varireal.diffusion import NEGATIVE_PROMPT, DiffusionEditor, _resized, canny_edges, dilate, edit_prompt
    from varireal.edit_plan import EditItem

    if params.device == "cpu":
        torch.set_num_threads(len(os.sched_getaffinity(0)))
    rgb = {"pentastar": {VALUES["color"]: colors.world_colours(VALUES["color"])}}
    editor, settings, side = DiffusionEditor(params, rgb=rgb), params.diffusion, params.diffusion.resolution
    image, mask = world.render_instance(world.Instance("pentastar", "meadow", "blue", "dots"),
                                        np.random.default_rng(0), side)
    mask = mask > 0

    def timed(work) -> float:
        if editor.device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        work()
        if editor.device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    seconds = {}
    print(f"diffusion ({params.model}, {editor.device}, {side} px, {settings.steps} steps), "
          f"{count} images per attribute, batches of {params.batch_size}:")
    for attribute, value in VALUES.items():
        batch = [(image, mask, EditItem("out.png", "source.png", "mask.png", 0, "pentastar", attribute,
                                        "infeasible", value, seed)) for seed in range(count)]
        editor.edit_batch(batch[:2])  # load the pipelines and warm up outside the timings
        spent = timed(lambda: [editor.edit_batch(batch[first:first + params.batch_size])
                               for first in range(0, count, params.batch_size)])
        seconds[attribute] = spent / count
        print(f"  {attribute:10}: {count / spent:7.2f} images/s")

    # The baseline: color's one inpainting call per image, straight into diffusers.
    pipe = editor.inpainter
    extra = {}
    if settings.controlnet:
        extra = dict(control_image=canny_edges(image, settings.canny_low, settings.canny_high),
                     controlnet_conditioning_scale=settings.controlnet_scale)
    if settings.ip_adapter:
        extra["ip_adapter_image"] = Image.fromarray(image)
        vars(pipe).pop("prepare_ip_adapter_image_embeds", None)  # diffusers' own encoder, not the editor's
    region = Image.fromarray(dilate(mask, settings.dilation).astype(np.uint8) * 255)

    def plain_loop():
        for seed in range(count):
            item = EditItem("out.png", "source.png", "mask.png", 0, "pentastar", "color", "infeasible", "red", seed)
            pipe(prompt=edit_prompt(item), negative_prompt=NEGATIVE_PROMPT,
                image=Image.fromarray(_resized(image, side, side)), mask_image=region, height=side, width=side,
                strength=settings.strength, num_inference_steps=settings.steps, guidance_scale=settings.guidance_scale,
                generator=torch.Generator("cpu").manual_seed(seed), output_type="np", **extra)

    plain = count / timed(plain_loop)
    print(f"  plain diffusers loop, color, one image per call: {plain:7.2f} images/s")
    print(f"  batched editor / plain loop (color): {1 / seconds['color'] / plain:.2f}x")
    return seconds


def projection(composite_seconds: float, diffusion_seconds: dict[str, float], label: str) -> None:
    print(f"| dataset | edits | composite, this machine's CPU | diffusion, {label} |")
    print("|---|---|---|---|")
    for name, classes in DATASETS.items():
        per_attribute = classes * SHOTS * PER_IMAGE * FEASIBILITIES
        edits = per_attribute * len(VALUES)
        diffusion_hours = sum(per_attribute * s for s in diffusion_seconds.values()) / 3600
        print(f"| {name} ({classes} classes) | {edits:,} | {edits * composite_seconds / 3600:.2f} h | "
              f"{diffusion_hours:,.1f} h |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", choices=["tiny", "paper"], default="tiny")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--items", type=int, default=16, help="images per attribute")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=None, help="denoising steps; default: the models' setting")
    args = parser.parse_args()
    print(machine())
    per_composite_edit = composite()
    from varireal.errors import StageError

    try:  # a model that cannot be loaded (offline, no such folder): one line, as from the stages
        params = diffusion_params(args.models, args.device, args.batch_size, args.steps)
        per_diffusion_edit = diffusion(params, args.items)
    except StageError as err:
        sys.exit(f"error: {err}")
    projection(per_composite_edit, per_diffusion_edit, f"{args.models} models on {args.device}")
