"""Pipeline stages: one module per `dvc.yaml` stage, each a thin `main(params_path)` over the library.

The paths below are the stages' declared deps and outs in dvc.yaml, relative to the project root.
"""

from pathlib import Path

RAW = Path("data/raw")
PROMPTS = Path("data/prompts.json")
SYNTHETIC = Path("data/synthetic")
SCORES = Path("data/scores")
MIXED = Path("data/mixed")
CHECKPOINT = Path("models/lora")
METRICS = Path("metrics")
