"""The wire format for remote workers: everything Easel sends comes back equal, and what a worker could send
wrong is refused before it is used (counts, sizes, formats, numbers, text, error types)."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import math

import pytest
from PIL import Image

from engine.errors import GenerationFailedError, OutOfMemoryError
from engine.jobs import Failed, Finished, GeneratedImage, Job, JobResult, Progress, Queued, Started, WasCancelled
from engine.params import GenerationParams
from engine.remote.wire import (
    Hello,
    WireError,
    WorkerModel,
    decode_event,
    decode_hello,
    decode_job,
    encode_event,
    encode_hello,
    encode_job,
    job_init_image,
    job_model_hash,
)

JOB = Job(
    "abc123def456",
    "2000000000000000001",
    GenerationParams(prompt="a fox", model="m", seed=7, width=64, height=64, batch_size=2),
    max_queued=2,
)


def encoded(kind: str, size: tuple[int, int] = (64, 64)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, "red").save(buffer, format=kind)
    return buffer.getvalue()


def finished(*sizes: tuple[int, int]) -> Finished:
    images = tuple(GeneratedImage(encoded("PNG", s), 7 + n, f"a fox\nSeed: {7 + n}", *s) for n, s in enumerate(sizes))
    return Finished(JobResult(images, images[0].infotext if images else "", 1.5))


def test_jobs_and_every_event_kind_round_trip() -> None:
    assert decode_job(encode_job(JOB)) == JOB
    events = [
        Queued(position=2, ahead=3, eta_seconds=12.5),
        Queued(position=1, ahead=0),
        Started(),
        Progress(3, 20, encoded("JPEG", (128, 128))),
        Progress(4, 20),
        finished((64, 64), (64, 64)),
        Failed(OutOfMemoryError("Out of GPU memory at 2048x2048; try 1024x1024.")),
        WasCancelled(),
    ]
    for event in events:
        back = decode_event(encode_event(event), JOB)
        assert back == event or (isinstance(event, Failed) and type(back.error) is type(event.error))  # type: ignore[union-attr]
        assert not isinstance(event, Failed) or str(back.error) == str(event.error)  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        (encode_event(finished((64, 64))), "exactly the images"),  # one image for a batch of two
        (encode_event(finished((64, 64), (128, 64))), "expected 64x64, got 128x64"),
        (
            {"kind": b"finished", "body": encode_event(finished((64, 64), (64, 64)))["body"], "image0": encoded("PNG")},
            "image 1 is missing",
        ),
        ({**encode_event(finished((64, 64), (64, 64))), "image1": encoded("JPEG")}, "expected a PNG"),
        ({**encode_event(finished((64, 64), (64, 64))), "image1": b"\x89PNG\r\n\x1a\n" + b"\0" * 40}, "damaged"),
        ({"kind": b"progress", "body": b'{"step": 30, "total": 20}'}, "step"),
        ({"kind": b"progress", "body": b'{"step": true, "total": 20}'}, "step"),
        ({**encode_event(Progress(1, 2)), "preview": encoded("JPEG", (512, 512))}, "256 px"),
        (
            {"kind": b"queued", "body": json.dumps({"position": 1, "ahead": 0, "eta": math.inf}).encode()},
            "not JSON|finite",
        ),
        ({"kind": b"telemetry"}, "body|unknown"),
        ({"kind": b"failed", "body": b"[" * 5000 + b"]" * 5000}, "body"),
        ({"kind": b"queued", "body": b"x" * (200 * 1024)}, "body: missing or over"),
        ({"kind": b"\xff"}, "not UTF-8"),
    ],
)
def test_what_a_worker_gets_wrong_is_refused(fields: dict[str, bytes], reason: str) -> None:
    with pytest.raises(WireError, match=reason):
        decode_event(fields, JOB)


def test_an_unknown_error_type_becomes_a_plain_failure() -> None:
    event = decode_event({"kind": b"failed", "body": b'{"type": "SystemExit", "message": "bye"}'}, JOB)
    assert isinstance(event, Failed) and type(event.error) is GenerationFailedError and str(event.error) == "bye"


def test_a_job_with_params_of_the_wrong_types_is_refused() -> None:
    fields = encode_job(JOB)
    params = json.loads(fields["params"])
    for key, value in (("steps", "20"), ("enable_hr", 1), ("prompt", None), ("cfg_scale", True)):
        with pytest.raises(WireError, match="bad params"):
            decode_job({**fields, "params": json.dumps({**params, key: value}).encode()})
    with pytest.raises(WireError, match="bad job id"):
        decode_job({**fields, "job_id": b"../../etc"})


HELLO = Hello(
    worker="gpu-box.lan",
    boot="0123456789abcdef",
    devices=("cuda:0", "cuda:1"),
    models=(WorkerModel("sdxl-base", "31e35c80fc", "sdxl", 8, 2048), WorkerModel("builtin:tiny", None)),
    loaded=("sdxl-base",),
    free_memory=20 << 30,
    slots=2,
    max_images=4,
    speed=0.8,
    running=("abc123def456",),
)


def test_a_heartbeat_round_trips() -> None:
    assert decode_hello(encode_hello(HELLO)) == HELLO
    assert decode_hello(encode_hello(dataclasses.replace(HELLO, accepting=False))).accepting is False


def hello_with(**body: object) -> dict[str, bytes]:
    fields = encode_hello(HELLO)
    return {**fields, "body": json.dumps({**json.loads(fields["body"]), **body}).encode()}


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({**encode_hello(HELLO), "worker": b"../etc"}, "worker name"),
        ({**encode_hello(HELLO), "boot": b"not-hex"}, "boot"),
        (hello_with(models=[{"name": "m", "hash": None, "family": "sd9", "scale": 8, "width": None}]), "family"),
        (hello_with(models=[{"name": "m", "hash": "../../x", "family": "sd1", "scale": 8, "width": None}]), "hash"),
        (hello_with(models=[{"name": "m", "hash": None, "family": "sd1", "scale": 8, "width": None}] * 2001), "list"),
        (hello_with(loaded=["not-listed"]), "does not list"),
        (hello_with(slots=0), "slots"),
        (hello_with(slots=True), "slots"),
        (hello_with(speed=float("nan")), "seconds"),
        (hello_with(running=["../x"]), "job id"),
        (hello_with(accepting="yes"), "accepting"),
    ],
)
def test_what_a_heartbeat_gets_wrong_is_refused(fields: dict[str, bytes], reason: str) -> None:
    with pytest.raises(WireError, match=reason):
        decode_hello(fields)


def test_a_job_s_init_image_must_be_the_one_its_params_name() -> None:
    image = encoded("PNG")
    job = Job("abc123def456", "1", JOB.params.replace(init_image=hashlib.sha256(image).hexdigest()))
    assert job_init_image(encode_job(job) | {"init_image": image}, job) == image
    with pytest.raises(WireError, match="not the image"):
        job_init_image(encode_job(job) | {"init_image": encoded("JPEG")}, job)
    with pytest.raises(WireError, match="missing"):
        job_init_image(encode_job(job), job)
    assert job_init_image(encode_job(JOB), JOB) is None


def test_a_job_names_its_model_hash_and_only_a_hash() -> None:
    assert job_model_hash(encode_job(JOB, "31e35c80fc")) == "31e35c80fc"
    assert job_model_hash(encode_job(JOB)) is None
    with pytest.raises(WireError):
        job_model_hash(encode_job(JOB) | {"model_hash": b"../../etc/passwd"})


def test_a_detailer_job_and_its_notes_round_trip() -> None:
    from engine.detailer import DetailerTab

    tabs = (DetailerTab(model="face_yolov8n", prompt="a face [SEP] [SKIP]", use_steps=True, steps=12),)
    job = dataclasses.replace(JOB, params=JOB.params.replace(detailers=tabs, detail_images=("a" * 64, "b" * 64)))
    assert decode_job(encode_job(job)) == job
    event = finished((64, 64), (64, 64))
    noted = Finished(dataclasses.replace(event.result, notes=("The 1st detailer (face_yolov8n) found nothing.",)))
    assert decode_event(encode_event(noted), JOB) == noted
    fields = encode_job(job)
    params = json.loads(fields["params"])
    for wrong in ([{"model": "face", "steps": "12"}], [{"model": 3}], [{}], "face_yolov8n", [{"model": "f"}] * 5):
        with pytest.raises(WireError, match="bad params"):
            decode_job({**fields, "params": json.dumps({**params, "detailers": wrong}).encode()})
