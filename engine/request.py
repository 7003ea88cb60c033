"""One request, resolved once. Every way to ask for a job (`/imagine`, Parameters' Run again and Edit, the Edit
form, the job buttons, `/show`, resumed jobs, the CLI) describes what was asked as a `Request`, and `resolve` turns
it into validated params and the notes for the user, with the same layers, the same pre-checks and the same
messages everywhere. Pure: no Discord, no torch; the models, LoRAs and VAEs come in as a `Catalog`.

Precedence, lowest first: the stored layers (this server, this channel, your `/settings`), or a base job for a
button; a pasted block; the prompt's inline flags (`--ar`, `--no`...); the explicit options.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from engine.detailer import DetailerTab
from engine.detectors.files import install_hint as detector_install_hint
from engine.errors import HiresTooLargeError, InvalidParamsError, ModelUnavailableError
from engine.infotext import ModelHint, looks_like_infotext
from engine.params import (
    OPTION_KEYS,
    GenerationParams,
    Limits,
    ModelDefaults,
    build_params,
    check_option,
    describe_params,
    extras_params,
    is_model_upscaler_name,
)
from engine.paste import pasted_model, read_pasted
from engine.prompts.extra_networks import remove_lora
from engine.prompts.flags import parse_ratio, read_flags, size_for_aspect
from engine.samplers import resolve_sampler, schedule_label, schedule_names
from engine.styles import Style, apply_styles, extract_styles, resolve_styles
from engine.upscalers.files import install_hint

SERVER, CHANNEL, USER, CONFIG = "server", "channel", "user", "config"
SOURCE_NAMES = {SERVER: "this server", CHANNEL: "this channel", USER: "you", CONFIG: "the bot's config"}
_SIZE = ("width", "height")
# Stored keys that are not options of their own: the model is chosen apart, a style is applied to the prompts.
_CHOSEN_APART = ("model", "style", "upscaler")  # the upscaler is the Upscale buttons' and /upscale's


@dataclass(frozen=True)
class Layer:
    """What one scope stored: defaults for /imagine and ceilings (only server and channel layers have those)."""

    source: str
    defaults: Mapping[str, Any] = field(default_factory=dict)
    ceilings: Mapping[str, int] = field(default_factory=dict)


def stack(layers: Sequence[Layer]) -> dict[str, tuple[Any, str]]:
    """Each default's effective value and its layer, lowest layer first. A size and an aspect ratio replace each
    other: a layer that sets width or height drops a lower layer's aspect, and the reverse."""
    effective: dict[str, tuple[Any, str]] = {}
    for layer in layers:
        values = {key: value for key, value in layer.defaults.items() if value is not None and value != ""}
        if "aspect" in values:
            for key in _SIZE:
                effective.pop(key, None)
        if any(key in values for key in _SIZE):
            effective.pop("aspect", None)
        effective.update({key: (value, layer.source) for key, value in values.items()})
    return effective


def layered(*layers: Mapping[str, Any]) -> dict[str, Any]:
    """Options from lowest to highest precedence; an empty value (None, "") in a layer leaves the one below."""
    merged: dict[str, Any] = {}
    for layer in layers:
        merged.update({key: value for key, value in layer.items() if value is not None and value != ""})
    return merged


class _Entry(Protocol):
    @property
    def name(self) -> str: ...


class _Traits(Protocol):
    @property
    def family(self) -> str: ...


class ModelSource(Protocol):
    """What the resolver asks of the model registry."""

    def resolve(self, name: str) -> _Entry: ...
    def match(self, hint: ModelHint) -> str | None: ...
    def default_model(self, configured: str | None) -> str: ...
    def defaults_for(self, name: str) -> ModelDefaults: ...
    def traits(self, name: str) -> Any: ...
    def layer_shapes(self, name: str) -> Any: ...


class NetworkSource(Protocol):
    """What the resolver asks of the LoRA and VAE catalog."""

    def resolve_lora(self, name: str) -> str: ...
    def check_prompt(self, *prompts: str, traits: Any = None, layers: Any = None) -> None: ...
    def resolve_vae(self, name: str, family: str) -> str: ...
    def resolve_upscaler(self, name: str) -> str: ...
    def resolve_detector(self, name: str) -> str: ...
    def has_detector(self, name: str) -> bool: ...
    def detector_names(self) -> list[str]: ...
    def resolve_tagger(self, name: str | None) -> str: ...


