"""The schema of params.yaml. Every stage validates the whole file before it does any work."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator, model_validator

from varireal.records import ScoreName  # the score stage's columns, defined with its record
from varireal import datasets
from varireal.attributes import names as attribute_names
from varireal.errors import ParamError

__all__ = ["ATTRIBUTES", "ParamError"]  # ParamError lives in errors, so that the datasets need not import params

# Attributes are registered in varireal/attributes.py itself, so this tuple is complete once imported.
ATTRIBUTES = attribute_names()


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _registered(what: str, known) -> AfterValidator:
    """A name that must be registered when the file is read (not when this module was imported), so
    an entry registered later, by a test or a plugin, is allowed too."""

    def check(name: str) -> str:
        if name not in known():
            raise ValueError(f"unknown {what}; registered: {', '.join(known())}")
        return name

    return AfterValidator(check)


DatasetName = Annotated[str, _registered("dataset", datasets.names)]


def _count_or_all(minimum: int) -> BeforeValidator:
    """A whole number of at least minimum, or the word all; one message for both ways to be wrong."""

    def check(value):
        if value == "all" or (isinstance(value, int) and not isinstance(value, bool) and value >= minimum):
            return value
        raise ValueError(f"must be a whole number of at least {minimum}, or all")

    return BeforeValidator(check)
Attribute = Annotated[str, _registered("attribute", attribute_names)]


Device = Literal["auto", "cpu", "cuda"]


def _workers(workers):
    if workers == "auto" or (isinstance(workers, int) and not isinstance(workers, bool) and workers >= 1):
        return workers
    raise ValueError("must be auto or a whole number of at least 1")


Workers = Annotated[Literal["auto"] | int, BeforeValidator(_workers)]
# What runs `varireal <stage>` in dvc.yaml (`cmd: ${edit.launcher} varireal edit`): one process, or one per
# GPU as `accelerate config` set them up; torchrun and mpirun also work (anything ending in -m).
def _launcher(command: str) -> str:
    if command.split()[-1:] != ["-m"] or len(command.split()) < 2:
        raise ValueError("must be a command ending in -m, e.g. python -m or accelerate launch -m")
    return command


Launcher = Annotated[str, AfterValidator(_launcher), Field(description=(
    "the command before `varireal <stage>`: python -m (one process) | accelerate launch [options] -m"))]


class MaskParams(Section):
    """How fetch finds the object in each training image (real datasets; the world knows its masks)."""

    method: Literal["auto", "trimap", "grounded-sam", "clipseg", "grabcut"] = Field(
        "auto", description="auto: the dataset's own (its registry entry's mask): trimaps for pets, "
                            "grounded-sam otherwise")
    detector: str = Field("IDEA-Research/grounding-dino-base",
                          description="grounded-sam: Grounding DINO model id or local folder (the official one)")
    segmenter: str = Field("facebook/sam2.1-hiera-large",
                           description="grounded-sam: SAM 2 model id or local folder (the official SAM 2.1 large)")
    box_threshold: float = Field(0.4, gt=0, lt=1, description="grounded-sam: boxes scoring at most this are dropped")
    text_threshold: float = Field(0.3, gt=0, lt=1, description="grounded-sam: picks the words that label a box; "
                                                                "changes no mask")
    fallback: Literal["clipseg", "rmbg", "grabcut"] = Field(
        "clipseg", description="grounded-sam: when no box is found or its mask is too small; GrabCut follows "
                               "either. rmbg (official) runs model code it ships: needs trust_remote_code")
    background_remover: str = Field("briaai/RMBG-1.4", description="fallback rmbg: the model id or local folder")
    model: str = Field("CIDAS/clipseg-rd64-refined", description="CLIPSeg model id or local folder")
    threshold: float = Field(0.4, gt=0, lt=1, description="CLIPSeg probability above which a pixel is object")
    min_area: float = Field(0.02, ge=0, lt=1, description="a mask covering less of the image falls back to GrabCut")
    device: Device = "auto"
    trust_remote_code: bool = Field(False, description="let the mask models' folders run Python code they ship (auto_map)")


class DatasetParams(Section):
    name: DatasetName = "world"
    root: str = "datasets"  # where downloaded datasets live; the embedded world needs none
    download: bool = False
    shots: Annotated[int | Literal["all"], _count_or_all(1)] = Field(
        16, description="real training images per class: a number (each class needs that many) or all (every "
                        "training image of the split; the paper's N_SHOT=100 takes all, as no class has 100)")
    split: Literal["official", "coop"] = Field(
        "official", description="official: the dataset's own train(val)/test split; coop: CoOp's train/val/test "
                                "(pets, cars, flowers102: split_zhou_<Name>.json in the dataset folder; aircraft: "
                                "its official train/val/test files, as CoOp uses them)")
    classes: int | None = Field(None, ge=2, description="keep only the first N classes; null keeps all")
    test_per_class: int = Field(150, ge=1, description="embedded world only: test images per class")
    image_size: int = Field(128, ge=16, le=1024, description="embedded world only: rendered side in pixels")
    mask: MaskParams = MaskParams()

    @model_validator(mode="after")
    def _world_has_one_split(self):
        if self.name == "world" and self.split != "official":
            raise ValueError("dataset.split: the embedded world has only its official split")
        return self


class PromptParams(Section):
    backend: Literal["bank", "hf", "openai"] = "bank"
    model: str | None = Field(None, description="hf: chat model id or local folder; openai: the served model name")
    base_url: str | None = Field(None, description="openai: the server, e.g. http://localhost:8000/v1")
    api_key_env: str = Field("OPENAI_API_KEY", description="openai: environment variable holding the API key")
    values_per_list: int = Field(3, ge=1, description="values kept per class x attribute x feasibility")
    retries: int = Field(3, ge=0, description="LLM: new attempts after a malformed answer")
    temperature: float = Field(0.0, ge=0, le=2)
    max_new_tokens: int = Field(512, ge=16)
    device: Device = "auto"
    trust_remote_code: bool = Field(False, description="hf: let the model run Python code it ships (auto_map)")

    @model_validator(mode="after")
    def _llm_needs_model(self):
        if self.backend != "bank" and not self.model:
            raise ValueError(f"prompt.backend {self.backend} needs prompt.model")
        if self.backend == "openai" and not self.base_url:
            raise ValueError("prompt.backend openai needs prompt.base_url")
        return self


class PerFeasibility(Section):
    """A number the official recipe sets apart for feasible and infeasible edits."""

    feasible: float = Field(ge=0)
    infeasible: float = Field(ge=0)

    def of(self, feasibility: str) -> float:
        return self.feasible if feasibility == "feasible" else self.infeasible


def _both(value: float) -> PerFeasibility:
    return PerFeasibility(feasible=value, infeasible=value)


class BackgroundRecipe(Section):
    """recipe paper, background: the object pasted into a new scene, then everything but the object repainted."""

    dilation: int = Field(120, ge=0, description="side in working pixels of the SQUARE kernel the object mask is "
                                                 "dilated by when pasted into the new scene (0: the mask itself)")
    blur: int = Field(41, ge=0, description="side of the Gaussian kernel that softens the inpainting mask (the "
                                            "inverted object mask); 0: hard")
    strength: float = Field(0.99, gt=0, le=1, description="SDXL inpainting strength over the whole background")
    guidance: float = Field(40.0, ge=0)
    steps: int = Field(30, ge=1)
    prompt_weight: float = Field(1.2, gt=0, description="weight of the value's tokens in the prompts")


class ObjectRecipe(Section):
    """recipe paper, color and texture: tint or pattern blended into the object, SDXL inpainting inside the mask,
    then a refinement from noise under Canny ControlNet + IP-Adapter, pasted back through the mask."""

    alpha: PerFeasibility = Field(default_factory=lambda: PerFeasibility(feasible=0.3, infeasible=0.5),
                                  description="share of the tint (color) or pattern (texture) in the object's pixels")
    strength: PerFeasibility = Field(default_factory=lambda: _both(0.3), description="inpainting strength")
    guidance: PerFeasibility = Field(default_factory=lambda: _both(12.0), description="inpainting guidance")
    steps: int = Field(20, ge=1, description="inpainting steps")
    ip_adapter_scale: PerFeasibility = Field(default_factory=lambda: _both(0.7),
                                             description="IP-Adapter scale in the refinement")
    prompt_weight: float = Field(1.3, gt=0, description="weight of the value's tokens in the prompts")


class TextureRecipe(ObjectRecipe):
    alpha: PerFeasibility = Field(default_factory=lambda: PerFeasibility(feasible=0.5, infeasible=0.4))
    ip_adapter_scale: PerFeasibility = Field(default_factory=lambda: PerFeasibility(feasible=0.2, infeasible=0.5))
    crop: float = Field(0.25, gt=0, le=1, description="side of the random square cut from the texture image, as a "
                                                      "share of the working side, enlarged to the whole image")
    sharpen: bool = Field(True, description="sharpen the enlarged texture (3x3 Laplacian kernel)")


class RefinerParams(Section):
    """recipe paper: the second pass, text-to-image from noise on a second SDXL model."""

    model: str | None = Field("SG161222/RealVisXL_V4.0", description="SDXL text-to-image model; null: no refinement")
    vae: str | None = Field("madebyollin/sdxl-vae-fp16-fix", description="VAE replacing the model's (fp16-safe); "
                                                                         "null: the model's own")
    steps: int = Field(25, ge=1)
    guidance: float = Field(7.5, ge=0)
    controlnet_scale: float = Field(1.0, ge=0)
    grey: int = Field(100, ge=0, le=255, description="grey level around the object in the IP-Adapter image")


class DiffusionParams(Section):
    """The diffusion editor's models and sampling (edit.backend: diffusion). Model ids or local folders."""

    recipe: Literal["paper", "band"] = Field(
        "paper", description="paper: the official recipe (whole background repainted; color and texture inpainted "
                             "then refined); band: one inpainting pass, background only along the pasted edge")
    fit: Literal["pad", "stretch"] = Field("pad", description="how a source reaches the working square: pad (aspect "
                                                              "kept, top left of a black square, the padding "
                                                              "cropped off again) or stretch")
    scene_model: str | None = Field("stabilityai/stable-diffusion-2-1-base",
                                    description="text-to-image model for new backgrounds and texture patches; null: the "
                                                "procedural ones of the embedded world")
    scene_scheduler: Literal["dpm-solver", "model"] = Field(
        "dpm-solver", description="the scene model's sampler: dpm-solver (multistep, as the official code) or model "
                                  "(the one it ships with)")
    scene_steps: int = Field(20, ge=1, description="recipe paper: steps of a new scene")
    scene_guidance: float = Field(7.5, ge=0, description="recipe paper: guidance of scenes and texture images")
    texture_steps: int = Field(15, ge=1, description="recipe paper: steps of a texture image")
    controlnet: str | None = Field("diffusers/controlnet-canny-sdxl-1.0", description="Canny ControlNet; null: off")
    ip_adapter: str | None = Field("h94/IP-Adapter", description="IP-Adapter repository; null: off")
    ip_adapter_subfolder: str = "sdxl_models"
    ip_adapter_weights: str = "ip-adapter-plus_sdxl_vit-h.safetensors"
    ip_adapter_image_encoder: str | None = Field(
        "models/image_encoder", description="image encoder folder in the IP-Adapter repository (with a slash: from "
                                            "its root); null: image_encoder beside the weights")
    ip_adapter_scale: float = Field(0.6, ge=0, le=1, description="recipe band")
    resolution: int = Field(1024, ge=64, le=2048, description="working side in pixels (multiple of 8)")
    steps: int = Field(30, ge=1, description="recipe band")
    strength: float = Field(0.6, gt=0, le=1, description="recipe band: inpainting strength for color and texture")
    harmonize_strength: float = Field(0.4, gt=0, le=1, description="recipe band: inpainting strength along the "
                                                                   "pasted edge")
    guidance_scale: float = Field(7.5, ge=0, description="recipe band (and its scenes)")
    controlnet_scale: float = Field(0.5, ge=0, description="recipe band")
    dilation: int = Field(15, ge=0, description="recipe band: pixels the mask grows by (disk) for pasting and "
                                                "harmonising")
    canny_low: int = Field(100, ge=0, le=255, description="recipe band")
    canny_high: int = Field(200, ge=0, le=255, description="recipe band")
    background: BackgroundRecipe = BackgroundRecipe()
    color: ObjectRecipe = ObjectRecipe()
    texture: TextureRecipe = TextureRecipe()
    refiner: RefinerParams = RefinerParams()

    @field_validator("resolution")
    @classmethod
    def _multiple_of_8(cls, resolution: int) -> int:
        if resolution % 8:
            raise ValueError("must be a multiple of 8 (the latent grid)")
        return resolution

    @model_validator(mode="after")
    def _steps_reach_every_strength(self):
        # diffusers denoises int(steps * strength) steps and fails deep inside a run when that is 0.
        if self.recipe == "band" and int(self.steps * min(self.strength, self.harmonize_strength)) < 1:
            raise ValueError("steps x strength and steps x harmonize_strength must each be at least 1")
        if self.recipe == "paper":
            pairs = [("background", self.background.steps, self.background.strength)]
            for name in ("color", "texture"):
                part = getattr(self, name)
                pairs += [(name, part.steps, min(part.strength.feasible, part.strength.infeasible))]
            for name, steps, strength in pairs:
                if int(steps * strength) < 1:
                    raise ValueError(f"{name}.steps x {name}.strength must be at least 1 for each feasibility")
            for name in ("color", "texture"):
                if max(getattr(self, name).strength.feasible, getattr(self, name).strength.infeasible) > 1:
                    raise ValueError(f"{name}.strength must be at most 1")
        return self


