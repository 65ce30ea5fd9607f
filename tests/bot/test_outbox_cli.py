"""``fido outbox``: what was not delivered, and putting failed messages back in line."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bot.cli import app
from pipeline import db as database
from pipeline.models import Incident, OutboxMessage, OutboxStatus


async def _store(url: str) -> None:
    db = database.Database(url)
    async with db.session() as session:
        session.add(Incident(id=1, title="t"))
        await session.flush()
        session.add(
            OutboxMessage(
                incident_id=1,
                kind="card",
                status=OutboxStatus.failed.value,
                attempts=1,
                last_error="Slack: not_in_channel",
            )
        )
        session.add(OutboxMessage(incident_id=1, kind="card", status=OutboxStatus.sent.value))
        await session.commit()
    await db.dispose()


@pytest.fixture
def stored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite:///{tmp_path / 'fido.db'}"
    database.upgrade(url)
    asyncio.run(_store(url))
    monkeypatch.setenv("FIDO_DATABASE_URL", url)
    return url


async def status_of(url: str, message_id: int) -> str:
    db = database.Database(url)
    async with db.session() as session:
        message = await session.get(OutboxMessage, message_id)
    await db.dispose()
    assert message is not None
    return message.status


def test_lists_failed_messages_and_puts_them_back(stored: str) -> None:
    runner = CliRunner()
    listed = runner.invoke(app, ["outbox", "--failed"])
    assert listed.exit_code == 0, listed.output
    assert listed.output.splitlines() == [
        "     1  incident 1  card  failed   1 attempts: Slack: not_in_channel"
    ]
    retried = runner.invoke(app, ["outbox", "retry", "1"])
    assert (retried.exit_code, retried.output) == (0, "1 message put back in line\n")
    assert asyncio.run(status_of(stored, 1)) == "pending"
    assert runner.invoke(app, ["outbox", "--failed"]).output == (
        "nothing waiting: every message was delivered\n"
    )
