"""Validate recorded request bodies against Discord's OpenAPI spec (tests/data/discord-api-spec/openapi.json).

Each request is matched to its operation by method and path template; its JSON body (for multipart, the unwrapped
`payload_json`) is validated against the operation's `application/json` requestBody schema with jsonschema Draft
2020-12, `$ref`s resolved inside the spec. Exemptions, both listed in SOURCE.md:
- multipart bodies: `payload_json` is unwrapped first (the spec models the fields directly);
- `attachments[].id`: discord.py sends the integer upload index, the spec says snowflake string; Discord accepts
  the integer, so integers there are turned into strings before validating.
- `allowed_mentions.users` / `.roles`: discord.py sends the ids as integers (it always has, and Discord accepts
  them); the spec says snowflake strings, so they are turned into strings too.
- `recipient_id` (opening a DM): an integer from discord.py, turned into a string for the same reason.
"""

from __future__ import annotations

import copy
import functools
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from tests.bot.standin import Recorded

SPEC_PATH = Path(__file__).resolve().parents[1] / "data" / "discord-api-spec" / "openapi.json"
SPEC_URI = "urn:discord-openapi"


@dataclass(frozen=True)
class Operation:
    method: str
    template: str
    pattern: re.Pattern[str]
    validator: Draft202012Validator | None  # None: the operation takes no JSON body


def _pointer(*parts: str) -> str:
    return "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)


@functools.cache
def operations() -> list[Operation]:
    spec = json.loads(SPEC_PATH.read_text())
    spec["$id"] = SPEC_URI
    registry: Registry[Any] = Registry().with_resource(SPEC_URI, Resource.from_contents(spec, DRAFT202012))
    found = []
    for template, item in spec["paths"].items():
        regex = re.sub(r"\{[^}]+\}", "[^/]+", re.escape(template).replace(r"\{", "{").replace(r"\}", "}"))
        for method, operation in item.items():
            if method not in {"get", "put", "post", "patch", "delete"}:
                continue
            content = operation.get("requestBody", {}).get("content", {})
            validator = None
            if "application/json" in content:
                ref = "#/" + _pointer("paths", template, method, "requestBody", "content", "application/json")
                validator = Draft202012Validator({"$ref": f"{SPEC_URI}{ref}/schema"}, registry=registry)
            found.append(Operation(method.upper(), template, re.compile(regex), validator))
    # A literal segment (`@original`, `@me`) beats a parameter in the same place.
    found.sort(key=lambda op: op.template.count("{"))
    return found


def find_operation(method: str, path: str) -> Operation:
    for operation in operations():
        if operation.method == method and operation.pattern.fullmatch(path):
            return operation
    raise LookupError(f"{method} {path} is not an operation in Discord's API spec")


def _normalise(body: Any) -> Any:
    body = copy.deepcopy(body)
    targets = [body, body.get("data")] if isinstance(body, dict) else []
    for target in targets:
        if isinstance(target, dict):
            if isinstance(target.get("recipient_id"), int):
                target["recipient_id"] = str(target["recipient_id"])
            for attachment in target.get("attachments") or []:
                if isinstance(attachment.get("id"), int):
                    attachment["id"] = str(attachment["id"])
            mentions = target.get("allowed_mentions")
            if isinstance(mentions, dict):
                for key in ("users", "roles"):
                    if isinstance(mentions.get(key), list):
                        mentions[key] = [str(i) if isinstance(i, int) else i for i in mentions[key]]
    return body


def validation_errors(recorded: Recorded) -> list[str]:
    """Messages for every way the recorded body breaks the spec (empty when valid or bodiless)."""
    operation = find_operation(recorded.method, recorded.path)
    if recorded.json is None:
        return []
    if operation.validator is None:
        return [f"{recorded.method} {operation.template} takes no JSON body, got {recorded.json!r}"]
    errors = operation.validator.iter_errors(_normalise(recorded.json))
    return [f"{recorded.method} {recorded.path}: {e.message} at {list(e.absolute_path)}" for e in errors]
