"""Splunk: the webhook alert action's body and a search's results (Enterprise Security notables)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from integrations.detectors.splunk import SplunkDetector
from pipeline.errors import ParseError
from pipeline.plugins import ParsedEvent, detectors
from tests.integrations.detectors.siem.expect import payload, summary


def parse(name: str) -> list[ParsedEvent]:
    return SplunkDetector().parse(payload("splunk", name))


def test_notable_results() -> None:
    event_0, event_1, event_2 = parse("notable_results.json")
    assert summary(event_0) == {
        "external_id": "6D7B1A2C-3E4F-4A5B-9C6D-7E8F9A0B1C2D"
        "@@notable@@5f3a9c0e8b1d2f4a6c8e0b2d4f6a8c0e",
        "title": "Malware detected on FIN-LT-0042",
        "severity": "critical",
        "vendor_severity": "critical",
        "occurred_at": datetime(2026, 3, 3, 14, 2, 11, tzinfo=UTC),
        "users": ["CORP\\alice"],
        "hosts": ["FIN-LT-0042"],
        "ips": ["10.20.4.17"],
        "hashes": ["a3f1c5e7b9d2f4a6c8e0b2d4f6a8c0e2b4d6f8a0c2e4b6d8f0a2c4e6b8d0f2a4"],
        "dst_ips": ["10.20.4.17"],
        "processes": ["powershell.exe", "cmd.exe"],
        "files": ["C:\\Users\\alice\\AppData\\Local\\Temp\\stage2.ps1"],
    }
    assert summary(event_1) == {
        "external_id": "6D7B1A2C-3E4F-4A5B-9C6D-7E8F9A0B1C2D"
        "@@notable@@77aa1b2c3d4e5f60718293a4b5c6d7e8",
        "title": "Web Proxy - Suspicious Download",
        "severity": "medium",
        "vendor_severity": "medium",
        "occurred_at": datetime(2026, 3, 3, 15, 40, 44, tzinfo=UTC),
        "users": ["bob@corp.example.com"],
        "hosts": ["cdn.badstuff.example"],
        "ips": ["10.20.4.17", "10.20.4.18"],
        "domains": ["cdn.badstuff.example"],
        "urls": ["http://cdn.badstuff.example/payload.bin"],
        "src_ips": ["10.20.4.17", "10.20.4.18"],
    }
    assert summary(event_2) == {
        "external_id": "sha256:57553ec9c0c0f3e64b4509545e9a386932d004d0a74dce215be0479727a6c3ec",
        "title": "Threat - DNS Query To Known Bad Domain",
        "severity": "medium",
        "vendor_severity": None,
        "occurred_at": datetime(2026, 3, 3, 16, 23, 20, tzinfo=UTC),
        "hosts": ["dns-01"],
        "ips": ["10.30.9.77"],
        "domains": ["c2.badstuff.example"],
        "src_ips": ["10.30.9.77"],
    }


def test_webhook_alert() -> None:
    [event] = parse("webhook_alert.json")
    assert summary(event) == {
        "external_id": "sha256:8ca7ff1b6acfca908c133048beee9c02c56b2d8d2b946bab3ae6e8b30d7cece1",
        "title": "Excessive failed logins",
        "severity": "medium",
        "vendor_severity": None,
        "occurred_at": datetime(2026, 3, 3, 14, 2, tzinfo=UTC),
        "users": ["dmitri"],
        "hosts": ["bastion-01.corp.example"],
        "ips": ["198.51.100.23", "10.1.0.5"],
        "src_ips": ["198.51.100.23"],
        "dst_ips": ["10.1.0.5"],
    }


def test_registered_by_name() -> None:
    assert isinstance(detectors.get("splunk")(), SplunkDetector)


def test_a_foreign_payload_is_refused_naming_what_was_expected() -> None:
    with pytest.raises(ParseError) as refused:
        SplunkDetector().parse(b'{"id": "x", "title": "t", "severity": "high"}')
    assert str(refused.value) == (
        "splunk: not a Splunk alert: expected a webhook alert action body (sid and "
        "result) or search results (results with preview, init_offset or fields)"
    )


def test_a_result_without_urgency_takes_the_option() -> None:
    [event] = SplunkDetector(severity="high").parse(payload("splunk", "webhook_alert.json"))
    assert (event.severity, event.vendor_severity) == ("high", None)


def test_a_word_that_is_no_severity_takes_the_option() -> None:
    body = b'{"results": [{"rule_name": "r", "urgency": "severe"}], "preview": false}'
    [event] = SplunkDetector(severity="low").parse(body)
    assert (event.severity, event.vendor_severity) == ("low", "severe")


def test_the_same_trigger_twice_is_one_id() -> None:
    first = parse("webhook_alert.json")[0].external_id
    assert first == parse("webhook_alert.json")[0].external_id
    assert first.startswith("sha256:")


def test_results_that_are_not_a_list_are_a_parse_error() -> None:
    with pytest.raises(ParseError, match="splunk: results is not a list"):
        SplunkDetector().parse(b'{"preview": false, "results": {"a": 1}}')


def test_the_options_refuse_an_unknown_severity() -> None:
    with pytest.raises(ValueError, match="severity"):
        SplunkDetector.Options(severity="severe")  # type: ignore[arg-type]
