"""Jobs and job events as flat field maps (what a Redis stream entry holds), for GPU workers on other machines.

The first piece of issue 9's transport: what travels, and the checks on what comes back. A worker is another
machine, so what it sends is validated as user input is: a known kind, numbers in range, text capped, the error
type one of Easel's own, and every image checked from its header (format, size, pixels) and matched against
the job it claims to answer (as many images as asked for, at the size the job makes). Nothing is unpickled or
decoded before those checks; a bad entry raises `WireError` and the caller drops it.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

from engine import errors
from engine.detailer import MAX_TABS, DetailerTab
from engine.errors import EaselError, GenerationFailedError, InvalidParamsError
from engine.images import check_upload
from engine.jobs import (
    Failed,
    Finished,
    GeneratedImage,
    Job,
    JobEvent,
    JobResult,
    Progress,
    Queued,
    Started,
    WasCancelled,
)
from engine.models.detect import FAMILY_NAMES
from engine.params import RANDOM_SEED_RANGE, GenerationParams, check_params
from engine.plan import output_size
from engine.taggers.description import Description

Fields = Mapping[str, bytes]

MAX_TEXT = 64 * 1024  # a parameter text or an error message
MAX_PNG = 32 * 1024 * 1024  # one result image
MAX_PREVIEW = 256 * 1024  # one preview JPEG
MAX_INIT_IMAGE = 64 * 1024 * 1024  # an img2img job's init image, as the bot stored it
MAX_PREVIEW_SIDE = 256
MAX_STEPS = 100_000  # model calls of one pass, far above any limit a server sets
_ID = re.compile(r"^[0-9a-f]{6,32}$")
_HASH = re.compile(r"^[0-9a-f]{8,64}$")
_NAME = re.compile(r"^[\w.@-]{1,64}$")  # a worker's name (a host name, by default)
_BOOT = re.compile(r"^[0-9a-f]{8,32}$")  # one run of a worker process
MAX_MODELS = 2000  # models one worker may advertise
MAX_HELLO = 1024 * 1024  # one heartbeat's body
MAX_SLOTS = 64
_ERRORS = {
    cls.__name__: cls
    for cls in vars(errors).values()
    if isinstance(cls, type) and issubclass(cls, EaselError) and cls is not EaselError
}


class WireError(ValueError):
    """An entry that is not what Easel sends: dropped, and the sender distrusted."""


def encode_job(job: Job, model_hash: str | None = None) -> dict[str, bytes]:
    """A job for a worker; `model_hash`, when known, is the hash the worker's file must have (A1111's 10 hex)."""
    fields = {
        "kind": b"job",
        "job_id": job.job_id.encode(),
        "user_id": job.user_id.encode(),
        "params": json.dumps(job.params.to_dict()).encode(),
    }
    if job.max_queued is not None:
        fields["max_queued"] = str(job.max_queued).encode()
    if model_hash is not None:
        fields["model_hash"] = model_hash.encode()
    return fields


def job_init_image(fields: Fields, job: Job) -> bytes | None:
    """The init image an img2img job carries, checked against the digest its params name (nothing decoded)."""
    data = fields.get("init_image")
    if job.params.init_image is None:
        return None
    if not isinstance(data, bytes | bytearray) or len(data) > MAX_INIT_IMAGE:
        raise WireError(f"init_image: missing or over {MAX_INIT_IMAGE} bytes")
    if hashlib.sha256(data).hexdigest() != job.params.init_image:
        raise WireError("init_image: not the image the job names")
    return bytes(data)


def job_model_hash(fields: Fields) -> str | None:
    """The model hash a job entry asks for, or None when the bot did not know it."""
    if "model_hash" not in fields:
        return None
    value = _text(fields, "model_hash", 64)
    if not _HASH.match(value):
        raise WireError("bad model hash")
    return value


def decode_job(fields: Fields) -> Job:
    """A job as a worker reads it. The params are rebuilt field by field; the worker's engine checks them again."""
    job_id = _text(fields, "job_id", 32)
    if not _ID.match(job_id):
        raise WireError("bad job id")
    user_id = _text(fields, "user_id", 32)
    if not user_id.isdigit() and user_id != "cli":
        raise WireError("bad user id")
    text = _text(fields, "params", MAX_TEXT)
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        data = None
    if not isinstance(data, dict) or not all(_fits(name, value) for name, value in data.items()):
        raise WireError("bad params")
    try:
        params = GenerationParams.from_dict(data)
        check_params(params)  # by the same readers as a request: what this worker's version cannot run is named
    except (TypeError, InvalidParamsError) as err:
        raise WireError(f"bad params: {err}") from None
    cap = _text(fields, "max_queued", 8) if "max_queued" in fields else None
    if cap is not None and not cap.isdigit():
        raise WireError("bad max_queued")
    max_queued = int(cap) if cap is not None else None
    return Job(job_id, user_id, params, max_queued)