class FilterParams(Section):
    """The official VQA filter (edit.filter): a vision-language model answers the attribute's four yes/no
    questions about each edit; an edit whose share of expected answers is below threshold is edited again
    with a new seed, up to cycles attempts in all, and the last attempt is kept (varireal/vqa_filter.py)."""

    model: str | None = Field(None, description="transformers vision-language model id or local folder "
                                                "(paper: llava-hf/llava-v1.6-mistral-7b-hf); null: no filter")
    threshold: float = Field(0.5, ge=0, le=1, description="an edit scoring at least this is kept")
    cycles: int = Field(3, ge=1, description="attempts per edit at most; the last one is kept whatever its score")
    batch_size: int = Field(8, ge=1, description="questions per model call")
    device: Device = Field("auto", description="auto: the edit's own device (each process's GPU under accelerate)")
    trust_remote_code: bool = Field(False, description="let the model run Python code it ships (auto_map)")


class EditParams(Section):
    backend: Literal["composite", "diffusion"] = "composite"
    model: str | None = Field(None, description="diffusion: inpainting model; null: the paper's SDXL inpainting")
    attributes: list[Attribute] = Field(default_factory=lambda: list(attribute_names()), min_length=1)
    per_image: int = Field(5, ge=1, description="edits per real image, attribute and feasibility")
    texture_strength: float = Field(0.8, ge=0, le=1, description="how much the new texture replaces the old (diffusion: before inpainting)")
    batch_size: int = Field(4, ge=1, description="diffusion: items per pipeline call")
    device: Device = Field("auto", description="diffusion: auto is each process's own GPU under accelerate")
    workers: Workers = Field(
        "auto", description="composite: processes editing in parallel on the CPU; auto: this process's CPUs divided "
                            "by the accelerate processes on this machine. The diffusion editor runs in its process "
                            "(one per GPU: accelerate launch)")
    launcher: Launcher = "python -m"
    diffusion: DiffusionParams = DiffusionParams()
    filter: FilterParams = FilterParams()

    @model_validator(mode="after")
    def _unique_attributes(self):
        if len(set(self.attributes)) != len(self.attributes):
            raise ValueError("attributes must not repeat")
        return self




