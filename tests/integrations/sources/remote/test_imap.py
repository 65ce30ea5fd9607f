"""The IMAP source against a real Dovecot: alert mail in, events out, processed mail moved
only after the commit, unknown mail left alone, restarts, renumbered folders, TLS."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any

import pytest
from pydantic import SecretStr

from integrations.detectors.generic import GenericDetector
from integrations.sources.imap import IMAPSource
from pipeline.db import Database
from pipeline.errors import IntegrationError
from pipeline.plugins import Batch
from pipeline.sources import poll
from tests.fixtures.dovecot import UTF8_PASSWORD, UTF8_USER, Dovecot, start_dovecot
from tests.integrations.sources.build import build_source
from tests.integrations.sources.remote.helpers import cursor_of, last_error, stored_events

PROCESSED = 'Fido/Processed "alerts"'  # a space and quotes: it must be sent quoted
SENT = datetime(2026, 11, 28, 1, 2, 3, tzinfo=UTC)
RULES = [
    {
        "sender": r"@edr\.corp\.example>?$",
        "subject": r"^\[(?P<severity>\w+)\] (?P<title>.+)$",
        "body": r"User: (?P<user>\S+)\s+Host: (?P<host>\S+)\s+Source IP: (?P<src_ip>\S+)",
    },
    {"sender": r"noreply@saas\.example", "attachment_json": True},
]


def edr_mail(n: int = 1, user: str = "alice") -> EmailMessage:
    mail = EmailMessage()
    mail["From"] = "EDR Alerts <alerts@edr.corp.example>"
    mail["To"] = "fido-alerts@corp.example"
    mail["Subject"] = f"[HIGH] Impossible travel for {user} #{n}"
    mail["Date"] = format_datetime(SENT)
    mail["Message-ID"] = f"<edr-{n}@edr.corp.example>"
    mail.set_content(
        f"A sign-in from two countries within 5 minutes.\n\nUser: {user}\n"
        "Host: laptop-042\nSource IP: 203.0.113.9\n"
    )
    return mail


def saas_mail() -> EmailMessage:
    mail = EmailMessage()
    mail["From"] = "Cloud Guard <noreply@saas.example>"
    mail["Subject"] = "Alert: malware download"
    mail["Message-ID"] = "<saas-77@saas.example>"
    mail.set_content("See the attached alert.")
    alert = {
        "id": "saas-77",
        "title": "Malware download",
        "severity": "critical",
        "user": "bob",
        "url": "http://malware.example/dropper.exe",
    }
    mail.add_attachment(
        json.dumps(alert).encode(), maintype="application", subtype="json", filename="alert.json"
    )
    return mail


def newsletter() -> EmailMessage:
    mail = EmailMessage()
    mail["From"] = "Shop <news@shop.example>"
    mail["Subject"] = "Great deals this week"
    mail.set_content("User: nobody\nHost: none\nSource IP: 198.51.100.1\n")
    return mail


def make(server: Dovecot, **options: Any) -> IMAPSource:
    settings: dict[str, Any] = {
        "host": server.host,
        "port": server.imap_port,
        "tls": "none",
        "username": server.user,
        "password_env": "IMAP_PASSWORD",
        "processed_folder": PROCESSED,
        "rules": RULES,
        **options,
    }
    source = build_source(
        "imap", settings, name="mailbox", environ={"IMAP_PASSWORD": server.password}
    )
    assert isinstance(source, IMAPSource)
    return source


def subjects(server: Dovecot, folder: str = "INBOX") -> list[str]:
    return [subject for _, subject in server.messages(folder)]


async def test_alert_mail_becomes_events_and_is_moved(db: Database, dovecot: Dovecot) -> None:
    dovecot.append(edr_mail())
    dovecot.append(saas_mail())
    news_uid = dovecot.append(newsletter())

    result = await poll(db=db, source=make(dovecot), detector=GenericDetector())

    assert len(result.created) == 2 and result.dead_letters == 0
    edr, saas = await stored_events(db)
    assert edr.external_id == "edr-1@edr.corp.example"
    assert edr.title == "Impossible travel for alice #1"
    assert edr.severity == "high"
    assert edr.observables["users"] == ["alice"] and edr.observables["hosts"] == ["laptop-042"]
    assert edr.observables["src_ips"] == ["203.0.113.9"]
    assert edr.occurred_at is not None and edr.occurred_at.replace(tzinfo=UTC) == SENT
    assert (saas.external_id, saas.severity) == ("saas-77", "critical")
    assert saas.title == "Malware download"
    assert saas.observables["urls"] == ["http://malware.example/dropper.exe"]
    # processed mail moved (the folder was created); the unknown mail stayed, still unread
    assert PROCESSED in dovecot.folders()
    assert sorted(subjects(dovecot, PROCESSED)) == sorted(
        ["[HIGH] Impossible travel for alice #1", "Alert: malware download"]
    )
    assert subjects(dovecot) == ["Great deals this week"]
    with dovecot.client() as conn:
        conn.select("INBOX", readonly=True)
        _, flags = conn.uid("FETCH", str(news_uid), "(FLAGS)")
    assert b"\\Seen" not in flags[0]
    cursor = await cursor_of(db, "mailbox")
    assert cursor["last_uid"] == news_uid and cursor["to_move"] == [1, 2]
    assert " deleted=0 expunged=0 " in dovecot.log.read_text()  # moved with UID MOVE
    assert " deleted=1 " not in dovecot.log.read_text()


async def test_unknown_mail_is_logged_not_read_again(
    db: Database, dovecot: Dovecot, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="integrations.sources.imap")
    dovecot.append(newsletter())
    source = make(dovecot)

    await poll(db=db, source=source, detector=GenericDetector())
    await poll(db=db, source=source, detector=GenericDetector())

    unmatched = [r for r in caplog.records if "matches no rule" in r.getMessage()]
    assert len(unmatched) == 1 and "news@shop.example" in unmatched[0].getMessage()
    assert await stored_events(db) == []
    assert subjects(dovecot) == ["Great deals this week"]


async def test_restart_does_not_duplicate(db: Database, dovecot: Dovecot) -> None:
    dovecot.append(edr_mail(1))
    await poll(db=db, source=make(dovecot), detector=GenericDetector())
    dovecot.append(edr_mail(2))

    restarted = make(dovecot)
    result = await poll(db=db, source=restarted, detector=GenericDetector())
    again = await poll(db=db, source=make(dovecot), detector=GenericDetector())

    assert len(result.created) == 1 and result.duplicates == 0
    assert again.created == [] and again.duplicates == 0
    assert [e.external_id for e in await stored_events(db)] == [
        "edr-1@edr.corp.example",
        "edr-2@edr.corp.example",
    ]
    assert subjects(dovecot) == [] and len(subjects(dovecot, PROCESSED)) == 2


class _CrashBeforeMove:
    """The source, as if the process died right after the commit: no on_committed."""

    def __init__(self, source: IMAPSource) -> None:
        self.source, self.name, self.detector = source, source.name, source.detector

    async def fetch(self, cursor: dict[str, Any]) -> Batch:
        batch = await self.source.fetch(cursor)
        batch.on_committed = None
        return batch


async def test_mail_is_moved_only_after_the_commit_and_a_crash_loses_nothing(
    db: Database, dovecot: Dovecot
) -> None:
    dovecot.append(edr_mail(1))
    source = make(dovecot)
    batch = await source.fetch({})
    assert subjects(dovecot) == ["[HIGH] Impossible travel for alice #1"]  # not moved yet

    await poll(db=db, source=_CrashBeforeMove(make(dovecot)), detector=GenericDetector())
    assert len(await stored_events(db)) == 1
    assert subjects(dovecot) == ["[HIGH] Impossible travel for alice #1"]  # still there

    dovecot.append(edr_mail(2))
    result = await poll(db=db, source=make(dovecot), detector=GenericDetector())

    assert len(result.created) == 1 and result.duplicates == 0
    assert subjects(dovecot) == []  # the move left over from the crash happened too
    assert len(subjects(dovecot, PROCESSED)) == 2
    assert batch.on_committed is not None


async def test_batches_and_oversized_mail(db: Database, dovecot: Dovecot) -> None:
    for n in range(1, 4):
        dovecot.append(edr_mail(n))
    big = edr_mail(9)
    big.add_attachment(b"x" * 200_000, maintype="application", subtype="octet-stream")
    dovecot.append(big)

    result = await poll(
        db=db,
        source=make(dovecot, batch_size=2, max_message_bytes=100_000),
        detector=GenericDetector(),
    )

    assert result.batches == 2 and len(result.created) == 3
    assert subjects(dovecot) == ["[HIGH] Impossible travel for alice #9"]


async def test_a_renumbered_folder_is_read_again(db: Database, dovecot: Dovecot) -> None:
    with dovecot.client() as conn:
        conn.create("Alerts")
    dovecot.append(edr_mail(1), folder="Alerts")
    await poll(db=db, source=make(dovecot, folder="Alerts"), detector=GenericDetector())
    before = await cursor_of(db, "mailbox")
    with dovecot.client() as conn:  # restored from a backup: new UIDVALIDITY, UIDs from 1
        conn.delete("Alerts")
        conn.create("Alerts")
    dovecot.append(edr_mail(2), folder="Alerts")

    result = await poll(db=db, source=make(dovecot, folder="Alerts"), detector=GenericDetector())

    after = await cursor_of(db, "mailbox")
    assert after["uidvalidity"] != before["uidvalidity"]
    assert len(result.created) == 1
    assert subjects(dovecot, "Alerts") == []


@pytest.mark.parametrize("tls", ["ssl", "starttls"])
async def test_tls_with_the_servers_ca(db: Database, dovecot: Dovecot, tls: str) -> None:
    dovecot.append(edr_mail())
    port = dovecot.imaps_port if tls == "ssl" else dovecot.imap_port
    source = make(dovecot, tls=tls, port=port, ca_file=str(dovecot.ca_file))

    result = await poll(db=db, source=source, detector=GenericDetector())

    assert len(result.created) == 1
    assert "TLS" in dovecot.log.read_text()  # the server saw an encrypted login


async def test_tls_refuses_an_unknown_certificate(db: Database, dovecot: Dovecot) -> None:
    source = make(dovecot, tls="ssl", port=dovecot.imaps_port)  # the system CAs only

    with pytest.raises(IntegrationError, match="CERTIFICATE_VERIFY_FAILED"):
        await poll(db=db, source=source, detector=GenericDetector())

    unchecked = make(dovecot, tls="ssl", port=dovecot.imaps_port, verify_tls=False)
    assert (await poll(db=db, source=unchecked, detector=GenericDetector())).batches == 1


async def test_wrong_password_is_a_clear_error_without_it(
    db: Database, dovecot: Dovecot, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "Not-The-Mail-Pw-77"
    source = IMAPSource(
        "mailbox",
        "generic",
        host=dovecot.host,
        port=dovecot.imap_port,
        tls="none",
        username=dovecot.user,
        password=SecretStr(wrong),
        rules=make(dovecot).rules,
    )

    with pytest.raises(IntegrationError, match="AUTHENTICATIONFAILED") as caught:
        await poll(db=db, source=source, detector=GenericDetector())

    assert wrong not in str(caught.value) and wrong not in caplog.text
    assert wrong not in repr(source)
    assert "AUTHENTICATIONFAILED" in (await last_error(db, "mailbox") or "")


@pytest.mark.parametrize(
    "capability",
    ["IMAP4rev1 LITERAL+ UIDPLUS", "IMAP4rev1 LITERAL+"],
    ids=["copy-uid-expunge", "copy-expunge"],
)
async def test_servers_without_move(db: Database, capability: str) -> None:
    with start_dovecot(capability=capability) as server:
        server.append(edr_mail(1))
        server.append(newsletter())

        result = await poll(db=db, source=make(server), detector=GenericDetector())

        assert len(result.created) == 1
        assert subjects(server) == ["Great deals this week"]
        assert subjects(server, PROCESSED) == ["[HIGH] Impossible travel for alice #1"]
        # Dovecot counts what a session flagged \Deleted and expunged: UID MOVE does neither
        assert "deleted=1 expunged=1" in server.log.read_text()


async def test_a_password_that_is_not_ascii(db: Database, dovecot: Dovecot) -> None:
    source = IMAPSource(
        "mailbox",
        "generic",
        host=dovecot.host,
        port=dovecot.imaps_port,
        ca_file=str(dovecot.ca_file),
        username=UTF8_USER,
        password=SecretStr(UTF8_PASSWORD),
        rules=make(dovecot).rules,
    )

    result = await poll(db=db, source=source, detector=GenericDetector())

    assert result.batches == 1
    assert f"user=<{UTF8_USER}>, method=PLAIN" in dovecot.log.read_text()


async def test_a_message_that_breaks_the_parser_does_not_block_the_rest(
    db: Database, dovecot: Dovecot, monkeypatch: pytest.MonkeyPatch
) -> None:
    import integrations.sources.imap as imap

    real = imap.payloads_for

    def fragile(raw: bytes, rules: list[Any]) -> list[bytes]:
        if b"#1" in raw:
            raise UnicodeDecodeError("utf-8", b"\xff", 0, 1, "a parser bug")
        return real(raw, rules)

    monkeypatch.setattr(imap, "payloads_for", fragile)
    dovecot.append(edr_mail(1))
    dovecot.append(edr_mail(2))

    result = await poll(db=db, source=make(dovecot), detector=GenericDetector())

    assert len(result.created) == 1
    assert subjects(dovecot) == ["[HIGH] Impossible travel for alice #1"]