MAX_NOTES = 64  # a detailer's notes: a few per tab and image
_DEFAULTS = GenerationParams(prompt="", model="", seed=0)
_TAB = DetailerTab(model="")


def _fits(name: str, value: object, defaults: object = _DEFAULTS) -> bool:
    """A params field of the type its default has (a float field takes an int); None-default fields take text,
    numbers or None; the detailer's tabs, a few tables of their own fields."""
    default = getattr(defaults, name, None)
    if name in ("prompt", "model") or (name == "model" and defaults is _TAB):
        return isinstance(value, str)
    if name == "detail_images" and defaults is _DEFAULTS:
        return isinstance(value, list) and len(value) <= 64 and all(isinstance(v, str) and len(v) <= 64 for v in value)
    if name == "detailers" and defaults is _DEFAULTS:
        return (
            isinstance(value, list)
            and len(value) <= MAX_TABS
            and all(isinstance(tab, dict) and all(_fits(k, v, _TAB) for k, v in tab.items()) for tab in value)
        )
    if default is None:
        return value is None or (isinstance(value, str | int | float) and not isinstance(value, bool))
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, type(default)) and not (isinstance(value, bool) and not isinstance(default, bool))


def encode_event(event: JobEvent) -> dict[str, bytes]:
    if isinstance(event, Queued):
        body = {"position": event.position, "ahead": event.ahead, "eta": event.eta_seconds}
        return {"kind": b"queued", "body": json.dumps(body).encode()}
    if isinstance(event, Started):
        return {"kind": b"started"}
    if isinstance(event, Progress):
        fields = {"kind": b"progress", "body": json.dumps({"step": event.step, "total": event.total}).encode()}
        if event.preview is not None:
            fields["preview"] = event.preview
        return fields
    if isinstance(event, Finished):
        result = event.result
        meta = {
            "seconds": result.seconds,
            "infotext": result.infotext,
            "images": [
                {"seed": i.seed, "infotext": i.infotext}
                | ({"description": i.description.to_dict()} if i.description is not None else {})
                for i in result.images
            ],
            "notes": list(result.notes),
        }
        fields = {"kind": b"finished", "body": json.dumps(meta).encode()}
        fields.update({f"image{n}": image.png for n, image in enumerate(result.images)})
        return fields
    if isinstance(event, Failed):
        failure = {"type": type(event.error).__name__, "message": str(event.error)}
        return {"kind": b"failed", "body": json.dumps(failure).encode()}
    return {"kind": b"cancelled"}


def decode_event(fields: Fields, job: Job) -> JobEvent:
    """An event a worker sent about `job`, checked against it; WireError for anything else."""
    kind = _text(fields, "kind", 16)
    if kind == "started":
        return Started()
    if kind == "cancelled":
        return WasCancelled()
    body = _json(fields)
    if kind == "queued":
        eta = body.get("eta")
        return Queued(
            position=_int(body, "position", 0, 1_000_000),
            ahead=_int(body, "ahead", 0, 1_000_000),
            eta_seconds=None if eta is None else _seconds(eta),
        )
    if kind == "progress":
        total = _int(body, "total", 1, MAX_STEPS)
        preview = fields.get("preview")
        if preview is not None:
            _check_image(preview, "JPEG", MAX_PREVIEW, max_side=MAX_PREVIEW_SIDE)
        return Progress(step=_int(body, "step", 0, total), total=total, preview=preview)
    if kind == "failed":
        error_type = _ERRORS.get(str(body.get("type")), GenerationFailedError)
        return Failed(error_type(_str(body, "message", 2000)))
    if kind == "finished":
        return Finished(_result(fields, body, job))
    raise WireError(f"unknown event kind {kind[:16]!r}")