class CaptionParams(Section):
    species_share: float = Field(0.1, ge=0, le=1, description=(
        "share of captions that name the picture's species; the rest name its family (\"a star\", \"a foil\")"))
    attribute_share: float = Field(0.5, ge=0, le=1, description=(
        "chance that a caption names each of colour, texture and background (independently)"))


class PretrainParams(Section):
    """The world-CLIP (the pretrain stage): a small CLIP pretrained contrastively on a captioned corpus of
    the embedded world, the offline stand-in for CLIP's web pretraining (README "The world-CLIP")."""

    model: str = Field("varireal-mini", description="open_clip model name or local JSON config to pretrain")
    corpus_size: int = Field(20000, ge=256, description="captioned pictures rendered (the task's and extra species)")
    image_size: int = Field(64, ge=16, description="rendered side in pixels: the model's input size")
    captions: CaptionParams = CaptionParams()
    infeasible_share: float = Field(0.1, ge=0, le=1, description=(
        "share of pictures whose colour, texture and background ignore the species' feasibility rules"))
    steps: int = Field(410, ge=0, description="optimizer steps; 0: the random initial weights, untrained")
    batch_size: int = Field(256, ge=2, description="image-caption pairs per step (the in-batch negatives)")
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.1, ge=0)
    warmup_ratio: float = Field(0.1, ge=0, lt=1)
    seed: int = Field(0, description="the corpus and the initial weights")
    heldout: int = Field(1000, ge=10, description=(
        "fresh pictures for the stage's own figures: zero-shot top-1 on the task's species, caption retrieval"))
    workers: Workers = Field("auto", description="processes rendering the corpus; auto: every CPU")
    threads: int = Field(2, ge=1, description="CPU threads for training; fixed so CPU results are reproducible")


