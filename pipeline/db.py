"""The database: engine, sessions, migrations.

SQLite (WAL mode) by default, PostgreSQL through the same ``FIDO_DATABASE_URL``. The
application talks to it asynchronously (aiosqlite, psycopg 3); Alembic migrates it with the
matching synchronous driver, on start and by ``fido db upgrade``. On PostgreSQL a migration
runs under an advisory lock (``MIGRATION_LOCK``), so replicas started together migrate once:
the others wait for it, then find the revision current. A start logs one line about it.

Nothing waits on the database for long: connecting gives up after ``CONNECT_TIMEOUT``
seconds (libpq would wait 130), a free pooled connection is waited for ``POOL_TIMEOUT``
seconds, and PostgreSQL cancels a statement after ``STATEMENT_TIMEOUT_MS``. ``unreachable``
says whether an error means the database cannot be reached (the webhook answers 503).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlmodel.ext.asyncio.session import AsyncSession

from pipeline import sqlite_inline
from pipeline.errors import ConfigError

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).with_name("migrations")
CONNECT_TIMEOUT = 4  # seconds per address; psycopg tries each address of a host name
POOL_TIMEOUT = 5  # seconds to wait for a pooled connection
STATEMENT_TIMEOUT_MS = 30_000  # PostgreSQL cancels a statement running longer
SQLITE_BUSY_TIMEOUT = 10  # seconds SQLite waits for another writer's lock

_ASYNC = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+psycopg"}
_SYNC = {"sqlite": "sqlite", "postgresql": "postgresql+psycopg"}


def _parse(url: str) -> URL:
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError(f"FIDO_DATABASE_URL is not a database URL: {url!r}") from None
    backend = parsed.get_backend_name()
    if backend == "postgres":
        backend = "postgresql"
    if backend not in _ASYNC:
        raise ConfigError(
            f"FIDO_DATABASE_URL: unsupported database {backend!r} (use sqlite or postgresql)"
        )
    return parsed.set(drivername=backend)


def _with_timeouts(parsed: URL, *, statements: bool) -> URL:
    """A PostgreSQL URL with a connect timeout and (for the application, not for
    migrations, which may rewrite large tables) a statement timeout, unless it sets them."""
    if parsed.drivername != "postgresql":
        return parsed
    query = dict(parsed.query)
    query.setdefault("connect_timeout", str(CONNECT_TIMEOUT))
    options = str(query.get("options", ""))
    if statements and "statement_timeout" not in options:
        query["options"] = f"{options} -c statement_timeout={STATEMENT_TIMEOUT_MS}".strip()
    return parsed.set(query=query)


def async_url(url: str) -> URL:
    parsed = _with_timeouts(_parse(url), statements=True)
    return parsed.set(drivername=_ASYNC[parsed.drivername])


def sync_url(url: str) -> URL:
    parsed = _with_timeouts(_parse(url), statements=False)
    return parsed.set(drivername=_SYNC[parsed.drivername])


def is_sqlite(url: str) -> bool:
    return _parse(url).drivername == "sqlite"


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # The driver would begin a transaction only at the first write, so a transaction's
    # reads would not be part of it (two writers could both read event_count 1 and both
    # write 2). SQLAlchemy begins every transaction itself instead (_sqlite_begin).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT * 1000}")
    cursor.close()


_DURABLE: ContextVar[bool] = ContextVar("fido_durable_commit", default=True)


def _sqlite_begin(connection: Any) -> None:
    """BEGIN IMMEDIATE: a transaction takes SQLite's one write lock when it starts (waiting
    up to the busy timeout), so what it read is still true when it writes. Before it, the
    connection's ``synchronous`` is set for the session's durability (``Database.session``).
    """
    wanted = "FULL" if _DURABLE.get() else "NORMAL"
    info = connection.connection.info
    if info.get("synchronous") != wanted:
        connection.exec_driver_sql(f"PRAGMA synchronous={wanted}")
        info["synchronous"] = wanted
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def _postgresql_begin(connection: Any) -> None:
    if not _DURABLE.get():
        connection.exec_driver_sql("SET LOCAL synchronous_commit TO OFF")


# PostgreSQL advisory lock held around a migration, so replicas started together migrate
# once: the first takes it and upgrades; the others wait, then find the revision current.
# (A session lock: behind a pooler, migrate through a session-mode connection.)
MIGRATION_LOCK = 0x6669646F6D696772  # "fidomigr"


def _quiet_alembic() -> None:
    """Alembic logs a line per revision and two about its context; ``upgrade`` logs one
    line instead. Alembic's own lines come back with FIDO_LOG_LEVEL=debug."""
    alembic_log = logging.getLogger("alembic")
    if alembic_log.level == logging.NOTSET and not log.isEnabledFor(logging.DEBUG):
        alembic_log.setLevel(logging.WARNING)


