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
    has,
    raw_json,
    severity,
    text,
    timestamp,
)
from integrations.detectors.extract import STANDARD, ident, mapping, objects
from pipeline.errors import ParseError
from pipeline.observables import Observables
from pipeline.plugins import ParsedEvent, detectors

SEVERITY = STANDARD
_COMMON = ("raisedAt", "managedAgent")


@detectors.register("sophos")
class SophosDetector(JSONDetector):
    name = "sophos"
    label = "Sophos Central"
    list_keys = ("items",)
    expects = (
        "a SIEM alert or event (type 'Event::…') or a Common API alert (raisedAt or managedAgent)"
    )

    def recognises(self, record: Mapping[str, Any]) -> bool:
        kind = text(record.get("type")) or ""
        return kind.startswith("Event::") or any(has(record, k) for k in _COMMON)

    def event(self, record: Mapping[str, Any]) -> ParsedEvent:
        name = text(record.get("description")) or text(record.get("name"))
        name = name or text(record.get("threat")) or text(record.get("type"))
        if name is None and text(record.get("id")) is None:
            raise ParseError("a Sophos alert with neither an id nor a description")
        normalised, vendor = severity(record.get("severity"), SEVERITY)
        external_id = ident(record, record.get("id"))
        return ParsedEvent(
            external_id=external_id,
            title=name or f"Sophos alert {external_id}",
            severity=normalised,
            vendor_severity=vendor,
            occurred_at=timestamp(record.get("when"))
            or timestamp(record.get("raisedAt"))
            or timestamp(record.get("created_at"))
            or timestamp(record.get("rt")),
            observables=observables(record),
            raw=raw_json(record),
        )


def observables(item: Mapping[str, Any]) -> Observables:
    found = ObservableBuilder()
    data = mapping(item.get("data"))
    # the SIEM script's JSON adds suser/dhost; alerts carry an event's fields in "data"
    for key in ("source", "suser"):
        found.user(item.get(key))
    found.user(dig(item, "person", "name"))
    for where in (item, data):
        for key in ("user", "user_name", "username"):
            found.user(where.get(key))
    for key in ("location", "dhost"):
        found.host(item.get(key))
    found.host(dig(item, "managedAgent", "name"))
    found.ip(dig(item, "source_info", "ip"))
    found.ip(dig(data, "source_info", "ip"))
    for where in (item, data):
        for key in ("appSha256", "sha256", "fileSha256"):
            found.hash(where.get(key))
    for key in ("description", "name"):
        found.file(_named_path(item.get(key)))
    remedies = dig(data, "core_remedy_items", "items") or dig(item, "core_remedy_items", "items")
    for remedy in objects(remedies):
        if text(remedy.get("type")) in ("file", "process"):
            found.file(remedy.get("descriptor"))
        found.file(remedy.get("processPath"))
    _ips_threat(found, dig(data, "ips_threat"), "remote_ip", "executable_name", "executable_path")
    for where in (item, data):
        _ips_threat(
            found, where.get("ips_threat_data"), "remoteIp", "executableName", "executablePath"
        )
    amsi = item.get("amsi_threat_data") or data.get("amsi_threat_data")
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
