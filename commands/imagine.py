"""`/imagine`: slash options (or a pasted A1111 parameter block) -> validated params -> the executor."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

import discord
from discord import app_commands
from discord.ext import commands

from bot.client import scope_channel
from bot.errors import withdraw
from bot.layers import SOURCE_NAMES, USER, Layer, ceilings, stack
from bot.uploads import check_declared, store_init_image, upload_pixel_limit
from commands.choices import matching
from commands.defaults import usable_defaults
from engine.prompts.flags import read_flags, size_for_aspect
from commands.styles import style_choices
from engine.errors import EaselError, ModelUnavailableError
from engine.infotext import ModelHint, looks_like_infotext
from engine.params import USE_SAME_SAMPLER, USE_SAME_SCHEDULER, GenerationParams, Limits, build_params
from engine.paste import pasted_model, read_pasted
from engine.prompts.extra_networks import remove_lora
from engine.samplers import sampler_names, schedule_names
from engine.styles import apply_styles, extract_styles, resolve_styles

if TYPE_CHECKING:
    from bot.client import EaselBot

log = logging.getLogger(__name__)

_PENDING_HASH = "0" * 64  # stands in for the init image's hash while the options are checked before the download


def with_lora(prompt: str, name: str, weight: float, notes: list[str]) -> str:
    """The prompt with `<lora:name:weight>` appended after a space, as A1111's LoRA card does. A tag for the same
    LoRA already in the prompt is replaced: the slash option wins, and a LoRA applied twice would double its effect.
    """
    kept, removed = remove_lora(prompt, name)
    notes.extend(f"The `lora` option replaced `{tag}` in the prompt." for tag in removed)
    kept = kept.rstrip()
    tag = f"<lora:{name}:{weight:g}>"
    return f"{kept} {tag}" if kept else tag


def layered(*layers: Mapping[str, Any]) -> dict[str, Any]:
    """Options from lowest to highest precedence; an empty value (None, "") in a layer leaves the one below."""
    merged: dict[str, Any] = {}
    for layer in layers:
        merged.update({key: value for key, value in layer.items() if value is not None and value != ""})
    return merged


class ImagineCog(commands.Cog):
    def __init__(self, bot: EaselBot) -> None:
        self.bot = bot

    @app_commands.command(name="imagine", description="Draw images from a text prompt with Stable Diffusion")
    @app_commands.describe(
        prompt="What to draw (A1111 syntax; trailing --ar 16:9 --no text --seed --steps --cfg; or a pasted block)",
        negative_prompt="What to avoid",
        steps="Denoising steps",
        sampler="Sampler, e.g. DPM++ 2M or Euler a",
        schedule="Schedule type, e.g. Karras (Automatic = the sampler's own)",
        cfg_scale="How closely to follow the prompt (CFG scale)",
        seed="Seed, 0 to 18446744073709551615; -1 or empty for a random one",
        width="Width in pixels, a multiple of 8",
        height="Height in pixels, a multiple of 8",
        model="Model (default: this server's default model)",
        batch_size="How many images",
        parameters="A pasted A1111 / civitai parameter block; the other options override it",
        init_image="Start from this image (img2img): PNG, JPEG or WebP, up to 20 MiB",
        denoising_strength="How much to change: of the init image (default 0.75), or in the hires pass (0.7)",
        hires="Hires fix: draw at the size, then upscale and refine",
        hires_scale="Hires fix: upscale by (default 2)",
        hires_steps="Hires fix: steps of the second pass (0 = same as steps)",
        hires_sampler="Hires fix: the second pass's sampler (default: Use same sampler)",
        hires_schedule="Hires fix: the second pass's schedule type (default: Use same scheduler)",
        lora="A LoRA to add (appends <lora:name:weight>; add more as tags in the prompt)",
        lora_weight="The LoRA's weight (default 1)",
        vae="VAE: Automatic (the model's), None (the checkpoint's own), or one from the VAE folder",
        style="This server's styles to apply, comma-separated (/style list shows them)",
    )
    async def imagine(
        self,
        interaction: discord.Interaction,
        prompt: str,
        negative_prompt: str | None = None,
        steps: int | None = None,
        sampler: str | None = None,
        schedule: str | None = None,
        cfg_scale: float | None = None,
        seed: str | None = None,
        width: int | None = None,
        height: int | None = None,
        model: str | None = None,
        batch_size: int | None = None,
        parameters: str | None = None,
        init_image: discord.Attachment | None = None,
        denoising_strength: app_commands.Range[float, 0.0, 1.0] | None = None,
        hires: bool | None = None,
        hires_scale: app_commands.Range[float, 1.0, 4.0] | None = None,
        hires_steps: app_commands.Range[int, 0, 150] | None = None,
        hires_sampler: str | None = None,
        hires_schedule: str | None = None,
        lora: str | None = None,
        lora_weight: app_commands.Range[float, -5.0, 5.0] | None = None,
        vae: str | None = None,
        style: str | None = None,
    ) -> None:
        pasted: dict[str, Any] = {}
        notes: list[str] = []
        hint = ModelHint(None, None)
        block = parameters
        if not block and looks_like_infotext(prompt):
            block, prompt = prompt, ""
        if block:
            paste = await self.bot.offload(read_pasted, block)
            pasted, hint = paste.options, paste.model
            notes.extend(paste.notes)
        scopes = self.bot.layers(interaction.guild_id, scope_channel(interaction))
        here = ceilings(self.bot.limits, self.bot.settings.max_queued_per_user, scopes)
        limits = here.limits
        server_styles = [] if interaction.guild_id is None else self.bot.store.styles(interaction.guild_id)
        pasted_styles: list[str] = []
        if server_styles and ("prompt" in pasted or "negative_prompt" in pasted):
            # A1111's paste ("Apply if any"): known styles are cut out of the pasted prompts and chosen again.
            pasted_styles, pasted["prompt"], pasted["negative_prompt"] = await self.bot.offload(
                extract_styles, server_styles, str(pasted.get("prompt", "")), str(pasted.get("negative_prompt", ""))
            )
        model_name = self.choose_model(model, hint, scopes, notes)
        defaults = self.bot.registry.defaults_for(model_name)
        traits = self.bot.registry.traits(model_name)
        if "vae" in pasted:
            pasted_vae = self.pasted_vae(str(pasted.pop("vae")), traits.family, notes)
            if pasted_vae is not None:
                pasted["vae"] = pasted_vae
        # Flags sit between a pasted block and the slash options: explicit options win over both.
        flags = read_flags(prompt, base_pixels=defaults.width * defaults.height, max_pixels=limits.max_pixels)
        explicit = {
            "prompt": flags.prompt,
            "negative_prompt": negative_prompt,
            "steps": steps,
            "sampler": sampler,
            "schedule": schedule,
            "cfg_scale": cfg_scale,
            "seed": seed,
            "width": width,
            "height": height,
            "batch_size": batch_size,
            "denoising_strength": denoising_strength,
            "enable_hr": hires,
            "hr_scale": hires_scale,
            "hr_steps": hires_steps,
            "hr_sampler": hires_sampler,
            "hr_schedule": hires_schedule,
            "vae": vae,
        }
        request = layered(pasted, flags.options, explicit)
        # Server, then channel, then the user's own defaults; each is checked alone, so one that today's limits
        # break is left out with a note and the others still apply.
        checked = [
            Layer(
                layer.source,
                usable_defaults(
                    layer.defaults,
                    model=model_name,
                    limits=limits,
                    model_defaults=defaults,
                    notes=notes,
                    source=layer.source,
                ),
            )
            for layer in (*scopes, Layer(USER, self.bot.store.user_defaults(interaction.user.id)))
        ]
        options = layered({key: value for key, (value, _) in stack(checked).items()}, request)
        if flags.avoid:
            options["negative_prompt"] = flags.negative_prompt(str(options.get("negative_prompt", "")))
        networks = self.bot.networks
        if lora:
            weight = 1.0 if lora_weight is None else lora_weight
            options["prompt"] = with_lora(str(options.get("prompt", "")), networks.resolve_lora(lora), weight, notes)
        elif lora_weight is not None:
            notes.append("Ignored `lora_weight`: no `lora` was chosen.")
        default_style = stack(scopes).get("style")
        style_names = style or ", ".join(pasted_styles) or (str(default_style[0]) if default_style else "")
        if style_names:
            options["prompt"], options["negative_prompt"] = apply_styles(
                str(options.get("prompt", "")),
                str(options.get("negative_prompt", "")),
                resolve_styles(style_names, server_styles),
            )
        # A LoRA the engine would refuse mid-queue (unknown, or made for another family) is refused now, ephemerally.
        layers = await self.bot.offload(self.bot.registry.layer_shapes, model_name)
        await self.bot.offload(
            networks.check_prompt,
            str(options.get("prompt", "")),
            str(options.get("negative_prompt", "")),
            traits=traits,
            layers=layers,
        )
        if init_image is None:
            params = await self.bot.offload(self.build, options, model_name, limits)
            await self.bot.runner.start_job(interaction, params, notes, max_queued=here.queue_cap)
            return
        # img2img: everything that can be refused without the file is refused first, ephemerally; the download
        # may outlast Discord's 3 s, so it happens after a "thinking" defer.
        upload_pixels = upload_pixel_limit(limits.max_pixels)
        check_declared(init_image, max_pixels=upload_pixels)
        await self.bot.offload(self.build, options | {"init_image": _PENDING_HASH}, model_name, limits)
        await interaction.response.defer(thinking=True)
        try:
            assert self.bot.downloads is not None  # opened in setup_hook
            digest, image_w, image_h = await store_init_image(
                self.bot.downloads, self.bot.blobs, init_image, max_pixels=upload_pixels, offload=self.bot.offload
            )
            if "width" not in request and "height" not in request:  # keep the image's aspect
                options["width"], options["height"] = size_for_aspect(
                    image_w,
                    image_h,
                    base_pixels=defaults.width * defaults.height,
                    max_pixels=limits.max_pixels,
                )
            params = await self.bot.offload(self.build, options | {"init_image": digest}, model_name, limits)
            await self.bot.runner.start_job(interaction, params, notes, max_queued=here.queue_cap)
        except EaselError as err:
            await withdraw(interaction, str(err))

    def build(self, options: Mapping[str, Any], model_name: str, limits: Limits) -> GenerationParams:
        """Validated params, their VAE (asked for, or the model's default) checked against the VAE folder and the
        model's family, and named as the file is."""
        registry = self.bot.registry
        params = build_params(options, model=model_name, limits=limits, defaults=registry.defaults_for(model_name))
        if params.vae is None:
            return params
        return params.replace(vae=self.bot.networks.resolve_vae(params.vae, registry.traits(model_name).family))

    def pasted_vae(self, name: str, family: str, notes: list[str]) -> str | None:
        """A pasted block's VAE where this server has one that fits, else none (the model's), said in a note: the
        same rule as for a pasted model."""
        if name.strip().lower() in ("automatic", "none"):
            return name
        try:
            return self.bot.networks.resolve_vae(name, family)
        except EaselError:
            notes.append(f"The pasted VAE `{name[:60]}` is not available here; used the model's.")
            return None

    def choose_model(self, requested: str | None, pasted: ModelHint, layers: Sequence[Layer], notes: list[str]) -> str:
        """The model option, else the pasted block's model where this server has it, else the channel's default,
        else the server's, else the bot's."""
        registry = self.bot.registry
        if requested:
            return registry.resolve(requested).name
        fallback = registry.default_model(self.bot.settings.default_model)
        for layer in layers:  # lowest first: a channel's default wins over the server's
            stored = layer.defaults.get("model")
            if not stored:
                continue
            try:
                fallback = registry.resolve(str(stored)).name
            except ModelUnavailableError:
                log.warning("%s default model %r is unavailable", layer.source, stored)
                whose = SOURCE_NAMES[layer.source].capitalize()
                notes.append(f"{whose}'s default model `{stored}` is unavailable; used `{fallback}`.")
        name, note = pasted_model(registry, pasted, fallback)
        if note is not None:
            notes.append(note)
        return name

    @imagine.autocomplete("sampler")
    async def _sampler_choices(self, interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
        return matching(sampler_names(), current)

    @imagine.autocomplete("schedule")
    async def _schedule_choices(self, interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
        return matching(schedule_names(), current)

    @imagine.autocomplete("hires_sampler")
    async def _hires_sampler_choices(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        return matching([USE_SAME_SAMPLER, *sampler_names()], current)

    @imagine.autocomplete("hires_schedule")
    async def _hires_schedule_choices(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        return matching([USE_SAME_SCHEDULER, *schedule_names()], current)

    @imagine.autocomplete("model")
    async def _model_choices(self, interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
        return matching(self.bot.registry.names(), current)

    @imagine.autocomplete("vae")
    async def _vae_choices(self, interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
        model = interaction.namespace.model or self.bot.registry.default_model(self.bot.settings.default_model)
        try:
            family = self.bot.registry.traits(str(model)).family
        except EaselError:
            family = None
        return matching(["Automatic", "None", *self.bot.networks.vae_names(family)], current)

    @imagine.autocomplete("style")
    async def _style_choices(self, interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
        return style_choices(self.bot.store, interaction.guild_id, current)

    @imagine.autocomplete("lora")
    async def _lora_choices(self, interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
        return matching(self.bot.networks.lora_names(), current)


async def setup(bot: commands.Bot) -> None:
    await bot.add_cog(ImagineCog(cast("EaselBot", bot)))
