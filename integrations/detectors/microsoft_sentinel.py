"""The ``microsoft_sentinel`` detector: Microsoft Sentinel incidents and alerts.

Sentinel reaches Fido through a Logic App (a playbook run by an automation rule) whose
HTTP action posts what its trigger received, or through the ``sentinel`` source:

- the incident trigger's body, or an incident of the REST API (``GET …/providers/
  Microsoft.SecurityInsights/incidents``, ``{"value": [incident, …]}``)::

      {"object": {"id": "/subscriptions/…/incidents/<guid>", "name": "<guid>",
                  "properties": {"title", "severity": "High", "status", "incidentNumber",
                                 "createdTimeUtc", "firstActivityTimeUtc", "incidentUrl",
                                 "alerts": [{"properties": {…}}],
                                 "relatedEntities": [{"kind": "Account", "properties":
                                                      {"accountName", "ntDomain",
                                                       "upnSuffix", "aadUserId"}}, …]}},
       "workspaceId": "…"}

  (the API's incident is the ``object`` itself);
- the alert trigger's body, a row of the SecurityAlert table (``AlertName`` /
  ``DisplayName``, ``AlertSeverity``, ``SystemAlertId``, ``StartTime``, ``Entities`` —
  a list or the JSON text of one — ``ExtendedProperties``, ``CompromisedEntity``).

Entities of every kind are read: Account (``ntDomain\\\\accountName``, or
``accountName@upnSuffix``), Host (``hostName.dnsDomain``), Ip, File and FileHash,
Process, Url, DnsResolution, Mailbox and MailMessage. Severity is High, Medium, Low or
Informational. An incident's id is its ARM name (the incident's GUID); an alert's its
``SystemAlertId``.
"""

from __future__ import annotations

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
from integrations.detectors.extract import STANDARD, camel, ident, join_path, mapping, objects
from integrations.detectors.network import add_host, add_url
from pipeline.errors import ParseError
from pipeline.plugins import ParsedEvent, detectors

SEVERITY = STANDARD


@detectors.register("microsoft_sentinel")
class SentinelDetector(JSONDetector):
    name = "microsoft_sentinel"
    label = "Microsoft Sentinel"
    list_keys = ("value",)
    expects = (
        "an incident (properties with title and incidentNumber, or a trigger's object) or a "
        "SecurityAlert (SystemAlertId with AlertName or DisplayName)"
    )

    def recognises(self, record: Mapping[str, Any]) -> bool:
        incident = _incident(record)
        if incident is not None:
            return has(mapping(incident.get("properties")), "title")
        alert = camel(record)
        return has(alert, "systemAlertId") and (
            has(alert, "alertName") or has(alert, "displayName") or has(alert, "alertDisplayName")
        )

    def event(self, record: Mapping[str, Any]) -> ParsedEvent:
        incident = _incident(record)
        if incident is not None:
            return _from_incident(record, incident)
        alert = camel(record)
        found = ObservableBuilder()
        _entities(found, alert.get("entities"))
        _compromised(found, alert.get("compromisedEntity"))
        normalised, vendor = severity(alert.get("alertSeverity") or alert.get("severity"), SEVERITY)
        name = text(alert.get("displayName")) or text(alert.get("alertDisplayName"))
        return ParsedEvent(
            external_id=ident(record, alert.get("systemAlertId")),
            title=name or text(alert.get("alertName")) or "Sentinel alert",
            severity=normalised,
            vendor_severity=vendor,
            occurred_at=timestamp(alert.get("startTime"))
            or timestamp(alert.get("startTimeUtc"))
            or timestamp(alert.get("timeGenerated")),
            observables=found.build(),
            raw=raw_json(record),
        )


def _incident(record: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The incident object of a trigger body, or the record when it is one itself."""
    inner = record.get("object")
    if isinstance(inner, Mapping) and isinstance(inner.get("properties"), Mapping):
        return inner
    properties = record.get("properties")
    if isinstance(properties, Mapping) and "incidentNumber" in properties:
        return record
    return None


def _from_incident(record: Mapping[str, Any], incident: Mapping[str, Any]) -> ParsedEvent:
    properties = mapping(incident.get("properties"))
    found = ObservableBuilder()
    _entities(found, properties.get("relatedEntities"))
    for alert in objects(properties.get("alerts")):
        alert_properties = camel(mapping(alert.get("properties")) or alert)
        _entities(found, alert_properties.get("entities"))
        _compromised(found, alert_properties.get("compromisedEntity"))
    title = text(properties.get("title"))
    if title is None:
        raise ParseError("a Sentinel incident without a title")
    normalised, vendor = severity(properties.get("severity"), SEVERITY)
    return ParsedEvent(
        external_id=ident(record, incident.get("name"), incident.get("id")),
        title=title,
        severity=normalised,
        vendor_severity=vendor,
        occurred_at=timestamp(properties.get("firstActivityTimeUtc"))
        or timestamp(properties.get("createdTimeUtc")),
        observables=found.build(),
        raw=raw_json(record),
    )


def _entities(found: ObservableBuilder, entities: Any) -> None:
    """Sentinel entities: ``{"kind", "properties": {…}}`` (the API) or the flat
    ``{"Type", …}`` of the SecurityAlert table (a list, or its JSON text)."""
    if isinstance(entities, str):
        try:
            entities = json.loads(entities)
        except ValueError:
            return
    for entity in objects(entities):
        kind = (text(_get(entity, "kind")) or text(_get(entity, "type")) or "").lower()
        entity_properties = mapping(_get(entity, "properties")) or entity
        entity_reader(found, kind, {str(k).lower(): v for k, v in entity_properties.items()})


def _get(entity: Mapping[str, Any], key: str) -> Any:
    return entity.get(key) or entity.get(key.capitalize())


def entity_reader(found: ObservableBuilder, kind: str, entity: Mapping[str, Any]) -> None:
    """One entity of ``kind``, its keys lower-cased (the API writes ``ntDomain``, the
    SecurityAlert table ``NTDomain``): what it names."""
    if kind == "account":
        name, domain = text(entity.get("accountname")) or text(entity.get("name")), None
        suffix = text(entity.get("upnsuffix"))
        if name and suffix:
            found.user(f"{name}@{suffix}")
        else:
            domain = text(entity.get("ntdomain"))
            found.user(f"{domain}\\{name}" if name and domain else name)
    elif kind == "host":
        name = text(entity.get("hostname")) or text(entity.get("netbiosname"))
        domain = text(entity.get("dnsdomain"))
        found.host(f"{name}.{domain}" if name and domain else name)
    elif kind == "ip":
        found.ip(entity.get("address"))
    elif kind == "filehash":
        found.hash(entity.get("hashvalue") or entity.get("value"))
    elif kind == "file":
        found.file(join_path(entity.get("directory"), entity.get("filename") or entity.get("name")))
    elif kind == "process":
        found.process(text(entity.get("processname")))
    elif kind == "url":
        add_url(found, entity.get("url"))
    elif kind in ("dnsresolution", "dns"):
        add_host(found, entity.get("domainname"))
    elif kind == "mailbox":
        found.user(entity.get("mailboxprimaryaddress") or entity.get("upn"))
    elif kind == "mailmessage":
        for recipient in (entity.get("recipient"), entity.get("p2recipient")):
            found.user(recipient)
        found.ip(entity.get("senderip"), "src")


def _compromised(found: ObservableBuilder, value: Any) -> None:
    """``CompromisedEntity``: a host or an account name, written as the product wrote it."""
    name = text(value)
    if name is None:
        return
    if "@" in name or "\\" in name:
        found.user(name)
    else:
        found.host(name)
