"""The `diffusion` editor: the paper's recipe with diffusers, one attribute per batch.

Every source is brought to the working square of side `diffusion.resolution` (`fit: pad` keeps its aspect and
pads, as the official code: top left, black; the padding is cropped off again; `fit: stretch` resizes), edited
there and brought back to its size.
Two recipes (`diffusion.recipe`), each painting an attribute as its registry entry says (varireal/attributes.py):

paper, the official VariReal code's, every number in `diffusion.background / color / texture / refiner`:
- scene (background): a new scene from the scene model (SD 2.1 base); the object pasted into it through its
  mask dilated by a SQUARE kernel; then everything but the object repainted by SDXL inpainting (mask: the
  inverted object mask, softened); the object's own pixels restored bit for bit;
- recolor (color): the object alpha-tinted to the value's RGB, inpainted inside its mask by SDXL, then refined
  from noise by a second SDXL model (RealVisXL) under a Canny ControlNet (edges of the object on white,
  thresholds from the median) and an IP-Adapter image prompt (the inpainted object on grey), and pasted back
  through the mask: every pixel outside the mask is the source's;
- retexture (texture): a texture image from the scene model, a random square of it enlarged and sharpened,
  alpha-blended into the object; then the same inpainting, refinement and paste-back as recolor.
Prompts weight the value's tokens (`prompt_weight`, Compel's "(beach)1.2") in the text encoders' output.

band, this project's earlier recipe: scenes pasted through a disk dilation and only the band between object
and scene inpainted; color and texture in one inpainting pass under ControlNet and IP-Adapter inside the
dilated mask, every pixel outside it restored.

`controlnet: null`, `ip_adapter: null` and `refiner.model: null` switch those parts off. `scene_model: null`
draws scenes and patterns with the procedural library in `render` instead, which knows the embedded world's
values only. Colours come from the prompts (`data/prompts.json` carries each colour value's RGB); a colour value
without them is an error, never a silent skip.

Each item samples with its own generator seeded by `EditItem.seed`, so its pixels do not depend on the
batch it lands in (up to the float rounding of batched kernels) or on the order items run in.
"""

from __future__ import annotations

from functools import cached_property

import numpy as np
from PIL import Image
from scipy import ndimage

from varireal import attributes, colors, editing, render
from varireal.edit_plan import EditItem
from varireal.errors import StageError
from varireal.params import EditParams

DEFAULT_INPAINT_MODEL = "diffusers/stable-diffusion-xl-1.0-inpainting-0.1"
NEGATIVE_PROMPT = "blurry, deformed, distorted, low quality, text, watermark"
# Scenes and texture patches must not bring an object of their own: the edited object is pasted in.
SCENE_NEGATIVE_PROMPT = "people, animals, objects in the foreground, text, watermark"

Batch = list[tuple[np.ndarray, np.ndarray, EditItem]]


def scene_prompt(value: str) -> str:
    return f"a photograph of {value}, empty scene, wide shot"


def texture_prompt(value: str) -> str:
    return f"a seamless close-up texture of {value}"


def edit_prompt(item: EditItem) -> str:
    return attributes.get(item.attribute).edit_prompt.format(cls=item.class_name, value=item.value)


def dilate(mask: np.ndarray, pixels: int) -> np.ndarray:
    """The mask grown by a disk of radius pixels (Euclidean, not the diamond of repeated 3x3 steps)."""
    if pixels == 0 or not mask.any():
        return mask.copy()
    return ndimage.distance_transform_edt(~mask) <= pixels


def _control_image(edges: np.ndarray) -> Image.Image:
    """The ControlNet's control image: Canny edges as white lines on black, three channels."""
    return Image.fromarray(np.stack([edges] * 3, axis=-1))


def canny_edges(image: np.ndarray, low: int, high: int) -> Image.Image:
    import cv2

    return _control_image(cv2.Canny(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), low, high))


