"""The ``m365_defender`` detector: Microsoft Defender XDR (Microsoft 365 Defender)
incidents and alerts.

A delivery is what the APIs answer, or what a Logic App / the ``defender_xdr`` source
passes on:

- Microsoft Graph security alerts v2 (``GET /security/alerts_v2``: ``{"value": [alert,
  …]}``) and incidents (``GET /security/incidents?$expand=alerts``). An alert::

      {"id": "da6377…", "title": "…", "severity": "high", "createdDateTime": "…",
       "firstActivityDateTime": "…", "incidentId": "…", "serviceSource":
       "microsoftDefenderForEndpoint", "detectionSource": "…", "evidence": [
         {"@odata.type": "#microsoft.graph.security.deviceEvidence", "deviceDnsName",
          "loggedOnUsers": [{"accountName", "domainName"}], "ipInterfaces": […]},
         {"@odata.type": "…userEvidence", "userAccount": {"accountName", "domainName",
          "userPrincipalName"}},
         {"@odata.type": "…processEvidence", "imageFile": {"sha256", "fileName",
          "filePath"}, "parentProcessImageFile": {…}, "userAccount": {…}},
         {"@odata.type": "…fileEvidence", "fileDetails": {…}}, ipEvidence, urlEvidence,
         mailboxEvidence, analyzedMessageEvidence, …]}

- the Microsoft 365 Defender incidents API (``GET /api/incidents``: ``{"value":
  [{"incidentId", "incidentName", "severity": "High", "createdTime", "alerts": [{"alertId",
  "title", "devices": [{"deviceDnsName", "loggedOnUsers"}], "entities": [{"entityType",
  …}]}]}]}``).

An incident is one event (its alerts' evidence joined), named after the incident; an alert
delivered alone is one event. Severity: informational, low, medium, high
(``unknown``/``UnSpecified`` stay medium).
"""

from __future__ import annotations

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
from integrations.detectors.defender import logged_on
from integrations.detectors.extract import (
    STANDARD,
    account,
    ident,
    join_path,
    mapping,
    objects,
    values,
)
from integrations.detectors.network import add_url
from pipeline.errors import ParseError
from pipeline.plugins import ParsedEvent, detectors

_ALERT_KEYS = ("serviceSource", "createdDateTime")
SEVERITY = {**STANDARD, "unknown": "medium", "unspecified": "medium"}


@detectors.register("m365_defender")
class M365DefenderDetector(JSONDetector):
    name = "m365_defender"
    label = "Defender XDR"
    list_keys = ("value",)
    expects = (
        "an incident (incidentId, or displayName with alerts) or an alert v2 (id with "
        "serviceSource or createdDateTime)"
    )

    def recognises(self, record: Mapping[str, Any]) -> bool:
        if has(record, "incidentId") and "alerts" in record:
            return True  # the Microsoft 365 Defender incidents API
        if "displayName" in record and isinstance(record.get("alerts"), list):
            return True  # a Graph incident
        if any(key in record for key in ("alertCreationTime", "machineId")):
            return False  # Defender for Endpoint's own alerts API: the defender detector
        return has(record, "id") and any(key in record for key in _ALERT_KEYS)

    def event(self, record: Mapping[str, Any]) -> ParsedEvent:
        found = ObservableBuilder()
        alerts = record.get("alerts")
        is_incident = isinstance(alerts, list)
        for alert in objects(alerts) if is_incident else [record]:
            _alert(found, alert)
        if is_incident:
            key = record.get("incidentId") or record.get("id")
            name = text(record.get("displayName")) or text(record.get("incidentName"))
            prefix = "incident:"
        else:
            key, name, prefix = record.get("id"), text(record.get("title")), ""
        if name is None and text(key) is None:
            raise ParseError("a Defender XDR record with neither an id nor a name")
        normalised, vendor = severity(record.get("severity"), SEVERITY)
        external_id = ident(record, f"{prefix}{text(key)}" if text(key) else None)
        return ParsedEvent(
            external_id=external_id,
            title=name or f"Defender XDR {prefix.rstrip(':') or 'alert'} {text(key)}",
            severity=normalised,
            vendor_severity=vendor,
            occurred_at=timestamp(record.get("firstActivityDateTime"))
            or timestamp(record.get("createdDateTime"))
            or timestamp(record.get("createdTime")),
            observables=found.build(),
            raw=raw_json(record),
        )


def _alert(found: ObservableBuilder, alert: Mapping[str, Any]) -> None:
    for item in objects(alert.get("evidence")):
        _evidence(found, item)
    for device in objects(alert.get("devices")):  # the M365 Defender incidents API
        found.host(device.get("deviceDnsName"))
        logged_on(found, device.get("loggedOnUsers"))
    for entity in objects(alert.get("entities")):
        _entity(found, entity)


def _user(found: ObservableBuilder, user: Any) -> None:
    user = mapping(user)  # the UPN when given (domainName may then be a DNS name)
    upn = text(user.get("userPrincipalName"))
    found.user(upn or account(user.get("accountName"), user.get("domainName")))


def _file(found: ObservableBuilder, details: Any, *, process: bool = False) -> None:
    details = mapping(details)
    for key in ("sha256", "sha1", "md5"):
        found.hash(details.get(key))
    name = text(details.get("fileName"))
    if process:
        found.process(name)
    found.file(join_path(details.get("filePath"), name))


def _evidence(found: ObservableBuilder, item: Mapping[str, Any]) -> None:
    """One Graph alert evidence, by its ``@odata.type``."""
    kind = (text(item.get("@odata.type")) or "").rsplit(".", 1)[-1]
    _user(found, item.get("userAccount"))
    if kind == "deviceEvidence":
        found.host(item.get("deviceDnsName"))
        logged_on(found, item.get("loggedOnUsers"))
        for interface in values(item.get("ipInterfaces")):  # addresses (objects in some exports)
            found.ip(mapping(interface).get("ipAddress") or interface)
    elif kind == "processEvidence":
        _file(found, item.get("imageFile"), process=True)
        _file(found, item.get("parentProcessImageFile"), process=True)
    elif kind == "fileEvidence":
        _file(found, item.get("fileDetails"))
    elif kind == "ipEvidence":
        found.ip(item.get("ipAddress"))
    elif kind == "urlEvidence":
        add_url(found, item.get("url"))
    elif kind == "mailboxEvidence":
        found.user(item.get("primaryAddress"))
    elif kind == "analyzedMessageEvidence":
        found.user(item.get("recipientEmailAddress"))
        found.ip(item.get("senderIp"), "src")
        for url in values(item.get("urls")):
            add_url(found, url)
    elif kind == "cloudLogonSessionEvidence":
        found.ip(item.get("ipAddress"), "src")


def _entity(found: ObservableBuilder, entity: Mapping[str, Any]) -> None:
    """One entity of the Microsoft 365 Defender incidents API, by its ``entityType``."""
    found.user(account(entity.get("accountName"), entity.get("domainName")))
    found.user(entity.get("userPrincipalName"))
    found.user(entity.get("mailboxAddress"))
    found.user(entity.get("recipient"))
    found.ip(entity.get("ipAddress"))
    found.ip(entity.get("senderIp"), "src")
    add_url(found, entity.get("url"))
    found.host(entity.get("deviceDnsName"))
    for key in ("sha256", "sha1"):
        found.hash(entity.get(key))
    name = text(entity.get("fileName"))
    if (text(entity.get("entityType")) or "").lower() == "process":
        found.process(name)
    found.file(join_path(entity.get("filePath"), name))
