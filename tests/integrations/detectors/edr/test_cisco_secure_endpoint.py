"""Cisco Secure Endpoint (AMP) events: the events API page, one event, stream lines."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from integrations.detectors.cisco_secure_endpoint import CiscoSecureEndpointDetector
from pipeline.errors import ParseError
from pipeline.plugins import ParsedEvent, detectors
from tests.integrations.detectors.edr.expect import payload, summary

EMOTET = "1a3c5e7f9b2d4f6a8c0e2b4d6f8a0c2e4b6d8f0a2c4e6b8d0f2a4c6e8b0d2f4a"
HOST = "ACCT-WS-22.corp.example.com"


def parse(name: str) -> list[ParsedEvent]:
    return CiscoSecureEndpointDetector().parse(payload("cisco_secure_endpoint", name))


def test_events_api_page() -> None:
    detected, quarantined, policy, ioc = parse("events_page.json")
    assert summary(detected) == {
        "external_id": "7302418823915208705",  # the 64-bit id, digit for digit
        "title": "Threat Detected: W32.GenericKD:Emotet.27tx.1201",
        "severity": "high",
        "vendor_severity": "High",
        "occurred_at": datetime(2026, 3, 10, 8, 0, 1, tzinfo=UTC),
        "users": ["lena@ACCT-WS-22"],
        "hosts": [HOST],
        "ips": ["203.0.113.88", "10.60.2.22", "fe80::1c2d:3e4f:5a6b:7c8d"],
        "hashes": [
            EMOTET,
            "6b8d0f2a4c6e8b0d2f4a6c8e0b2d4f6a8c0e2b4d",
            "0f2a4c6e8b0d2f4a6c8e0b2d4f6a8c0e",
            "9f0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8",  # the parent's
        ],
        "processes": ["OUTLOOK.EXE"],  # the parent that wrote the file
        "files": ["C:\\Users\\lena\\AppData\\Local\\Temp\\Invoice_0310.doc"],  # no \\?\
    }
    assert detected.observables.hash_types == {
        EMOTET: "sha256",
        "6b8d0f2a4c6e8b0d2f4a6c8e0b2d4f6a8c0e2b4d": "sha1",
        "0f2a4c6e8b0d2f4a6c8e0b2d4f6a8c0e": "md5",
        "9f0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8": "sha256",
    }
    assert summary(quarantined) == {
        "external_id": "7302418823915208706",
        "title": "Threat Quarantined",
        "severity": "medium",
        "vendor_severity": "Medium",
        "occurred_at": datetime(2026, 3, 10, 8, 0, 2, tzinfo=UTC),
        "hosts": [HOST],
        "ips": ["203.0.113.88", "10.60.2.22"],
        "hashes": [EMOTET],
    }
    assert summary(policy) == {
        "external_id": "7302418823915208801",
        "title": "Policy Update",
        "severity": "informational",  # no severity: not a threat
        "vendor_severity": None,
        "occurred_at": datetime(2026, 3, 10, 8, 5, tzinfo=UTC),
        "hosts": [HOST],
        "ips": ["203.0.113.88", "10.60.2.22"],
    }
    assert summary(ioc) == {
        "external_id": "1773129955771204000",
        "title": "Cloud IOC: W32.PowershellEncodedCommand.ioc",
        "severity": "medium",
        "vendor_severity": "Medium",
        "occurred_at": datetime(2026, 3, 10, 8, 5, 55, tzinfo=UTC),
        "users": ["lena@ACCT-WS-22"],
        "hosts": [HOST],
        "ips": ["203.0.113.88", "10.60.2.22"],
        "hashes": [
            "de96a6e69944335375dc1ac238336066889d9ffc7d73628ef4fe1b1b160ab32c",
            "0a8ce026714e03e72c619307bd598add5f9b639cfd91437cb8d9c847bf9f6894",  # the parent's
        ],
        "processes": ["WINWORD.EXE"],
        "files": ["/C:/Windows/System32/WindowsPowerShell/v1.0/powershell.exe"],
    }
    data = json.loads(payload("cisco_secure_endpoint", "events_page.json"))["data"]
    assert json.loads(policy.raw) == data[2]


def test_a_network_event_with_direction_and_url() -> None:
    body = payload("cisco_secure_endpoint", "event_network.json")
    [event] = CiscoSecureEndpointDetector().parse(body)
    assert summary(event) == {
        "external_id": "7302418823915209999",
        "title": "DFC Threat Detected: DFC.CustomIPList",
        "severity": "critical",
        "vendor_severity": "Critical",
        "occurred_at": datetime(2026, 3, 10, 9, 0, 10, tzinfo=UTC),
        "users": ["mike@dev-mbp-07"],
        "hosts": ["dev-mbp-07"],
        "ips": ["198.51.100.19", "192.168.1.40", "192.0.2.150"],
        "src_ips": ["192.168.1.40"],  # "Outgoing connection from" the computer
        "dst_ips": ["192.0.2.150"],
        "domains": ["drop.badstuff.example"],
        "urls": ["https://drop.badstuff.example/stage/payload.sh"],
        "hashes": ["4c6e8a0b2d4f6a8c0e2b4d6f8a0c2e4b6d8f0a2c4e6b8d0f2a4c6e8b0d2f4a6c"],  # curl's
        "processes": ["curl"],
    }
    assert event.raw == body.decode()


def test_stream_lines_with_nulls_unicode_and_no_id() -> None:
    detected, exploit = parse("stream.jsonl")
    assert summary(detected) == {
        "external_id": "7302418823915300001",
        "title": "Threat Detected: W32.File.MalParent",
        "severity": "low",
        "vendor_severity": "Low",
        "occurred_at": datetime(2026, 3, 10, 10, 0, tzinfo=UTC),
        "hosts": ["Kühlhaus-Terminal"],  # user and external_ip null, network ip ""
        "hashes": ["3e5a7c9e1b3d5f7a9c1e3b5d7f9a1c3e5b7d9f1a3c5e7b9d1f3a5c7e9b1d3f5a"],
        "files": ["C:\\Temp\\tmp_ä.exe"],
    }
    line = json.loads(payload("cisco_secure_endpoint", "stream.jsonl").splitlines()[1])
    assert exploit.external_id.startswith("sha256:")  # no id: a fingerprint
    assert summary(exploit) == {
        "external_id": exploit.external_id,
        "title": "Exploit Prevention",
        "severity": "medium",  # "Severe" is not one of Cisco's words: not "none" either
        "vendor_severity": "Severe",
        "occurred_at": datetime(2026, 3, 10, 10, 5, tzinfo=UTC),  # epoch "timestamp"
        "hosts": ["lab-07"],
        "ips": ["10.60.9.7", "203.0.113.250"],
        "src_ips": ["203.0.113.250"],  # "Incoming connection from" the remote end
        "dst_ips": ["10.60.9.7"],
    }
    [again] = CiscoSecureEndpointDetector().parse(json.dumps(line).encode())
    assert again.external_id == exploit.external_id


def test_a_page_split_into_one_event_per_document() -> None:
    """Some forwarders emit the page envelope around each event (``data`` an object)."""
    page = json.loads(payload("cisco_secure_endpoint", "events_page.json"))
    lines = [json.dumps({**page, "data": event}) for event in page["data"]]
    events = CiscoSecureEndpointDetector().parse("\n".join(lines).encode())
    assert [summary(e) for e in events] == [summary(e) for e in parse("events_page.json")]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b'{"version": "v1.2.0", "metadata": {}, "data": []}', "holds no alerts"),
        (b'{"version": "v1.2.0", "data": "x"}', "data is not a list"),
        (
            b'{"version": "v1.2.0", "errors": [{"error_code": 401, "description": "Unauthorized"}'
            b"]}",
            r"not a Secure Endpoint alert: expected an event \(event_type with event_type_id, "
            r"connector_guid or computer\)",
        ),
    ],
)
def test_what_is_not_an_event_is_a_parse_error(body: bytes, reason: str) -> None:
    with pytest.raises(ParseError, match=reason):
        CiscoSecureEndpointDetector().parse(body)


def test_registered_by_name() -> None:
    assert isinstance(detectors.get("cisco_secure_endpoint")(), CiscoSecureEndpointDetector)