def _unlock_migrations(connection: Any) -> None:
    """Release the migration lock, after a failed migration too (its transaction rolled
    back first); a connection that is gone has released it already."""
    try:
        connection.rollback()
        connection.exec_driver_sql(f"SELECT pg_advisory_unlock({MIGRATION_LOCK})")
        connection.commit()
    except DBAPIError:
        pass


def upgrade(
    url: str, revision: str = "head", *, progress: Callable[[int, int], None] | None = None
) -> tuple[str | None, str | None]:
    """Bring the schema to ``revision`` with Alembic (synchronous), under the migration
    lock on PostgreSQL. Returns the revisions before and after; logs one line.
    ``progress(done, total)`` hears of each migration applied (none: nothing to do)."""
    _quiet_alembic()  # before the import: Alembic logs as its plugins load
    from alembic import command
    from alembic.config import Config
    from alembic.runtime.migration import MigrationContext
    from sqlalchemy import create_engine, pool

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    engine = create_engine(sync_url(url), poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            postgresql = connection.dialect.name == "postgresql"
            if postgresql:  # waits while another process migrates; kept across commits
                connection.exec_driver_sql(f"SELECT pg_advisory_lock({MIGRATION_LOCK})")
                connection.commit()
            try:
                before = MigrationContext.configure(connection).get_current_revision()
                connection.commit()
                config.attributes["connection"] = connection
                if progress is not None:
                    _report_steps(config, before, revision, progress)
                command.upgrade(config, revision)
                after = MigrationContext.configure(connection).get_current_revision()
                connection.commit()
            finally:
                if postgresql:
                    _unlock_migrations(connection)
            if not postgresql:
                # switch the file to WAL once, here, rather than racing from many first
                # connections
                connection.exec_driver_sql("PRAGMA journal_mode=WAL")
                connection.commit()
    finally:
        engine.dispose()
    if before == after:
        log.info("database at revision %s", after)
    else:
        log.info("database migrated from revision %s to %s", before or "(empty)", after)
    return before, after


def _report_steps(
    config: Any, before: str | None, revision: str, progress: Callable[[int, int], None]
) -> None:
    """Have each migration Alembic applies reported to ``progress`` (done, total)."""
    from alembic.script import ScriptDirectory

    steps = list(ScriptDirectory.from_config(config).iterate_revisions(revision, before))
    if not steps:
        return
    done = [0]
    progress(0, len(steps))

    def applied(**_: Any) -> None:
        done[0] += 1
        progress(done[0], len(steps))

    config.attributes["on_version_apply"] = applied


_SQLITE_UNAVAILABLE = ("locked", "busy", "unable to open", "disk i/o")


def unreachable(exc: BaseException) -> bool:
    """Whether ``exc`` means the database cannot be reached or answer now (refused, timed
    out, connection lost, no pooled connection free, SQLite locked or unopenable), as
    opposed to a bad statement."""
    if isinstance(exc, PoolTimeout | InterfaceError):
        return True
    if isinstance(exc, OperationalError):
        if isinstance(exc.orig, sqlite3.OperationalError):  # also "no such table", …
            return any(word in str(exc.orig).lower() for word in _SQLITE_UNAVAILABLE)
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


def first_line(exc: BaseException) -> str:
    """The driver's own first line about ``exc`` (SQLAlchemy adds several)."""
    reason = getattr(exc, "orig", None) or exc
    return (str(reason).strip().splitlines() or [type(reason).__name__])[0]


async def upgrade_when_reachable(
    url: str, *, attempts: int = 20, delay: float = 1.0, max_delay: float = 15.0
) -> None:
    """``upgrade`` at start-up, waiting for a PostgreSQL that is not up yet: each failed
    attempt is one log line, then a pause that doubles up to ``max_delay``; after
    ``attempts`` (about four minutes by default) a ConfigError says why. A SQLite file that
    cannot be opened is a ConfigError at once: there is nothing to wait for."""
    tries = 1 if is_sqlite(url) else attempts
    for attempt in range(1, tries + 1):
        try:
            await asyncio.to_thread(upgrade, url)
            return
        except (OperationalError, InterfaceError) as exc:
            reason = first_line(exc)
            if attempt == tries:
                log.warning(
                    "database unreachable (attempt %d of %d): %s; giving up", attempt, tries, reason
                )
                raise ConfigError(
                    f"the database is unreachable after {tries} attempts: {reason}"
                ) from None
            pause = min(delay * 2 ** (attempt - 1), max_delay)
            log.warning(
                "database unreachable (attempt %d of %d): %s; retrying in %g s",
                attempt,
                tries,
                reason,
                pause,
            )
            await asyncio.sleep(pause)


class Database:
    """One async engine and its session factory, and ``replica``: the name of the process
    using it among the replicas sharing the database (``FIDO_REPLICA`` in ``fido serve``),
    written on what it starts and might leave half-done (a running action)."""

    def __init__(self, url: str, *, replica: str | None = None) -> None:
        self.url = url
        self.replica = replica[:128] if replica else None
        self.sqlite = is_sqlite(url)
        options: dict[str, Any] = {"pool_timeout": POOL_TIMEOUT}
        if self.sqlite:
            # SQLite has one writer at a time, and a writer waiting for the file's lock
            # polls it with sleeps of up to 100 ms. One pooled connection makes the
            # process's transactions queue for it instead, first come first served; its
            # statements run inline, without a thread hop each (pipeline/sqlite_inline.py).
            options.update(
                pool_size=1,
                max_overflow=0,
                async_creator=sqlite_inline.creator(sync_url(url), timeout=SQLITE_BUSY_TIMEOUT),
            )
        self.engine: AsyncEngine = create_async_engine(async_url(url), **options)
        if self.sqlite:
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
            event.listen(self.engine.sync_engine, "begin", _sqlite_begin)
        else:
            event.listen(self.engine.sync_engine, "begin", _postgresql_begin)
        self._sessions = async_sessionmaker(
            self.engine, class_=AsyncSession, expire_on_commit=False
        )

    @asynccontextmanager
    async def session(self, *, durable: bool = True) -> AsyncIterator[AsyncSession]:
        """A session. Its commits are durable by default: on disk before ``commit`` returns,
        so they survive a power loss. ``durable=False`` is for the pipeline's own steps
        (claims, triage, lookup caches, outbox bookkeeping), whose commits survive a crash
        of Fido but may be undone by a power loss or an OS crash, which then replays them
        from the durable state before (an event is triaged again, a card may be posted
        twice). They cost no fsync (SQLite ``synchronous=NORMAL`` in WAL mode, PostgreSQL
        ``synchronous_commit=off``), and the next durable commit makes them durable too.
        What Fido promises to others — an accepted alert, an action taken, an analyst's
        click and its audit entry — is always durable."""
        token = _DURABLE.set(durable)
        try:
            async with self._sessions() as session:
                yield session
        finally:
            _DURABLE.reset(token)

    async def dispose(self) -> None:
        await self.engine.dispose()
