"""The fail2ban detector: on its log lines and notification JSON, then on a real
fail2ban-server banning an address, its log and its action's output tailed into events."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from integrations.detectors.fail2ban import Fail2banDetector
from integrations.sources.logfile import LogFileSource
from pipeline.db import Database
from pipeline.errors import ConfigError, ParseError
from pipeline.plugins import Context, Detector, build_plugin, detectors
from pipeline.sources import poll
from tests.fixtures.fail2ban import Fail2ban
from tests.integrations.sources.files.helpers import stored_events

BAN = "2026-11-28 01:02:03,456 fail2ban.actions        [123]: NOTICE  [sshd] Ban 203.0.113.5"
BAN_LINES = r"\] (Restore )?Ban "


def test_registered_and_a_detector() -> None:
    assert detectors.get("fail2ban") is Fail2banDetector
    assert isinstance(Fail2banDetector(), Detector)


def test_ban_line() -> None:
    (event,) = Fail2banDetector().parse(BAN.encode() + b"\n")
    assert event.title == "fail2ban: banned 203.0.113.5 in jail sshd"
    assert event.severity == "medium"
    assert event.observables.src_ips == ["203.0.113.5"]
    assert event.observables.ips == ["203.0.113.5"]
    assert event.occurred_at == datetime(2026, 11, 28, 1, 2, 3, 456000, tzinfo=UTC)
    assert event.raw == BAN


def test_restore_ban_ipv6_and_syslog_forms() -> None:
    delivery = (
        "2026-11-28 01:05:00,001 fail2ban.actions [99]: NOTICE  [sshd] Restore Ban 2001:db8::7\n"
        "Nov 28 01:02:03 gw-1 fail2ban.actions[123]: NOTICE [postfix-sasl] Ban 198.51.100.4\n"
        "2026-11-28 01:02:03,456 fail2ban.actions: WARNING [ssh] Ban 192.0.2.9\n"
    )
    restored, syslog, old = Fail2banDetector().parse(delivery.encode())
    assert restored.title == "fail2ban: ban restored for 2001:db8::7 in jail sshd"
    assert restored.observables.src_ips == ["2001:db8::7"]
    assert syslog.title == "fail2ban: banned 198.51.100.4 in jail postfix-sasl"
    assert syslog.occurred_at is not None and syslog.occurred_at.day == 28
    assert old.observables.src_ips == ["192.0.2.9"]


def test_other_lines_are_skipped_and_no_ban_is_a_parse_error() -> None:
    noise = (
        b"2026-11-28 01:02:03,001 fail2ban.filter [123]: INFO    [sshd] Found 203.0.113.5 - x\n"
        b"2026-11-28 01:12:03,002 fail2ban.actions [123]: NOTICE  [sshd] Unban 203.0.113.5\n"
        b"2026-11-28 01:12:04,003 fail2ban.actions [12]: NOTICE [sshd] 203.0.113.5 already banned\n"
    )
    with pytest.raises(ParseError, match="no ban"):
        Fail2banDetector().parse(noise)
    assert len(Fail2banDetector().parse(noise + BAN.encode())) == 1


def test_id_comes_from_jail_ip_and_time() -> None:
    detector = Fail2banDetector()
    first = detector.parse(BAN.encode())[0].external_id
    assert detector.parse(BAN.replace("NOTICE  ", "NOTICE ").encode())[0].external_id == first
    assert detector.parse(BAN.replace("[sshd]", "[nginx]").encode())[0].external_id != first
    assert detector.parse(BAN.replace(".5", ".6").encode())[0].external_id != first
    assert detector.parse(BAN.replace(",456", ",457").encode())[0].external_id != first


def test_notification_json() -> None:
    body = b'{"jail": "sshd", "ip": "203.0.113.5", "failures": 5, "time": 1795827723}'
    (event,) = Fail2banDetector().parse(body)
    assert event.title == "fail2ban: banned 203.0.113.5 in jail sshd after 5 failures"
    assert event.observables.src_ips == ["203.0.113.5"]
    assert event.occurred_at == datetime.fromtimestamp(1795827723, UTC)
    assert event.raw == body.decode()
    same = b'{"time": "1795827723.0", "ip": "203.0.113.5", "jail": "sshd"}'
    assert Fail2banDetector().parse(same)[0].external_id == event.external_id
    lines = body + b"\n" + body.replace(b"203.0.113.5", b"203.0.113.6") + b"\n"
    assert [e.observables.src_ips for e in Fail2banDetector().parse(lines)] == [
        ["203.0.113.5"],
        ["203.0.113.6"],
    ]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"jail": "sshd"}', "'jail' and 'ip' are required"),
        (b"[1, 2]", "not a JSON object"),
        (b"[]", "no ban"),
        (b'{"jail": ', "not valid JSON"),
    ],
)
def test_bad_json_is_a_parse_error(body: bytes, message: str) -> None:
    with pytest.raises(ParseError, match=message):
        Fail2banDetector().parse(body)


def test_options() -> None:
    (event,) = Fail2banDetector(severity="high", timezone="America/New_York").parse(BAN.encode())
    assert event.severity == "high"
    assert event.occurred_at == datetime(2026, 11, 28, 6, 2, 3, 456000, tzinfo=UTC)
    with pytest.raises(ConfigError, match="^detector fail2ban: option 'severity'"):
        build_plugin(detectors, "fail2ban", {"severity": "urgent"}, Context())


async def test_real_fail2ban_ban_is_tailed_into_an_event(db: Database, fail2ban: Fail2ban) -> None:
    fail2ban.start()
    fail2ban.fail_logins("203.0.113.5", 3)
    fail2ban.fail_logins("198.51.100.9", 1)  # below maxretry: never banned
    assert fail2ban.wait_for("Ban 203.0.113.5"), fail2ban.log.read_text()
    detector = Fail2banDetector()
    log_source = LogFileSource("fail2ban", "fail2ban", path=fail2ban.log, pattern=BAN_LINES)
    result = await poll(db=db, source=log_source, detector=detector)
    assert (len(result.created), result.dead_letters) == (1, 0)
    (ban,) = await stored_events(db)
    assert ban.title == "fail2ban: banned 203.0.113.5 in jail sshd"
    assert ban.observables["src_ips"] == ["203.0.113.5"]
    assert "NOTICE" in ban.raw and ban.occurred_at is not None

    assert fail2ban.wait_for_bans(1)
    json_source = LogFileSource("fail2ban-notify", "fail2ban", path=fail2ban.bans)
    notified = await poll(db=db, source=json_source, detector=detector)
    assert (len(notified.created), notified.dead_letters) == (1, 0)
    note = (await stored_events(db))[-1]
    assert note.title == "fail2ban: banned 203.0.113.5 in jail sshd after 3 failures"
    assert json.loads(note.raw)["ip"] == "203.0.113.5"

    # a restart restores the ban: a new log line, while the action repeats the same ban
    fail2ban.stop()
    fail2ban.start()
    assert fail2ban.wait_for("Restore Ban 203.0.113.5"), fail2ban.log.read_text()
    restored = await poll(db=db, source=log_source, detector=detector)
    assert (len(restored.created), restored.dead_letters) == (1, 0)
    assert (await stored_events(db))[-1].title == (
        "fail2ban: ban restored for 203.0.113.5 in jail sshd"
    )
    assert fail2ban.wait_for_bans(2)
    repeated = await poll(db=db, source=json_source, detector=detector)
    assert (repeated.created, repeated.duplicates) == ([], 1)
    assert not any("198.51.100.9" in e.title for e in await stored_events(db))
