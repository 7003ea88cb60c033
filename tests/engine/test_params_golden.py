"""Every recorded request resolves to exactly the params (or the refusal) recorded before the request-resolver
refactor (see tests/engine/params_golden.py); with the golden images this proves no image changed."""

from __future__ import annotations

import json
from typing import Any

import pytest

from engine.params import build_params
from tests.engine.params_golden import PARAMS_FILE, REFUSALS, cases, resolved

RECORDED: dict[str, Any] = json.loads(PARAMS_FILE.read_text(encoding="utf-8"))
ALL = cases() | REFUSALS


def test_every_recorded_case_is_still_a_case() -> None:
    assert set(ALL) == set(RECORDED)


@pytest.mark.parametrize("name", sorted(RECORDED))
def test_the_request_resolves_as_recorded(name: str) -> None:
    options, defaults = ALL[name]
    assert resolved(name, options, defaults, build_params) == RECORDED[name]
