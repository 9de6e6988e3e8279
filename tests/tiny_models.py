"""Tiny randomly initialised models, saved with save_pretrained like hub checkpoints, so tests load them
through the same from_pretrained path a user's model id takes. Built once per session (conftest.py).
The diffusion editor's twins (SDXL, SD 2.x, ControlNet, IP-Adapter plus): tests/tiny_sdxl.py."""

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
