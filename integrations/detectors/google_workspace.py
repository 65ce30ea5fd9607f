"""The ``google_workspace`` detector: Google Workspace Alert Center alerts.

A delivery is the answer of the Alert Center API (``GET /v1beta1/alerts``: ``{"alerts":
[alert, …], "nextPageToken"}``), one alert, or a Pub/Sub push of the notifications the
Alert Center publishes (``{"message": {"data": "<base64 of the alert>", "messageId",
"publishTime"}, "subscription": "…"}``). An alert::

    {"customerId": "C0abc123", "alertId": "e2f3…", "createTime": "…", "startTime": "…",
     "type": "Suspicious login", "source": "Google identity",
     "metadata": {"severity": "HIGH", "status": "NOT_STARTED", …},
     "data": {"@type": "type.googleapis.com/google.apps.alertcenter.type.AccountWarning",
              "email": "alice@corp.example", "loginDetails": {"ipAddress", "loginTime"}}}

``data`` is read by its ``@type``: AccountWarning (suspicious login, leaked password,
…), MailPhishing and BadWhitelist (the recipients, the sender's address as a user only
when the mail is internal, the attachments' SHA-256, the source IP), DeviceCompromised
and SuspiciousActivity (the user; the devices' serial numbers as hosts),
StateSponsoredAttack, UserChanges, DlpRuleViolation (the triggering user and the
recipients), GoogleOperations (the affected users), ActivityRule and AppMakerSqlSetup.
Severity is ``metadata.severity`` (LOW, MEDIUM, HIGH); the id is ``alertId``.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from typing import Any

from integrations.detectors.common import (
    JSONDetector,
    ObservableBuilder,
    has,
    raw_json,
    severity,
    text,
    timestamp,
)
from integrations.detectors.extract import STANDARD, field, ident, mapping, objects, values
from integrations.detectors.network import add_host
from pipeline.errors import ParseError
from pipeline.observables import Observables
from pipeline.plugins import ParsedEvent, detectors

SEVERITY = STANDARD


@detectors.register("google_workspace")
class GoogleWorkspaceDetector(JSONDetector):
    name = "google_workspace"
    label = "Google Workspace Alert Center"
    list_keys = ("alerts",)
    expects = "an alert (alertId with type or source, and customerId)"

    def records(self, document: Any) -> list[Any]:
        if isinstance(document, Mapping) and isinstance(document.get("message"), Mapping):
            return [_pushed(document["message"])]
        return super().records(document)

    def recognises(self, record: Mapping[str, Any]) -> bool:
        return (
            has(record, "alertId")
            and has(record, "customerId")
            and (has(record, "type") or has(record, "source"))
        )

    def event(self, record: Mapping[str, Any]) -> ParsedEvent:
        kind, source = text(record.get("type")), text(record.get("source"))
        normalised, vendor = severity(field(record, "metadata.severity"), SEVERITY)
        title = f"{source}: {kind}" if kind and source else kind or source or "Alert Center"
        return ParsedEvent(
            external_id=ident(record, record.get("alertId")),
            title=title,
            severity=normalised,
            vendor_severity=vendor,
            occurred_at=timestamp(record.get("startTime")) or timestamp(record.get("createTime")),
            observables=observables(mapping(record.get("data"))),
            raw=raw_json(record),
        )


def _pushed(message: Mapping[str, Any]) -> Any:
    """The alert a Pub/Sub push carries in ``message.data`` (base64 of its JSON)."""
    data = text(message.get("data"))
    if data is None:
        raise ParseError("google_workspace: a Pub/Sub push without message.data")
    try:
        return json.loads(base64.b64decode(data, validate=True))
    except (binascii.Error, ValueError, RecursionError):
        raise ParseError("google_workspace: message.data is not base64 of JSON") from None


def observables(data: Mapping[str, Any]) -> Observables:
    found = ObservableBuilder()
    kind = (text(data.get("@type")) or "").rsplit(".", 1)[-1]
    found.user(data.get("email"))
    found.ip(field(data, "loginDetails.ipAddress"), "src")
    for item in objects(data.get("loginDetails")):  # a list in some warnings
        found.ip(item.get("ipAddress"), "src")
    if kind in ("MailPhishing", "BadWhitelist", "PhishingSpike"):
        _mail(found, data)
    for event in objects(data.get("events")):  # DeviceCompromised, SuspiciousActivity
        found.host(event.get("serialNumber") or event.get("deviceId"))
    for address in values(data.get("affectedUserEmails")):  # GoogleOperations
        found.user(address)
    violation = mapping(data.get("ruleViolationInfo"))  # DlpRuleViolation
    found.user(violation.get("triggeringUserEmail"))
    for recipient in values(violation.get("recipients")):
        found.user(recipient)
    for change in objects(data.get("userChanges")):
        found.user(change.get("email"))
    found.user(data.get("actorEmail"))
    return found.build()


def _mail(found: ObservableBuilder, data: Mapping[str, Any]) -> None:
    entity = mapping(data.get("maliciousEntity"))
    sender = text(entity.get("fromHeader")) or text(field(entity, "entity.emailAddress"))
    if data.get("isInternal") is True:
        found.user(sender)  # one of ours sent it: an account to look at
    elif sender and "@" in sender:
        add_host(found, sender.rsplit("@", 1)[1].strip(">"))  # the sender's domain
    found.ip(data.get("sourceIp"), "src")
    for message in objects(data.get("messages")):
        found.user(message.get("recipient"))
        for digest in values(message.get("attachmentsSha256Hash")):
            found.hash(digest)
