"""Retention: past the policy's days, raw payloads, enrichment, dead letters, cached lookups
and sent messages are purged; incidents, actions and the audit log are kept, and the audit
chain still verifies. Time is moved by handing the purge a later clock."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError
from sqlmodel import col, select

from bot.settings import Settings
from bot.slack.app import web_client
from bot.slack.notifier import SlackNotifier
from integrations.detectors.generic import GenericDetector
from pipeline import audit, deadletters, retention
from pipeline.db import Database
from pipeline.engine import Engine
from pipeline.ingest import ingest
from pipeline.models import (
    AuditEntry,
    DeadLetter,
    Event,
    EventStatus,
    Incident,
    LookupCache,
    OutboxMessage,
    OutboxStatus,
)
from pipeline.policy import Policy, RetentionPolicy
from tests.bot.test_serve import clean_env
from tests.fixtures.servers import free_port
from tests.fixtures.slack import FakeSlack
from tests.pipeline.fakes import DirectoryEnricher

MARKER = "raw-marker-e4b1"
DAYS = 90


def later(days: float) -> datetime:
    return datetime.now(UTC) + timedelta(days=days)


async def alert(db: Database, external_id: str, user: str) -> None:
    body = {"id": external_id, "title": f"alert {external_id}", "user": user, "note": MARKER}
    async with db.session() as session:
        await ingest(session=session, detector=GenericDetector(), body=json.dumps(body).encode())


@pytest.fixture
async def stored(db: Database, fake_slack: FakeSlack) -> Database:
    """Two alerts triaged and their cards sent, one alert still queued, a dead letter and a
    cached lookup answer."""
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        SLACK_BOT_TOKEN=fake_slack.token,
        SLACK_API_URL=fake_slack.base_url,
    )
    engine = Engine(
        db=db,
        policy=Policy(actions=[]),
        enrichers=[DirectoryEnricher({"alice": {"department": "Finance"}, "bob": {}})],
        notifier=SlackNotifier(web_client(settings), channel="C0KEEP"),
    )
    await alert(db, "r1", "alice")
    await alert(db, "r2", "bob")
    assert await engine.drain() == 2
    await alert(db, "r3", "carol")  # not processed yet: its payload is still needed
    async with db.session() as session:
        deadletters.keep(session, detector="generic", body=MARKER.encode(), error="bad json")
        session.add(
            LookupCache(
                key="k" * 64,
                enricher="virustotal",
                kind="hash",
                value="a" * 64,
                facts={"verdict": "malicious"},
                expires_at=later(1),
            )
        )
        await session.commit()
    return db


async def rows(db: Database, model: type) -> list:  # type: ignore[type-arg]
    async with db.session() as session:
        return list((await session.exec(select(model))).all())


async def test_nothing_is_purged_before_its_time(stored: Database) -> None:
    purged = await retention.purge(stored, RetentionPolicy(days=DAYS), now=later(DAYS - 1))
    assert purged == retention.Purged()
    events = await rows(stored, Event)
    assert all(MARKER in e.raw for e in events)
    assert all(i.enrichment for i in await rows(stored, Incident))
    assert not [e for e in await rows(stored, AuditEntry) if e.verb == "retention.purged"]


async def test_old_payloads_and_enrichment_go_incidents_and_audit_stay(stored: Database) -> None:
    incidents_before = await rows(stored, Incident)
    audit_before = len(await rows(stored, AuditEntry))
    sent_before = [m for m in await rows(stored, OutboxMessage) if m.status == "sent"]
    assert sent_before  # the cards went out

    purged = await retention.purge(stored, RetentionPolicy(days=DAYS), now=later(DAYS + 1))

    assert purged.payloads == 2
    assert purged.enrichments == len(incidents_before) == 2
    assert (purged.dead_letters, purged.lookups) == (1, 1)
    assert purged.outbox == len(sent_before)
    events = {e.external_id: e for e in await rows(stored, Event)}
    assert events["r1"].raw == events["r2"].raw == retention.PURGED
    assert events["r3"].status == EventStatus.pending.value and MARKER in events["r3"].raw
    assert events["r1"].title == "alert r1" and events["r1"].observables  # the row stays
    incidents = await rows(stored, Incident)
    assert [i.id for i in incidents] == [i.id for i in incidents_before]
    for before, after in zip(incidents_before, incidents, strict=True):
        assert after.enrichment == {}
        assert (after.score, after.decision, after.score_breakdown) == (
            before.score,
            before.decision,
            before.score_breakdown,
        )
    assert await rows(stored, DeadLetter) == [] and await rows(stored, LookupCache) == []
    left = await rows(stored, OutboxMessage)
    assert all(m.status != OutboxStatus.sent.value for m in left)

    entries = await rows(stored, AuditEntry)
    assert len(entries) == audit_before + 1
    assert entries[-1].verb == "retention.purged" and entries[-1].actor == retention.ACTOR
    assert entries[-1].detail["payloads"] == 2 and entries[-1].detail["days"] == DAYS
    verdict = await audit.verify(stored)
    assert verdict.broken is None and verdict.entries == len(entries)

    again = await retention.purge(stored, RetentionPolicy(days=DAYS), now=later(DAYS + 2))
    assert again.total == 0  # nothing left to purge, and no audit entry for nothing
    assert len(await rows(stored, AuditEntry)) == len(entries)


async def test_large_purges_go_in_batches(
    stored: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(retention, "BATCH", 1)
    purged = await retention.purge(stored, RetentionPolicy(days=DAYS), now=later(DAYS + 1))
    assert (purged.payloads, purged.enrichments, purged.dead_letters) == (2, 2, 1)
    raws = [e.raw for e in await rows(stored, Event) if e.status == EventStatus.done.value]
    assert raws == [retention.PURGED, retention.PURGED]


async def test_days_null_keeps_everything(stored: Database) -> None:
    purged = await retention.purge(stored, RetentionPolicy(days=None), now=later(10_000))
    assert purged.total == 0
    assert all(MARKER in e.raw for e in await rows(stored, Event))


async def test_the_scheduled_job_uses_the_policy_in_force_and_its_clock(stored: Database) -> None:
    rules = RetentionPolicy(days=DAYS)
    await retention.run(stored, lambda: rules, lambda: later(DAYS + 1))
    async with stored.session() as session:
        done = await session.exec(select(Event).where(col(Event.status) == EventStatus.done.value))
        assert all(e.raw == retention.PURGED for e in done.all())


async def test_the_job_survives_an_unreachable_database(caplog: pytest.LogCaptureFixture) -> None:
    gone = Database(f"postgresql://postgres@127.0.0.1:{free_port()}/test")
    try:
        with caplog.at_level(logging.WARNING, logger="pipeline.retention"):
            await retention.run(gone, lambda: RetentionPolicy(days=1), lambda: later(2))
    finally:
        await gone.dispose()
    [record] = caplog.records
    assert record.getMessage() == "retention: purge failed; trying again next interval"
    assert record.exc_info is not None  # the formatter makes it one line (bot/logs.py)


def test_the_policy_field_is_checked() -> None:
    assert Policy().retention == RetentionPolicy(days=90, interval_minutes=60)
    assert Policy.model_validate({"retention": {"days": None}}).retention.days is None
    with pytest.raises(ValidationError, match="retention.days"):
        Policy.model_validate({"retention": {"days": 0}})
    with pytest.raises(ValidationError, match="retention.keep"):
        Policy.model_validate({"retention": {"keep": 3}})


async def test_fido_audit_verify_passes_after_a_purge(
    stored: Database, database_url: str, tmp_path: Path
) -> None:
    purged = await retention.purge(stored, RetentionPolicy(days=DAYS), now=later(DAYS + 1))
    assert purged.total > 0
    done = subprocess.run(
        [sys.executable, "-m", "bot.cli", "audit", "verify"],
        env=clean_env(FIDO_DATABASE_URL=database_url),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
