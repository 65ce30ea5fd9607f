"""The SQL source against a real PostgreSQL and SQLite: cursor, restart, hostile values,
dead letters, and a URL whose password never shows."""

from __future__ import annotations

import base64
import json
import logging
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import (
    Column,
    DateTime,
    Engine,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    create_engine,
    func,
    inspect,
    select,
)

from integrations.detectors.generic import GenericDetector
from integrations.sources.sql import SQLSource, dump_value, load_value
from pipeline.db import Database
from pipeline.errors import ConfigError, IntegrationError
from pipeline.plugins import Source, sources
from pipeline.sources import cursor_of, poll
from tests.fixtures.servers import free_port, unavailable
from tests.integrations.sources.build import build_source
from tests.integrations.sources.files.helpers import dead_letters, stored_events

T0 = datetime(2026, 11, 28, 1, 0, tzinfo=UTC)


@dataclass
class AlertTable:
    url: str
    engine: Engine
    table: Table

    @property
    def name(self) -> str:
        return self.table.name

    def insert(self, *rows: dict[str, Any]) -> None:
        with self.engine.begin() as connection:
            connection.execute(self.table.insert(), list(rows))

    def count(self) -> int:
        with self.engine.connect() as connection:
            return int(connection.execute(select(func.count()).select_from(self.table)).scalar())

    def query(self, where: str = "id > :cursor", order: str = "id") -> str:
        return (
            f'SELECT id, title, severity, account AS "user", src_ip, ref, '
            f"created_at AS occurred_at, amount, blob FROM {self.name} "
            f"WHERE {where} ORDER BY {order} LIMIT :limit"
        )

    def source(self, name: str = "ids_db", **options: Any) -> SQLSource:
        settings: dict[str, Any] = {"query": self.query(), "cursor_column": "id"}
        settings.update(options)
        return SQLSource(name, "generic", url=self.url, **settings)


def row(n: int, **changes: Any) -> dict[str, Any]:
    values = {
        "id": n,
        "title": f"alert {n}",
        "severity": "high",
        "account": f"user{n}",
        "src_ip": f"203.0.113.{n}",
        "ref": f"r{n:03d}",
        "created_at": T0 + timedelta(minutes=n),
        "amount": Decimal("12.50"),
        "blob": b"\x00\xffraw",
    }
    return values | changes


