"""Amazon GuardDuty findings in the envelopes AWS delivers them in."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from integrations.detectors.guardduty import GuardDutyDetector, camel
from pipeline.errors import ParseError
from pipeline.plugins import detectors
from tests.integrations.detectors.network.expect import payload, summary

SSH_BRUTEFORCE = {
    "external_id": "86c8a1b2e7f34f3a9d3c2b1a0f9e8d7c",
    "title": "198.51.100.44 is performing SSH brute force attacks against i-0a1b2c3d4e5f60718.",
    "severity": "low",
    "vendor_severity": "2",
    "occurred_at": datetime(2026, 3, 4, 8, 57, 9, tzinfo=UTC),  # service.eventFirstSeen
    "hosts": ["i-0a1b2c3d4e5f60718"],
    "ips": ["10.0.1.23", "203.0.113.10", "198.51.100.44"],  # private and public, then remote
    "src_ips": ["198.51.100.44"],  # INBOUND: the remote end attacks
    "dst_ips": ["10.0.1.23"],
}


def parse(name: str) -> list:
    return GuardDutyDetector().parse(payload("guardduty", name))


def test_eventbridge_finding_inbound_connection() -> None:
    [event] = parse("eventbridge_ssh_bruteforce.json")
    assert summary(event) == SSH_BRUTEFORCE
    envelope = json.loads(payload("guardduty", "eventbridge_ssh_bruteforce.json"))
    assert json.loads(event.raw) == envelope["detail"]


def test_bare_finding_outbound_connection() -> None:
    body = payload("guardduty", "finding_c2_outbound.json")
    [event] = GuardDutyDetector().parse(body)
    assert summary(event) == {
        "external_id": "f2c4e6a8b0d21e3f5a7c9e1b3d5f7a9c",
        "title": "EC2 instance i-099aa88bb77cc66dd is querying an IP address that is "
        "associated with a known command and control server.",
        "severity": "high",
        "vendor_severity": "8",
        "occurred_at": datetime(2026, 3, 4, 11, 20, 2, tzinfo=UTC),
        "hosts": ["i-099aa88bb77cc66dd"],
        "ips": ["10.0.8.51", "2001:db8:1200:7a00::1f", "192.0.2.66"],  # ipv6Addresses too
        "src_ips": ["10.0.8.51"],
        "dst_ips": ["192.0.2.66"],  # OUTBOUND: the instance calls the remote end
    }
    assert event.raw == body.decode()


def test_get_findings_from_the_cli_in_pascal_case() -> None:
    api_call, probe = parse("get_findings_cli.json")
    assert summary(api_call) == {
        "external_id": "0ab1cd2ef3a45b6c7d8e9f0a1b2c3d4e",
        "title": "API GetSecretValue was invoked from an IP address on a custom threat list.",
        "severity": "medium",
        "vendor_severity": "5.0",
        "occurred_at": datetime(2026, 3, 3, 22, 30, 51, tzinfo=UTC),
        "users": ["deploy-bot", "AIDAJQABLZS4A3QDU576Q"],  # the user name, the principal id
        "ips": ["203.0.113.200"],
        "src_ips": ["203.0.113.200"],
    }
    assert summary(probe) == {
        "external_id": "9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b",
        "title": "Unprotected port on EC2 instance i-0c0ffee0c0ffee001 is being probed.",
        "severity": "low",
        "vendor_severity": "2.0",
        "occurred_at": datetime(2026, 3, 3, 18, 44, tzinfo=UTC),
        "hosts": ["i-0c0ffee0c0ffee001"],
        "ips": ["10.0.4.17", "198.51.100.150", "192.0.2.14", "192.0.2.15"],
        "src_ips": ["192.0.2.14", "192.0.2.15"],
        "dst_ips": ["10.0.4.17"],
    }
    # the same findings spelled as the API spells them read the same
    findings = json.loads(payload("guardduty", "get_findings_cli.json"))["Findings"]
    again = GuardDutyDetector().parse(json.dumps({"findings": camel(findings)}).encode())
    assert [summary(e) for e in again] == [summary(api_call), summary(probe)]


def test_api_findings_dns_runtime_malware_and_attack_sequence() -> None:
    dns, shell, malware, sequence = parse("api_findings.json")
    assert summary(dns) == {
        "external_id": "3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f",
        "title": "EC2 instance i-0deadbeef0000cafe is querying a domain name that is "
        "associated with Bitcoin-related activity.",
        "severity": "high",
        "vendor_severity": "8.0",
        "occurred_at": datetime(2026, 3, 4, 2, 10, tzinfo=UTC),
        "hosts": ["i-0deadbeef0000cafe"],
        "ips": ["10.0.9.200"],
        "domains": ["xmr.pool.example-mining.com", "example-mining.com"],  # domainWithSuffix
    }
    sha = "e2d8c1a9b07f4c3e5d6a7b8c9d0e1f2a3b4c5d6e7f8a9b0c1d2e3f4a5b6c7d8e"
    assert summary(shell) == {
        "external_id": "5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d",
        "title": "A process executed a reverse shell on EC2 instance i-0fa11bacc0ffee123.",
        "severity": "high",
        "vendor_severity": "8.0",
        "occurred_at": datetime(2026, 3, 4, 3, 1, 5, 417000, tzinfo=UTC),  # createdAt
        "users": ["www-data"],  # the account the process ran as
        "hosts": ["i-0fa11bacc0ffee123"],
        "ips": ["10.0.12.9", "2001:db8:1200:7b00::9", "2001:db8:bad:c0de::4"],
        "src_ips": ["2001:db8:1200:7b00::9"],
        "dst_ips": ["2001:db8:bad:c0de::4"],
        "hashes": [sha],
        "processes": ["bash"],
        "files": ["/usr/bin/bash"],
    }
    assert shell.observables.hash_types == {sha: "sha256"}
    assert summary(malware) == {
        "external_id": "7d8e9f0a1b2c3d4e5f6a7b8c9d0e1f2a",
        "title": "Malicious file discovered on the EC2 instance i-0fa11bacc0ffee123.",
        "severity": "high",
        "vendor_severity": "8",
        "occurred_at": datetime(2026, 3, 4, 3, 20, tzinfo=UTC),
        "hosts": ["i-0fa11bacc0ffee123"],
        "hashes": ["9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"],
        "files": ["/var/www/html/uploads/.x/rs.sh"],
    }
    assert summary(sequence) == {
        "external_id": "1f2e3d4c5b6a79880716253443526170",
        "title": "Potential credential compromise of alice@example.com indicated by a "
        "sequence of actions.",
        "severity": "critical",
        "vendor_severity": "9.0",
        "occurred_at": datetime(2026, 3, 4, 4, 0, tzinfo=UTC),
        "users": ["alice@example.com"],
    }


def test_sns_notification_carries_the_eventbridge_event() -> None:
    [event] = parse("sns_notification.json")
    assert summary(event) == SSH_BRUTEFORCE


def test_guardduty_events_that_are_not_findings_are_skipped_with_their_type() -> None:
    events = parse("eventbridge_scan_result.json")
    assert list(events) == []
    assert events.skipped == {  # type: ignore[attr-defined]
        "GuardDuty EventBridge event 'GuardDuty Malware Protection Object Scan Result': "
        "not a finding": 1
    }


def test_another_services_eventbridge_event_is_refused() -> None:
    with pytest.raises(ParseError, match="EventBridge event of type 'EC2 Instance State-change"):
        GuardDutyDetector().parse(
            b'{"detail-type": "EC2 Instance State-change Notification", "source": "aws.ec2",'
            b' "detail": {}}'
        )


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("sns_subscription_confirmation.json", "confirm it with its SubscribeURL"),
    ],
)
def test_what_is_not_a_finding_says_what_it_is(name: str, reason: str) -> None:
    with pytest.raises(ParseError, match=reason):
        parse(name)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1.0, "low"),
        (3.9, "low"),
        (4.0, "medium"),
        (6.9, "medium"),
        (7, "high"),
        (8.9, "high"),
        (9.0, "critical"),
        (10, "critical"),
        ("HIGH", "high"),
        (None, "medium"),
    ],
)
def test_severity_bands(value: object, expected: str) -> None:
    finding = {"id": "x", "schemaVersion": "2.0", "type": "Recon:EC2/Portscan", "severity": value}
    [event] = GuardDutyDetector().parse(json.dumps(finding).encode())
    assert event.severity == expected
    assert event.vendor_severity == (None if value is None else str(value))


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (
            b'{"id": "x", "severity": 5}',
            r"not a GuardDuty alert: expected a finding \(type with schemaVersion, accountId, "
            r"resource or service\), an EventBridge event of detail-type 'GuardDuty Finding', "
            r"or an SNS notification of one",
        ),
        (b'{"findings": []}', "holds no alerts"),
        (b'{"Type": "Notification", "Message": "not json"}', "Message is not JSON"),
        (b'{"detail-type": "GuardDuty Finding", "detail": "x"}', "not a JSON object"),
    ],
)
def test_broken_deliveries_raise_parse_error(body: bytes, reason: str) -> None:
    with pytest.raises(ParseError, match=reason):
        GuardDutyDetector().parse(body)


def test_a_finding_without_id_gets_a_stable_fingerprint() -> None:
    body = b'{"type": "Recon:EC2/Portscan", "accountId": "1", "severity": 5, "title": null}'
    [first] = GuardDutyDetector().parse(body)
    [second] = GuardDutyDetector().parse(body)
    assert first.external_id.startswith("sha256:") and first.external_id == second.external_id
    assert first.title == "Recon:EC2/Portscan"


def test_registered_by_name() -> None:
    assert isinstance(detectors.get("guardduty")(), GuardDutyDetector)


def test_a_finding_with_neither_title_nor_type_still_has_a_title() -> None:
    """Found by the damaged-corpus property test: ``Title`` null and ``Type`` an empty list
    gave an event with an empty title."""
    body = json.dumps(
        {
            "Findings": [
                {
                    "AccountId": "123456789012",
                    "Id": "0ab1cd2ef3a45b6c7d8e9f0a1b2c3d4e",
                    "Severity": 5.0,
                    "Title": None,
                    "Type": [],
                    "Resource": {"ResourceType": "AccessKey"},
                }
            ]
        }
    ).encode()
    [event] = GuardDutyDetector().parse(body)
    assert event.title == "GuardDuty finding"
    assert event.external_id == "0ab1cd2ef3a45b6c7d8e9f0a1b2c3d4e"