@dataclass(frozen=True)
class Catalog:
    """The installed things a request may name: models (and the bot's configured default), LoRAs and VAEs."""

    models: ModelSource
    networks: NetworkSource
    default_model: str | None = None


@dataclass(frozen=True)
class UpscaleAsk:
    """An upscale without diffusion (A1111's Extras) of the request's image: the upscaler (None: the stored layers'
    `upscaler`, else Lanczos), by `scale` (default 4, as Extras) or to `size` (Scale to, crop off)."""

    upscaler: str | None = None
    scale: Any = None
    size: tuple[Any, Any] | None = None


@dataclass(frozen=True)
class DescribeAsk:
    """`/describe` of the request's image: the tagger (None: the first installed) and a general threshold (None:
    the tagger's own)."""

    tagger: str | None = None
    threshold: Any = None


@dataclass(frozen=True)
class Request:
    """What was asked, as every entry point describes it.

    `prompt` is the typed prompt (trailing flags and all; a pasted block typed as the prompt is read as one).
    `options` are the explicit options (`build_params` keys). `stored` are the server's, the channel's and the
    user's layers, lowest first; `base` is a job to start from instead (a button, `/show`, a resumed job), whose
    model is kept unless the request names one. `fallback_model` is the model when a pasted block names none that
    is here (the Edit form: the job's). `init_image` is an img2img upload's blob hash (a pasted block is then read
    as an img2img one) and `init_size` its size, whose aspect the request keeps when it sets no size.
    """

    prompt: str = ""
    options: Mapping[str, Any] = field(default_factory=dict)
    paste: str | None = None
    model: str | None = None
    stored: Sequence[Layer] = ()
    lora: str | None = None
    lora_weight: float | None = None
    style: str | None = None
    styles: Sequence[Style] = ()
    base: GenerationParams | None = None
    fallback_model: str | None = None
    init_image: str | None = None
    init_size: tuple[int, int] | None = None
    hires_off: str = "`hires: False`"  # how this entry point turns hires fix off, for messages
    upscale: UpscaleAsk | None = None  # an Extras upscale of `init_image` (of `init_size`) instead of a drawing
    describe: DescribeAsk | None = None  # tags for `init_image` (of `init_size`) instead of a drawing


@dataclass(frozen=True)
class Resolved:
    """The validated params, and what the user should be told about how the request was read."""

    params: GenerationParams
    notes: tuple[str, ...] = ()


def base_options(params: GenerationParams) -> dict[str, Any]:
    """Every option a stored job holds, as options (a resolved seed, a blob hash...): replaying them gives the
    same params. A job drawn with the checkpoint's own VAE keeps it, whatever the model's default is now."""
    options = {name: getattr(params, name) for name in OPTION_KEYS}
    if params.vae is None:
        options["vae"] = "None"
    return options


def with_lora(prompt: str, name: str, weight: float, notes: list[str]) -> str:
    """The prompt with `<lora:name:weight>` appended after a space, as A1111's LoRA card does. A tag for the same
    LoRA already in the prompt is replaced: the option wins, and a LoRA applied twice would double its effect."""
    kept, removed = remove_lora(prompt, name)
    notes.extend(f"The `lora` option replaced `{tag}` in the prompt." for tag in removed)
    kept = kept.rstrip()
    tag = f"<lora:{name}:{weight:g}>"
    return f"{kept} {tag}" if kept else tag


