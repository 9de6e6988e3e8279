"""A tiny random Grounding DINO and a tiny random SAM 2, saved with save_pretrained and loaded by path like
the hub's IDEA-Research/grounding-dino-base and facebook/sam2.1-hiera-large (same model classes: a Swin
backbone and a BERT text encoder feeding the two-stage deformable encoder-decoder; a Hiera image encoder,
prompt encoder and mask decoder).

Random weights give arbitrary answers, so both are rigged to one a test can predict:
- the detector scores every query 0.5 (its decoder's last layer norm outputs zeros, so every text token's
  logit is 0) and puts it on BOX, a fixed box relative to the image (the backbone's one feature map is a
  single cell, so there is one proposal, and the box heads' last layers add a constant to it);
- the segmenter's mask logits are one constant everywhere, positive (inside=True: the whole image) or
  negative (nothing).
"""

from pathlib import Path

# The detector's box as fractions of the image: x0, y0, x1, y1.
BOX = (0.25, 0.2, 0.75, 0.8)
SIDE = 32  # both models see the image resized to SIDE x SIDE


def _bert_tokenizer(folder: Path):
    from transformers import BertTokenizer

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", "a", "pet", "aircraft", "car", "flower"]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(words) + "\n")
    return BertTokenizer(str(folder / "vocab.txt"))


def grounding_dino(folder: Path) -> Path:
    import torch
    from transformers import (BertConfig, GroundingDinoConfig, GroundingDinoForObjectDetection,
                              GroundingDinoImageProcessor, GroundingDinoProcessor, SwinConfig)

    tokenizer = _bert_tokenizer(folder)
    backbone = SwinConfig(image_size=SIDE, patch_size=4, embed_dim=8, depths=[1, 1, 1, 1], num_heads=[1, 1, 1, 1],
                          window_size=2, out_features=["stage4"])
    text = BertConfig(vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                      intermediate_size=32, max_position_embeddings=64)
    config = GroundingDinoConfig(backbone_config=backbone, text_config=text, num_queries=1, num_feature_levels=1,
                                 d_model=64, encoder_layers=1, decoder_layers=2, encoder_ffn_dim=32,
                                 decoder_ffn_dim=32, encoder_attention_heads=2, decoder_attention_heads=2,
                                 encoder_n_points=1, decoder_n_points=1, max_text_len=32)
    torch.manual_seed(0)
    model = GroundingDinoForObjectDetection(config).eval()
    x0, y0, x1, y1 = BOX
    target = torch.tensor([(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0])
    anchor = torch.tensor([0.5, 0.5, 0.05, 0.05])  # the proposal of a single-cell feature map
    with torch.no_grad():
        model.model.decoder.layer_norm.weight.zero_()
        model.model.decoder.layer_norm.bias.zero_()
        for head in [*model.bbox_embed, *model.model.decoder.bbox_embed]:
            head.layers[-1].weight.zero_()
            head.layers[-1].bias.zero_()
        last = model.model.encoder_output_bbox_embed.layers[-1]
        last.weight.zero_()
        last.bias.copy_(torch.logit(target) - torch.logit(anchor))
    model.save_pretrained(folder)
    image_processor = GroundingDinoImageProcessor(size={"height": SIDE, "width": SIDE}, do_pad=False)
    GroundingDinoProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(folder)
    return folder


def sam2(folder: Path, inside: bool = True) -> Path:
    import torch
    from transformers import Sam2Config, Sam2ImageProcessor, Sam2Model, Sam2Processor

    side = 2 * SIDE  # Hiera's patch stride 4 and three 2x poolings: feature maps of 16, 8, 4 (and 2) cells
    hiera = {"model_type": "sam2_hiera_det_model", "hidden_size": 8, "image_size": [side, side],
             "embed_dim_per_stage": [8, 16, 32, 64],
             "num_attention_heads_per_stage": [1, 1, 1, 1], "blocks_per_stage": [1, 1, 2, 1],
             "window_size_per_stage": [2, 2, 2, 2], "global_attention_blocks": [3],
             "window_positional_embedding_background_size": [2, 2]}
    config = Sam2Config(
        vision_config={"backbone_config": hiera, "backbone_channel_list": [64, 32, 16, 8],
                       "backbone_feature_sizes": [[16, 16], [8, 8], [4, 4]], "fpn_hidden_size": 32},
        prompt_encoder_config={"hidden_size": 32, "image_size": side, "patch_size": 16},
        mask_decoder_config={"hidden_size": 32, "mlp_dim": 64, "num_attention_heads": 2, "iou_head_hidden_dim": 32})
    torch.manual_seed(0)
    model = Sam2Model(config).eval()
    decoder = model.mask_decoder
    with torch.no_grad():  # logits = hypernetwork output . upscaled embedding: (+-1 each) . GELU(1) everywhere
        decoder.conv_s0.weight.zero_()
        decoder.conv_s0.bias.zero_()
        decoder.upscale_conv2.weight.zero_()
        decoder.upscale_conv2.bias.fill_(1.0)
        for mlp in decoder.output_hypernetworks_mlps:
            mlp.proj_out.weight.zero_()
            mlp.proj_out.bias.fill_(1.0 if inside else -1.0)
    model.save_pretrained(folder)
    image_processor = Sam2ImageProcessor(size={"height": side, "width": side}, mask_size={"height": 16, "width": 16})
    Sam2Processor(image_processor=image_processor).save_pretrained(folder)
    return folder


REMOVER_CODE = '''"""A tiny background remover shipped as model code (auto_map), as briaai/RMBG-1.4 ships its
own: one 1x1 convolution whose output is high on dark pixels, returned in RMBG's nesting (outputs[0][0])."""

import torch
from transformers import PreTrainedConfig, PreTrainedModel


class TinyRemoverConfig(PreTrainedConfig):
    model_type = "tiny_remover"


class TinyRemover(PreTrainedModel):
    config_class = TinyRemoverConfig

    def __init__(self, config):
        super().__init__(config)
        self.conv = torch.nn.Conv2d(3, 1, 1)
        self.post_init()

    def forward(self, pixel_values):
        return [[self.conv(pixel_values)]]
'''


def background_remover(folder: Path) -> Path:
    """A remote-code model folder like briaai/RMBG-1.4: it loads only with trust_remote_code, and calls the
    dark pixels (the dataset fixtures' objects) foreground."""
    import importlib.util

    import torch

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tiny_remover.py").write_text(REMOVER_CODE)
    spec = importlib.util.spec_from_file_location("tiny_remover", folder / "tiny_remover.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.TinyRemoverConfig()
    config.auto_map = {"AutoConfig": "tiny_remover.TinyRemoverConfig",
                       "AutoModelForImageSegmentation": "tiny_remover.TinyRemover"}
    model = module.TinyRemover(config)
    with torch.no_grad():
        model.conv.weight.fill_(-1.0)
        model.conv.bias.zero_()
    model.save_pretrained(folder)
    return folder
