"""Microsoft Sentinel: the incident trigger's body (Logic App) and SecurityAlert rows."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from integrations.detectors.microsoft_sentinel import SentinelDetector
from pipeline.errors import ParseError
from pipeline.plugins import ParsedEvent, detectors
from tests.integrations.detectors.siem.expect import payload, summary


def parse(name: str) -> list[ParsedEvent]:
    return SentinelDetector().parse(payload("microsoft_sentinel", name))


def test_incident_trigger() -> None:
    [event] = parse("incident_trigger.json")
    assert summary(event) == {
        "external_id": "3f9c1e2d-7a6b-4c5d-9e8f-0a1b2c3d4e5f",
        "title": "Suspicious sign-in followed by mailbox rule creation",
        "severity": "high",
        "vendor_severity": "High",
        "occurred_at": datetime(2026, 3, 6, 7, 58, 12, 331000, tzinfo=UTC),
        "users": ["grace@corp.example.com"],
        "hosts": ["GRACE-LT.corp.example.com"],
        "ips": ["185.220.101.47", "203.0.113.99"],
        "hashes": ["0c4f6e8a2b4d6f8a0c2e4b6d8f0a2c4e6b8d0f2a4c6e8b0d2f4a6c8e0b2d4f6a"],
        "domains": ["login.examp1e-office.net"],
        "urls": ["https://login.examp1e-office.net/owa/auth"],
        "src_ips": ["203.0.113.99"],
        "files": ["C:\\Users\\grace\\Downloads\\Invoice_0306.html"],
    }


def test_security_alert_rows() -> None:
    [event] = parse("security_alert_rows.json")
    assert summary(event) == {
        "external_id": "2c3d4e5f-6a7b-4c8d-9e0f-1a2b3c4d5e6f",
        "title": "Mass download by a single user",
        "severity": "medium",
        "vendor_severity": "Medium",
        "occurred_at": datetime(2026, 3, 6, 9, 12, tzinfo=UTC),
        "users": ["CORP\\henry"],
        "hosts": ["HENRY-WS"],
        "ips": ["10.40.7.12"],
        "domains": ["corp.sharepoint.com"],
        "urls": ["https://corp.sharepoint.com/sites/finance"],
    }


def test_registered_by_name() -> None:
    assert isinstance(detectors.get("microsoft_sentinel")(), SentinelDetector)


def test_a_foreign_payload_is_refused_naming_what_was_expected() -> None:
    with pytest.raises(ParseError) as refused:
        SentinelDetector().parse(b'{"id": "x", "title": "t", "severity": "high"}')
    assert str(refused.value) == (
        "microsoft_sentinel: not a Microsoft Sentinel alert: expected an incident "
        "(properties with title and incidentNumber, or a trigger's object) or a "
        "SecurityAlert (SystemAlertId with AlertName or DisplayName)"
    )


def test_entities_that_are_not_json_are_left_out() -> None:
    body = (
        b'{"SystemAlertId": "a-1", "AlertName": "n", "AlertSeverity": "Low", '
        b'"Entities": "[{not json", "CompromisedEntity": "CORP\\\\zoe"}'
    )
    [event] = SentinelDetector().parse(body)
    assert summary(event) == {
        "external_id": "a-1",
        "title": "n",
        "severity": "low",
        "vendor_severity": "Low",
        "occurred_at": None,
        "users": ["CORP\\zoe"],
    }


def test_an_incident_without_a_title_is_refused() -> None:
    body = b'{"object": {"name": "i-1", "properties": {"severity": "High"}}}'
    with pytest.raises(ParseError, match="not a Microsoft Sentinel alert: expected an incident"):
        SentinelDetector().parse(body)