def resolve(request: Request, catalog: Catalog, limits: Limits, *, rng: random.Random | None = None) -> Resolved:
    """The request's params and notes, or InvalidParamsError / ModelUnavailableError with a message for the user.
    Everything the engine would refuse once the job runs (an unknown or misfit LoRA or VAE, a model that is not
    here) is refused here, before anything is queued."""
    if request.upscale is None and request.base is not None and request.base.is_extras:
        request = _upscale_again(request.base, request)  # `/show`, a resumed job: the same upscale, checked again
    if request.upscale is not None:
        return _resolve_upscale(request, request.upscale, catalog, limits)
    if request.describe is None and request.base is not None and request.base.is_describe:  # `/show`, a resumed job
        base = request.base
        ask = DescribeAsk(base.tagger, base.tag_threshold or None)
        request = replace(request, describe=ask, init_image=base.init_image, init_size=(base.width, base.height))
    if request.describe is not None:
        return _resolve_describe(request, request.describe, catalog)
    notes: list[str] = []
    prompt, block = request.prompt, request.paste
    if not block and looks_like_infotext(prompt):
        block, prompt = prompt, ""
    pasted: dict[str, Any] = {}
    hint = ModelHint(None, None)
    if block:
        paste = read_pasted(block, init_image=request.init_image)
        pasted, hint = dict(paste.options), paste.model
        notes.extend(paste.notes)
    pasted_styles: list[str] = []
    if request.styles and ("prompt" in pasted or "negative_prompt" in pasted):
        # A1111's paste ("Apply if any"): known styles are cut out of the pasted prompts and chosen again.
        pasted_styles, pasted["prompt"], pasted["negative_prompt"] = extract_styles(
            request.styles, str(pasted.get("prompt", "")), str(pasted.get("negative_prompt", ""))
        )
    models = catalog.models
    model = _choose_model(request, hint, catalog, notes)
    defaults = models.defaults_for(model)
    family = models.traits(model).family
    if block and paste.zero_terminal_snr and not getattr(models.traits(model), "ztsnr", False):
        notes.append(
            f"Noise Schedule: Zero Terminal SNR: `{model[:60]}` was not trained for it, so its own schedule was used."
        )
    if "vae" in pasted:
        pasted_vae = _pasted_vae(str(pasted.pop("vae")), family, catalog, notes)
        if pasted_vae is not None:
            pasted["vae"] = pasted_vae
    if is_model_upscaler_name(pasted.get("hr_upscaler")):
        pasted["hr_upscaler"] = _pasted_upscaler(str(pasted["hr_upscaler"]), catalog, notes)
    if "detailers" in pasted:
        pasted["detailers"] = _pasted_detailers(pasted["detailers"], catalog, notes)

    base_pixels = defaults.width * defaults.height
    flags = read_flags(prompt, base_pixels=base_pixels, max_pixels=limits.max_pixels)
    explicit = {**request.options, "prompt": flags.prompt}
    if flags.prompt.strip() and str(pasted.get("prompt", "")).strip() and flags.prompt != pasted["prompt"]:
        notes.append("Your prompt replaced the pasted block's prompt.")
    asked = layered(pasted, flags.options, explicit)
    if request.base is not None:
        below = base_options(request.base)
    else:
        checked = [Layer(layer.source, usable_layer(layer, defaults, limits, family, catalog, notes))
                   for layer in request.stored]  # fmt: skip
        below = {key: value for key, (value, _) in stack(checked).items()}
    options = layered(below, asked)
    if flags.avoid:
        options["negative_prompt"] = flags.negative_prompt(str(options.get("negative_prompt", "")))
    if request.lora:
        weight = 1.0 if request.lora_weight is None else request.lora_weight
        name = catalog.networks.resolve_lora(request.lora)
        options["prompt"] = with_lora(str(options.get("prompt", "")), name, weight, notes)
    elif request.lora_weight is not None:
        notes.append("Ignored `lora_weight`: no `lora` was chosen.")
    default_style = stack([layer for layer in request.stored if layer.source != USER]).get("style")
    style_names = request.style or ", ".join(pasted_styles) or (str(default_style[0]) if default_style else "")
    if style_names:
        options["prompt"], options["negative_prompt"] = apply_styles(
            str(options.get("prompt", "")),
            str(options.get("negative_prompt", "")),
            resolve_styles(style_names, request.styles),
        )
    if request.init_image is not None:
        options["init_image"] = request.init_image
        if request.init_size is not None and not any(key in asked for key in _SIZE):  # keep the image's aspect
            options["width"], options["height"] = size_for_aspect(
                *request.init_size, base_pixels=base_pixels, max_pixels=limits.max_pixels
            )

    # What the engine would refuse mid-queue is refused now: a LoRA unknown, or made for another family or shape.
    catalog.networks.check_prompt(
        str(options.get("prompt", "")),
        str(options.get("negative_prompt", "")),
        traits=models.traits(model),
        layers=models.layer_shapes(model),
    )
    try:
        params = build_params(options, model=model, limits=limits, defaults=defaults, rng=rng)
    except HiresTooLargeError as err:
        if (
            request.base is None
            and "enable_hr" in pasted
            and "enable_hr" not in layered(flags.options, request.options)
        ):
            raise HiresTooLargeError(
                f"{err} Hires fix is on because the pasted parameters have `Denoising strength: "
                f"{str(pasted.get('denoising_strength'))[:20]}` and no init image (A1111's txt2img reads that as "
                f"hires fix); turn it off with {request.hires_off}."
            ) from None
        raise
    if family == "flux":
        check_flux(params)
    if params.vae is not None:  # asked for, or the model's default: checked against the folder and the family
        params = params.replace(vae=catalog.networks.resolve_vae(params.vae, family))
    if params.enable_hr and is_model_upscaler_name(params.hr_upscaler):
        params = params.replace(hr_upscaler=catalog.networks.resolve_upscaler(params.hr_upscaler))
    if params.detailers:
        params = params.replace(detailers=tuple(_resolved_tab(tab, family, catalog) for tab in params.detailers))
    return Resolved(params, tuple(notes))


