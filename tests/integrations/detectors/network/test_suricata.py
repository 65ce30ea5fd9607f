"""Suricata EVE alerts, from payloads shaped as Suricata 6, 7 and 8 write them."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from integrations.detectors.common import fingerprint
from integrations.detectors.suricata import SuricataDetector
from pipeline.errors import ParseError
from pipeline.plugins import detectors
from tests.integrations.detectors.network.expect import payload, summary

MD5 = "6e9a37f8e1c1d8f5a3c2b7d4e9f0a1b2"
SHA1 = "0f4bd6e1c3a2b59876d4e3f2a1b0c9d8e7f6a5b4"
SHA256 = "2b1d9f3c8e7a6b5d4c3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c"


def parse(name: str) -> list:
    return SuricataDetector().parse(payload("suricata", name))


def test_http_alert_with_file_hashes() -> None:
    body = payload("suricata", "alert_http.json")
    [event] = SuricataDetector().parse(body)
    assert summary(event) == {
        "external_id": "1176435012366215:2019714:2026-03-05T14:07:21.448126+0100",
        "title": "ET INFO Terse Request for .exe - Likely Hostile",
        "severity": "medium",
        "vendor_severity": "2",
        "occurred_at": datetime(2026, 3, 5, 13, 7, 21, 448126, tzinfo=UTC),
        "ips": ["10.20.30.41", "203.0.113.80"],
        "src_ips": ["10.20.30.41"],
        "dst_ips": ["203.0.113.80"],
        "domains": ["updates.example-cdn.net"],
        "urls": ["http://updates.example-cdn.net:8080/dl/setup.exe"],
        "hashes": [MD5, SHA1, SHA256],
        "files": ["/dl/setup.exe"],
        "observers": ["ids-sensor-01"],
    }
    assert event.observables.hash_types == {MD5: "md5", SHA1: "sha1", SHA256: "sha256"}
    assert event.raw == body.decode()  # one alert on its own: kept byte for byte
    assert event.occurred_at is not None and event.occurred_at.utcoffset() is not None


def test_eve_log_keeps_only_the_alerts() -> None:
    body = payload("suricata", "eve.jsonl")
    dns, tls, malformed = SuricataDetector().parse(body)
    assert summary(dns) == {
        "external_id": "912387466153901:2038491:2026-03-05T14:09:02.113954+0000",
        "title": "ET MALWARE Dridex CnC Domain in DNS Lookup",
        "severity": "high",
        "vendor_severity": "1",
        "occurred_at": datetime(2026, 3, 5, 14, 9, 2, 113954, tzinfo=UTC),
        "ips": ["10.20.30.55", "10.20.0.2"],
        "src_ips": ["10.20.30.55"],
        "dst_ips": ["10.20.0.2"],
        "domains": ["adv.epostoday.uk"],  # dns.query[] as Suricata 7 logs it
    }
    assert summary(tls) == {
        "external_id": "2035519735113064:2035465:2026-03-05T14:10:17.665210+0000",
        "title": "ET POLICY Observed Tor Project Domain in TLS SNI",
        "severity": "low",
        "vendor_severity": "3",
        "occurred_at": datetime(2026, 3, 5, 14, 10, 17, 665210, tzinfo=UTC),
        "ips": ["2001:db8:4:20::1e", "2001:db8:ffff::25"],
        "src_ips": ["2001:db8:4:20::1e"],
        "dst_ips": ["2001:db8:ffff::25"],
        "domains": ["www.torproject.org"],
    }
    # Suricata 8's DNS v3 "queries"; a name without a dot is no domain
    assert summary(malformed) == {
        "external_id": "77301922583014:2240002:2026-03-05T14:11:03.517733+0000",
        "title": "SURICATA DNS malformed request data",
        "severity": "informational",
        "vendor_severity": "4",
        "occurred_at": datetime(2026, 3, 5, 14, 11, 3, 517733, tzinfo=UTC),
        "ips": ["10.20.30.62", "10.20.0.2"],
        "src_ips": ["10.20.30.62"],
        "dst_ips": ["10.20.0.2"],
        "domains": ["c2.exfil-example.org"],
    }
    lines = [json.loads(line) for line in body.decode().splitlines()]
    alerts = [record for record in lines if record["event_type"] == "alert"]
    assert [json.loads(event.raw) for event in (dns, tls, malformed)] == alerts


def test_array_with_nulls_and_an_alert_without_flow() -> None:
    body = payload("suricata", "batch.json")
    icmp, sqli = SuricataDetector().parse(body)
    record = json.loads(body)[0]
    assert summary(icmp) == {
        "external_id": fingerprint(record),  # read from a pcap: no flow_id
        "title": "Suricata signature 2100366",
        "severity": "medium",
        "vendor_severity": None,
        "occurred_at": datetime(2026, 3, 5, 15, 0, tzinfo=UTC),
        "ips": ["198.51.100.23", "10.20.30.9"],
        "src_ips": ["198.51.100.23"],
        "dst_ips": ["10.20.30.9"],
    }
    assert summary(sqli) == {
        "external_id": "401122774002911:2006445:2026-03-05T15:00:01.250000+0000",
        "title": "ET WEB_SERVER Possible SQL Injection Attempt SELECT FROM",
        "severity": "high",
        "vendor_severity": "1",
        "occurred_at": datetime(2026, 3, 5, 15, 0, 1, 250000, tzinfo=UTC),
        "ips": ["10.20.30.9", "198.51.100.23"],  # the Host header is an address
        "src_ips": ["198.51.100.23"],
        "dst_ips": ["10.20.30.9"],
        "urls": ["http://10.20.30.9/index.php?id=1+UNION+SELECT+password+FROM+users"],
        "files": ["index.php"],  # fileinfo md5 "N/A" is no hash
    }


def test_eve_through_syslog_is_read_from_the_json() -> None:
    [event] = parse("syslog.log")
    assert summary(event) == {
        "external_id": "1455207120113777:2025644:2026-03-05T14:12:44.190722+0000",
        "title": "ET POLICY Possible Metasploit Payload Common Construct Bind_API (from server)",
        "severity": "high",
        "vendor_severity": "1",
        "occurred_at": datetime(2026, 3, 5, 14, 12, 44, 190722, tzinfo=UTC),
        "ips": ["10.20.30.77", "192.0.2.200"],
        "src_ips": ["10.20.30.77"],
        "dst_ips": ["192.0.2.200"],
    }
    assert event.raw.startswith('{"timestamp":"2026-03-05T14:12:44.190722+0000"')


def test_the_target_keyword_decides_the_roles() -> None:
    # the response packet matched: the flow runs server → client, the rule says who
    record = {
        "timestamp": "2026-03-05T16:00:00.000000+0000",
        "flow_id": 5,
        "event_type": "alert",
        "src_ip": "192.0.2.9",
        "dest_ip": "10.0.0.5",
        "alert": {
            "signature_id": 7,
            "signature": "response",
            "severity": 2,
            "source": {"ip": "10.0.0.5", "port": 5000},
            "target": {"ip": "192.0.2.9", "port": 80},
        },
    }
    [event] = SuricataDetector().parse(json.dumps(record).encode())
    assert event.observables.src_ips == ["10.0.0.5"]
    assert event.observables.dst_ips == ["192.0.2.9"]


def test_a_delivery_without_alerts_is_accepted_and_skipped_with_reasons() -> None:
    events = parse("no_alerts.jsonl")
    assert list(events) == []
    assert events.skipped == {  # type: ignore[attr-defined]
        "EVE 'flow' record: not an alert": 1,
        "EVE 'stats' record: not an alert": 1,
    }


def test_a_record_that_is_no_eve_record_is_refused_naming_the_types() -> None:
    with pytest.raises(ParseError) as caught:
        SuricataDetector().parse(b'{"event_type": "Threat Detected", "id": 1}')
    message = str(caught.value)
    assert message.startswith("suricata: not a Suricata EVE alert: expected an EVE record (an ")
    assert "event_type alert, anomaly, arp," in message and message.endswith("websocket)")


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b'{"event_type": "alert", "alert": "x"}', "has no 'alert' object"),
        (b'{"event_type": "alert"}', "has no 'alert' object"),
        (b'{"event_type": "alert", "alert": {}}\n{"event_type": "al', "line 2 is not valid JSON"),
        (b"", "body is empty"),
    ],
)
def test_broken_deliveries_raise_parse_error(body: bytes, reason: str) -> None:
    with pytest.raises(ParseError, match=reason):
        SuricataDetector().parse(body)


@pytest.mark.parametrize(
    ("priority", "expected"),
    [
        (1, ("high", "1")),
        (2, ("medium", "2")),
        (3, ("low", "3")),
        (4, ("informational", "4")),
        (255, ("informational", "255")),
        (None, ("medium", None)),
        ("urgent", ("medium", "urgent")),
    ],
)
def test_priority_becomes_severity(priority: object, expected: tuple) -> None:
    record = {"event_type": "alert", "alert": {"signature_id": 1, "severity": priority}}
    [event] = SuricataDetector().parse(json.dumps(record).encode())
    assert (event.severity, event.vendor_severity) == expected


def test_same_alert_has_the_same_id_alone_or_in_a_batch() -> None:
    body = payload("suricata", "alert_http.json")
    [alone] = SuricataDetector().parse(body)
    batch = b"[" + body + b"," + payload("suricata", "batch.json")[1:]
    assert SuricataDetector().parse(batch)[0].external_id == alone.external_id


def test_registered_by_name() -> None:
    detector = detectors.get("suricata")()
    assert isinstance(detector, SuricataDetector) and detector.name == "suricata"
