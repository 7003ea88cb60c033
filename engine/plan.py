"""The generation plan: everything a job will do, decided once from its params, before any torch runs.

Pure and torch-free: the prompt without its LoRA tags and the LoRA calls, the `AND` parts and prompt-editing
schedules of every pass, each sampling pass in A1111's step arithmetic (txt2img, img2img `t_enc`, the hires size,
crop and steps), the UNet calls each pass costs (second-order samplers counted), and the fields the job adds to its
parameter text. The pipeline only executes a plan; the queue estimates a job's cost and ETA from it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal

from engine.detailer import USE_SAME_SCHEDULER, DetailerTab, detailer_fields
from engine.errors import InvalidParamsError
from engine.params import GenerationParams, hires_size
from engine.prompts.and_split import split_and
from engine.prompts.editing import get_learned_conditioning_prompt_schedules
from engine.prompts.extra_networks import LoraCall, read_loras
from engine.samplers import SamplerSpec, effective_schedule, resolve_sampler, sampler_spec

PassKind = Literal["txt2img", "img2img", "hires", "extras", "detail", "describe"]
TextSchedule = tuple[tuple[int, str], ...]
"""A1111's prompt schedule: `(end_step, text)` pairs; a text applies while the model-call count <= its end step."""

# One unit of cost: one model call at 512x512 with classifier-free guidance (a cond and an uncond row).
_UNIT_PIXELS = 512 * 512
_UNIT_ROWS = 2
# A Flux.1 transformer call per row and 512x512 of image, in SD 1.5 UNet rows (its FLOPs: 74.4 TFLOP per call at
# 1024x1024, a quarter of that per 512x512, against the SD 1.5 UNet's 0.80 at 512x512; flux.md, performance.md).
FLUX_ROW_WEIGHT = 74.4 / 4 / 0.80
# DPM adaptive picks its own step sizes: the model calls it makes do not follow the step count. This many is
# typical of it on SD schedules at A1111's tolerances (it is only an estimate for the queue's ETA).
DPM_ADAPTIVE_CALLS = 60


# An upscaler model's work per 512x512 of output, in the same units: ESRGAN (23 blocks) costs about as much as a
# few UNet steps there. Only an estimate for the queue's cost ceilings and ETAs, which the measured speed corrects.
EXTRAS_UNITS = 4.0
# A tagger's run on one image (a ViT-B at 448 px: a few hundredths of a second on a GPU), in the same units.
DESCRIBE_UNITS = 0.5


# Bounds on what one prompt may ask of every step (A1111 has none: 666 `AND` parts cost 39 minutes of a GPU).
MAX_AND_PARTS = 16
MAX_LORA_TAGS = 32


@dataclass(frozen=True)
class ModelTraits:
    """What a plan needs to know of the model, read by the registry without loading it."""

    family: str = "sd1"
    latent_scale: int = 8  # image pixels per latent pixel (the VAE's downscale); SD's VAE: 8
    context_width: int | None = None  # what the UNet's cross-attention takes (SD 1.x 768, SDXL 2048), where known
    inpainting: bool = False  # a 9-channel inpainting UNet: image conditioning joins its input
    ztsnr: bool = False  # trained with zero terminal SNR (sampled on the rescaled schedule)


@dataclass(frozen=True)
class PromptPart:
    """One `AND` part of a prompt: its prompt-editing schedule and its weight."""

    schedule: TextSchedule
    weight: float = 1.0


@dataclass(frozen=True)
class PassConditioning:
    """The texts each model call of a pass is conditioned on."""

    parts: tuple[PromptPart, ...]
    negative: TextSchedule

    def texts(self) -> list[str]:
        """Every distinct text the pass encodes, in first-use order."""
        found = [text for part in self.parts for _, text in part.schedule] + [text for _, text in self.negative]
        return list(dict.fromkeys(found))


@dataclass(frozen=True)
class Upscale:
    """How the first pass's result reaches the hires pass: upscaled to `width` x `height` (in latent space for the
    Latent modes, else decoded, resampled and encoded again), then cropped to the pass size if that is smaller."""

    upscaler: str
    width: int
    height: int

    @property
    def latent(self) -> bool:
        return self.upscaler.startswith("Latent")


