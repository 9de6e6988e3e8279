"""The `diffusion` editor: the paper's recipe with diffusers, one attribute per batch.

At the working resolution `diffusion.resolution` (every image is resized to it and back), painting each
attribute as its registry entry says (varireal/attributes.py), prompted by its entry's `edit_prompt`:
- scene (background): a new scene from the text-to-image model; the object pasted into it through its mask
  dilated by `dilation` px; the band between object and scene harmonised by inpainting; then the
  object's own pixels restored bit for bit;
- recolor (color): the object tinted to the value's colours from the prompts (`colors.tint`, shading kept),
  then inpainted inside the dilated mask under a Canny ControlNet (edges of the source) and an IP-Adapter
  image prompt (the tinted image), so shape and identity survive; every pixel outside the dilated mask is
  restored from the source;
- retexture (texture): a texture patch from the text-to-image model laid over the object's shading, then the same
  inpainting and restore as recolor.
`controlnet: null` and `ip_adapter: null` switch those parts off. `scene_model: null` draws scenes and
patterns with the procedural library in `render` instead, which knows the embedded world's values only.
A colour value without colours in the prompts is an error, never a silent skip.

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


def canny_edges(image: np.ndarray, low: int, high: int) -> Image.Image:
    """The ControlNet's control image: Canny edges as white lines on black, three channels."""
    import cv2

    edges = cv2.Canny(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), low, high)
    return Image.fromarray(np.stack([edges] * 3, axis=-1))


def _resized(image: np.ndarray, width: int, height: int) -> np.ndarray:
    return np.array(Image.fromarray(image).resize((width, height), Image.Resampling.BICUBIC))


def _resized_mask(mask: np.ndarray, side: int) -> Image.Image:
    """Any working pixel the source mask touches is in: a region to repaint never shrinks when scaled."""
    touched = Image.fromarray(mask.astype(np.uint8) * 255).resize((side, side), Image.Resampling.BOX)
    return touched.point(lambda level: 255 if level > 0 else 0)


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

    @cached_property
    def inpainter(self):
        """The inpainting pipeline for color and texture: with ControlNet and IP-Adapter when configured."""
        from diffusers import AutoPipelineForInpainting, ControlNetModel

        extra = {}
        if self.settings.controlnet:
            extra["controlnet"] = self._load(ControlNetModel, self.settings.controlnet, "edit.diffusion.controlnet")
        pipe = self._load_pipeline(AutoPipelineForInpainting, self.params.model or DEFAULT_INPAINT_MODEL,
                                   "edit.model", **extra)
        if self.settings.ip_adapter:
            try:
                pipe.load_ip_adapter(self.settings.ip_adapter, subfolder=self.settings.ip_adapter_subfolder,
                                     weight_name=self.settings.ip_adapter_weights)
            except OSError as err:
                raise StageError(
                    f"cannot load edit.diffusion.ip_adapter={self.settings.ip_adapter!r} "
                    f"({self.settings.ip_adapter_subfolder}/{self.settings.ip_adapter_weights}, "
                    f"{err.__class__.__name__}); fix the repository, subfolder and weights keys or set it to null"
                ) from None
            pipe.set_ip_adapter_scale(self.settings.ip_adapter_scale)
            _image_prompt_per_item(pipe)
        return pipe.to(self.device)

    @cached_property
    def harmonizer(self):
        """Inpainting for the background band: the same modules without the ControlNet (from_pipe
        shares them, no second copy in memory), since the seam's edges are what should change."""
        if not self.settings.controlnet:
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
        from diffusers import AutoPipelineForText2Image

        pipe = self._load_pipeline(AutoPipelineForText2Image, self.settings.scene_model, "edit.diffusion.scene_model")
        return pipe.to(self.device)

    # Sampling ----------------------------------------------------------------------------------

    def _generators(self, items: list[EditItem]):
        import torch

        # CPU generators: diffusers draws the noise on the CPU and moves it, so a seed gives the same
        # noise on any device.
        return [torch.Generator("cpu").manual_seed(item.seed) for item in items]

    def _paint(self, prompts: list[str], items: list[EditItem]) -> list[np.ndarray]:
        """Text-to-image at the working resolution: float RGB images in [0, 1]."""
        side = self.settings.resolution
        return list(self.painter(
            prompt=prompts, negative_prompt=[SCENE_NEGATIVE_PROMPT] * len(prompts), height=side, width=side,
            num_inference_steps=self.settings.steps, guidance_scale=self.settings.guidance_scale,
            generator=self._generators(items), output_type="np",
        ).images)

    def _image_prompt(self, pipe, images: list[np.ndarray]) -> list:
        """IP-Adapter embeddings with one row per item, each image encoded alone by the pipeline's own
        method, stacked as the UNet takes them: all negatives, then all positives, when guidance is on."""
        import torch

        guided = self.settings.guidance_scale > 1 and pipe.unet.config.time_cond_proj_dim is None
        encode = type(pipe).prepare_ip_adapter_image_embeds  # the instance's is the pass-through below
        embeds = [encode(pipe, [Image.fromarray(image)], None, self.device, 1, guided)[0] for image in images]
        if not guided:
            return [torch.cat(embeds)]
        return [torch.cat([e.chunk(2)[0] for e in embeds] + [e.chunk(2)[1] for e in embeds])]

    def _inpaint(self, pipe, batch: Batch, images: list[np.ndarray], regions: list[np.ndarray],
                 strength: float, controls: list[Image.Image] | None) -> list[np.ndarray]:
        """Repaint each image (uint8, source size) inside its region; uint8 results at the source's size."""
        side = self.settings.resolution
        items = [item for _, _, item in batch]
        extra = {}
        if controls is not None:
            extra.update(control_image=controls, controlnet_conditioning_scale=self.settings.controlnet_scale)
        if self.settings.ip_adapter:
            extra["ip_adapter_image_embeds"] = self._image_prompt(pipe, images)
        results = pipe(
            prompt=[edit_prompt(item) for item in items], negative_prompt=[NEGATIVE_PROMPT] * len(items),
            image=[Image.fromarray(_resized(image, side, side)) for image in images],
            mask_image=[_resized_mask(region, side) for region in regions],
            height=side, width=side, strength=strength, num_inference_steps=self.settings.steps,
            guidance_scale=self.settings.guidance_scale, generator=self._generators(items), output_type="np",
            **extra,
        ).images
        return [_resized(render.to_uint8(result), image.shape[1], image.shape[0])
                for result, image in zip(results, images)]

    # Edits -------------------------------------------------------------------------------------

    def edit_batch(self, batch: Batch) -> list[np.ndarray]:
        names = {item.attribute for _, _, item in batch}
        if len(names) != 1:
            raise ValueError(f"a batch holds items of one attribute, got {sorted(names)}")
        if attributes.get(names.pop()).paint == "scene":
            return self._edit_background(batch)
        return self._edit_object(batch)

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
                controls.append(canny_edges(_resized(image, side, side),
                                            self.settings.canny_low, self.settings.canny_high))
        results = self._inpaint(self.inpainter, batch, starts, regions, self.settings.strength,
                                controls if self.settings.controlnet else None)
        for result, region, (image, _, _) in zip(results, regions, batch):
            result[~region] = image[~region]
        return results
