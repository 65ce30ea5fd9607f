"""Elastic Security detection alerts: Kibana webhook bodies, a search of the alerts index,
7.x signals."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from integrations.detectors.elastic import ElasticDetector
from pipeline.errors import ParseError
from pipeline.plugins import ParsedEvent, detectors
from tests.integrations.detectors.siem.expect import payload, summary


def parse(name: str) -> list[ParsedEvent]:
    return ElasticDetector().parse(payload("elastic", name))


def test_search_flattened() -> None:
    event_0, event_1 = parse("search_flattened.json")
    assert summary(event_0) == {
        "external_id": "4e1d0c9b8a7f6e5d4c3b2a1908f7e6d5c4b3a2918f7e6d5c4b3a291807f6e5d4",
        "title": "Potential SSH Brute Force Detected",
        "severity": "medium",
        "vendor_severity": "medium",
        "occurred_at": datetime(2026, 3, 4, 9, 6, 33, tzinfo=UTC),
        "users": ["root"],
        "hosts": ["bastion-1"],
        "ips": ["10.0.1.23", "198.51.100.44"],
        "src_ips": ["198.51.100.44"],
    }
    assert summary(event_1) == {
        "external_id": "9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b",
        "title": "DNS Query to Known Mining Pool",
        "severity": "low",
        "vendor_severity": "21",
        "occurred_at": datetime(2026, 3, 4, 10, 0, 2, tzinfo=UTC),
        "users": ["svc_build"],
        "hosts": ["build-07"],
        "hashes": ["5b2e8d1c4a7f0e3b6d9c2a5f8e1b4d7c0a3f6e9b2d5c8a1f4e7b0d3c6a9f2e5b"],
        "domains": ["xmr.pool.example-mining.com"],
        "files": ["/tmp/.cache/xmrig"],
    }


def test_signal_7x() -> None:
    [event] = parse("signal_7x.json")
    assert summary(event) == {
        "external_id": "sha256:ea7219444b29c89ccebf61a63cc037847db70b0242617610160c440003c68bd1",
        "title": "Password Spraying via Kerberos",
        "severity": "critical",
        "vendor_severity": "critical",
        "occurred_at": datetime(2026, 3, 5, 11, 30, 9, 114000, tzinfo=UTC),
        "users": ["CORP\\administrator", "krbtgt"],
        "hosts": ["dc01"],
        "ips": ["10.30.9.77", "10.30.0.10"],
        "src_ips": ["10.30.9.77"],
        "dst_ips": ["10.30.0.10"],
    }


def test_webhook_context_alerts() -> None:
    [event] = parse("webhook_context_alerts.json")
    assert summary(event) == {
        "external_id": "b6f3c7e2a1d94e0c8f7b6a5d4c3b2a19e8f7d6c5b4a39281706f5e4d3c2b1a09",
        "title": "Suspicious PowerShell Download",
        "severity": "high",
        "vendor_severity": "high",
        "occurred_at": datetime(2026, 3, 3, 14, 2, 11, 402000, tzinfo=UTC),
        "users": ["CORP\\alice"],
        "hosts": ["FIN-LT-0042"],
        "ips": ["10.20.4.17", "fe80::4d2:1ff:fe3c:9a1", "192.0.2.66"],
        "hashes": [
            "de96a6e69944335375dc1ac238336066889d9ffc7d73628ef4fe1b1b160ab32c",
            "7353f60b1739074eb17c5f4dddefe239",
        ],
        "domains": ["cdn.badstuff.example"],
        "urls": ["http://cdn.badstuff.example/stage2.ps1"],
        "src_ips": ["10.20.4.17"],
        "dst_ips": ["192.0.2.66"],
        "processes": ["powershell.exe", "cmd.exe"],
        "files": [
            "C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe",
            "C:\\Windows\\System32\\cmd.exe",
        ],
    }


def test_registered_by_name() -> None:
    assert isinstance(detectors.get("elastic")(), ElasticDetector)


def test_a_foreign_payload_is_refused_naming_what_was_expected() -> None:
    with pytest.raises(ParseError) as refused:
        ElasticDetector().parse(b'{"id": "x", "title": "t", "severity": "high"}')
    assert str(refused.value) == (
        "elastic: not an Elastic Security alert: expected a detection alert "
        "(kibana.alert.rule.name or kibana.alert.uuid; signal.rule in 7.x)"
    )


def test_a_search_that_found_nothing_holds_no_alerts() -> None:
    with pytest.raises(ParseError, match="elastic: the delivery holds no alerts"):
        ElasticDetector().parse(b'{"hits": {"total": {"value": 0}, "hits": []}}')


def test_a_hit_without_source_is_a_parse_error() -> None:
    with pytest.raises(ParseError, match="a search hit without a _source"):
        ElasticDetector().parse(b'{"hits": {"hits": [{"_id": "x"}]}}')


def test_the_risk_score_gives_the_severity_when_no_word_does() -> None:
    body = b'{"kibana.alert.rule.name": "r", "kibana.alert.risk_score": 99}'
    [event] = ElasticDetector().parse(body)
    assert (event.severity, event.vendor_severity) == ("critical", "99")