@dataclass(frozen=True)
class SamplingPass:
    """One sampling pass in A1111's arithmetic: a schedule of `schedule_steps`, of which the last `run_steps` run
    (all of them for txt2img). `run_steps == 0` means the pass changes nothing (img2img at strength 0)."""

    kind: PassKind
    width: int
    height: int
    steps: int  # the pass's steps as asked: the job's steps, or the hires steps
    schedule_steps: int
    run_steps: int
    denoise: float | None
    conditioning: PassConditioning
    unet_calls: int
    sampler: SamplerSpec  # the hires pass may have its own (A1111's Hires sampler)
    schedule: str  # the schedule that runs in this pass, Automatic resolved to the sampler's default
    upscale: Upscale | None = None
    # The size SDXL's conditioning names (original and target): the pass's own, except for hires, where A1111 uses
    # hr_upscale_to_x/y from calculate_target_resolution (not rounded to 8, and before a resize's crop).
    condition_size: tuple[int, int] | None = None

    @property
    def conditioned_on(self) -> tuple[int, int]:
        return self.condition_size or (self.width, self.height)

    @property
    def from_noise(self) -> bool:
        return self.kind == "txt2img"


@dataclass(frozen=True)
class GenerationPlan:
    """A job's params and everything decided from them; built by `make_plan`, immutable."""

    params: GenerationParams
    traits: ModelTraits
    sampler: SamplerSpec
    schedule: str  # the schedule that runs: Automatic resolved to the sampler's default where it has one
    prompt: str  # without its LoRA tags
    negative_prompt: str
    loras: tuple[LoraCall, ...]
    passes: tuple[SamplingPass, ...]
    infotext_fields: tuple[tuple[str, str | None], ...] = field(default=())

    @property
    def width(self) -> int:
        """The size of the images the job returns (the last pass's)."""
        return self.passes[-1].width

    @property
    def height(self) -> int:
        return self.passes[-1].height

    @property
    def unet_calls(self) -> int:
        return sum(p.unet_calls for p in self.passes)

    def batch_key(self) -> tuple[object, ...] | None:
        """What a job must share with others to be sampled in one batch with them (None: it runs alone): the model,
        VAE and LoRAs, the size, steps, sampler and schedule, CFG, clip skip, hires settings, img2img or not, how many
        `AND` parts. Prompts, negative prompts, prompt editing, seeds, variation seeds and init images may differ.
        DPM adaptive picks its step sizes from the whole batch's error, so it never batches."""
        p = self.params
        if self.sampler.function == "sample_dpm_adaptive" or p.is_extras or p.is_detail_only or p.is_describe:
            return None
        return (
            p.model, p.vae, tuple(self.loras), p.width, p.height, p.steps, p.sampler, self.schedule, p.cfg_scale,
            p.clip_skip, p.enable_hr, p.hr_scale, p.hr_resize_x, p.hr_resize_y, p.hr_upscaler, p.hr_steps,
            self.passes[-1].sampler.name, self.passes[-1].schedule,
            p.denoising_strength, p.init_image is not None, len(self.passes[0].conditioning.parts), self.traits,
            p.mask is not None, p.mask_blur, p.inpainting_mask_invert, p.inpainting_fill, p.inpaint_full_res,
            p.inpaint_full_res_padding, p.initial_noise_multiplier, p.tiling, p.distilled_cfg_scale, p.hr_cfg_scale,
            p.hr_distilled_cfg_scale,
        )  # fmt: skip

    def cost(self) -> float:
        """Work in the job, in units of one model call at 512x512 with CFG: every pass's calls, pixels, CFG rows
        (`AND` parts add rows) and the batch."""
        if self.params.is_extras:
            return self.width * self.height / _UNIT_PIXELS * EXTRAS_UNITS
        if self.params.is_describe:
            return DESCRIBE_UNITS
        total = sum(detail_cost(self.params, tab) for tab in self.params.detailers)
        flux = self.traits.family == "flux"
        for p in self.passes:
            parts = p.conditioning.parts
            # Flux at CFG 1 runs the prompt alone (Forge's shortcut); everything else also runs the negative.
            alone = flux and pass_cfg(self.params, p.kind) == 1.0 and len(parts) == 1 and parts[0].weight == 1.0
            rows = len(parts) + (0 if alone else 1)
            weight = FLUX_ROW_WEIGHT if flux else 1.0
            total += p.unet_calls * (p.width * p.height / _UNIT_PIXELS) * rows * weight / _UNIT_ROWS
        return max(total, 1e-3) * self.params.batch_size

    @property
    def segments(self) -> int:
        """The parts a job's progress bar is made of: its sampling passes, then one per detailer tab."""
        sampled = 0 if self.params.is_detail_only else len(self.passes)
        return sampled + len(self.params.detailers)


