from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.bot.harness import Harness, make_settings
from tests.bot.spec import validation_errors
from tests.bot.standin import Standin
from tests.fakes import FakeExecutor, FakeNetworks, FakeRegistry


@pytest.fixture
async def standin() -> AsyncIterator[Standin]:
    server = Standin()
    await server.start()
    yield server
    await server.close()


@pytest.fixture
def executor() -> FakeExecutor:
    return FakeExecutor()


@pytest.fixture
def registry() -> FakeRegistry:
    return FakeRegistry()


@pytest.fixture
def networks() -> FakeNetworks:
    return FakeNetworks()


@pytest.fixture
async def harness(
    standin: Standin, executor: FakeExecutor, registry: FakeRegistry, networks: FakeNetworks, tmp_path: Path
) -> AsyncIterator[Harness]:
    """A running bot on fakes; on teardown every JSON body it sent must match Discord's API spec."""
    rig = Harness(standin, make_settings(standin, tmp_path / "data"), executor, registry, networks)
    await rig.start()
    yield rig
    await rig.stop()
    problems = [problem for recorded in standin.requests for problem in validation_errors(recorded)]
    assert not problems, "\n".join(problems)