def _resized(image: np.ndarray, width: int, height: int) -> np.ndarray:
    return np.array(Image.fromarray(image).resize((width, height), Image.Resampling.BICUBIC))


def _mask_image(mask: np.ndarray, blur: int = 0) -> Image.Image:
    """A boolean working-side mask as the pipelines take it, softened by a blur x blur Gaussian when blur > 1."""
    image = mask.astype(np.uint8) * 255
    if blur > 1:
        import cv2

        side = blur if blur % 2 else blur + 1  # a Gaussian kernel's side is odd
        image = cv2.GaussianBlur(image, (side, side), 0)
    return Image.fromarray(image)


def dilate_square(mask: np.ndarray, side: int) -> np.ndarray:
    """The mask grown by a side x side square kernel (cv2.dilate's, as the official code)."""
    import cv2

    if side <= 1 or not mask.any():
        return mask.copy()
    return cv2.dilate(mask.astype(np.uint8), np.ones((side, side), np.uint8)) > 0


def adaptive_canny(image: np.ndarray) -> Image.Image:
    """Canny edges with thresholds from the image: low 0.7 x the median of the 5x5-blurred image, high 255."""
    import cv2

    low = int(max(0, 0.7 * float(np.median(cv2.blur(image, (5, 5))))))
    return _control_image(cv2.Canny(np.ascontiguousarray(image), low, 255))


def sharpen(image: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.filter2D(image, -1, np.array([[0, -1, 0], [-1, 5, -1], [0, -1, 0]], np.float32))


class Frame:
    """Where a source of height x width sits in the working square. pad (the official code's): resized with
    Lanczos so that its longer side fills the square (the other side rounded down), at the top left, black
    below or to the right; stretch: resized (bicubic) to the whole square."""

    def __init__(self, height: int, width: int, side: int, fit: str):
        self.height, self.width, self.side, self.fit = height, width, side, fit
        self.inner_w, self.inner_h = side, side
        if fit == "pad" and width > height:
            self.inner_h = max(1, int(side * height / width))
        elif fit == "pad" and height > width:
            self.inner_w = max(1, int(side * width / height))

    def _resample(self):
        return Image.Resampling.LANCZOS if self.fit == "pad" else Image.Resampling.BICUBIC

    def _pad(self, array: np.ndarray) -> np.ndarray:
        pads = [(0, self.side - self.inner_h), (0, self.side - self.inner_w)] + [(0, 0)] * (array.ndim - 2)
        return np.pad(array, pads)

    def image(self, image: np.ndarray) -> np.ndarray:
        """uint8 RGB at the working side."""
        return self._pad(np.array(Image.fromarray(image).resize((self.inner_w, self.inner_h), self._resample())))

    def mask(self, mask: np.ndarray) -> np.ndarray:
        """Any working pixel the source mask touches is in; the padding is out."""
        touched = Image.fromarray(mask.astype(np.uint8) * 255).resize((self.inner_w, self.inner_h),
                                                                       Image.Resampling.BOX)
        return self._pad(np.array(touched) > 0)

    def back(self, work: np.ndarray) -> np.ndarray:
        """A working-side uint8 image cropped to the source's part and resized to the source's size."""
        inner = np.ascontiguousarray(work[:self.inner_h, :self.inner_w])
        return np.array(Image.fromarray(inner).resize((self.width, self.height), self._resample()))


def value_span(tokenizer, prompt: str, value: str) -> tuple[int, int] | None:
    """Token positions (after the start token) of value's first occurrence in prompt; None if absent."""
    at = prompt.lower().find(value.lower())
    if at < 0 or not value:
        return None
    def count(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False).input_ids)

    start = 1 + count(prompt[:at])
    stop = min(start + count(prompt[at:at + len(value)]), tokenizer.model_max_length - 1)
    return (start, stop) if start < stop else None