def check_flux(params: GenerationParams) -> None:
    """What a Flux.1 model cannot do, refused before the job queues: SD's timestep samplers and LCM (Flux runs the
    k-diffusion samplers on Forge's flow schedule), Align Your Steps (SD's sigma tables), VAEs from the VAE
    folder (a Flux model's VAE is its ae) and tiling (its transformer has no convolutions to wrap)."""
    for name in filter(None, (params.sampler, params.hr_sampler if params.enable_hr else None)):
        spec = resolve_sampler(name)[0]
        if spec.family != "k-diffusion" or spec.function == "sample_lcm":
            raise InvalidParamsError(
                f"Sampler {name} does not run on Flux models; use Euler (Forge's default) or another k-diffusion "
                "sampler such as DPM++ 2M."
            )
    for schedule in filter(None, (params.schedule, params.hr_schedule if params.enable_hr else None)):
        if schedule_label(schedule).startswith("Align Your Steps"):
            raise InvalidParamsError(f"Schedule {schedule} is made for SD models; Flux uses Simple (its default).")
    if params.vae is not None:
        raise InvalidParamsError("A Flux model decodes with its own ae; VAEs from the VAE folder are for SD models.")
    if params.tiling:
        raise InvalidParamsError("Tiling is not available for Flux models.")


def fix_faces_detector(layers: Sequence[Layer], catalog: Catalog) -> str:
    """The detector of the Fix faces button: the channel's or server's `detailer` where it is installed, else the
    installed face detector (the first whose name starts with `face`), else InvalidParamsError saying what to add."""
    stored = stack([layer for layer in layers if layer.source != USER]).get("detailer")
    if (
        stored
        and str(stored[0]).strip().lower() not in ("none", "off")
        and catalog.networks.has_detector(str(stored[0]))
    ):
        return catalog.networks.resolve_detector(str(stored[0]))
    names = catalog.networks.detector_names()
    faces = [name for name in names if name.lower().startswith("face")]
    if faces:
        return faces[0]
    raise InvalidParamsError(
        f"Fix faces needs a face detector, and none is installed here: {detector_install_hint('face_yolov8n.pt')}."
    )


def _pasted_detailers(tabs: Any, catalog: Catalog, notes: list[str]) -> tuple[DetailerTab, ...]:
    """A pasted block's detailer tabs whose detectors are here; a tab whose detector is not is dropped, said in a
    note that names the file to install."""
    kept = []
    for tab in tabs:
        if catalog.networks.has_detector(tab.model):
            kept.append(tab)
        else:
            hint = detector_install_hint(tab.model)
            name = tab.model[:60]
            notes.append(f"ADetailer model: {name} is not installed here ({hint}); that detailer was not run.")
    return tuple(kept)


def _resolved_tab(tab: DetailerTab, family: str, catalog: Catalog) -> DetailerTab:
    """A tab with its detector, checkpoint and VAE resolved to what is installed; InvalidParamsError otherwise."""
    changes: dict[str, Any] = {"model": catalog.networks.resolve_detector(tab.model)}
    if tab.use_checkpoint and tab.checkpoint and tab.checkpoint not in ("None", "Use same checkpoint"):
        model = catalog.models.resolve(tab.checkpoint).name
        if catalog.models.traits(model).family != family:
            raise InvalidParamsError(f"ADetailer checkpoint {tab.checkpoint[:60]!r} is of another model family.")
        changes["checkpoint"] = model
    else:
        changes.update(use_checkpoint=False, checkpoint=None)
    if tab.use_vae and tab.vae and tab.vae not in ("None", "Use same VAE"):
        changes["vae"] = catalog.networks.resolve_vae(tab.vae, family)
    else:
        changes.update(use_vae=False, vae=None)
    return tab.replace(**changes)


