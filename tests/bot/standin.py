"""A local Discord stand-in: an aiohttp server with the REST routes Easel uses and a zlib-stream gateway.

It records every request (method, path, JSON or multipart `payload_json` plus files), keeps the messages the bot
creates so button clicks can carry a real message object, and injects INTERACTION_CREATE events.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import itertools
import json
import re
import time
import zlib
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import BodyPartReader, web
from PIL import Image

API_PREFIX = "/api/v10"
APP_ID = 1100000000000000001
BOT_ID = 1100000000000000001  # Discord gives a bot user the application's id
GUILD_ID = 1200000000000000001
CHANNEL_ID = 1300000000000000001
OTHER_CHANNEL_ID = 1300000000000000002  # a second text channel of the same guild
ADMIN_ROLE_ID = 1400000000000000001
OWNER_ID = 1500000000000000001
DM_CHANNEL_BASE = 1600000000000000000
DISCORD_EPOCH_MS = 1420070400000

ADMINISTRATOR = 1 << 3
EVERYONE_PERMISSIONS = (1 << 10) | (1 << 11) | (1 << 15) | (1 << 16) | (1 << 31)  # view, send, attach, history, use

LOADING = 1 << 7  # message flag: a deferred "thinking" placeholder
EPHEMERAL = 1 << 6

Json = dict[str, Any]


@dataclass(frozen=True)
class StandinUser:
    id: int
    name: str
    roles: tuple[int, ...] = ()
    permissions: int = EVERYONE_PERMISSIONS

    def payload(self) -> Json:
        return {
            "id": str(self.id),
            "username": self.name,
            "discriminator": "0",
            "global_name": self.name.title(),
            "avatar": None,
            "bot": False,
        }


@dataclass(frozen=True)
class StandinAttachment:
    """A file a user attached to a slash command option; `size`, `width`, `height` are what Discord declares."""

    id: int
    filename: str
    data: bytes
    content_type: str | None
    size: int
    width: int | None
    height: int | None

    def payload(self, base_url: str) -> Json:
        url = f"{base_url}/attachments/{self.id}/{self.filename}"
        payload: Json = {"id": str(self.id), "filename": self.filename, "size": self.size, "url": url, "proxy_url": url}
        if self.content_type is not None:
            payload["content_type"] = self.content_type
        if self.width is not None and self.height is not None:
            payload["width"], payload["height"] = self.width, self.height
        return payload


@dataclass(frozen=True)
class RecordedFile:
    field: str
    filename: str
    content_type: str
    data: bytes


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str  # without the /api/v10 prefix
    query: dict[str, str]
    json: Any = None  # the JSON body, or the multipart `payload_json`
    files: tuple[RecordedFile, ...] = ()
    multipart: bool = False
    status: int = 200
    at: float = 0.0  # time.monotonic() when the stand-in answered

    def is_for(self, handle: InteractionHandle) -> bool:
        return handle.token in self.path or str(handle.id) in self.path


@dataclass(frozen=True)
class InteractionHandle:
    id: int
    token: str
    user: StandinUser


@dataclass
class _InteractionState:
    handle: InteractionHandle
    type: int
    channel_id: int
    message_id: int | None = None  # the component's message for type 3
    original_id: int | None = None


@dataclass
class Fault:
    """An error the stand-in answers instead of (or, with `after`, after) handling matching requests.

    `after=True` is a reply lost on the way back: the request took effect, the bot sees only the error.
    """

    method: str
    path: re.Pattern[str]
    status: int
    body: Json
    headers: dict[str, str]
    times: int
    after: bool = False
    with_files: bool | None = None  # only requests with (True) or without (False) files
    hits: int = 0

    def matches(self, method: str, path: str, files: list[RecordedFile]) -> bool:
        if self.hits >= self.times or method != self.method or not self.path.fullmatch(path):
            return False
        return self.with_files is None or self.with_files == bool(files)


@dataclass
class _Route:
    method: str
    pattern: re.Pattern[str]
    handler: Callable[..., Awaitable[web.StreamResponse]]


@dataclass
class Standin:
    """Start with `await standin.start()`; point the bot at `api_url` and `gateway_url`."""

    requests: list[Recorded] = field(default_factory=list)
    messages: dict[int, Json] = field(default_factory=dict)
    age_restricted: set[int] = field(default_factory=set)  # channel ids marked NSFW (age-restricted) in Discord
    commands: dict[str, Json] = field(default_factory=dict)
    expired_tokens: set[str] = field(default_factory=set)
    guild_member_count: int = 3
    attachments: dict[int, StandinAttachment] = field(default_factory=dict)
    downloads: list[int] = field(default_factory=list)  # attachment ids the bot fetched, in order
    dm_channels: dict[int, int] = field(default_factory=dict)  # DM channel id -> user id
    faults: list[Fault] = field(default_factory=list)
    gateway_log: list[Json] = field(default_factory=list)  # every op the bot sent, in order

    def __post_init__(self) -> None:
        self._counter: Iterator[int] = itertools.count()
        self._seq = 0
        self._changed = asyncio.Condition()
        self._ws: web.WebSocketResponse | None = None
        self._compressor: Any = None
        self._send_lock = asyncio.Lock()
        self._identified = asyncio.Event()
        self._session_ready = asyncio.Event()  # set once at the first IDENTIFY: interactions may be dispatched
        self._dispatched: list[Json] = []  # every dispatch, for a RESUME to replay what it missed
        self.resumes_allowed = asyncio.Event()
        self.resumes_allowed.set()
        self._interactions: dict[str, _InteractionState] = {}
        self._runner: web.AppRunner | None = None
        self.port = 0
        self._routes = [
            _Route("GET", re.compile(r"/users/@me"), self._me),
            _Route("GET", re.compile(r"/oauth2/applications/@me"), self._application),
            _Route("PUT", re.compile(r"/applications/(?P<app>\d+)(/guilds/(?P<guild>\d+))?/commands"), self._sync),
            _Route("POST", re.compile(r"/interactions/(?P<iid>\d+)/(?P<token>[^/]+)/callback"), self._callback),
            _Route("GET", re.compile(r"/webhooks/\d+/(?P<token>[^/]+)/messages/(?P<mid>@original|\d+)"), self._get_wh),
            _Route(
                "PATCH", re.compile(r"/webhooks/\d+/(?P<token>[^/]+)/messages/(?P<mid>@original|\d+)"), self._edit_wh
            ),
            _Route(
                "DELETE", re.compile(r"/webhooks/\d+/(?P<token>[^/]+)/messages/(?P<mid>@original|\d+)"), self._del_wh
            ),
            _Route("POST", re.compile(r"/webhooks/\d+/(?P<token>[^/]+)"), self._followup),
            _Route("POST", re.compile(r"/users/@me/channels"), self._open_dm),
            _Route("POST", re.compile(r"/channels/(?P<cid>\d+)/messages"), self._channel_post),
            _Route("GET", re.compile(r"/channels/(?P<cid>\d+)/messages/(?P<mid>\d+)"), self._channel_get),
            _Route("PATCH", re.compile(r"/channels/(?P<cid>\d+)/messages/(?P<mid>\d+)"), self._channel_edit),
            _Route("DELETE", re.compile(r"/channels/(?P<cid>\d+)/messages/(?P<mid>\d+)"), self._channel_delete),
        ]

    def _snowflake(self) -> int:
        """A fresh id that, like Discord's, encodes the current time (discord.py reads `created_at` from it)."""
        return ((int(time.time() * 1000) - DISCORD_EPOCH_MS) << 22) | (next(self._counter) % (1 << 22))

    # -- lifecycle ----------------------------------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_get("/gateway", self._gateway)
        app.router.add_get("/attachments/{aid}/{name}", self._download)
        app.router.add_route("*", API_PREFIX + "/{tail:.*}", self._rest)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}{API_PREFIX}"

    @property
    def gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/gateway"

    # -- waiting on what the bot sent ---------------------------------------------------------------------------

    async def wait_for(
        self, predicate: Callable[[Recorded], bool], *, count: int = 1, limit_s: float = 30.0
    ) -> list[Recorded]:
        """Wait until `count` recorded requests match; returns them in order."""

        def matches() -> list[Recorded]:
            return [r for r in self.requests if predicate(r)]

        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(lambda: len(matches()) >= count), limit_s)
        return matches()

    async def callback(self, handle: InteractionHandle, limit_s: float = 30.0) -> Recorded:
        """Wait for the bot's answer to an interaction (every interaction gets exactly one)."""
        found = await self.wait_for(lambda r: r.is_for(handle) and r.path.endswith("/callback"), limit_s=limit_s)
        return found[0]

    def original(self, handle: InteractionHandle) -> Json:
        """The message an interaction's reply lives in (for a button: the message that was clicked)."""
        message_id = self._interactions[handle.token].original_id
        assert message_id is not None, "the interaction was not answered with a message"
        return self.messages[message_id]

    def sent(self, handle: InteractionHandle, method: str | None = None) -> list[Recorded]:
        return [r for r in self.requests if r.is_for(handle) and (method is None or r.method == method)]

    async def _record(self, recorded: Recorded) -> None:
        async with self._changed:
            self.requests.append(recorded)
            self._changed.notify_all()

    # -- REST ---------------------------------------------------------------------------------------------------

    async def _rest(self, request: web.Request) -> web.StreamResponse:
        path = request.path[len(API_PREFIX) :]
        body, files, multipart = await self._read_body(request)
        fault = next((f for f in self.faults if f.matches(request.method, path, files)), None)
        if fault is not None:
            fault.hits += 1
        if fault is None or fault.after:
            too_long = _too_long(body)
            response = (
                await self._route(request.method, path, body, files)
                if too_long is None
                else _json({"code": 50035, "message": "Invalid Form Body", "errors": too_long}, 400)
            )
        if fault is not None:
            response = _json(fault.body, fault.status, fault.headers)
        await self._record(
            Recorded(
                request.method, path, dict(request.query), body, tuple(files), multipart, response.status,
                time.monotonic(),
            )
        )  # fmt: skip
        return response

    async def _route(self, method: str, path: str, body: Any, files: list[RecordedFile]) -> web.Response:
        for route in self._routes:
            match = route.pattern.fullmatch(path)
            if match and route.method == method:
                return await route.handler(body, files, **match.groupdict())
        return _json({"message": "404: Not Found (stand-in has no such route)", "code": 0}, 404)

    # -- faults -------------------------------------------------------------------------------------------------

    def fail(
        self,
        method: str,
        path: str,
        status: int,
        *,
        times: int = 1,
        code: int = 0,
        message: str | None = None,
        after: bool = False,
        with_files: bool | None = None,
    ) -> Fault:
        """Answer the next `times` requests matching `method` and the `path` regex with an error, as Discord
        does: 403 Missing Permissions is `fail(..., 403, code=50013)`, a burst of 502s `fail(..., 502, times=3)`."""
        body = {"message": message or _REASONS.get(status, "error"), "code": code}
        fault = Fault(method, re.compile(path), status, body, {}, times, after, with_files)
        self.faults.append(fault)
        return fault

    def rate_limit(
        self,
        method: str,
        path: str,
        retry_after: float,
        *,
        is_global: bool = False,
        times: int = 1,
        with_files: bool | None = None,
    ) -> Fault:
        """429 with Discord's body and headers: per route (scope "user") or global (every route waits)."""
        body = {"message": "You are being rate limited.", "retry_after": retry_after, "global": is_global}
        headers = {
            "Via": "1.1 google",  # discord.py treats a 429 without it as a Cloudflare ban
            "Retry-After": str(max(1, round(retry_after))),
            "X-RateLimit-Scope": "global" if is_global else "user",
        }
        if is_global:
            headers["X-RateLimit-Global"] = "true"
        fault = Fault(method, re.compile(path), 429, body, headers, times, with_files=with_files)
        self.faults.append(fault)
        return fault

    async def _read_body(self, request: web.Request) -> tuple[Any, list[RecordedFile], bool]:
        if request.content_type.startswith("multipart/"):
            body: Any = None
            files: list[RecordedFile] = []
            reader = await request.multipart()
            while (part := await reader.next()) is not None:
                assert isinstance(part, BodyPartReader)
                data = await part.read()
                if part.name == "payload_json":
                    body = json.loads(data)
                else:
                    content_type = part.headers.get("Content-Type", "")
                    files.append(RecordedFile(part.name or "", part.filename or "", content_type, bytes(data)))
            return body, files, True
        raw = await request.read()
        return (json.loads(raw) if raw else None), [], False

    async def _me(self, body: Any, files: list[RecordedFile]) -> web.Response:
        return _json(self.bot_user())

    async def _application(self, body: Any, files: list[RecordedFile]) -> web.Response:
        return _json(
            {
                "id": str(APP_ID),
                "name": "Easel",
                "icon": None,
                "description": "",
                "bot_public": True,
                "bot_require_code_grant": False,
                "verify_key": "0" * 64,
                "owner": {"id": str(OWNER_ID), "username": "owner", "discriminator": "0", "avatar": None},
                "team": None,
                "flags": 0,
            }
        )

    async def _sync(self, body: Any, files: list[RecordedFile], app: str, guild: str | None) -> web.Response:
        result = []
        for command in body or []:
            stored = {
                "id": str(self._snowflake()),
                "application_id": app,
                "version": "1",
                "type": 1,
                "description": "",  # what Discord answers for a context-menu command, which has none
                "default_member_permissions": None,
                **command,
            }
            if guild:
                stored["guild_id"] = guild
            self.commands[command["name"]] = stored
            result.append(stored)
        return _json(result)

    async def _callback(self, body: Any, files: list[RecordedFile], iid: str, token: str) -> web.Response:
        state = self._interactions[token]
        kind = body["type"]
        data = body.get("data") or {}
        message: Json | None = None
        if kind in (4, 5):  # a new reply (5: "thinking" placeholder)
            flags = int(data.get("flags", 0)) | (LOADING if kind == 5 else 0)
            message = self._new_message(state.channel_id, data, files, flags=flags, interaction=state)
            state.original_id = int(message["id"])
        elif kind in (6, 7):  # acknowledge a component; 7 also edits its message
            state.original_id = state.message_id
            if state.message_id is not None and state.message_id in self.messages:
                message = self.messages[state.message_id]
                if kind == 7:
                    self._apply_edit(message, data, files)
        if kind in (1, 8):
            return web.Response(status=204)
        response: Json = {
            "interaction": {
                "id": iid,
                "type": state.type,
                "response_message_id": str(state.original_id) if state.original_id else None,
                "response_message_loading": kind == 5,
                "response_message_ephemeral": bool(int(data.get("flags", 0)) & EPHEMERAL),
            },
            "resource": {"type": kind, **({"message": message} if message else {})},
        }
        return _json(response)

    def _webhook_message(self, token: str, mid: str) -> tuple[_InteractionState, Json] | web.Response:
        if token in self.expired_tokens:
            return _json({"message": "Invalid Webhook Token", "code": 50027}, 401)
        state = self._interactions.get(token)
        if state is None:
            return _json({"message": "Unknown Webhook", "code": 10015}, 404)
        message_id = state.original_id if mid == "@original" else int(mid)
        if message_id is None or message_id not in self.messages:
            return _json({"message": "Unknown Message", "code": 10008}, 404)
        return state, self.messages[message_id]

    async def _get_wh(self, body: Any, files: list[RecordedFile], token: str, mid: str) -> web.Response:
        found = self._webhook_message(token, mid)
        return found if isinstance(found, web.Response) else _json(found[1])

    async def _edit_wh(self, body: Any, files: list[RecordedFile], token: str, mid: str) -> web.Response:
        found = self._webhook_message(token, mid)
        if isinstance(found, web.Response):
            return found
        message = found[1]
        self._apply_edit(message, body or {}, files)
        return _json(message)

    async def _del_wh(self, body: Any, files: list[RecordedFile], token: str, mid: str) -> web.Response:
        found = self._webhook_message(token, mid)
        if isinstance(found, web.Response):
            return found
        del self.messages[int(found[1]["id"])]
        return web.Response(status=204)

    async def _followup(self, body: Any, files: list[RecordedFile], token: str) -> web.Response:
        if token in self.expired_tokens:
            return _json({"message": "Invalid Webhook Token", "code": 50027}, 401)
        state = self._interactions[token]
        original = self.messages.get(state.original_id or 0)
        if original is not None and original["flags"] & LOADING:
            # Discord fills the "thinking" placeholder with the first followup instead of posting anew.
            self._apply_edit(original, body or {}, files)
            return _json(original)
        message = self._new_message(state.channel_id, body or {}, files, interaction=state)
        return _json(message)

    async def _channel_post(self, body: Any, files: list[RecordedFile], cid: str) -> web.Response:
        body = body or {}
        nonce = body.get("nonce")
        if nonce is not None and body.get("enforce_nonce"):
            # Discord answers a repeated nonce (within a few minutes) with the message it already created.
            for message in self.messages.values():
                if message.get("nonce") == nonce and message["channel_id"] == cid:
                    return _json(message)
        message = self._new_message(int(cid), body, files)
        if nonce is not None:
            message["nonce"] = nonce
        return _json(message)

    async def _open_dm(self, body: Any, files: list[RecordedFile]) -> web.Response:
        recipient = str(body["recipient_id"])
        channel_id = DM_CHANNEL_BASE + int(recipient) % 10**9
        self.dm_channels[channel_id] = int(recipient)
        user = {"id": recipient, "username": f"user-{recipient}", "discriminator": "0", "avatar": None}
        return _json({"id": str(channel_id), "type": 1, "last_message_id": None, "recipients": [user]})

    def dms(self, user: StandinUser) -> list[Json]:
        """The messages the bot sent to `user` in a direct message, in order."""
        return [m for m in self.messages.values() if self.dm_channels.get(int(m["channel_id"])) == user.id]

    async def delete_message(self, message_id: int) -> None:
        """A moderator deletes a message: it is gone, and the gateway says so."""
        message = self.messages.pop(message_id)
        await self._dispatch(
            "MESSAGE_DELETE",
            {"id": str(message_id), "channel_id": message["channel_id"], "guild_id": message.get("guild_id")},
        )

    async def _channel_get(self, body: Any, files: list[RecordedFile], cid: str, mid: str) -> web.Response:
        message = self.messages.get(int(mid))
        if message is None or message["channel_id"] != cid:
            return _json({"message": "Unknown Message", "code": 10008}, 404)
        return _json(message)

    async def _channel_edit(self, body: Any, files: list[RecordedFile], cid: str, mid: str) -> web.Response:
        message = self.messages.get(int(mid))
        if message is None:
            return _json({"message": "Unknown Message", "code": 10008}, 404)
        self._apply_edit(message, body or {}, files)
        return _json(message)

    async def _channel_delete(self, body: Any, files: list[RecordedFile], cid: str, mid: str) -> web.Response:
        if self.messages.pop(int(mid), None) is None:
            return _json({"message": "Unknown Message", "code": 10008}, 404)
        return web.Response(status=204)

    async def _download(self, request: web.Request) -> web.Response:
        attachment = self.attachments.get(int(request.match_info["aid"]))
        if attachment is None:
            return web.Response(status=404)
        self.downloads.append(attachment.id)
        return web.Response(body=attachment.data, content_type=attachment.content_type or "application/octet-stream")

    # -- messages -----------------------------------------------------------------------------------------------

    def bot_user(self) -> Json:
        return {
            "id": str(BOT_ID),
            "username": "Easel",
            "discriminator": "0",
            "global_name": None,
            "avatar": None,
            "bot": True,
            "verified": True,
            "flags": 0,
            "mfa_enabled": False,
        }

    def _new_message(
        self,
        channel_id: int,
        data: Json,
        files: list[RecordedFile],
        *,
        flags: int = 0,
        interaction: _InteractionState | None = None,
    ) -> Json:
        message_id = self._snowflake()
        message: Json = {
            "id": str(message_id),
            "channel_id": str(channel_id),
            **({} if channel_id in self.dm_channels else {"guild_id": str(GUILD_ID)}),
            "author": self.bot_user(),
            "content": "",
            "timestamp": datetime.now(UTC).isoformat(),
            "edited_timestamp": None,
            "tts": False,
            "mention_everyone": False,
            "mentions": [],
            "mention_roles": [],
            "attachments": [],
            "embeds": [],
            "pinned": False,
            "type": 0,
            "components": [],
            "flags": flags | int(data.get("flags", 0)),
        }
        if interaction is not None:
            message["type"] = 20 if interaction.type == 2 else 19
            message["application_id"] = str(APP_ID)
            message["webhook_id"] = str(APP_ID)
            message["interaction_metadata"] = {
                "id": str(interaction.handle.id),
                "type": interaction.type,
                "user": interaction.handle.user.payload(),
                "authorizing_integration_owners": {"0": str(GUILD_ID)},
            }
        self._apply_edit(message, data, files, new=True)
        self.messages[message_id] = message
        return message

    def _apply_edit(self, message: Json, data: Json, files: list[RecordedFile], *, new: bool = False) -> None:
        for key in ("content", "embeds", "components"):
            if key in data:
                message[key] = data[key] if data[key] is not None else ([] if key != "content" else "")
        if "attachments" in data or files:
            kept = {str(a["id"]): a for a in message["attachments"]}
            by_index = {i: f for i, f in enumerate(files)}
            attachments = []
            for item in data.get("attachments") or []:
                if str(item["id"]) in kept:
                    attachments.append(kept[str(item["id"])])
                elif isinstance(item["id"], int) and item["id"] in by_index:
                    attachments.append(self._attachment(by_index[item["id"]], item.get("filename")))
            message["attachments"] = attachments
        if not new:
            message["flags"] &= ~LOADING
            message["edited_timestamp"] = datetime.now(UTC).isoformat()

    def _attachment(self, upload: RecordedFile, filename: str | None) -> Json:
        """A file the bot sent, as Discord keeps it: downloadable, and with its size declared when it is an image."""
        attachment_id = self._snowflake()
        name = filename or upload.filename
        width = height = None
        with contextlib.suppress(OSError, ValueError), Image.open(io.BytesIO(upload.data)) as image:
            width, height = image.size
        kept = StandinAttachment(
            attachment_id, name, upload.data, upload.content_type or None, len(upload.data), width, height
        )
        self.attachments[attachment_id] = kept
        return kept.payload(f"http://127.0.0.1:{self.port}")

    # -- gateway ------------------------------------------------------------------------------------------------

    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        assert request.query.get("compress") == "zlib-stream", request.query
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self._ws = ws
        self._compressor = zlib.compressobj()
        await self._send({"op": 10, "d": {"heartbeat_interval": 41250}, "s": None, "t": None})
        async for frame in ws:
            payload = json.loads(frame.data)
            self.gateway_log.append(payload)
            if payload["op"] == 1:
                await self._send({"op": 11, "d": None, "s": None, "t": None})
            elif payload["op"] == 2:
                self._dispatched.clear()
                self._seq = 0
                await self._dispatch("READY", self._ready())
                await self._dispatch("GUILD_CREATE", self._guild())
                self._identified.set()
                self._session_ready.set()
            elif payload["op"] == 6:
                await self._resume(payload["d"])
        if self._ws is ws:
            self._ws = None
            self._identified.clear()
        return ws

    async def _resume(self, data: Json) -> None:
        """Replay what the bot missed since the sequence number it has, then RESUMED (Discord's order)."""
        await self.resumes_allowed.wait()
        if data["session_id"] != "standin-session":
            await self._send({"op": 9, "d": False, "s": None, "t": None})  # invalid session: identify again
            return
        for missed in [p for p in self._dispatched if p["s"] > (data.get("seq") or 0)]:
            await self._send(missed)
        await self._dispatch("RESUMED", {})
        self._identified.set()

    async def drop_gateway(self, code: int = 4000, *, hold_resume: bool = False) -> None:
        """Close the gateway connection as Discord does on an outage (4000: resumable). With `hold_resume`, the
        bot's RESUME waits until `resumes_allowed` is set, so events dispatched meanwhile are missed by it."""
        if hold_resume:
            self.resumes_allowed.clear()
        ws, self._ws = self._ws, None
        self._identified.clear()
        assert ws is not None, "no gateway connection to drop"
        await ws.close(code=code)

    async def _send(self, payload: Json) -> None:
        async with self._send_lock:
            if self._ws is None or self._ws.closed:
                return  # disconnected: a dispatch waits in `_dispatched` for the RESUME
            data = self._compressor.compress(json.dumps(payload).encode())
            data += self._compressor.flush(zlib.Z_SYNC_FLUSH)  # ends with 00 00 ff ff
            await self._ws.send_bytes(data)

    async def _dispatch(self, event: str, data: Json) -> None:
        self._seq += 1
        payload = {"op": 0, "t": event, "s": self._seq, "d": data}
        self._dispatched.append(payload)
        await self._send(payload)

    def _ready(self) -> Json:
        return {
            "v": 10,
            "user": self.bot_user(),
            "guilds": [{"id": str(GUILD_ID), "unavailable": True}],
            "session_id": "standin-session",
            "resume_gateway_url": self.gateway_url,
            "application": {"id": str(APP_ID), "flags": 0},
        }

    def _guild(self) -> Json:
        def role(role_id: int, name: str, permissions: int, position: int) -> Json:
            return {
                "id": str(role_id),
                "name": name,
                "permissions": str(permissions),
                "position": position,
                "color": 0,
                "hoist": False,
                "managed": False,
                "mentionable": False,
                "flags": 0,
            }

        return {
            "id": str(GUILD_ID),
            "name": "Stand-in Guild",
            "icon": None,
            "owner_id": str(OWNER_ID),
            "roles": [
                role(GUILD_ID, "@everyone", EVERYONE_PERMISSIONS, 0),
                role(ADMIN_ROLE_ID, "Easel admins", EVERYONE_PERMISSIONS, 1),
            ],
            "channels": [self._channel(CHANNEL_ID), self._channel(OTHER_CHANNEL_ID)],
            "threads": [],
            "members": [],
            "voice_states": [],
            "presences": [],
            "emojis": [],
            "stickers": [],
            "features": [],
            "member_count": self.guild_member_count,
            "large": False,
            "unavailable": False,
            "joined_at": datetime.now(UTC).isoformat(),
            "premium_tier": 0,
            "system_channel_flags": 0,
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "mfa_level": 0,
            "nsfw_level": 0,
            "preferred_locale": "en-US",
            "afk_timeout": 300,
            "stage_instances": [],
            "guild_scheduled_events": [],
        }

    def _channel(self, channel_id: int = CHANNEL_ID) -> Json:
        return {
            "id": str(channel_id),
            "type": 0,
            "guild_id": str(GUILD_ID),
            "name": "art",
            "position": 0,
            "permission_overwrites": [],
            "nsfw": channel_id in self.age_restricted,
            "topic": None,
            "last_message_id": None,
            "rate_limit_per_user": 0,
            "parent_id": None,
        }

    # -- injecting interactions ---------------------------------------------------------------------------------

    async def wait_identified(self) -> None:
        await asyncio.wait_for(self._identified.wait(), 30.0)

    async def wait_session(self) -> None:
        """Until the bot has identified once; a dispatch after that reaches it now or at its RESUME."""
        await asyncio.wait_for(self._session_ready.wait(), 30.0)

    async def _interact(
        self,
        kind: int,
        data: Json,
        user: StandinUser,
        *,
        message_id: int | None = None,
        channel_id: int = CHANNEL_ID,
        in_dm: bool = False,
    ) -> InteractionHandle:
        await self.wait_session()
        interaction_id = self._snowflake()
        handle = InteractionHandle(interaction_id, f"token-{interaction_id}", user)
        self._interactions[handle.token] = _InteractionState(handle, kind, channel_id, message_id)
        payload: Json = {
            "id": str(interaction_id),
            "application_id": str(APP_ID),
            "type": kind,
            "data": data,
            "token": handle.token,
            "version": 1,
            "guild_id": str(GUILD_ID),
            "guild": {"id": str(GUILD_ID), "locale": "en-US", "features": []},
            "guild_locale": "en-US",
            "channel_id": str(channel_id),
            "channel": self._channel(channel_id),
            "member": {
                "user": user.payload(),
                "roles": [str(r) for r in user.roles],
                "permissions": str(user.permissions),
                "joined_at": datetime.now(UTC).isoformat(),
                "deaf": False,
                "mute": False,
                "flags": 0,
                "nick": None,
                "avatar": None,
                "pending": False,
            },
            "app_permissions": str(EVERYONE_PERMISSIONS),
            "locale": "en-US",
            "entitlements": [],
            "authorizing_integration_owners": {"0": str(GUILD_ID)},
            "context": 0,
            "attachment_size_limit": 10 * 1024 * 1024,
        }
        if message_id is not None:
            payload["message"] = self.messages[message_id]
        if in_dm:  # a bot DM: no guild, the user instead of the member, a DM channel
            for key in ("guild_id", "guild", "guild_locale", "member"):
                payload.pop(key)
            payload["user"] = user.payload()
            payload["channel"] = {"id": str(channel_id), "type": 1, "recipients": [user.payload()], "flags": 0}
            payload["context"] = 1
            payload["authorizing_integration_owners"] = {"0": str(GUILD_ID)}
        await self._dispatch("INTERACTION_CREATE", payload)
        return handle

    def attachment(
        self,
        filename: str,
        data: bytes,
        *,
        content_type: str | None = "image/png",
        size: int | None = None,
        width: int | None = None,
        height: int | None = None,
    ) -> StandinAttachment:
        """A file a user uploads with a command; pass it as an option value. `size` defaults to the real one."""
        attachment = StandinAttachment(
            self._snowflake(), filename, data, content_type, len(data) if size is None else size, width, height
        )
        self.attachments[attachment.id] = attachment
        return attachment

    def _options(self, declared: list[Json], values: dict[str, Any], focused: str | None, resolved: Json) -> list[Json]:
        types = {o["name"]: o["type"] for o in declared}
        options = []
        for name, given in values.items():
            if name not in types:
                raise KeyError(f"option {name!r} is not declared; declared: {sorted(types)}")
            value = given
            if isinstance(given, StandinAttachment):
                resolved.setdefault("attachments", {})[str(given.id)] = given.payload(self.base_url)
                value = str(given.id)
            option: Json = {"name": name, "type": types[name], "value": value}
            if name == focused:
                option["focused"] = True
            options.append(option)
        return options

    def _command_data(self, name: str, values: dict[str, Any], focused: str | None) -> Json:
        top, *sub = name.split()
        command = self.commands[top]
        declared = command.get("options", [])
        resolved: Json = {}
        options: list[Json]
        if sub:
            subcommand = next(o for o in declared if o["name"] == sub[0])
            inner = self._options(subcommand.get("options", []), values, focused, resolved)
            options = [{"name": sub[0], "type": 1, "options": inner}]
        else:
            options = self._options(declared, values, focused, resolved)
        data = {"id": command["id"], "name": top, "type": 1, "options": options, "guild_id": str(GUILD_ID)}
        if resolved:
            data["resolved"] = resolved
        return data

    async def slash(
        self, name: str, user: StandinUser, /, *, in_channel: int = CHANNEL_ID, in_dm: bool = False, **values: Any
    ) -> InteractionHandle:
        """Run `/name` (or `/group sub`) with option values in a channel, or in the user's DM with the bot; types
        come from the synced command."""
        data = self._command_data(name, values, None)
        if in_dm:
            data.pop("guild_id", None)
            channel_id = DM_CHANNEL_BASE + user.id % 10**9
            self.dm_channels[channel_id] = user.id
            return await self._interact(2, data, user, channel_id=channel_id, in_dm=True)
        return await self._interact(2, data, user, channel_id=in_channel)

    async def message_command(self, name: str, user: StandinUser, message_id: int) -> InteractionHandle:
        """Run the message context-menu command `name` (type 3) on a message this stand-in holds."""
        command = self.commands[name]
        assert command["type"] == 3, command
        data = {
            "id": command["id"],
            "name": name,
            "type": 3,
            "target_id": str(message_id),
            "resolved": {"messages": {str(message_id): self.messages[message_id]}},
            "guild_id": str(GUILD_ID),
        }
        return await self._interact(2, data, user)

    def user_message(self, user: StandinUser, content: str = "", *attachments: StandinAttachment) -> int:
        """A message a member posted in the art channel, with files; returns its id."""
        message = self._new_message(CHANNEL_ID, {"content": content}, [])
        message["author"] = user.payload()
        message["attachments"] = [a.payload(self.base_url) for a in attachments]
        return int(message["id"])

    async def autocomplete(self, name: str, user: StandinUser, focused: str, /, **values: Any) -> InteractionHandle:
        return await self._interact(4, self._command_data(name, values, focused), user)

    async def click(self, message_id: int, custom_id: str, user: StandinUser) -> InteractionHandle:
        data = {"custom_id": custom_id, "component_type": 2}
        return await self._interact(3, data, user, message_id=message_id)

    async def choose(self, message_id: int, custom_id: str, values: list[str], user: StandinUser) -> InteractionHandle:
        """Pick `values` in a string select of the message (each must be one of its options)."""
        message = self.messages[message_id]
        [select] = [c for row in message["components"] for c in row["components"] if c.get("custom_id") == custom_id]
        assert select["type"] == 3 and set(values) <= {o["value"] for o in select["options"]}, select
        data = {"custom_id": custom_id, "component_type": 3, "values": values}
        return await self._interact(3, data, user, message_id=message_id)

    def modal(self, handle: InteractionHandle) -> Json:
        """The modal the bot opened in answer to `handle` (a type 9 callback)."""
        [callback] = [r for r in self.sent(handle, "POST") if r.path.endswith("/callback")]
        assert callback.json["type"] == 9, callback.json
        data: Json = callback.json["data"]
        return data

    async def submit_modal(self, handle: InteractionHandle, **values: Any) -> InteractionHandle:
        """Submit the modal opened for `handle` by the same user: text inputs keep their prefilled value unless
        `values` (by custom_id) changes them; a select takes a list of its option values, a file upload a list of
        attachments (made with `attachment`), sent with Discord's `resolved` data."""
        modal = self.modal(handle)
        components = []
        resolved: dict[str, Json] = {}
        for label in modal["components"]:
            assert label["type"] == 18, "Easel's modals put each component in a Label"
            inner = label["component"]
            given = values.pop(inner["custom_id"], None)
            submitted: Json = {"type": inner["type"], "id": inner.get("id", 0), "custom_id": inner["custom_id"]}
            if inner["type"] == 4:
                submitted["value"] = inner.get("value", "") if given is None else given
            elif inner["type"] == 3:
                chosen = list(given or [])
                assert set(chosen) <= {o["value"] for o in inner["options"]}, chosen
                submitted["values"] = chosen
            elif inner["type"] == 19:
                files = list(given or [])
                submitted["values"] = [str(a.id) for a in files]
                resolved.update({str(a.id): a.payload(self.base_url) for a in files})
            else:
                raise AssertionError(f"component type {inner['type']} in a modal")
            components.append({"type": 18, "id": label.get("id", 0), "component": submitted})
        assert not values, f"no such components: {sorted(values)}"
        state = self._interactions[handle.token]
        data: Json = {"custom_id": modal["custom_id"], "components": components}
        if resolved:
            data["resolved"] = {"attachments": resolved}
        return await self._interact(5, data, handle.user, message_id=state.message_id)


def custom_ids(message: Json) -> list[str]:
    return [c["custom_id"] for row in message.get("components", []) for c in row.get("components", [])]


_REASONS = {
    401: "401: Unauthorized",
    403: "Missing Permissions",
    404: "Unknown Message",
    500: "500: Internal Server Error",
    502: "502: Bad Gateway",
    503: "503: Service Unavailable",
}


MAX_CONTENT = 2000  # Discord refuses a message whose content is longer (Invalid Form Body, 50035)


def _too_long(body: Any) -> dict[str, object] | None:
    """Discord's answer to a message (or an interaction callback's message) over its content limit."""
    for message in (body, body.get("data") if isinstance(body, dict) else None):
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str) and len(content) > MAX_CONTENT:
            return {"content": {"_errors": [{"code": "BASE_TYPE_MAX_LENGTH", "message": "Must be 2000 or fewer."}]}}
    return None


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    # discord.py decodes a body only when the Content-Type is exactly application/json (no charset).
    all_headers = {"Content-Type": "application/json", **(headers or {})}
    return web.Response(body=json.dumps(data).encode(), status=status, headers=all_headers)