def weighted_prompt_embeds(pipe, prompts: list[str], values: list[str], weight: float, negative: list[str],
                           guided: bool, device) -> dict:
    """The pipeline's own prompt encoding with the rows of each value's tokens multiplied by weight (Compel's
    "(value)1.3" up-weighting); pooled embeddings, other tokens and the negative prompt stay as encoded.
    Returns the keyword arguments a call takes instead of prompt / negative_prompt."""
    if hasattr(pipe, "text_encoder_2"):  # SDXL: both encoders' states concatenated; same token positions
        embeds, negatives, pooled, negative_pooled = pipe.encode_prompt(
            prompt=prompts, device=device, num_images_per_prompt=1, do_classifier_free_guidance=guided,
            negative_prompt=negative)
        extra = {"pooled_prompt_embeds": pooled}
        if guided:
            extra["negative_pooled_prompt_embeds"] = negative_pooled
    else:
        embeds, negatives = pipe.encode_prompt(prompts, device, 1, guided, negative_prompt=negative)
        extra = {}
    if weight != 1:
        embeds = embeds.clone()
        for row, (prompt, value) in enumerate(zip(prompts, values)):
            span = value_span(pipe.tokenizer, prompt, value)
            if span is not None:
                embeds[row, span[0]:span[1]] *= weight
    extra["prompt_embeds"] = embeds
    if guided:
        extra["negative_prompt_embeds"] = negatives
    return extra


def _image_prompt_per_item(pipe) -> None:
    """Let a call take one IP-Adapter image prompt per item. diffusers gives all prompts of a call the
    same image prompt: it repeats ip_adapter_image_embeds once per prompt, and the attention then folds
    the extra rows into other items' tokens, so batched items would see each other's images. The editor
    passes embeddings that already hold one row per item, so they go to the UNet as given."""

    def as_given(ip_adapter_image, ip_adapter_image_embeds, device, num_images_per_prompt, do_classifier_free_guidance):
        return [embeds.to(device) for embeds in ip_adapter_image_embeds]

    pipe.prepare_ip_adapter_image_embeds = as_given


