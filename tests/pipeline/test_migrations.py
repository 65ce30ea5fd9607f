"""The Alembic migrations build exactly the schema the models describe, go both ways, keep
the rows of a populated database from every earlier revision, and run once when several
processes start together."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import (
    JSON,
    Boolean,
    Connection,
    Date,
    DateTime,
    Float,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    String,
    create_engine,
    func,
    select,
)
from sqlmodel import SQLModel

from pipeline import audit
from pipeline.db import MIGRATIONS, Database, sync_url, upgrade
from pipeline.incidents import IncidentService
from pipeline.models import AuditEntry, Event, Incident, IncidentKey
from pipeline.policy import Policy
from pipeline.records import breakdown_of, enrichment_of, history_of, proposals_of


def config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["fido_url"] = sync_url(url)
    return cfg


REVISIONS = [
    script.revision
    for script in reversed(list(ScriptDirectory.from_config(config("sqlite://")).walk_revisions()))
]


def test_models_and_migrations_agree(database_url: str) -> None:
    upgrade(database_url)
    command.check(config(database_url))  # raises when autogenerate would find a difference


def test_downgrade_to_nothing_and_back(database_url: str) -> None:
    upgrade(database_url)
    command.downgrade(config(database_url), "base")
    upgrade(database_url)
    command.check(config(database_url))


def test_upgrade_logs_one_line(database_url: str, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("INFO"):
        assert upgrade(database_url, REVISIONS[2]) == (None, REVISIONS[2])
        assert upgrade(database_url) == (REVISIONS[2], REVISIONS[-1])
        assert upgrade(database_url) == (REVISIONS[-1], REVISIONS[-1])
    assert [r.getMessage() for r in caplog.records] == [
        f"database migrated from revision (empty) to {REVISIONS[2]}",
        f"database migrated from revision {REVISIONS[2]} to {REVISIONS[-1]}",
        f"database at revision {REVISIONS[-1]}",
    ]


_START = """
import sys, time
from pipeline.db import upgrade
time.sleep(max(0.0, float(sys.argv[2]) - time.time()))
print(*upgrade(sys.argv[1]))
"""


def test_processes_starting_together_migrate_once(database_url: str) -> None:
    """Six processes migrating one empty PostgreSQL schema at the same instant all succeed,
    and exactly one of them ran the migrations; the others waited, then found it current.
    (SQLite is one process's database: nothing to race there.)"""
    if not database_url.startswith("postgresql"):
        pytest.skip("replicas share PostgreSQL")
    at = str(time.time() + 4)  # every process imported and waiting by then
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", _START, database_url, at],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(6)
    ]
    outcomes = [process.communicate(timeout=120) for process in processes]
    assert [process.returncode for process in processes] == [0] * 6, outcomes
    head = REVISIONS[-1]
    assert sorted(out.strip() for out, _ in outcomes) == [f"{head} {head}"] * 5 + [f"None {head}"]
    command.check(config(database_url))


# --- a populated database, upgraded from every earlier revision ------------------------

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
# what a real row holds where a generic value would not be representative
VALUES: dict[tuple[str, str], Any] = {
    ("event", "status"): "done",
    ("event", "severity"): "high",
    ("event", "observables"): {"users": ["alice"], "hosts": ["pc-1"], "ips": ["203.0.113.9"]},
    ("event", "raw"): b'{"id": "e-1", "title": "Mimikatz on pc-1"}',
    ("incident", "status"): "open",
    ("incident", "decision"): "ask_approval",
    ("incident", "severity"): "high",
    ("incident", "score"): 72,
    ("incident", "observables"): {"users": ["alice"], "hosts": ["pc-1"]},
    ("incident", "detectors"): ["generic"],
    ("incident", "score_breakdown"): [
        {"points": 40, "reason": "detector severity high", "component": "threat"},
        {"points": 32, "reason": "alice is privileged", "component": "user"},
    ],
    ("incident", "proposed_actions"): [{"responder": "ad_disable_account", "target": "alice"}],
    ("incident", "enrichment"): {
        "active_directory": {"status": "ok", "facts": {"user:alice": {"privileged": True}}}
    },
    ("action", "status"): "succeeded",
    ("action", "responder"): "ad_disable_account",
    ("action", "target"): "alice",
    ("action", "undo_data"): {"userAccountControl": 512},
    ("outbox", "status"): "sent",
    ("audit_entry", "detail"): {"score": 72},
}


def _value(table: str, column: Any, parents: dict[str, int], model_default: Any) -> Any:
    key = (table, column.name)
    if key in VALUES:
        return VALUES[key]
    for foreign in column.foreign_keys:  # None: a row of its own table (none yet)
        return parents.get(foreign.column.table.name)
    if model_default is not None:
        return model_default
    kind = column.type
    if isinstance(kind, JSON):
        return {}
    if isinstance(kind, Boolean):
        return False
    if isinstance(kind, DateTime):
        return NOW
    if isinstance(kind, Date):
        return NOW.date()
    if isinstance(kind, Integer):
        return 1
    if isinstance(kind, Float | Numeric):
        return 1.0
    if isinstance(kind, LargeBinary):
        return b"{}"
    if isinstance(kind, String):
        return f"{table}-{column.name}"[: kind.length or 64]
    raise AssertionError(f"no sample value for {table}.{column.name} ({kind!r})")


