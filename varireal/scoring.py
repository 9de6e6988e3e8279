"""Scores of synthetic images: does the edit look feasible, show its value, and keep its source's identity?

- feasibility: CLIP image embedding of the edit against the real training photos of every class: the
  softmax over classes of its similarity to each class's nearest photo (its own source left out), at
  its own class. Needs no text, so it works with any CLIP, random weights included (FEASIBILITY_SCALE
  says why this form).
- presence: CLIP zero-shot probability of the intended value among all values of that class and
  attribute in the prompts.
- identity_kept: the share of the pixels the edit should keep (outside the object mask for color and
  texture, inside it for background) that are bit for bit the source's.
- identity_clip: cosine similarity of the edit's and the source's CLIP image embeddings.
- vqa (optional): a vision-language model answers two yes/no questions; the share answered as expected.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from tqdm import tqdm

from varireal import attributes
from varireal.errors import StageError
from varireal.io import open_rgb, read_mask
from varireal.records import SCORE_NAMES, ManifestRow, ScoreRow, Scores, SplitRow

DECIMALS = 6  # scores.csv is byte-stable across runs of the same inputs

# Feasibility: how much an edit looks like some real photo of its class rather than of another class:
# softmax over classes of FEASIBILITY_SCALE * (cosine to the class's nearest real training photo), at
# the edit's own class; the edit's own source is left out, or every edit would be near its source.
# The nearest photo, not the class mean: a class's photos show several feasible values (three colours
# per species in the world), and their mean looks like none of them. Measured on the embedded default
# (random-weight varireal-mini, AUROC background / color / texture / all): nearest photo at scale 100
# .97/.71/.50/.73; mean embedding ("prototype") at the best scale, 10, .85/.55/.50/.63; cos(own
# prototype) .80/.54/.51/.61. Texture stays at chance: at 64 px a random CLIP barely sees it (the
# mean identity_clip of texture edits is 0.999). A fixed scale, not the model's logit scale, so the
# score means the same across models.
FEASIBILITY_SCALE = 100.0

VQA_QUESTIONS = ("Is the {attribute} of this {cls} {value}?", "Could a real photo of a {cls} look like this?")


def _readable(name: str) -> str:
    return name.replace("_", " ")


def identity_kept(source: np.ndarray, edited: np.ndarray, mask: np.ndarray, attribute: str) -> float:
    """Share of the pixels the edit should not touch that are unchanged (all three channels equal)."""
    if source.shape != edited.shape:
        raise ValueError(f"edit of size {edited.shape} does not match its source's {source.shape}")
    keep = mask if attributes.get(attribute).keeps_object else ~mask
    if not keep.any():  # nothing was to be kept, so nothing was lost
        return 1.0
    return float((source == edited).all(axis=-1)[keep].mean())


@torch.no_grad()
def embed_images(clip, preprocess, paths: Sequence[str], batch_size: int, device: torch.device,
                 desc: str = "embed") -> torch.Tensor:
    """L2-normalised CLIP image embeddings (float32, on the CPU), one row per path."""
    rows = []
    for start in tqdm(range(0, len(paths), batch_size), desc=desc, unit="batch"):
        images = torch.stack([preprocess(open_rgb(p)) for p in paths[start:start + batch_size]])
        rows.append(F.normalize(clip.encode_image(images.to(device)).float(), dim=-1).cpu())
    return torch.cat(rows) if rows else torch.empty(0)


@torch.no_grad()
def embed_texts(clip, tokenizer, texts: Sequence[str], device: torch.device) -> torch.Tensor:
    return F.normalize(clip.encode_text(tokenizer(list(texts)).to(device)).float(), dim=-1).cpu()


def nearest_per_class(edits: torch.Tensor, real: torch.Tensor, real_labels: Sequence[int], n_classes: int,
                      sources: Sequence[int]) -> torch.Tensor:
    """(edits x classes) cosine of each edit to the nearest real photo of each class, the edit's own
    source (an index into real) left out; -1 where a class has no other photo."""
    similarity = edits @ real.T
    similarity[torch.arange(len(edits)), torch.as_tensor(sources)] = -1.0
    real_labels = torch.as_tensor(real_labels)
    nearest = torch.full((len(edits), n_classes), -1.0)
    for label in range(n_classes):
        members = real_labels == label
        if members.any():
            nearest[:, label] = similarity[:, members].max(dim=1).values
    return nearest


def feasibility(nearest: torch.Tensor, labels: Sequence[int]) -> torch.Tensor:
    """Softmax over classes of FEASIBILITY_SCALE * nearest-photo cosine, at each edit's own class."""
    probabilities = (FEASIBILITY_SCALE * nearest).softmax(dim=-1)
    return probabilities[torch.arange(len(nearest)), torch.as_tensor(labels)]


