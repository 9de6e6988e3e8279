"""Tiny randomly initialised models, saved with save_pretrained like hub checkpoints, so tests load them
through the same from_pretrained path a user's model id takes. Built once per session (conftest.py)."""

import json
from pathlib import Path


def clip_tokenizer(folder: Path):
    """A CLIP BPE tokenizer over single bytes only: every byte-level character and its word-final
    form, the two special tokens, and a merges file with no merges."""
    from transformers import CLIPTokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    chars = list(bytes_to_unicode().values())
    tokens = chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps({token: i for i, token in enumerate(tokens)}))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer.from_pretrained(folder, model_max_length=77)


def clipseg(folder: Path) -> Path:
    """A randomly initialised CLIPSeg saved like a hub checkpoint; its decoder says 0.5 everywhere
    (output weights zero, bias zero), so dataset.mask.threshold alone decides whether it finds an object."""
    import torch
    from transformers import (CLIPSegConfig, CLIPSegForImageSegmentation, CLIPSegProcessor, ViTImageProcessor)

    tokenizer = clip_tokenizer(folder)
    vocab = tokenizer.get_vocab()
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


SIDE = 64  # the smallest working resolution the params allow
STEPS = 5  # strength 0.6 and harmonize 0.4 keep int(steps * strength) >= 1 denoising steps

# Shared by the UNets and the ControlNet, so their blocks line up.
BLOCKS = dict(block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=4, cross_attention_dim=16,
              attention_head_dim=4, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"))


def _ip_adapter(folder: Path, unet) -> None:
    """A tiny CLIP image encoder and IP-Adapter weights in h94/IP-Adapter's layout and key format."""
    import torch
    from safetensors.torch import save_file
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    CLIPVisionModelWithProjection(CLIPVisionConfig(
        hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, image_size=32,
        patch_size=8, projection_dim=8)).save_pretrained(folder / "models" / "image_encoder")
    tokens, cross = 4, unet.config.cross_attention_dim
    weights = {"image_proj.proj.weight": torch.randn(tokens * cross, 8) * 0.1,
               "image_proj.proj.bias": torch.zeros(tokens * cross),
               "image_proj.norm.weight": torch.ones(cross), "image_proj.norm.bias": torch.zeros(cross)}
    # One key pair per cross-attention layer, numbered 1, 3, 5, ... in attn_processors order.
    cross_attention = [name for name in unet.attn_processors if name.endswith("attn2.processor")]
    for number, name in zip(range(1, 2 * len(cross_attention), 2), cross_attention):
        hidden = unet.get_submodule(name.removesuffix(".processor")).to_k.out_features
        for projection in ("to_k_ip", "to_v_ip"):
            weights[f"ip_adapter.{number}.{projection}.weight"] = torch.randn(hidden, cross) * 0.1
    save_file(weights, folder / "models" / "ip-adapter_tiny.safetensors")


def diffusion(root: Path) -> dict[str, str]:
    """Folders of a tiny SD inpainting pipeline, a text-to-image pipeline, a Canny ControlNet and an IP-Adapter."""
    import torch
    from diffusers import (AutoencoderKL, ControlNetModel, DDIMScheduler, StableDiffusionInpaintPipeline,
                           StableDiffusionPipeline, UNet2DConditionModel)
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(0)
    tokenizer = clip_tokenizer(root / "tokenizer")
    up = dict(up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"))
    inpaint_unet = UNet2DConditionModel(in_channels=9, out_channels=4, sample_size=SIDE // 4, **BLOCKS, **up)
    scene_unet = UNet2DConditionModel(in_channels=4, out_channels=4, sample_size=SIDE // 4, **BLOCKS, **up)
    vae = AutoencoderKL(block_out_channels=(8, 8, 16), norm_num_groups=4, latent_channels=4, sample_size=SIDE,
                        down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id))
    scheduler = DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, clip_sample=False,
                              set_alpha_to_one=False, steps_offset=1)
    shared = dict(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, scheduler=scheduler, safety_checker=None,
                  feature_extractor=None, image_encoder=None, requires_safety_checker=False)
    StableDiffusionInpaintPipeline(unet=inpaint_unet, **shared).save_pretrained(root / "inpaint")
    StableDiffusionPipeline(unet=scene_unet, **shared).save_pretrained(root / "scene")
    # The VAE quarters each side, so the control image's embedding must too (one halving per step).
    controlnet = ControlNetModel(in_channels=4, conditioning_embedding_out_channels=(4, 8, 8), **BLOCKS)
    # A new ControlNet's output convolutions start at zero; a trained one's are not, and only then
    # does the control image reach the UNet.
    for conv in [*controlnet.controlnet_down_blocks, controlnet.controlnet_mid_block]:
        torch.nn.init.normal_(conv.weight, std=0.1)
    controlnet.save_pretrained(root / "controlnet")
    _ip_adapter(root / "ip-adapter", inpaint_unet)
    return {name: str(root / name) for name in ("inpaint", "scene", "controlnet", "ip-adapter")}


def vlm(folder: Path, answer: str = "yes") -> Path:
    """A random Llava (tiny CLIP vision tower + tiny Llama) with a word-level tokenizer and a chat
    template, saved like a hub model. Its output layer is zero, so every logit ties and greedy decoding
    picks token 0, which is `answer`: it answers every question the same way, through real generate."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import (CLIPImageProcessor, CLIPVisionConfig, LlamaConfig, LlavaConfig,
                              LlavaForConditionalGeneration, LlavaProcessor, PreTrainedTokenizerFast)
    import torch

    other = "no" if answer == "yes" else "yes"
    words = Tokenizer(models.WordLevel({answer: 0, other: 1, "[UNK]": 2, "[PAD]": 3, "<image>": 4, "[EOS]": 5},
                                       unk_token="[UNK]"))
    words.pre_tokenizer = pre_tokenizers.Whitespace()
    words.add_special_tokens(["<image>", "[PAD]", "[EOS]"])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=words, unk_token="[UNK]", pad_token="[PAD]", eos_token="[EOS]")
    template = ("{% for m in messages %}{% for c in m['content'] %}{% if c['type'] == 'image' %}<image> "
                "{% else %}{{ c['text'] }}{% endif %}{% endfor %}{% endfor %}{% if add_generation_prompt %} answer:{% endif %}")
    image_processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    # CLIP's vision tower outputs a CLS token besides the 16 patches; "default" drops it again.
    LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=8, num_additional_image_tokens=1,
                   vision_feature_select_strategy="default", chat_template=template).save_pretrained(folder)
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                                       image_size=32, patch_size=8, projection_dim=8),
        text_config=LlamaConfig(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=128,
                                pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id),
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"), vision_feature_select_strategy="default",
        vision_feature_layer=-1)
    torch.manual_seed(0)
    model = LlavaForConditionalGeneration(config)
    with torch.no_grad():
        model.get_output_embeddings().weight.zero_()
    model.save_pretrained(folder)
    return folder
