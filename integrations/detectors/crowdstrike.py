"""The ``crowdstrike`` detector: CrowdStrike Falcon detections, incidents and alerts.

Falcon reaches Fido in the shapes CrowdStrike sends:

- Event Streams (the streaming API, or a forwarder of it), one event per record, as
  JSON Lines or an array::

      {"metadata": {"customerIDString": "…", "offset": 8695332, "version": "1.0",
                    "eventType": "DetectionSummaryEvent", "eventCreationTime": 1698932615000},
       "event": {"DetectId": "ldt:…", "DetectName": "…", "Severity": 4,
                 "SeverityName": "High", "ComputerName": "…", "UserName": "…", …}}

  Alerts are ``DetectionSummaryEvent``, its successor ``EppDetectionSummaryEvent``
  (spelled ``EPPDetectionSummaryEvent`` too), ``IdpDetectionSummaryEvent`` (Identity
  Protection) and ``IncidentSummaryEvent``. The stream's other events (audit, firewall
  matches, remote-response sessions) are not alerts and are skipped; a delivery holding
  none at all is a ParseError.
- The Alerts API v2: the body of ``POST /alerts/entities/alerts/v2`` (``{"meta": …,
  "resources": [alert, …], "errors": []}``, as the ``crowdstrike_api`` source delivers
  it), one alert object, or an array of them.

Severity: ``SeverityName`` / ``severity_name`` when it is a known word; otherwise the
number, on the 1–5 scale of the legacy detection events (1 informational … 5 critical)
when it is at most 5, else on the 0–100 scale of the Raptor platform (90 critical,
70 high, 50 medium, 20 low, below informational). An incident's CrowdScore (``FineScore``,
0–10; 0–100 from the API) is banded 9 critical, 7 high, 4 medium, below low.

The id is the detection's composite id (the same in the stream and in the Alerts API, so
an alert seen both ways is one event), else ``DetectId``, ``IncidentID`` or the alert's
``id``. All-zero hashes (Falcon's "not computed") are left out.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from integrations.detectors.common import (
    JSONDetector,
    ObservableBuilder,
    dig,
    fingerprint,
    raw_json,
    severity,
    severity_from_number,
    text,
    timestamp,
)
from pipeline.errors import ParseError
from pipeline.observables import Observables
from pipeline.plugins import ParsedEvent, detectors

NAMES = {
    "informational": "informational",
    "info": "informational",
    "low": "low",
    "medium": "medium",
    "high": "high",
    "critical": "critical",
}
LOW = float("-inf")
LEGACY = ((5, "critical"), (4, "high"), (3, "medium"), (2, "low"), (LOW, "informational"))
SCORE = ((90, "critical"), (70, "high"), (50, "medium"), (20, "low"), (LOW, "informational"))
CROWDSCORE = ((9, "critical"), (7, "high"), (4, "medium"), (LOW, "low"))
DETECTIONS = {"detectionsummaryevent", "eppdetectionsummaryevent", "idpdetectionsummaryevent"}
INCIDENT = "incidentsummaryevent"
# ConnectionDirection of a network access: 0 outbound (the host calls out), 1 inbound
_ROLES = {"0": ("src", "dst"), "1": ("dst", "src")}


def _stream_type(document: Mapping[str, Any]) -> str | None:
    """The lower-cased eventType of an Event Streams envelope, or None if it is not one."""
    if isinstance(document.get("metadata"), Mapping) and "event" in document:
        return (text(document["metadata"].get("eventType")) or "").lower()
    return None


def _records(document: Any) -> list[Any]:
    if not isinstance(document, Mapping):
        return [document]
    if "resources" in document and "metadata" not in document:
        resources = document["resources"]
        if resources is None:
            return []
        if not isinstance(resources, list):
            raise ParseError("crowdstrike: resources is not a list")
        return resources
    kind = _stream_type(document)
    if kind is not None and kind not in DETECTIONS and kind != INCIDENT:
        return []  # a stream event that is not an alert
    return [document]


@detectors.register("crowdstrike")
class CrowdStrikeDetector(JSONDetector):
    name = "crowdstrike"

    def records(self, document: Any) -> list[Any]:
        if isinstance(document, list):
            return [record for item in document for record in _records(item)]
        return _records(document)

    def event(self, record: Mapping[str, Any]) -> ParsedEvent:
        kind = _stream_type(record)
        if kind is None:
            return _alert(record)
        detail = record["event"]
        if not isinstance(detail, Mapping):
            raise ParseError("the stream event's 'event' is not an object")
        if kind == INCIDENT:
            return _incident(record, detail)
        return _detection(record, detail)


def falcon_severity(name: Any, number: Any) -> tuple[str, str | None]:
    """The severity from Falcon's word for it, or else from its number (see above)."""
    word = text(name)
    if word is not None and word.lower() in NAMES:
        return severity(word, NAMES)
    value = text(number)
    try:
        bands = LEGACY if value is not None and float(value) <= 5 else SCORE
    except ValueError:
        bands = SCORE
    return severity_from_number(number, bands)


