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
from integrations.detectors.extract import STANDARD, account, ident, join_path, objects
from integrations.detectors.network import add_url
from pipeline.errors import ParseError
from pipeline.observables import Observables
from pipeline.plugins import ParsedEvent, detectors

_KEYS = ("alertCreationTime", "machineId", "computerDnsName")
SEVERITY = {**STANDARD, "unspecified": "medium"}


@detectors.register("defender")
class DefenderDetector(JSONDetector):
    name = "defender"
    label = "Defender for Endpoint"
    list_keys = ("value",)
    expects = "an alert of the alerts API (alertCreationTime, machineId or computerDnsName)"

    def records(self, document: Any) -> list[Any]:
        if isinstance(document, Mapping) and isinstance(document.get("error"), Mapping):
            message = text(document["error"].get("message")) or "no message"
            raise ParseError(f"defender: an API error, not alerts: {message[:200]}")
        return super().records(document)

    def recognises(self, record: Mapping[str, Any]) -> bool:
        return any(has(record, key) for key in _KEYS)

    def event(self, record: Mapping[str, Any]) -> ParsedEvent:
        name = text(record.get("title")) or text(record.get("threatName"))
        if name is None and text(record.get("id")) is None:
            raise ParseError("a Defender alert with neither an id nor a title")
        normalised, vendor = severity(record.get("severity"), SEVERITY)
        external_id = ident(record, record.get("id"))
        return ParsedEvent(
            external_id=external_id,
            title=name or f"Defender alert {external_id}",
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
    logged_on(found, alert.get("loggedOnUsers"))
    for item in objects(alert.get("evidence")):
        _evidence(found, item)
    return found.build()


def logged_on(found: ObservableBuilder, users: Any) -> None:
    """The accounts logged on to the machine: a list of ``{accountName, domainName}``, or
    the JSON text Advanced Hunting and the streaming API give (``[{"UserName",
    "DomainName", "Sid"}]``)."""
    if isinstance(users, str):
        try:
            users = json.loads(users)
        except ValueError:
            return
    for user in objects(users):
        name = user.get("accountName") or user.get("UserName") or user.get("AccountName")
        domain = user.get("domainName") or user.get("DomainName") or user.get("AccountDomain")
        found.user(account(name, domain))


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
        found.file(join_path(item.get("parentProcessFilePath"), item.get("parentProcessFileName")))
    found.file(join_path(item.get("filePath"), name))
    found.ip(item.get("ipAddress"))
    add_url(found, item.get("url"))
