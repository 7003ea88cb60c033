"""Init images attached to /imagine: refused from what Discord declares when possible, downloaded with a cap,
checked from the file header (engine.images.check_upload), then kept in the blob store by content hash."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable

import aiohttp
import discord

from engine.blobs import BlobStore
from engine.errors import InvalidParamsError
from engine.images import check_upload

MAX_UPLOAD_BYTES = 20 * 1024 * 1024
UPLOAD_PIXEL_FACTOR = 4  # an init image may have 4x the pixels a result may: it is resized down anyway
ACCEPTED_TYPES = frozenset({"image/png", "image/jpeg", "image/webp"})
_CHUNK = 64 * 1024


def upload_pixel_limit(max_pixels: int) -> int:
    return max_pixels * UPLOAD_PIXEL_FACTOR


def check_declared(
    attachment: discord.Attachment, *, max_pixels: int, max_bytes: int = MAX_UPLOAD_BYTES, what: str = "init image"
) -> None:
    """Refuse on what Discord says about the file (type, size, dimensions) before a byte is downloaded; `what` names
    the file's use in the messages."""
    content_type = (attachment.content_type or "").split(";")[0].strip().lower()
    if content_type and content_type not in ACCEPTED_TYPES:
        raise InvalidParamsError(
            f"`{attachment.filename}` is {content_type}; the {what} must be a PNG, JPEG or WebP image."
        )
    if attachment.size > max_bytes:
        raise InvalidParamsError(
            f"`{attachment.filename}` is {attachment.size / (1 << 20):.1f} MiB; {what}s may be up to "
            f"{max_bytes // (1 << 20)} MiB."
        )
    width, height = attachment.width, attachment.height
    if width and height and width * height > max_pixels:
        raise InvalidParamsError(
            f"`{attachment.filename}` is {width}x{height} ({width * height:,} pixels); {what}s may have at most "
            f"{max_pixels:,} pixels."
        )


async def download(
    session: aiohttp.ClientSession, url: str, *, max_bytes: int = MAX_UPLOAD_BYTES, what: str = "init image"
) -> bytes:
    """The file's bytes, read in chunks and abandoned as soon as it passes `max_bytes` (the declared size may lie)."""
    try:
        async with session.get(url) as response:
            if response.status != 200:
                raise InvalidParamsError(f"Could not download the {what} (HTTP {response.status}); try again.")
            data = bytearray()
            async for chunk in response.content.iter_chunked(_CHUNK):
                data += chunk
                if len(data) > max_bytes:
                    raise InvalidParamsError(f"The {what} is over {max_bytes // (1 << 20)} MiB.")
            return bytes(data)
    except aiohttp.ClientError:
        raise InvalidParamsError(f"Could not download the {what}; try again.") from None


def check_and_store(blobs: BlobStore, data: bytes, *, max_pixels: int) -> tuple[str, int, int]:
    """Check a downloaded file from its header and keep it by content hash; returns (hash, width, height). Reads,
    hashes and writes up to 20 MiB: the caller runs it off the event loop."""
    _, width, height = check_upload(data, max_bytes=MAX_UPLOAD_BYTES, max_pixels=max_pixels)
    return blobs.put(data), width, height


async def store_init_image(
    session: aiohttp.ClientSession,
    blobs: BlobStore,
    attachment: discord.Attachment,
    *,
    max_pixels: int,
    offload: Callable[..., Awaitable[tuple[str, int, int]]],
) -> tuple[str, int, int]:
    """Download, check and store an attachment checked with `check_declared`; returns (hash, width, height). The
    check and the hashing run through `offload` (the bot's edge threads)."""
    data = await download(session, attachment.url)
    return await offload(functools.partial(check_and_store, blobs, data, max_pixels=max_pixels))