def pass_cfg(params: GenerationParams, kind: PassKind) -> float:
    """The CFG scale a pass runs at: Forge's `Hires CFG Scale` for the hires pass where set, else the job's."""
    return params.hr_cfg_scale if kind == "hires" and params.hr_cfg_scale is not None else params.cfg_scale


def pass_distilled_cfg(params: GenerationParams, kind: PassKind) -> float:
    """The distilled CFG a Flux dev pass runs at: `Hires Distilled CFG Scale` for the hires pass where set."""
    if kind == "hires" and params.hr_distilled_cfg_scale is not None:
        return params.hr_distilled_cfg_scale
    return params.distilled_cfg_scale


def make_plan(params: GenerationParams, traits: ModelTraits | None = None) -> GenerationPlan:
    """Decide everything about a job that needs no model weights; InvalidParamsError for what cannot run (a tag of
    another kind of extra network, bad LoRA arguments)."""
    traits = traits or ModelTraits()
    sampler = sampler_spec(params.sampler)
    if params.is_extras:
        return _extras_plan(params, traits, sampler)
    if params.is_detail_only:
        return _detail_plan(params, traits, sampler)
    if params.is_describe:
        nothing = PassConditioning((), ())
        tag = SamplingPass("describe", params.width, params.height, 0, 0, 0, None, nothing, 0, sampler, params.schedule)
        return GenerationPlan(params, traits, sampler, params.schedule, "", "", (), (tag,))
    prompt, loras = read_loras(params.prompt)
    negative, negative_loras = read_loras(params.negative_prompt)
    if len(loras) + len(negative_loras) > MAX_LORA_TAGS:
        raise InvalidParamsError(
            f"The prompts call {len(loras) + len(negative_loras)} LoRAs; one job may use at most {MAX_LORA_TAGS}."
        )
    scale = traits.latent_scale

    # A1111 counts prompt-editing steps in model calls: twice the steps for second-order samplers.
    total_steps = params.steps * 2 if sampler.second_order else params.steps
    first_kind: PassKind = "img2img" if params.init_image is not None else "txt2img"
    schedule = effective_schedule(sampler, params.schedule)
    first = _sampling_pass(
        sampler, schedule, first_kind, params.width, params.height, params.steps, params.denoising_strength,
        _conditioning(prompt, negative, total_steps, None),
    )  # fmt: skip
    passes = [first]
    if params.enable_hr:
        (up_w, up_h), (width, height) = hires_sizes(params, scale)
        hr_sampler = sampler_spec(params.hr_sampler) if params.hr_sampler else sampler
        hr_schedule = effective_schedule(hr_sampler, params.hr_schedule or params.schedule)
        hr_steps = params.hr_steps or params.steps
        # The hires pass's prompt editing counts its own sampler's model calls (A1111's calculate_hr_conds).
        hr_total = hr_steps * 2 if hr_sampler.second_order else hr_steps
        hires = _sampling_pass(
            hr_sampler, hr_schedule, "hires", width, height, hr_steps, params.denoising_strength,
            _conditioning(prompt, negative, total_steps, hr_total), upscale=Upscale(params.hr_upscaler, up_w, up_h),
        )  # fmt: skip
        target = hires_size(params.width, params.height, params.hr_scale, params.hr_resize_x, params.hr_resize_y)
        passes.append(dataclasses.replace(hires, condition_size=target))
    return GenerationPlan(
        params=params,
        traits=traits,
        sampler=sampler,
        schedule=schedule,
        prompt=prompt,
        negative_prompt=negative,
        loras=loras + negative_loras,
        passes=tuple(passes),
        infotext_fields=tuple(_infotext_fields(params, sampler, flux=traits.family == "flux").items()),
    )


