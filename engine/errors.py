"""The engine's typed errors: every message is safe to show to the user who caused it."""

import errno
import re


class EaselError(Exception):
    """Base of every error the engine raises on purpose; `str(err)` is a message for the user."""


class InvalidParamsError(EaselError):
    """A request asked for something impossible or over a limit; nothing was queued."""


class HiresTooLargeError(InvalidParamsError):
    """Hires fix would make an image over the limit after the hires pass (the resolver says why it is on)."""


class QueueFullError(EaselError):
    """The queue (the user's share or the whole) is full; try again when a job finishes."""


class ModelUnavailableError(EaselError):
    """A model cannot be found, is refused (e.g. a pickle `.ckpt`), or failed to load."""


class GenerationFailedError(EaselError):
    """Diffusion itself failed (out of memory, a bad tensor...); other jobs are unaffected."""


class OutOfMemoryError(GenerationFailedError):
    """The device ran out of memory for this job (or this batch of jobs); the worker is fine for the next."""


class StorageFullError(EaselError):
    """The disk (or the job store's size limit) is full: nothing was half-written, and nothing else is lost."""


def is_disk_full(err: OSError) -> bool:
    return err.errno in (errno.ENOSPC, errno.EDQUOT)


class Cancelled(EaselError):  # noqa: N818 - reads as a state, per house style
    """The job was cancelled before it finished."""


# An absolute path inside a library's message (`/srv/easel/models/x.safetensors`, `C:\\models\\x.ckpt`).
_PATH = re.compile(r"(?<![\w.])(?:[A-Za-z]:)?[\\/](?:[^\s'\"\\/:,;()]+[\\/])+")


def short_reason(err: BaseException) -> str:
    """The first line of an unexpected library error, short enough for a user-facing message, with any server path
    cut to its file name (users see names relative to the models folder, never where the server keeps them)."""
    text = _PATH.sub("", str(err).strip())
    return text.splitlines()[0][:300] if text else type(err).__name__
