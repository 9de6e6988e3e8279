"""Tiny random twins of the diffusion editor's default models, each with the real model's ARCHITECTURE and
saved with save_pretrained like a hub checkpoint, so tests load them through the from_pretrained path a
user's model id takes:

- inpaint: SDXL inpainting (diffusers/stable-diffusion-xl-1.0-inpainting-0.1): two text encoders
  (CLIPTextModel + CLIPTextModelWithProjection), a `text_time` UNet with 9 input channels;
- refiner: SDXL text-to-image (SG161222/RealVisXL_V4.0), the same with 4 input channels;
- controlnet: an SDXL ControlNet (`text_time`; diffusers/controlnet-canny-sdxl-1.0);
- ip-adapter: h94/IP-Adapter's layout: sdxl_models/ip-adapter-plus_tiny.safetensors (the plus Resampler's
  `image_proj` keys: latents, proj_in, proj_out, norm_out, layers...), a CLIPVisionModelWithProjection in
  models/image_encoder, and models/ip-adapter_tiny.safetensors (the base adapter's ImageProjection) for the
  band recipe;
- scene: SD 2.x text-to-image (stabilityai/stable-diffusion-2-1-base: epsilon prediction, linear-projection
  transformer, GELU text encoder); scene-v: the same with v-prediction (stabilityai/stable-diffusion-2-1);
- vae: an SDXL VAE without forced upcasting (madebyollin/sdxl-vae-fp16-fix).
Built once per session (conftest.py); each pipeline call takes well under a second on a CPU."""

from __future__ import annotations

from pathlib import Path

from tiny_models import clip_tokenizer

SIDE = 64  # the smallest working resolution the params allow
STEPS = 5  # strength 0.3 still leaves int(steps * strength) >= 1 denoising step

TEXT = 16  # hidden size of each text encoder; SDXL's cross-attention sees both, concatenated
POOLED = 16  # the second encoder's projection: the pooled prompt embedding
TIME = 8  # addition_time_embed_dim; SDXL's six size/crop numbers each get one such embedding
CROSS = 2 * TEXT

XL_BLOCKS = dict(block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=4, cross_attention_dim=CROSS,
                 attention_head_dim=(2, 4), use_linear_projection=True, transformer_layers_per_block=(1, 1),
                 down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), addition_embed_type="text_time",
                 addition_time_embed_dim=TIME, projection_class_embeddings_input_dim=6 * TIME + POOLED)
UP = dict(up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"))


def _vae(force_upcast: bool = True):
    from diffusers import AutoencoderKL

    return AutoencoderKL(block_out_channels=(8, 8, 16), norm_num_groups=4, latent_channels=4, sample_size=SIDE,
                         down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
                         scaling_factor=0.13025, force_upcast=force_upcast)


def _text_config(tokenizer, **extra):
    from transformers import CLIPTextConfig

    return CLIPTextConfig(vocab_size=len(tokenizer), hidden_size=TEXT, intermediate_size=32, num_hidden_layers=2,
                          num_attention_heads=2, bos_token_id=tokenizer.bos_token_id,
                          eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, **extra)


def _sdxl_parts(root: Path) -> dict:
    from diffusers import EulerDiscreteScheduler
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    tokenizer = clip_tokenizer(root / "tokenizer")
    return dict(
        vae=_vae(), tokenizer=tokenizer, tokenizer_2=tokenizer,
        text_encoder=CLIPTextModel(_text_config(tokenizer)),
        text_encoder_2=CLIPTextModelWithProjection(_text_config(tokenizer, projection_dim=POOLED)),
        scheduler=EulerDiscreteScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                                         steps_offset=1, timestep_spacing="leading"),
        image_encoder=None, feature_extractor=None)


def _ip_adapter(folder: Path, unet) -> None:
    """h94/IP-Adapter's layout: the ViT-H-style image encoder in models/image_encoder, the plus adapter
    (Resampler projection) in sdxl_models, the base adapter (linear projection) in models."""
    import torch
    from safetensors.torch import save_file
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    vision = 16
    CLIPVisionModelWithProjection(CLIPVisionConfig(
        hidden_size=vision, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2, image_size=32,
        patch_size=8, projection_dim=8)).save_pretrained(folder / "models" / "image_encoder")
    cross_attention = [name for name in unet.attn_processors if name.endswith("attn2.processor")]

    def attention(weights: dict) -> dict:
        # One key pair per cross-attention layer, numbered 1, 3, 5, ... in attn_processors order.
        for number, name in zip(range(1, 2 * len(cross_attention), 2), cross_attention):
            hidden = unet.get_submodule(name.removesuffix(".processor")).to_k.out_features
            for projection in ("to_k_ip", "to_v_ip"):
                weights[f"ip_adapter.{number}.{projection}.weight"] = torch.randn(hidden, CROSS) * 0.1
        return weights

    # Plus: a Resampler of `depth` blocks over the encoder's penultimate hidden states. diffusers counts
    # heads as to_q rows // 64, so the Resampler's width is 64 (one head).
    queries, width, depth = 4, 64, 4
    plus = {"image_proj.latents": torch.randn(1, queries, width) / width ** 0.5,
            "image_proj.proj_in.weight": torch.randn(width, vision) * 0.1, "image_proj.proj_in.bias": torch.zeros(width),
            "image_proj.proj_out.weight": torch.randn(CROSS, width) * 0.1,
            "image_proj.proj_out.bias": torch.zeros(CROSS),
            "image_proj.norm_out.weight": torch.ones(CROSS), "image_proj.norm_out.bias": torch.zeros(CROSS)}
    for layer in range(depth):
        block = f"image_proj.layers.{layer}"
        for norm in ("0.norm1", "0.norm2", "1.0"):
            plus[f"{block}.{norm}.weight"], plus[f"{block}.{norm}.bias"] = torch.ones(width), torch.zeros(width)
        plus[f"{block}.0.to_q.weight"] = torch.randn(width, width) * 0.1
        plus[f"{block}.0.to_kv.weight"] = torch.randn(2 * width, width) * 0.1
        plus[f"{block}.0.to_out.weight"] = torch.randn(width, width) * 0.1
        plus[f"{block}.1.1.weight"] = torch.randn(4 * width, width) * 0.1
        plus[f"{block}.1.3.weight"] = torch.randn(width, 4 * width) * 0.1
    (folder / "sdxl_models").mkdir(parents=True, exist_ok=True)
    save_file(attention(plus), folder / "sdxl_models" / "ip-adapter-plus_tiny.safetensors")

    tokens = 4
    base = {"image_proj.proj.weight": torch.randn(tokens * CROSS, 8) * 0.1,
            "image_proj.proj.bias": torch.zeros(tokens * CROSS),
            "image_proj.norm.weight": torch.ones(CROSS), "image_proj.norm.bias": torch.zeros(CROSS)}
    save_file(attention(base), folder / "models" / "ip-adapter_tiny.safetensors")