def _extras_plan(params: GenerationParams, traits: ModelTraits, sampler: SamplerSpec) -> GenerationPlan:
    """An upscale without diffusion: one pass of no model calls, whose size is the output's."""
    width, height = params.extras_size()
    nothing = PassConditioning((), ())
    upscale = Upscale(params.extras_upscaler or "None", width, height)
    extras = SamplingPass("extras", width, height, 0, 0, 0, None, nothing, 0, sampler, params.schedule, upscale)
    return GenerationPlan(params, traits, sampler, params.schedule, "", "", (), (extras,))


def _detail_plan(params: GenerationParams, traits: ModelTraits, sampler: SamplerSpec) -> GenerationPlan:
    """The detailer alone on a finished image of the job (Fix faces): nothing sampled before it; the image keeps the
    job's size and parameter text, with the detailer's fields."""
    width, height = output_size(params, traits.latent_scale)
    nothing = PassConditioning((), ())
    detail = SamplingPass("detail", width, height, 0, 0, 0, None, nothing, 0, sampler, params.schedule)
    prompt, loras = read_loras(params.prompt)
    fields = _infotext_fields(params, sampler, flux=traits.family == "flux")
    return GenerationPlan(params, traits, sampler, effective_schedule(sampler, params.schedule), prompt,
                          params.negative_prompt, loras, (detail,), tuple(fields.items()))  # fmt: skip


# The detailer's pass costs its inpaint's model calls; a region is assumed per tab and image (detection finds how many).
def detail_cost(params: GenerationParams, tab: DetailerTab) -> float:
    """One region's inpaint, in cost units: its steps scaled by the strength, at the inpaint size."""
    width, height = (
        (tab.inpaint_width, tab.inpaint_height) if tab.use_inpaint_width_height else (params.width, params.height)
    )
    steps = tab.steps if tab.use_steps else params.steps
    calls = max(1, int(steps * tab.denoising_strength))
    return calls * width * height / _UNIT_PIXELS


def detail_params(
    params: GenerationParams, tab: DetailerTab, *, prompt: str, negative: str, image: int, region: int
) -> GenerationParams:
    """The img2img inpaint ADetailer runs for one region (`get_i2i_p` and `fix_p2`): the image's own seed and
    variation seed plus the region's index, "only masked" at the tab's settings, `Masked content: original`, the
    job's size (its first pass's), steps, CFG, sampler, clip skip, model and VAE unless the tab has its own."""
    sampler, schedule = params.sampler, params.schedule
    if tab.use_sampler:
        sampler = params.sampler if tab.sampler == "Use same sampler" else tab.sampler
        schedule = params.schedule if tab.scheduler == USE_SAME_SCHEDULER else tab.scheduler
        spec, schedule = resolve_sampler(sampler, schedule)
        sampler = spec.name
    width, height = (
        (tab.inpaint_width, tab.inpaint_height) if tab.use_inpaint_width_height else (params.width, params.height)
    )
    return GenerationParams(
        prompt=prompt,
        negative_prompt=negative,
        model=tab.checkpoint if tab.use_checkpoint and tab.checkpoint else params.model,
        seed=params.image_seeds()[image] + region,
        subseed=params.image_subseeds()[image] + region,
        subseed_strength=params.subseed_strength,
        steps=tab.steps if tab.use_steps else params.steps,
        sampler=sampler,
        schedule=schedule,
        cfg_scale=tab.cfg_scale if tab.use_cfg_scale else params.cfg_scale,
        width=width,
        height=height,
        clip_skip=tab.clip_skip if tab.use_clip_skip else params.clip_skip,
        init_image="detail",  # the image and mask travel with the run, not through the blob store
        mask="detail",
        denoising_strength=tab.denoising_strength,
        mask_blur=tab.mask_blur,
        inpainting_fill="original",
        inpaint_full_res=tab.inpaint_only_masked,
        inpaint_full_res_padding=tab.inpaint_padding,
        initial_noise_multiplier=tab.noise_multiplier if tab.use_noise_multiplier else 1.0,
        seed_resize_from_w=params.seed_resize_from_w,
        seed_resize_from_h=params.seed_resize_from_h,
        rng=params.rng,
        ensd=params.ensd,
        vae=tab.vae if tab.use_vae else params.vae,
        tiling=params.tiling,
    )


