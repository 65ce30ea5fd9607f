"""The ``cisco_secure_endpoint`` detector: Cisco Secure Endpoint (formerly AMP for
Endpoints) events.

A delivery is the answer of ``GET /v1/events`` (``{"version": "v1.2.0", "metadata":
{"links", "results"}, "data": [event, …]}``), one event (as the event stream delivers
them), an array or JSON Lines. An event::

    {"id": 6159251516445163587, "event_type": "Threat Detected", "event_type_id": 1090519054,
     "detection": "W32.Auto:2b36d8.in03.Talos", "severity": "Medium",
     "date": "2026-03-10T08:00:01+00:00", "timestamp": 1773129601,
     "computer": {"hostname": "…", "user": "alice@WS-01", "external_ip": "…",
                  "network_addresses": [{"ip": "…", "mac": "…"}]},
     "file": {"file_name": "…", "file_path": "\\\\\\\\?\\\\C:\\\\…",
              "identity": {"sha256": "…", "sha1": "…", "md5": "…"},
              "parent": {"file_name": "<the process>", "identity": {…}}},
     "network_info": {"local_ip", "remote_ip", "dirty_url",
                      "nfm": {"direction": "Outgoing connection from", "protocol"}},
     "cloud_ioc": {"short_description": "W32.PowershellDownload.ioc", …}}

``severity`` is Low, Medium, High or Critical; events without one (Policy Update, Scan
Completed) are informational. The title is the event type with the detection name. A
network event's direction (``nfm.direction``) says which end is the source. The Windows
long-path prefix ``\\\\\\\\?\\\\`` is taken off file paths.
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
    text,
    timestamp,
)
from integrations.detectors.extract import mapping, objects
from integrations.detectors.network import add_url
from pipeline.errors import ParseError
from pipeline.observables import Observables
from pipeline.plugins import ParsedEvent, detectors

SEVERITY = {"low": "low", "medium": "medium", "high": "high", "critical": "critical"}
_LONG_PATH = "\\\\?\\"


def _records(document: Any) -> list[Any]:
    if isinstance(document, Mapping) and "data" in document and "event_type" not in document:
        data = document["data"]
        if isinstance(data, Mapping):
            return [data]  # one event, as some forwarders split the list
        if not isinstance(data, list):
            raise ParseError("cisco_secure_endpoint: data is not a list")
        return data
    return [document]


@detectors.register("cisco_secure_endpoint")
class CiscoSecureEndpointDetector(JSONDetector):
    name = "cisco_secure_endpoint"

    label = "Secure Endpoint"
    expects = "an event (event_type with event_type_id, connector_guid or computer)"

    def records(self, document: Any) -> list[Any]:
        if isinstance(document, list):
            return [record for item in document for record in _records(item)]
        return _records(document)

    def recognises(self, record: Mapping[str, Any]) -> bool:
        return has(record, "event_type") and any(
            has(record, key) for key in ("event_type_id", "connector_guid", "computer")
        )

    def event(self, record: Mapping[str, Any]) -> ParsedEvent:
        ident, kind = text(record.get("id")), text(record.get("event_type"))
        if kind is None:
            raise ParseError("not a Secure Endpoint event: it has no event_type")
        detection = text(record.get("detection")) or text(
            dig(record, "cloud_ioc", "short_description")
        )
        normalised, vendor = severity(record.get("severity"), SEVERITY, default="informational")
        if vendor is not None and vendor.lower() not in SEVERITY:
            normalised = "medium"  # a word Cisco has not documented: not "no severity"
        return ParsedEvent(
            external_id=extract.ident(record, ident),
            title=f"{kind}: {detection}" if detection else kind,
            severity=normalised,
            vendor_severity=vendor,
            occurred_at=timestamp(record.get("date")) or timestamp(record.get("timestamp")),
            observables=observables(record),
            raw=raw_json(record),
        )


def observables(event: Mapping[str, Any]) -> Observables:
    found = ObservableBuilder()
    computer = mapping(event.get("computer"))
    found.user(computer.get("user"))
    found.host(computer.get("hostname"))
    found.ip(computer.get("external_ip"))
    for address in objects(computer.get("network_addresses")):
        found.ip(address.get("ip"))
    file = mapping(event.get("file"))
    for item in (file, mapping(file.get("parent"))):
        for algorithm in ("sha256", "sha1", "md5"):
            found.hash(dig(item, "identity", algorithm))
    found.file(_path(file.get("file_path")) or file.get("file_name"))
    found.process(dig(file, "parent", "file_name"))
    network = event.get("network_info")
    if isinstance(network, Mapping):
        direction = (text(dig(network, "nfm", "direction")) or "").lower()
        local, remote = (None, None)
        if direction.startswith("outgoing"):
            local, remote = "src", "dst"
        elif direction.startswith("incoming"):
            local, remote = "dst", "src"
        found.ip(network.get("local_ip"), local)
        found.ip(network.get("remote_ip"), remote)
        add_url(found, network.get("dirty_url"))
        found.process(dig(network, "parent", "file_name"))
        for algorithm in ("sha256", "sha1", "md5"):
            found.hash(dig(network, "parent", "identity", algorithm))
    return found.build()


def _path(value: Any) -> str | None:
    path = text(value)
    if path and path.startswith(_LONG_PATH):
        path = path[len(_LONG_PATH) :]
    return path or None
