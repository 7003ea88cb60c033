"""Every sampler and loop feature gives exactly the image and parameter text recorded in tests/data/golden/tiny.json
(recorded before the generation-plan refactor; see tests/engine/golden.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from engine.pipeline import DiffusersEngine
from tests.engine.golden import GOLDEN_FILE, cases, fingerprint, init_png, platform

pytestmark = pytest.mark.slow

GOLDEN: dict[str, Any] = json.loads(GOLDEN_FILE.read_text(encoding="utf-8"))


def test_every_recorded_case_is_still_a_case() -> None:
    assert set(cases("0" * 64)) == set(GOLDEN["cases"])


@pytest.mark.parametrize("name", sorted(GOLDEN["cases"]))
def test_the_image_and_its_parameter_text_are_unchanged(engine: DiffusersEngine, name: str) -> None:
    if platform() != GOLDEN["platform"]:
        # Pixels depend on torch's CPU kernels and thread count; elsewhere re-record with `-m tests.engine.golden`.
        pytest.skip(f"golden hashes were recorded on {GOLDEN['platform']}, this is {platform()}")
    params = cases(engine.blobs.put(init_png()))[name]
    assert fingerprint(engine, params) == GOLDEN["cases"][name]
