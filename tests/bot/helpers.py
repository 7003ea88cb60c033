"""What the Discord tests read back from the stand-in: the bot's edits, replies and buttons."""

from __future__ import annotations

from tests.bot.harness import ALICE, Harness
from tests.bot.standin import EPHEMERAL, InteractionHandle, Json, Recorded, Standin, StandinUser, custom_ids

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def edits(standin: Standin, handle: InteractionHandle) -> list[Recorded]:
    return [r for r in standin.sent(handle, "PATCH") if r.path.endswith("/messages/@original")]


def contents(standin: Standin, handle: InteractionHandle) -> list[str]:
    return [r.json["content"] for r in edits(standin, handle) if r.json and "content" in r.json]


def job_id_of(standin: Standin, handle: InteractionHandle) -> str:
    return custom_ids(standin.original(handle))[0].rsplit(":", 1)[1]


async def slash(harness: Harness, name: str, user: StandinUser, /, **options: object) -> InteractionHandle:
    """Run `/name` (or `/group sub`) and wait until the bot has answered and its jobs have reported."""
    handle = await harness.standin.slash(name, user, **options)
    await harness.settle(handle)
    return handle


async def imagine(harness: Harness, user: StandinUser = ALICE, **options: object) -> InteractionHandle:
    return await slash(harness, "imagine", user, **options)


def callback_of(standin: Standin, handle: InteractionHandle) -> dict[str, object]:
    [callback] = [r for r in standin.sent(handle, "POST") if r.path.endswith("/callback")]
    assert isinstance(callback.json, dict)
    return callback.json


def assert_ephemeral(standin: Standin, handle: InteractionHandle, *phrases: str) -> str:
    body = callback_of(standin, handle)
    assert body["type"] == 4
    data = body["data"]
    assert isinstance(data, dict)
    assert data["flags"] & EPHEMERAL
    for phrase in phrases:
        assert phrase in data["content"]
    return str(data["content"])


async def click(harness: Harness, handle: InteractionHandle, action: str, user: StandinUser) -> InteractionHandle:
    message = harness.standin.original(handle)
    custom_id = next(c for c in custom_ids(message) if c.split(":")[1] == action)
    clicked = await harness.standin.click(int(message["id"]), custom_id, user)
    await harness.settle(clicked)
    return clicked


def assert_deferred_ephemeral(standin: Standin, handle: InteractionHandle) -> Json:
    """The bot answered "thinking" only to the user, then filled that placeholder: the message as it ended."""
    body = callback_of(standin, handle)
    assert body["type"] == 5
    data = body["data"]
    assert isinstance(data, dict)
    assert data["flags"] & EPHEMERAL
    message = standin.original(handle)
    assert message["flags"] & EPHEMERAL
    return message
