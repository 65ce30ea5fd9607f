"""The audit log is hash-chained and append-only, on SQLite and PostgreSQL.

Tampering is done the way an attacker with database access would: around Fido, on a
connection of its own, with the append-only triggers dropped (SQLite) or disabled
(PostgreSQL)."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, create_engine, delete, event, select, text, update
from sqlalchemy.exc import DBAPIError

from pipeline import audit
from pipeline import db as database
from pipeline.audit import GENESIS, AppendOnlyError
from pipeline.db import Database
from pipeline.models import AuditEntry, Incident

ENTRIES = AuditEntry.__table__  # type: ignore[attr-defined]

DETAILS: dict[str, dict[str, Any]] = {
    "nested": {"b": {"z": [1, {"y": None, "x": [True, False]}], "a": {}}, "a": [[], [[]]]},
    "unicode": {
        "name": "Zoë 🐕 ﬁ 𝔘",
        "rtl": "שלום",
        "combining": "e\u0301",
        "escapes": 'tab\t"quote" back\\slash \u2028 \x7f',
    },
    "floats": {
        "half": 0.5,
        "third": 1 / 3,
        "tiny": 1.5e-7,
        "whole": 2.0,
        "huge": 1e300,
        "negative_zero": -0.0,
        "negative": -12.25,
        "big_int": 2**63 + 1,
    },
    "none": {"nothing": None, "empty": "", "zero": 0, "list": [None]},
    "keys": {"counts": {1: "one", 10: "ten", 2: "two"}, "pair": (1, 2.0)},
}


async def write(db: Database, *details: dict[str, Any], actor: str = "alice") -> list[AuditEntry]:
    """One transaction recording an entry per ``details``."""
    async with db.session() as session:
        written = [
            audit.record(
                session, actor=actor, verb="test.write", target=f"t{i}", incident_id=i, **detail
            )
            for i, detail in enumerate(details)
        ]
        await session.commit()
    return written


async def stored(url: str) -> list[AuditEntry]:
    """The entries as a fresh connection reads them back."""
    fresh = Database(url)
    try:
        async with fresh.session() as session:
            return await audit.entries(session)
    finally:
        await fresh.dispose()


def tamper(url: str, change: Callable[[Connection], Any]) -> None:
    """Run ``change`` as someone with database access would, around the triggers."""
    engine = create_engine(database.sync_url(url))
    with engine.begin() as connection:
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:
            connection.exec_driver_sql("DROP TRIGGER audit_entry_no_update")
            connection.exec_driver_sql("DROP TRIGGER audit_entry_no_delete")
        else:
            connection.exec_driver_sql("ALTER TABLE audit_entry DISABLE TRIGGER USER")
        change(connection)
        if not sqlite:
            connection.exec_driver_sql("ALTER TABLE audit_entry ENABLE TRIGGER USER")
    engine.dispose()


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(database.MIGRATIONS))
    cfg.attributes["fido_url"] = database.sync_url(url)
    return cfg


# -- the chain ---------------------------------------------------------------------------


async def test_entries_join_the_chain_when_the_transaction_commits(db: Database) -> None:
    async with db.session() as session:
        first = audit.record(session, actor="alice", verb="test.write", n=1)
        second = audit.record(session, actor="bob", verb="test.write", n=2)
        await session.flush()
        assert (first.id, first.hash) == (None, None)  # nothing is written before the commit
        await session.commit()
    [third] = await write(db, {"n": 3})

    assert [first.id, second.id, third.id] == [1, 2, 3]
    assert first.prev_hash == GENESIS
    assert second.prev_hash == first.hash and third.prev_hash == second.hash
    assert [e.hash for e in await stored(db.url)] == [first.hash, second.hash, third.hash]
    assert await audit.verify(db) == audit.Verdict(3, 3, str(third.hash))


async def test_an_empty_log_is_intact(db: Database) -> None:
    assert await audit.verify(db) == audit.Verdict(0, None, GENESIS)


async def test_entries_of_a_rolled_back_transaction_are_not_written(db: Database) -> None:
    async with db.session() as session:
        audit.record(session, actor="alice", verb="test.rolled_back")
        session.add(Incident(title="t"))
        await session.flush()
        await session.rollback()
        audit.record(session, actor="alice", verb="test.kept")
        await session.commit()
    async with db.session() as session:
        audit.record(session, actor="alice", verb="test.never_committed")
    assert [(e.id, e.verb) for e in await stored(db.url)] == [(1, "test.kept")]
    assert (await audit.verify(db)).broken is None


async def test_an_entry_added_directly_joins_the_chain_in_utc(db: Database) -> None:
    at = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=timezone(timedelta(hours=2)))
    async with db.session() as session:
        audit.record(session, actor="alice", verb="test.recorded")
        entry = AuditEntry(actor="bob", verb="test.added", at=at, detail={"x": 1.5})
        session.add(entry)
        await session.flush()  # waits for the commit, like a recorded entry
        assert entry.id is None
        await session.commit()
    [recorded, added] = await stored(db.url)
    assert (added.id, added.prev_hash) == (2, recorded.hash)
    assert audit.fields_of(added)["at"] == "2024-05-06T05:08:09.123456+00:00"
    assert (await audit.verify(db)).broken is None


@pytest.mark.parametrize("name", DETAILS)
async def test_hashes_verify_after_a_round_trip(db: Database, name: str) -> None:
    """What is hashed at commit is what either database gives back later — and what it
    gives back normalised (PostgreSQL ``jsonb``, SQLite ``json()``: other key order,
    whitespace and number forms) hashes the same."""
    detail = DETAILS[name]
    await write(db, detail, {"again": detail}, actor="zoë")
    async with db.session() as session:
        audit.record(session, actor="Ωmega", verb="test.write", target="host:ПК-1", **detail)
        await session.commit()

    entries = await stored(db.url)
    assert [audit.digest(audit.fields_of(e)) for e in entries] == [e.hash for e in entries]
    assert await audit.verify(db) == audit.Verdict(3, 3, str(entries[-1].hash))

    normalised = "detail::jsonb::text" if not db.sqlite else "json(detail)"
    async with db.engine.connect() as connection:
        rows = (await connection.execute(text(f"SELECT id, {normalised} FROM audit_entry"))).all()
    for entry, (entry_id, detail_text) in zip(entries, rows, strict=True):
        assert entry_id == entry.id
        reread = audit.fields_of(entry) | {"detail": audit._plain(json.loads(detail_text))}
        assert audit.digest(reread) == entry.hash


def test_the_canonical_form_is_pinned() -> None:
    """Changing it would break every stored chain: this is the form SIEMs recompute."""
    entry = AuditEntry(
        id=7,
        at=datetime(2025, 1, 2, 3, 4, 5, 6, tzinfo=UTC),
        actor="zoë",
        verb="action.succeeded",
        target="ad_disable_account:alice",
        incident_id=3,
        detail={"b": [2.0, 0.5, None], "a": "é"},
        prev_hash=GENESIS,
    )
    form = audit.canonical(audit.fields_of(entry))
    assert form == (
        b'{"actor":"zo\\u00eb","at":"2025-01-02T03:04:05.000006+00:00",'
        b'"detail":{"a":"\\u00e9","b":[2,0.5,null]},"id":7,"incident_id":3,'
        b'"prev_hash":"' + GENESIS.encode() + b'","target":"ad_disable_account:alice",'
        b'"verb":"action.succeeded"}'
    )
    assert audit.digest(audit.fields_of(entry)) == hashlib.sha256(form).hexdigest()
    reordered = AuditEntry(**(entry.model_dump() | {"detail": {"a": "é", "b": [2, 0.5, None]}}))
    assert audit.digest(audit.fields_of(reordered)) == audit.digest(audit.fields_of(entry))


async def test_concurrent_writers_keep_one_linear_chain(db: Database) -> None:
    """Writers interleave their transactions (two engines on PostgreSQL, as two replicas;
    SQLite's one connection serialises them) and every entry joins one chain."""
    replicas = [db] if db.sqlite else [db, Database(db.url)]

    async def writer(n: int) -> None:
        replica = replicas[n % len(replicas)]
        for round_ in range(5):
            async with replica.session() as session:
                for k in range(3):
                    audit.record(session, actor=f"w{n}", verb="test.concurrent", round=round_, k=k)
                    await asyncio.sleep(0)
                session.add(Incident(title=f"{n}/{round_}"))  # the transaction's own work
                await session.flush()
                await asyncio.sleep(0.001)
                await session.commit()

    try:
        await asyncio.gather(*(writer(n) for n in range(8)))
    finally:
        for replica in replicas[1:]:
            await replica.dispose()
    entries = await stored(db.url)
    assert [e.id for e in entries] == list(range(1, 121))
    assert await audit.verify(db) == audit.Verdict(120, 120, str(entries[-1].hash))


async def test_postgresql_commits_wait_for_the_chain_lock(db: Database) -> None:
    if db.sqlite:
        pytest.skip("SQLite transactions hold the write lock from their start")
    async with db.engine.connect() as holder:
        await holder.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": audit.CHAIN_LOCK})
        writing = asyncio.create_task(write(db, {"n": 1}))
        await asyncio.sleep(0.3)
        assert not writing.done()
        await holder.commit()
    [entry] = await asyncio.wait_for(writing, 5)
    assert entry.id == 1


# -- append-only ---------------------------------------------------------------------------


async def test_the_orm_refuses_updates_and_deletes(db: Database) -> None:
    await write(db, {"n": 1})
    attempts: list[Callable[[Any], Any]] = [
        lambda session: session.exec(update(AuditEntry).values(actor="mallory")),
        lambda session: session.exec(delete(AuditEntry)),
        lambda session: session.exec(update(ENTRIES).values(actor="mallory")),
    ]
    for attempt in attempts:
        async with db.session() as session:
            with pytest.raises(AppendOnlyError):
                await attempt(session)
    async with db.session() as session:
        entry = await session.get(AuditEntry, 1)
        assert entry is not None
        entry.actor = "mallory"
        with pytest.raises(AppendOnlyError, match="cannot be changed"):
            await session.commit()
    async with db.session() as session:
        entry = await session.get(AuditEntry, 1)
        await session.delete(entry)
        with pytest.raises(AppendOnlyError, match="cannot be deleted"):
            await session.commit()
    assert [e.actor for e in await stored(db.url)] == ["alice"]
    assert (await audit.verify(db)).broken is None


async def test_the_database_refuses_updates_and_deletes(db: Database) -> None:
    await write(db, {"n": 1})
    statements = ["UPDATE audit_entry SET actor = 'mallory'", "DELETE FROM audit_entry"]
    if not db.sqlite:
        statements.append("TRUNCATE audit_entry")
    engine = create_engine(database.sync_url(db.url))
    for statement in statements:
        with pytest.raises(DBAPIError, match="append-only"), engine.begin() as connection:
            connection.exec_driver_sql(statement)
    engine.dispose()
    assert [e.actor for e in await stored(db.url)] == ["alice"]


# -- what verify finds -----------------------------------------------------------------------


def _edit_actor(connection: Connection) -> None:
    connection.execute(update(ENTRIES).where(ENTRIES.c.id == 3).values(actor="mallory"))


def _edit_detail(connection: Connection) -> None:
    connection.execute(update(ENTRIES).where(ENTRIES.c.id == 3).values(detail={"n": 30}))


def _edit_time(connection: Connection) -> None:
    at = connection.execute(select(ENTRIES.c.at).where(ENTRIES.c.id == 3)).scalar_one()
    later = at + timedelta(microseconds=1)
    connection.execute(update(ENTRIES).where(ENTRIES.c.id == 3).values(at=later))


@pytest.mark.parametrize("edit", [_edit_actor, _edit_detail, _edit_time])
async def test_an_edited_entry_is_named(db: Database, edit: Callable[[Connection], Any]) -> None:
    await write(db, *({"n": n} for n in range(1, 6)))
    tamper(db.url, edit)
    verdict = await audit.verify(db)
    assert verdict.broken == audit.Break(3, "edited", "its contents no longer match its hash")
    assert (verdict.entries, verdict.last_id) == (2, 2)


async def test_a_deleted_entry_is_named_by_the_one_after_it(db: Database) -> None:
    await write(db, *({"n": n} for n in range(1, 6)))
    tamper(db.url, lambda c: c.execute(delete(ENTRIES).where(ENTRIES.c.id == 3)))
    broken = (await audit.verify(db)).broken
    assert broken is not None
    assert (broken.entry, broken.problem) == (4, "deleted")
    assert broken.reason.startswith("entries between 2 and 4 were deleted")


async def test_a_deleted_first_entry_is_noticed(db: Database) -> None:
    await write(db, {"n": 1}, {"n": 2})
    tamper(db.url, lambda c: c.execute(delete(ENTRIES).where(ENTRIES.c.id == 1)))
    broken = (await audit.verify(db)).broken
    assert broken is not None and (broken.entry, broken.problem) == (2, "deleted")


async def test_reordered_entries_are_named(db: Database) -> None:
    await write(db, *({"n": n} for n in range(1, 6)))

    def swap(connection: Connection) -> None:
        rows = {r.id: r._asdict() for r in connection.execute(select(ENTRIES))}
        for here, there in ((2, 3), (3, 2)):
            values = {k: v for k, v in rows[there].items() if k != "id"}
            connection.execute(update(ENTRIES).where(ENTRIES.c.id == here).values(**values))

    tamper(db.url, swap)
    broken = (await audit.verify(db)).broken
    assert broken is not None and (broken.entry, broken.problem) == (2, "reordered")


async def test_a_deleted_tail_is_found_only_with_an_anchor(db: Database) -> None:
    """The chain alone cannot show that its newest entries are gone: the hash verify
    printed before (kept elsewhere) can."""
    written = await write(db, *({"n": n} for n in range(1, 6)))
    anchor = (5, str(written[-1].hash))
    assert (await audit.verify(db, anchor=anchor)).broken is None
    tamper(db.url, lambda c: c.execute(delete(ENTRIES).where(ENTRIES.c.id == 5)))

    assert await audit.verify(db) == audit.Verdict(4, 4, str(written[3].hash))
    broken = (await audit.verify(db, anchor=anchor)).broken
    assert broken is not None and (broken.entry, broken.problem) == (5, "truncated")
    [replacement] = await write(db, {"n": 50})  # the next entry takes the deleted one's id
    assert replacement.id == 5 and (await audit.verify(db)).broken is None
    broken = (await audit.verify(db, anchor=anchor)).broken
    assert broken is not None and (broken.entry, broken.problem) == (5, "rewritten")


async def test_verify_reads_the_log_a_page_at_a_time(db: Database) -> None:
    await write(db, *({"n": n} for n in range(1, 8)))
    tamper(db.url, _edit_detail)
    statements: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if "FROM audit_entry" in statement:
            statements.append(statement)

    event.listen(db.engine.sync_engine, "before_cursor_execute", seen)
    try:
        verdict = await audit.verify(db, size=2)
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", seen)
    assert verdict.broken is not None and verdict.broken.entry == 3
    assert len(statements) == 2 and all("LIMIT" in s for s in statements)  # ids 1–2, 3–4


# -- the migration ---------------------------------------------------------------------------


def _rows_before_0009(sqlite: bool) -> list[dict[str, Any]]:
    offset = "" if sqlite else "+00"
    return [
        {
            "id": 1,
            "at": f"2024-01-01 10:00:00.000001{offset}",
            "actor": "fido",
            "verb": "incident.scored",
            "target": "generic",
            "incident_id": 1,
            "detail": '{"score": 40, "decision": "notify", "degraded": false, "ratio": 1.0}',
        },
        {
            "id": 2,
            "at": f"2024-01-01 10:00:01{offset}",
            "actor": "zoë",
            "verb": "action.succeeded",
            "target": "ad_disable_account:alice",
            "incident_id": None,
            "detail": '{"b": {"z": [1, 2.5, null]}, "a": "\\u00e9 🐕"}',
        },
        {  # a gap in the ids (a rolled-back sequence value) is not a break
            "id": 5,
            "at": f"2024-01-02 00:00:00.5{offset}",
            "actor": "U123",
            "verb": "refused",
            "target": "",
            "incident_id": 2,
            "detail": None,
        },
    ]


async def test_upgrading_a_populated_0008_database_chains_its_entries(database_url: str) -> None:
    cfg = alembic_config(database_url)
    command.upgrade(cfg, "0008")
    engine = create_engine(database.sync_url(database_url))
    sqlite = engine.dialect.name == "sqlite"
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO audit_entry (id, at, actor, verb, target, incident_id, detail) "
                "VALUES (:id, :at, :actor, :verb, :target, :incident_id, :detail)"
            ),
            _rows_before_0009(sqlite),
        )
    engine.dispose()
    database.upgrade(database_url)

    db = Database(database_url)
    try:
        entries = await stored(database_url)
        assert [e.id for e in entries] == [1, 2, 5]
        assert entries[0].prev_hash == GENESIS
        assert await audit.verify(db) == audit.Verdict(3, 5, str(entries[-1].hash))
        [new] = await write(db, {"after": "the upgrade"})
        assert (new.id, new.prev_hash) == (6, entries[-1].hash)
        assert (await audit.verify(db)).entries == 4
        async with db.engine.connect() as connection:  # the triggers are in place
            with pytest.raises(DBAPIError, match="append-only"):
                await connection.execute(text("DELETE FROM audit_entry"))
    finally:
        await db.dispose()


async def test_downgrade_drops_the_chain_and_upgrade_chains_again(db: Database) -> None:
    written = await write(db, {"n": 1}, {"n": 2})
    cfg = alembic_config(db.url)
    command.downgrade(cfg, "0008")
    engine = create_engine(database.sync_url(db.url))
    with engine.begin() as connection:  # no chain, no triggers; 0008's inserts work
        assert "hash" not in connection.execute(text("SELECT * FROM audit_entry")).keys()
        connection.execute(text("UPDATE audit_entry SET actor = 'bob' WHERE id = 2"))
        connection.execute(
            text(
                "INSERT INTO audit_entry (at, actor, verb, target) "
                "VALUES (CURRENT_TIMESTAMP, 'carol', 'test.old', '')"
            )
        )
    engine.dispose()
    database.upgrade(db.url)
    entries = await stored(db.url)
    assert [(e.id, e.actor) for e in entries] == [(1, "alice"), (2, "bob"), (3, "carol")]
    assert entries[0].hash == written[0].hash and entries[1].hash != written[1].hash
    assert await audit.verify(db) == audit.Verdict(3, 3, str(entries[-1].hash))
