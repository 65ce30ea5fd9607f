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
- The retired Detects API v1 (``POST /detects/entities/summaries/GET/v1``), still found in
  exports: ``{"detection_id", "device": {…}, "behaviors": [{"user_name", "sha256",
  "filepath", "parent_details", "ioc_type", "ioc_value", …}], "max_severity_displayname"}``;
  each behavior's fields are read like an alert's.

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

from collections.abc import Mapping
from typing import Any

from integrations.detectors import extract
from integrations.detectors.common import (
    JSONDetector,
    ObservableBuilder,
    dig,
    has,
    raw_json,
    severity,
    severity_from_number,
    text,
    timestamp,
)
from integrations.detectors.extract import (
    account,
    basename,
    join_path,
    mapping,
    objects,
    title,
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
_ALERT_KEYS = ("aggregate_id", "pattern_id", "product")
DETECTIONS = {"detectionsummaryevent", "eppdetectionsummaryevent", "idpdetectionsummaryevent"}
INCIDENT = "incidentsummaryevent"
# ConnectionDirection of a network access: 0 outbound (the host calls out), 1 inbound
_ROLES = {"0": ("src", "dst"), "1": ("dst", "src")}


def _stream_type(document: Mapping[str, Any]) -> str | None:
    """The lower-cased eventType of an Event Streams envelope, or None if it is not one."""
    if isinstance(document.get("metadata"), Mapping) and "event" in document:
        return (text(document["metadata"].get("eventType")) or "").lower()
    return None


@detectors.register("crowdstrike")
class CrowdStrikeDetector(JSONDetector):
    name = "crowdstrike"
    label = "CrowdStrike Falcon"
    list_keys = ("resources",)
    expects = (
        "an Event Streams event (metadata.eventType and event), an Alerts API alert "
        "(composite_id, or cid with aggregate_id, pattern_id or product) or a Detects API "
        "detection (detection_id with behaviors)"
    )

    def recognises(self, record: Mapping[str, Any]) -> bool:
        return (
            _stream_type(record) is not None
            or has(record, "composite_id")
            or (has(record, "detection_id") and isinstance(record.get("behaviors"), list))
            or (has(record, "cid") and any(has(record, k) for k in _ALERT_KEYS))
        )

    def skip(self, record: Mapping[str, Any]) -> str | None:
        kind = _stream_type(record)
        if kind is not None and kind not in DETECTIONS and kind != INCIDENT:
            name = text(dig(record, "metadata", "eventType"))
            return f"Falcon stream event {name!r}: not an alert"
        return None

    def event(self, record: Mapping[str, Any]) -> ParsedEvent:
        kind = _stream_type(record)
        if kind is None and "behaviors" in record and "composite_id" not in record:
            return _detect(record)
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
    record: Mapping[str, Any], found: Observables, ident: Any, name: str | None, **rest: Any
) -> ParsedEvent:
    external_id = extract.ident(record, ident)
    return ParsedEvent(
        external_id=external_id,
        title=name or f"Falcon alert {external_id}",
        observables=found,
        raw=raw_json(record),
        **rest,
    )


def _detection(record: Mapping[str, Any], event: Mapping[str, Any]) -> ParsedEvent:
    normalised, vendor = falcon_severity(event.get("SeverityName"), event.get("Severity"))
    name = title(
        event.get("DetectName") or event.get("Name"),
        event.get("DetectDescription") or event.get("Description"),
    )
    ident = event.get("CompositeId") or event.get("DetectId")
    if name is None and text(ident) is None:
        raise ParseError("not a Falcon alert: it has no id, name or description")
    return _finish(
        record,
        _detection_observables(event),
        ident,
        name,
        severity=normalised,
        vendor_severity=vendor,
        occurred_at=timestamp(dig(record, "metadata", "eventCreationTime")),
    )