def presence(edits: torch.Tensor, rows: Sequence[ManifestRow], prompts: dict, encode_texts, logit_scale: float) -> torch.Tensor:
    """Zero-shot probability of each row's value among every value of its class and attribute in prompts.

    encode_texts(list of str) -> normalised text embeddings; each class x attribute is encoded once."""
    out = torch.empty(len(rows))
    groups: dict[tuple[str, str], list[int]] = {}
    for index, row in enumerate(rows):
        groups.setdefault((row.class_name, row.attribute), []).append(index)
    for (cls, attribute), indices in groups.items():
        lists = prompts[cls][attribute]
        values = list(dict.fromkeys([*lists["feasible"], *lists["infeasible"]]))
        texts = [attributes.get(attribute).presence.format(cls=_readable(cls), value=value) for value in values]
        probabilities = (logit_scale * edits[indices] @ encode_texts(texts).T).softmax(dim=-1)
        wanted = torch.tensor([values.index(rows[i].value) for i in indices])
        out[indices] = probabilities[torch.arange(len(indices)), wanted]
    return out


def parse_yes_no(answer: str) -> bool | None:
    """True for an answer that starts with yes, False for no, None for anything else."""
    words = re.findall(r"[a-z]+", answer.lower())
    return {"yes": True, "no": False}.get(words[0]) if words else None