def hires_sizes(params: GenerationParams, latent_scale: int = 8) -> tuple[tuple[int, int], tuple[int, int]]:
    """The hires pass's (upscaled size, final size), in whole latent pixels: A1111's target resolution, and where
    both hires sides are given, that size after the overhang is cropped (A1111's truncate_x/y)."""
    up_w, up_h = hires_size(params.width, params.height, params.hr_scale, params.hr_resize_x, params.hr_resize_y)
    up_w, up_h = up_w // latent_scale * latent_scale, up_h // latent_scale * latent_scale
    if params.hr_resize_x and params.hr_resize_y:
        return (up_w, up_h), (
            params.hr_resize_x // latent_scale * latent_scale,
            params.hr_resize_y // latent_scale * latent_scale,
        )
    return (up_w, up_h), (up_w, up_h)


def output_size(params: GenerationParams, latent_scale: int = 8) -> tuple[int, int]:
    """The size of the images a job returns."""
    if params.is_extras:
        return params.extras_size()
    return hires_sizes(params, latent_scale)[1] if params.enable_hr else (params.width, params.height)


def _conditioning(prompt: str, negative: str, total_steps: int, hires_steps: int | None) -> PassConditioning:
    def schedule(text: str) -> TextSchedule:
        [entries] = get_learned_conditioning_prompt_schedules([text], total_steps, hires_steps)
        return tuple((int(end), str(part)) for end, part in entries)

    split = split_and(prompt)
    if len(split) > MAX_AND_PARTS:
        raise InvalidParamsError(
            f"The prompt has {len(split)} `AND` parts; at most {MAX_AND_PARTS}, since each part is one more model call "
            "at every step."
        )
    parts = tuple(PromptPart(schedule(text), weight) for text, weight in split)
    return PassConditioning(parts, schedule(negative))


def _sampling_pass(
    sampler: SamplerSpec,
    schedule: str,
    kind: PassKind,
    width: int,
    height: int,
    steps: int,
    denoise: float | None,
    conditioning: PassConditioning,
    *,
    upscale: Upscale | None = None,
) -> SamplingPass:
    if kind == "txt2img":
        schedule_steps, run_steps, denoise = steps, steps, None
    elif not denoise:
        schedule_steps, run_steps = steps, 0  # strength 0 changes nothing, as in A1111
    else:
        schedule_steps, run_steps = img2img_steps(steps, denoise, hires=kind == "hires")
    calls = unet_calls(sampler, schedule_steps, run_steps, from_noise=kind == "txt2img")
    return SamplingPass(
        kind, width, height, steps, schedule_steps, run_steps, denoise, conditioning, calls, sampler, schedule, upscale
    )


def img2img_steps(steps: int, denoise: float, *, hires: bool = False) -> tuple[int, int]:
    """A1111's `setup_img2img_steps` as (schedule length, steps run): img2img runs the last
    `int(min(denoise, 0.999) * steps) + 1` of a `steps` schedule; the hires pass runs exactly `steps` of an
    `int(steps / min(denoise, 0.999))` schedule."""
    if hires:
        return int(steps / min(denoise, 0.999)), steps
    return steps, int(min(denoise, 0.999) * steps) + 1