class ScoreParams(Section):
    """Scores of every synthetic image (the score stage): CLIP feasibility and attribute presence,
    identity (pixels kept, CLIP similarity to the source), and optionally a VQA judge."""

    model: str = Field("varireal-mini", description="open_clip model name or local JSON config for the CLIP scores")
    pretrained: str | None = Field("world", description=(
        "its open_clip pretrained tag or checkpoint; world: the pretrain stage's world-CLIP; null = random init"))
    vqa_model: str | None = Field(None, description="transformers vision-language model for the yes/no judge; null: off")
    batch_size: int = Field(64, ge=1)
    device: Device = "auto"
    threads: int = Field(2, ge=1)
    trust_remote_code: bool = Field(False, description="let vqa_model run Python code it ships (auto_map)")


MixAttribute = Annotated[str, _registered("attribute (or all)", lambda: (*attribute_names(), "all"))]


class MixParams(Section):
    attribute: MixAttribute = "all"
    infeasible_ratio: float = Field(0.0, ge=0, le=1)
    synthetic_per_class: Annotated[int | Literal["all"], _count_or_all(0)] = Field(
        40, description="edits per class; 0 trains on real images only; all: every edit of the class with the "
                        "mix's attribute (per feasibility; mixed ratios split the smaller pool), the paper's "
                        "NIPC=500 with 5 edits per real image")
    include_real: bool = Field(True, description="false: synthetic-only training (condition synthetic-<...>)")
    filter_score: ScoreName | None = Field(
        None, description="keep only synthetic images whose score is at least filter_min; null: keep all")
    filter_min: float = 0.0


