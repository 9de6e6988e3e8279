"""A tiny random LLaVA-NeXT, the architecture of the edit filter's default (llava-hf/llava-v1.6-mistral-7b-hf):
a CLIP vision tower, any-resolution tiling over image_grid_pinpoints with a newline embedding, a Mistral
language model and the [INST] chat format. Saved with save_pretrained and loaded by path through the
same auto classes a model id goes through (scoring.VqaJudge)."""

from pathlib import Path

SIDE = 32  # the vision tower's input; the pinpoints tile an image into up to 2 x 2 of these
PINPOINTS = [[SIDE, SIDE], [SIDE, 2 * SIDE], [2 * SIDE, SIDE], [2 * SIDE, 2 * SIDE]]


def llava_next(folder: Path, answer: str | None = "no") -> Path:
    """answer "yes" or "no": that word is token 0 and the output layer is zero, so every logit ties and
    greedy decoding picks it: the model answers every question with it, through real generate over real
    image features. None: random weights throughout, whatever they say."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import (CLIPVisionConfig, LlavaNextConfig, LlavaNextForConditionalGeneration,
                              LlavaNextImageProcessor, LlavaNextProcessor, MistralConfig, PreTrainedTokenizerFast)

    first, second = ("no", "yes") if answer == "no" else ("yes", "no")
    vocab = {first: 0, second: 1, "[UNK]": 2, "<s>": 3, "</s>": 4, "<image>": 5, "[INST]": 6, "[/INST]": 7}
    words = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    words.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    words.add_special_tokens(["<s>", "</s>", "<image>", "[INST]", "[/INST]"])
    # Mistral pads with its end token, as llava-hf's checkpoint does (the judge pads on the left).
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=words, unk_token="[UNK]", bos_token="<s>", eos_token="</s>",
                                        pad_token="</s>")
    # llava-v1.6-mistral's format: "[INST] <image>\nquestion [/INST]".
    template = ("{% for m in messages %}{% if m['role'] == 'user' %}[INST] {% for c in m['content'] %}"
                "{% if c['type'] == 'image' %}<image>\n{% endif %}{% endfor %}{% for c in m['content'] %}"
                "{% if c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %} [/INST]{% endif %}{% endfor %}")
    image_processor = LlavaNextImageProcessor(size={"shortest_edge": SIDE}, crop_size={"height": SIDE, "width": SIDE},
                                              image_grid_pinpoints=PINPOINTS)
    LlavaNextProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=8,
                       vision_feature_select_strategy="default", num_additional_image_tokens=1,
                       chat_template=template).save_pretrained(folder)
    config = LlavaNextConfig(
        vision_config=CLIPVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
                                       image_size=SIDE, patch_size=8, projection_dim=8),
        text_config=MistralConfig(vocab_size=len(vocab), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                  num_attention_heads=2, num_key_value_heads=1, head_dim=8, max_position_embeddings=512,
                                  sliding_window=None, bos_token_id=3, eos_token_id=4, pad_token_id=4),
        image_token_index=vocab["<image>"], image_grid_pinpoints=PINPOINTS, vision_feature_select_strategy="default",
        vision_feature_layer=-2, tie_word_embeddings=False)
    torch.manual_seed(0)
    model = LlavaNextForConditionalGeneration(config)
    if answer is not None:
        with torch.no_grad():
            model.get_output_embeddings().weight.zero_()
    model.save_pretrained(folder)
    return folder