class DiffusionEditor:
    """Loads its pipelines on first use (each once) and edits batches of one attribute."""

    name = "diffusion"

    def __init__(self, params: EditParams, process_device=None, rgb=None):
        """process_device: the device this process owns (accelerate's PartialState().device: cuda:N for the
        N-th process of a node); None: the first CUDA device if any. rgb: {class: {colour value: [[r, g, b],
        ...]}}, the prompts' colours (records.Prompts.rgb)."""
        self.params = params
        self.settings = params.diffusion
        self.process_device = process_device
        self.rgb = rgb or {}

    def _rgb(self, item: EditItem) -> list[list[int]]:
        """The colours of the item's colour value, as the prompts give them."""
        try:
            return self.rgb[item.class_name][item.value]
        except KeyError:
            raise StageError(f"the prompts give no colours for {item.attribute} {item.value!r} of class "
                             f"{item.class_name!r}; run `varireal prompt` again") from None

    # Models ------------------------------------------------------------------------------------

    @cached_property
    def device(self):
        import torch

        from varireal.runtime import resolve_device

        if self.params.device == "cuda" and not torch.cuda.is_available():
            raise StageError("edit.device is cuda but torch finds no CUDA device; set edit.device to auto or cpu")
        if self.process_device is None or self.params.device == "cpu":
            return resolve_device(self.params.device)
        own = torch.device(self.process_device)
        # auto: whatever accelerate gave this process; cuda: its GPU if it has one. Each process of a node
        # then works on its own GPU, not all of them on cuda:0.
        return own if self.params.device == "auto" or own.type == "cuda" else resolve_device("cuda")

    @property
    def dtype(self):
        import torch

        return torch.float16 if self.device.type == "cuda" else torch.float32

    def _load(self, loader, model: str, key: str, **kwargs):
        """loader.from_pretrained(model), failures a user can fix as one line naming the key.

        Weights are read from safetensors files only, never unpickled. Code shipped with a model is never
        run: the Auto pipelines pick their class from diffusers' own table, and no custom_pipeline or
        trust_remote_code is passed (diffusers' default refuses custom components), so there is no param
        to allow it."""
        try:
            return loader.from_pretrained(model, dtype=self.dtype, use_safetensors=True, **kwargs)
        except OSError as err:
            raise StageError(
                f"cannot load {key}={model!r} ({err.__class__.__name__}); give a diffusers model id or local "
                "folder with safetensors weights, downloaded beforehand for an offline run") from None

    def _load_pipeline(self, auto_class, model: str, key: str, **kwargs):
        try:
            config = auto_class.load_config(model)
        except OSError as err:
            raise StageError(
                f"cannot read {key}={model!r} ({err.__class__.__name__}); give a diffusers pipeline id or local "
                "folder, downloaded beforehand for an offline run") from None
        if "safety_checker" in config:  # it would black out images and needs a download of its own
            kwargs.update(safety_checker=None, requires_safety_checker=False)
        pipe = self._load(auto_class, model, key, **kwargs)
        pipe.set_progress_bar_config(disable=True)  # the stage shows one bar over all items
        return pipe

    def _load_ip_adapter(self, pipe, key: str = "edit.diffusion.ip_adapter") -> None:
        settings = self.settings
        extra = {}
        if settings.ip_adapter_image_encoder:
            extra["image_encoder_folder"] = settings.ip_adapter_image_encoder
        try:
            pipe.load_ip_adapter(settings.ip_adapter, subfolder=settings.ip_adapter_subfolder,
                                 weight_name=settings.ip_adapter_weights, **extra)
        except OSError as err:
            raise StageError(
                f"cannot load {key}={settings.ip_adapter!r} ({settings.ip_adapter_subfolder}/"
                f"{settings.ip_adapter_weights}, encoder {settings.ip_adapter_image_encoder}, "
                f"{err.__class__.__name__}); fix the repository, subfolder, weights and image encoder keys or set it "
                "to null") from None
        _image_prompt_per_item(pipe)

    @cached_property
    def controlnet_model(self):
        from diffusers import ControlNetModel

        return self._load(ControlNetModel, self.settings.controlnet, "edit.diffusion.controlnet")

    @property
    def paper(self) -> bool:
        return self.settings.recipe == "paper"

    @cached_property
    def inpainter(self):
        """The inpainting pipeline. recipe band: with ControlNet and IP-Adapter when configured; paper: plain
        (the refiner carries them)."""
        from diffusers import AutoPipelineForInpainting

        extra = {}
        if self.settings.controlnet and not self.paper:
            extra["controlnet"] = self.controlnet_model
        pipe = self._load_pipeline(AutoPipelineForInpainting, self.params.model or DEFAULT_INPAINT_MODEL,
                                   "edit.model", **extra)
        if self.settings.ip_adapter and not self.paper:
            self._load_ip_adapter(pipe)
            pipe.set_ip_adapter_scale(self.settings.ip_adapter_scale)
        return pipe.to(self.device)

    @cached_property
    def refiner(self):
        """recipe paper: the second pass, text-to-image from noise with the ControlNet, the IP-Adapter and the
        fp16-safe VAE when configured."""
        from diffusers import AutoencoderKL, AutoPipelineForText2Image

        refiner = self.settings.refiner
        extra = {}
        if self.settings.controlnet:
            extra["controlnet"] = self.controlnet_model
        if refiner.vae:
            extra["vae"] = self._load(AutoencoderKL, refiner.vae, "edit.diffusion.refiner.vae")
        pipe = self._load_pipeline(AutoPipelineForText2Image, refiner.model, "edit.diffusion.refiner.model", **extra)
        if self.settings.ip_adapter:
            self._load_ip_adapter(pipe)
        return pipe.to(self.device)

    @cached_property
    def harmonizer(self):
        """Inpainting for the background band: the same modules without the ControlNet (from_pipe
        shares them, no second copy in memory), since the seam's edges are what should change."""
        if not self.settings.controlnet or self.paper:
            return self.inpainter
        from diffusers import AutoPipelineForInpainting

        pipe = AutoPipelineForInpainting.from_pipe(self.inpainter, controlnet=None)
        pipe.set_progress_bar_config(disable=True)
        if self.settings.ip_adapter:
            _image_prompt_per_item(pipe)
        return pipe

    @cached_property
    def painter(self):
        """The text-to-image pipeline for scenes and texture patches."""
        from diffusers import AutoPipelineForText2Image, DPMSolverMultistepScheduler

        pipe = self._load_pipeline(AutoPipelineForText2Image, self.settings.scene_model, "edit.diffusion.scene_model")
        if self.paper and self.settings.scene_scheduler == "dpm-solver":
            pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config)
        return pipe.to(self.device)

    # Sampling ----------------------------------------------------------------------------------

    def _generators(self, items: list[EditItem]):
        import torch

        # CPU generators: diffusers draws the noise on the CPU and moves it, so a seed gives the same
        # noise on any device.
        return [torch.Generator("cpu").manual_seed(item.seed) for item in items]

    def _paint(self, prompts: list[str], items: list[EditItem], steps: int | None = None,
               guidance: float | None = None, weight: float = 1.0) -> list[np.ndarray]:
        """Text-to-image at the working resolution: float RGB images in [0, 1]."""
        side = self.settings.resolution
        steps = steps or self.settings.steps
        guidance = self.settings.guidance_scale if guidance is None else guidance
        negative = [SCENE_NEGATIVE_PROMPT] * len(prompts)
        if self.paper:
            guided = guidance > 1
            text = weighted_prompt_embeds(self.painter, prompts, [item.value for item in items], weight, negative,
                                          guided, self.device)
        else:
            text = dict(prompt=prompts, negative_prompt=negative)
        return list(self.painter(
            **text, height=side, width=side, num_inference_steps=steps, guidance_scale=guidance,
            generator=self._generators(items), output_type="np",
        ).images)

    def _image_prompt(self, pipe, images: list[np.ndarray], guidance: float | None = None) -> list:
        """IP-Adapter embeddings with one row per item, each image encoded alone by the pipeline's own
        method, stacked as the UNet takes them: all negatives, then all positives, when guidance is on."""
        import torch

        guidance = self.settings.guidance_scale if guidance is None else guidance
        guided = guidance > 1 and pipe.unet.config.time_cond_proj_dim is None
        encode = type(pipe).prepare_ip_adapter_image_embeds  # the instance's is the pass-through below
        embeds = [encode(pipe, [Image.fromarray(image)], None, self.device, 1, guided)[0] for image in images]
        if not guided:
            return [torch.cat(embeds)]
        return [torch.cat([e.chunk(2)[0] for e in embeds] + [e.chunk(2)[1] for e in embeds])]

    def _inpaint(self, pipe, batch: Batch, images: list[np.ndarray], regions: list[np.ndarray],
                 strength: float, controls: list[Image.Image] | None) -> list[np.ndarray]:
        """recipe band: repaint each image (uint8, source size) inside its region; uint8 results at the source's
        size."""
        side = self.settings.resolution
        items = [item for _, _, item in batch]
        frames = [Frame(*image.shape[:2], side, self.settings.fit) for image in images]
        extra = {}
        if controls is not None:
            extra.update(control_image=controls, controlnet_conditioning_scale=self.settings.controlnet_scale)
        if self.settings.ip_adapter:
            extra["ip_adapter_image_embeds"] = self._image_prompt(pipe, images)
        results = pipe(
            prompt=[edit_prompt(item) for item in items], negative_prompt=[NEGATIVE_PROMPT] * len(items),
            image=[Image.fromarray(frame.image(image)) for frame, image in zip(frames, images)],
            mask_image=[_mask_image(frame.mask(region)) for frame, region in zip(frames, regions)],
            height=side, width=side, strength=strength, num_inference_steps=self.settings.steps,
            guidance_scale=self.settings.guidance_scale, generator=self._generators(items), output_type="np",
            **extra,
        ).images
        return [frame.back(render.to_uint8(result)) for result, frame in zip(results, frames)]

    # Edits -------------------------------------------------------------------------------------

    def edit_batch(self, batch: Batch) -> list[np.ndarray]:
        names = {item.attribute for _, _, item in batch}
        if len(names) != 1:
            raise ValueError(f"a batch holds items of one attribute, got {sorted(names)}")
        paint = attributes.get(names.pop()).paint
        if not self.paper:
            return self._edit_background(batch) if paint == "scene" else self._edit_object(batch)
        # The official numbers differ by feasibility: one call per feasibility, results in the batch's order.
        results: list[np.ndarray | None] = [None] * len(batch)
        for feasibility in dict.fromkeys(item.feasibility for _, _, item in batch):
            where = [i for i, (_, _, item) in enumerate(batch) if item.feasibility == feasibility]
            part = [batch[i] for i in where]
            edited = self._paper_background(part) if paint == "scene" else self._paper_object(part, paint)
            for i, result in zip(where, edited):
                results[i] = result
        return results

    def _procedural(self, kind: str, item: EditItem) -> np.ndarray:
        """scene_model: null: the render library's scene or pattern for the value, at the working side."""
        library = render.SCENES if kind == "scene" else render.TEXTURES
        if item.value not in library:
            raise StageError(
                f"edit.diffusion.scene_model is null and the procedural library has no {kind} {item.value!r} "
                f"({item.class_name}); set edit.diffusion.scene_model to a text-to-image model")
        rng = np.random.default_rng(item.seed)
        draw = render.scene if kind == "scene" else render.texture
        return draw(item.value, rng, self.settings.resolution)

    # recipe paper --------------------------------------------------------------------------------

    def _sdxl_inpaint(self, items: list[EditItem], images: list[np.ndarray], masks: list[Image.Image],
                      strength: float, guidance: float, steps: int, weight: float) -> list[np.ndarray]:
        """SDXL inpainting at the working side (images uint8 there); uint8 results there."""
        side = self.settings.resolution
        pipe = self.inpainter
        text = weighted_prompt_embeds(pipe, [edit_prompt(item) for item in items], [item.value for item in items],
                                      weight, [NEGATIVE_PROMPT] * len(items), guidance > 1, self.device)
        results = pipe(**text, image=[Image.fromarray(image) for image in images], mask_image=masks, height=side,
                       width=side, strength=strength, num_inference_steps=steps, guidance_scale=guidance,
                       generator=self._generators(items), output_type="np").images
        return [render.to_uint8(result) for result in results]

    def _paper_background(self, batch: Batch) -> list[np.ndarray]:
        recipe = self.settings.background
        items = [item for _, _, item in batch]
        side = self.settings.resolution
        if self.settings.scene_model:
            scenes = self._paint([scene_prompt(item.value) for item in items], items, self.settings.scene_steps,
                                 self.settings.scene_guidance, recipe.prompt_weight)
        else:
            scenes = [self._procedural("scene", item) for item in items]
        frames, composites, masks = [], [], []
        for (image, mask, _), scene in zip(batch, scenes):
            frame = Frame(*mask.shape, side, self.settings.fit)
            work, work_mask = frame.image(image), frame.mask(mask)
            pasted = dilate_square(work_mask, recipe.dilation)
            composites.append(np.where(pasted[..., None], work, _resized(render.to_uint8(scene), side, side)))
            masks.append(_mask_image(~work_mask, recipe.blur))  # everything but the object is repainted
            frames.append(frame)
        results = self._sdxl_inpaint(items, composites, masks, recipe.strength, recipe.guidance, recipe.steps,
                                     recipe.prompt_weight)
        out = []
        for result, frame, (image, mask, _) in zip(results, frames, batch):
            result = frame.back(result)
            result[mask] = image[mask]
            out.append(result)
        return out

    def _texture_images(self, items: list[EditItem]) -> list[np.ndarray]:
        """recipe paper: a texture image per item, a random square of it enlarged to the working side and
        sharpened; uint8 at the working side."""
        recipe, side = self.settings.texture, self.settings.resolution
        if self.settings.scene_model:
            images = [render.to_uint8(image) for image in self._paint(
                [texture_prompt(item.value) for item in items], items, self.settings.texture_steps,
                self.settings.scene_guidance, recipe.prompt_weight)]
        else:
            images = []
            for item in items:
                pattern = self._procedural("texture", item)
                if pattern.ndim == 2:  # the procedural library's patterns are grey levels
                    pattern = np.stack([1 - render.TEXTURE_CONTRAST * pattern] * 3, axis=-1)
                images.append(render.to_uint8(pattern))
        out = []
        for item, image in zip(items, images):
            crop = max(1, round(recipe.crop * side))
            rng = np.random.default_rng(item.seed)
            top, left = (int(rng.integers(0, side - crop + 1)) for _ in range(2))
            patch = _resized(np.ascontiguousarray(image[top:top + crop, left:left + crop]), side, side)
            out.append(sharpen(patch) if recipe.sharpen else patch)
        return out

    def _paper_object(self, batch: Batch, paint: str) -> list[np.ndarray]:
        recipe = self.settings.color if paint == "recolor" else self.settings.texture
        items = [item for _, _, item in batch]
        feasibility = items[0].feasibility
        side, alpha = self.settings.resolution, recipe.alpha.of(feasibility)
        patterns = self._texture_images(items) if paint == "retexture" else None
        frames, works, starts, masks = [], [], [], []
        for i, (image, mask, item) in enumerate(batch):
            frame = Frame(*mask.shape, side, self.settings.fit)
            work, work_mask = frame.image(image), frame.mask(mask)
            if paint == "recolor":
                # The official blend goes towards one flat colour; ours towards the value's shaded tint
                # (colors.tint), so a two-colour coat keeps two colours and the object its shading.
                start = render.to_uint8(colors.tint(render.to_float(work), work_mask, self._rgb(item), alpha))
            else:
                start = work.copy()
                blend = work[work_mask].astype(np.float64) * (1 - alpha) + patterns[i][work_mask] * alpha
                start[work_mask] = np.clip(np.round(blend), 0, 255).astype(np.uint8)
            frames.append(frame)
            works.append((work, work_mask))
            starts.append(start)
            masks.append(_mask_image(work_mask))
        guidance = recipe.guidance.of(feasibility)
        inpainted = self._sdxl_inpaint(items, starts, masks, recipe.strength.of(feasibility), guidance, recipe.steps,
                                       recipe.prompt_weight)
        if self.settings.refiner.model:
            inpainted = self._refine(items, works, inpainted, recipe)
        out = []
        for result, frame, (image, mask, _) in zip(inpainted, frames, batch):
            result = frame.back(result)
            result[~mask] = image[~mask]  # pasted back through the mask
            out.append(result)
        return out

    def _refine(self, items: list[EditItem], works: list[tuple[np.ndarray, np.ndarray]],
                inpainted: list[np.ndarray], recipe) -> list[np.ndarray]:
        """The second pass from noise: edges of the source object on white under the ControlNet, the inpainted
        object on grey as the IP-Adapter's image prompt; uint8 at the working side."""
        refiner, side = self.settings.refiner, self.settings.resolution
        pipe = self.refiner
        feasibility = items[0].feasibility
        extra = {}
        if self.settings.controlnet:
            controls = []
            for work, work_mask in works:
                on_white = np.full_like(work, 255)
                on_white[work_mask] = work[work_mask]
                controls.append(adaptive_canny(on_white))
            extra.update(image=controls, controlnet_conditioning_scale=refiner.controlnet_scale)
        if self.settings.ip_adapter:
            pipe.set_ip_adapter_scale(recipe.ip_adapter_scale.of(feasibility))
            prompts = []
            for (_, work_mask), result in zip(works, inpainted):
                on_grey = np.full_like(result, refiner.grey)
                on_grey[work_mask] = result[work_mask]
                prompts.append(on_grey)
            extra["ip_adapter_image_embeds"] = self._image_prompt(pipe, prompts, refiner.guidance)
        text = weighted_prompt_embeds(pipe, [edit_prompt(item) for item in items], [item.value for item in items],
                                      recipe.prompt_weight, [NEGATIVE_PROMPT] * len(items), refiner.guidance > 1,
                                      self.device)
        results = pipe(**text, height=side, width=side, num_inference_steps=refiner.steps,
                       guidance_scale=refiner.guidance, generator=self._generators(items), output_type="np",
                       **extra).images
        return [render.to_uint8(result) for result in results]

    # recipe band ---------------------------------------------------------------------------------

    def _edit_background(self, batch: Batch) -> list[np.ndarray]:
        items = [item for _, _, item in batch]
        if self.settings.scene_model:
            scenes = self._paint([scene_prompt(item.value) for item in items], items)
        else:
            scenes = [self._procedural("scene", item) for item in items]
        composites, bands = [], []
        for (image, mask, _), scene in zip(batch, scenes):
            height, width = mask.shape
            pasted = dilate(mask, self.settings.dilation)
            new_scene = _resized(render.to_uint8(scene), width, height)
            composites.append(np.where(pasted[..., None], image, new_scene))
            bands.append(pasted & ~mask)  # old background carried along with the object
        results = self._inpaint(self.harmonizer, batch, composites, bands, self.settings.harmonize_strength, None)
        for result, (image, mask, _) in zip(results, batch):
            result[mask] = image[mask]
        return results

    def _edit_object(self, batch: Batch) -> list[np.ndarray]:
        items = [item for _, _, item in batch]
        side = self.settings.resolution
        paint = attributes.get(items[0].attribute).paint
        if paint == "retexture":
            if self.settings.scene_model:
                patches = self._paint([texture_prompt(item.value) for item in items], items)
            else:
                patches = [self._procedural("texture", item) for item in items]
        starts, regions, controls = [], [], []
        for i, (image, mask, item) in enumerate(batch):
            height, width = mask.shape
            pixels = render.to_float(image)
            if paint == "recolor":
                start = colors.tint(pixels, mask, self._rgb(item))
            else:
                patch = patches[i]
                if patch.ndim == 2:  # a procedural pattern: darkens the object's mean colour, as in composite
                    patch = pixels[mask].mean(axis=0) * (1 - render.TEXTURE_CONTRAST * patch)[..., None]
                patch = render.to_float(_resized(render.to_uint8(patch), width, height))
                surface = patch * editing.smooth_shading(pixels, mask)[..., None]
                strength = self.params.texture_strength
                start = np.where(mask[..., None], (1 - strength) * pixels + strength * surface, pixels)
            start = render.to_uint8(start)
            start[~mask] = image[~mask]
            starts.append(start)
            regions.append(dilate(mask, self.settings.dilation))
            if self.settings.controlnet:
                frame = Frame(height, width, side, self.settings.fit)
                controls.append(canny_edges(frame.image(image), self.settings.canny_low, self.settings.canny_high))
        results = self._inpaint(self.inpainter, batch, starts, regions, self.settings.strength,
                                controls if self.settings.controlnet else None)
        for result, region, (image, _, _) in zip(results, regions, batch):
            result[~region] = image[~region]
        return results
