"""The schema of params.yaml. Every stage validates the whole file before it does any work."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

ATTRIBUTES = ("background", "color", "texture")
Attribute = Literal["background", "color", "texture"]


class ParamError(Exception):
    """A parameter a user set is not allowed. Printed as one line; the command exits with 2."""

    def __init__(self, key: str, value: Any, allowed: str, source: str = "params.yaml"):
        self.key, self.value, self.allowed, self.source = key, value, allowed, source
        super().__init__(key, value, allowed)

    def __str__(self) -> str:
        return f"{self.source}: {self.key}={self.value!r} is not allowed: {self.allowed}"


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatasetParams(Section):
    name: Literal["world"] = "world"
    root: str = "datasets"  # where downloaded datasets live; the embedded world needs none
    download: bool = False
    shots: int = Field(16, ge=1, description="real training images per class")
    test_per_class: int = Field(150, ge=1, description="embedded world only: test images per class")
    image_size: int = Field(128, ge=16, le=1024, description="embedded world only: rendered side in pixels")


class PromptParams(Section):
    backend: Literal["bank"] = "bank"
    model: str | None = None
    base_url: str | None = None
    values_per_list: int = Field(3, ge=1, description="values kept per class x attribute x feasibility")


class EditParams(Section):
    backend: Literal["composite"] = "composite"
    model: str | None = None
    attributes: list[Attribute] = Field(default_factory=lambda: list(ATTRIBUTES), min_length=1)
    per_image: int = Field(5, ge=1, description="edits per real image, attribute and feasibility")
    texture_strength: float = Field(0.8, ge=0, le=1, description="how much the new texture replaces the old")

    @model_validator(mode="after")
    def _unique_attributes(self):
        if len(set(self.attributes)) != len(self.attributes):
            raise ValueError("attributes must not repeat")
        return self


class MixParams(Section):
    attribute: Literal["background", "color", "texture", "all"] = "all"
    infeasible_ratio: float = Field(0.0, ge=0, le=1)
    synthetic_per_class: int = Field(40, ge=0, description="0 trains on real images only")
    include_real: bool = True


class LoraParams(Section):
    rank: int = Field(16, ge=1)
    alpha: float = Field(32, gt=0)
    dropout: float = Field(0.1, ge=0, lt=1)
    target_modules: list[str] = Field(default_factory=lambda: ["attn"], min_length=1)
    towers: list[Literal["image", "text"]] = Field(default_factory=lambda: ["image", "text"], min_length=1)


class TrainParams(Section):
    model: str = "varireal-mini"
    pretrained: str | None = None
    finetune: Literal["lora", "full"] = "full"
    lora: LoraParams = LoraParams()
    seed: int = 0
    steps: int = Field(150, ge=1)
    batch_size: int = Field(32, ge=1)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.05, ge=0)
    warmup_ratio: float = Field(0.1, ge=0, lt=1)
    real_weight: float = Field(0.5, ge=0, le=1, description="lambda in lambda*CE(real) + (1-lambda)*CE(synthetic)")
    augment: bool = True
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: int = Field(2, ge=1, description="CPU threads; fixed so CPU results are reproducible")
    cache_images: bool = Field(True, description="decode each training image once and keep it in RAM")
    workers: int = Field(0, ge=0, description="data loader processes; >0 draws augmentations from other seeds")


class EvalParams(Section):
    batch_size: int = Field(128, ge=1)


class TrackingParams(Section):
    uri: str = "sqlite:///mlflow.db"
    experiment: str = Field("varireal", min_length=1)


class Params(Section):
    seed: int = 0
    dataset: DatasetParams = DatasetParams()
    prompt: PromptParams = PromptParams()
    edit: EditParams = EditParams()
    mix: MixParams = MixParams()
    train: TrainParams = TrainParams()
    eval: EvalParams = EvalParams()
    tracking: TrackingParams = TrackingParams()

    def flat(self) -> dict[str, Any]:
        """Dotted keys, as MLflow shows them: {"mix.infeasible_ratio": 0.5, ...}."""
        out: dict[str, Any] = {}

        def walk(prefix: str, value: Any) -> None:
            if isinstance(value, dict):
                for key, sub in value.items():
                    walk(f"{prefix}.{key}" if prefix else key, sub)
            else:
                out[prefix] = value

        walk("", self.model_dump())
        return out


def _allowed(model: type[BaseModel], loc: tuple) -> str:
    """The keys allowed at loc, for an unknown-key message."""
    for part in loc[:-1]:
        field = model.model_fields.get(str(part))
        if field is None or not isinstance(field.annotation, type) or not issubclass(field.annotation, BaseModel):
            return ""
        model = field.annotation
    return "known keys here: " + ", ".join(model.model_fields)


def load(path: str | Path = "params.yaml") -> Params:
    """Read and validate params; raise ParamError naming the first bad key."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise ParamError("--params", str(path), "no such file") from None
    except yaml.YAMLError as err:
        raise ParamError("--params", str(path), f"not valid YAML ({err.__class__.__name__})") from None
    try:
        return Params.model_validate(raw)
    except ValidationError as err:
        first = err.errors()[0]
        key = ".".join(str(p) for p in first["loc"]) or "<top level>"
        if first["type"] == "extra_forbidden":
            raise ParamError(key, first["input"], f"unknown key; {_allowed(Params, first['loc'])}", str(path)) from None
        raise ParamError(key, first.get("input"), first["msg"].rstrip("."), str(path)) from None