def _choose_model(request: Request, hint: ModelHint, catalog: Catalog, notes: list[str]) -> str:
    """The model option; else a base job's model; else the pasted block's model where it is here, falling back to
    `fallback_model`, the channel's default, the server's, then the bot's."""
    models = catalog.models
    if request.model:
        return models.resolve(request.model).name
    if request.base is not None and hint == ModelHint(None, None):
        return models.resolve(request.base.model).name
    if request.fallback_model is not None:
        fallback = models.resolve(request.fallback_model).name
    else:
        fallback = models.default_model(catalog.default_model)
        for layer in request.stored:  # lowest first: a channel's default wins over the server's
            stored = layer.defaults.get("model")
            if not stored:
                continue
            try:
                fallback = models.resolve(str(stored)).name
            except ModelUnavailableError:
                whose = SOURCE_NAMES[layer.source].capitalize()
                notes.append(f"{whose}'s default model `{str(stored)[:80]}` is unavailable; used `{fallback}`.")
    name, note = pasted_model(models, hint, fallback)
    if note is not None:
        notes.append(note)
    return name


def _pasted_vae(name: str, family: str, catalog: Catalog, notes: list[str]) -> str | None:
    """A pasted block's VAE where this server has one that fits, else none (the model's), said in a note: the
    same rule as for a pasted model."""
    if name.strip().lower() in ("automatic", "none"):
        return name
    try:
        return catalog.networks.resolve_vae(name, family)
    except InvalidParamsError:
        notes.append(f"The pasted VAE `{name[:60]}` is not available here; used the model's.")
        return None


PLAIN_UPSCALERS = ("Lanczos", "Nearest", "None")


def default_upscaler(layers: Sequence[Layer], catalog: Catalog, notes: list[str]) -> str | None:
    """The server's (or channel's) chosen upscaler model where it is still installed; None (with a note when one
    was chosen but is gone) otherwise."""
    stored = stack(layers).get("upscaler")
    if stored is None or not str(stored[0]).strip():
        return None
    name = str(stored[0])
    if name in PLAIN_UPSCALERS:
        return name
    try:
        return catalog.networks.resolve_upscaler(name)
    except InvalidParamsError:
        notes.append(f"{SOURCE_NAMES[stored[1]].capitalize()}'s upscaler `{name[:60]}` is not installed any more.")
        return None


def _upscale_again(base: GenerationParams, request: Request) -> Request:
    width, _, height = base.upscale_to.partition("x")
    size = (width, height) if base.upscale_to else None
    ask = UpscaleAsk(base.extras_upscaler, None if size else base.upscale_by, size)
    return dataclasses.replace(request, upscale=ask, init_image=base.init_image, init_size=(base.width, base.height))


def _resolve_upscale(request: Request, ask: UpscaleAsk, catalog: Catalog, limits: Limits) -> Resolved:
    """An Extras upscale: the upscaler checked against the folder, the output against the hires ceiling."""
    if request.init_image is None or request.init_size is None:
        raise InvalidParamsError("An upscale needs an image.")
    notes: list[str] = []
    name = ask.upscaler.strip() if ask.upscaler else default_upscaler(request.stored, catalog, notes) or "Lanczos"
    if name.startswith("Latent"):
        raise InvalidParamsError(
            f"{name} upscales inside hires fix only; an upscale without redrawing takes Lanczos, Nearest or an "
            "upscaler model."
        )
    if name not in PLAIN_UPSCALERS:
        if not is_model_upscaler_name(name):
            raise InvalidParamsError(f"Upscaler {name[:60]!r} is not an upscaler name.")
        name = catalog.networks.resolve_upscaler(name)
    model = request.base.model if request.base is not None else catalog.models.default_model(catalog.default_model)
    params = extras_params(
        init_image=request.init_image, source_size=request.init_size, upscaler=name, model=model, limits=limits,
        scale=ask.scale, size=ask.size,
    )  # fmt: skip
    return Resolved(params, tuple(notes))


def _resolve_describe(request: Request, ask: DescribeAsk, catalog: Catalog) -> Resolved:
    """`/describe`: the tagger checked against the folder, the threshold against its range."""
    if request.init_image is None or request.init_size is None:
        raise InvalidParamsError("/describe needs an image.")
    tagger = catalog.networks.resolve_tagger(ask.tagger)
    model = request.base.model if request.base is not None else catalog.models.default_model(catalog.default_model)
    params = describe_params(
        init_image=request.init_image, source_size=request.init_size, tagger=tagger, model=model,
        threshold=ask.threshold,
    )  # fmt: skip
    return Resolved(params)


