"""SentinelOne: threats (API 2.1 and 2.0), cloud detection alerts, threat notifications."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from integrations.detectors.sentinelone import SentinelOneDetector
from pipeline.errors import ParseError
from pipeline.plugins import ParsedEvent, detectors
from tests.integrations.detectors.edr.expect import payload, summary

RANSOMWARE_SHA1 = "3f786850e387550fdab836ed7e6dc881de23001b"
RANSOMWARE_PATH = "\\Device\\HarddiskVolume3\\Users\\alice\\AppData\\Roaming\\svchosts.exe"


def parse(name: str) -> list[ParsedEvent]:
    return SentinelOneDetector().parse(payload("sentinelone", name))


def test_threats_api_page() -> None:
    ransomware, pua = parse("threats_page.json")
    assert summary(ransomware) == {
        "external_id": "2038475610293847561",
        "title": "Ransomware: svchosts.exe",
        "severity": "high",
        "vendor_severity": "malicious",
        "occurred_at": datetime(2026, 3, 5, 9, 14, 1, 902000, tzinfo=UTC),  # identifiedAt
        "users": ["CORP\\alice", "alice@corp.example.com", "alice"],
        "hosts": ["FIN-LT-0107"],
        # agentIpV4 lists two addresses joined by a comma
        "ips": ["10.30.1.45", "192.168.56.1", "fe80::a1b2:c3d4:e5f6:7788", "203.0.113.45"],
        "hashes": [RANSOMWARE_SHA1, "4a3b2c1d0e9f8a7b6c5d4e3f2a1b0c9d"],
        "processes": ["WINWORD.EXE"],
        "files": [RANSOMWARE_PATH],
    }
    assert ransomware.observables.hash_types == {
        RANSOMWARE_SHA1: "sha1",
        "4a3b2c1d0e9f8a7b6c5d4e3f2a1b0c9d": "md5",
    }
    assert summary(pua) == {
        "external_id": "2038475610293850022",
        "title": "PUA: installer",
        "severity": "medium",
        "vendor_severity": "suspicious",
        "occurred_at": datetime(2026, 3, 5, 10, 40, 18, 10221, tzinfo=UTC),  # createdAt
        "users": ["bob", "bob@example.com"],
        "hosts": ["Bobs-MacBook-Pro"],
        "ips": ["10.30.7.12"],
        "hashes": ["c3499c2729730a7f807efb8676a92dcb6f8a3f8f"],
        "processes": ["launchd"],
        "files": ["/Users/bob/Downloads/FreeVPN Installer.app/Contents/MacOS/installer"],
    }
    page = json.loads(payload("sentinelone", "threats_page.json"))
    assert json.loads(pua.raw) == page["data"][1]


def test_a_single_threat_keeps_its_body() -> None:
    body = payload("sentinelone", "threat_single.json")
    [event] = SentinelOneDetector().parse(body)
    assert summary(event) == {
        "external_id": "2038475610293861290",
        "title": "Trojan: kworkerd",
        "severity": "high",
        "vendor_severity": "malicious",
        "occurred_at": datetime(2026, 3, 6, 2, 11, 46, 512000, tzinfo=UTC),
        "users": ["www-data", "root"],
        "hosts": ["web-dmz-02"],
        "ips": ["172.20.3.8", "198.51.100.140"],
        "hashes": [
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b856",
            "2aae6c35c94fcfb415dbe95f408b9ce91ee846ed",
            "d41d8cd98f00b204e9800998ecf8427f",
        ],
        "processes": ["bash"],
        "files": ["/var/tmp/.x/kworkerd"],
    }
    assert event.raw == body.decode()


def test_an_api_2_0_threat_reads_from_the_top_level() -> None:
    [event] = parse("threat_api20.json")
    assert summary(event) == {
        "external_id": "512034958799999999",
        "title": "Worm: autorun.exe",
        "severity": "medium",  # 2.0 has no confidence level
        "vendor_severity": None,
        "occurred_at": datetime(2026, 3, 1, 7, 0, tzinfo=UTC),
        "users": ["LAB\\labuser"],
        "hosts": ["OLD-XP-LAB"],
        "ips": ["10.99.0.5"],
        "hashes": ["aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d"],
        "files": ["\\Device\\HarddiskVolume1\\autorun.exe"],
    }


def test_cloud_detection_alerts_page() -> None:
    egress, spray = parse("alerts_page.json")
    assert summary(egress) == {
        "external_id": "2038475611102938475",
        "title": "SQL Server shell egress",
        "severity": "high",
        "vendor_severity": "High",
        "occurred_at": datetime(2026, 3, 5, 11, 2, 44, 918000, tzinfo=UTC),
        "users": ["CORP\\svc_sql"],  # not the parent's NT SERVICE account
        "hosts": ["srv-sql-01"],
        "ips": ["10.30.2.21", "192.0.2.99"],
        "src_ips": ["10.30.2.21"],
        "dst_ips": ["192.0.2.99"],
        "hashes": [  # the acting process's, then its parent's (sqlservr.exe)
            "b99d114b267ffd068c3289199b6df95a9f9e64872d6c2b666d63974bbce75bf2",
            "ded8fd7f36417f66eb6ada10e0c0d7c0022986e9",
            "911d039e71583a07320b32bde22f8e22",
            "0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9",
            "9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b",
            "a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4",
        ],
        "domains": ["c2.badstuff.example"],
        "processes": ["cmd.exe", "sqlservr.exe"],
        "files": [
            "C:\\Windows\\System32\\cmd.exe",
            "C:\\Program Files\\Microsoft SQL Server\\MSSQL16.MSSQLSERVER\\MSSQL\\Binn"
            "\\sqlservr.exe",
        ],
    }
    assert summary(spray) == {
        "external_id": "2038475611102940001",
        "title": "Password spray against domain admin",
        "severity": "critical",
        "vendor_severity": "Critical",
        "occurred_at": datetime(2026, 3, 5, 11, 30, 9, 114000, tzinfo=UTC),
        "users": ["CORP\\administrator"],  # lsass runs as SYSTEM: not a user
        "hosts": ["dc01"],
        "ips": ["10.30.0.10", "10.30.9.77"],
        "src_ips": ["10.30.9.77"],
        "dst_ips": ["10.30.0.10"],
        "processes": ["lsass.exe", "wininit.exe"],
        "files": ["C:\\Windows\\System32\\lsass.exe"],
    }


def test_notifications_are_threats_by_their_threat_id() -> None:
    detected, killed, unicode = parse("notifications.jsonl")  # the console login is skipped
    assert summary(detected) == {
        "external_id": "2038475610293847561",  # the threat's id, as the API gives it
        "title": "Threat with confidence level malicious detected: svchosts.exe",
        "severity": "high",
        "vendor_severity": "malicious",
        "occurred_at": datetime(2026, 3, 5, 9, 14, 2, 790144, tzinfo=UTC),
        "users": ["CORP\\alice"],
        "hosts": ["FIN-LT-0107"],
        "hashes": [RANSOMWARE_SHA1],
        "files": [RANSOMWARE_PATH],
    }
    assert summary(killed) == {
        "external_id": "2038475610293847561",  # the same threat: stored once
        "title": "The agent FIN-LT-0107 successfully killed the threat: svchosts.exe.",
        "severity": "medium",
        "vendor_severity": None,
        "occurred_at": datetime(2026, 3, 5, 9, 14, 3, 200000, tzinfo=UTC),
        "hosts": ["FIN-LT-0107"],
        "hashes": [RANSOMWARE_SHA1],
        "files": [RANSOMWARE_PATH],
    }
    assert summary(unicode) == {
        "external_id": "2038475610293870707",
        "title": "Threat with confidence level suspicious detected: Überweisung.js",
        "severity": "medium",
        "vendor_severity": "suspicious",
        "occurred_at": datetime(2026, 3, 5, 12, 1, 30, 500000, tzinfo=UTC),  # "… 12:01:30.5"
        "users": ["jürgen"],
        "hosts": ["büro-pc-07"],
        "files": ["C:\\Users\\jürgen\\Downloads\\Überweisung.js"],  # fileContentHash "N/A"
    }
    [threat, _] = parse("threats_page.json")
    assert detected.external_id == threat.external_id


def test_an_activities_page_keeps_only_threat_activities() -> None:
    lines = payload("sentinelone", "notifications.jsonl").decode().splitlines()
    page = {"data": [json.loads(line) for line in lines], "pagination": {"totalItems": 4}}
    events = SentinelOneDetector().parse(json.dumps(page).encode())
    assert [e.title for e in events] == [e.title for e in parse("notifications.jsonl")]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b'{"data": [], "pagination": {"nextCursor": null, "totalItems": 0}}', "no alerts"),
        (
            b'{"errors": [{"code": 4010010, "detail": null, "title": "Authentication Failed"}]}',
            r"not a SentinelOne alert: expected a threat \(threatInfo, or fileContentHash in API "
            r"2\.0\), a cloud-detection alert \(alertInfo or ruleInfo\) or a threat activity "
            r"\(activityType with threatId\)",
        ),
        (b'{"activityType": 27, "threatId": null, "data": {}}', "holds no alerts"),
        (b'{"threatInfo": "x", "alertInfo": 3}', "not a SentinelOne alert: expected"),
    ],
)
def test_what_is_not_an_alert_is_a_parse_error(body: bytes, reason: str) -> None:
    with pytest.raises(ParseError, match=reason):
        SentinelOneDetector().parse(body)


def test_a_threat_without_id_gets_a_stable_fingerprint() -> None:
    body = b'{"threatInfo": {"threatName": "eicar.com", "confidenceLevel": "malicious"}}'
    [first] = SentinelOneDetector().parse(body)
    [second] = SentinelOneDetector().parse(body)
    assert first.external_id.startswith("sha256:") and first.external_id == second.external_id
    assert (first.title, first.severity) == ("eicar.com", "high")


@pytest.mark.parametrize(
    ("rule", "expected"),
    [("Info", "informational"), ("Low", "low"), ("Medium", "medium"), ("CRITICAL", "critical")],
)
def test_rule_severity(rule: str, expected: str) -> None:
    alert = {"alertInfo": {"alertId": "1"}, "ruleInfo": {"name": "r", "severity": rule}}
    [event] = SentinelOneDetector().parse(json.dumps(alert).encode())
    assert (event.severity, event.vendor_severity) == (expected, rule)


def test_registered_by_name() -> None:
    assert isinstance(detectors.get("sentinelone")(), SentinelOneDetector)
