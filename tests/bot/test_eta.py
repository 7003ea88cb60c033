"""The queued message carries the executor's ETA as a Discord timestamp that counts down without edits."""

from __future__ import annotations

import re
import time

import pytest

from tests.bot.harness import Harness
from tests.bot.helpers import contents, imagine
from tests.fakes import FakeExecutor


@pytest.fixture
def executor() -> FakeExecutor:
    return FakeExecutor(eta_seconds=90.0)


async def test_the_queued_message_shows_when_the_job_should_be_ready(harness: Harness) -> None:
    before = time.time()
    handle = await imagine(harness, prompt="a red fox", seed="42")
    queued = contents(harness.standin, handle)[0]
    stamp = re.search(r"ready <t:(\d+):R>", queued)
    assert stamp is not None, queued
    assert before + 89 <= int(stamp.group(1)) <= time.time() + 91