def _detection_observables(event: Mapping[str, Any]) -> Observables:
    """A detection summary of the event stream (legacy, Epp and Idp)."""
    found = ObservableBuilder()
    found.user(account(event.get("UserName"), event.get("LogonDomain")))
    for key in ("UserPrincipal", "SourceAccountUpn", "SourceAccountName", "TargetAccountName"):
        found.user(event.get(key))
    for key in (
        "ComputerName",
        "Hostname",
        "SourceEndpointHostName",
        "TargetEndpointHostName",
        "TargetDomainControllerHostName",
    ):
        found.host(event.get(key))
    for key in ("LocalIP", "LocalIPv4", "LocalIPv6", "ExternalIP", "ExternalIPv4"):
        found.ip(event.get(key))
    found.ip(event.get("SourceEndpointIpAddress"), "src")
    for key in ("SHA256String", "MD5String", "SHA1String", "ParentSHA256String"):
        _hash(found, event.get(key))
    _process(found, event.get("FileName"), event.get("FilePath"))
    found.process(basename(event.get("ParentImageFileName")))
    found.file(event.get("ParentImageFilePath"))
    for key in ("GrandparentImageFileName", "GrandParentImageFileName"):
        found.process(basename(event.get(key)))
    found.file(event.get("AssociatedFile"))
    for key in ("FilesWritten", "ExecutablesWritten"):
        for written in objects(event.get(key)):
            found.file(join_path(written.get("FilePath"), written.get("FileName")))
    for quarantined in objects(event.get("QuarantineFiles")):
        _hash(found, quarantined.get("SHA256HashData"))
        found.file(quarantined.get("ImageFileName") or quarantined.get("FileName"))
    for access in objects(event.get("NetworkAccesses")):
        _access(found, access.get("LocalAddress"), access.get("RemoteAddress"), access)
    for request in objects(event.get("DnsRequests")):
        found.domain(request.get("DomainName"))
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
    if text(event.get("IncidentID")) is None:
        raise ParseError("not a Falcon incident: it has no IncidentID")
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
    name = title(alert.get("display_name") or alert.get("name"), alert.get("description"))
    return _finish(
        alert,
        _alert_observables(alert),
        alert.get("composite_id") or alert.get("id"),
        name,
        severity=normalised,
        vendor_severity=vendor,
        occurred_at=timestamp(alert.get("timestamp")) or timestamp(alert.get("created_timestamp")),
    )


def _detect(detect: Mapping[str, Any]) -> ParsedEvent:
    """A detection of the Detects API v1: the device, and every behavior read as an alert."""
    behaviors = objects(detect.get("behaviors"))
    first = behaviors[0] if behaviors else {}
    normalised, vendor = falcon_severity(
        detect.get("max_severity_displayname"), detect.get("max_severity")
    )
    found = _alert_observables({"device": detect.get("device")})
    for behavior in behaviors:
        found = found.merge(_alert_observables(behavior))
    return _finish(
        detect,
        found,
        detect.get("detection_id"),
        title(first.get("display_name") or first.get("scenario"), first.get("description")),
        severity=normalised,
        vendor_severity=vendor,
        occurred_at=timestamp(detect.get("first_behavior"))
        or timestamp(detect.get("created_timestamp")),
    )


def _alert_observables(alert: Mapping[str, Any]) -> Observables:
    """An Alerts API v2 alert: endpoint (epp), identity (idp) and the shared fields."""
    found = ObservableBuilder()
    found.user(account(alert.get("user_name"), alert.get("logon_domain")))
    for key in (
        "user_principal",
        "source_account_upn",
        "source_account_sam_account_name",
        "target_account_upn",
        "target_account_name",
    ):
        found.user(alert.get(key))
    device = mapping(alert.get("device"))
    found.host(dig(device, "hostname"))
    for key in (
        "source_endpoint_host_name",
        "target_endpoint_host_name",
        "target_domain_controller_host_name",
    ):
        found.host(alert.get(key))
    for key in ("local_ip", "local_ipv6", "external_ip"):
        found.ip(dig(device, key))
        found.ip(alert.get(key))
    found.ip(alert.get("source_endpoint_ip_address"), "src")
    for key in ("sha256", "md5", "sha1"):
        _hash(found, alert.get(key))
    _process(found, alert.get("filename"), alert.get("filepath"))
    for key in ("parent_details", "grandparent_details"):
        details = mapping(alert.get(key))
        found.process(basename(details.get("filename")))
        found.file(details.get("filepath"))
        found.user(details.get("user_name"))
        for algorithm in ("sha256", "md5", "parent_sha256", "parent_md5"):
            _hash(found, details.get(algorithm))
    for ioc in [alert, *objects(alert.get("ioc_context"))]:
        _ioc(found, ioc.get("ioc_type"), ioc.get("ioc_value"))
        for algorithm in ("sha256", "md5") if ioc is not alert else ():
            _hash(found, ioc.get(algorithm))
    for item in objects(alert.get("quarantined_files")):
        _hash(found, item.get("sha256"))
        found.file(item.get("filename"))
    for key in ("files_written", "executables_written"):
        for written in objects(alert.get(key)):
            found.file(join_path(written.get("filepath"), written.get("filename")))
    for access in objects(alert.get("network_accesses")):
        _access(found, access.get("local_address"), access.get("remote_address"), access)
    for request in objects(alert.get("dns_requests")):
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
    if folder is None or name is None or basename(folder) == name:
        return folder
    separator = "\\" if "\\" in folder else "/"
    return folder.rstrip("\\/") + separator + name
