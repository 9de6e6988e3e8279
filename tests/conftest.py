"""Shared fixtures: a shrunken copy of the project's params and a tiny open_clip model.

Tests never touch the network: the hub is switched off and every model is built here from a
small config with random weights.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from varireal.profiles import merged

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.pop("DVC_ROOT", None)

REPO = Path(__file__).resolve().parents[1]

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
    "train": {"steps": 3, "batch_size": 4, "threads": 1, "workers": 0},
    "eval": {"batch_size": 16},
}


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
    small = merged(SMALL, {"train": {"model": str(tiny_clip_config)}})

    def write(**overrides) -> Path:
        params = merged(merged(base, small), overrides)
        (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        return tmp_path / "params.yaml"

    write()
    return write


def _byte_level_vocab() -> dict[str, int]:
    """The smallest vocabulary a CLIP tokenizer works with: every byte (GPT-2's byte-to-unicode
    characters), alone and word-final, plus the start and end tokens."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    extra = [b for b in range(256) if b not in printable]
    chars = [chr(b) for b in printable] + [chr(256 + n) for n in range(len(extra))]
    tokens = chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"]
    return {token: index for index, token in enumerate(tokens)}


@pytest.fixture(scope="session")
def tiny_clipseg(tmp_path_factory) -> Path:
    """A randomly initialised CLIPSeg saved like a hub checkpoint; its decoder says 0.5 everywhere
    (output weights zero, bias zero), so dataset.mask.threshold alone decides whether it finds an object."""
    import torch
    from transformers import (CLIPSegConfig, CLIPSegForImageSegmentation, CLIPSegProcessor, CLIPTokenizer,
                              ViTImageProcessor)

    folder = tmp_path_factory.mktemp("tiny-clipseg")
    vocab = _byte_level_vocab()
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer.from_pretrained(folder)
    image_processor = ViTImageProcessor(size={"height": 32, "width": 32}, image_mean=[0.5] * 3, image_std=[0.5] * 3)
    special = {"bos_token_id": vocab["<|startoftext|>"], "eos_token_id": vocab["<|endoftext|>"],
               "pad_token_id": vocab["<|endoftext|>"]}
    config = CLIPSegConfig(
        text_config={"vocab_size": len(vocab), "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 2,
                     "num_attention_heads": 2, "max_position_embeddings": 32, **special},
        vision_config={"image_size": 32, "patch_size": 8, "hidden_size": 16, "intermediate_size": 32,
                       "num_hidden_layers": 2, "num_attention_heads": 2},
        projection_dim=16, extract_layers=[0, 1], reduce_dim=8, decoder_num_attention_heads=2,
        decoder_intermediate_size=16)
    torch.manual_seed(0)
    model = CLIPSegForImageSegmentation(config)
    with torch.no_grad():
        model.decoder.transposed_convolution.weight.zero_()
        model.decoder.transposed_convolution.bias.zero_()
    model.save_pretrained(folder)
    CLIPSegProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(folder)
    return folder