def _scene(folder: Path, prediction_type: str) -> None:
    """SD 2.x: a linear-projection transformer UNet under a GELU CLIP text encoder (OpenCLIP's activation)."""
    from diffusers import DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel

    tokenizer = clip_tokenizer(folder / "tokenizer")
    unet = UNet2DConditionModel(in_channels=4, out_channels=4, sample_size=SIDE // 4, block_out_channels=(8, 16),
                                layers_per_block=1, norm_num_groups=4, cross_attention_dim=TEXT,
                                attention_head_dim=(2, 4), use_linear_projection=True,
                                down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), **UP)
    vae = _vae()
    vae.register_to_config(scaling_factor=0.18215)
    StableDiffusionPipeline(
        unet=unet, vae=vae, tokenizer=tokenizer, text_encoder=CLIPTextModel(_text_config(tokenizer, hidden_act="gelu")),
        scheduler=DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, clip_sample=False,
                                set_alpha_to_one=False, steps_offset=1, prediction_type=prediction_type),
        safety_checker=None, feature_extractor=None, image_encoder=None, requires_safety_checker=False,
    ).save_pretrained(folder)


def build(root: Path) -> dict[str, str]:
    import torch
    from diffusers import (ControlNetModel, StableDiffusionXLInpaintPipeline, StableDiffusionXLPipeline,
                           UNet2DConditionModel)

    torch.manual_seed(0)
    inpaint_unet = UNet2DConditionModel(in_channels=9, out_channels=4, sample_size=SIDE // 4, **XL_BLOCKS, **UP)
    StableDiffusionXLInpaintPipeline(unet=inpaint_unet, requires_aesthetics_score=False,
                                     **_sdxl_parts(root / "inpaint")).save_pretrained(root / "inpaint")
    refiner_unet = UNet2DConditionModel(in_channels=4, out_channels=4, sample_size=SIDE // 4, **XL_BLOCKS, **UP)
    StableDiffusionXLPipeline(unet=refiner_unet, **_sdxl_parts(root / "refiner")).save_pretrained(root / "refiner")
    # The VAE quarters each side, so the control image's embedding must too (one halving per step).
    controlnet = ControlNetModel(in_channels=4, conditioning_embedding_out_channels=(4, 8, 8), **XL_BLOCKS)
    # A new ControlNet's output convolutions start at zero; a trained one's are not, and only then does the
    # control image reach the UNet.
    for conv in [*controlnet.controlnet_down_blocks, controlnet.controlnet_mid_block]:
        torch.nn.init.normal_(conv.weight, std=0.1)
    controlnet.save_pretrained(root / "controlnet")
    _ip_adapter(root / "ip-adapter", inpaint_unet)
    _scene(root / "scene", "epsilon")
    _scene(root / "scene-v", "v_prediction")
    _vae(force_upcast=False).save_pretrained(root / "vae")
    return {name: str(root / name) for name in ("inpaint", "refiner", "controlnet", "ip-adapter", "scene", "scene-v",
                                                "vae")}


def paper_settings(models: dict[str, str], **override) -> dict:
    """edit.diffusion for recipe paper on the twins: the official structure at tiny sizes and step counts."""
    settings = dict(
        recipe="paper", scene_model=models["scene"], controlnet=models["controlnet"], ip_adapter=models["ip-adapter"],
        ip_adapter_subfolder="sdxl_models", ip_adapter_weights="ip-adapter-plus_tiny.safetensors",
        ip_adapter_image_encoder="models/image_encoder", resolution=SIDE, scene_steps=2, texture_steps=2,
        background={"dilation": 5, "blur": 5, "steps": STEPS},
        color={"steps": STEPS}, texture={"steps": STEPS},
        refiner={"model": models["refiner"], "vae": models["vae"], "steps": 2})
    return {**settings, **override}


def band_settings(models: dict[str, str], **override) -> dict:
    """edit.diffusion for recipe band on the twins (the base IP-Adapter off unless a test turns it on)."""
    settings = dict(recipe="band", fit="stretch", scene_model=models["scene"], controlnet=models["controlnet"],
                    ip_adapter=None, ip_adapter_subfolder="models", ip_adapter_weights="ip-adapter_tiny.safetensors",
                    ip_adapter_image_encoder="models/image_encoder", resolution=SIDE, steps=STEPS, dilation=3)
    return {**settings, **override}