def _defaults() -> dict[str, dict[str, Any]]:
    """Each head model's field defaults, by table: a status column gets a real status."""
    found: dict[str, dict[str, Any]] = {}
    for mapper in SQLModel._sa_registry.mappers:
        model = mapper.class_
        found[model.__tablename__] = {
            name: field.get_default(call_default_factory=True)
            for name, field in model.model_fields.items()
            if not field.is_required()
        }
    return found


def _serial(table: Any) -> bool:
    """Whether the table's key is one integer the database numbers itself."""
    keys = list(table.primary_key.columns)
    return len(keys) == 1 and isinstance(keys[0].type, Integer)


def populate(connection: Connection) -> dict[str, int]:
    """One row in every table the schema has at its revision, parents first; returns the
    tables written and their row counts."""
    schema = MetaData()
    schema.reflect(connection)
    defaults = _defaults()
    parents: dict[str, int] = {}
    written: dict[str, int] = {}
    for table in schema.sorted_tables:
        if table.name == "alembic_version":
            continue
        if table.name == "audit_entry" and "hash" in table.columns:
            continue  # chained by the application from here on (written below through it)
        row = {
            column.name: _value(table.name, column, parents, defaults[table.name].get(column.name))
            for column in table.columns
            if not (column.primary_key and _serial(table))
        }
        keys = list(table.primary_key.columns)
        inserted = connection.execute(table.insert().values(row).returning(*keys)).first()
        assert inserted is not None
        if _serial(table):
            parents[table.name] = inserted[0]
        written[table.name] = 1
    return written


@pytest.mark.parametrize("start", REVISIONS[:-1])
async def test_a_populated_database_upgrades_from_every_revision(
    database_url: str, start: str
) -> None:
    upgrade(database_url, start)
    engine = create_engine(sync_url(database_url))
    with engine.begin() as connection:
        written = populate(connection)
    assert {"event", "incident"} <= written.keys()
    upgrade(database_url)
    schema = MetaData()
    with engine.connect() as connection:
        schema.reflect(connection)
        for table, count in written.items():  # every row survived
            assert (
                connection.execute(select(func.count()).select_from(schema.tables[table])).scalar()
                == count
            ), table
    engine.dispose()

    db = Database(database_url)
    try:  # and the application reads them, and writes beside them
        async with db.session() as session:
            for mapper in SQLModel._sa_registry.mappers:  # every row loads as its model
                rows = (await session.exec(select(mapper.class_))).all()  # type: ignore[call-overload]
                if mapper.class_.__tablename__ in written:
                    assert len(rows) == written[mapper.class_.__tablename__], mapper.class_
            if "incident_key" not in written:  # filed under its keys by the migration
                keys = (await session.exec(select(IncidentKey.key))).scalars().all()  # type: ignore[call-overload]
                assert sorted(keys) == ["host:pc-1", "user:alice"]
            [incident] = (await session.exec(select(Incident))).scalars().all()  # type: ignore[call-overload]
            [event] = (await session.exec(select(Event))).scalars().all()  # type: ignore[call-overload]
        assert event.observables["users"] == ["alice"] and event.incident_id == incident.id
        assert [line.points for line in breakdown_of(incident.score_breakdown)] == [40, 32]
        assert [p.target for p in proposals_of(incident.proposed_actions)] == ["alice"]
        assert "active_directory" in enrichment_of(incident.enrichment)
        history_of(incident.history)
        service = IncidentService(db=db, policy=Policy())
        found = await service.get(incident.id or 0)
        assert found is not None and found[0].score == 72
        counts = await service.counts()
        assert counts.events.get("done") == 1
        async with db.session() as session:
            audit.record(session, actor="test", verb="incident.closed", incident_id=incident.id)
            await session.commit()
        verdict = await audit.verify(db)
        assert verdict.broken is None
        assert verdict.entries == 1 + written.get("audit_entry", 0)
        async with db.session() as session:
            assert len((await session.exec(select(AuditEntry))).all()) == verdict.entries  # type: ignore[call-overload]
    finally:
        await db.dispose()


def test_a_failing_migration_reports_its_own_error_and_releases_the_lock(
    database_url: str,
) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("the migration lock is PostgreSQL's (and SQLite's DDL is not undone)")
    engine = create_engine(sync_url(database_url))
    with engine.begin() as connection:  # a table in the way of the first revision
        connection.exec_driver_sql("CREATE TABLE event (id INTEGER PRIMARY KEY)")
    with pytest.raises(Exception, match="already exists"):
        upgrade(database_url)
    with engine.begin() as connection:
        connection.exec_driver_sql("DROP TABLE event")
    engine.dispose()
    assert upgrade(database_url) == (None, REVISIONS[-1])  # not waiting on a lock left held


def test_upgrade_reports_each_migration_it_applies(tmp_path: Path) -> None:
    """What a progress bar on a long migration is fed: (done, total), nothing when current."""
    url = f"sqlite:///{tmp_path / 'progress.db'}"
    seen: list[tuple[int, int]] = []
    upgrade(url, progress=lambda done, total: seen.append((done, total)))
    total = seen[0][1]
    assert total >= 11 and seen == [(n, total) for n in range(total + 1)]
    seen.clear()
    upgrade(url, progress=lambda done, total: seen.append((done, total)))
    assert seen == []  # already at head: no bar