def _pasted_upscaler(name: str, catalog: Catalog, notes: list[str]) -> str:
    """A pasted upscaler model where this server has it; else Lanczos (A1111 itself falls back to a plain resize
    for a name it does not have), with a note naming the file to install."""
    try:
        return catalog.networks.resolve_upscaler(name)
    except InvalidParamsError:
        notes.append(
            f"Hires upscaler: {name[:60]} is not installed here (the owner can add `{install_hint(name)[:80]}` to "
            "the upscaler folder); Lanczos was used instead."
        )
        return "Lanczos"


def layer_options(defaults: Mapping[str, Any], *, model_defaults: ModelDefaults, max_pixels: int) -> dict[str, Any]:
    """A layer's defaults as options: the model and style are chosen apart, an aspect ratio becomes a size of
    about the model's own pixel count (as `--ar` does)."""
    options = {key: value for key, value in defaults.items() if key not in _CHOSEN_APART}
    if "detailer" in options:  # stored by /settings as one detector's name
        options["detailers"] = options.pop("detailer")
    if "aspect" in options:
        ratio_w, ratio_h = parse_ratio(str(options.pop("aspect")), "The aspect ratio")
        options["width"], options["height"] = size_for_aspect(
            ratio_w, ratio_h, base_pixels=model_defaults.width * model_defaults.height, max_pixels=max_pixels
        )
    return options


def stored_option(key: str, value: Any, limits: Limits) -> dict[str, Any]:
    """One stored default checked on its own against today's limits, as options with canonical names (a combined
    sampler name such as `DPM++ 2M Karras` becomes a sampler and a schedule); InvalidParamsError if it breaks."""
    if key == "sampler":
        spec, schedule = resolve_sampler(str(value))
        return {"sampler": spec.name} | ({"schedule": schedule} if schedule != "Automatic" else {})
    if key == "schedule":
        by_lower = {name.lower(): name for name in schedule_names()}
        found = by_lower.get(" ".join(str(value).split()).lower())
        if found is None:
            raise InvalidParamsError(f"Unknown schedule type {str(value)[:40]!r}.")
        return {"schedule": found}
    if key == "vae":
        return {"vae": value}  # checked against the VAE folder by the caller
    return {key: check_option(key, value, limits)}


def usable_layer(
    layer: Layer, model_defaults: ModelDefaults, limits: Limits, family: str, catalog: Catalog, notes: list[str]
) -> dict[str, Any]:
    """One stored layer's defaults as options, each checked alone: one that today's limits (or models) break is
    left out with a note, and the rest still apply, rather than refusing a request for what it did not ask."""
    whose = "Your /settings" if layer.source == USER else f"{SOURCE_NAMES[layer.source].capitalize()}'s"
    kept: dict[str, Any] = {}
    try:
        raw = layer_options(layer.defaults, model_defaults=model_defaults, max_pixels=limits.max_pixels)
    except InvalidParamsError as err:  # the aspect ratio
        notes.append(f"{whose} default aspect ratio was not used: {err} See `/settings show`.")
        raw = layer_options(
            {k: v for k, v in layer.defaults.items() if k != "aspect"},
            model_defaults=model_defaults,
            max_pixels=limits.max_pixels,
        )
    for key, value in raw.items():
        if key not in OPTION_KEYS or value is None or value == "":
            continue
        try:
            found = stored_option(key, value, limits)
            if key == "vae" and str(value).strip().lower() not in ("automatic", "none"):
                catalog.networks.resolve_vae(str(value), family)
            for tab in found.get("detailers", ()):
                catalog.networks.resolve_detector(tab.model)
        except InvalidParamsError as err:
            notes.append(f"{whose} default {key.replace('_', ' ')} was not used: {err} See `/settings show`.")
            continue
        kept.update(found)
    if any(key in kept for key in _SIZE):
        width, height = kept.get("width", model_defaults.width), kept.get("height", model_defaults.height)
        if width * height > limits.max_pixels:
            notes.append(
                f"{whose} default size {width}x{height} was not used: it is over the {limits.max_pixels:,} pixels "
                "allowed here. See `/settings show`."
            )
            kept.pop("width", None)
            kept.pop("height", None)
    return kept
