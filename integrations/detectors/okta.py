"""The ``okta`` detector: Okta System Log events.

Events reach Fido as Okta sends them:

- an Event Hook delivery (``POST /webhooks/okta``)::

      {"eventType": "com.okta.event_hook", "eventTypeVersion": "1.0",
       "source": "https://acme.okta.com/api/v1/eventHooks/who…",
       "data": {"events": [<LogEvent>, …]}}

- the answer of ``GET /api/v1/logs`` (a JSON array of LogEvent), one LogEvent, or Okta's
  Log Streaming to Amazon EventBridge (``{"detail-type": "SystemLog", "detail": {…}}``).

A LogEvent::

    {"uuid": "…", "published": "2024-08-13T15:58:20.353Z",
     "eventType": "user.session.start", "displayMessage": "User login to Okta",
     "severity": "INFO", "actor": {"type": "User", "alternateId": "alice@example.com"},
     "client": {"ipAddress": "198.51.100.7", "userAgent": {"rawUserAgent": "…"}},
     "outcome": {"result": "FAILURE", "reason": "INVALID_CREDENTIALS"},
     "target": [{"type": "User", "alternateId": "bob@example.com"}],
     "securityContext": {"isProxy": false, …}, "request": {"ipChain": [{"ip": "…"}]}}

Okta's severity DEBUG / INFO / WARN / ERROR becomes informational / low / medium / high.
Users are the actor and the targets that are people (``type: User``), by their login;
Okta's own principals and apps are not. The client's address is the source IP; the
proxies of ``request.ipChain`` are kept as IPs without a role. The id is the event's
``uuid``.

Before it delivers anything, Okta verifies an Event Hook with a ``GET`` carrying the
``X-Okta-Verification-Challenge`` header, and expects the value back: ``challenge``
gives that answer.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from integrations.detectors.common import (
    JSONDetector,
    ObservableBuilder,
    dig,
    fingerprint,
    has,
    raw_json,
    severity,
    text,
    timestamp,
)
from pipeline.errors import ParseError
from pipeline.plugins import ParsedEvent, detectors

SEVERITY = {"debug": "informational", "info": "low", "warn": "medium", "error": "high"}
CHALLENGE_HEADER = "x-okta-verification-challenge"
_QUIET_OUTCOMES = {"SUCCESS", "ALLOW"}


def _events(document: Any) -> list[Any]:
    """The LogEvents in one delivered document, whatever envelope carries them."""
    if isinstance(document, list):
        return document
    if not isinstance(document, Mapping):
        return [document]
    if document.get("eventType") == "com.okta.event_hook":
        events = dig(document, "data", "events")
        if not isinstance(events, list):
            raise ParseError("event hook delivery without data.events")
        return events
    if "detail-type" in document and isinstance(document.get("detail"), Mapping):
        return [document["detail"]]  # Log Streaming to Amazon EventBridge
    return [document]


@detectors.register("okta")
class OktaDetector(JSONDetector):
    name = "okta"

    def challenge(self, headers: Mapping[str, str]) -> dict[str, str] | None:
        """The answer to Okta's one-time Event Hook verification, or None when the
        request is not one."""
        for key, value in headers.items():
            if key.lower() == CHALLENGE_HEADER:
                return {"verification": value}
        return None

    label = "Okta"
    expects = "a System Log event (eventType with uuid, published or actor)"

    def records(self, document: Any) -> list[Any]:
        return _events(document)

    def recognises(self, record: Mapping[str, Any]) -> bool:
        if not has(record, "eventType"):
            return "displayMessage" in record  # let event() name what it lacks
        return any(has(record, key) for key in ("uuid", "published", "actor"))

    def event(self, record: Mapping[str, Any]) -> ParsedEvent:
        kind = text(record.get("eventType"))
        message = text(record.get("displayMessage"))
        if kind is None and message is None:
            raise ParseError("LogEvent has neither an eventType nor a displayMessage")
        title = message or kind or ""
        result = text(dig(record, "outcome", "result"))
        if result and result.upper() not in _QUIET_OUTCOMES:
            reason = text(dig(record, "outcome", "reason"))
            title = f"{title}: {result}" + (f" ({reason})" if reason else "")
        normalised, vendor = severity(record.get("severity"), SEVERITY, default="low")
        external_id = text(record.get("uuid")) or fingerprint(record)
        return ParsedEvent(
            external_id=external_id if len(external_id) <= 255 else fingerprint(record),
            title=title,
            severity=normalised,
            vendor_severity=vendor[:64] if vendor else None,
            occurred_at=timestamp(record.get("published")),
            observables=_observables(record),
            raw=raw_json(record),
        )


def _observables(record: Mapping[str, Any]) -> Any:
    found = ObservableBuilder()
    for entity in [record.get("actor"), *_list(record.get("target"))]:
        if isinstance(entity, Mapping) and text(entity.get("type")) in (None, "User"):
            found.user(entity.get("alternateId"))
    found.ip(dig(record, "client", "ipAddress"), "src")
    for hop in _list(dig(record, "request", "ipChain")):
        if isinstance(hop, Mapping):
            found.ip(hop.get("ip"))
    return found.build()


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []
