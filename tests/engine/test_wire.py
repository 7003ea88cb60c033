"""The wire format for remote workers: everything Easel sends comes back equal, and what a worker could send
wrong is refused before it is used (counts, sizes, formats, numbers, text, error types)."""

from __future__ import annotations

import io
import json
import math

import pytest
from PIL import Image

from engine.errors import GenerationFailedError, OutOfMemoryError
from engine.jobs import Failed, Finished, GeneratedImage, Job, JobResult, Progress, Queued, Started, WasCancelled
from engine.params import GenerationParams
from engine.wire import WireError, decode_event, decode_job, encode_event, encode_job

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
