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


def test_undo_reverses_a_responded_action_as_the_operator(env: str) -> None:
    runner = CliRunner()
    done = runner.invoke(app, ["respond", "log_only", "mallory"])
    assert done.exit_code == 0, done.output
    assert done.output.splitlines()[-1] == "undo it with: fido undo 1"

    undone = runner.invoke(app, ["undo", "1"])

    assert undone.exit_code == 0, undone.output
    assert undone.output.strip() == "action 1: undone: Recorded: would re-enable mallory"
    actions, entries = asyncio.run(recorded(env))
    assert [(a.status, a.undone_by) for a in actions] == [("undone", "operator:jsmith")]
    assert entries[-1] == ("operator:jsmith", "action.undo.ok")
    # no longer in force: a new run acts again
    again = runner.invoke(app, ["respond", "log_only", "mallory"])
    assert again.exit_code == 0 and "action 2: succeeded" in again.output


def test_undo_refuses_unknown_undone_and_not_succeeded_actions(env: str) -> None:
    runner = CliRunner()
    unknown = runner.invoke(app, ["undo", "9"])
    assert unknown.exit_code == 1 and "fido: there is no action 9" in unknown.output
    runner.invoke(app, ["respond", "log_only", "mallory", "--dry-run"])
    dry = runner.invoke(app, ["undo", "1"])
    assert dry.exit_code == 1
    assert (
        "fido: action 1 (log_only on mallory) is dry_run: only a succeeded action is undone"
        in dry.output
    )
    runner.invoke(app, ["respond", "log_only", "bob"])
    assert runner.invoke(app, ["undo", "2"]).exit_code == 0
    twice = runner.invoke(app, ["undo", "2"])
    assert twice.exit_code == 1 and "is undone: only a succeeded action is undone" in twice.output
    _, entries = asyncio.run(recorded(env))
    assert [verb for _, verb in entries].count("action.undo.ok") == 1


def test_undo_refuses_an_irreversible_responder(
    env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A webhook without undo_url cannot take its action back: nothing is sent."""
    policy = tmp_path / "fido.yml"
    policy.write_text(
        "enrichers: []\nactions:\n  - responder: webhook\n    options:\n"
        "      url: https://127.0.0.1:9/hook\n      secret_env: FIDO_TEST_HOOK_SECRET\n"
    )
    monkeypatch.setenv("FIDO_TEST_HOOK_SECRET", "s3cret")
    asyncio.run(store_succeeded(env, "webhook", "mallory"))

    refused = CliRunner().invoke(app, ["undo", "1"])

    assert refused.exit_code == 1
    assert (
        "fido: action 1 (webhook on mallory) cannot be undone: webhook is not reversible"
        in refused.output
    )
    actions, entries = asyncio.run(recorded(env))
    assert [a.status for a in actions] == ["succeeded"] and entries == []


async def store_succeeded(url: str, responder: str, target: str) -> None:
    database.upgrade(url)
    db = database.Database(url)
    async with db.session() as session:
        session.add(
            Action(
                responder=responder,
                target=target,
                idempotency_key=f"test:{responder}:{target}",
                requested_by="operator:jsmith",
                status="succeeded",
                result="sent",
            )
        )
        await session.commit()
    await db.dispose()