class LoraParams(Section):
    rank: int = Field(16, ge=1)
    alpha: float = Field(32, gt=0)
    dropout: float = Field(0.1, ge=0, lt=1)
    target_modules: list[str] = Field(default_factory=lambda: ["q_proj", "v_proj"], min_length=1,
                                      description="module names; attention is split into q_proj, k_proj, v_proj, out_proj")
    towers: list[Literal["image", "text"]] = Field(default_factory=lambda: ["image", "text"], min_length=1)


class TrainParams(Section):
    model: str = "varireal-mini"
    pretrained: str | None = Field("world", description=(
        "open_clip pretrained tag (openai) or checkpoint file; world: the pretrain stage's world-CLIP; null: random"))
    finetune: Literal["lora", "full", "none"] = Field(
        "lora", description="none: no training, the pretrained model as is (the zero-shot condition)")
    lora: LoraParams = LoraParams()
    seed: int = 0
    steps: int | None = Field(150, ge=1, description="optimizer steps; null: computed from epochs")
    epochs: float | None = Field(None, gt=0, description=(
        "instead of steps: passes over the larger of the real and the synthetic set, steps = "
        "ceil(epochs x that set / batch_size); null: steps decides"))
    batch_size: int = Field(32, ge=1, description="per kind: each step sees this many real and this many synthetic")
    lr: float = Field(3e-4, gt=0)
    lr_min: float = Field(0.0, ge=0, description="the cosine schedule ends here; warm-up starts here (official 1e-8)")
    weight_decay: float = Field(0.05, ge=0)
    warmup_ratio: float = Field(0.1, ge=0, lt=1)
    real_weight: float = Field(0.5, ge=0, le=1, description="lambda in lambda*CE(real) + (1-lambda)*CE(synthetic)")
    augment: Literal["none", "light", "paper"] = Field(
        "light", description="none: resize + normalise | light: open_clip's (crop 0.9-1) | paper: the official "
                             "RandAugment, crop 0.25-1, flip, colour jitter, grayscale, blur, solarize")
    template: str = Field("registry", description=(
        "the class text of the head: registry (the dataset's own, e.g. pets: \"a pet photo of a {}\") or a "
        "string with one {} for the class name"))
    head: Literal["text", "text+offset"] = Field(
        "text+offset", description="text: class text embeddings only (official) | text+offset: plus a learnable offset")
    val_fraction: float = Field(0.0, ge=0, lt=1, description=(
        "real training images per class held out for validation (stratified, from seed); 0: none, unless the "
        "fetch stage wrote a validation split"))
    select: Literal["final", "best-val"] = Field(
        "final", description="the checkpoint kept: the final step, or the best top-1 on the validation split "
                             "(never the test split)")
    val_every: int = Field(100, ge=1, description="select best-val: steps between evaluations on the validation split")
    device: Device = "auto"
    precision: Literal["bf16", "fp16", "fp32"] = Field("bf16", description="autocast on CUDA; the CPU trains in fp32")
    threads: int = Field(2, ge=1, description="CPU threads; fixed so CPU results are reproducible")
    cache_images: bool = Field(True, description="decode each training image once and keep it in RAM")
    workers: int = Field(0, ge=0, description="data loader processes; >0 draws augmentations from other seeds")
    launcher: Launcher = "python -m"

    @field_validator("augment", mode="before")
    @classmethod
    def _old_boolean(cls, augment):
        # Before the presets, augment was a boolean: true was open_clip's transform (light), false none.
        return {True: "light", False: "none"}.get(augment, augment) if isinstance(augment, bool) else augment

    @field_validator("template")
    @classmethod
    def _template(cls, template: str) -> str:
        if template != "registry" and template.count("{}") != 1:
            raise ValueError("must be registry or a text with exactly one {} for the class name")
        return template

    @model_validator(mode="after")
    def _schedule(self):
        if (self.steps is None) == (self.epochs is None):
            raise ValueError("set exactly one of train.steps and train.epochs (the other null)")
        if self.lr_min >= self.lr:
            raise ValueError("train.lr_min must be below train.lr")
        return self


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
    pretrain: PretrainParams = PretrainParams()
    score: ScoreParams = ScoreParams()
    mix: MixParams = MixParams()
    train: TrainParams = TrainParams()
    eval: EvalParams = EvalParams()
    tracking: TrackingParams = TrackingParams()

    @model_validator(mode="after")
    def _world_clip_model(self):
        # The world-CLIP's weights fit the architecture it was pretrained as, and no other.
        for section in ("train", "score"):
            settings = getattr(self, section)
            if settings.pretrained == "world" and settings.model != self.pretrain.model:
                raise ValueError(f"{section}.pretrained world is the pretrain stage's {self.pretrain.model}: set "
                                 f"{section}.model to it (it is {settings.model})")
        return self

    def flat(self) -> dict[str, Any]:
        """Dotted keys, as MLflow shows them: {"mix.infeasible_ratio": 0.5, ...}."""
        return leaves(self.model_dump())


def leaves(tree: dict, prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}; lists are values, not branches."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        out.update(leaves(value, dotted) if isinstance(value, dict) else {dotted: value})
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
    return validate(raw, str(path))


def validate(raw: dict, source: str) -> Params:
    """Params from a parsed params file; raise ParamError naming the first bad key."""
    try:
        return Params.model_validate(raw)
    except ValidationError as err:
        first = err.errors()[0]
        key = ".".join(str(p) for p in first["loc"]) or "<top level>"
        if first["type"] == "extra_forbidden":
            raise ParamError(key, first["input"], f"unknown key; {_allowed(Params, first['loc'])}", source) from None
        value = first.get("input")
        if isinstance(value, dict):  # a check across a section's keys: its message names them
            value = "{...}"
        raise ParamError(key, value, first["msg"].removeprefix("Value error, ").rstrip("."), source) from None