@pytest.fixture(params=["sqlite", "postgresql"])
def alerts(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[AlertTable]:
    """A detector's own alert table, uniquely named, in SQLite or the real PostgreSQL."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'ids.db'}"
    else:
        url = os.environ.get("FIDO_TEST_DATABASE_URL", "")
        if not url:
            unavailable("FIDO_TEST_DATABASE_URL is not set (PostgreSQL)")
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    table = Table(
        f"ids_alerts_{uuid.uuid4().hex[:10]}",
        MetaData(),
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("title", Text, nullable=True),
        Column("severity", String(16)),
        Column("account", String(64)),
        Column("src_ip", String(45)),
        Column("ref", String(200)),
        Column("created_at", DateTime(timezone=True)),
        Column("amount", Numeric(10, 2)),
        Column("blob", LargeBinary),
    )
    table.create(engine)
    try:
        yield AlertTable(url, engine, table)
    finally:
        table.drop(engine, checkfirst=True)
        engine.dispose()


def test_registered_and_a_source(tmp_path: Path) -> None:
    assert sources.get("sql") is SQLSource
    url = f"sqlite:///{tmp_path}/x.db"
    source = SQLSource("s", "generic", url=url, query="SELECT :cursor, :limit", cursor_column="id")
    assert isinstance(source, Source)


async def test_rows_become_events_and_a_restart_continues(db: Database, alerts: AlertTable) -> None:
    hostile = f"'); DROP TABLE {alerts.name}; --"
    alerts.insert(row(1), row(2, title=hostile, account="o'brien"), row(3))
    detector = GenericDetector()
    source = alerts.source(initial_cursor=0)
    result = await poll(db=db, source=source, detector=detector)
    source.dispose()
    assert (len(result.created), result.dead_letters) == (3, 0)
    events = await stored_events(db)
    assert [e.title for e in events] == ["alert 1", hostile, "alert 3"]
    assert events[1].observables["users"] == ["o'brien"]
    assert events[0].observables["src_ips"] == ["203.0.113.1"]
    assert events[0].occurred_at is not None
    assert events[0].occurred_at.replace(tzinfo=UTC) == T0 + timedelta(minutes=1)
    payload = json.loads(events[0].raw)
    assert base64.b64decode(payload["blob"]) == b"\x00\xffraw"
    assert Decimal(str(payload["amount"])) == Decimal("12.50")
    if alerts.engine.dialect.name == "postgresql":  # SQLite keeps NUMERIC as a float
        assert payload["amount"] == "12.50"
        assert payload["occurred_at"] == "2026-11-28T01:01:00+00:00"
    assert await cursor_of(db, "ids_db") == {"value": 3, "type": "int"}
    assert alerts.count() == 3 and inspect(alerts.engine).has_table(alerts.name)

    restarted = alerts.source(initial_cursor=0)  # a new process: only the stored cursor
    again = await poll(db=db, source=restarted, detector=detector)
    assert (again.created, again.duplicates) == ([], 0)
    alerts.insert(row(4), row(5))
    more = await poll(db=db, source=restarted, detector=detector)
    restarted.dispose()
    assert (len(more.created), more.duplicates) == (2, 0)
    assert [e.title for e in await stored_events(db)][-2:] == ["alert 4", "alert 5"]


async def test_batches_follow_each_other_in_one_poll(db: Database, alerts: AlertTable) -> None:
    alerts.insert(*(row(n) for n in range(1, 6)))
    source = alerts.source(initial_cursor=0, batch_size=2)
    first = await source.fetch({"value": 0, "type": "int"})
    assert len(first.payloads) == 2 and first.more
    result = await poll(db=db, source=source, detector=GenericDetector())
    source.dispose()
    assert (len(result.created), result.batches) == (5, 3)


async def test_unparsable_row_is_a_dead_letter_without_blocking(
    db: Database, alerts: AlertTable
) -> None:
    alerts.insert(row(1), row(2, title=None), row(3))
    source = alerts.source(initial_cursor=0)
    result = await poll(db=db, source=source, detector=GenericDetector())
    assert (len(result.created), result.dead_letters) == (2, 1)
    (letter,) = await dead_letters(db)
    assert json.loads(letter.body)["id"] == 2 and letter.source == "ids_db"
    assert "title" in letter.error
    assert await cursor_of(db, "ids_db") == {"value": 3, "type": "int"}
    later = await poll(db=db, source=source, detector=GenericDetector())
    source.dispose()
    assert (later.created, later.dead_letters) == ([], 0)


async def test_hostile_cursor_value_is_bound_not_formatted(alerts: AlertTable) -> None:
    hostile = f"b'); DROP TABLE {alerts.name}; --"
    alerts.insert(row(1, ref="a"), row(2, ref=hostile), row(3, ref="c"))
    source = alerts.source(
        query=alerts.query(where="ref > :cursor", order="ref"),
        cursor_column="ref",
        initial_cursor="",
        batch_size=1,
    )
    seen, cursor = [], {}
    for _ in range(4):
        batch = await source.fetch(cursor)
        seen += [json.loads(p)["ref"] for p in batch.payloads]
        cursor = batch.cursor
    source.dispose()
    assert seen == ["a", hostile, "c"]
    assert cursor == {"value": "c", "type": "str"}
    assert alerts.count() == 3


async def test_timestamp_cursor_goes_back_as_the_same_type(alerts: AlertTable) -> None:
    alerts.insert(*(row(n) for n in range(1, 5)))
    source = alerts.source(
        query=alerts.query(where="created_at > :cursor", order="created_at"),
        cursor_column="occurred_at",
        initial_cursor=T0,
        batch_size=3,
    )
    first = await source.fetch({})
    second = await source.fetch(first.cursor)
    source.dispose()
    assert [json.loads(p)["id"] for p in first.payloads + second.payloads] == [1, 2, 3, 4]
    expected = "datetime" if alerts.engine.dialect.name == "postgresql" else "str"
    assert first.cursor["type"] == expected  # SQLite hands back the stored text


@pytest.mark.parametrize(
    "value",
    [
        7,
        2.5,
        "r'; --",
        True,
        Decimal("12.50"),
        T0,
        T0.date(),
        T0.time(),
        uuid.UUID(int=5),
        b"\x00\xff",
    ],
)
def test_cursor_values_keep_their_type(value: Any) -> None:
    stored = dump_value(value, "c")
    assert json.loads(json.dumps(stored)) == stored  # JSON-safe
    back = load_value(stored)
    assert back == value and type(back) is type(value)


def test_a_cursor_of_an_unknown_type_is_refused() -> None:
    with pytest.raises(ConfigError, match="cannot be a cursor"):
        dump_value(object(), "c")
    with pytest.raises(IntegrationError, match="unreadable"):
        load_value({"value": "x", "type": "complex"})


async def test_null_cursor_before_the_first_row(alerts: AlertTable) -> None:
    alerts.insert(row(1), row(2))
    where = "CAST(:cursor AS INTEGER) IS NULL OR id > :cursor"
    source = alerts.source(query=alerts.query(where=where))
    batch = await source.fetch({})
    source.dispose()
    assert [json.loads(p)["id"] for p in batch.payloads] == [1, 2]


async def test_the_source_cannot_write(alerts: AlertTable) -> None:
    source = alerts.source(query=f"DELETE FROM {alerts.name} WHERE :cursor = :limit")
    alerts.insert(row(1))
    with pytest.raises(IntegrationError, match="(?i)read.?only"):
        await source.fetch({"value": 1, "type": "int"})
    source.dispose()
    assert alerts.count() == 1


async def test_password_never_shows(caplog: pytest.LogCaptureFixture) -> None:
    password = "s3cret-Pw-7"
    url = f"postgresql://fido:{password}@127.0.0.1:{free_port()}/nothing"
    source = SQLSource(
        "s", "generic", url=url, query="SELECT 1 AS id WHERE :cursor = :limit", cursor_column="id"
    )
    with caplog.at_level(logging.DEBUG), pytest.raises(IntegrationError) as caught:
        await source.fetch({})
    source.dispose()
    assert password not in str(caught.value) and "***" in str(caught.value)
    assert password not in caplog.text and password not in repr(source)


def test_the_url_may_be_read_from_the_environment(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/ids.db"
    options = {"url_env": "IDS_DB_URL", "query": "SELECT :cursor, :limit", "cursor_column": "id"}
    source = build_source("sql", options, name="ids", environ={"IDS_DB_URL": url})
    assert (source.name, source.detector, str(source.url)) == ("ids", "generic", url)
    with pytest.raises(ConfigError, match=r"^source ids \(sql\): IDS_DB_URL is not set"):
        build_source("sql", options, name="ids")
    with pytest.raises(ConfigError, match=r"^source ids \(sql\): url is not a database URL"):
        build_source("sql", options, name="ids", environ={"IDS_DB_URL": "not a url"})


GOOD = {"url": "sqlite://", "query": "SELECT :cursor, :limit", "cursor_column": "id"}


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"url": None}, "exactly one of"),
        ({"url_env": "X"}, "exactly one of"),
        ({"query": "SELECT * FROM t WHERE id > :cursor"}, ":limit"),
        ({"query": None}, "option 'query' is required"),
        ({"cursor_column": None}, "option 'cursor_column' is required"),
        ({"colour": "red"}, "unknown option 'colour'"),
        ({"url": "not a url"}, "database URL"),
        ({"batch_size": 0}, "batch_size"),
    ],
)
def test_bad_options_are_config_errors(changes: dict[str, Any], message: str) -> None:
    options = {key: value for key, value in (GOOD | changes).items() if value is not None}
    with pytest.raises(ConfigError, match=rf"^source s \(sql\): .*{message}"):
        build_source("sql", options)


def test_good_options_pass() -> None:
    source = build_source("sql", GOOD)
    assert source.cursor_column == "id" and source.batch_size == 500
