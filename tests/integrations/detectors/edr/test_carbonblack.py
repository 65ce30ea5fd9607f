"""Carbon Black Cloud alerts: the v7 search answer, single alerts, Data Forwarder lines."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from integrations.detectors.carbonblack import CarbonBlackDetector
from pipeline.errors import ParseError
from pipeline.plugins import ParsedEvent, detectors
from tests.integrations.detectors.edr.expect import payload, summary


def parse(name: str) -> list[ParsedEvent]:
    return CarbonBlackDetector().parse(payload("carbonblack", name))


def test_v7_search_answer_with_three_alert_types() -> None:
    analytics, watchlist, usb = parse("search_v7.json")
    assert summary(analytics) == {
        "external_id": "5b1f0e3c-7d2a-4c9e-8f61-2a3b4c5d6e7f",
        "title": "The application powershell.exe invoked another application (rundll32.exe) "
        "to dump credentials from lsass.exe.",
        "severity": "high",
        "vendor_severity": "8",
        "occurred_at": datetime(2026, 3, 7, 9, 20, 31, 774000, tzinfo=UTC),  # first event
        "users": ["dana@corp.example.com", "CORP\\dana"],
        "hosts": ["HR-WS-031"],  # device_name "CORP\\HR-WS-031"
        "ips": ["10.40.3.31", "203.0.113.61"],
        "hashes": [
            "b53f3c0cd32d7f20849850768da6431e5f876b7bfa61db0aa0700b02873393fa",
            "ef3179d498793bf4234f708d3be28633",
            "9785001b0dcf755eddb8af294a373c0b87b2498660f724e76c4d53f9c217c7a3",  # the parent's
            "2e5a8590cf6848968fc23de3fa1e25f1",
        ],
        "processes": ["rundll32.exe", "powershell.exe"],
        "files": ["c:\\windows\\system32\\rundll32.exe"],
    }
    assert summary(watchlist) == {
        "external_id": "8c2d3e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f",
        "title": 'Process certutil.exe was detected by the report "Defense Evasion - Certutil '
        'Download" in watchlist "Carbon Black Advanced Threats"',
        "severity": "critical",
        "vendor_severity": "10",
        "occurred_at": datetime(2026, 3, 7, 10, 3, 59, 145000, tzinfo=UTC),
        "users": ["svc_ci", "CORP\\svc_ci"],
        "hosts": ["build-agent-04"],
        "ips": ["10.40.8.4", "203.0.113.62"],
        "hashes": [
            "5f9a9b4c2e6c3d1a0b8e7f6d5c4b3a29180716253443526170809a8b7c6d5e4f",
            "b99d114b267ffd068c3289199b6df95a9f9e64872d6c2b666d63974bbce75bf2",  # cmd.exe's
        ],
        "processes": ["certutil.exe", "cmd.exe"],
        "files": ["c:\\windows\\system32\\certutil.exe"],
    }
    assert summary(usb) == {
        "external_id": "e1d2c3b4-a596-4877-8695-a4b3c2d1e0f9",
        "title": "Access attempted on unapproved blocked USB device SanDisk Cruzer Blade "
        "(SN: 4C530001220819109433). A Deny Policy Action was applied.",
        "severity": "medium",
        "vendor_severity": "3",
        "occurred_at": datetime(2026, 3, 7, 11, 46, 57, 611000, tzinfo=UTC),
        "users": ["dana@corp.example.com"],
        "hosts": ["HR-WS-031"],
        "ips": ["10.40.3.31"],
    }
    results = json.loads(payload("carbonblack", "search_v7.json"))["results"]
    assert json.loads(usb.raw) == results[2]


def test_container_runtime_egress_alert() -> None:
    body = payload("carbonblack", "container_runtime.json")
    [event] = CarbonBlackDetector().parse(body)
    assert summary(event) == {
        "external_id": "0a9b8c7d-6e5f-4a3b-9c2d-1e0f9a8b7c6d",
        "title": "Detected a connection to a public destination that isn't allowed for this scope",
        "severity": "high",
        "vendor_severity": "6",
        "occurred_at": datetime(2026, 3, 7, 12, 29, 2, 318000, tzinfo=UTC),
        "ips": ["10.244.3.17", "192.0.2.200"],
        "src_ips": ["10.244.3.17"],  # EGRESS: the pod calls out
        "dst_ips": ["192.0.2.200"],
        "domains": ["rev.badstuff.example"],
        "processes": ["KUBERNETES_RUNTIME_NODE_AGENT"],
    }
    assert event.raw == body.decode()


def test_data_forwarder_lines_with_empty_markers_and_v6_names() -> None:
    scan, ryuk = parse("forwarder.jsonl")
    assert summary(scan) == {
        "external_id": "3f4e5d6c-7b8a-4998-a7b6-c5d4e3f2a1b0",
        "title": "A port scan was detected from 10.40.9.15 against 41 ports of Ärztezimmer-PC.",
        "severity": "low",
        "vendor_severity": "2",
        # first_event_timestamp is "": the detection time stands in
        "occurred_at": datetime(2026, 3, 7, 13, 10, 41, 200000, tzinfo=UTC),
        "hosts": ["Ärztezimmer-PC"],  # SYSTEM, "-" and "N/A" are no user and no hash
        "ips": ["10.40.9.60", "10.40.9.15"],  # no connection_type: no roles
        "processes": ["ntoskrnl.exe"],
    }
    assert summary(ryuk) == {
        "external_id": "91c0b7a6-2f3e-4d5c-8b9a-0f1e2d3c4b5a",
        "title": "A known ransomware (Ryuk) was detected running.",
        "severity": "critical",
        "vendor_severity": "9",
        "occurred_at": datetime(2026, 3, 7, 13, 38, 12, 500000, tzinfo=UTC),  # v6 name
        "users": ["CORP\\ops.admin"],
        "hosts": ["fin-srv-02"],
        "ips": ["10.40.2.2"],
        "hashes": [
            "cc0a9e7cd7f4bd0f5e2b8c1d3a4f6e7b9c0d2e3f5a6b7c8d9e0f1a2b3c4d5e6f",
            "8d3f0a1b2c4e5d6f7a8b9c0d1e2f3a4b",
        ],
        "processes": ["r.exe"],
        "files": ["C:\\ProgramData\\r.exe"],
    }


def test_ingress_gives_the_remote_end_the_source_role() -> None:
    alert = {
        "id": "x",
        "type": "CONTAINER_RUNTIME",
        "reason": "r",
        "connection_type": "INTERNAL_INBOUND",
        "netconn_remote_ip": "10.244.9.9",
        "netconn_local_ip": "10.244.3.17",
    }
    [event] = CarbonBlackDetector().parse(json.dumps(alert).encode())
    assert (event.observables.src_ips, event.observables.dst_ips) == (
        ["10.244.9.9"],
        ["10.244.3.17"],
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1, "low"),
        (2, "low"),
        (3, "medium"),
        (5, "medium"),
        (6, "high"),
        (8, "high"),
        (9, "critical"),
        (10, "critical"),
        (None, "medium"),
    ],
)
def test_severity_bands(value: object, expected: str) -> None:
    alert = {"id": "x", "type": "CB_ANALYTICS", "reason": "r", "severity": value}
    [event] = CarbonBlackDetector().parse(json.dumps(alert).encode())
    assert event.severity == expected
    assert event.vendor_severity == (None if value is None else str(value))


def test_an_alert_without_id_gets_a_stable_fingerprint() -> None:
    body = b'{"type": "WATCHLIST", "reason": "Hit", "severity": 4}'
    [first] = CarbonBlackDetector().parse(body)
    [second] = CarbonBlackDetector().parse(body)
    assert first.external_id.startswith("sha256:") and first.external_id == second.external_id


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b'{"results": [], "num_found": 0, "num_available": 0}', "holds no alerts"),
        (b'{"results": {"id": "x"}}', "results is not a list"),
        (
            b'{"success": false, "message": "Unauthorized"}',
            "not a Carbon Black Cloud alert: expected an alert with org_key or a type of "
            "CB_ANALYTICS, WATCHLIST",
        ),
    ],
)
def test_what_is_not_an_alert_is_a_parse_error(body: bytes, reason: str) -> None:
    with pytest.raises(ParseError, match=reason):
        CarbonBlackDetector().parse(body)


def test_registered_by_name() -> None:
    assert isinstance(detectors.get("carbonblack")(), CarbonBlackDetector)


def test_an_over_long_id_is_kept_whole_for_ingest_to_fit() -> None:
    """Ingest turns an id past the column's 255 characters into its digest, the same
    for every redelivery; the parser must not replace it with something that changes
    when the alert does (a fingerprint of the whole record)."""
    long_id = "x" * 300
    first = {"id": long_id, "org_key": "7DESJ9GN", "reason": "r", "workflow": {"status": "OPEN"}}
    second = {**first, "workflow": {"status": "CLOSED"}}
    parsed = [CarbonBlackDetector().parse(json.dumps(a).encode()) for a in (first, second)]
    ids = [events[0].external_id for events in parsed]
    assert ids == [long_id, long_id]
