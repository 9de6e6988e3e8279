"""Shared fixtures: a shrunken copy of the project's params and a tiny open_clip model.

Tests never touch the network: the hub is switched off and every model is built here from a
small config with random weights.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import yaml

from varireal_pipeline.profiles import merged

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.pop("DVC_ROOT", None)

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))  # the scripts under test: tools/check_repro.py

TINY_CLIP = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}

# Everything small enough for the whole pipeline to run in seconds; same keys as params.yaml.
SMALL = {
    "dataset": {"shots": 2, "test_per_class": 3, "image_size": 32},
    "prompt": {"values_per_list": 2},
    "edit": {"per_image": 2},
    "mix": {"synthetic_per_class": 4},
    "pretrain": {"corpus_size": 256, "image_size": 32, "steps": 2, "batch_size": 32, "heldout": 20, "workers": 1,
                 "threads": 1},
    "train": {"steps": 3, "batch_size": 4, "threads": 1, "workers": 0},
    "eval": {"batch_size": 16},
}


def with_model(model: str) -> dict:
    """SMALL with every CLIP of the pipeline the given one: the world-CLIP is pretrained as it, and train and
    score start from that world-CLIP (the default's pretrained: world)."""
    return merged(SMALL, {section: {"model": model} for section in ("pretrain", "score", "train")})


def write_small_project(root: Path) -> None:
    """The files a DVC test project starts from: dvc.yaml, .gitignore, and the small params with a tiny CLIP."""
    import shutil

    shutil.copy(REPO / "dvc.yaml", root)
    (root / "tiny-clip.json").write_text(json.dumps(TINY_CLIP))
    params = merged(yaml.safe_load((REPO / "params.yaml").read_text()), with_model("tiny-clip.json"))
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (root / ".gitignore").write_text((REPO / ".gitignore").read_text())


@pytest.fixture
def tiny_clip_config(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("configs") / "tiny-clip.json"
    path.write_text(json.dumps(TINY_CLIP))
    return path


@pytest.fixture
def project(tmp_path, monkeypatch, tiny_clip_config):
    """A working folder with a small params.yaml; the test runs inside it. Returns a writer
    `project(**overrides)` that rewrites params.yaml and returns its path."""
    monkeypatch.chdir(tmp_path)
    base = yaml.safe_load((REPO / "params.yaml").read_text())
    small = with_model(str(tiny_clip_config))

    def write(**overrides) -> Path:
        params = merged(merged(base, small), overrides)
        (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        return tmp_path / "params.yaml"

    write()
    return write


@pytest.fixture(scope="session")
def tiny_clipseg(tmp_path_factory) -> Path:
    """A random CLIPSeg whose decoder says 0.5 everywhere: dataset.mask.threshold alone decides."""
    import tiny_models

    return tiny_models.clipseg(tmp_path_factory.mktemp("tiny-clipseg"))


@pytest.fixture(scope="session")
def tiny_grounding_dino(tmp_path_factory) -> Path:
    """A random Grounding DINO that scores every query 0.5 and puts it on tiny_detectors.BOX."""
    import tiny_detectors

    return tiny_detectors.grounding_dino(tmp_path_factory.mktemp("tiny-grounding-dino"))


@pytest.fixture(scope="session")
def tiny_sam2(tmp_path_factory) -> dict[bool, Path]:
    """Two random SAM 2s: {True: one whose mask is the whole image, False: one whose mask is empty}."""
    import tiny_detectors

    return {inside: tiny_detectors.sam2(tmp_path_factory.mktemp(f"tiny-sam2-{inside}"), inside)
            for inside in (True, False)}


@pytest.fixture(scope="session")
def tiny_background_remover(tmp_path_factory) -> Path:
    """A model folder that ships its own code (auto_map), like briaai/RMBG-1.4; its foreground: dark pixels."""
    import tiny_detectors

    return tiny_detectors.background_remover(tmp_path_factory.mktemp("tiny-remover"))


@pytest.fixture(scope="session")
def tiny_diffusion(tmp_path_factory) -> dict[str, str]:
    """Folders of tiny random twins of the diffusion editor's models (tests/tiny_sdxl.py)."""
    import tiny_sdxl

    return tiny_sdxl.build(tmp_path_factory.mktemp("tiny-diffusion"))
