"""The ``generic`` detector: one JSON object per alert, in Fido's own simple shape.

    {"id": "a-1", "title": "Impossible travel", "severity": "critical",
     "occurred_at": "2026-11-28T01:00:00Z", "user": "alice", "host": "laptop-042",
     "src_ip": "203.0.113.9", "dst_ip": "10.0.0.5", "hash": "…", "domain": "…", "url": "…"}

Only ``title`` is required. Each observable field takes a string or a list of strings.
The policy's ``field_map`` maps any of these fields onto a dotted path in another shape,
e.g. ``{"user": "actor.alternateId", "title": "rule.name"}``. A delivery may also be a
JSON array of such objects, or JSON Lines (one object per line). Without an ``id``, a
fingerprint of the content is used, so a redelivered alert is still recognised as a
duplicate; an ``id`` over 255 characters is replaced by its digest, never cut. A control
character in ``id`` or an observable field, or an ``occurred_at`` outside the years
1970-2100, is refused naming the field.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from integrations.detectors.common import (
    fingerprint,
    fitted_id,
    json_documents,
    raw_json,
    within_years,
)
from pipeline.errors import ParseError
from pipeline.models import Severity
from pipeline.observables import Observables, control_character
from pipeline.plugins import DetectorBase, ParsedEvent, counted, detectors

FIELDS = (
    "id",
    "title",
    "severity",
    "occurred_at",
    "user",
    "host",
    "src_ip",
    "dst_ip",
    "hash",
    "domain",
    "url",
)
_OBSERVABLE_FIELDS = {
    "user": "users",
    "host": "hosts",
    "src_ip": "src_ips",
    "dst_ip": "dst_ips",
    "hash": "hashes",
    "domain": "domains",
    "url": "urls",
}
_SEVERITIES = {s.value for s in Severity} | {"info"}
_ACCEPTED = ", ".join([*(s.value for s in Severity), "info"])  # every value it takes


def _lookup(item: Mapping[str, Any], path: str) -> Any:
    value: Any = item
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def _no_controls(field: str, value: str) -> str:
    """``value``, or ParseError when it holds a control character (NUL, ESC, DEL, …):
    ids and observables are matched and acted on, so they are refused, not cleaned."""
    bad = control_character(value)
    if bad is not None:
        raise ParseError(f"field {field!r} holds a control character (U+{ord(bad):04X})")
    return value


def _strings(field: str, value: Any) -> list[str]:
    if value is None:
        return []
    values = value if isinstance(value, list) else [value]
    out: list[str] = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, str | int):
            raise ParseError(f"field {field!r} must be a string or a list of strings")
        if str(v).strip():
            out.append(_no_controls(field, str(v).strip()))
    return out


def _ips(field: str, values: list[str]) -> list[str]:
    for v in values:
        try:
            ipaddress.ip_address(v)
        except ValueError:
            raise ParseError(f"field {field!r}: {v!r} is not an IP address") from None
    return values


def _time(value: Any) -> datetime | None:
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise ParseError("field 'occurred_at' must be an ISO 8601 string")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ParseError(f"field 'occurred_at': {value!r} is not an ISO 8601 time") from None
    moment = parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return within_years(moment, value, "occurred_at")


class Options(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"field_map": {"user": "actor.name", "title": "rule.name"}}]
        },
    )

    # Fido's field → a dotted path in the payload, e.g. {"user": "actor.alternateId"}; the
    # policy's ``detectors.generic.field_map`` is passed here
    field_map: dict[str, str] = Field(default_factory=dict)

    @field_validator("field_map")
    @classmethod
    def _known_fields(cls, field_map: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(field_map) - set(FIELDS))
        if unknown:
            raise ValueError(
                f"names unknown fields: {', '.join(unknown)} (known: {', '.join(FIELDS)})"
            )
        return field_map


@detectors.register("generic")
class GenericDetector(DetectorBase):
    name = "generic"
    Options = Options

    def __init__(self, field_map: Mapping[str, str] | None = None) -> None:
        self.field_map = dict(field_map or {})

    def parse(self, body: bytes) -> list[ParsedEvent]:
        documents = json_documents(body)
        if len(documents) == 1 and isinstance(documents[0], dict):
            return [self.parse_one(documents[0], raw=body.decode("utf-8-sig"))]
        items: list[Any] = []
        for document in documents:
            items.extend(document if isinstance(document, list) else [document])
        if not items:
            raise ParseError("expected a JSON object (or a non-empty array of objects)")
        if not all(isinstance(item, dict) for item in items):
            raise ParseError("expected JSON objects; a JSON array must hold alert objects only")
        return [self.parse_one(item, raw=raw_json(item)) for item in counted(items)]

    def _get(self, item: Mapping[str, Any], field: str) -> Any:
        return _lookup(item, self.field_map.get(field, field))

    def parse_one(self, item: Mapping[str, Any], *, raw: str) -> ParsedEvent:
        title = self._get(item, "title")
        if not isinstance(title, str) or not title.strip():
            raise ParseError("field 'title' is required and must be a non-empty string")
        severity = self._get(item, "severity") or "medium"
        if not isinstance(severity, str) or severity.lower() not in _SEVERITIES:
            raise ParseError(f"field 'severity' must be one of {_ACCEPTED} (got {severity!r})")
        severity = "informational" if severity.lower() == "info" else severity.lower()
        values: dict[str, list[str]] = {}
        for field, kind in _OBSERVABLE_FIELDS.items():
            found = _strings(field, self._get(item, field))
            if kind.endswith("ips"):
                found = _ips(field, found)
            values.setdefault(kind, []).extend(found)
        external_id = self._get(item, "id")
        if external_id is None or external_id == "":
            external_id = fingerprint(item)
        elif isinstance(external_id, bool) or not isinstance(external_id, str | int):
            raise ParseError("field 'id' must be a string or a number")
        return ParsedEvent(
            external_id=fitted_id(_no_controls("id", str(external_id))),
            title=title.strip(),
            severity=severity,
            raw=raw,
            observables=Observables.model_validate(values),
            occurred_at=_time(self._get(item, "occurred_at")),
        )
