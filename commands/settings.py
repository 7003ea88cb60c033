"""`/settings`: defaults for /imagine layered server -> channel -> user -> request, and ceilings.

`set|show|reset` are each member's own defaults. `server` and `channel` are for admins (checked when they run):
defaults for everyone here (model, VAE, sampler, schedule, steps, size or aspect, CFG, negative prompt, clip skip,
batch size) and ceilings (max steps, pixels, batch, queued jobs per user) that only ever lower the bot's config.
`show` says where each effective value comes from. Everything is stored in the job store and survives restarts.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, cast

import discord
from discord import app_commands
from discord.ext import commands

from bot.checks import admin_guild
from bot.client import scope_channel
from bot.errors import send_ephemeral
from bot.layers import CEILING_LABELS, DEFAULT_LABELS, ceilings, checked_ceilings, layer_text, show_text
from commands.choices import matching
from commands.defaults import checked_defaults, checked_layer, merged_layer
from commands.styles import style_choices
from engine.errors import EaselError, InvalidParamsError
from engine.request import CHANNEL, CONFIG, PLAIN_UPSCALERS, SERVER, USER, Layer, stack
from engine.samplers import sampler_names, schedule_names
from engine.styles import resolve_styles

if TYPE_CHECKING:
    from bot.client import EaselBot

log = logging.getLogger(__name__)

# Stored key -> how /settings names a user's own defaults, in the order shown.
SETTING_LABELS = {
    "sampler": "Sampler",
    "schedule": "Schedule type",
    "steps": "Steps",
    "cfg_scale": "CFG scale",
    "distilled_cfg_scale": "Distilled CFG scale",
    "width": "Width",
    "height": "Height",
    "negative_prompt": "Negative prompt",
}
_NAMES = {label.lower(): key for key, label in (DEFAULT_LABELS | CEILING_LABELS).items()} | {
    key.lower(): key for key in DEFAULT_LABELS | CEILING_LABELS
}


# The options of `/settings server` and `/settings channel`, described once.
LAYER_OPTIONS = {
    "model": "Default model",
    "vae": "Default VAE: Automatic, None, or one from the VAE folder",
    "sampler": "Default sampler, e.g. DPM++ 2M",
    "schedule": "Default schedule type, e.g. Karras",
    "steps": "Default steps",
    "width": "Default width in pixels (replaces an aspect ratio)",
    "height": "Default height in pixels (replaces an aspect ratio)",
    "aspect": "Default aspect ratio, e.g. 2:3, at the model's usual pixel count (replaces a size)",
    "cfg_scale": "Default CFG scale",
    "distilled_cfg_scale": "Default distilled CFG scale of Flux dev models (Forge's; 3.5)",
    "negative_prompt": "Default negative prompt",
    "clip_skip": "Default clip skip",
    "batch_size": "Default number of images",
    "style": "Default style(s) from /style list, comma-separated",
    "upscaler": "Upscaler of the Upscale buttons and /upscale: a model from the upscaler folder, Lanczos or Nearest",
    "detailer": "Fix faces or hands on every image (ADetailer): a detector, or None; also the Fix faces button's",
    "max_steps": "Ceiling: most steps a request may use (the lowest of config, server, channel wins)",
    "max_pixels": "Ceiling: most pixels (width x height) asked for; the size after hires fix is lowered alike",
    "max_batch": "Ceiling: most images in one request",
    "max_queue": "Ceiling: most jobs one member may have waiting or running",
    "clear": "Settings to remove, comma-separated (e.g. steps, max_batch), or all",
}


def defaults_text(defaults: Mapping[str, Any]) -> str:
    if not defaults:
        return "You have no defaults of your own: /imagine uses this server's and the model's."
    lines = ["**Your /imagine defaults** (options you give in a request still win)"]
    lines += [f"- {label}: `{defaults[key]}`" for key, label in SETTING_LABELS.items() if key in defaults]
    return "\n".join(lines)


def cleared_keys(text: str | None) -> set[str]:
    """`clear:` as an admin types it: `all`, or setting names (keys or labels) separated by commas."""
    if not text:
        return set()
    names = [part.strip().lower().replace("-", "_") for part in text.split(",") if part.strip()]
    if names == ["all"]:
        return set(DEFAULT_LABELS) | set(CEILING_LABELS)
    unknown = [name for name in names if name not in _NAMES and name.replace("_", " ") not in _NAMES]
    if unknown:
        known = ", ".join(f"`{key}`" for key in (*DEFAULT_LABELS, *CEILING_LABELS))
        raise InvalidParamsError(f"Nothing called `{unknown[0][:40]}` to clear. Give `all` or any of: {known}.")
    return {_NAMES.get(name) or _NAMES[name.replace("_", " ")] for name in names}


class SettingsCog(commands.Cog):
    settings = app_commands.Group(
        name="settings", description="Defaults for /imagine: yours, the channel's, the server's"
    )

    def __init__(self, bot: EaselBot) -> None:
        self.bot = bot

    def _model(self, interaction: discord.Interaction[EaselBot]) -> str:
        """The model a member's request would use here when it names none."""
        stored = stack(self.bot.layers(interaction.guild_id, scope_channel(interaction))).get("model")
        if stored is not None:
            try:
                return self.bot.registry.resolve(str(stored[0])).name
            except EaselError:
                pass
        return self.bot.registry.default_model(self.bot.settings.default_model)

    # -- a member's own ---------------------------------------------------------------------------------------

    @settings.command(name="set", description="Set your defaults for /imagine (only the options you give change)")
    @app_commands.describe(
        sampler="Sampler, e.g. DPM++ 2M or Euler a",
        schedule="Schedule type, e.g. Karras",
        steps="Denoising steps",
        cfg_scale="CFG scale",
        distilled_cfg_scale="Distilled CFG scale of Flux dev models (Forge's; 3.5)",
        width="Width in pixels, a multiple of 8",
        height="Height in pixels, a multiple of 8",
        negative_prompt="Negative prompt used when a request gives none",
    )
    async def set_defaults(
        self,
        interaction: discord.Interaction[EaselBot],
        sampler: str | None = None,
        schedule: str | None = None,
        steps: int | None = None,
        cfg_scale: float | None = None,
        distilled_cfg_scale: app_commands.Range[float, 0.0, 30.0] | None = None,
        width: int | None = None,
        height: int | None = None,
        negative_prompt: str | None = None,
    ) -> None:
        given = {
            "sampler": sampler,
            "schedule": schedule,
            "steps": steps,
            "cfg_scale": cfg_scale,
            "distilled_cfg_scale": distilled_cfg_scale,
            "width": width,
            "height": height,
            "negative_prompt": negative_prompt,
        }
        changes = {key: value for key, value in given.items() if value is not None}
        if not changes:
            await interaction.response.send_message("Nothing to set: give at least one option.", ephemeral=True)
            return
        model = self._model(interaction)
        merged = checked_defaults(
            self.bot.store.user_defaults(interaction.user.id) | changes,
            model=model,
            limits=self.bot.ceilings_here(interaction).limits,
            model_defaults=self.bot.registry.defaults_for(model),
        )
        self.bot.store.set_user_defaults(interaction.user.id, merged)
        log.info("user %s set defaults: %s", interaction.user.id, ", ".join(sorted(changes)))
        await interaction.response.send_message(defaults_text(merged), ephemeral=True)

    @settings.command(
        name="show", description="Show the defaults and limits /imagine uses for you here, and from where"
    )
    async def show(self, interaction: discord.Interaction[EaselBot]) -> None:
        scopes = self.bot.layers(interaction.guild_id, scope_channel(interaction))
        mine = Layer(USER, self.bot.store.user_defaults(interaction.user.id))
        effective = stack([*scopes, mine])
        model = effective.pop("model", None) or (
            self.bot.registry.default_model(self.bot.settings.default_model),
            CONFIG,
        )
        here = ceilings(self.bot.limits, self.bot.settings.max_queued_per_user, scopes)
        await send_ephemeral(interaction, show_text(effective, here, model=(str(model[0]), model[1])))

    @settings.command(name="reset", description="Forget your defaults for /imagine")
    async def reset(self, interaction: discord.Interaction[EaselBot]) -> None:
        self.bot.store.set_user_defaults(interaction.user.id, {})
        await interaction.response.send_message(
            "Your defaults are gone: /imagine uses this server's and the model's.", ephemeral=True
        )

    # -- admins: the server's and a channel's -----------------------------------------------------------------

    async def _layer(
        self,
        interaction: discord.Interaction[EaselBot],
        model: str | None = None,
        vae: str | None = None,
        sampler: str | None = None,
        schedule: str | None = None,
        steps: app_commands.Range[int, 1, 1000] | None = None,
        width: app_commands.Range[int, 8, 8192] | None = None,
        height: app_commands.Range[int, 8, 8192] | None = None,
        aspect: str | None = None,
        cfg_scale: float | None = None,
        distilled_cfg_scale: app_commands.Range[float, 0.0, 30.0] | None = None,
        negative_prompt: str | None = None,
        clip_skip: app_commands.Range[int, 1, 12] | None = None,
        batch_size: app_commands.Range[int, 1, 100] | None = None,
        style: str | None = None,
        upscaler: str | None = None,
        detailer: str | None = None,
        max_steps: app_commands.Range[int, 1, 1000] | None = None,
        max_pixels: app_commands.Range[int, 4096, 67108864] | None = None,
        max_batch: app_commands.Range[int, 1, 100] | None = None,
        max_queue: app_commands.Range[int, 1, 1000] | None = None,
        clear: str | None = None,
    ) -> None:
        """`/settings server` and `/settings channel`: one signature, the layer named by the command."""
        given = dict(locals())
        scope = SERVER if interaction.command is not None and interaction.command.name == SERVER else CHANNEL
        await self._set_scope(interaction, scope, given)

    app_commands.describe(**LAYER_OPTIONS)(_layer)
    server = settings.command(name=SERVER, description="Admins: defaults and ceilings for everyone on this server")(
        _layer
    )
    channel = settings.command(
        name=CHANNEL, description="Admins: defaults and ceilings for this channel (over the server's)"
    )(_layer)

    async def _set_scope(
        self, interaction: discord.Interaction[EaselBot], scope: str, given: Mapping[str, Any]
    ) -> None:
        """Check and store an admin's change to the server's or this channel's layer, then show the layer."""
        guild_id = admin_guild(interaction, self.bot.settings, f"change this {scope}'s settings")
        cleared = cleared_keys(given.get("clear"))
        changes = {key: value for key, value in given.items() if key in DEFAULT_LABELS and value is not None}
        new_ceilings = {key: int(value) for key, value in given.items() if key in CEILING_LABELS and value is not None}
        if not changes and not new_ceilings and not cleared:
            await send_ephemeral(interaction, "Nothing to change: give at least one setting, or `clear`.")
            return
        channel_id = scope_channel(interaction)
        key = f"guild:{guild_id}" if scope == SERVER else f"channel:{channel_id}"
        registry = self.bot.registry
        if "model" in changes:
            changes["model"] = registry.resolve(str(changes["model"])).name
        stored_defaults, stored_ceilings = self.bot.store.scope_settings(key)
        if scope == SERVER:
            server_model = self.bot.store.guild_default_model(guild_id)
            if server_model:
                stored_defaults = {"model": server_model, **stored_defaults}
        config = ceilings(self.bot.limits, self.bot.settings.max_queued_per_user, [])
        ceiling_layer = {k: v for k, v in stored_ceilings.items() if k not in cleared} | checked_ceilings(
            new_ceilings, config
        )
        defaults = merged_layer(stored_defaults, changes, cleared)
        layer = Layer(scope, defaults, ceiling_layer)
        # The defaults must fit the ceilings in force where they apply, these new ones included.
        below = [] if scope == SERVER else self.bot.layers(guild_id, None)
        limits = ceilings(self.bot.limits, self.bot.settings.max_queued_per_user, [*below, layer]).limits
        model = registry.default_model(self.bot.settings.default_model)
        with contextlib.suppress(EaselError):  # a stored default model that is gone: checked against the bot's
            model = registry.resolve(str(stack([*below, layer]).get("model", (model,))[0])).name
        if "style" in defaults:
            defaults["style"] = ", ".join(
                s.name for s in resolve_styles(str(defaults["style"]), self.bot.store.styles(guild_id))
            )
        if "upscaler" in defaults and str(defaults["upscaler"]) not in PLAIN_UPSCALERS:
            defaults["upscaler"] = self.bot.networks.resolve_upscaler(str(defaults["upscaler"]))
        if "detailer" in defaults and str(defaults["detailer"]).strip().lower() not in ("none", "off"):
            defaults["detailer"] = self.bot.networks.resolve_detector(str(defaults["detailer"]))
        if "vae" in defaults and str(defaults["vae"]).strip().lower() not in ("automatic", "none"):
            defaults["vae"] = self.bot.networks.resolve_vae(str(defaults["vae"]), registry.traits(model).family)
        defaults = checked_layer(defaults, model=model, limits=limits, model_defaults=registry.defaults_for(model))
        stored = dict(defaults)
        if scope == SERVER:  # the server's model is the one /model set chooses
            self.bot.store.set_guild_default_model(guild_id, stored.pop("model", None))
        self.bot.store.set_scope_settings(key, stored, ceiling_layer)
        log.info(
            "admin %s changed %s settings (%s): %s",
            interaction.user.id,
            scope,
            key,
            ", ".join(sorted({*changes, *new_ceilings, *cleared})),
        )
        await send_ephemeral(interaction, layer_text(scope, Layer(scope, defaults, ceiling_layer)))

    @set_defaults.autocomplete("sampler")
    @server.autocomplete("sampler")
    @channel.autocomplete("sampler")
    async def _sampler_choices(
        self, interaction: discord.Interaction[EaselBot], current: str
    ) -> list[app_commands.Choice[str]]:
        return matching(sampler_names(), current)

    @set_defaults.autocomplete("schedule")
    @server.autocomplete("schedule")
    @channel.autocomplete("schedule")
    async def _schedule_choices(
        self, interaction: discord.Interaction[EaselBot], current: str
    ) -> list[app_commands.Choice[str]]:
        return matching(schedule_names(), current)

    @server.autocomplete("model")
    @channel.autocomplete("model")
    async def _model_choices(
        self, interaction: discord.Interaction[EaselBot], current: str
    ) -> list[app_commands.Choice[str]]:
        return matching(self.bot.registry.names(), current)

    @server.autocomplete("style")
    @channel.autocomplete("style")
    async def _style_choices(
        self, interaction: discord.Interaction[EaselBot], current: str
    ) -> list[app_commands.Choice[str]]:
        return style_choices(self.bot.store, interaction.guild_id, current)

    @server.autocomplete("upscaler")
    @channel.autocomplete("upscaler")
    async def _upscaler_choices(
        self, interaction: discord.Interaction[EaselBot], current: str
    ) -> list[app_commands.Choice[str]]:
        return matching([*self.bot.networks.upscaler_names(), *PLAIN_UPSCALERS[:2]], current)

    @server.autocomplete("detailer")
    @channel.autocomplete("detailer")
    async def _detailer_choices(
        self, interaction: discord.Interaction[EaselBot], current: str
    ) -> list[app_commands.Choice[str]]:
        return matching(["None", *self.bot.networks.detector_names()], current)

    @server.autocomplete("vae")
    @channel.autocomplete("vae")
    async def _vae_choices(
        self, interaction: discord.Interaction[EaselBot], current: str
    ) -> list[app_commands.Choice[str]]:
        return matching(["Automatic", "None", *self.bot.networks.vae_names()], current)


async def setup(bot: commands.Bot) -> None:
    await bot.add_cog(SettingsCog(cast("EaselBot", bot)))
