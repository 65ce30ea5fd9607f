"""Jamf Protect: an alert to an HTTP endpoint, and a stream with unified-log matches and
telemetry."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from integrations.detectors.jamf_protect import JamfProtectDetector
from pipeline.errors import ParseError
from pipeline.plugins import ParsedEvent, detectors
from tests.integrations.detectors.siem.expect import payload, summary


def parse(name: str) -> list[ParsedEvent]:
    return JamfProtectDetector().parse(payload("jamf_protect", name))


def events_skipped(name: str) -> dict[str, int]:
    return JamfProtectDetector().parse(payload("jamf_protect", name)).skipped  # type: ignore[attr-defined]


def test_alert_process() -> None:
    [event] = parse("alert_process.json")
    assert summary(event) == {
        "external_id": "2A9C4E6F-8B0D-4F2A-9C4E-6F8B0D2F4A6C",
        "title": "Process resembling Atomic Stealer prompting for the login password",
        "severity": "high",
        "vendor_severity": "3",
        "occurred_at": datetime(2026, 3, 7, 15, 30, 12, 118000, tzinfo=UTC),
        "users": ["nora"],
        "hosts": ["Noras-MacBook-Pro"],
        "ips": ["10.60.8.41"],
        "hashes": [
            "1c3e5a7b9d1f3a5c7e9b1d3f5a7c9e1b3d5f7a9c1e3b5d7f9a1c3e5b7d9f1a3c",
            "2d4f6a8c0e2b4d6f8a0c2e4b6d8f0a2c4e6b8d0f",
            "3e5a7c9b1d3f5e7a9c1b3d5f7e9a1c3b5d7f9e1a3c5b7d9f1e3a5c7b9d1f3e5a",
            "4f6b8d0a2c4e6f8b0d2a4c6e8f0b2d4a6c8e0f2b",
        ],
        "processes": ["osascript", "Installer"],
        "files": [
            "/Users/nora/Library/Application Support/.updater/osascript",
            "/Volumes/Installer/Installer.app/Contents/MacOS/Installer",
        ],
    }


def test_stream() -> None:
    event_0, event_1 = parse("stream.jsonl")
    assert summary(event_0) == {
        "external_id": "5B7D9F1A-3C5E-4A9B-8D1F-3A5C7E9B1D3F",
        "title": "Unified log filter: repeated sudo failures",
        "severity": "low",
        "vendor_severity": "1",
        "occurred_at": datetime(2026, 3, 7, 16, 30, 1, tzinfo=UTC),
        "users": ["pat"],
        "hosts": ["lab-mini-03"],
        "ips": ["10.60.9.3", "fd00::3"],
    }
    assert summary(event_1) == {
        "external_id": "6C8E0A2B-4D6F-4B0C-9E2A-4B6D8F0A2C4E",
        "title": "DownloadedDiskImage",
        "severity": "medium",
        "vendor_severity": "2",
        "occurred_at": datetime(2026, 3, 7, 16, 50, tzinfo=UTC),
        "users": ["omar"],
        "hosts": ["Omars-iMac"],
        "ips": ["10.60.2.77"],
        "hashes": ["5f7b9d1e3a5c7f9b1d3e5a7c9f1b3d5e7a9c1f3b5d7e9a1c3f5b7d9e1a3c5f7b"],
        "domains": ["files.examp1e-share.net"],
        "urls": ["https://files.examp1e-share.net/d/Invoice.dmg"],
        "files": ["/Users/omar/Downloads/Invoice.dmg"],
    }
    assert events_skipped("stream.jsonl") == {"Jamf Protect telemetry record: not an alert": 1}


def test_registered_by_name() -> None:
    assert isinstance(detectors.get("jamf_protect")(), JamfProtectDetector)


def test_a_foreign_payload_is_refused_naming_what_was_expected() -> None:
    with pytest.raises(ParseError) as refused:
        JamfProtectDetector().parse(b'{"id": "x", "title": "t", "severity": "high"}')
    assert str(refused.value) == (
        "jamf_protect: not a Jamf Protect alert: expected an alert (input.match with "
        "uuid, and caid or input.host)"
    )


def test_telemetry_alone_is_accepted_and_skipped() -> None:
    line = payload("jamf_protect", "stream.jsonl").splitlines()[1]
    events = JamfProtectDetector().parse(line)
    assert (list(events), events.skipped) == (  # type: ignore[attr-defined]
        [],
        {"Jamf Protect telemetry record: not an alert": 1},
    )


def test_root_is_no_person_to_contain() -> None:
    [event] = parse("alert_process.json")
    assert "root" not in event.observables.users
