"""The ``sql`` source: read new alert rows from a detector's own database table.

Older detectors (an IDS console, a DLP appliance, a home-grown scanner) keep their alerts
in a table. This source runs the configured query against any SQLAlchemy URL and hands
each row, as a JSON object, to the source's detector::

    sources:
      ids_db:
        type: sql
        detector: generic
        options:
          url_env: IDS_DATABASE_URL        # or url: sqlite:////var/lib/ids/alerts.db
          query: >
            SELECT id, title, severity, src_ip, created_at AS occurred_at
            FROM alerts WHERE id > :cursor ORDER BY id LIMIT :limit
          cursor_column: id
          initial_cursor: 0

The query must use the bound parameters ``:cursor`` (the ``cursor_column`` value of the
last row read) and ``:limit`` (``batch_size``); they are bound by the driver, never
formatted into the SQL. It must order by a column that only grows (an id, or an insertion
time that is unique). Before the first row, ``:cursor`` is ``initial_cursor``, or NULL when
that is unset (then write e.g. ``WHERE CAST(:cursor AS bigint) IS NULL OR id > :cursor``).

In the payload, datetimes become ISO 8601, Decimals strings and bytes base64. The cursor
keeps the last value with its type, so a timestamp goes back into the query as a
timestamp. The source only reads: PostgreSQL sessions are read-only, SQLite connections
``query_only``. ``postgresql://`` URLs without a driver use psycopg 3, Fido's own. The URL
is logged only with its password hidden.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import uuid
from collections.abc import Callable
from datetime import date, datetime, time
from decimal import Decimal
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError

from pipeline.errors import ConfigError, IntegrationError
from pipeline.plugins import Batch, Context, EnvName, sources

log = logging.getLogger(__name__)

_DRIVERS = {"postgresql": "postgresql+psycopg", "postgres": "postgresql+psycopg"}


def _query(query: str) -> str:
    missing = {"cursor", "limit"} - set(text(query).compile().params)
    if missing:
        names = ", ".join(f":{m}" for m in sorted(missing))
        raise ValueError(f"must use the bound parameters {names}")
    return query


def _database_url(url: str | URL) -> URL:
    """A SQLAlchemy URL, with psycopg 3 as the PostgreSQL driver; ValueError when not one."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError, TypeError):
        raise ValueError("is not a database URL") from None
    return parsed.set(drivername=_DRIVERS.get(parsed.drivername, parsed.drivername))


def _checked_url(url: str | None) -> str | None:
    if url is not None:
        _database_url(url)
    return url


class Options(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "url_env": "IDS_DATABASE_URL",
                    "query": "SELECT id, title FROM alerts WHERE id > :cursor"
                    " ORDER BY id LIMIT :limit",
                    "cursor_column": "id",
                    "initial_cursor": 0,
                }
            ]
        },
    )

    # exactly one of: the URL, or the variable holding it (when it carries a password)
    url: Annotated[str | None, AfterValidator(_checked_url)] = None
    url_env: EnvName | None = None
    query: Annotated[str, Field(min_length=1), AfterValidator(_query)]
    cursor_column: str = Field(min_length=1)  # the column the query orders by
    initial_cursor: Any = None  # :cursor before the first row (NULL when unset)
    batch_size: int = Field(default=500, ge=1)  # :limit

    @model_validator(mode="after")
    def _one_url(self) -> Options:
        if (self.url is None) == (self.url_env is None):
            raise ValueError("give exactly one of url and url_env")
        return self


SQLOptions = Options  # the name the methods are annotated with


