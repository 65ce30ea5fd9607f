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
    has,
    raw_json,
    severity,
    severity_from_number,
    text,
    timestamp,
)
from integrations.detectors.extract import camel, ident, mapping, objects, values
from integrations.detectors.network import add_host
from pipeline.errors import ParseError
from pipeline.observables import Observables
from pipeline.plugins import ParsedEvent, detectors

BANDS = ((9.0, "critical"), (7.0, "high"), (4.0, "medium"), (float("-inf"), "low"))
WORDS = {"low": "low", "medium": "medium", "high": "high", "critical": "critical"}
FINDING = "GuardDuty Finding"
_FINDING_KEYS = ("schemaVersion", "accountId", "resource", "service", "arn")


def _unwrap(document: Any, *, outer: bool = True) -> list[Any]:
    """The findings in one delivered document, whatever envelope carries them (an array
    of envelopes too, as a batching forwarder sends them)."""
    if isinstance(document, list) and outer:
        return [found for item in document for found in _unwrap(item, outer=False)]
    if not isinstance(document, Mapping):
        return [document]
    if "detail-type" in document or "detail" in document:
        kind = document.get("detail-type")
        if kind != FINDING and document.get("source") == "aws.guardduty":
            return [document]  # GuardDuty's, but no finding: skipped with its type
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

    label = "GuardDuty"
    expects = (
        "a finding (type with schemaVersion, accountId, resource or service), an "
        "EventBridge event of detail-type 'GuardDuty Finding', or an SNS notification of one"
    )

    def records(self, document: Any) -> list[Any]:
        return _unwrap(document)

    def skip(self, record: Mapping[str, Any]) -> str | None:
        kind = record.get("detail-type")
        if kind is not None and kind != FINDING:
            return f"GuardDuty EventBridge event {str(kind)[:80]!r}: not a finding"
        return None

    def recognises(self, record: Mapping[str, Any]) -> bool:
        finding = camel(record)
        return has(finding, "type") and any(has(finding, key) for key in _FINDING_KEYS)

    def event(self, record: Mapping[str, Any]) -> ParsedEvent:
        finding = camel(record)
        kind, title = text(finding.get("type")), text(finding.get("title"))
        normalised, vendor = severity_from_number(finding.get("severity"), BANDS)
        if vendor is not None and normalised == "medium" and vendor.lower() in WORDS:
            normalised, vendor = severity(vendor, WORDS)  # a label, e.g. "HIGH"
        return ParsedEvent(
            external_id=ident(record, finding.get("id")),
            title=title or kind or "GuardDuty finding",  # a finding with neither
            severity=normalised,
            vendor_severity=vendor[:64] if vendor else None,
            occurred_at=timestamp(dig(finding, "service", "eventFirstSeen"))
            or timestamp(finding.get("createdAt")),
            observables=observables(finding),
            raw=raw_json(record),
        )


def observables(finding: Mapping[str, Any]) -> Observables:
    found = ObservableBuilder()
    resource = mapping(finding.get("resource"))
    found.host(dig(resource, "instanceDetails", "instanceId"))
    for interface in objects(dig(resource, "instanceDetails", "networkInterfaces")):
        found.ip(interface.get("privateIpAddress"))
        for private in objects(interface.get("privateIpAddresses")):
            found.ip(private.get("privateIpAddress"))
        found.ip(interface.get("publicIp"))
        for address in values(interface.get("ipv6Addresses")):
            found.ip(address)
    keys = mapping(resource.get("accessKeyDetails"))
    found.user(keys.get("userName"))  # the IAM user, or the role's session name
    found.user(_principal(keys.get("principalId")))
    found.user(dig(resource, "kubernetesDetails", "kubernetesUserDetails", "username"))
    found.user(dig(resource, "rdsDbUserDetails", "user"))
    service = finding.get("service")
    service = service if isinstance(service, Mapping) else {}
    action = service.get("action")
    if isinstance(action, Mapping):
        _action(found, action)
    runtime = mapping(service.get("runtimeDetails"))
    for process in (mapping(runtime.get("process")), *objects(dig(runtime, "process", "lineage"))):
        found.process(process.get("name"))
        found.file(process.get("executablePath"))
        found.hash(process.get("executableSha256"))
        found.user(process.get("user"))
    sequence = mapping(dig(service, "detection", "sequence"))
    for actor in objects(sequence.get("actors")):
        found.user(dig(actor, "user", "name"))
    for endpoint in objects(sequence.get("endpoints")):
        found.ip(endpoint.get("ip"))
        add_host(found, endpoint.get("domain"))
    for threat in objects(dig(service, "malwareScanDetails", "threats")):
        for item in objects(threat.get("itemPaths")):
            found.file(item.get("nestedItemPath"))
            found.hash(item.get("hash"))
    scan = dig(service, "ebsVolumeScanDetails", "scanDetections")
    for threat in objects(dig(scan, "threatDetectedByName", "threatNames")):
        for path in objects(threat.get("filePaths")):
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
            for address in values(call.get("sourceIps")):
                found.ip(address, "src")
    add_host(found, dig(action, "dnsRequestAction", "domain"))
    add_host(found, dig(action, "dnsRequestAction", "domainWithSuffix"))
    for probe in objects(dig(action, "portProbeAction", "portProbeDetails")):
        _address(found, probe.get("remoteIpDetails"), "src")
        _address(found, probe.get("localIpDetails"), "dst")


def _principal(value: Any) -> str | None:
    """The IAM principal id's session or user part: "AROAEXAMPLE:alice" → "alice"; a bare
    id ("AIDACKCEVSQ6C2EXAMPLE") is kept as it is."""
    principal = text(value)
    if principal is None:
        return None
    return principal.rsplit(":", 1)[-1] or principal


def _address(found: ObservableBuilder, details: Any, role: str | None) -> None:
    if isinstance(details, Mapping):
        found.ip(details.get("ipAddressV4"), role)
        found.ip(details.get("ipAddressV6"), role)
