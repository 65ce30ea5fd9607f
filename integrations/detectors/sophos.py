"""The ``sophos`` detector: Sophos Central alerts and events.

A delivery is a page of one of Sophos Central's APIs, one item of it, an array or JSON
Lines (as Sophos's SIEM integration script writes them):

- the SIEM API, ``GET /siem/v1/alerts`` and ``GET /siem/v1/events``
  (``{"items": [...], "has_more", "next_cursor"}``). An alert: ``{"id", "severity",
  "type": "Event::Endpoint::Threat::CleanupFailed", "description": "Manual cleanup
  required: 'EICAR-AV-Test' at 'C:\\\\…'", "threat", "location": "<computer name>",
  "source": "<DOMAIN\\\\user>", "when", "created_at", "data": {"source_info": {"ip"},
  "core_remedy_items": {"items": [{"descriptor": "<path>", "type": "file"}]},
  "ips_threat": {…}, "hmpa_exploit": {…}, …}}``; an event has ``name`` in place of
  ``description`` and its details (``source_info``, ``appSha256``, ``ips_threat_data``,
  ``amsi_threat_data``) on the top level;
- the Common API, ``GET /common/v1/alerts`` (``{"items": [...], "pages": {…}}``):
  ``{"id", "category", "description", "severity", "type", "raisedAt", "product",
  "managedAgent": {"id", "type", "name"?}, "person": {"id", "name"?}, "tenant": {…}}``.

Severity is Sophos's word: low, medium or high. The file a threat description names
(``… at 'C:\\\\…'``) is kept as a file. ``source`` and ``person.name`` are the user,
``location`` and ``managedAgent.name`` the host (Sophos's endpoint and person ids are not).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from integrations.detectors.common import (
    JSONDetector,
    ObservableBuilder,
    dig,
    fingerprint,
    raw_json,
    severity,
    text,
    timestamp,
)
from pipeline.errors import ParseError
from pipeline.observables import Observables
from pipeline.plugins import ParsedEvent, detectors

SEVERITY = {
    "info": "informational",
    "informational": "informational",
    "low": "low",
    "medium": "medium",
    "high": "high",
    "critical": "critical",
}


def _records(document: Any) -> list[Any]:
    if isinstance(document, Mapping) and "items" in document:
        items = document["items"]
        if not isinstance(items, list):
            raise ParseError("sophos: items is not a list")
        return items
    return [document]


@detectors.register("sophos")
class SophosDetector(JSONDetector):
    name = "sophos"

    def records(self, document: Any) -> list[Any]:
        if isinstance(document, list):
            return [record for item in document for record in _records(item)]
        return _records(document)

    def event(self, record: Mapping[str, Any]) -> ParsedEvent:
        ident = text(record.get("id"))
        title = text(record.get("description")) or text(record.get("name"))
        title = title or text(record.get("threat")) or text(record.get("type"))
        if ident is None and title is None:
            raise ParseError("not a Sophos alert or event: it has neither an id nor a description")
        normalised, vendor = severity(record.get("severity"), SEVERITY)
        external_id = ident or fingerprint(record)
        return ParsedEvent(
            external_id=external_id,
            title=title or f"Sophos alert {external_id}",
            severity=normalised,
            vendor_severity=vendor,
            occurred_at=timestamp(record.get("when"))
            or timestamp(record.get("raisedAt"))
            or timestamp(record.get("created_at")),
            observables=observables(record),
            raw=raw_json(record),
        )


def observables(item: Mapping[str, Any]) -> Observables:
    found = ObservableBuilder()
    data = item.get("data") if isinstance(item.get("data"), Mapping) else {}
    found.user(item.get("source"))
    found.user(dig(item, "person", "name"))
    found.host(item.get("location"))
    found.host(dig(item, "managedAgent", "name"))
    found.ip(dig(item, "source_info", "ip"))
    found.ip(dig(data, "source_info", "ip"))
    found.hash(item.get("appSha256"))
    for key in ("description", "name"):
        found.file(_named_path(item.get(key)))
    remedies = dig(data, "core_remedy_items", "items") or dig(item, "core_remedy_items", "items")
    for remedy in remedies if isinstance(remedies, list) else []:
        if isinstance(remedy, Mapping) and text(remedy.get("type")) in ("file", "process"):
            found.file(remedy.get("descriptor"))
    _ips_threat(found, dig(data, "ips_threat"), "remote_ip", "executable_name", "executable_path")
    _ips_threat(found, item.get("ips_threat_data"), "remoteIp", "executableName", "executablePath")
    amsi = item.get("amsi_threat_data")
    if isinstance(amsi, Mapping):
        found.process(amsi.get("processName"))
        found.file(amsi.get("processPath"))
    exploit = dig(data, "hmpa_exploit")
    if isinstance(exploit, Mapping):
        found.file(exploit.get("process_path"))
    return found.build()


def _named_path(message: Any) -> str | None:
    """The path a threat message ends with: "Malware detected: 'X' at '<path>'"."""
    value = (text(message) or "").rstrip()
    start = value.rfind(" at '", 0, len(value) - 1)
    return value[start + 5 : -1] or None if value.endswith("'") and start >= 0 else None


def _ips_threat(found: ObservableBuilder, threat: Any, ip: str, name: str, path: str) -> None:
    """An intrusion-prevention detection: the remote address (Sophos does not say which
    way the connection went) and the program that made or took it."""
    if not isinstance(threat, Mapping):
        return
    found.ip(threat.get(ip))
    found.process(threat.get(name))
    found.file(threat.get(path))
