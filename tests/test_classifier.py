"""The classifier's LoRA set-up: q and v of open_clip's fused attention, adapted by peft."""

import pytest
import torch
from torch import nn

from varireal import classifier as clf
from varireal.params import LoraParams


@pytest.mark.parametrize("batch_first", [True, False])
def test_split_attention_computes_what_multihead_attention_does(batch_first):
    torch.manual_seed(0)
    fused = nn.MultiheadAttention(16, 4, batch_first=batch_first)
    split = clf.SplitAttention(fused)
    x = torch.randn(3, 5, 16) if batch_first else torch.randn(5, 3, 16)
    causal = torch.full((5, 5), float("-inf")).triu(1)
    padding = torch.tensor([[False] * 5, [False] * 3 + [True] * 2, [False] * 4 + [True]])
    for kwargs in ({}, {"attn_mask": causal}, {"attn_mask": causal.isinf()}, {"key_padding_mask": padding}):
        expected = fused(x, x, x, need_weights=False, **kwargs)[0]
        assert torch.allclose(split(x, x, x, need_weights=False, **kwargs)[0], expected, atol=1e-5), kwargs


def test_lora_adapts_q_and_v_of_both_towers_and_starts_as_the_base_model(tiny_clip_config):
    names = ["cat", "dog", "owl"]
    base, *_ = clf.build(names, str(tiny_clip_config), None, seed=1, finetune="full", template="a photo of a {}.")
    lora, *_ = clf.build(names, str(tiny_clip_config), None, seed=1, finetune="lora", lora=LoraParams(),
                         template="a photo of a {}.")
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        # LoRA's B starts at zero: before training the adapted model is the base model.
        assert torch.allclose(base.eval()(images), lora.eval()(images), atol=1e-4)

    adapted = {name.rsplit(".lora_A", 1)[0] for name, _ in lora.named_parameters() if ".lora_A" in name}
    assert adapted and all(name.endswith(("q_proj", "v_proj")) for name in adapted)
    # One q and one v per block (TINY_CLIP: one block per tower) in the image and the text tower.
    towers = sorted(name.split("base_model.model.", 1)[1].split(".", 1)[0] for name in adapted)
    assert towers == ["transformer", "transformer", "visual", "visual"]
    trainable = {name for name, p in lora.named_parameters() if p.requires_grad}
    assert trainable == {name for name, _ in lora.named_parameters() if "lora_" in name} | {"head_offset"}
