"""Who counts as an Easel admin; checked on the server side whenever an admin-only action runs."""

from __future__ import annotations

import discord
from discord import app_commands

from config.settings import Settings


class NotAdminError(app_commands.CheckFailure):
    """The user is not an Easel admin; the message is shown to them."""

    def __init__(self, action: str = "use this command") -> None:
        super().__init__(f"Only an Easel admin can {action}.")


def is_admin(interaction: discord.Interaction, settings: Settings) -> bool:
    """Admin: a listed user id, a member with a listed role, or a member with the Administrator permission."""
    user = interaction.user
    if user.id in settings.admin_user_ids:
        return True
    if not isinstance(user, discord.Member):
        return False
    if any(user.get_role(role_id) is not None for role_id in settings.admin_role_ids):
        return True
    return interaction.permissions.administrator
