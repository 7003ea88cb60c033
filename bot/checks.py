"""Who counts as an Easel admin; checked on the server side whenever an admin-only action runs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands

from config.settings import Settings
from engine.errors import InvalidParamsError

if TYPE_CHECKING:
    from bot.client import EaselBot


class NotAdminError(app_commands.CheckFailure):
    """The user is not an Easel admin; the message is shown to them."""

    def __init__(self, action: str = "use this command") -> None:
        super().__init__(f"Only an Easel admin can {action}.")


def is_admin(interaction: discord.Interaction[EaselBot], settings: Settings) -> bool:
    """Admin: a listed user id, a member with a listed role, or a member with the Administrator permission."""
    user = interaction.user
    if user.id in settings.admin_user_ids:
        return True
    if not isinstance(user, discord.Member):
        return False
    if any(user.get_role(role_id) is not None for role_id in settings.admin_role_ids):
        return True
    return interaction.permissions.administrator


def admin_guild(interaction: discord.Interaction[EaselBot], settings: Settings, action: str) -> int:
    """The server an admin's change applies to, checked on the server side: NotAdminError (completing "Only an
    Easel admin can ...") for anyone else, and a clear refusal outside a server."""
    if interaction.guild_id is None:
        raise InvalidParamsError("That is a server setting: use it in a channel of the server.")
    if not is_admin(interaction, settings):
        raise NotAdminError(action)
    return interaction.guild_id


def admin_group(name: str, description: str) -> app_commands.Group:
    """A slash-command group for admins: hidden from members by default, guild-only. Hiding is not a check: the
    group's cog must check each use (`AdminCheck`)."""
    return app_commands.Group(
        name=name,
        description=description,
        guild_only=True,
        default_permissions=discord.Permissions(administrator=True),
    )


class AdminCheck:
    """Mixin for a cog of admin commands: every interaction is checked on the server side when it runs."""

    settings: Settings
    action = "use this command"  # completes "Only an Easel admin can ..."

    async def interaction_check(self, interaction: discord.Interaction[Any], /) -> bool:
        if not is_admin(interaction, self.settings):
            raise NotAdminError(self.action)
        return True
