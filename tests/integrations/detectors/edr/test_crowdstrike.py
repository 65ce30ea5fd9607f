"""CrowdStrike Falcon: Event Streams detections and incidents, and Alerts API v2 entities."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from integrations.detectors.crowdstrike import CrowdStrikeDetector
from pipeline.errors import ParseError
from pipeline.plugins import ParsedEvent, detectors
from tests.integrations.detectors.edr.expect import payload, summary

CID = "1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d"
PROCDUMP_SHA256 = "0c4f7a3e1b9d2c5f8a6e4b7d9c1f3a5e7b9d1c3f5a7e9b1d3c5f7a9e1b3d5c7f"


def parse(name: str) -> list[ParsedEvent]:
    return CrowdStrikeDetector().parse(payload("crowdstrike", name))


def test_stream_detection_summary_event() -> None:
    body = payload("crowdstrike", "stream_detection.json")
    [event] = CrowdStrikeDetector().parse(body)
    assert summary(event) == {
        "external_id": "ldt:9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b:38472910021",
        "title": "Credential Theft: A process attempted to dump LSASS memory, as "
        "credential-theft tools do.",
        "severity": "critical",
        "vendor_severity": "Critical",
        "occurred_at": datetime(2026, 3, 3, 12, 52, 15, tzinfo=UTC),  # eventCreationTime
        "users": ["alice"],
        "hosts": ["FIN-LT-0042"],
        "ips": ["10.20.4.17", "198.51.100.23", "203.0.113.77"],
        # direction 0: the host called out; direction 1: RDP came in to it
        "src_ips": ["10.20.4.17", "198.51.100.23"],
        "dst_ips": ["203.0.113.77", "10.20.4.17"],
        "hashes": [PROCDUMP_SHA256, "6f1d0c3a9b8e7d2c4a5f6e1b0c9d8a7e"],  # SHA1 all zeros
        "processes": ["procdump64.exe", "cmd.exe", "explorer.exe"],
        "files": ["\\Device\\HarddiskVolume3\\Users\\alice\\Downloads\\procdump64.exe"],
    }
    assert event.observables.hash_types == {
        PROCDUMP_SHA256: "sha256",
        "6f1d0c3a9b8e7d2c4a5f6e1b0c9d8a7e": "md5",
    }
    assert event.raw == body.decode()  # the envelope, metadata included, byte for byte


def test_stream_json_lines_keep_alerts_and_skip_the_rest() -> None:
    epp, idp, incident = parse("stream.jsonl")  # audit and RTR session events skipped
    assert summary(epp) == {
        "external_id": f"{CID}:ind:2b3c4d5e6f708192a3b4c5d6e7f80912:41220983311-5702-77120",
        "title": "Malicious File: A process launched a file classified as malware by the sensor.",
        "severity": "high",
        "vendor_severity": "High",
        "occurred_at": datetime(2026, 3, 3, 13, 42, 1, tzinfo=UTC),
        "users": ["svc_build"],
        "hosts": ["build-07"],
        "ips": ["172.16.8.31"],  # LocalIPv6 is ""
        "hashes": ["5b2e8d1c4a7f0e3b6d9c2a5f8e1b4d7c0a3f6e9b2d5c8a1f4e7b0d3c6a9f2e5b"],
        "processes": ["xmrig", "bash", "sshd"],
        "files": ["/tmp/.cache/xmrig", "/tmp/.cache/config.json"],
    }
    assert summary(idp) == {
        "external_id": f"{CID}:ind:{CID}:0D6E2F41-7A3B-4C5D-9E8F-1A2B3C4D5E6F",
        "title": "Unusual login to an endpoint: A user logged in to a machine for the first time",
        "severity": "low",
        "vendor_severity": "Low",
        "occurred_at": datetime(2026, 3, 3, 13, 55, 2, tzinfo=UTC),
        "users": ["bob@corp.example.com", "bob"],  # the target FS01$ is a computer account
        "hosts": ["hr-ws-11.corp.example.com", "fs01.corp.example.com"],
        "ips": ["10.20.9.44"],
        "src_ips": ["10.20.9.44"],
    }
    assert summary(incident) == {
        "external_id": "inc:9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b:4c1e0b7a9d2f4e3c8b6a5d4e3f2a1b0c",
        "title": "Falcon incident (CrowdScore 7.4)",
        "severity": "high",
        "vendor_severity": "7.4",
        "occurred_at": datetime(2026, 3, 3, 12, 52, 11, tzinfo=UTC),  # IncidentStartTime
    }
    lines = payload("crowdstrike", "stream.jsonl").decode().splitlines()
    assert json.loads(epp.raw) == json.loads(lines[1])


def test_alerts_api_entities_response() -> None:
    endpoint, identity = parse("alerts_v2.json")
    sha = "de96a6e69944335375dc1ac238336066889d9ffc7d73628ef4fe1b1b160ab32c"
    stage2 = "a3f1c5e7b9d2f4a6c8e0b2d4f6a8c0e2b4d6f8a0c2e4b6d8f0a2c4e6b8d0f2a4"
    assert summary(endpoint) == {
        "external_id": f"{CID}:ind:9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b:38472911876-10356-80211",
        "title": "Suspicious PowerShell download cradle: A PowerShell process downloaded and "
        "ran a remote script.",
        "severity": "high",
        "vendor_severity": "High",
        "occurred_at": datetime(2026, 3, 3, 14, 2, 11, 402000, tzinfo=UTC),
        "users": ["CORP\\alice", "alice@corp.example.com", "alice"],  # logon_domain joined
        "hosts": ["FIN-LT-0042"],
        "ips": ["10.20.4.17", "203.0.113.10", "192.0.2.66"],
        "src_ips": ["10.20.4.17"],
        "dst_ips": ["192.0.2.66"],
        "hashes": [
            sha,
            "7353f60b1739074eb17c5f4dddefe239",
            "b99d114b267ffd068c3289199b6df95a9f9e64872d6c2b666d63974bbce75bf2",  # the parent's
            "911d039e71583a07320b32bde22f8e22",
            stage2,
            "1e2d3c4b5a69788796a5b4c3d2e1f0a9",  # the indicator's md5 (ioc_context)
        ],
        "domains": ["cdn.badstuff.example"],
        "processes": ["powershell.exe", "cmd.exe", "explorer.exe"],
        "files": [
            "\\Device\\HarddiskVolume3\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe",
            "\\Device\\HarddiskVolume3\\Windows\\System32\\cmd.exe",
            "\\Device\\HarddiskVolume3\\Windows\\explorer.exe",
            "\\Device\\HarddiskVolume3\\Users\\alice\\AppData\\Local\\Temp\\stage2.ps1",
        ],
    }
    assert summary(identity) == {
        "external_id": f"{CID}:ind:{CID}:7B9E3C21-44A0-4F2B-9D61-0E5A8C7B6D4F",
        "title": "Impossible travel: An account authenticated with valid credentials from an "
        "unusual location.",
        "severity": "critical",
        "vendor_severity": "Critical",
        "occurred_at": datetime(2026, 3, 3, 15, 40, 44, 242000, tzinfo=UTC),
        "users": ["carol", "carol@corp.example.com"],
        "ips": ["198.51.100.201"],
        "src_ips": ["198.51.100.201"],
    }
    resources = json.loads(payload("crowdstrike", "alerts_v2.json"))["resources"]
    assert json.loads(identity.raw) == resources[1]


def test_single_alert_with_empty_markers_and_unicode() -> None:
    body = payload("crowdstrike", "alert_single_sparse.json")
    [event] = CrowdStrikeDetector().parse(body)
    assert summary(event) == {
        "external_id": f"{CID}:ods:5f6e7d8c9b0a1f2e3d4c5b6a7f8e9d0c:"
        "d41d8cd98f00b204e9800998ecf8427e",
        "title": "OnDemandScanMLFileAnalysisMedium",  # description is null
        "severity": "medium",  # no severity_name: 50 on the 0–100 scale
        "vendor_severity": "50",
        "occurred_at": datetime(2026, 3, 4, 8, 15, 27, 311763, tzinfo=UTC),  # nanoseconds cut
        "users": ["jörg.müller@corp.example.com"],  # user_name "None" is no user
        "hosts": ["Zürich-Kiosk-01"],  # local_ip "N/A" is no IP
        "hashes": ["9c56cc51b374c3ba189210d5b6d4bf57790d351c96c47c02190ecf1e430635ab"],
        "processes": ["Rechnung_März.pdf.exe"],
        "files": ["E:\\Rechnungen\\Rechnung_März.pdf.exe"],
    }
    assert event.raw == body.decode()


def test_the_same_detection_from_the_stream_and_the_api_is_one_event() -> None:
    [api, _] = parse("alerts_v2.json")
    envelope = {
        "metadata": {"eventType": "EPPDetectionSummaryEvent", "eventCreationTime": 1772546531000},
        "event": {"CompositeId": api.external_id, "Name": "x", "Severity": 70},
    }
    [streamed] = CrowdStrikeDetector().parse(json.dumps(envelope).encode())
    assert streamed.external_id == api.external_id


@pytest.mark.parametrize(
    ("name", "number", "expected", "vendor"),
    [
        ("Critical", 5, "critical", "Critical"),
        ("LOW", 4, "low", "LOW"),  # the word wins over the number
        (None, 1, "informational", "1"),  # legacy 1–5 scale
        (None, 2, "low", "2"),
        (None, 3, "medium", "3"),
        (None, 4, "high", "4"),
        (None, 5, "critical", "5"),
        (None, 10, "informational", "10"),  # 0–100 scale
        (None, 30, "low", "30"),
        (None, 50, "medium", "50"),
        (None, 79, "high", "79"),
        (None, 90, "critical", "90"),
        ("Severe", 90, "critical", "90"),  # an unknown word: the number decides
        (None, None, "medium", None),
        (None, "high-ish", "medium", "high-ish"),
    ],
)
def test_severity(name: object, number: object, expected: str, vendor: str | None) -> None:
    alert = {"composite_id": "c-1", "display_name": "x", "severity_name": name, "severity": number}
    [event] = CrowdStrikeDetector().parse(json.dumps(alert).encode())
    assert (event.severity, event.vendor_severity) == (expected, vendor)


@pytest.mark.parametrize(
    ("score", "expected"),
    [
        (0.5, "low"),
        (4, "medium"),
        (6.9, "medium"),
        (7.0, "high"),
        (9.1, "critical"),
        (45, "medium"),  # the Incidents API's 0–100 form: 4.5
    ],
)
def test_crowdscore_bands(score: float, expected: str) -> None:
    envelope = {
        "metadata": {"eventType": "IncidentSummaryEvent", "eventCreationTime": 1772546700000},
        "event": {"IncidentID": "inc:1", "FineScore": score},
    }
    [event] = CrowdStrikeDetector().parse(json.dumps(envelope).encode())
    assert (event.severity, event.vendor_severity) == (expected, str(score))


def test_an_alert_without_id_gets_a_stable_fingerprint() -> None:
    body = b'{"cid": "c1", "product": "epp", "name": "CustomIOAWinMedium", "severity": 50}'
    [first] = CrowdStrikeDetector().parse(body)
    [second] = CrowdStrikeDetector().parse(body)
    assert first.external_id.startswith("sha256:") and first.external_id == second.external_id
    assert first.title == "CustomIOAWinMedium"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b'{"meta": {}, "resources": [], "errors": []}', "holds no alerts"),
        (b'{"meta": {}, "resources": null, "errors": []}', "holds no alerts"),
        (b'{"resources": {"id": "x"}}', "resources is not a list"),
        (
            b'{"metadata": {"eventType": "DetectionSummaryEvent"}, "event": {}}',
            "no id, name or description",
        ),
        (
            b'{"metadata": {"eventType": "DetectionSummaryEvent"}, "event": "x"}',
            "'event' is not an object",
        ),
        (
            b'{"status": "new", "severity": 70}',
            r"not a CrowdStrike Falcon alert: expected an Event Streams event \(metadata"
            r"\.eventType and event\), an Alerts API alert \(composite_id, or cid with "
            r"aggregate_id, pattern_id or product\) or a Detects API detection "
            r"\(detection_id with behaviors\)",
        ),
        (b"[1, 2]", "alert 0 is not a JSON object"),
    ],
)
def test_what_is_not_an_alert_is_a_parse_error(body: bytes, reason: str) -> None:
    with pytest.raises(ParseError, match=reason):
        CrowdStrikeDetector().parse(body)


def test_registered_by_name() -> None:
    assert isinstance(detectors.get("crowdstrike")(), CrowdStrikeDetector)


def test_stream_events_that_are_not_alerts_are_skipped_with_a_reason() -> None:
    body = (
        b'{"metadata": {"eventType": "UserActivityAuditEvent", "offset": 1}, "event": {}}\n'
        b'{"metadata": {"eventType": "AuthActivityAuditEvent", "offset": 2}, "event": {}}\n'
        b'{"metadata": {"eventType": "UserActivityAuditEvent", "offset": 3}, "event": {}}\n'
    )
    events = CrowdStrikeDetector().parse(body)
    assert list(events) == []
    assert events.skipped == {  # type: ignore[attr-defined]
        "Falcon stream event 'UserActivityAuditEvent': not an alert": 2,
        "Falcon stream event 'AuthActivityAuditEvent': not an alert": 1,
    }


def test_an_epp_stream_detection_with_every_nested_record() -> None:
    [event] = parse("stream_epp_full.json")
    folder = "\\Device\\HarddiskVolume3\\Users\\bob\\AppData\\Roaming"
    assert summary(event) == {
        "external_id": f"{CID}:ind:0f1e2d3c4b5a69788796a5b4c3d2e1f0:40123987654-10356-90311",
        "title": "RansomwareFileModification: A process modified a large number of files, "
        "consistent with ransomware.",
        "severity": "critical",
        "vendor_severity": "Critical",
        "occurred_at": datetime(2026, 3, 3, 17, 46, 40, tzinfo=UTC),
        "users": ["CORP\\bob", "bob@corp.example.com"],  # LogonDomain\UserName, UserPrincipal
        "hosts": ["HR-WS-11"],
        "ips": ["10.20.9.44", "198.51.100.31", "203.0.113.210"],  # local, external, remote
        "src_ips": ["10.20.9.44"],
        "dst_ips": ["203.0.113.210"],
        "hashes": [
            "b3d5f7a9c1e3b5d7f9a1c3e5b7d9f1a3c5e7b9d1f3a5c7e9b1d3f5a7c9e1b3d5",
            "c4e6a8b0d2f4a6c8e0b2d4f6a8c0e2b4",
        ],
        "domains": ["pay.ransom-example.onion.example"],  # DnsRequests
        "processes": ["svch0st.exe", "explorer.exe"],
        "files": [
            f"{folder}\\svch0st.exe",
            "\\Device\\HarddiskVolume3\\Windows\\explorer.exe",
            f"{folder}\\dropper.dll",  # ExecutablesWritten
        ],
    }


def test_a_detection_of_the_retired_detects_api() -> None:
    [event] = parse("detects_v1.json")
    assert summary(event) == {
        "external_id": "ldt:0f1e2d3c4b5a69788796a5b4c3d2e1f0:38654705700",
        "title": "RundllSuspiciousDll: Rundll32 loaded a DLL from a user-writable folder.",
        "severity": "high",
        "vendor_severity": "High",
        "occurred_at": datetime(2026, 3, 2, 10, 15, 21, tzinfo=UTC),  # first_behavior
        "users": ["kim"],
        "hosts": ["SALES-LT-12"],
        "ips": ["10.20.6.12", "198.51.100.73"],  # the device's local and external address
        "hashes": [
            "5a7c9e1b3d5f7a9c1e3b5d7f9a1c3e5b7d9f1a3c5e7b9d1f3a5c7e9b1d3f5a7c",
            "6b8d0f2a4c6e8b0d2f4a6c8e0b2d4f6a",
            "7c9e1b3d5f7a9c1e3b5d7f9a1c3e5b7d9f1a3c5e7b9d1f3a5c7e9b1d3f5a7c9e",  # the parent's
            "8d0f2a4c6e8b0d2f4a6c8e0b2d4f6a8c",
        ],
        "domains": ["cdn.evil-updates.example"],  # the behavior's indicator
        "processes": ["rundll32.exe"],
        "files": ["\\Device\\HarddiskVolume3\\Windows\\System32\\rundll32.exe"],
    }
