"""Google Workspace Alert Center: the alerts API page and a Pub/Sub push."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from integrations.detectors.google_workspace import GoogleWorkspaceDetector
from pipeline.errors import ParseError
from pipeline.plugins import ParsedEvent, detectors
from tests.integrations.detectors.siem.expect import payload, summary


def parse(name: str) -> list[ParsedEvent]:
    return GoogleWorkspaceDetector().parse(payload("google_workspace", name))


def test_alerts_list() -> None:
    event_0, event_1, event_2 = parse("alerts_list.json")
    assert summary(event_0) == {
        "external_id": "e2f34a5b-6c7d-4e8f-9a0b-1c2d3e4f5a6b",
        "title": "Google identity: Suspicious login",
        "severity": "high",
        "vendor_severity": "HIGH",
        "occurred_at": datetime(2026, 3, 7, 7, 59, 40, tzinfo=UTC),
        "users": ["ivan@corp.example.com"],
        "ips": ["185.220.101.47"],
        "src_ips": ["185.220.101.47"],
    }
    assert summary(event_1) == {
        "external_id": "7a8b9c0d-1e2f-4a3b-8c4d-5e6f7a8b9c0d",
        "title": "Gmail phishing: User reported phishing",
        "severity": "medium",
        "vendor_severity": "MEDIUM",
        "occurred_at": datetime(2026, 3, 7, 9, 2, 11, tzinfo=UTC),
        "users": ["judy@corp.example.com", "ken@corp.example.com"],
        "hashes": ["4d6f8a0c2e4b6d8f0a2c4e6b8d0f2a4c6e8b0d2f4a6c8e0b2d4f6a8c0e2b4d6f"],
        "domains": ["examp1e-hr.net"],
    }
    assert summary(event_2) == {
        "external_id": "0c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f",
        "title": "Mobile device management: Device compromised",
        "severity": "low",
        "vendor_severity": "LOW",
        "occurred_at": datetime(2026, 3, 7, 11, 28, tzinfo=UTC),
        "users": ["lena@corp.example.com"],
        "hosts": ["R58M12ABCDE"],
    }


def test_pubsub_push() -> None:
    [event] = parse("pubsub_push.json")
    assert summary(event) == {
        "external_id": "5e6f7a8b-9c0d-4e1f-8a2b-3c4d5e6f7a8b",
        "title": "Google identity: Leaked password",
        "severity": "high",
        "vendor_severity": "HIGH",
        "occurred_at": datetime(2026, 3, 7, 11, 59, tzinfo=UTC),
        "users": ["mallory@corp.example.com"],
        "ips": ["198.51.100.201"],
        "src_ips": ["198.51.100.201"],
    }


def test_registered_by_name() -> None:
    assert isinstance(detectors.get("google_workspace")(), GoogleWorkspaceDetector)


def test_a_foreign_payload_is_refused_naming_what_was_expected() -> None:
    with pytest.raises(ParseError) as refused:
        GoogleWorkspaceDetector().parse(b'{"id": "x", "title": "t", "severity": "high"}')
    assert str(refused.value) == (
        "google_workspace: not a Google Workspace Alert Center alert: expected an alert "
        "(alertId with type or source, and customerId)"
    )


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b'{"message": {"messageId": "1"}}', "a Pub/Sub push without message.data"),
        (b'{"message": {"data": "not base64!"}}', "message.data is not base64 of JSON"),
        (b'{"alerts": [], "nextPageToken": ""}', "holds no alerts"),
    ],
)
def test_broken_deliveries_are_parse_errors(body: bytes, reason: str) -> None:
    with pytest.raises(ParseError, match=reason):
        GoogleWorkspaceDetector().parse(body)


def test_an_internal_phishing_sender_is_a_user() -> None:
    alert = json.loads(payload("google_workspace", "alerts_list.json"))["alerts"][1]
    alert["data"]["isInternal"] = True
    alert["data"]["maliciousEntity"]["fromHeader"] = "mallory@corp.example.com"
    [event] = GoogleWorkspaceDetector().parse(json.dumps(alert).encode())
    assert event.observables.users[0] == "mallory@corp.example.com"
    assert event.observables.domains == []
