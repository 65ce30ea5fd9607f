"""Wazuh: alerts.json lines and the integration webhook's alert."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from integrations.detectors.wazuh import WazuhDetector
from pipeline.errors import ParseError
from pipeline.plugins import ParsedEvent, detectors
from tests.integrations.detectors.siem.expect import payload, summary


def parse(name: str) -> list[ParsedEvent]:
    return WazuhDetector().parse(payload("wazuh", name))


def test_alerts() -> None:
    event_0, event_1, event_2, event_3 = parse("alerts.jsonl")
    assert summary(event_0) == {
        "external_id": "1772788442.1184321",
        "title": "sshd: brute force trying to get access to the system. Non existent user.",
        "severity": "high",
        "vendor_severity": "10",
        "occurred_at": datetime(2026, 3, 6, 9, 14, 2, 118000, tzinfo=UTC),
        "users": ["admin"],
        "hosts": ["web-01"],
        "ips": ["10.10.4.21", "203.0.113.77"],
        "src_ips": ["203.0.113.77"],
        "observers": ["wazuh-manager"],
    }
    assert summary(event_1) == {
        "external_id": "1772788844.2210045",
        "title": "Sysmon - Suspicious Process - mimikatz.exe",
        "severity": "high",
        "vendor_severity": "12",
        "occurred_at": datetime(2026, 3, 6, 9, 20, 44, 901000, tzinfo=UTC),
        "users": ["CORP\\erin"],
        "hosts": ["ENG-WS-19"],
        "ips": ["10.50.3.19"],
        "hashes": [
            "9e1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c",
            "4c6e8a0b2d4f6a8c0e2b4d6f8a0c2e4b",
            "3c5e7a9b1d2f4e6a8c0b2d4f6e8a0c2b4d6f8e0a2c4b6d8f0e2a4c6b8d0f2e4a",
        ],
        "processes": ["mimi.exe", "powershell.exe"],
        "files": [
            "C:\\Users\\erin\\AppData\\Local\\Temp\\mimi.exe",
            "C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe",
        ],
        "observers": ["wazuh-manager"],
    }
    assert summary(event_2) == {
        "external_id": "1772791330.3310087",
        "title": "Integrity checksum changed.",
        "severity": "medium",
        "vendor_severity": "7",
        "occurred_at": datetime(2026, 3, 6, 10, 2, 10, 330000, tzinfo=UTC),
        "users": ["www-data", "deploy"],
        "hosts": ["web-01"],
        "ips": ["10.10.4.21"],
        "hashes": [
            "2f4b6d8f0a2c4e6b8d0f2a4c6e8b0d2f4a6c8e0b2d4f6a8c0e2b4d6f8a0c2e4b",
            "1b3d5f7a9c1e3b5d7f9a1c3e5b7d9f1a3c5e7b9d",
            "0e2a4c6e8a0c2e4b6d8f0a2c4e6b8d0f",
        ],
        "files": ["/var/www/html/index.php"],
        "observers": ["wazuh-manager"],
    }
    assert summary(event_3) == {
        "external_id": "1772791335.3312240",
        "title": "VirusTotal: Alert - /var/www/html/uploads/.x/rs.sh - 34 engines detected this "
        "file",
        "severity": "high",
        "vendor_severity": "12",
        "occurred_at": datetime(2026, 3, 6, 10, 2, 15, 4000, tzinfo=UTC),
        "hosts": ["web-01"],
        "ips": ["10.10.4.21"],
        "hashes": ["6b8d0f2a4c6e8b0d2f4a6c8e0b2d4f6a8c0e2b4d", "5a7c9e1b3d5f7a9c1e3b5d7f9a1c3e5b"],
        "files": ["/var/www/html/uploads/.x/rs.sh"],
        "observers": ["wazuh-manager"],
    }


def test_integration_webhook() -> None:
    [event] = parse("integration_webhook.json")
    assert summary(event) == {
        "external_id": "1772797509.4420871",
        "title": "Windows: Logon Failure - Unknown user or bad password, multiple times "
        "(password spray)",
        "severity": "critical",
        "vendor_severity": "14",
        "occurred_at": datetime(2026, 3, 6, 11, 45, 9, 771000, tzinfo=UTC),
        "users": ["CORP\\administrator"],
        "hosts": ["DC01", "KIOSK-07"],
        "ips": ["10.30.0.10", "10.30.9.77"],
        "src_ips": ["10.30.9.77"],
        "observers": ["wazuh-manager"],
    }


def test_registered_by_name() -> None:
    assert isinstance(detectors.get("wazuh")(), WazuhDetector)


def test_a_foreign_payload_is_refused_naming_what_was_expected() -> None:
    with pytest.raises(ParseError) as refused:
        WazuhDetector().parse(b'{"id": "x", "title": "t", "severity": "high"}')
    assert str(refused.value) == (
        "wazuh: not a Wazuh alert: expected an alert (rule with level and description, "
        "and agent or manager)"
    )


@pytest.mark.parametrize(
    ("level", "expected"),
    [
        (0, "informational"),
        (3, "informational"),
        (4, "low"),
        (7, "medium"),
        (10, "high"),
        (12, "high"),
        (13, "critical"),
        (15, "critical"),
    ],
)
def test_rule_levels(level: int, expected: str) -> None:
    alert = {"id": "1.2", "rule": {"level": level, "description": "d"}, "agent": {"id": "001"}}
    [event] = WazuhDetector().parse(json.dumps(alert).encode())
    assert (event.severity, event.vendor_severity) == (expected, str(level))


def test_the_manager_is_no_host_of_the_alert() -> None:
    alert = {
        "id": "1.3",
        "rule": {"level": 5, "description": "d"},
        "agent": {"id": "000", "name": "wazuh-manager"},
    }
    [event] = WazuhDetector().parse(json.dumps(alert).encode())
    assert event.observables.hosts == []
