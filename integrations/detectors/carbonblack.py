"""The ``carbonblack`` detector: VMware / Broadcom Carbon Black Cloud alerts.

A delivery is the answer of the Alerts API search (``POST /api/alerts/v7/orgs/{org_key}/
alerts/_search``: ``{"results": [alert, …], "num_found", "num_available"}``), one alert
object, an array, or JSON Lines as the Data Forwarder writes them (``"version": "2.0.0"``
alerts, the v7 shape). An alert::

    {"id": "411eedfc-…", "type": "CB_ANALYTICS", "severity": 5,
     "reason": "A known virus (…) was detected running.",
     "detection_timestamp": "2023-07-17T17:15:51.708Z", "first_event_timestamp": "…",
     "device_name": "CORP\\\\WS-01", "device_username": "alice@corp.example.com",
     "device_internal_ip": "10.0.14.120", "device_external_ip": "…",
     "process_name": "c:\\\\users\\\\…\\\\powerdump.ps1", "process_sha256": "…",
     "process_md5": "…", "process_username": "WS-01\\\\Administrator",
     "parent_name": "…", "childproc_name": "…", "netconn_remote_ip": "…",
     "netconn_remote_domain": "…", "watchlists": [{"id", "name"}], "report_name": "…"}

Every type is read: CB_ANALYTICS, WATCHLIST, DEVICE_CONTROL, CONTAINER_RUNTIME (and the
firewall, IDS and NTA types, which carry the same fields); the v6 names of the older API
(``create_time``, ``threat_cause_actor_sha256``, …) are read where v7 lacks them.

Severity is Carbon Black's 1–10, banded as its documentation groups it: 1–2 low (port
scans, malware drops), 3–5 medium (malware running), 6–8 high (reverse shells, process
hollowing), 9–10 critical. A container alert's ``connection_type`` (EGRESS, INGRESS,
INTERNAL_OUTBOUND, INTERNAL_INBOUND) gives its addresses their source/destination roles.
``device_name`` may carry the Windows domain (``CORP\\\\WS-01``): the host is the name after it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from integrations.detectors.common import (
    JSONDetector,
    ObservableBuilder,
    has,
    raw_json,
    severity_from_number,
    text,
    timestamp,
)
from integrations.detectors.extract import basename, ident
from pipeline.observables import Observables
from pipeline.plugins import ParsedEvent, detectors

BANDS = ((9, "critical"), (6, "high"), (3, "medium"), (float("-inf"), "low"))
OUTBOUND = {"EGRESS", "INTERNAL_OUTBOUND", "OUTBOUND"}
INBOUND = {"INGRESS", "INTERNAL_INBOUND", "INBOUND"}
_TIMES = (
    "first_event_timestamp",
    "detection_timestamp",
    "backend_timestamp",
    "first_event_time",  # v6
    "create_time",  # v6
)


TYPES = (
    "CB_ANALYTICS",
    "WATCHLIST",
    "DEVICE_CONTROL",
    "CONTAINER_RUNTIME",
    "HOST_BASED_FIREWALL",
    "INTRUSION_DETECTION_SYSTEM",
    "NETWORK_TRAFFIC_ANALYSIS",
    "THREAT",  # v6
)


@detectors.register("carbonblack")
class CarbonBlackDetector(JSONDetector):
    name = "carbonblack"
    label = "Carbon Black Cloud"
    list_keys = ("results",)
    expects = f"an alert with org_key or a type of {', '.join(TYPES)}"

    def recognises(self, record: Mapping[str, Any]) -> bool:
        return has(record, "org_key") or text(record.get("type")) in TYPES

    def event(self, record: Mapping[str, Any]) -> ParsedEvent:
        kind = text(record.get("type"))
        name = text(record.get("reason")) or text(record.get("report_name"))
        normalised, vendor = severity_from_number(record.get("severity"), BANDS)
        external_id = ident(record, record.get("id"))
        occurred = next((t for key in _TIMES if (t := timestamp(record.get(key)))), None)
        return ParsedEvent(
            external_id=external_id,
            title=name or f"Carbon Black {kind or 'alert'} {external_id}",
            severity=normalised,
            vendor_severity=vendor,
            occurred_at=occurred,
            observables=observables(record),
            raw=raw_json(record),
        )


def observables(alert: Mapping[str, Any]) -> Observables:
    found = ObservableBuilder()
    for key in ("device_username", "process_username", "childproc_username"):
        found.user(alert.get(key))
    found.host(_after_domain(alert.get("device_name")))
    found.ip(alert.get("device_internal_ip"))
    found.ip(alert.get("device_external_ip"))
    connection = (text(alert.get("connection_type")) or "").upper()
    local, remote = ("src", "dst") if connection in OUTBOUND else (None, None)
    if connection in INBOUND:
        local, remote = "dst", "src"
    for suffix in ("ip", "ipv4", "ipv6"):
        found.ip(alert.get(f"netconn_local_{suffix}"), local)
        found.ip(alert.get(f"netconn_remote_{suffix}"), remote)
    found.domain(alert.get("netconn_remote_domain"))
    for prefix in ("process", "parent", "childproc", "threat_cause_actor"):
        for algorithm in ("sha256", "md5"):
            found.hash(alert.get(f"{prefix}_{algorithm}"))
    for key in ("process_name", "parent_name", "childproc_name", "threat_cause_actor_name"):
        path = text(alert.get(key))
        found.process(basename(path))
        if key != "parent_name" and path and basename(path) != path:
            found.file(path)  # the executable's full path
    return found.build()


def _after_domain(name: Any) -> str | None:
    value = text(name)
    return value.rsplit("\\", 1)[-1] or None if value else None
