"""SQLite for the async engine without a thread hop per statement.

aiosqlite runs every statement on its own thread and hands the answer back through the
event loop, so each statement waits for the loop's next turn. Under load a turn takes
milliseconds, a transaction makes a dozen statements, and SQLite has one writer: the
writer's lock ends up held mostly while waiting for turns (measured: ~17 ms per webhook
transaction, 58 alerts/s from 32 clients, with the process mostly idle).

Here the same ``sqlite3`` calls run inline, on the event loop's thread: a statement costs
what SQLite costs (microseconds; about 1 ms for a commit's fsync), and a transaction that
awaits nothing else runs in one turn. SQLAlchemy's aiosqlite dialect drives these objects
exactly as it drives aiosqlite's (``create_async_engine(async_creator=…)``); only the
methods it calls are provided.

The trade: a statement blocks the loop while SQLite works. That is the right trade for
SQLite's small statements, and for one process. Waiting for another process's write lock
(a CLI command writing at the same time) also blocks, up to ``busy_timeout``; those
transactions are short. Deployments with several processes use PostgreSQL.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite
from sqlalchemy.engine import URL


class InlineCursor:
    """The subset of ``aiosqlite.Cursor`` SQLAlchemy uses, run inline."""

    def __init__(self, cursor: sqlite3.Cursor) -> None:
        self._cursor = cursor

    async def __aenter__(self) -> InlineCursor:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._cursor.close()

    async def execute(self, sql: str, parameters: Sequence[Any] | None = None) -> InlineCursor:
        if parameters is None:
            self._cursor.execute(sql)
        else:
            self._cursor.execute(sql, parameters)
        return self

    async def executemany(self, sql: str, parameters: Iterable[Sequence[Any]]) -> InlineCursor:
        self._cursor.executemany(sql, parameters)
        return self

    async def fetchone(self) -> Any:
        return self._cursor.fetchone()

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        return self._cursor.fetchmany(size if size is not None else self._cursor.arraysize)

    async def fetchall(self) -> list[Any]:
        return self._cursor.fetchall()

    async def close(self) -> None:
        self._cursor.close()

    @property
    def description(self) -> Any:
        return self._cursor.description

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    @property
    def lastrowid(self) -> int | None:
        return self._cursor.lastrowid

    @property
    def arraysize(self) -> int:
        return self._cursor.arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._cursor.arraysize = value


class _RunNow:
    """Stands in for aiosqlite's request queue, which SQLAlchemy's dialect uses directly to
    set ``isolation_level``: the request runs at once and its future is resolved."""

    def put_nowait(self, item: tuple[asyncio.Future[Any], Callable[[], Any]]) -> None:
        future, function = item
        try:
            future.set_result(function())
        except Exception as exc:  # handed to the awaiting caller, as aiosqlite does
            future.set_exception(exc)


class InlineConnection:
    """The subset of ``aiosqlite.Connection`` SQLAlchemy uses, run inline."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._conn = connection
        self._connection: sqlite3.Connection | None = connection  # None once closed
        self._tx = _RunNow()

    def cursor(self) -> InlineCursor:
        return InlineCursor(self._conn.cursor())

    @property
    def isolation_level(self) -> str | None:
        return self._conn.isolation_level

    async def create_function(self, *args: Any, **kwargs: Any) -> None:
        self._conn.create_function(*args, **kwargs)

    async def commit(self) -> None:
        self._conn.commit()

    async def rollback(self) -> None:
        self._conn.rollback()

    async def close(self) -> None:
        if self._connection is not None:
            self._connection = None
            self._conn.close()

    def stop(self) -> None:
        """Force-close (SQLAlchemy's terminate)."""
        if self._connection is not None:
            self._connection = None
            self._conn.close()


def creator(url: URL, *, timeout: float) -> Callable[[], Any]:
    """An ``async_creator`` for ``create_async_engine``: inline connections to the SQLite
    database of ``url``, read the way SQLAlchemy's own sqlite dialect reads it."""
    args, options = SQLiteDialect_pysqlite().create_connect_args(url)
    options = {**options, "timeout": timeout}
    connect_to: Callable[..., sqlite3.Connection] = sqlite3.connect

    async def connect() -> InlineConnection:
        return InlineConnection(connect_to(*args, **options))

    return connect
