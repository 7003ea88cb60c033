"""A command extension whose set-up fails, for the test that the bot loads each extension in isolation."""

from discord.ext import commands


async def setup(bot: commands.Bot) -> None:
    raise RuntimeError("this extension is broken on purpose")
