"""Live previews on the progress message, through discord.py against the stand-in: the progress edit carries the
preview as the message's one attachment (a multipart PATCH whose payload_json validates against Discord's spec),
and the final message holds only the results."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from PIL import Image

from config.settings import load_settings
from engine.jobs import Job, JobEvent, Progress, Ticket
from engine.previews import encode_preview
from tests.bot.harness import Harness
from tests.bot.helpers import edits, imagine, job_id_of
from tests.bot.standin import Recorded
from tests.fakes import FakeExecutor


def preview_jpeg(colour: tuple[int, int, int]) -> bytes:
    return encode_preview(Image.new("RGB", (16, 16), colour))


@dataclass
class PreviewingExecutor(FakeExecutor):
    """The fake executor, with a preview on the progress events of the steps in `preview_steps`."""

    preview_steps: tuple[int, ...] = (1, 3)

    async def submit(self, job: Job) -> Ticket:
        ticket = await super().submit(job)
        return Ticket(job, self._with_previews(ticket.events))

    async def _with_previews(self, events: AsyncIterator[JobEvent]) -> AsyncIterator[JobEvent]:
        async for event in events:
            if isinstance(event, Progress) and event.step in self.preview_steps:
                yield Progress(event.step, event.total, preview=preview_jpeg((40 * event.step, 0, 0)))
            else:
                yield event


@pytest.fixture
def executor() -> FakeExecutor:
    return PreviewingExecutor()


def preview_edits(recorded: list[Recorded]) -> list[Recorded]:
    return [r for r in recorded if r.files and r.files[0].filename.endswith("-preview.jpg")]


async def test_a_progress_edit_carries_the_preview_as_its_one_attachment(harness: Harness) -> None:
    handle = await imagine(harness, prompt="a red fox", steps=4)
    job_id = job_id_of(harness.standin, handle)
    first, second = preview_edits(edits(harness.standin, handle))
    for edit, step in ((first, 1), (second, 3)):
        assert edit.multipart and f"step {step}/4" in edit.json["content"]
        [upload] = edit.files
        assert upload.field == "files[0]" and upload.filename == f"easel-{job_id}-preview.jpg"
        assert edit.json["attachments"] == [{"id": 0, "filename": upload.filename}]  # replaces the last one
        with Image.open(io.BytesIO(upload.data)) as image:
            assert image.format == "JPEG" and max(image.size) <= 256
            assert image.convert("RGB").getpixel((0, 0)) == pytest.approx((40 * step, 0, 0), abs=8)


async def test_an_edit_without_a_new_preview_leaves_the_attachment_alone(harness: Harness) -> None:
    handle = await imagine(harness, prompt="a red fox", steps=4)
    [step2] = [r for r in edits(harness.standin, handle) if r.json and "step 2/4" in r.json.get("content", "")]
    assert not step2.multipart and "attachments" not in step2.json


async def test_the_final_message_has_only_the_results(harness: Harness) -> None:
    handle = await imagine(harness, prompt="a red fox", steps=4)
    final = edits(harness.standin, handle)[-1]
    assert [f.filename for f in final.files] == [a["filename"] for a in final.json["attachments"]]
    assert all(f.filename.endswith(".png") for f in final.files)
    names = [a["filename"] for a in harness.standin.original(handle)["attachments"]]
    assert names and all(name.endswith(".png") for name in names)


async def test_a_failed_job_takes_its_preview_down(harness: Harness, executor: FakeExecutor) -> None:
    executor.fail_prompts.add("doomed")
    handle = await imagine(harness, prompt="doomed", steps=4)
    final = edits(harness.standin, handle)[-1]
    assert "Out of memory" in final.json["content"] and final.json["attachments"] == []
    assert harness.standin.original(handle)["attachments"] == []


def test_previews_are_on_by_default_and_can_be_turned_off(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # no .env from the checkout
    assert load_settings().previews is True
    monkeypatch.setenv("EASEL_PREVIEWS", "false")
    assert load_settings().previews is False
