"""Pipeline stages: one module per `dvc.yaml` stage, each a thin `main(params_path)` over the library.

The paths below are the stages' declared deps and outs in dvc.yaml, relative to the project root.
"""

import json
from pathlib import Path

RAW = Path("data/raw")
PROMPTS = Path("data/prompts.json")
SYNTHETIC = Path("data/synthetic")
SCORES = Path("data/scores")
MIXED = Path("data/mixed")
CHECKPOINT = Path("models/lora")
WORLD_CLIP = Path("models/world-clip")
WORLD_CLIP_WEIGHTS = WORLD_CLIP / "model.safetensors"
METRICS = Path("metrics")


def clip_weights(pretrained: str | None) -> str | None:
    """train.pretrained / score.pretrained as open_clip takes it: world is the pretrain stage's checkpoint."""
    from varireal.errors import StageError

    if pretrained != "world":
        return pretrained
    skipped = WORLD_CLIP / "skipped.json"
    if skipped.is_file():
        dataset = json.loads(skipped.read_text())["dataset"]
        raise StageError(f"pretrained world is the embedded world's CLIP; dataset {dataset} starts from its own: set "
                         "train.pretrained and score.pretrained to it, e.g. openai (its profile does)")
    if not WORLD_CLIP_WEIGHTS.is_file():
        raise StageError(f"pretrained world: {WORLD_CLIP_WEIGHTS} is missing; run `varireal pretrain` (the embedded "
                         "world only; a real dataset names its own CLIP, e.g. openai)")
    return str(WORLD_CLIP_WEIGHTS)
