"""The ``defender`` detector: Microsoft Defender for Endpoint alerts.

A delivery is the answer of the alerts API (``GET /api/alerts?$expand=evidence``:
``{"@odata.context": "…/$metadata#Alerts", "value": [alert, …], "@odata.nextLink"?}``),
one alert (``GET /api/alerts/{id}``), an array or JSON Lines. An alert::

    {"id": "da637308392288907382_-880718168", "title": "…", "severity": "Medium",
     "category": "Execution", "alertCreationTime": "2020-07-20T10:53:48.7657932Z",
     "firstEventTime": "…", "computerDnsName": "ws-01.corp.example.com",
     "relatedUser": {"userName": "alice", "domainName": "CORP"},
     "loggedOnUsers": [{"accountName": "alice", "domainName": "CORP"}],
     "evidence": [{"entityType": "Process" | "File" | "User" | "Ip" | "Url" | …,
                   "sha1", "sha256", "fileName", "filePath", "parentProcessFileName",
                   "ipAddress", "url", "accountName", "domainName",
                   "userPrincipalName", …}]}

``severity`` is Informational, Low, Medium, High or UnSpecified (which stays medium, the
word kept). Accounts Defender gives as a name and a domain become ``DOMAIN\\\\name``; UPNs
are kept as they are. ``evidence`` may be one object rather than a list (as some
forwarders flatten it). The time is ``firstEventTime``, else ``alertCreationTime``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from integrations.detectors.common import (
    JSONDetector,
    ObservableBuilder,
    fingerprint,
    raw_json,
    severity,
    text,
    timestamp,
)
from integrations.detectors.network import add_url
from pipeline.errors import ParseError
from pipeline.observables import Observables
from pipeline.plugins import ParsedEvent, detectors

SEVERITY = {
    "informational": "informational",
    "low": "low",
    "medium": "medium",
    "high": "high",
    "unspecified": "medium",
}


def _records(document: Any) -> list[Any]:
    if isinstance(document, Mapping) and "value" in document:
        alerts = document["value"]
        if not isinstance(alerts, list):
            raise ParseError("defender: value is not a list")
        return alerts
    if isinstance(document, Mapping) and isinstance(document.get("error"), Mapping):
        message = text(document["error"].get("message")) or "no message"
        raise ParseError(f"defender: an API error, not alerts: {message[:200]}")
    return [document]


@detectors.register("defender")
class DefenderDetector(JSONDetector):
    name = "defender"

    def records(self, document: Any) -> list[Any]:
        if isinstance(document, list):
            return [record for item in document for record in _records(item)]
        return _records(document)

    def event(self, record: Mapping[str, Any]) -> ParsedEvent:
        ident = text(record.get("id"))
        title = text(record.get("title")) or text(record.get("threatName"))
        if ident is None and title is None:
            raise ParseError("not a Defender alert: it has neither an id nor a title")
        normalised, vendor = severity(record.get("severity"), SEVERITY)
        external_id = ident or fingerprint(record)
        return ParsedEvent(
            external_id=external_id,
            title=title or f"Defender alert {external_id}",
            severity=normalised,
            vendor_severity=vendor,
            occurred_at=timestamp(record.get("firstEventTime"))
            or timestamp(record.get("alertCreationTime")),
            observables=observables(record),
            raw=raw_json(record),
        )


def observables(alert: Mapping[str, Any]) -> Observables:
    found = ObservableBuilder()
    found.host(alert.get("computerDnsName"))
    related = alert.get("relatedUser")
    if isinstance(related, Mapping):
        found.user(account(related.get("userName"), related.get("domainName")))
    for user in _objects(alert.get("loggedOnUsers")):
        found.user(account(user.get("accountName"), user.get("domainName")))
    evidence = alert.get("evidence")
    for item in _objects([evidence] if isinstance(evidence, Mapping) else evidence):
        _evidence(found, item)
    return found.build()


def _evidence(found: ObservableBuilder, item: Mapping[str, Any]) -> None:
    kind = (text(item.get("entityType")) or "").lower()
    found.user(account(item.get("accountName"), item.get("domainName")))
    found.user(item.get("userPrincipalName"))
    found.hash(item.get("sha256"))
    found.hash(item.get("sha1"))
    name = text(item.get("fileName"))
    if kind == "process":
        found.process(name)
        found.process(item.get("parentProcessFileName"))
    found.file(_join(item.get("filePath"), name))
    found.ip(item.get("ipAddress"))
    add_url(found, item.get("url"))


def account(name: Any, domain: Any) -> str | None:
    """``DOMAIN\\\\name`` from Defender's two fields; ``name`` alone without a domain."""
    name, domain = text(name), text(domain)
    if name is None:
        return None
    return f"{domain}\\{name}" if domain and "\\" not in name and "@" not in name else name


def _join(folder: Any, name: str | None) -> str | None:
    folder = text(folder)
    if folder is None:
        return name
    if name is None or folder.rstrip("\\/").endswith(name):
        return folder
    separator = "/" if "/" in folder and "\\" not in folder else "\\"
    return folder.rstrip("\\/") + separator + name


def _objects(value: Any) -> list[Mapping[str, Any]]:
    return [v for v in value if isinstance(v, Mapping)] if isinstance(value, list) else []
