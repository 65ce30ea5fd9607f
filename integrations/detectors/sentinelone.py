"""The ``sentinelone`` detector: SentinelOne threats, cloud detection alerts and
threat notifications.

A delivery is one of these objects, an array of them, JSON Lines, or the Management API's
list wrapper ``{"data": [...], "pagination": {"nextCursor", "totalItems"}}``:

- a **threat** (``GET /web/api/v2.1/threats``, as the ``sentinelone_api`` source delivers
  it): ``{"id", "threatInfo": {threatName, classification, confidenceLevel, sha1, sha256,
  md5, filePath, originatorProcess, processUser, identifiedAt, …}, "agentRealtimeInfo":
  {agentComputerName, …}, "agentDetectionInfo": {agentIpV4, agentIpV6, externalIp,
  agentLastLoggedInUpn, …}, …}``; API 2.0's flat threat (``agentComputerName``,
  ``fileContentHash``, ``fileDisplayName`` on the top level) reads the same way;
- a **cloud detection alert** (``GET /web/api/v2.1/cloud-detection/alerts``, STAR custom
  rules): ``{"alertInfo": {alertId, createdAt, srcIp, dstIp, dnsRequest, …}, "ruleInfo":
  {name, severity, …}, "sourceProcessInfo", "sourceParentProcessInfo",
  "targetProcessInfo", "agentDetectionInfo": {name, …}, …}``;
- a **notification**: SentinelOne records every threat event as an Activity, and that
  is what its notification integrations and Hyperautomation workflows forward (and
  ``GET /web/api/v2.1/activities`` lists): ``{"id", "activityType", "threatId",
  "createdAt", "primaryDescription", "data": {computerName, confidenceLevel,
  fileContentHash, filePath, threatClassification, username, …}}``. Only activities
  about a threat are alerts; the rest (console logins, scans, policy changes) are
  skipped, and a delivery holding nothing else is a ParseError.

A threat's id is its threat id, and so is a notification's (``threatId``): the
notifications SentinelOne sends as a threat is detected, killed and quarantined, and the
threat polled from the API, are one event. An alert's id is ``alertInfo.alertId``.

Severity: a rule's ``severity`` (Info, Low, Medium, High, Critical); for threats and
notifications the confidence level (malicious → high, suspicious → medium), SentinelOne
giving threats no severity of their own.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from integrations.detectors.common import (
    JSONDetector,
    ObservableBuilder,
    dig,
    raw_json,
    severity,
    text,
    timestamp,
)
from integrations.detectors.extract import STANDARD, account, ident
from integrations.detectors.network import add_host, add_url
from pipeline.plugins import ParsedEvent, detectors

SEVERITY = STANDARD
CONFIDENCE = {"malicious": "high", "suspicious": "medium"}


def _records(document: Any, *, top: bool = True) -> list[Any]:
    """The alerts in one delivered document: the items of an array or of the API's
    ``data`` list, or the document itself; activities not about a threat are dropped."""
    if top and isinstance(document, list):
        return [record for item in document for record in _records(item, top=False)]
    if top and isinstance(document, Mapping) and isinstance(document.get("data"), list):
        return [record for item in document["data"] for record in _records(item, top=False)]
    if isinstance(document, Mapping) and "activityType" in document:
        return [document] if text(document.get("threatId")) else []
    return [document]


@detectors.register("sentinelone")
class SentinelOneDetector(JSONDetector):
    name = "sentinelone"

    label = "SentinelOne"
    expects = (
        "a threat (threatInfo, or fileContentHash in API 2.0), a cloud-detection alert "
        "(alertInfo or ruleInfo) or a threat activity (activityType with threatId)"
    )

    def records(self, document: Any) -> list[Any]:
        return _records(document)

    def recognises(self, record: Mapping[str, Any]) -> bool:
        return (
            isinstance(record.get("alertInfo"), Mapping)
            or isinstance(record.get("ruleInfo"), Mapping)
            or "activityType" in record
            or isinstance(record.get("threatInfo"), Mapping)
            or "fileContentHash" in record
        )

    def event(self, record: Mapping[str, Any]) -> ParsedEvent:
        if isinstance(record.get("alertInfo"), Mapping) or isinstance(
            record.get("ruleInfo"), Mapping
        ):
            return _alert(record)
        if "activityType" in record:
            return _activity(record)
        return _threat(record)


def _finish(record: Mapping[str, Any], key: Any, title: str, **rest: Any) -> ParsedEvent:
    return ParsedEvent(external_id=ident(record, key), title=title, raw=raw_json(record), **rest)


def _threat(threat: Mapping[str, Any]) -> ParsedEvent:
    info = threat.get("threatInfo")
    info = info if isinstance(info, Mapping) else threat  # API 2.0: all on the top level
    agent = threat.get("agentDetectionInfo")
    agent = agent if isinstance(agent, Mapping) else {}
    found = ObservableBuilder()
    found.user(info.get("processUser") or threat.get("username"))
    for key in ("agentLastLoggedInUpn", "agentLastLoggedInUserMail", "agentLastLoggedInUserName"):
        found.user(agent.get(key))
    found.host(dig(threat, "agentRealtimeInfo", "agentComputerName"))
    found.host(threat.get("agentComputerName"))
    for key in ("agentIpV4", "agentIpV6", "externalIp"):
        _ips(found, agent.get(key))
    _ips(found, threat.get("agentIp"))
    for key in ("sha256", "sha1", "md5", "fileContentHash"):
        found.hash(info.get(key))
    found.process(info.get("originatorProcess"))
    found.file(info.get("filePath"))
    name = text(info.get("threatName")) or text(info.get("fileDisplayName"))
    kind = text(info.get("classification"))
    ident = threat.get("id") or info.get("threatId")
    normalised, vendor = _confidence(info.get("confidenceLevel"))
    if text(info.get("severity")):
        normalised, vendor = severity(info.get("severity"), SEVERITY)
    return _finish(
        threat,
        ident,
        f"{kind}: {name}" if kind and name else name or kind or f"SentinelOne threat {ident}",
        severity=normalised,
        vendor_severity=vendor,
        occurred_at=timestamp(info.get("identifiedAt")) or timestamp(info.get("createdAt")),
        observables=found.build(),
    )


def _alert(alert: Mapping[str, Any]) -> ParsedEvent:
    info = _object(alert.get("alertInfo"))
    rule = _object(alert.get("ruleInfo"))
    source = _object(alert.get("sourceProcessInfo"))
    parent = _object(alert.get("sourceParentProcessInfo"))
    target = _object(alert.get("targetProcessInfo"))
    found = ObservableBuilder()
    for key in ("user", "realUser", "effectiveUser", "loginUser"):
        found.user(source.get(key))  # the acting process's accounts, not its parent's
    found.user(account(info.get("loginsUserName"), info.get("loginAccountDomain")))
    found.host(dig(alert, "agentDetectionInfo", "name"))
    found.host(dig(alert, "agentRealtimeInfo", "name"))
    found.ip(info.get("srcIp"), "src")
    found.ip(info.get("dstIp"), "dst")
    found.ip(info.get("srcMachineIp"))
    for process in (source, parent):  # the acting process and the one that started it
        for key in ("fileHashSha256", "fileHashSha1", "fileHashMd5"):
            found.hash(process.get(key))
    for key in ("tgtFileHashSha256", "tgtFileHashSha1"):
        found.hash(target.get(key))
    found.hash(info.get("moduleSha1"))
    for key in ("tgtFileHashSha256", "tgtFileHashSha1", "tgtFileHashMd5"):
        found.hash(info.get(key))  # a file the alert is about (file-integrity rules)
    found.process(source.get("name"))
    found.process(parent.get("name"))
    found.process(target.get("tgtProcName"))
    paths = (source.get("filePath"), parent.get("filePath"), target.get("tgtFilePath"))
    for value in (*paths, info.get("modulePath")):
        found.file(value)
    add_host(found, info.get("dnsRequest"))
    _indicator(found, info.get("tiIndicatorType"), info.get("tiIndicatorValue"))
    normalised, vendor = severity(rule.get("severity"), SEVERITY)
    name = text(rule.get("name")) or text(info.get("indicatorName"))
    ident = info.get("alertId")
    return _finish(
        alert,
        ident,
        name or f"SentinelOne alert {text(ident) or ''}".strip(),
        severity=normalised,
        vendor_severity=vendor,
        occurred_at=timestamp(info.get("createdAt")) or timestamp(info.get("reportedAt")),
        observables=found.build(),
    )


def _activity(activity: Mapping[str, Any]) -> ParsedEvent:
    data = _object(activity.get("data"))
    found = ObservableBuilder()
    found.user(data.get("username"))
    found.host(data.get("computerName"))
    _ips(found, data.get("externalIp"))
    found.hash(data.get("fileContentHash"))
    found.file(data.get("filePath"))
    normalised, vendor = _confidence(data.get("confidenceLevel"))
    ident = activity.get("threatId")
    title = text(activity.get("primaryDescription")) or text(data.get("fileDisplayName"))
    return _finish(
        activity,
        ident,
        title or f"SentinelOne threat {text(ident)}",
        severity=normalised,
        vendor_severity=vendor,
        occurred_at=timestamp(activity.get("createdAt")),
        observables=found.build(),
    )


def _confidence(level: Any) -> tuple[str, str | None]:
    return severity(level, CONFIDENCE)


def _indicator(found: ObservableBuilder, kind: Any, value: Any) -> None:
    kind = (text(kind) or "").upper()
    if kind in ("IPV4", "IPV6"):
        found.ip(value)
    elif kind == "DNS":
        add_host(found, value)
    elif kind == "URL":
        add_url(found, value)
    elif kind in ("SHA1", "SHA256", "MD5"):
        found.hash(value)


def _ips(found: ObservableBuilder, value: Any) -> None:
    """An address, or several joined by commas as the agent reports them."""
    for address in (text(value) or "").split(","):
        found.ip(address.strip())


def _object(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}