def _finish(
    record: Mapping[str, Any], found: Observables, ident: Any, title: str | None, **rest: Any
) -> ParsedEvent:
    if title is None and text(ident) is None:
        raise ParseError("not a Falcon alert: it has no id, name or description")
    external_id = text(ident) or fingerprint(record)
    return ParsedEvent(
        external_id=external_id,
        title=title or f"Falcon alert {external_id}",
        observables=found,
        raw=raw_json(record),
        **rest,
    )


def _title(name: Any, description: Any) -> str | None:
    name, description = text(name), text(description)
    if name and description and description != name:
        return f"{name}: {description}"
    return name or description


def _detection(record: Mapping[str, Any], event: Mapping[str, Any]) -> ParsedEvent:
    normalised, vendor = falcon_severity(event.get("SeverityName"), event.get("Severity"))
    return _finish(
        record,
        _detection_observables(event),
        event.get("CompositeId") or event.get("DetectId"),
        _title(
            event.get("DetectName") or event.get("Name"),
            event.get("DetectDescription") or event.get("Description"),
        ),
        severity=normalised,
        vendor_severity=vendor,
        occurred_at=timestamp(dig(record, "metadata", "eventCreationTime")),
    )


def _detection_observables(event: Mapping[str, Any]) -> Observables:
    found = ObservableBuilder()
    for key in ("UserName", "SourceAccountUpn", "SourceAccountName", "TargetAccountName"):
        found.user(event.get(key))
    for key in ("ComputerName", "Hostname", "SourceEndpointHostName", "TargetEndpointHostName"):
        found.host(event.get(key))
    for key in ("LocalIP", "LocalIPv6"):
        found.ip(event.get(key))
    found.ip(event.get("SourceEndpointIpAddress"), "src")
    for key in ("SHA256String", "MD5String", "SHA1String"):
        _hash(found, event.get(key))
    _process(found, event.get("FileName"), event.get("FilePath"))
    found.process(_basename(event.get("ParentImageFileName")))
    for key in ("GrandparentImageFileName", "GrandParentImageFileName"):
        found.process(_basename(event.get(key)))
    found.file(event.get("AssociatedFile"))
    for written in _objects(event.get("FilesWritten")):
        found.file(_join(written.get("FilePath"), written.get("FileName")))
    for access in _objects(event.get("NetworkAccesses")):
        _access(found, access.get("LocalAddress"), access.get("RemoteAddress"), access)
    _ioc(found, event.get("IOCType"), event.get("IOCValue"))
    return found.build()


def _incident(record: Mapping[str, Any], event: Mapping[str, Any]) -> ParsedEvent:
    score = text(event.get("FineScore"))
    try:
        number: float | None = float(score) if score is not None else None
    except ValueError:
        number = None
    if number is not None and number > 10:  # the Incidents API's 0–100 form
        number /= 10
    normalised, _ = severity_from_number(number, CROWDSCORE)
    return _finish(
        record,
        Observables(),
        event.get("IncidentID"),
        f"Falcon incident (CrowdScore {score})" if score else "Falcon incident",
        severity=normalised,
        vendor_severity=score,
        occurred_at=timestamp(event.get("IncidentStartTime"))
        or timestamp(dig(record, "metadata", "eventCreationTime")),
    )


