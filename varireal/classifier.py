"""A CLIP classifier: open_clip towers, optionally LoRA-adapted with peft, and a text-initialised head.

logits = scale * normalize(image_features) @ (normalize(text_features(class prompts)) + head_offset).T

head_offset starts at zero, so before training the classifier is CLIP's zero-shot classifier;
when the text tower is adapted (LoRA or full fine-tuning) gradients reach it through the prompts.
With head "text" (the official head: class text embeddings only) head_offset stays zero, untrained.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

CONFIG_DIR = Path(__file__).parent / "model_configs"
TOWER_PREFIXES = {"image": "visual", "text": "transformer"}


def _register(model: str) -> str:
    """Make open_clip know our configs; a path to a local JSON config works as a model name too."""
    import open_clip

    open_clip.add_model_config(CONFIG_DIR)
    if model.endswith(".json"):
        open_clip.add_model_config(model)
        return Path(model).stem
    return model


def create_clip(model: str, pretrained: str | None, seed: int):
    """(clip, preprocess_train, preprocess_eval, tokenizer). seed fixes random initial weights."""
    import open_clip

    name = _register(model)
    torch.manual_seed(seed)
    # weights_only: a .pt/.bin checkpoint is unpickled as tensors only (safetensors files are read as such)
    clip, preprocess_train, preprocess_eval = open_clip.create_model_and_transforms(name, pretrained=pretrained,
                                                                                   weights_only=True)
    return clip, preprocess_train, preprocess_eval, open_clip.get_tokenizer(name)


class SplitAttention(nn.Module):
    """nn.MultiheadAttention with q, k and v as separate Linear layers, so that peft can adapt q and v only.

    open_clip (like OpenAI's CLIP) fuses q, k and v into one in_proj matrix; LoRA on "q and v of both
    towers" (the paper's recipe) needs them apart. Same weights, same outputs, same call signature as
    the module it replaces; peft then writes the LoRA layers.
    """

    def __init__(self, attention: nn.MultiheadAttention):
        super().__init__()
        if not attention._qkv_same_embed_dim:
            raise ValueError("only self-attention-shaped MultiheadAttention (kdim == vdim == embed_dim) can be split")
        dim, has_bias = attention.embed_dim, attention.in_proj_bias is not None
        self.num_heads, self.batch_first = attention.num_heads, attention.batch_first
        self.q_proj, self.k_proj, self.v_proj = (nn.Linear(dim, dim, bias=has_bias) for _ in range(3))
        with torch.no_grad():
            for index, projection in enumerate((self.q_proj, self.k_proj, self.v_proj)):
                projection.weight.copy_(attention.in_proj_weight[index * dim:(index + 1) * dim])
                if has_bias:
                    projection.bias.copy_(attention.in_proj_bias[index * dim:(index + 1) * dim])
        self.out_proj = attention.out_proj

    def forward(self, query, key, value, need_weights=False, attn_mask=None, key_padding_mask=None):
        if not self.batch_first:
            query, key, value = (x.transpose(0, 1) for x in (query, key, value))
        batch = query.shape[0]

        def heads(x: torch.Tensor) -> torch.Tensor:  # (B, L, D) -> (B, H, L, D/H)
            return x.unflatten(-1, (self.num_heads, -1)).transpose(1, 2)

        mask = None
        if attn_mask is not None:
            # nn.MultiheadAttention's boolean masks mark forbidden positions; SDPA wants an additive mask.
            mask = attn_mask if attn_mask.dtype != torch.bool else \
                torch.zeros_like(attn_mask, dtype=query.dtype).masked_fill(attn_mask, float("-inf"))
        if key_padding_mask is not None:
            padding = key_padding_mask.view(batch, 1, 1, -1)
            padding = torch.zeros_like(padding, dtype=query.dtype).masked_fill(padding, float("-inf")) \
                if padding.dtype == torch.bool else padding.to(query.dtype)
            mask = padding if mask is None else mask + padding
        out = F.scaled_dot_product_attention(heads(self.q_proj(query)), heads(self.k_proj(key)),
                                             heads(self.v_proj(value)), attn_mask=mask)
        out = self.out_proj(out.transpose(1, 2).flatten(-2))
        return (out if self.batch_first else out.transpose(0, 1)), None


def split_attention(model: nn.Module) -> nn.Module:
    """Replace every nn.MultiheadAttention in model by an equivalent SplitAttention, in place."""
    for module in list(model.modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, nn.MultiheadAttention):
                setattr(module, child_name, SplitAttention(child))
    return model


def lora_config(rank: int, alpha: float, dropout: float, target_modules: list[str], towers: list[str]):
    from peft import LoraConfig

    prefixes = "|".join(TOWER_PREFIXES[t] for t in towers)
    modules = "|".join(target_modules)
    return LoraConfig(
        r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules=rf"^(?:{prefixes})\..*\b(?:{modules})$"
    )


HEADS = ("text", "text+offset")


class Classifier(nn.Module):
    def __init__(self, clip: nn.Module, tokens: torch.Tensor, head: str = "text+offset"):
        super().__init__()
        if head not in HEADS:
            raise ValueError(f"unknown head {head!r}; known: {', '.join(HEADS)}")
        self.clip = clip
        self.register_buffer("tokens", tokens, persistent=False)
        with torch.no_grad():
            embed_dim = self.base.encode_text(tokens[:1]).shape[-1]
        # Saved and loaded with either head (zeros for "text"), so a checkpoint's layout does not depend on it.
        self.head_offset = nn.Parameter(torch.zeros(len(tokens), embed_dim), requires_grad=head == "text+offset")
        self.scale = float(clip.logit_scale.exp().detach())
        self._frozen_text: torch.Tensor | None = None

    @property
    def base(self) -> nn.Module:
        """The open_clip model under any peft wrapper."""
        return self.clip.get_base_model() if hasattr(self.clip, "get_base_model") else self.clip

    def text_tower_trains(self) -> bool:
        text = getattr(self.base, "text", None) or self.base.transformer  # CustomTextCLIP | CLIP
        return any(p.requires_grad for p in text.parameters())

    def class_weights(self) -> torch.Tensor:
        if self.text_tower_trains():
            return F.normalize(self.base.encode_text(self.tokens), dim=-1) + self.head_offset
        if self._frozen_text is None:  # a frozen text tower gives the same class embeddings every time
            with torch.no_grad():
                self._frozen_text = F.normalize(self.base.encode_text(self.tokens), dim=-1)
        return self._frozen_text + self.head_offset

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = F.normalize(self.base.encode_image(images), dim=-1)
        return self.scale * features @ self.class_weights().T


def class_texts(class_names: list[str], template: str) -> list[str]:
    """The head's text per class: the dataset's template (its registry entry), e.g. "a photo of a {}."."""
    return [template.format(name.replace("_", " ")) for name in class_names]


def build(class_names: list[str], model: str, pretrained: str | None, seed: int, finetune: str, lora=None, *,
          template: str, head: str = "text+offset"):
    """(Classifier, preprocess_train, preprocess_eval) with exactly the trainable parameters finetune asks for."""
    clip, preprocess_train, preprocess_eval, tokenizer = create_clip(model, pretrained, seed)
    tokens = tokenizer(class_texts(class_names, template))
    if finetune == "lora":
        from peft import get_peft_model

        clip = get_peft_model(split_attention(clip), lora_config(lora.rank, lora.alpha, lora.dropout, lora.target_modules, lora.towers))
    elif hasattr(clip, "token_embedding"):
        # The class prompts use a few dozen of its ~49k rows, but AdamW would rewrite all of them
        # every step: on a small model that is most of the optimizer's time.
        clip.token_embedding.requires_grad_(False)
    return Classifier(clip, tokens, head), preprocess_train, preprocess_eval


def save_weights(clip: nn.Module, path: Path) -> None:
    """Every weight of an open_clip model, as open_clip's `pretrained=<file>.safetensors` loads it."""
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in clip.state_dict().items()}, path)


