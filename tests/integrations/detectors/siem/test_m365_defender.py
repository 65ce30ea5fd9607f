"""Defender XDR: Graph alerts v2 with evidence, and the Microsoft 365 Defender incidents API."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from integrations.detectors.m365_defender import M365DefenderDetector
from pipeline.errors import ParseError
from pipeline.plugins import ParsedEvent, detectors
from tests.integrations.detectors.siem.expect import payload, summary


def parse(name: str) -> list[ParsedEvent]:
    return M365DefenderDetector().parse(payload("m365_defender", name))


def test_alerts_v2() -> None:
    event_0, event_1 = parse("alerts_v2.json")
    assert summary(event_0) == {
        "external_id": "da638771842190327512_-1249012761",
        "title": "Suspicious access to LSASS service",
        "severity": "high",
        "vendor_severity": "high",
        "occurred_at": datetime(2026, 3, 8, 7, 40, 3, 451129, tzinfo=UTC),
        "users": ["CORP\\erin", "CORP\\svc_backup", "erin@corp.example.com"],
        "hosts": ["eng-ws-19.corp.example.com"],
        "ips": ["10.50.3.19", "fe80::5d3b:9c2e:4f1a:7b80", "198.51.100.99"],
        "hashes": [
            "3c5e7a9b1d2f4e6a8c0b2d4f6e8a0c2b4d6f8e0a2c4b6d8f0e2a4c6b8d0f2e4a",
            "9e1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c",
            "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c",
        ],
        "processes": ["mimi.exe", "powershell.exe"],
        "files": [
            "C:\\Users\\erin\\AppData\\Local\\Temp\\mimi.exe",
            "C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe",
        ],
    }
    assert summary(event_1) == {
        "external_id": "fa4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d",
        "title": "Email messages containing malicious URL removed after delivery",
        "severity": "medium",
        "vendor_severity": "medium",
        "occurred_at": datetime(2026, 3, 8, 10, 2, 44, tzinfo=UTC),
        "users": ["frank@corp.example.com"],
        "ips": ["203.0.113.45"],
        "domains": ["verify.examp1e-login.net"],
        "urls": ["https://verify.examp1e-login.net/session"],
        "src_ips": ["203.0.113.45"],
    }


def test_incidents_api() -> None:
    [event] = parse("incidents_api.json")
    assert summary(event) == {
        "external_id": "incident:924518",
        "title": "Ransomware activity on one endpoint",
        "severity": "high",
        "vendor_severity": "High",
        "occurred_at": datetime(2026, 3, 9, 13, 40, tzinfo=UTC),
        "users": ["CORP\\ops.admin", "ops.admin@corp.example.com"],
        "hosts": ["fin-srv-02.corp.example.com"],
        "ips": ["192.0.2.200"],
        "hashes": [
            "cc0a9e7cd7f4bd0f5e2b8c1d3a4f6e7b9c0d2e3f5a6b7c8d9e0f1a2b3c4d5e6f",
            "8d3f0a1b2c4e5d6f7a8b9c0d1e2f3a4b5c6d7e8f",
        ],
        "domains": ["rev.badstuff.example"],
        "urls": ["http://rev.badstuff.example/k"],
        "processes": ["r.exe"],
        "files": ["C:\\ProgramData\\r.exe"],
    }


def test_registered_by_name() -> None:
    assert isinstance(detectors.get("m365_defender")(), M365DefenderDetector)


def test_a_foreign_payload_is_refused_naming_what_was_expected() -> None:
    with pytest.raises(ParseError) as refused:
        M365DefenderDetector().parse(b'{"id": "x", "title": "t", "severity": "high"}')
    assert str(refused.value) == (
        "m365_defender: not a Defender XDR alert: expected an incident (incidentId, or "
        "displayName with alerts) or an alert v2 (id with serviceSource or createdDateTime)"
    )


def test_an_incident_of_graph_joins_its_alerts() -> None:
    alerts = json.loads(payload("m365_defender", "alerts_v2.json"))["value"]
    incident = {
        "id": "2972",
        "displayName": "Credential theft on one endpoint",
        "severity": "high",
        "createdDateTime": "2026-03-08T07:42:00Z",
        "alerts": alerts,
    }
    [event] = M365DefenderDetector().parse(json.dumps(incident).encode())
    assert (event.external_id, event.title) == ("incident:2972", incident["displayName"])
    assert event.observables.users == [
        "CORP\\erin",
        "CORP\\svc_backup",
        "erin@corp.example.com",
        "frank@corp.example.com",
    ]
    assert "203.0.113.45" in event.observables.src_ips


@pytest.mark.parametrize("word", ["UnSpecified", "unknownFutureValue"])
def test_an_unstated_severity_stays_medium_with_the_word_kept(word: str) -> None:
    body = {"id": "a", "title": "t", "severity": word, "serviceSource": "x"}
    [event] = M365DefenderDetector().parse(json.dumps(body).encode())
    assert (event.severity, event.vendor_severity) == ("medium", word)
