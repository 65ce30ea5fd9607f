"""The ``guardduty`` detector: Amazon GuardDuty findings.

A finding reaches Fido in one of the shapes AWS sends it:

- an EventBridge event (an API destination, or a rule's target)::

      {"version": "0", "detail-type": "GuardDuty Finding", "source": "aws.guardduty",
       "detail": {"schemaVersion": "2.0", "id": "…", "type": "UnauthorizedAccess:…",
                  "severity": 8, "resource": {…}, "service": {"action": {…}}, …}}

- the same event forwarded by an SNS topic's HTTPS subscription (``{"Type":
  "Notification", "Message": "<the event as a string>"}``);
- the Finding object itself, or the answer of GetFindings: ``{"findings": [...]}`` from
  the API, ``{"Findings": [...]}`` from the AWS CLI and SDKs, whose member names are
  PascalCase (``Resource.InstanceDetails.InstanceId``): both spellings are read.

Severity is GuardDuty's number, banded as AWS documents it: Low 1.0–3.9, Medium
4.0–6.9, High 7.0–8.9, Critical 9.0–10.0. The finding's id is the event's id, so the
updates GuardDuty sends for a recurring finding are duplicates of the first.

Observables: the instance (id as host, private IPs), the IAM user of the access key,
Kubernetes and RDS user names, the remote and local IPs of the action (for a network
connection the remote IP is the source when INBOUND and the destination when
OUTBOUND), DNS domains, and the process and malware files (names, paths, SHA-256).
"""

from __future__ import annotations

import json
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
from integrations.detectors.network import add_host
from pipeline.errors import ParseError
from pipeline.observables import Observables
from pipeline.plugins import ParsedEvent, detectors

BANDS = ((9.0, "critical"), (7.0, "high"), (4.0, "medium"), (float("-inf"), "low"))
WORDS = {"low": "low", "medium": "medium", "high": "high", "critical": "critical"}
FINDING = "GuardDuty Finding"


def camel(value: Any) -> Any:
    """``value`` with every key spelled as the GuardDuty API spells it (camelCase), so
    the SDKs' PascalCase output reads the same way."""
    if isinstance(value, Mapping):
        return {
            (k[:1].lower() + k[1:] if isinstance(k, str) else k): camel(v) for k, v in value.items()
        }
    if isinstance(value, list):
        return [camel(v) for v in value]
    return value


def _unwrap(document: Any, *, outer: bool = True) -> list[Any]:
    """The findings in one delivered document, whatever envelope carries them (an array
    of envelopes too, as a batching forwarder sends them)."""
    if isinstance(document, list) and outer:
        return [found for item in document for found in _unwrap(item, outer=False)]
    if not isinstance(document, Mapping):
        return [document]
    if "detail-type" in document or "detail" in document:
        kind = document.get("detail-type")
        if kind != FINDING:
            raise ParseError(f"EventBridge event of type {kind!r} is not a {FINDING!r}")
        return [document.get("detail")]
    if document.get("Type") in ("SubscriptionConfirmation", "UnsubscribeConfirmation"):
        raise ParseError(
            "an SNS subscription message, not a finding: confirm it with its SubscribeURL"
        )
    if document.get("Type") == "Notification" and isinstance(document.get("Message"), str):
        try:
            inner = json.loads(document["Message"])
        except (ValueError, RecursionError):
            raise ParseError("SNS notification whose Message is not JSON") from None
        return _unwrap(inner, outer=False) if outer else [inner]
    for key in ("findings", "Findings"):
        if isinstance(document.get(key), list):
            return list(document[key])
    return [document]


@detectors.register("guardduty")
class GuardDutyDetector(JSONDetector):
    name = "guardduty"
    content_types = ("application/json", "text/plain")  # SNS posts text/plain

    def records(self, document: Any) -> list[Any]:
        return _unwrap(document)

    def event(self, record: Mapping[str, Any]) -> ParsedEvent:
        finding = camel(record)
        kind, title = text(finding.get("type")), text(finding.get("title"))
        if kind is None and title is None:
            raise ParseError("finding has neither a type nor a title")
        normalised, vendor = severity_from_number(finding.get("severity"), BANDS)
        if vendor is not None and normalised == "medium" and vendor.lower() in WORDS:
            normalised, vendor = severity(vendor, WORDS)  # a label, e.g. "HIGH"
        external_id = text(finding.get("id")) or fingerprint(record)
        return ParsedEvent(
            external_id=external_id if len(external_id) <= 255 else fingerprint(record),
            title=title or kind or "",
            severity=normalised,
            vendor_severity=vendor[:64] if vendor else None,
            occurred_at=timestamp(dig(finding, "service", "eventFirstSeen"))
            or timestamp(finding.get("createdAt")),
            observables=observables(finding),
            raw=raw_json(record),
        )


def observables(finding: Mapping[str, Any]) -> Observables:
    found = ObservableBuilder()
    resource = finding.get("resource")
    resource = resource if isinstance(resource, Mapping) else {}
    found.host(dig(resource, "instanceDetails", "instanceId"))
    for interface in _list(dig(resource, "instanceDetails", "networkInterfaces")):
        found.ip(interface.get("privateIpAddress"))
    found.user(dig(resource, "accessKeyDetails", "userName"))
    found.user(dig(resource, "kubernetesDetails", "kubernetesUserDetails", "username"))
    found.user(dig(resource, "rdsDbUserDetails", "user"))
    service = finding.get("service")
    service = service if isinstance(service, Mapping) else {}
    action = service.get("action")
    if isinstance(action, Mapping):
        _action(found, action)
    process = dig(service, "runtimeDetails", "process")
    if isinstance(process, Mapping):
        found.process(process.get("name"))
        found.file(process.get("executablePath"))
        found.hash(process.get("executableSha256"))
    scan = dig(service, "ebsVolumeScanDetails", "scanDetections")
    for threat in _list(dig(scan, "threatDetectedByName", "threatNames")):
        for path in _list(threat.get("filePaths")):
            found.file(path.get("filePath") or path.get("fileName"))
            found.hash(path.get("hash"))
    return found.build()


def _action(found: ObservableBuilder, action: Mapping[str, Any]) -> None:
    network = action.get("networkConnectionAction")
    if isinstance(network, Mapping):
        direction = text(network.get("connectionDirection"))
        remote, local = {"INBOUND": ("src", "dst"), "OUTBOUND": ("dst", "src")}.get(
            (direction or "").upper(), (None, None)
        )
        _address(found, network.get("remoteIpDetails"), remote)
        _address(found, network.get("localIpDetails"), local)
    for key in ("awsApiCallAction", "kubernetesApiCallAction", "rdsLoginAttemptAction"):
        call = action.get(key)
        if isinstance(call, Mapping):
            _address(found, call.get("remoteIpDetails"), "src")
            add_host(found, dig(call, "domainDetails", "domain"))
    add_host(found, dig(action, "dnsRequestAction", "domain"))
    for probe in _list(dig(action, "portProbeAction", "portProbeDetails")):
        _address(found, probe.get("remoteIpDetails"), "src")
        _address(found, probe.get("localIpDetails"), "dst")


def _address(found: ObservableBuilder, details: Any, role: str | None) -> None:
    if isinstance(details, Mapping):
        found.ip(details.get("ipAddressV4"), role)
        found.ip(details.get("ipAddressV6"), role)


def _list(value: Any) -> list[Mapping[str, Any]]:
    return [item for item in value if isinstance(item, Mapping)] if isinstance(value, list) else []
