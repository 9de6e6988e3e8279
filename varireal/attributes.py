"""The attributes an edit changes, each defined once: what its values are and how every part paints or judges it.

The params schema, the LLM's answer schema, the prompt banks' schema, the editors and the scores read
this registry, so a new attribute is one `register` call (with a `paint` the editors already know).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from varireal import render

# How the editors paint a value: the composite editor's function and the diffusion editor's recipe
# for each (varireal/editing.py, varireal/diffusion.py).
Paint = Literal["scene", "recolor", "retexture"]


@dataclass(frozen=True)
class AttributeSpec:
    name: str
    meaning: str  # what a value is, as the LLM is told
    paint: Paint  # scene: everything around the object is new; recolor, retexture: the object's own pixels
    procedural: tuple[str, ...]  # the values the procedural library paints (composite editor, embedded world)
    presence: str  # CLIP text for the presence score; {cls} and {value}
    edit_prompt: str  # the diffusion editor's inpainting prompt; {cls} and {value}
    # The edit filter's yes/no questions (varireal/vqa_filter.py), the official code's four, word for word
    # (its typos too); {cls} and {value}. Each with whether it asks about feasibility: those expect yes of
    # a feasible edit and no of an infeasible one; the others (is the value there?) always expect yes.
    vqa_questions: tuple[tuple[str, bool], ...] = ()

    @property
    def keeps_object(self) -> bool:
        """Whether an edit keeps the object's pixels (and changes the rest), rather than the rest."""
        return self.paint == "scene"


_ATTRIBUTES: dict[str, AttributeSpec] = {}


def register(spec: AttributeSpec) -> AttributeSpec:
    if spec.name in _ATTRIBUTES:
        raise ValueError(f"attribute {spec.name!r} is already registered")
    _ATTRIBUTES[spec.name] = spec
    return spec


def names() -> tuple[str, ...]:
    """Registered attribute names, in registration order: the order of prompts, plans and sheets."""
    return tuple(_ATTRIBUTES)


def get(name: str) -> AttributeSpec:
    return _ATTRIBUTES[name]


register(AttributeSpec(
    "background", "the scene around the object", "scene", tuple(render.SCENES),
    presence="a photo of a {cls} in {value}.", edit_prompt="a photo of a {cls}, background: {value}",
    vqa_questions=(("Is the object of the image in {value} background?", False),
                   ("Does the image background is {value}?", False),
                   ("Dose the {value} look feasible for the {cls}?", True),
                   ("Is it possible for the {cls} in this image to appear in the real world with its background?", True))))
register(AttributeSpec(
    "color", "the object's own color, coat or paint", "recolor", tuple(render.COLORS),
    presence="a photo of a {value} {cls}.", edit_prompt="a photo of a {value} {cls}",
    vqa_questions=(("Is the {cls} in the image {value}?", False), ("Does the image show a {value} {cls}?", False),
                   ("Is the {value} possible for the {cls} to have?", True),
                   ("Is the {value} {cls} feasibile to appear in the real world?", True))))
register(AttributeSpec(
    "texture", "the object's surface material or pattern", "retexture", tuple(render.TEXTURES),
    presence="a photo of a {cls} with {value} texture.", edit_prompt="a photo of a {cls} with a texture of {value}",
    vqa_questions=(("Is the {cls} in the image {value}?", False), ("Does the image show a {value} {cls}?", False),
                   ("Is the {value} possible for the {cls} to have?", True),
                   ("Is the {value} {cls} feasibile to appear in the real world?", True))))
