"""Sophos Central: SIEM alerts and events, and Common API alerts."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from integrations.detectors.sophos import SophosDetector
from pipeline.errors import ParseError
from pipeline.plugins import ParsedEvent, detectors
from tests.integrations.detectors.edr.expect import payload, summary


def parse(name: str) -> list[ParsedEvent]:
    return SophosDetector().parse(payload("sophos", name))


def test_siem_alerts_page() -> None:
    cleanup, ips = parse("siem_alerts.json")
    assert summary(cleanup) == {
        "external_id": "2b4d6f80-1a3c-4e5f-9a7b-c9d1e3f5a7b9",
        "title": "Manual cleanup required: 'EICAR-AV-Test' at "
        "'C:\\Users\\hannah\\Downloads\\eicar_com.zip'",
        "severity": "high",
        "vendor_severity": "high",
        "occurred_at": datetime(2026, 3, 9, 8, 12, 31, tzinfo=UTC),  # when
        "users": ["CORP\\hannah"],
        "hosts": ["SALES-LT-12"],
        "ips": ["10.50.4.23"],
        "files": ["C:\\Users\\hannah\\Downloads\\eicar_com.zip"],
    }
    assert summary(ips) == {
        "external_id": "7c9e1a3b-5d7f-4a2c-8e4b-6d8f0a2c4e6b",
        "title": "A network attack was detected and blocked: OS-WINDOWS Microsoft Windows SMB "
        "remote code execution attempt",
        "severity": "medium",
        "vendor_severity": "medium",
        "occurred_at": datetime(2026, 3, 9, 9, 2, 58, tzinfo=UTC),
        "hosts": ["FILESRV-01"],  # source "n/a" is no user
        "ips": ["10.50.1.5", "198.51.100.77"],
        "processes": ["SMB Service"],
        "files": ["C:\\Windows\\System32\\svchost.exe"],
    }
    items = json.loads(payload("sophos", "siem_alerts.json"))["items"]
    assert json.loads(ips.raw) == items[1]


def test_common_api_alerts() -> None:
    pua, ransomware = parse("common_alerts.json")
    assert summary(pua) == {
        "external_id": "4e6a8c0b-2d4f-4a6b-8c0d-2e4f6a8b0c2d",
        "title": "PUA detected: 'PsExec' at 'C:\\Tools\\PsExec64.exe'",
        "severity": "low",
        "vendor_severity": "low",
        "occurred_at": datetime(2026, 3, 9, 10, 20, 14, 482000, tzinfo=UTC),  # raisedAt
        "users": ["CORP\\ivan"],
        "hosts": ["IT-WS-04"],
        "files": ["C:\\Tools\\PsExec64.exe"],
    }
    assert summary(ransomware) == {
        "external_id": "8b0d2f4a-6c8e-4b0d-af4b-8d0f2a4c6e8b",
        "title": "Malware detected: 'Troj/Ransom-GXL' at "
        "'C:\\Users\\o'brien\\AppData\\Local\\Temp\\upd.exe'",
        "severity": "high",
        "vendor_severity": "high",
        "occurred_at": datetime(2026, 3, 9, 10, 41, 9, 7000, tzinfo=UTC),
        # managedAgent and person carry ids only: those are not hosts or users
        "files": ["C:\\Users\\o'brien\\AppData\\Local\\Temp\\upd.exe"],
    }


def test_siem_events_as_json_lines() -> None:
    malware, amsi, new_user = parse("siem_events.jsonl")
    assert summary(malware) == {
        "external_id": "0d2f4a6c-8e0b-4d2f-8a6c-0e2a4c6e8a0c",
        "title": "Malware detected: 'EICAR-AV-Test' at 'C:\\Users\\jürgen\\Desktop\\eicar.com'",
        "severity": "high",
        "vendor_severity": "high",
        "occurred_at": datetime(2026, 3, 9, 10, 59, 59, 900000, tzinfo=UTC),
        "users": ["BÜRO\\jürgen"],
        "hosts": ["Büro-PC-3"],
        "ips": ["192.168.20.33"],
        "hashes": ["275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f"],
        "files": ["C:\\Users\\jürgen\\Desktop\\eicar.com"],
    }
    assert summary(amsi) == {
        "external_id": "1e3a5c7e-9b1d-4e3a-9c7e-1b3d5f7a9c1e",
        "title": "Malicious behavior detected in memory: 'AMSI/Cobalt-A'",
        "severity": "medium",
        "vendor_severity": "medium",
        "occurred_at": datetime(2026, 3, 9, 11, 5, tzinfo=UTC),  # when is null: created_at
        "processes": ["powershell.exe"],  # location is "": no host
        "files": ["C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe"],
    }
    assert summary(new_user) == {
        "external_id": "2f4b6d8f-0a2c-4e6b-8d0f-2a4c6e8b0d2f",
        "title": "New user added automatically: CORP\\kim",
        "severity": "low",
        "vendor_severity": "low",
        "occurred_at": datetime(2026, 3, 9, 11, 9, 58, tzinfo=UTC),
        "users": ["CORP\\kim"],
        "hosts": ["SALES-LT-12"],
    }


def test_a_single_item_keeps_its_body() -> None:
    item = json.loads(payload("sophos", "siem_alerts.json"))["items"][0]
    body = json.dumps(item, indent=1).encode()
    [event] = SophosDetector().parse(body)
    assert event.raw == body.decode()
    assert event.external_id == "2b4d6f80-1a3c-4e5f-9a7b-c9d1e3f5a7b9"


@pytest.mark.parametrize(
    ("value", "expected"),
    [("low", "low"), ("medium", "medium"), ("high", "high"), ("HIGH", "high"), (None, "medium")],
)
def test_severity(value: str | None, expected: str) -> None:
    [event] = SophosDetector().parse(
        json.dumps(
            {"id": "a", "type": "Event::Endpoint::Threat::Detected", "severity": value}
        ).encode()
    )
    assert (event.severity, event.vendor_severity) == (expected, value)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b'{"has_more": false, "items": [], "next_cursor": "x"}', "holds no alerts"),
        (b'{"items": "none"}', "items is not a list"),
        (
            b'{"error": "Unauthorized", "message": "token expired"}',
            r"not a Sophos Central alert: expected a SIEM alert or event \(type 'Event::…'\) "
            r"or a Common API alert \(raisedAt or managedAgent\)",
        ),
        (b'{"managedAgent": {"id": "a"}, "severity": "high"}', "neither an id nor a desc"),
    ],
)
def test_what_is_not_an_alert_is_a_parse_error(body: bytes, reason: str) -> None:
    with pytest.raises(ParseError, match=reason):
        SophosDetector().parse(body)


def test_an_item_without_id_gets_a_stable_fingerprint() -> None:
    body = (
        b'{"type": "Event::Endpoint::Threat::Detected", "description": "Malware detected", '
        b'"severity": "high", "location": "PC-1"}'
    )
    [first] = SophosDetector().parse(body)
    [second] = SophosDetector().parse(body)
    assert first.external_id.startswith("sha256:") and first.external_id == second.external_id


def test_registered_by_name() -> None:
    assert isinstance(detectors.get("sophos")(), SophosDetector)


def test_the_siem_scripts_json_carries_the_user_and_the_sha256() -> None:
    event, alert = parse("siem_script.jsonl")
    assert summary(event) == {
        "external_id": "5f7b9d1e-3a5c-4f9b-8d3e-5a7c9f1b3d5e",
        "title": "Malware detected: 'Mal/Generic-S' at 'C:\\Users\\pia\\Downloads\\setup.exe'",
        "severity": "high",
        "vendor_severity": "high",
        "occurred_at": datetime(2026, 3, 9, 12, 14, 1, tzinfo=UTC),
        "users": ["CORP\\pia"],  # suser, as the script writes it
        "hosts": ["PIA-LT"],
        "ips": ["10.70.1.14"],
        "hashes": ["8a0c2e4b6d8f0a2c4e6b8d0f2a4c6e8b0d2f4a6c8e0b2d4f6a8c0e2b4d6f8a0c"],
        "files": [
            "C:\\Users\\pia\\Downloads\\setup.exe",
            "C:\\Program Files\\Mozilla Firefox\\firefox.exe",  # the remedied item's process
        ],
    }
    assert summary(alert) == {
        "external_id": "6a8c0e2b-4d6f-4a0c-9e2b-6d8f0a2c4e6b",
        "title": "Malicious behavior detected in memory: 'AMSI/PsObfs-A'",
        "severity": "medium",
        "vendor_severity": "medium",
        "occurred_at": datetime(2026, 3, 9, 12, 30, 45, tzinfo=UTC),
        "users": ["CORP\\quinn"],
        "hosts": ["QUINN-WS"],
        "ips": ["10.70.2.31"],
        "hashes": ["9b1d3f5a7c9e1b3d5f7a9c1e3b5d7f9a1c3e5b7d9f1a3c5e7b9d1f3a5c7e9b1d"],  # in data
        "processes": ["powershell.exe"],  # the AMSI data under "data"
        "files": ["C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe"],
    }