def save(classifier: Classifier, out: Path, meta: dict) -> None:
    """LoRA: peft adapter (safetensors) + head; full: every weight; none (zero-shot): the head only, the
    weights being the pretrained ones load() recreates. Always safetensors, never pickle."""
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    if meta["finetune"] == "lora":
        classifier.clip.save_pretrained(out / "adapter")
    elif meta["finetune"] != "none":
        save_weights(classifier.base, out / "model.safetensors")
    save_file({"head_offset": classifier.head_offset.detach().contiguous()}, out / "head.safetensors")
    (out / "classifier.json").write_text(json.dumps(meta, indent=2) + "\n")


def load(checkpoint: Path, template: str) -> tuple[Classifier, object, dict]:
    """(Classifier in eval mode, preprocess_eval, meta) from a folder written by save(); template as in build."""
    from safetensors.torch import load_file

    meta = json.loads((checkpoint / "classifier.json").read_text())
    clip, _, preprocess_eval, tokenizer = create_clip(meta["model"], meta["pretrained"], meta["seed"])
    if meta["finetune"] == "lora":
        from peft import PeftModel

        clip = PeftModel.from_pretrained(split_attention(clip), checkpoint / "adapter")
    elif meta["finetune"] != "none":
        clip.load_state_dict(load_file(checkpoint / "model.safetensors"))
    tokens = tokenizer(class_texts(meta["class_names"], template))
    classifier = Classifier(clip, tokens)
    classifier.head_offset.data.copy_(load_file(checkpoint / "head.safetensors")["head_offset"])
    classifier.requires_grad_(False)
    return classifier.eval(), preprocess_eval, meta
