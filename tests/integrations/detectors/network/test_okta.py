"""Okta System Log events: the logs API, Event Hooks (and their verification), and Log
Streaming to EventBridge."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from starlette.datastructures import Headers

from integrations.detectors.common import fingerprint
from integrations.detectors.okta import OktaDetector
from pipeline.errors import ParseError
from pipeline.plugins import detectors
from tests.integrations.detectors.network.expect import payload, summary


def parse(name: str) -> list:
    return OktaDetector().parse(payload("okta", name))


def test_system_log_api_page() -> None:
    login, lock, reset = parse("system_log.json")
    assert summary(login) == {
        "external_id": "b1c6e4d2-dadb-11ee-9a1a-3b1d0a5e4f77",
        "title": "User login to Okta: FAILURE (INVALID_CREDENTIALS)",
        "severity": "low",
        "vendor_severity": "INFO",
        "occurred_at": datetime(2026, 3, 5, 8, 41, 16, 305000, tzinfo=UTC),
        "users": ["alice@example.com"],
        "ips": ["203.0.113.7"],
        "src_ips": ["203.0.113.7"],
    }
    assert summary(lock) == {  # done by Okta itself: the locked user is the target
        "external_id": "b2f0a9c1-dadb-11ee-8d3e-77a9e1c0b2aa",
        "title": "Max sign in attempts exceeded",
        "severity": "medium",
        "vendor_severity": "WARN",
        "occurred_at": datetime(2026, 3, 5, 8, 41, 18, 2000, tzinfo=UTC),
        "users": ["alice@example.com"],
    }
    assert summary(reset) == {  # an admin acting on a user, from IPv6 through a proxy
        "external_id": "d9e8f7a6-dadc-11ee-b1c2-5f4e3d2c1b0a",
        "title": "Reset factor for user",
        "severity": "low",
        "vendor_severity": "INFO",
        "occurred_at": datetime(2026, 3, 5, 8, 52, 3, 991000, tzinfo=UTC),
        "users": ["helpdesk.bob@example.com", "alice@example.com"],
        "ips": ["2001:db8:77::10", "10.8.0.4"],
        "src_ips": ["2001:db8:77::10"],
    }
    page = json.loads(payload("okta", "system_log.json"))
    assert [json.loads(e.raw) for e in (login, lock, reset)] == page


def test_event_hook_delivery() -> None:
    threat, report = parse("event_hook.json")
    assert summary(threat) == {
        "external_id": "5b4f1a0e-dadd-11ee-93b7-c7d1f2e3a4b5",
        "title": "Request from suspicious actor: DENY (Password Spray)",
        "severity": "medium",
        "vendor_severity": "WARN",
        "occurred_at": datetime(2026, 3, 5, 9, 2, 44, 112000, tzinfo=UTC),
        "ips": ["198.51.100.201"],  # the actor is an unknown client app, not a user
        "src_ips": ["198.51.100.201"],
    }
    assert summary(report) == {
        "external_id": "6c5a2b1f-dadd-11ee-93b7-c7d1f2e3a4b5",
        "title": "User report suspicious activity",
        "severity": "high",
        "vendor_severity": "ERROR",
        "occurred_at": datetime(2026, 3, 5, 9, 3, 1, 870000, tzinfo=UTC),
        "users": ["carol.nguyen@example.com"],
        "ips": ["192.0.2.44"],
        "src_ips": ["192.0.2.44"],
    }


def test_one_event_with_nulls_everywhere() -> None:
    body = payload("okta", "single_event.json")
    [event] = OktaDetector().parse(body)
    assert summary(event) == {
        "external_id": fingerprint(json.loads(body)),  # "uuid": null
        "title": "user.authentication.auth_via_AD_agent: FAILURE",
        "severity": "informational",
        "vendor_severity": "DEBUG",
        "occurred_at": datetime(2026, 3, 5, 10, 15, tzinfo=UTC),
        "users": ["CORP\\dave"],
    }
    assert event.raw == body.decode()


def test_log_streaming_to_eventbridge() -> None:
    [event] = parse("eventbridge.json")
    assert summary(event) == {
        "external_id": "7a8b9c0d-dade-11ee-a1b2-c3d4e5f6a7b8",
        "title": "User session impersonation initiated",
        "severity": "low",
        "vendor_severity": "INFO",
        "occurred_at": datetime(2026, 3, 5, 11, 0, 1, 204000, tzinfo=UTC),
        "users": ["support-eng@okta.example", "alice@example.com"],
        "ips": ["192.0.2.10"],
        "src_ips": ["192.0.2.10"],
    }


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Okta-Verification-Challenge": "Ks1xH8-verify"},
        {"x-okta-verification-challenge": "Ks1xH8-verify"},
        Headers({"X-OKTA-VERIFICATION-CHALLENGE": "Ks1xH8-verify", "Accept": "*/*"}),
    ],
)
def test_event_hook_verification_is_answered(headers: object) -> None:
    assert OktaDetector().challenge(headers) == {"verification": "Ks1xH8-verify"}  # type: ignore[arg-type]


def test_a_request_without_the_challenge_gets_no_answer() -> None:
    assert OktaDetector().challenge({"Accept": "application/json"}) is None
    assert OktaDetector().challenge(Headers({})) is None


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b'{"eventType": "com.okta.event_hook", "data": {}}', "without data.events"),
        (b'{"eventType": "com.okta.event_hook", "data": {"events": []}}', "holds no alerts"),
        (
            b'{"uuid": "u-1", "severity": "INFO"}',
            r"not an Okta alert: expected a System Log event \(eventType with uuid, published "
            r"or actor\)",
        ),
        (b'{"uuid": "u-1", "displayMessage": null}', "neither an eventType nor a displayMessage"),
        (b"[]", "holds no alerts"),
    ],
)
def test_broken_deliveries_raise_parse_error(body: bytes, reason: str) -> None:
    with pytest.raises(ParseError, match=reason):
        OktaDetector().parse(body)


def test_registered_by_name() -> None:
    assert isinstance(detectors.get("okta")(), OktaDetector)