def _result(fields: Fields, body: Mapping[str, object], job: Job) -> JobResult:
    listed = body.get("images")
    if not isinstance(listed, list) or len(listed) != job.params.batch_size:
        raise WireError("a result must have exactly the images the job asked for")
    width, height = output_size(job.params)
    images = []
    for number, meta in enumerate(listed):
        if not isinstance(meta, dict):
            raise WireError("bad image entry")
        png = fields.get(f"image{number}")
        if png is None:
            raise WireError(f"image {number} is missing")
        _check_image(png, "PNG", MAX_PNG, size=(width, height))
        seed = _int(meta, "seed", 0, RANDOM_SEED_RANGE - 1)
        description = _description(meta.get("description")) if job.params.is_describe else None
        images.append(GeneratedImage(png, seed, _str(meta, "infotext", MAX_TEXT), width, height, description))
    notes = body.get("notes", [])
    if (
        not isinstance(notes, list)
        or len(notes) > MAX_NOTES
        or not all(isinstance(n, str) and len(n) <= 500 for n in notes)
    ):
        raise WireError("bad notes")
    return JobResult(tuple(images), _str(body, "infotext", MAX_TEXT), _seconds(body.get("seconds")), tuple(notes))


def _description(data: object) -> Description:
    """A describe job's tags as a worker sent them: a few lists of (text, probability) pairs, capped."""
    if not isinstance(data, dict):
        raise WireError("a describe result needs its description")
    for key in ("ratings", "general", "character", "maybe"):
        pairs = data.get(key, [])
        if not isinstance(pairs, list) or len(pairs) > 20_000 or not all(
            isinstance(p, list) and len(p) == 2 and isinstance(p[0], str) and len(p[0]) <= 200
            and isinstance(p[1], int | float) and not isinstance(p[1], bool) and 0 <= p[1] <= 1
            for p in pairs
        ):  # fmt: skip
            raise WireError(f"bad description {key}")
    if not isinstance(data.get("tagger", ""), str):
        raise WireError("bad description tagger")
    return Description.from_dict(data)


def _short(note: object) -> bool:
    return isinstance(note, str) and len(note) <= 500


def _check_image(
    data: bytes, expected: str, max_bytes: int, *, size: tuple[int, int] | None = None, max_side: int | None = None
) -> None:
    try:
        image_format, width, height = check_upload(data, max_bytes=max_bytes, max_pixels=8192 * 8192)
    except InvalidParamsError as err:
        raise WireError(str(err)) from None
    if image_format != expected:
        raise WireError(f"expected a {expected}, got a {image_format}")
    if size is not None and (width, height) != size:
        raise WireError(f"expected {size[0]}x{size[1]}, got {width}x{height}")
    if max_side is not None and max(width, height) > max_side:
        raise WireError(f"a preview may be {max_side} px per side, not {width}x{height}")


def _text(fields: Fields, key: str, limit: int) -> str:
    raw = fields.get(key)
    if not isinstance(raw, bytes | bytearray) or len(raw) > limit:
        raise WireError(f"{key}: missing or over {limit} bytes")
    try:
        return bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        raise WireError(f"{key}: not UTF-8") from None


def _json(fields: Fields, limit: int = MAX_TEXT * 2) -> dict[str, object]:
    text = _text(fields, "body", limit)
    try:
        body = json.loads(text)
    except (ValueError, RecursionError):
        raise WireError("body: not JSON") from None
    if not isinstance(body, dict):
        raise WireError("body: not an object")
    return body


def _int(body: Mapping[str, object], key: str, low: int, high: int) -> int:
    value = body.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise WireError(f"{key}: not a whole number from {low} to {high}")
    return value


def _str(body: Mapping[str, object], key: str, limit: int) -> str:
    value = body.get(key)
    if not isinstance(value, str) or len(value) > limit:
        raise WireError(f"{key}: not text of at most {limit} characters")
    return value


def _seconds(value: object) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value) or value < 0:
        raise WireError("seconds: not a finite, non-negative number")
    return float(value)


# -- workers' announcements ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WorkerModel:
    """A model on a worker: its name and A1111 hash (None for a built-in one), and what a plan needs of it."""

    name: str
    hash: str | None
    family: str = "sd1"
    latent_scale: int = 8
    context_width: int | None = None