def _alert(alert: Mapping[str, Any]) -> ParsedEvent:
    normalised, vendor = falcon_severity(alert.get("severity_name"), alert.get("severity"))
    return _finish(
        alert,
        _alert_observables(alert),
        alert.get("composite_id") or alert.get("id"),
        _title(alert.get("display_name") or alert.get("name"), alert.get("description")),
        severity=normalised,
        vendor_severity=vendor,
        occurred_at=timestamp(alert.get("timestamp")) or timestamp(alert.get("created_timestamp")),
    )


def _alert_observables(alert: Mapping[str, Any]) -> Observables:
    found = ObservableBuilder()
    for key in (
        "user_name",
        "user_principal",
        "source_account_upn",
        "source_account_sam_account_name",
        "target_account_name",
    ):
        found.user(alert.get(key))
    device = alert.get("device") if isinstance(alert.get("device"), Mapping) else {}
    found.host(dig(device, "hostname"))
    for key in ("source_endpoint_host_name", "target_endpoint_host_name"):
        found.host(alert.get(key))
    found.ip(dig(device, "local_ip"))
    found.ip(dig(device, "external_ip"))
    found.ip(alert.get("source_endpoint_ip_address"), "src")
    for key in ("sha256", "md5", "sha1"):
        _hash(found, alert.get(key))
    _process(found, alert.get("filename"), alert.get("filepath"))
    for key in ("parent_details", "grandparent_details"):
        found.process(_basename(dig(alert, key, "filename")))
    for ioc in [alert, *_objects(alert.get("ioc_context"))]:
        _ioc(found, ioc.get("ioc_type"), ioc.get("ioc_value"))
    for item in _objects(alert.get("quarantined_files")):
        _hash(found, item.get("sha256"))
        found.file(item.get("filename"))
    for access in _objects(alert.get("network_accesses")):
        _access(found, access.get("local_address"), access.get("remote_address"), access)
    for request in _objects(alert.get("dns_requests")):
        found.domain(request.get("domain_name"))
    return found.build()


def _hash(found: ObservableBuilder, value: Any) -> None:
    digest = text(value)
    if digest and digest.strip("0"):  # all zeros: Falcon did not compute it
        found.hash(digest)


def _ioc(found: ObservableBuilder, kind: Any, value: Any) -> None:
    kind = (text(kind) or "").lower()
    if kind.startswith("hash_"):
        _hash(found, value)
    elif kind == "domain":
        found.domain(value)
    elif kind in ("ipv4", "ipv6"):
        found.ip(value)


def _access(found: ObservableBuilder, local: Any, remote: Any, access: Mapping[str, Any]) -> None:
    direction = text(access.get("ConnectionDirection", access.get("connection_direction")))
    local_role, remote_role = _ROLES.get(direction or "", (None, None))
    found.ip(local, local_role)
    found.ip(remote, remote_role)


def _process(found: ObservableBuilder, name: Any, path: Any) -> None:
    """A process image: its name as a process, its full path as a file (Falcon gives the
    folder alone in some events and the whole path in others)."""
    found.process(name)
    found.file(_join(path, name))


def _join(folder: Any, name: Any) -> str | None:
    folder, name = text(folder), text(name)
    if folder is None or name is None or _basename(folder) == name:
        return folder
    separator = "\\" if "\\" in folder else "/"
    return folder.rstrip("\\/") + separator + name


def _basename(path: Any) -> str | None:
    value = text(path)
    return re.split(r"[\\/]", value)[-1] or None if value else None


def _objects(value: Any) -> list[Mapping[str, Any]]:
    return [v for v in value if isinstance(v, Mapping)] if isinstance(value, list) else []