@sources.register("sql")
class SQLSource:
    """Polls a table with a query bound to the last cursor value; see the module docstring."""

    Options = Options

    def __init__(
        self,
        name: str,
        detector: str,
        *,
        url: str | URL,
        query: str,
        cursor_column: str,
        initial_cursor: Any = None,
        batch_size: int = 500,
    ) -> None:
        self.name = name
        self.detector = detector
        try:
            self.url = _database_url(url)
        except ValueError:
            raise ConfigError("url is not a database URL") from None
        self.safe_url = self.url.render_as_string(hide_password=True)
        self.query = text(query)
        self.cursor_column = cursor_column
        self.initial_cursor = initial_cursor
        self.batch_size = batch_size
        self._engine: Engine | None = None

    @classmethod
    def build(cls, options: SQLOptions, context: Context) -> SQLSource:
        url = options.url if options.url_env is None else context.secret(options.url_env)
        assert url is not None  # the options hold exactly one of them
        return cls(
            context.name,
            context.source_detector().name,
            url=url,
            query=options.query,
            cursor_column=options.cursor_column,
            initial_cursor=options.initial_cursor,
            batch_size=options.batch_size,
        )

    def __repr__(self) -> str:
        return f"SQLSource({self.name!r}, {self.detector!r}, url={self.safe_url!r})"

    async def fetch(self, cursor: dict[str, Any]) -> Batch:
        return await asyncio.to_thread(self._fetch, cursor)

    def dispose(self) -> None:
        """Close the connection pool (at shutdown)."""
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    # -- run in a thread ---------------------------------------------------------------

    def _fetch(self, cursor: dict[str, Any]) -> Batch:
        bound = load_value(cursor) if cursor else self.initial_cursor
        try:
            with self.engine().connect() as connection:
                if connection.dialect.name == "postgresql":
                    connection = connection.execution_options(postgresql_readonly=True)
                result = connection.execute(self.query, {"cursor": bound, "limit": self.batch_size})
                columns = list(result.keys())
                rows = [dict(zip(columns, row, strict=True)) for row in result]
        except SQLAlchemyError as exc:
            raise IntegrationError(self._describe(exc)) from None
        if rows and self.cursor_column not in columns:
            raise ConfigError(
                f"sources.{self.name}: the query returns no column {self.cursor_column!r} "
                f"(it returns {', '.join(columns)})"
            )
        new_cursor = dict(cursor)
        for row in rows:
            if row[self.cursor_column] is not None:
                new_cursor = dump_value(row[self.cursor_column], self.cursor_column)
        payloads = [json.dumps(row, default=_jsonable, ensure_ascii=False).encode() for row in rows]
        log.debug("%s: %d rows from %s", self.name, len(rows), self.safe_url)
        return Batch(payloads=payloads, cursor=new_cursor, more=len(rows) >= self.batch_size)

    def engine(self) -> Engine:
        if self._engine is None:
            try:
                engine = create_engine(self.url, pool_pre_ping=True)
            except (ArgumentError, NoSuchModuleError) as exc:
                raise ConfigError(f"sources.{self.name}: {self.safe_url}: {exc}") from None
            if engine.dialect.name == "sqlite":
                event.listen(engine, "connect", _sqlite_read_only)
            self._engine = engine
        return self._engine

    def _describe(self, exc: SQLAlchemyError) -> str:
        cause = getattr(exc, "orig", None) or exc
        lines = str(cause).strip().splitlines() or [type(cause).__name__]
        message = f"sql source {self.name} ({self.safe_url}): {type(cause).__name__}: {lines[0]}"
        password = self.url.password
        return message.replace(str(password), "***") if password else message


def _sqlite_read_only(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA query_only = ON")
    cursor.close()


def _jsonable(value: Any) -> Any:
    """What ``json.dumps`` cannot write itself, in a form a detector can read."""
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    return str(value)  # UUID, IP addresses, intervals, ranges: their text form


_LOADERS: dict[str, Callable[[Any], Any]] = {
    "int": int,
    "float": float,
    "str": str,
    "bool": bool,
    "decimal": Decimal,
    "datetime": datetime.fromisoformat,
    "date": date.fromisoformat,
    "time": time.fromisoformat,
    "uuid": uuid.UUID,
    "bytes": base64.b64decode,
}


def dump_value(value: Any, column: str) -> dict[str, Any]:
    """A cursor value in JSON, with its type so that it is bound back as the same type."""
    kind: str
    stored: Any
    if isinstance(value, bool):
        kind, stored = "bool", value
    elif isinstance(value, int | float | str):
        kind, stored = type(value).__name__, value
    elif isinstance(value, Decimal | uuid.UUID):
        kind, stored = type(value).__name__.lower(), str(value)
    elif isinstance(value, datetime | date | time):
        kind, stored = type(value).__name__, value.isoformat()
    elif isinstance(value, bytes | bytearray | memoryview):
        kind, stored = "bytes", base64.b64encode(bytes(value)).decode("ascii")
    else:
        raise ConfigError(f"cursor_column {column!r}: a {type(value).__name__} cannot be a cursor")
    return {"value": stored, "type": kind}


def load_value(cursor: dict[str, Any]) -> Any:
    """The value ``dump_value`` stored, as its own type again."""
    try:
        return _LOADERS[cursor["type"]](cursor["value"])
    except (KeyError, TypeError, ValueError):
        raise IntegrationError(f"unreadable sql cursor {cursor!r}") from None