@dataclass(frozen=True)
class Hello:
    """A worker's heartbeat: who it is (name, and `boot`, one run of its process), what it can run, how busy it is.

    `slots`: batches it runs at once (its devices); `max_images`: images it batches together; `speed`: its own
    measured seconds per unit of plan cost (None until it has run a job); `running`: the jobs it is working on.
    """

    worker: str
    boot: str
    devices: tuple[str, ...]
    models: tuple[WorkerModel, ...]
    loaded: tuple[str, ...] = ()
    free_memory: int | None = None
    slots: int = 1
    max_images: int = 1
    speed: float | None = None
    running: tuple[str, ...] = ()
    accepting: bool = True  # False once it is shutting down: it takes no more jobs

    def model(self, name: str) -> WorkerModel | None:
        return next((m for m in self.models if m.name == name), None)


def encode_hello(hello: Hello) -> dict[str, bytes]:
    body = {
        "devices": list(hello.devices),
        "models": [
            {"name": m.name, "hash": m.hash, "family": m.family, "scale": m.latent_scale, "width": m.context_width}
            for m in hello.models
        ],
        "loaded": list(hello.loaded),
        "free_memory": hello.free_memory,
        "slots": hello.slots,
        "max_images": hello.max_images,
        "speed": hello.speed,
        "running": list(hello.running),
        "accepting": hello.accepting,
    }
    return {"worker": hello.worker.encode(), "boot": hello.boot.encode(), "body": json.dumps(body).encode()}


def decode_hello(fields: Fields) -> Hello:
    """A heartbeat as the bot reads it: every field checked (names, hashes, counts, ranges); WireError if bad."""
    worker, boot = _sender(fields)
    body = _json(fields, MAX_HELLO)
    models = []
    listed = _list(body, "models", MAX_MODELS)
    for meta in listed:
        if not isinstance(meta, dict):
            raise WireError("bad model entry")
        digest = meta.get("hash")
        if digest is not None and not (isinstance(digest, str) and _HASH.match(digest)):
            raise WireError("bad model hash")
        family = _str(meta, "family", 32)
        if family not in FAMILY_NAMES:
            raise WireError(f"unknown model family {family[:32]!r}")
        width = meta.get("width")
        models.append(
            WorkerModel(
                name=_str(meta, "name", 200),
                hash=digest,
                family=family,
                latent_scale=_int(meta, "scale", 1, 64),
                context_width=None if width is None else _int(meta, "width", 1, 1 << 16),
            )
        )
    names = {m.name for m in models}
    loaded = tuple(_names(body, "loaded", MAX_MODELS))
    if not set(loaded) <= names:
        raise WireError("a loaded model the worker does not list")
    running = tuple(_names(body, "running", MAX_SLOTS * 64))
    if not all(_ID.match(job_id) for job_id in running):
        raise WireError("bad job id in running")
    memory = body.get("free_memory")
    speed = body.get("speed")
    accepting = body.get("accepting", True)
    if not isinstance(accepting, bool):
        raise WireError("accepting: not true or false")
    return Hello(
        worker=worker,
        boot=boot,
        devices=tuple(_names(body, "devices", MAX_SLOTS)),
        models=tuple(models),
        loaded=loaded,
        free_memory=None if memory is None else _int(body, "free_memory", 0, 1 << 50),
        slots=_int(body, "slots", 1, MAX_SLOTS),
        max_images=_int(body, "max_images", 1, 64),
        speed=None if speed is None else _seconds(speed),
        running=running,
        accepting=accepting,
    )


def sender(fields: Fields) -> tuple[str, str]:
    """The (worker, boot) an event or heartbeat says it comes from, checked."""
    return _sender(fields)


def _sender(fields: Fields) -> tuple[str, str]:
    worker = _text(fields, "worker", 64)
    boot = _text(fields, "boot", 32)
    if not _NAME.match(worker) or not _BOOT.match(boot):
        raise WireError("bad worker name or boot id")
    return worker, boot


def event_job_id(fields: Fields) -> str:
    job_id = _text(fields, "job_id", 32)
    if not _ID.match(job_id):
        raise WireError("bad job id")
    return job_id


def valid_job_id(job_id: str) -> bool:
    return bool(_ID.match(job_id))


def valid_worker_name(name: str) -> bool:
    return bool(_NAME.match(name))


def _list(body: Mapping[str, object], key: str, limit: int) -> list[object]:
    value = body.get(key)
    if not isinstance(value, list) or len(value) > limit:
        raise WireError(f"{key}: not a list of at most {limit}")
    return value


def _names(body: Mapping[str, object], key: str, limit: int) -> list[str]:
    values = _list(body, key, limit)
    if not all(isinstance(v, str) and 0 < len(v) <= 200 for v in values):
        raise WireError(f"{key}: not a list of names")
    return [str(v) for v in values]
