"""``fido respond``: a responder run from a shell, once, audited as the operator's, never on
a protected account."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlmodel import select
from typer.testing import CliRunner

from bot.cli import app
from pipeline import audit
from pipeline import db as database
from pipeline.models import Action


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite:///{tmp_path / 'fido.db'}"
    policy = tmp_path / "fido.yml"
    policy.write_text("enrichers: []\nactions:\n  - responder: log_only\n")
    monkeypatch.setenv("FIDO_DATABASE_URL", url)
    monkeypatch.setenv("FIDO_CONFIG", str(policy))
    monkeypatch.setenv("USER", "jsmith")
    return url


async def recorded(url: str) -> tuple[list[Action], list[tuple[str, str]]]:
    db = database.Database(url)
    async with db.session() as session:
        actions = list((await session.exec(select(Action))).all())
        entries = [(e.actor, e.verb) for e in await audit.entries(session)]
    await db.dispose()
    return actions, entries


def test_runs_once_and_is_audited_as_the_operator(env: str) -> None:
    runner = CliRunner()
    first = runner.invoke(app, ["respond", "log_only", "mallory"])
    assert first.exit_code == 0, first.output
    assert "action 1: succeeded" in first.output
    again = runner.invoke(app, ["respond", "log_only", "MALLORY"])  # the same account
    assert again.exit_code == 0 and "already done (action 1, succeeded)" in again.output
    actions, entries = asyncio.run(recorded(env))
    assert [(a.responder, a.target, a.incident_id) for a in actions] == [
        ("log_only", "mallory", None)
    ]
    assert entries[-1][0].startswith("operator:") and entries[-1][1] == "action.succeeded"


def test_dry_run_and_refusals(env: str) -> None:
    runner = CliRunner()
    dry = runner.invoke(app, ["respond", "log_only", "mallory", "--dry-run"])
    assert dry.exit_code == 0 and "dry_run" in dry.output
    protected = runner.invoke(app, ["respond", "log_only", "CORP\\Administrator"])
    assert protected.exit_code == 1 and "protected account" in protected.output
    unknown = runner.invoke(app, ["respond", "nope", "mallory"])
    assert unknown.exit_code == 1 and "no action rule names 'nope'" in unknown.output
    actions, _ = asyncio.run(recorded(env))
    assert [a.status for a in actions] == ["dry_run"]
