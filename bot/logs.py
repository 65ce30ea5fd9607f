"""How every ``fido`` command logs: text for a terminal (the default), or one JSON object per
line for a log shipper (``FIDO_LOG_FORMAT=json``).

A JSON line holds ``time`` (UTC, ISO 8601), ``level``, ``logger``, ``message``, the
``event_id`` and ``incident_id`` the line is about when known (bound per task by the
pipeline, ``pipeline/observe.py``, or given with ``extra=``), any other ``extra=`` field, and
an exception as one ``exception`` field: its type and first line for a dependency's failure,
its whole traceback (which ends with them) for a bug.

Three rules hold in both formats:

- **A message is one line.** An exception formatted into it (``"…: %s", exc``) may bring
  several (SQLAlchemy's errors bring three): line breaks in the message are collapsed to
  spaces. Only a traceback, logged with ``exc_info``, spans lines.
- **A failing dependency is one line.** When the exception is a dependency's failure — the
  database unreachable, a connection refused or timed out, an integration's error — the
  line carries its reason and no traceback, unless the level is DEBUG. A bug (any other
  exception) keeps its traceback.
- **No secrets.** Slack tokens, ``Bearer`` credentials and ``password=``/``token=``/
  ``secret=``/``api_key=`` values are masked in every line, as a net under the rule that
  code never logs them (settings are ``SecretStr``). Raw alert payloads are never logged at
  INFO by the code either; nothing here can tell a payload from a message.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from pipeline import observe
from pipeline.db import first_line, unreachable
from pipeline.errors import ConfigError, IntegrationError

Format = Literal["text", "json"]
TEXT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

_SECRETS = re.compile(
    r"(?P<slack>\bx(?:ox[abposr]|app)-[A-Za-z0-9-]{6,})"
    r"|(?P<bearer>\bBearer\s+)[^\s\"',;]+"
    r"|(?P<pair>\b(?:password|passwd|secret|token|api[_-]?key|apikey)\s*[=:]\s*)[^\s\"',;&]+",
    re.IGNORECASE,
)
MASK = "[redacted]"
_BREAK = re.compile(r"\s*[\r\n]+\s*")

# LogRecord's own attributes; anything else on a record came from ``extra=``
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}
_STANDARD.add("color_message")  # uvicorn's copy of the message with terminal colours


class LogSettings(BaseSettings):
    """``FIDO_LOG_FORMAT``, from the environment or ``.env`` like every other setting."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", env_ignore_empty=True, extra="ignore"
    )
    log_format: Format = Field(default="text", validation_alias="FIDO_LOG_FORMAT")


def redact(line: str) -> str:
    """``line`` with anything shaped like a credential masked."""

    def mask(match: re.Match[str]) -> str:
        if match.group("slack"):
            return MASK
        return (match.group("bearer") or match.group("pair") or "") + MASK

    return _SECRETS.sub(mask, line)


def one_line(message: str) -> str:
    """``message`` with its line breaks (and the indentation after them) as one space."""
    return _BREAK.sub(" ", message.strip())


def dependency_failure(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) is something outside Fido failing, as opposed to
    a bug: the database unreachable, a network error or timeout, an integration's error."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, IntegrationError | ConnectionError | TimeoutError):
            return True
        if unreachable(current):
            return True
        if type(current).__module__.startswith(("httpx", "httpcore", "aiohttp", "ldap3")):
            return True
        current = current.__cause__ or current.__context__
    return False


def _exception(record: logging.LogRecord) -> tuple[str, str | None] | None:
    """(one line naming the exception, its traceback or None) for a record with one."""
    if not record.exc_info or record.exc_info[1] is None:
        return None
    exc = record.exc_info[1]
    reason = f"{type(exc).__name__}: {first_line(exc)}"
    debugging = logging.getLogger(record.name).isEnabledFor(logging.DEBUG)
    if dependency_failure(exc) and not debugging:
        return reason, None
    return reason, logging.Formatter().formatException(record.exc_info)


def _context(record: logging.LogRecord) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for name, var in (("event_id", observe.event_id), ("incident_id", observe.incident_id)):
        value = getattr(record, name, None)
        if value is None:
            value = var.get()
        if value is not None:
            fields[name] = value
    return fields


class TextFormatter(logging.Formatter):
    """The classic line; a dependency's failure ends with its reason instead of a
    traceback."""

    def __init__(self) -> None:
        super().__init__(TEXT)

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = one_line(record.message)
        return super().formatMessage(record)

    def format(self, record: logging.LogRecord) -> str:
        exception = _exception(record)
        if exception is None:
            return redact(super().format(record))
        reason, trace = exception
        saved = record.exc_info, record.exc_text
        record.exc_info, record.exc_text = None, None
        try:
            line = super().format(record)
        finally:
            record.exc_info, record.exc_text = saved
        line = f"{line}: {reason}"
        return redact(line if trace is None else f"{line}\n{trace}")


class JsonFormatter(logging.Formatter):
    """One JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": one_line(record.getMessage()),
            **_context(record),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in entry and not key.startswith("_"):
                entry[key] = value if isinstance(value, int | float | bool | None) else str(value)
        exception = _exception(record)
        if exception is not None:
            reason, trace = exception
            entry["exception"] = reason if trace is None else trace
        return redact(json.dumps(entry, ensure_ascii=False, default=str))


def formatter(kind: Format) -> logging.Formatter:
    return JsonFormatter() if kind == "json" else TextFormatter()


def log_format() -> Format:
    """``FIDO_LOG_FORMAT`` (text by default); a ConfigError for anything but text or json."""
    try:
        return LogSettings().log_format
    except ValidationError:
        raise ConfigError("FIDO_LOG_FORMAT must be text or json (see .env.example)") from None


def configure(level: str, kind: Format | None = None) -> None:
    """Log to stderr at ``level`` in ``kind`` (default: ``FIDO_LOG_FORMAT``), replacing any
    handler installed before."""
    chosen = kind or log_format()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(chosen))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # httpx logs every request's full URL at INFO, and a vendor may carry its key in the
    # path (VirusTotal's /users/{key}): only its warnings, unless debugging
    quiet = logging.DEBUG if root.isEnabledFor(logging.DEBUG) else logging.WARNING
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(quiet)
