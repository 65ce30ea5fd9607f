"""Microsoft Defender for Endpoint alerts: the OData list, one alert, flattened evidence."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from integrations.detectors.defender import DefenderDetector, account
from pipeline.errors import ParseError
from pipeline.plugins import ParsedEvent, detectors
from tests.integrations.detectors.edr.expect import payload, summary

MIMI_SHA256 = "3c5e7a9b1d2f4e6a8c0b2d4f6e8a0c2b4d6f8e0a2c4b6d8f0e2a4c6b8d0f2e4a"


def parse(name: str) -> list[ParsedEvent]:
    return DefenderDetector().parse(payload("defender", name))


def test_alerts_list_with_evidence() -> None:
    lsass, emotet = parse("alerts_list.json")
    assert summary(lsass) == {
        "external_id": "da638771842190327512_-1249012761",
        "title": "Suspicious access to LSASS service",
        "severity": "high",
        "vendor_severity": "High",
        "occurred_at": datetime(2026, 3, 8, 7, 40, 3, 451129, tzinfo=UTC),  # 7 digits cut
        "users": ["CORP\\erin", "erin@corp.example.com"],
        "hosts": ["eng-ws-19.corp.example.com"],
        "ips": ["198.51.100.99"],
        "hashes": [MIMI_SHA256, "9e1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c"],
        "processes": ["mimi.exe", "powershell.exe"],
        "files": [
            "C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe",  # the parent
            "C:\\Users\\erin\\AppData\\Local\\Temp\\mimi.exe",
        ],
    }
    assert lsass.observables.hash_types[MIMI_SHA256] == "sha256"
    assert summary(emotet) == {
        "external_id": "da638771901122334455_1877263544",
        "title": "'Emotet' malware was detected",
        "severity": "medium",
        "vendor_severity": "Medium",
        "occurred_at": datetime(2026, 3, 8, 9, 15, 40, 100000, tzinfo=UTC),
        "users": ["frank@corp.example.com"],  # a UPN is not prefixed with the domain
        "hosts": ["acct-lt-07"],
        "hashes": [
            "7d9f1b3d5f7a9c1e3b5d7f9a1c3e5b7d9f1a3c5e7b9d1f3a5c7e9b1d3f5a7c9e",
            "5e0f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b",
        ],
        "domains": ["dl.badstuff.example"],
        "urls": ["http://dl.badstuff.example/inv/0308.php?id=77"],
        "files": ["C:\\Users\\frank\\Downloads\\Invoice_0308.docm"],
    }
    alerts = json.loads(payload("defender", "alerts_list.json"))["value"]
    assert json.loads(emotet.raw) == alerts[1]


def test_a_single_alert_unspecified_severity_and_no_evidence() -> None:
    body = payload("defender", "alert_single.json")
    [event] = DefenderDetector().parse(body)
    assert summary(event) == {
        "external_id": "da638771955500112233_-402913375",
        "title": "Large upload to personal cloud storage",
        "severity": "medium",
        "vendor_severity": "UnSpecified",
        "occurred_at": datetime(2026, 3, 8, 11, 2, 3, 500000, tzinfo=UTC),  # no firstEventTime
        "users": ["gina"],  # no domain: the name alone
        "hosts": ["mktg-mac-03"],
    }
    assert event.raw == body.decode()


def test_flattened_evidence_offsets_and_unicode() -> None:
    login, connection = parse("flattened.jsonl")
    assert summary(login) == {
        "external_id": "da638772000000000001_1",
        "title": "Ungewöhnliche Anmeldung von Jürgen",
        "severity": "informational",
        "vendor_severity": "Informational",
        "occurred_at": datetime(2026, 3, 8, 10, 59, 58, 999999, tzinfo=UTC),  # was +01:00
        "users": ["CORP\\jürgen", "jürgen@corp.example.com"],  # computerDnsName is ""
    }
    assert summary(connection) == {
        "external_id": "da638772000000000002_2",
        "title": "Network connection to a rare destination",
        "severity": "low",
        "vendor_severity": "Low",
        "occurred_at": datetime(2026, 3, 8, 12, 30, tzinfo=UTC),  # "not a time" skipped
        "hosts": ["kiosk-02"],  # NT AUTHORITY\SYSTEM is no user; "None"/"N/A" no hash
        "ips": ["2001:db8:ffff::42"],
    }


@pytest.mark.parametrize(
    ("name", "domain", "expected"),
    [
        ("alice", "CORP", "CORP\\alice"),
        ("alice", None, "alice"),
        ("alice@corp.example.com", "CORP", "alice@corp.example.com"),
        ("CORP\\alice", "CORP", "CORP\\alice"),
        (None, "CORP", None),
        ("", "CORP", None),
    ],
)
def test_account_names(name: str | None, domain: str | None, expected: str | None) -> None:
    assert account(name, domain) == expected


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b'{"@odata.context": "x", "value": []}', "holds no alerts"),
        (b'{"value": {"id": "x"}}', "value is not a list"),
        (
            b'{"error": {"code": "Unauthorized", "message": "Authorization token expired"}}',
            "an API error, not alerts: Authorization token expired",
        ),
        (
            b'{"severity": "High", "status": "New"}',
            r"not a Defender for Endpoint alert: expected an alert of the alerts API "
            r"\(alertCreationTime, machineId or computerDnsName\)",
        ),
        (
            b'{"machineId": "m-1", "severity": "High"}',
            "neither an id nor a title",
        ),
    ],
)
def test_what_is_not_an_alert_is_a_parse_error(body: bytes, reason: str) -> None:
    with pytest.raises(ParseError, match=reason):
        DefenderDetector().parse(body)


def test_an_alert_without_id_gets_a_stable_fingerprint() -> None:
    body = b'{"title": "Ransomware behavior detected", "severity": "high", "machineId": "m1"}'
    [first] = DefenderDetector().parse(body)
    [second] = DefenderDetector().parse(body)
    assert first.external_id.startswith("sha256:") and first.external_id == second.external_id
    assert (first.severity, first.vendor_severity) == ("high", "high")


def test_registered_by_name() -> None:
    assert isinstance(detectors.get("defender")(), DefenderDetector)


def test_logged_on_users_given_as_json_text() -> None:
    [event] = parse("streaming_logged_on.json")
    assert summary(event) == {
        "external_id": "da638772011122233344_-1122334455",
        "title": "Suspicious PowerShell command line",
        "severity": "medium",
        "vendor_severity": "Medium",
        "occurred_at": datetime(2026, 3, 8, 11, 1, 10, tzinfo=UTC),
        "users": ["CORP\\rita", "CORP\\svc_patch", "rita@corp.example.com"],
        "hosts": ["ops-ws-07.corp.example.com"],
        "ips": ["203.0.113.140"],
        "hashes": [
            "de96a6e69944335375dc1ac238336066889d9ffc7d73628ef4fe1b1b160ab32c",
            "6cbce4a295c163791b60fc23d285e6d84f28ee4c",
        ],
        "processes": ["powershell.exe", "wmiprvse.exe"],
        "files": [
            "C:\\Windows\\System32\\wbem\\wmiprvse.exe",
            "C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe",
        ],
    }