def a1111_grid_length(steps: int) -> int:
    """How many timesteps A1111's DDIM/PLMS grid has for `steps`: `range(0, 1000, 1000 // steps)`."""
    return len(range(0, 1000, max(1000 // steps, 1)))


def unet_calls(sampler: SamplerSpec, schedule_steps: int, run_steps: int, *, from_noise: bool) -> int:
    """Model calls (one CFG batch each) a pass makes, following each family's loop."""
    if run_steps == 0:
        return 0
    if sampler.family == "a1111-timesteps":
        grid = a1111_grid_length(schedule_steps)
        length = grid if from_noise else min(run_steps - 1, grid)  # img2img walks timesteps[:t_enc]
        if sampler.function == "unipc":
            return max(length, 0)  # one model call per timestep of the grid
        if length < 2:
            return 0  # A1111 runs no model call then either
        return length - 1 + (1 if sampler.function == "plms" else 0)  # PLMS's first step is a pseudo Heun step
    steps = min(run_steps, schedule_steps)
    if sampler.function == "sample_dpm_adaptive":
        return DPM_ADAPTIVE_CALLS
    # Second-order samplers call the model twice per step, except on the last step into sigma 0 (an Euler step).
    return 2 * steps - 1 if sampler.second_order else steps


def _num(value: float | None) -> str | None:
    if value is None:
        return None
    return str(int(value)) if float(value).is_integer() else str(value)


def _infotext_fields(params: GenerationParams, sampler: SamplerSpec, *, flux: bool = False) -> dict[str, str | None]:
    """The parameter-text fields this job adds beyond the fixed ones, in A1111's order (hashes come later)."""
    fields: dict[str, str | None] = {}
    if params.init_image is not None or params.enable_hr:
        fields["Denoising strength"] = _num(params.denoising_strength)
    # ADetailer adds its fields in its script's `process`, before the processing's own init adds the hires and mask
    # fields (Denoising strength has a fixed slot).
    fields.update(detailer_fields(params.detailers))
    if params.mask is not None:  # in the order A1111's img2img init adds them
        if params.inpainting_mask_invert:
            fields["Mask mode"] = "Inpaint not masked"
        if params.mask_blur > 0:
            fields["Mask blur"] = str(params.mask_blur)
        if params.inpaint_full_res:
            fields["Inpaint area"] = "Only masked"
            fields["Masked area padding"] = str(params.inpaint_full_res_padding)
        if params.inpainting_fill != "original":
            fields["Masked content"] = params.inpainting_fill
    if params.enable_hr:
        # A1111 writes `Hires sampler` when it differs, and `Hires schedule type` (during the hires pass) when a
        # schedule function runs there whose label differs from the `Schedule type` the first pass recorded.
        hr_sampler = sampler_spec(params.hr_sampler) if params.hr_sampler else sampler
        if params.hr_sampler:
            fields["Hires sampler"] = params.hr_sampler
        hr_label = effective_schedule(hr_sampler, params.hr_schedule or params.schedule)
        first_label = effective_schedule(sampler, params.schedule)
        recorded = None if first_label == "Automatic" or sampler.timesteps else first_label
        if hr_label != "Automatic" and not hr_sampler.timesteps and hr_label != recorded:
            fields["Hires schedule type"] = hr_label
        if params.hr_resize_x or params.hr_resize_y:
            fields["Hires resize"] = f"{params.hr_resize_x}x{params.hr_resize_y}"
        else:
            fields["Hires upscale"] = _num(params.hr_scale)
        fields["Hires steps"] = str(params.hr_steps) if params.hr_steps else None
        fields["Hires upscaler"] = params.hr_upscaler
        # Forge's hires CFG: written for every Flux hires job, as Forge does; for SD only where it was set apart.
        hr_cfg = params.hr_cfg_scale if params.hr_cfg_scale is not None else params.cfg_scale
        if flux or hr_cfg != params.cfg_scale:
            fields["Hires CFG Scale"] = _num(hr_cfg)
        if flux:  # its value is the pipeline's to write: only a guidance-distilled (dev) model uses it
            fields["Hires Distilled CFG Scale"] = None
    if params.seed_resize_from_w > 0 and params.seed_resize_from_h > 0:
        fields["Seed resize from"] = f"{params.seed_resize_from_w}x{params.seed_resize_from_h}"
    if params.ensd and sampler.uses_ensd:
        fields["ENSD"] = str(params.ensd)
    if params.rng != "GPU":
        fields["RNG"] = params.rng
    if params.tiling:
        fields["Tiling"] = "True"
    return fields
