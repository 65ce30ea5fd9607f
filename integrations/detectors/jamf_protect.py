"""The ``jamf_protect`` detector: Jamf Protect alerts from the Macs it guards.

Jamf Protect sends what an action configuration names to an HTTP endpoint (or to a SIEM
stream that forwards it), one JSON object per record:

- an alert (an analytic matched) or a unified-log filter match::

      {"caid": "…", "certid": "…",
       "host": {"hostname": "…", "ips": ["…"], "serial": "…", "os": "…"},
       "input": {"eventType": "GPProcessEvent" | "GPFSEvent" | "GPDownloadEvent"
                              | "GPUnifiedLogEvent" | …,
                 "host": {…},
                 "match": {"uuid": "…", "severity": 2, "facts": [{"name", "human",
                           "severity", "tags"}], "event": {"timestamp", "path", …},
                           "tags": […], "actions": […]},
                 "related": {"users": [{"uid", "name"}], "processes": [{"pid", "path",
                             "args", "user", "signingInfo", "sha256hex"?}], "files":
                             [{"path", "sha256hex", "sha1hex"}], "binaries": […]}}}

- endpoint telemetry and the network traffic stream, which are no alerts: they are
  accepted and skipped with a reason.

Severity is the match's: 0 informational, 1 low, 2 medium, 3 high. The id is the match's
``uuid``. The title is the first fact's ``human`` text, or its name, or the event type.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from integrations.detectors.common import (
    JSONDetector,
    ObservableBuilder,
    raw_json,
    severity,
    text,
    timestamp,
)
from integrations.detectors.extract import add_process, field, ident, mapping, objects, values
from integrations.detectors.network import add_url
from pipeline.observables import Observables
from pipeline.plugins import ParsedEvent, detectors

SEVERITY = {"0": "informational", "1": "low", "2": "medium", "3": "high"}
_WORDS = {"informational": "informational", "low": "low", "medium": "medium", "high": "high"}


@detectors.register("jamf_protect")
class JamfProtectDetector(JSONDetector):
    name = "jamf_protect"
    label = "Jamf Protect"
    expects = "an alert (input.match with uuid, and caid or input.host)"

    def recognises(self, record: Mapping[str, Any]) -> bool:
        match = field(record, "input.match")
        return (
            isinstance(match, Mapping)
            and text(match.get("uuid")) is not None
            and ("caid" in record or isinstance(field(record, "input.host"), Mapping))
        )

    def skip(self, record: Mapping[str, Any]) -> str | None:
        if isinstance(record.get("header"), Mapping) and isinstance(record.get("event"), Mapping):
            return "Jamf Protect telemetry record: not an alert"
        product = text(field(record, "event.metadata.product"))
        if product == "Network Traffic Stream":
            return "Jamf Protect network traffic record: not an alert"
        return None

    def event(self, record: Mapping[str, Any]) -> ParsedEvent:
        match = mapping(field(record, "input.match"))
        facts = objects(match.get("facts"))
        first = facts[0] if facts else {}
        kind = text(field(record, "input.eventType"))
        title = text(first.get("human")) or text(first.get("name")) or kind or "Jamf Protect alert"
        level = text(match.get("severity"))
        table = SEVERITY if level is None or level.isdigit() else _WORDS
        normalised, vendor = severity(level, table)
        return ParsedEvent(
            external_id=ident(record, match.get("uuid")),
            title=title,
            severity=normalised,
            vendor_severity=vendor,
            occurred_at=timestamp(field(match, "event.timestamp"))
            or timestamp(record.get("timestamp")),
            observables=observables(record),
            raw=raw_json(record),
        )


def observables(alert: Mapping[str, Any]) -> Observables:
    found = ObservableBuilder()
    for host in (mapping(alert.get("host")), mapping(field(alert, "input.host"))):
        found.host(host.get("hostname"))
        for address in values(host.get("ips")):
            found.ip(address)
    related = mapping(field(alert, "input.related"))
    for user in objects(related.get("users")):
        if text(user.get("uid")) != "0":  # root: the system, no person to contain
            found.user(user.get("name"))
    for process in objects(related.get("processes")):
        add_process(found, process, path="path", hashes=("sha256hex", "sha1hex"))
        found.user(
            field(process, "user.name") if isinstance(process.get("user"), Mapping) else None
        )
    for key in ("files", "binaries"):
        for item in objects(related.get(key)):
            found.file(item.get("path"))
            for digest in ("sha256hex", "sha1hex", "sha256", "sha1"):
                found.hash(item.get(digest))
    event = mapping(field(alert, "input.match.event"))
    found.file(event.get("path"))
    add_url(found, event.get("quarantineDataURL") or event.get("url"))
    return found.build()
