"""PAN-OS THREAT logs in the syslog CSV format, with and without syslog headers."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from integrations.detectors.panos import PanOSDetector
from pipeline.errors import ConfigError, ParseError
from pipeline.plugins import detectors
from tests.integrations.detectors.network.expect import payload, summary


def parse(name: str, timezone: str = "UTC") -> list:
    return PanOSDetector(timezone=timezone).parse(payload("panos", name))


def test_url_log_with_a_quoted_comma_behind_a_bsd_header() -> None:
    body = payload("panos", "threat_url.log")
    [event] = PanOSDetector(timezone="Europe/Paris").parse(body)
    assert summary(event) == {
        "external_id": "013201012345:7294836044",
        "title": "PAN-OS url: shop.example.com/cart?items=1,2,3&ref=mail (malware)",
        "severity": "informational",
        "vendor_severity": "informational",
        "occurred_at": datetime(2026, 3, 5, 13, 19, 2, tzinfo=UTC),  # 14:19:02 in Paris
        "users": ["corp\\jsmith"],
        "ips": ["10.1.4.22", "203.0.113.77"],  # the NAT source is the firewall's: an observer
        "src_ips": ["10.1.4.22"],
        "dst_ips": ["203.0.113.77"],
        "domains": ["shop.example.com"],
        "urls": ["shop.example.com/cart?items=1,2,3&ref=mail"],
        "observers": ["PA-3220-edge", "198.51.100.2"],
    }
    assert event.raw == body.decode().strip()


def test_a_mixed_syslog_stream() -> None:
    vulnerability, virus, wildfire, spyware = parse("threats.log", "Europe/Paris")
    assert summary(vulnerability) == {  # RFC 5424 header, IPv6, PAN-OS 10.2 fields
        "external_id": "013201012345:7294836102",
        "title": "PAN-OS vulnerability: Apache Log4j Remote Code Execution Vulnerability",
        "severity": "critical",
        "vendor_severity": "critical",
        "occurred_at": datetime(2026, 3, 5, 13, 20, 30, 812000, tzinfo=UTC),  # high-res
        "hosts": ["web-dmz-01"],
        "ips": ["2001:db8:bad::7", "2001:db8:10::80"],
        "src_ips": ["2001:db8:bad::7"],
        "dst_ips": ["2001:db8:10::80"],
        "domains": ["login.example.com"],
        "urls": ["login.example.com/cgi-bin/login.php"],
        "observers": ["PA-3220-edge"],
    }
    assert summary(virus) == {  # no header at all
        "external_id": "013201012345:7294836177",
        "title": "PAN-OS virus: Virus/Win32.WGeneric.ezxmpf",
        "severity": "medium",
        "vendor_severity": "medium",
        "occurred_at": datetime(2026, 3, 5, 13, 21, 7, 514000, tzinfo=UTC),
        "users": ["corp\\jsmith"],
        "hosts": ["WS-JSMITH-01"],
        "ips": ["10.1.4.22", "203.0.113.50"],
        "src_ips": ["10.1.4.22"],
        "dst_ips": ["203.0.113.50"],
        "files": ["invoice_0305.zip"],
        "observers": ["PA-3220-edge", "198.51.100.2"],
    }
    digest = "0f3d2b6e9a8c7b5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d"
    assert summary(wildfire) == {
        "external_id": "013201012345:7294836233",
        "title": "PAN-OS wildfire: Microsoft Word Document",
        "severity": "high",
        "vendor_severity": "high",
        "occurred_at": datetime(2026, 3, 5, 13, 25, 40, 90000, tzinfo=UTC),
        "users": ["alice@corp.example.com"],
        "ips": ["198.51.100.90", "10.1.2.25"],
        "src_ips": ["198.51.100.90"],
        "dst_ips": ["10.1.2.25"],
        "hashes": [digest],
        "files": ["Q1-report.docm"],
        "observers": ["PA-3220-edge"],
    }
    assert wildfire.observables.hash_types == {digest: "sha256"}
    assert summary(spyware) == {  # no high-resolution time: the generated time, local
        "external_id": "013201012345:7294836290",
        "title": "PAN-OS spyware: generic:evil-c2.example.net",
        "severity": "medium",
        "vendor_severity": "medium",
        "occurred_at": datetime(2026, 3, 5, 13, 27, 13, tzinfo=UTC),
        "users": ["corp\\mlopez"],
        "ips": ["10.1.7.33", "10.1.0.53"],
        "src_ips": ["10.1.7.33"],
        "dst_ips": ["10.1.0.53"],
        "domains": ["evil-c2.example.net"],
        "observers": ["PA-3220-edge"],
    }


def test_strata_logging_service_forwarding() -> None:
    [event] = parse("strata.log")
    assert summary(event) == {
        "external_id": "007051000113358:400993366",
        "title": "PAN-OS wildfire: payroll, march.xlsm",
        "severity": "low",
        "vendor_severity": "Low",
        "occurred_at": datetime(2026, 3, 5, 13, 40, 0, 306000, tzinfo=UTC),
        "users": ["corp\\o'brien", 'corp\\svc "backup"'],
        "hosts": ["pan-603", "pan-121"],
        "ips": ["2001:db8:44:1::20", "2001:db8:ffff::9"],
        "src_ips": ["2001:db8:44:1::20"],
        "dst_ips": ["2001:db8:ffff::9"],
        "hashes": ["885e78ce802e42561193c1d76bd3a7ac3e2fec291508e6ba75d1e10ddb522869"],
        "files": ["payroll, march.xlsm"],
        "observers": ["PA-VM"],
    }


def test_pan_os_6_format_without_sequence_number() -> None:
    body = payload("panos", "legacy_61.log")
    [event] = PanOSDetector(timezone="Europe/Paris").parse(body)
    assert summary(event) | {"external_id": None} == {
        "external_id": None,
        "title": "PAN-OS spyware: Zeus Command And Control Traffic",
        "severity": "critical",
        "vendor_severity": "critical",
        "occurred_at": datetime(2015, 4, 23, 8, 13, 52, tzinfo=UTC),  # CEST, +02:00
        "ips": ["10.0.0.5", "198.51.100.9"],
        "src_ips": ["10.0.0.5"],
        "dst_ips": ["198.51.100.9"],
    }
    assert event.external_id.startswith("sha256:")
    assert PanOSDetector().parse(body)[0].external_id == event.external_id


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("traffic_only.log", "panos: the delivery holds no THREAT log"),
        ("truncated.log", "panos: line 1: a THREAT log of 18 fields"),
    ],
)
def test_deliveries_it_cannot_use(name: str, reason: str) -> None:
    with pytest.raises(ParseError, match=reason):
        parse(name)


def test_other_lines_in_a_delivery_are_skipped() -> None:
    noise = b"Mar  5 14:00:00 fw-1 sshd[1]: Accepted publickey for admin\n\n"
    body = noise + payload("panos", "threat_url.log") + b"not a log line\n"
    assert [e.external_id for e in PanOSDetector().parse(body)] == ["013201012345:7294836044"]


def test_an_unknown_time_zone_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown time zone"):
        PanOSDetector(timezone="Mars/Olympus_Mons")


def test_registered_by_name() -> None:
    detector = detectors.get("panos")()
    assert isinstance(detector, PanOSDetector) and detector.content_types == ("text/plain",)


def test_a_byte_order_mark_before_the_first_line_is_ignored() -> None:
    body = b"\xef\xbb\xbf" + payload("panos", "threat_url.log")
    assert [e.external_id for e in PanOSDetector().parse(body)] == ["013201012345:7294836044"]


def test_a_log_without_sequence_number_has_one_id_whichever_relay_sent_it() -> None:
    log = payload("panos", "legacy_61.log")
    first = PanOSDetector().parse(b"<14>Apr 23 10:13:52 relay-a " + log)[0]
    second = PanOSDetector().parse(b"<14>Apr 23 10:13:53 relay-b " + log)[0]
    assert first.external_id == second.external_id == PanOSDetector().parse(log)[0].external_id


def test_times_out_of_range_are_absent() -> None:
    log = payload("panos", "legacy_61.log").decode()
    log = log.replace("2015/04/23 10:13:52", "0001/01/01 00:00:00")  # before year 1 in UTC
    [event] = PanOSDetector(timezone="Europe/Paris").parse(log.encode())
    assert event.occurred_at is None
    assert event.title == "PAN-OS spyware: Zeus Command And Control Traffic"


def test_cef_and_leef_layouts_behind_syslog_headers() -> None:
    body = payload("panos", "cef_leef.log")
    virus, dns = PanOSDetector(timezone="Europe/Paris").parse(body)  # the TRAFFIC log is not
    assert summary(virus) == {
        "external_id": "013201012345:7294836177",  # the CSV layout's id for the same log
        "title": "PAN-OS virus: Virus/Win32.WGeneric.ezxmpf",
        "severity": "high",
        "vendor_severity": "4",
        "occurred_at": datetime(2026, 3, 5, 13, 21, 7, tzinfo=UTC),
        "users": ["corp\\jsmith"],
        "ips": ["10.1.4.22", "203.0.113.50"],  # the NAT address and the firewall: observers
        "src_ips": ["10.1.4.22"],
        "dst_ips": ["203.0.113.50"],
        "hashes": ["9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"],
        "files": ["invoice_0305.zip"],
        "observers": ["PA-3220-edge", "198.51.100.2"],
    }
    assert summary(dns) == {
        "external_id": "013201012345:7294837001",
        "title": "PAN-OS spyware: Suspicious DNS Query (generic:c2.badstuff.example)",
        "severity": "high",
        "vendor_severity": "high",
        "occurred_at": datetime(2026, 3, 5, 13, 30, 11, tzinfo=UTC),
        "users": ["corp\\mlee"],
        "hosts": ["WS-MLEE-02"],
        "ips": ["10.1.7.33", "198.51.100.66"],
        "src_ips": ["10.1.7.33"],
        "dst_ips": ["198.51.100.66"],
        "domains": ["c2.badstuff.example"],
        "observers": ["PA-3220-edge", "198.51.100.2"],
    }


def test_a_leef_log_with_tabs_and_only_the_local_receive_time() -> None:
    line = (
        "LEEF:1.0|Palo Alto Networks|PAN-OS Syslog Integration|11.1.0|9999|"
        "ReceiveTime=2026/03/05 14:40:00\tSerialNumber=013201012345\tcat=THREAT\t"
        "Subtype=url\tsrc=10.1.9.9\tdst=192.0.2.80\tSeverity=informational\t"
        "sequence=7294839000\tMiscellaneous=www.badstuff.example/drop/x.exe"
    )
    [event] = PanOSDetector(timezone="Europe/Paris").parse(line.encode())
    assert summary(event) == {
        "external_id": "013201012345:7294839000",
        "title": "PAN-OS url: www.badstuff.example/drop/x.exe",
        "severity": "informational",
        "vendor_severity": "informational",
        "occurred_at": datetime(2026, 3, 5, 13, 40, tzinfo=UTC),  # Paris local time
        "ips": ["10.1.9.9", "192.0.2.80"],
        "src_ips": ["10.1.9.9"],
        "dst_ips": ["192.0.2.80"],
        "domains": ["www.badstuff.example"],
        "urls": ["www.badstuff.example/drop/x.exe"],
    }