class VqaJudge:
    """A transformers vision-language model asked yes/no questions through its chat template."""

    def __init__(self, model_id: str, device: torch.device, trust_remote_code: bool = False,
                 key: str = "score.vqa_model", hint: str | None = None):
        """key: the param that named the model, for error messages; hint: what to do when it cannot be
        loaded (hub.from_pretrained)."""
        from transformers import AutoModelForImageTextToText, AutoProcessor

        from varireal.hub import from_pretrained

        self.processor = from_pretrained(AutoProcessor, model_id, key, trust_remote_code, hint)
        self.processor.tokenizer.padding_side = "left"  # a batch's answers all start where its prompts end
        self.model = from_pretrained(AutoModelForImageTextToText, model_id, key, trust_remote_code, hint,
                                     dtype="auto").to(device).eval()

    @torch.no_grad()
    def answers(self, images: list[Image.Image], questions: list[str]) -> list[bool | None]:
        prompts = [self.processor.apply_chat_template(
            [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": f"{q} Answer yes or no."}]}],
            add_generation_prompt=True) for q in questions]
        inputs = self.processor(images=images, text=prompts, padding=True, return_tensors="pt").to(self.model.device)
        if "pixel_values" in inputs:
            inputs["pixel_values"] = inputs["pixel_values"].to(self.model.dtype)
        generated = self.model.generate(**inputs, max_new_tokens=4, do_sample=False)
        texts = self.processor.batch_decode(generated[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
        return [parse_yes_no(text) for text in texts]

    def score(self, rows: Sequence[ManifestRow], batch_size: int) -> list[float]:
        """Per row: the share of its two questions answered as expected (the value is there: yes;
        a real photo could look like this: yes for feasible edits, no for infeasible ones)."""
        scores = []
        for start in tqdm(range(0, len(rows), batch_size), desc="vqa", unit="batch"):
            batch = rows[start:start + batch_size]
            images, questions, expected = [], [], []
            for row in batch:
                image = open_rgb(row.path)
                present, real = (q.format(attribute=row.attribute, cls=_readable(row.class_name), value=row.value)
                                 for q in VQA_QUESTIONS)
                images += [image, image]
                questions += [present, real]
                expected += [True, row.feasibility == "feasible"]
            hits = [answer == wanted for answer, wanted in zip(self.answers(images, questions), expected)]
            scores += [(hits[2 * i] + hits[2 * i + 1]) / 2 for i in range(len(batch))]
        return scores


def auroc(labels: Sequence[bool], scores: Sequence[float]) -> float | None:
    """Area under the ROC curve of scores for labels (True = positive); None when one side is empty."""
    from sklearn.metrics import roc_auc_score

    if len(set(labels)) < 2:
        return None
    return round(float(roc_auc_score(labels, scores)), DECIMALS)


def summarize(manifest: Sequence[ManifestRow], scores: Sequence[ScoreRow]) -> dict:
    """metrics/scores.json: AUROC of feasibility (feasible = positive) and mean scores per attribute x feasibility."""
    by_attribute: dict[str, list[int]] = {}
    for index, row in enumerate(manifest):
        by_attribute.setdefault(row.attribute, []).append(index)
    groups = {**by_attribute, "all": list(range(len(manifest)))}
    present = [name for name in SCORE_NAMES if all(s.scores.get(name) is not None for s in scores)]
    out = {
        "label": "the manifest's feasibility column: exact on the embedded world, elsewhere the prompt's "
                 "(LLM's) label, so AUROC there is agreement with it",
        "images": len(manifest),
        "auroc_feasibility": {},
        "mean": {},
    }
    for group, indices in groups.items():
        labels = [manifest[i].feasibility == "feasible" for i in indices]
        out["auroc_feasibility"][group] = auroc(labels, [scores[i].scores.feasibility for i in indices])
        if group == "all":
            continue
        out["mean"][group] = {}
        for kind in ("feasible", "infeasible"):
            chosen = [i for i in indices if manifest[i].feasibility == kind]
            out["mean"][group][kind] = {
                name: round(float(np.mean([scores[i].scores.get(name) for i in chosen])), DECIMALS) if chosen else None
                for name in present}
    return out


def score_pool(manifest: list[ManifestRow], real: list[SplitRow], prompts: dict, class_names: list[str], params,
               seed: int) -> list[ScoreRow]:
    """One row of scores per manifest row, same order. params: ScoreParams; seed fixes random CLIP weights."""
    from varireal.classifier import create_clip
    from varireal.runtime import resolve_device

    device = resolve_device(params.device)
    clip, _, preprocess, tokenizer = create_clip(params.model, params.pretrained, seed)
    clip = clip.to(device).eval()
    label_of = {name: index for index, name in enumerate(class_names)}

    # Every real training image is embedded once: they are the reference photos and the edits' sources.
    real_embeddings = embed_images(clip, preprocess, [r.path for r in real], params.batch_size, device, "embed real")
    real_index = {r.path: i for i, r in enumerate(real)}
    edit_embeddings = embed_images(clip, preprocess, [m.path for m in manifest], params.batch_size, device,
                                   "embed edits")
    labels = [label_of[m.class_name] for m in manifest]
    sources = torch.tensor([real_index[m.source] for m in manifest])
    nearest = nearest_per_class(edit_embeddings, real_embeddings, [label_of[r.class_name] for r in real],
                                len(class_names), sources)

    columns = {
        "feasibility": feasibility(nearest, labels),
        "presence": presence(edit_embeddings, manifest, prompts, lambda texts: embed_texts(clip, tokenizer, texts, device),
                             float(clip.logit_scale.detach().exp())),
        "identity_clip": (edit_embeddings * real_embeddings[sources]).sum(dim=-1),
    }
    kept, source_pixels = [], {}  # a source's edits follow one another in the manifest: decode it once
    for m in tqdm(manifest, desc="identity", unit="img"):
        if m.source not in source_pixels:
            source = real[real_index[m.source]]
            source_pixels = {m.source: (np.asarray(open_rgb(source.path)), read_mask(source.mask))}
        pixels, mask = source_pixels[m.source]
        try:
            kept.append(identity_kept(pixels, np.asarray(open_rgb(m.path)), mask, m.attribute))
        except ValueError as err:  # an editor must return its source's size (editing.Editor)
            raise StageError(f"{m.path}: {err}; the editor broke its contract, run `varireal edit` again") from None
    columns["identity_kept"] = torch.tensor(kept, dtype=torch.float64)
    vqa = VqaJudge(params.vqa_model, device, params.trust_remote_code).score(manifest, params.batch_size) if params.vqa_model else None

    return [ScoreRow(m.path, Scores(**{name: round(float(column[i]), DECIMALS) for name, column in columns.items()},
                                    vqa=round(vqa[i], DECIMALS) if vqa else None))
            for i, m in enumerate(manifest)]
