"""``fido audit verify`` and ``fido audit export``, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, delete, update
from typer.testing import CliRunner

from bot.cli import app
from pipeline import audit
from pipeline import db as database
from pipeline.models import AuditEntry

ENTRIES = AuditEntry.__table__  # type: ignore[attr-defined]
NOW = datetime.now(UTC)
AGES = [timedelta(days=30), timedelta(days=10), timedelta(days=2), timedelta(hours=1)]


async def _write(url: str) -> list[str]:
    """Four entries, 30 days to an hour old; their hashes."""
    db = database.Database(url)
    try:
        async with db.session() as session:
            entries = [
                AuditEntry(
                    at=NOW - age,
                    actor="zoë",
                    verb="test.write",
                    target=f"t{n}",
                    incident_id=n,
                    detail={"n": n, "ratio": 0.5, "nested": {"b": None, "a": "é"}},
                )
                for n, age in enumerate(AGES, start=1)
            ]
            session.add_all(entries)
            await session.commit()
        return [str(e.hash) for e in entries]
    finally:
        await db.dispose()


@pytest.fixture
def hashes(database_url: str, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    database.upgrade(database_url)
    monkeypatch.setenv("FIDO_DATABASE_URL", database_url)
    return asyncio.run(_write(database_url))


def tamper(url: str, statement: Any) -> None:
    """An attacker with database access, around the append-only triggers."""
    engine = create_engine(database.sync_url(url))
    with engine.begin() as connection:
        if connection.dialect.name == "sqlite":
            connection.exec_driver_sql("DROP TRIGGER audit_entry_no_update")
            connection.exec_driver_sql("DROP TRIGGER audit_entry_no_delete")
        else:
            connection.exec_driver_sql("ALTER TABLE audit_entry DISABLE TRIGGER USER")
        connection.execute(statement)
    engine.dispose()


def fido(*args: str) -> Any:
    return CliRunner().invoke(app, ["audit", *args])


def test_verify_an_intact_log(hashes: list[str]) -> None:
    result = fido("verify")
    assert (result.exit_code, result.output) == (
        0,
        f"audit log intact: 4 entries, last hash {hashes[-1]} (entry 4)\n",
    )
    as_json = fido("verify", "--json")
    assert as_json.exit_code == 0
    assert json.loads(as_json.output) == {
        "intact": True,
        "entries": 4,
        "last_id": 4,
        "last_hash": hashes[-1],
        "broken": None,
    }


def test_verify_names_an_edited_entry(hashes: list[str], database_url: str) -> None:
    tamper(database_url, update(ENTRIES).where(ENTRIES.c.id == 2).values(actor="mallory"))
    result = fido("verify")
    assert (result.exit_code, result.output) == (
        1,
        "audit log broken at entry 2: edited: its contents no longer match its hash\n"
        "1 entry before it verified\n",
    )
    broken = json.loads(fido("verify", "--json").output)
    assert broken["intact"] is False
    assert broken["broken"]["entry"] == 2 and broken["broken"]["problem"] == "edited"


def test_verify_names_the_entry_after_a_deleted_one(hashes: list[str], database_url: str) -> None:
    tamper(database_url, delete(ENTRIES).where(ENTRIES.c.id == 2))
    result = fido("verify")
    assert result.exit_code == 1
    assert result.output.startswith(
        "audit log broken at entry 3: deleted: entries between 1 and 3 were deleted"
    )


def test_an_anchor_catches_a_deleted_tail(hashes: list[str], database_url: str) -> None:
    anchor = f"4:{hashes[-1]}"
    assert fido("verify", "--anchor", anchor).exit_code == 0
    tamper(database_url, delete(ENTRIES).where(ENTRIES.c.id == 4))
    assert fido("verify").exit_code == 0  # the chain alone cannot tell
    result = fido("verify", "--anchor", anchor)
    assert result.exit_code == 1
    assert result.output.startswith("audit log broken at entry 4: truncated:")
    malformed = fido("verify", "--anchor", "4:abc")
    assert malformed.exit_code == 2 and "is not ID:HASH" in malformed.output


def test_export_writes_lines_a_siem_can_verify(hashes: list[str]) -> None:
    result = fido("export")
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.output.splitlines()]
    assert [line["hash"] for line in lines] == hashes
    prev = audit.GENESIS
    for line in lines:  # the SIEM's check, with nothing but the line
        assert line["prev_hash"] == prev
        fields = {k: v for k, v in line.items() if k != "hash"}
        form = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
        assert hashlib.sha256(form.encode()).hexdigest() == line["hash"]
        prev = line["hash"]
    assert lines[0]["actor"] == "zoë" and lines[0]["detail"]["nested"] == {"b": None, "a": "é"}


@pytest.mark.parametrize(
    ("since", "ids"),
    [
        ("7d", [3, 4]),
        ("3h", [4]),
        ((NOW - timedelta(days=15)).date().isoformat(), [2, 3, 4]),
        ((NOW - timedelta(days=3)).isoformat(), [3, 4]),
        ("2000-01-01T00:00:00", [1, 2, 3, 4]),
    ],
)
def test_export_since(hashes: list[str], since: str, ids: list[int]) -> None:
    result = fido("export", "--since", since, "--format", "jsonl")
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["id"] for line in result.output.splitlines()] == ids


def test_export_to_a_file(hashes: list[str], tmp_path: Path) -> None:
    target = tmp_path / "audit.jsonl"
    result = fido("export", "--output", str(target))
    assert result.exit_code == 0, result.output
    lines = target.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["hash"] for line in lines] == hashes


def test_export_refuses_what_it_cannot_do(hashes: list[str]) -> None:
    since = fido("export", "--since", "last tuesday")
    assert since.exit_code == 2 and "neither a duration" in since.output
    assert fido("export", "--format", "csv").exit_code == 2


async def _write_many(url: str, count: int) -> None:
    db = database.Database(url)
    try:
        async with db.session() as session:
            session.add_all(
                AuditEntry(at=NOW, actor="fido", verb="test.bulk", target=f"t{n}", detail={})
                for n in range(count)
            )
            await session.commit()
    finally:
        await db.dispose()


def test_export_into_a_pipe_closed_early_ends_quietly(hashes: list[str], database_url: str) -> None:
    """``fido audit export | head -1``: the reader stops after one line, long before the
    export (far more than a pipe holds) is written; it stops without a traceback."""
    asyncio.run(_write_many(database_url, 2_000))
    export = subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "audit", "export"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert export.stdout is not None
    first = export.stdout.readline()
    export.stdout.close()  # what head does once it has its line
    _, errors = export.communicate(timeout=60)
    assert json.loads(first)["hash"] == hashes[0]
    assert b"Traceback" not in errors and b"BrokenPipe" not in errors, errors.decode()
    assert export.returncode == 0, errors.decode()  # the reader had enough: not a failure
